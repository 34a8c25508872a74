"""The ``chainrule`` command: a thin layer over ``derive`` and ``codegen``.

Every command's handler is here, the only place that knows argv, stdout and exit codes; the
library below only computes. SymPy is imported only inside the commands that need it, so
``chainrule --help`` is quick.
Bad input, argparse's complaints included, ends in one line on stderr (control characters escaped)
and exit code 2; no traceback, no half-written file. A closed pipe (``| head``) ends quietly with 141,
the status of a process killed by SIGPIPE, as other Unix tools end.
"""
import argparse
import os
import re
import sys

from derive.errors import ChainruleError, shown
from derive.escape import terminal_text

FORMATS = ("text", "tex", "md")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are ChainruleErrors: one line, no usage block."""

    def error(self, message):
        flag = re.match(r"argument ([^:/ ]+).*: expected one argument$", message)
        if flag:  # argparse takes "--grad -delta2@h1.T" for two options
            message += f"; a value that starts with '-' is written {flag[1]}=VALUE"
        raise ChainruleError(message)


def _derive(args) -> int:
    from derive import derive
    from derive.check import accepted_names
    from codegen.files import NOTE_HEADERS, check_output
    header = NOTE_HEADERS[args.format]
    if args.body_only and args.format != "tex":
        raise ChainruleError(f"--body-only leaves out LaTeX's preamble; give it with --format tex, not {args.format}")
    if args.output not in (None, "-"):
        check_output(args.output, header, args.force, inputs=[args.spec])
    from codegen.worked import worked_example
    derivation = derive(args.spec)
    names = accepted_names(derivation)
    worked = worked_example(derivation) if args.notation == "chainrule" else None
    notes = (derivation.latex(names, args.form, args.body_only, args.notation, worked) if args.format == "tex" else
             {"text": derivation.text, "md": derivation.markdown}[args.format](names, args.form, args.notation, worked))
    _emit(notes, args.output, header)
    return 0


def _list(args) -> int:
    from derive.catalogue import catalogue_text
    print(catalogue_text(), end="")
    return 0


def _generate(args) -> int:
    """``chainrule generate SPEC [-o FILE] [--dtype float32] [--force] [--optimizer adam --lr 0.01 ...]``."""
    from derive import derive
    from codegen.emit import HEADER, generate
    from codegen.files import check_output, write_atomic
    from codegen.options import overrides
    output = args.output
    if output not in (None, "-"):
        check_output(output, HEADER, args.force, inputs=[args.spec])
    derivation = derive(args.spec)
    tables, flags = overrides(args, derivation.network.tables)
    text = generate(derivation, dtype=args.dtype, output=output if output != "-" else None,
                    tables=tables, flags=flags)
    if output in (None, "-"):
        print(text, end="")
    else:
        write_atomic(output, text)
    return 0


def _check(args) -> int:
    """``chainrule check``: 0 when every expression is right, 1 when one differs, 2 when not understood."""
    from derive import derive
    from derive.check import Conventions
    from derive.check.document import Equation, Skipped, checked, read_document
    from derive.limits import read_text
    checker = Conventions(derive(args.spec), args.convention)
    if args.names:
        print(f"chainrule check reads these names for this network ({args.convention} convention):")
        print("".join(f"  {name}\n" for name in checker.accepted()), end="")
        return 0
    if args.file:
        items = read_document(read_text(args.file, "derivation file"))
        if not any(isinstance(item, Equation) for item in items):
            raise ChainruleError(f"'{args.file}' has no equations of the form 'QUANTITY = EXPRESSION' to check"
                                 + (f" ({len(items)} skipped: {items[0].reason})" if items else ""))
        worst = 0
        for item, result in checked(checker, items):
            if isinstance(item, Skipped):
                print(f"line {item.line}: skipped '{item.text}': {item.reason}")
            elif isinstance(result, ChainruleError):
                print(f"line {item.line}: not understood: {result}")
                worst = 2
            else:
                print(f"line {item.line}: " + result.report(), end="")
                worst = max(worst, 0 if result.equal else 1)
        return worst
    if not args.wrt or args.grad is None:
        raise ChainruleError("give --wrt QUANTITY and --grad EXPRESSION, or --file FILE")
    result = checker.check(args.wrt, args.grad)
    print(result.report(), end="")
    return 0 if result.equal else 1


def _check_code(args) -> int:
    """``chainrule check-code``: 0 when every gradient is right, 1 when one differs or the code fails."""
    from derive import derive
    from derive.check.code import check_code, check_op, limits
    chosen = limits(timeout=args.timeout, cpu=args.cpu, memory=args.memory, output=args.output)
    if args.op:
        if args.target is not None:
            raise ChainruleError(f"--op {args.op} takes one FILE.py:FUNCTION and no spec; give "
                                 f"'check-code --op {args.op} FILE.py:FUNCTION'")
        lines, code = check_op(args.op, args.spec, chosen)
    elif args.target is None:
        raise ChainruleError("give SPEC FILE.py:FUNCTION, or --op NAME FILE.py:FUNCTION for one op")
    else:
        lines, code = check_code(derive(args.spec), args.target, chosen)
    print("\n".join(lines))
    return code


def _train(args) -> int:
    from codegen.train import cli_train
    return cli_train(args)


def _predict(args) -> int:
    from codegen.train import cli_predict
    return cli_predict(args)


def _verify(args) -> int:
    """``chainrule verify SPEC [--exact]``: 0 when every step is proved, 1 when one is wrong."""
    import time
    from derive import derive
    from derive.verify import sizes, verify
    start = time.perf_counter()
    derivation = derive(args.spec)
    report = verify(derivation, exact=args.exact)
    seconds = time.perf_counter() - start
    print(report.text(), end="")
    if report.network != derivation.network:
        print(f"(proved at {sizes(report.network)}, the same network made narrow (the spec has "
              f"{sizes(derivation.network)}): the steps are the same at every size)")
    wrong = len(report.failures())
    verdict = f"{wrong} of {len(report.proofs)} steps WRONG" if wrong else f"all {len(report.proofs)} steps proved"
    print(f"{verdict} in {seconds:.2f} s")
    return 1 if wrong else 0


def _notebook(args) -> int:
    """``chainrule notebook SPEC [-o FILE.ipynb] [--force]``."""
    import shlex
    from codegen.files import check_output
    from codegen.notebook import HEADER, notebook
    if args.output not in (None, "-"):
        if not args.output.endswith(".ipynb"):  # Jupyter's name, and how check_output knows a notebook
            raise ChainruleError(f"a notebook's file name ends in .ipynb, not {shown(args.output)}; "
                                 f"write it like -o net.ipynb")
        check_output(args.output, HEADER, args.force, inputs=[args.spec])
    command = " ".join(["chainrule", "notebook", shlex.quote(args.spec)]
                       + (["-o", shlex.quote(args.output)] if args.output not in (None, "-") else []))
    text = notebook(args.spec, command)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        from codegen.files import write_atomic
        write_atomic(args.output, text)
    return 0


class _Version(argparse.Action):
    """``--version``: the installed package's version, read only when asked (no SymPy import)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print chainrule's version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version
        try:
            text = version("chainrule")
        except PackageNotFoundError:
            text = "unknown (not installed: pip install -e .)"
        print(f"chainrule {text}")
        parser.exit()


def _emit(text: str, output, header: str) -> None:
    """`text` on stdout, or in the file `output` after the `header` line that marks it as chainrule's."""
    if output in (None, "-"):
        sys.stdout.write(text)
    else:
        from codegen.files import write_atomic
        write_atomic(output, f"{header}\n{text}")


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="chainrule",
        description="Chain-rule derivations of neural-network gradients (LaTeX, Markdown, text), "
                    "standalone NumPy code that implements them, and checks of hand derivations.")
    top.add_argument("--version", action=_Version)
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    spec_help = ("a TOML spec file, or an inline spec such as \"4 -> 8 relu -> layernorm -> residual(8 tanh -> "
                 "layernorm) -> 2 softmax ; cross_entropy\": layers joined by ->, each UNITS [ACTIVATION] [residual] "
                 "[dropout=P] (dense), an ACTIVATION alone, layernorm or layernorm(eps=1e-5, affine=false), or "
                 "residual(LAYER -> ...) (a residual block); after ; the loss, then ; l1=X ; l2=X")

    p = sub.add_parser("derive", help="print the step-by-step derivation of every gradient")
    p.add_argument("spec", help=spec_help)
    p.add_argument("--format", "-f", choices=FORMATS, default="text", help="text (default), tex or md")
    p.add_argument("--output", "-o", help="write to this file instead of standard output")
    p.add_argument("--force", action="store_true", help="overwrite a file that chainrule did not write")
    p.add_argument("--form", choices=("sample", "batch", "both"), default="both",
                   help="the per-sample form (column vectors), the batch form (the columns of X) or both (default)")
    p.add_argument("--body-only", action="store_true",
                   help="with --format tex: the notes without LaTeX's preamble, to \\input into a larger document")
    # checked by derive.notation (which imports SymPy), so --help stays quick
    p.add_argument("--notation", default="chainrule",
                   help="the course's symbols, scaling and layout: chainrule (default), nielsen (w^l, delta^l, C), "
                        "ng (deeplearning.ai: W^[l], dZ^[l], m, the 1/m in dW and db), goodfellow (h^(k), a^(k), "
                        "g <- grad J), cs231n (batch-first rows: X W^T + b, scores, dscores)")
    p.set_defaults(run=_derive)

    p = sub.add_parser("list", help="list the activations and losses with their formulas")
    p.set_defaults(run=_list)

    p = sub.add_parser("generate", help="emit a standalone NumPy module: forward, backward, optimizer, training")
    p.add_argument("spec", help=spec_help)
    from codegen.options import add_generate_arguments
    add_generate_arguments(p)
    p.set_defaults(run=_generate)

    p = sub.add_parser("check", help="check a hand-derived gradient against the derivation")
    p.add_argument("spec", help=spec_help)
    from derive.check.options import BACKWARD_CONTRACT, OP_CONTRACT, add_check_arguments
    add_check_arguments(p)
    p.set_defaults(run=_check)

    p = sub.add_parser("check-code", help="check a person's NumPy backward pass against the derivation",
                       epilog=BACKWARD_CONTRACT + "\n" + OP_CONTRACT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help=spec_help + " (with --op: the FILE.py:FUNCTION)")
    p.add_argument("target", nargs="?", help="FILE.py:FUNCTION, the backward pass to check")
    p.add_argument("--op", metavar="NAME", help="check one op's backward function instead of a network's: affine, "
                                               "an activation (relu, sigmoid, tanh, ...), softmax, layernorm, conv2d, "
                                               "maxpool2d, avgpool2d, batchnorm, spatial_batchnorm, rnn_step, rnn, "
                                               "lstm_step, lstm, gru_step, gru, attention, mha (the signatures are below)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="wall-clock seconds for the code and every process it starts (default 20, at most 600)")
    p.add_argument("--cpu", type=float, metavar="SECONDS",
                   help="CPU seconds for each of its processes (default: the timeout, at most 600)")
    p.add_argument("--memory", type=float, metavar="MIB",
                   help="MiB of memory (address space) for each of its processes (default 2048, 256 to 65536)")
    p.add_argument("--output", type=float, metavar="KIB",
                   help="KiB of its stdout and of its stderr shown; the rest is discarded (default 64)")
    p.set_defaults(run=_check_code)

    from codegen.train_options import add_predict_arguments, add_train_arguments
    p = sub.add_parser("train", help="train the network on a data file or a bundled data set; plot, save the weights")
    add_train_arguments(p, spec_help)
    p.set_defaults(run=_train)

    p = sub.add_parser("predict", help="predict with weights chainrule train saved")
    add_predict_arguments(p, spec_help)
    p.set_defaults(run=_predict)

    p = sub.add_parser("verify", help="prove every backward step against SymPy's derivative of the expanded network")
    p.add_argument("spec", help=spec_help)
    p.add_argument("--exact", action="store_true",
                   help="also cancel each difference to zero symbolically (slower), not only at random points")
    p.set_defaults(run=_verify)

    p = sub.add_parser("notebook", help="write a Jupyter notebook: the derivation, the module, a gradient check, "
                                        "training with a plot, a cell to check your own derivation")
    p.add_argument("spec", help=spec_help)
    p.add_argument("--output", "-o", help="the notebook to write, like net.ipynb (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite a file that chainrule did not write")
    p.set_defaults(run=_notebook)
    return top


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
        if not getattr(args, "run", None):
            raise ChainruleError("give a command: derive, list, generate, check, check-code, train, predict, "
                                 "verify or notebook "
                                 "(chainrule --help says what each does)")
        code = args.run(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except ChainruleError as err:
        print(f"chainrule: error: {terminal_text(err)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader has gone (| head): drop what is still buffered and end as SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
