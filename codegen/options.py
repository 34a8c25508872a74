"""Command-line options of ``chainrule generate`` (kept free of SymPy so ``--help`` stays fast).

The training flags override the spec's [optimizer], [schedule] and [training] tables; the result
goes through ``derive.optim.validate`` like a spec's own tables, so a bad value is the same
one-line error.
"""
import math

#: flag -> (table, key, kind of value, help). One row per flag; ``overrides`` reads them.
TRAINING_FLAGS = (
    ("--optimizer", "optimizer", "type", "name", "optimizer (sgd, adam, adamw, ...); a new type drops the spec's hyperparameters"),
    ("--lr", "optimizer", "lr", "number", "learning rate"),
    ("--momentum", "optimizer", "momentum", "number", "momentum (sgd, rmsprop)"),
    ("--betas", "optimizer", "betas", "pair", "Adam's betas as B1,B2, like 0.9,0.999"),
    ("--eps", "optimizer", "eps", "number", "the optimizer's eps"),
    ("--weight-decay", "optimizer", "weight_decay", "number", "weight decay"),
    ("--schedule", "schedule", "type", "name", "learning-rate schedule (step, multistep, exponential, cyclic, cosine); "
                                              "a new type drops the spec's schedule arguments"),
    ("--schedule-arg", "schedule", None, "key=value", "a schedule argument KEY=VALUE, like step_size=10 or "
                                                      "milestones=10,20 (repeatable)"),
    ("--epochs", "training", "epochs", "whole", "epochs of train()"),
    ("--batch-size", "training", "batch_size", "batch", "mini-batch size, or 'full' for the whole data set"),
    ("--clip-norm", "training", "clip_norm", "number", "clip the gradients' global L2 norm to this"),
    ("--clip-value", "training", "clip_value", "number", "clamp every gradient entry to [-X, X]"),
    ("--patience", "training", "patience", "whole", "early stopping: epochs without a better validation loss"),
    ("--seed", "training", "seed", "whole", "train()'s default seed"),
    ("--init", "training", "init", "name", "weight init: xavier_uniform, xavier_normal, he_uniform, he_normal, torch"),
)


_METAVARS = {"name": "NAME", "number": "X", "whole": "N", "pair": "B1,B2", "batch": "N|full",
             "key=value": "KEY=VALUE"}


def add_generate_arguments(parser) -> None:
    parser.add_argument("--output", "-o", help="the module to write (default: standard output)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="floating-point type of the emitted code (default float64)")
    parser.add_argument("--force", action="store_true", help="overwrite a file that chainrule did not generate")
    add_training_flags(parser, "training (override the spec's [optimizer], [schedule] and [training])")


def add_training_flags(parser, title: str) -> None:
    """The TRAINING_FLAGS, as one argument group called ``title``."""
    group = parser.add_argument_group(title)
    for flag, _, key, kind, text in TRAINING_FLAGS:
        # values stay text here: overrides() converts them, so a bad one is a one-line error
        group.add_argument(flag, metavar=_METAVARS[kind], help=text,
                           action="append" if key is None else "store")


def _value(text: str, kind: str, flag: str):
    """The TOML-like value of a flag's text, or a one-line ChainruleError (the bounds are validate's)."""
    from derive.errors import ChainruleError, shown
    text = text.strip()
    try:
        if kind in ("name", "key=value") or (kind == "batch" and text == "full"):
            return text
        if kind in ("whole", "batch"):
            return int(text)
        numbers = [float(part) for part in (text.split(",") if kind == "pair" else [text])]
        if all(map(math.isfinite, numbers)) and len(numbers) == (2 if kind == "pair" else 1):
            return numbers if kind == "pair" else numbers[0]
    except ValueError:  # not a number, or an int of more than 4300 digits
        pass
    raise ChainruleError(f"{flag} {shown(text)} is not {_KINDS[kind]}")


_KINDS = {"whole": "a whole number", "batch": "a whole number or 'full'", "number": "a finite number",
          "pair": "two finite numbers like 0.9,0.999"}


def _schedule_arg(text: str):
    """``key=value`` as (key, value): a number, a list of numbers (``10,20``) or a name."""
    from derive.errors import ChainruleError, shown
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise ChainruleError(f"--schedule-arg {shown(text)} is not KEY=VALUE, like step_size=10")

    def number(part):
        for kind in (int, float):
            try:
                return kind(part)
            except ValueError:
                pass
        return part
    parts = [number(part.strip()) for part in value.split(",")]
    return key.strip(), parts[0] if len(parts) == 1 and key.strip() != "milestones" else parts


def overrides(args, tables: dict):
    """(tables, flags): the spec's raw tables with the training flags applied, and those flags as
    command-line words (for the regenerate command). Nothing is validated here."""
    tables = {name: dict(table) for name, table in (tables or {}).items()}
    flags = []
    for flag, table, key, kind, _ in TRAINING_FLAGS:
        given = getattr(args, flag[2:].replace("-", "_"), None)
        if given is None:
            continue
        for text in (given if isinstance(given, list) else [given]):
            flags += [flag, text]
            if key is None:
                name, value = _schedule_arg(text)
            else:
                name, value = key, _value(text, kind, flag)
            current = tables.setdefault(table, {})
            if name == "type" and current.get("type", "sgd" if table == "optimizer" else None) != value:
                current.clear()  # another optimizer or schedule: the spec's settings were for the old one
            current[name] = value
    return tables, flags
