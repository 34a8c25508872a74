"""Network specs: a TOML file, an inline string such as ``"2 -> 2 relu -> 1 ; mse"``, or a dict.

All three become the same validated :class:`Network`; every mistake is a one-line
:class:`ChainruleError` that names the problem and the fix.
"""
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from . import limits
from .errors import ChainruleError, did_you_mean, shown
from .fields import At, check_keys, entry, inline_args, positive_int, size
from .limits import read_text
from .ops import MAX_PARAM
from .optim import validate as validate_training_tables
from .ops.activations import CATALOGUE
from .ops.losses import Loss, make_loss
from .ops.registry import layers

TOP_KEYS = ("name", "description", "network", "optimizer", "schedule", "training")
NETWORK_KEYS = ("inputs", "layers", "loss", "l1", "l2")
#: The layer kinds, by their spec type, each defined beside its ops in ``derive/ops`` (a table with
#: ``units`` is dense).
LAYERS = layers()
#: The input forms, by their keys: X is (N, F), (N, C, H, W), (N, C, L), (N, T, F) or (N, T) integers.
INPUT_FORMS = {
    ("features",): ("vectors", ""),
    ("channels", "height", "width"): ("images", "an image input needs conv2d/flatten layers"),
    ("channels", "length"): ("signals", "a 1-D signal input needs conv1d/flatten layers"),
    ("length", "features"): ("sequences", "a sequence input needs sequence layers (recurrent, attention, "
                                          "or dense over the last axis)"),
    ("length", "vocab"): ("tokens", "a token-id input needs an embedding layer"),
}
INPUT_KEYS = ("features", "channels", "height", "width", "length", "vocab")


@dataclass(frozen=True)
class Inputs:
    """The input of a network: its form (``vectors``, ``images``, ``signals``, ``sequences``, ``tokens``)
    and its sizes by name (``{"features": 64}``; ``{"channels": 1, "height": 8, "width": 8}``)."""
    form: str
    sizes: tuple


@dataclass(frozen=True)
class Network:
    """A validated network: its layers (a tree: residual blocks nest), the loss and weight penalties."""
    name: str
    inputs: int
    layers: tuple
    loss: Loss
    l1: float = 0.0
    l2: float = 0.0
    description: str = ""
    source: str = ""
    tables: dict = field(default_factory=dict, compare=False)
    layout: tuple = ()  # a non-vector input's named sizes, (("channels", 1), ("height", 8), ("width", 8))

    @property
    def input_shape(self) -> tuple:
        """The input's named sizes: its layout, or (("features", inputs),) for vectors."""
        return self.layout or (("features", self.inputs),)

    @property
    def widths(self) -> list:
        """[inputs, units of layer 1, ..., outputs]."""
        return [self.inputs] + [layer.units for layer in self.layers]

    @property
    def outputs(self) -> int:
        """The output's features: a sequence's T·K (its layout's sizes multiplied)."""
        return size(self.layers[-1].shape)

    @property
    def activations(self) -> tuple:
        """Every activation of the network, in the order of its layers (nested ones included)."""
        return tuple(f for layer in self.layers for f in layer.activations)

    def layer(self, path):
        """The layer at ``path``: its position (1-based) or, inside residual blocks, a tuple of positions."""
        layers, layer = self.layers, None
        for i in (path,) if isinstance(path, int) else path:
            layer = layers[i - 1]
            layers = getattr(layer, "layers", ())
        return layer

    @cached_property
    def param_names(self) -> list:
        """The parameters' keys in the order the graph makes them (W1, b1, W2, b2, ...)."""
        from .graph import expand
        return [v.key for v in expand(self).values if v.role == "param"]


def inline_inputs(network) -> str:
    """The network's inputs as the inline grammar writes them: ``64``, an image ``1x8x8``, a signal ``2x16``."""
    return "x".join(str(n) for _, n in network.input_shape)


def inline(layer, dense, user=str) -> str:
    """``layer`` in the inline grammar; ``dense(layer)`` writes a dense layer (the notes and the emitted
    module's docstring write those differently) and ``user`` wraps an activation's name."""
    return layer.inline(dense, user)


def _at_most(value: int, limit: int, message: str):
    """The size limits (derive.limits), checked before any work that grows with the size."""
    if value > limit:
        raise ChainruleError(message.format(value, limit) + "; make the network smaller")


def _penalty(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_PARAM:
        raise ChainruleError(f"{what} must be a number in [0, {MAX_PARAM}], not {shown(value)}")
    return float(value)


def _inputs(value) -> Inputs:
    """``inputs = 64`` or a table of sizes naming one of the forms of INPUT_FORMS."""
    if not isinstance(value, dict):
        return Inputs("vectors", (("features", positive_int(value, "[network] inputs")),))
    check_keys(value, INPUT_KEYS, "[network] inputs")
    for form in INPUT_FORMS:
        if set(form) == set(value):
            return Inputs(INPUT_FORMS[form][0],
                          tuple((key, positive_int(value[key], f"[network] inputs {key}")) for key in form))
    forms = "; ".join("{ " + ", ".join(f"{k} = ..." for k in form) + " }" for form in INPUT_FORMS)
    raise ChainruleError(f"[network] inputs {{ {', '.join(value)} }} is not an input form; give a number of "
                         f"features or one of: {forms}")


def _layer_type(raw, where: str) -> str:
    kind = raw.get("type", "dense" if "units" in raw else None)
    if kind is None:
        check_keys(raw, LAYERS["dense"].keys, where)  # a misspelt units gets its did-you-mean
        raise ChainruleError(f"{where} has neither units nor type; write {{ units = 2, activation = \"relu\" }} "
                             f"or give a type ({', '.join(LAYERS)})")
    if not isinstance(kind, str) or kind not in LAYERS:
        raise ChainruleError(f"{where}: unknown layer type {shown(kind)}{did_you_mean(kind, LAYERS)}; "
                             f"choose one of: {', '.join(LAYERS)}")
    return kind


def _layers(raw_layers, shape: tuple, path: tuple, last: bool) -> tuple:
    """The layers of a list (the network's, or a residual block's at ``path``), from an input of named sizes
    ``shape``; ``last`` when the list's last layer makes the network's output."""
    layers = []
    for i, raw in enumerate(raw_layers, start=1):
        at = At(path + (i,), last and i == len(raw_layers), shape, _layers, inline_layers)
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = {"units": raw}
        if not isinstance(raw, dict):
            raise ChainruleError(f"{at.where} must be a table like {{ units = 2, activation = \"relu\" }}")
        kind = _layer_type(raw, at.where)
        check_keys(raw, LAYERS[kind].keys, at.where if kind == "dense" else f"{at.where} ({kind})")
        layer = LAYERS[kind].parse(raw, at)
        if not at.last and any(not f.elementwise for f in layer.activations):
            raise ChainruleError(f"{at.where}: {next(f.name for f in layer.activations if not f.elementwise)} "
                                 f"is only supported on the output layer")
        layers.append(layer)
        shape = layer.shape
    return tuple(layers)


def _parameters(layers, shape: tuple) -> int:
    """How many numbers ``layers`` learn from an input of named sizes ``shape``."""
    count = 0
    for layer in layers:
        count += layer.parameters(shape)
        shape = layer.shape
    return count


def from_dict(spec: dict, source: str = "") -> Network:
    """Validate a spec table (the parsed TOML) into a Network; a table whose network keys (inputs,
    layers, loss, l1, l2) stand at the top, with no [network] table, is read as if they were in one."""
    if not isinstance(spec, dict):
        raise ChainruleError("a spec must be a table with a [network] section")
    if "network" not in spec and spec.keys() & set(NETWORK_KEYS):  # the network's keys alone, unwrapped
        spec = {**{k: v for k, v in spec.items() if k not in NETWORK_KEYS},
                "network": {k: v for k, v in spec.items() if k in NETWORK_KEYS}}
    check_keys(spec, TOP_KEYS, "spec")
    if "network" not in spec:
        raise ChainruleError("the spec has no [network] table; add one with inputs, layers and loss")
    net = spec["network"]
    if not isinstance(net, dict):
        raise ChainruleError("[network] must be a table with inputs, layers and loss")
    check_keys(net, NETWORK_KEYS, "[network]")
    given = _inputs(net.get("inputs"))
    raw_layers = net.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ChainruleError("[network] layers must be a non-empty list like [{ units = 2, activation = \"relu\" }]")
    first = raw_layers[0]
    kind = _layer_type(first, "layer 1") if isinstance(first, dict) else "dense"
    if given.form not in ("vectors", "images", "signals") and given.form not in LAYERS[kind].takes:
        raise ChainruleError(f"layer 1 ({kind}) takes vectors; {INPUT_FORMS[tuple(k for k, _ in given.sizes)][1]}, "
                             f"which chainrule does not support yet")
    inputs = size(given.sizes)
    _at_most(len(raw_layers), limits.LAYERS, "[network] has {} layers; the limit is {} (LAYERS)")
    _at_most(inputs, limits.INPUTS, "[network] inputs is {}; the limit is {} (INPUTS)")
    layers = _layers(raw_layers, given.sizes, (), last=True)
    _at_most(max(layer.units for layer in layers), limits.UNITS, "a layer has {} units; the limit is {} (UNITS)")
    learns = _parameters(layers, given.sizes)
    _at_most(learns, limits.PARAMETERS,
             "the network has {} weights and biases; the limit is {} (PARAMETERS)")
    loss = make_loss(entry(net.get("loss"), "loss"))
    last = layers[-1]
    output = last.activation if last.kind in ("dense", "activation") else None
    if loss.fused_with and (last.kind != "dense" or output.name != loss.fused_with):
        raise ChainruleError(f"loss {loss.name} needs a {loss.fused_with} output layer, not "
                             f"{output.name if last.kind == 'dense' else 'a layer of type ' + last.kind}; "
                             f"end with a dense layer with activation = \"{loss.fused_with}\"")
    if loss.fused_with and last.residual:
        raise ChainruleError(f"the last layer feeds the fused {output.name} + {loss.name} loss and cannot be residual; "
                             f"remove residual = true from it")
    if last.kind == "dense" and not output.elementwise and last.residual:
        raise ChainruleError(f"the {output.name} output layer cannot be residual (its output must be the "
                             f"probabilities); remove residual = true from it")
    if output is not None and output.name == "softmax" and last.units < 2:
        raise ChainruleError("a softmax output needs at least 2 units (use sigmoid and bce for one)")
    name = spec.get("name", "network")
    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)):
        raise ChainruleError(f"name {shown(name)} must be an identifier like 'simple_nn'")
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise ChainruleError(f"description must be a string, not {shown(description)}")
    tables = {k: spec[k] for k in ("optimizer", "schedule", "training") if k in spec}
    for key, table in tables.items():
        if not isinstance(table, dict):
            raise ChainruleError(f"[{key}] must be a table")
    validate_training_tables(tables)
    if tables.get("training", {}).get("batch_size") == 1 and _couples_samples(layers):
        raise ChainruleError("[training] batch_size = 1 cannot train batch norm, which normalizes with the statistics "
                             "of the batch (torch refuses a batch of 1 too); use a batch_size of 2 or more")
    if tables.get("training", {}).get("bptt") is not None:
        _check_bptt(tables["training"]["bptt"], layers)
    if not learns:
        raise ChainruleError("the network has no parameters to learn; add a dense layer")
    return Network(name, inputs, layers, loss, _penalty(net.get("l1", 0), "[network] l1"),
                   _penalty(net.get("l2", 0), "[network] l2"), description, source, tables,
                   given.sizes if given.form != "vectors" else ())


def _check_bptt(k, layers):
    """[training] bptt = k cuts each sequence into chunks of k steps: it needs a recurrent layer, a loss at
    every step (the chunks' losses) and k at most the sequence's length."""
    if not any(layer.kind in ("rnn", "lstm", "gru") for layer in layers):
        raise ChainruleError("[training] bptt (truncated backpropagation through time) needs a recurrent layer "
                             "(rnn, lstm or gru); remove bptt")
    length = dict(layers[-1].shape).get("length")
    if length is None:
        raise ChainruleError("[training] bptt needs a loss at every step, so that each chunk has its own: keep "
                             "return_sequences = true on the last recurrent layer, or remove bptt")
    if k > length:
        raise ChainruleError(f"[training] bptt = {k} is longer than the sequences ({length} steps); "
                             f"use at most {length}")
    if _drops(layers):  # its masks are drawn per whole sequence
        raise ChainruleError("[training] bptt with dropout is not supported; remove one of them")


def _drops(layers) -> bool:
    """Whether a layer of ``layers`` (in a block too) has dropout."""
    return any(getattr(layer, "dropout", 0) or _drops(layer.layers) for layer in layers)


def _couples_samples(layers) -> bool:
    """Whether a layer of ``layers`` (in a block too) normalizes with the batch's statistics (batch norm)."""
    return any(layer.couples_samples or _couples_samples(layer.layers) for layer in layers)


def load(path) -> Network:
    """Read and validate a TOML spec file."""
    path = Path(path)
    text = read_text(path, "spec file", "; give a .toml file or an inline spec like \"2 -> 2 relu -> 1 ; mse\"")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ChainruleError(f"{path} is not valid TOML: {err}") from None
    except RecursionError:
        raise ChainruleError(f"{path} nests arrays or tables too deeply to read; a spec needs a few levels") from None
    except ValueError as err:  # an integer of more than 4300 digits
        raise ChainruleError(f"{path} has a value TOML cannot read: {err}") from None
    table.setdefault("name", re.sub(r"\W", "_", path.stem) or "network")
    return from_dict(table, source=path.as_posix())


_INLINE_LAYER = re.compile(r"^(?P<units>\S+)(?:\s+(?P<act>(?!residual\b|dropout=)[A-Za-z_]\w*(?:\(.*\))?|\[.*\]))?"
                           r"(?P<res>\s+residual)?(?:\s+dropout=(?P<drop>\S+))?$")
_CALL = re.compile(r"^(?P<name>[A-Za-z_]\w*)(?:\((?P<args>.*)\))?$")
INLINE_USAGE = "write it like \"2 -> 2 relu -> 1 ; mse\""


def _split(text: str, sep: str) -> list:
    """``text`` split at each ``sep`` outside parentheses and brackets, each part stripped."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        if text[i] in "([":
            depth += 1
        elif text[i] in ")]":
            depth = max(depth - 1, 0)
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i].strip())
            start = i + len(sep)
            i = start
            continue
        i += 1
    return parts + [text[start:].strip()]


def parse_inline(text: str) -> Network:
    """Parse ``"4 -> 8 relu -> layernorm -> residual(8 tanh -> layernorm) -> relu -> 2 softmax ; cross_entropy"``.

    Layers are separated by ``->``. A dense layer is ``UNITS [ACTIVATION] [residual] [dropout=P]``; an
    activation is a name, ``name(k=v)``, or a formula in ``z`` in brackets, ``[z*tanh(log(1+exp(z)))]``,
    and one on its own is an activation layer. ``layernorm`` or ``layernorm(eps=1e-6, affine=false)`` is
    a layer norm; ``residual(LAYER -> LAYER ...)`` a residual block around its layers (blocks nest); any
    other layer kind is ``KIND(key=value, ...)``, e.g. ``conv2d(out_channels=8, kernel_size=3, padding=1)``.
    The inputs are a number of features, an image ``1x8x8`` (channels × height × width) or a 1-D signal
    ``2x16`` (channels × length).
    After the first ``;`` comes the loss (a name, ``name(k=v)`` or ``[formula in yhat, y]``), then
    optional ``l1=...``, ``l2=...``.
    """
    parts = [p.strip() for p in text.split(";")]
    if len(parts) < 2 or not parts[1]:
        raise ChainruleError(f"inline spec {shown(text)} has no loss after ';'; {INLINE_USAGE}")
    chain = _split(parts[0], "->")
    if len(chain) < 2:
        raise ChainruleError(f"inline spec {shown(text)} has no layers; {INLINE_USAGE}")
    sizes = re.fullmatch(r"(\d+)[x×](\d+)(?:[x×](\d+))?", chain[0])
    if sizes:  # an image C×H×W or a 1-D signal C×L, as the notes write them
        keys = ("channels", "height", "width") if sizes[3] else ("channels", "length")
        inputs = {key: int(n) for key, n in zip(keys, sizes.groups())}
    else:
        inputs = _inline_int(chain[0], "inputs", INLINE_USAGE)
    network = {"inputs": inputs, "layers": _inline_layers(chain[1:], ()), "loss": _inline_entry(parts[1], "loss")}
    for extra in parts[2:]:
        key, _, value = extra.partition("=")
        if key.strip() not in ("l1", "l2") or not value:
            raise ChainruleError(f"inline option {shown(extra)} is not l1=NUMBER or l2=NUMBER")
        network[key.strip()] = _inline_number(value, key.strip())
    return from_dict({"name": "network", "network": network}, source=text)


def inline_layers(text: str, path: tuple) -> list:
    """The layer tables of the inline layers ``text`` (``4 relu -> layernorm``; a residual block's at ``path``)."""
    return _inline_layers(_split(text, "->"), path)


def _inline_layers(tokens, path: tuple) -> list:
    return [_inline_layer(token, path + (i,)) for i, token in enumerate(tokens, start=1)]


#: The layer kinds written ``kind`` or ``kind(key=value, ...)`` inline (a dense layer starts with its units).
_NAMED_KINDS = tuple(kind for kind in LAYERS if kind not in ("dense", "activation"))


def _inline_layer(token: str, path: tuple) -> dict:
    at = At(path, False, (), inline_layers=inline_layers)
    call = _CALL.match(token)
    if call and call["name"] in _NAMED_KINDS:
        return LAYERS[call["name"]].inline_table(call["args"], at)
    if not token[:1].isdigit() and token[:1] not in "+-":
        if call and call["name"] not in CATALOGUE and did_you_mean(call["name"], _NAMED_KINDS):
            raise ChainruleError(f"inline {at.where} {shown(call['name'])} is not an activation or a layer kind"
                                 f"{did_you_mean(call['name'], _NAMED_KINDS)}")
        return {"type": "activation", "activation": _inline_entry(token, at.where)}
    match = _INLINE_LAYER.match(token)
    if not match:
        raise ChainruleError(f"inline {at.where} {shown(token)} is not 'UNITS [activation] [residual]', an "
                             f"activation, or a layer kind ({', '.join(_NAMED_KINDS)}); {INLINE_USAGE}")
    layer = {"units": _inline_int(match["units"], f"{at.where} units", INLINE_USAGE)}
    if match["act"]:
        layer["activation"] = _inline_entry(match["act"], at.where)
    if match["res"]:
        layer["residual"] = True
    if match["drop"]:
        layer["dropout"] = _inline_number(match["drop"], f"{at.where} dropout")
    return layer


def _inline_int(token: str, what: str, usage: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", token):
        raise ChainruleError(f"{what} {shown(token)} is not a whole number; {usage}")
    return int(token)


def _inline_number(token: str, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise ChainruleError(f"{what} value {shown(token.strip())} is not a number") from None


def _inline_entry(token: str, where: str):
    token = token.strip()
    if token.startswith("[") and token.endswith("]"):
        return {"formula": token[1:-1]}
    match = _CALL.match(token)
    if not match:
        raise ChainruleError(f"{where} {shown(token)} is not NAME, NAME(key=value) or [formula]")
    entry = {"type": match["name"]}
    for key, value in inline_args(match["args"], where).items():
        entry[key] = _inline_number(value, f"{where} {key}")
    return entry


def build(spec) -> Network:
    """A Network from a Network, a dict, a path to a TOML file, or an inline string."""
    if isinstance(spec, Network):
        return spec
    if isinstance(spec, dict):
        return from_dict(spec)
    text = str(spec)
    if "->" in text:
        return parse_inline(text)
    return load(text)
