"""Fuzz every parser of user text: spec TOML, spec dicts, the inline grammar, formulas, check
expressions, derivation files and the command-line flags.

Each case must end in a result or a one-line ChainruleError (on the command line: exit 2 and one
line on stderr), never in another exception, and within a bound (a watchdog turns a hang into a
failure). CI runs a bounded, derandomized budget (tests/conftest.py); ``--fuzz-long`` or
CHAINRULE_FUZZ_EXAMPLES=N runs more, with fresh random cases. A case that ever failed is kept as
an ``@example``.
"""
import contextlib
import signal

import pytest
from hypothesis import example, given, settings, strategies as st

from codegen import cli
from derive import spec
from derive.check import Checker, read_equations
from derive.check.parse import parse as parse_expression
from derive.errors import ChainruleError
from derive.formula import parse_formula
from derive.ops.activations import Z
from derive.ops.losses import Y, YHAT

FUZZ = settings.get_profile("fuzz")


class Hang(Exception):
    """A case ran past its bound."""


@contextlib.contextmanager
def bounded(seconds: float):
    def expire(*_):
        raise Hang(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def accepts_or_refuses(function, *args, seconds=5.0):
    """Run ``function``: a value or a one-line ChainruleError pass; anything else fails the case."""
    with bounded(seconds):
        try:
            return function(*args)
        except ChainruleError as err:
            assert "\n" not in str(err), f"a multi-line error: {err!r}"
            return None


def soup(tokens, max_size=12):
    """Text joined from grammar tokens and arbitrary characters: near enough to the grammar to get deep."""
    piece = st.one_of(st.sampled_from(tokens), st.text(max_size=3))
    return st.lists(piece, max_size=max_size).map("".join)


FORMULA_TOKENS = ["z", "yhat", "y", "+", "-", "*", "/", "**", "(", ")", ",", "exp", "log", "tanh", "sqrt", "abs",
                  "sign", "max", "min", "erf", "sigmoid", "0", "1", "2", "9", "0.5", "1e308", "1e-400", "999999999",
                  "#", "'", '"""', "__import__", ".", "pi", "e", "\\", "\n", "lambda", "[", "]", " ", "j", "nan", "inf"]


@FUZZ
@given(soup(FORMULA_TOKENS, 16))
@example("9**9**9")
@example("z**999999999")
@example("z**z**z**z**z**z**z**z**z**z**z**z**z**z**z**z**z**z**z**z**z**z**z**z**z")
@example("2**2**2**2**2")
@example("tanh(tanh(tanh(tanh(tanh(tanh(tanh(tanh(tanh(tanh(z))))))))))")
@example("(z+1)**1000")
@example('(yhat-y)**2 #"""+str(__import__("os").system("true"))+"""')
@example("z/0")
@example("log(0)")
def test_formulas(text):
    accepts_or_refuses(parse_formula, text, {"z": Z}, "activation formula")
    accepts_or_refuses(parse_formula, text, {"yhat": YHAT, "y": Y}, "loss formula")


INLINE_TOKENS = ["2", "3", "0", "-1", "10**9", " -> ", "->", " ; ", ";", "relu", "tanh", "sigmoid", "softmax",
                 " residual", " dropout=0.5", " dropout=nan", "dropout=", "[z*z]", "[z**99]", "huber(delta=1)",
                 "huber(delta=nan)", "leaky_relu(slope=inf)", "mse", "bce", "cross_entropy", "l2=0.1", "l1=inf",
                 "(", ")", "=", ",", " ", "[", "]", "#", "\n", "\x1b[31m", "layernorm", "layernorm(eps=0)",
                 "layernorm(affine=false)", "residual(", "residual(4 tanh -> layernorm)", " -> relu"]


@FUZZ
@given(soup(INLINE_TOKENS, 14))
@example("2 -> 2 relu -> 1 ; mse")
@example("1000000000 -> 1 ; mse")
@example("2 -> 2 [z*sigmoid(1.702*z)] -> 1 ; mse")
@example("4 -> 8 relu -> layernorm -> residual(8 tanh -> layernorm) -> relu -> 2 softmax ; cross_entropy")
@example("4 -> residual(residual(residual(4 -> 4)))) ; mse")
def test_inline_specs(text):
    accepts_or_refuses(spec.parse_inline, text)


VALID = {"name": "net", "description": "d", "network": {
    "inputs": 2, "layers": [{"units": 2, "activation": "relu", "dropout": 0.1}, {"type": "layernorm", "eps": 1e-5},
                            {"type": "residual", "layers": [{"units": 2}, {"type": "activation", "activation": "tanh"}]},
                            {"units": 1}],
    "loss": "mse", "l2": 0.0}, "optimizer": {"type": "adam", "lr": 1e-3, "betas": [0.9, 0.999]},
    "schedule": {"type": "step", "step_size": 10}, "training": {"epochs": 3, "batch_size": 2}}

LEAF = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                 st.sampled_from(["relu", "mse", "adam", "huber", "step", "softmax", "cross_entropy", "full"]))
VALUE = st.recursive(LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                     max_leaves=8)


def _paths(table, prefix=()):
    """Every (path of keys and indices) to a value in ``table``."""
    yield prefix
    items = table.items() if isinstance(table, dict) else enumerate(table) if isinstance(table, list) else ()
    for key, value in items:
        yield from _paths(value, prefix + (key,))


PATHS = [p for p in _paths(VALID) if p]


def _replaced(table, path, value):
    if not path:
        return value
    copy = dict(table) if isinstance(table, dict) else list(table)
    copy[path[0]] = _replaced(table[path[0]], path[1:], value)
    return copy


@FUZZ
@given(st.sampled_from(PATHS), VALUE)
@example(("network", "loss"), {"type": "huber", "delta": float("nan")})
@example(("network", "layers", 0, "activation"), {"type": "leaky_relu", "slope": 1e308})
@example(("network", "layers", 0, "activation"), ["relu"])
@example(("network", "layers", 0, "activation"), {"type": {"a": 1}})
@example(("network", "l2"), float("inf"))
@example(("network", "inputs"), 10 ** 9)
def test_dict_specs(path, value):
    accepts_or_refuses(spec.from_dict, _replaced(VALID, path, value))


TOML = """name = "net"
[network]
inputs = 2
layers = [ { units = 2, activation = "relu" }, { units = 1 } ]
loss = { type = "huber", delta = 1.0 }
[optimizer]
type = "sgd"
lr = 0.1
"""


@FUZZ
@given(st.integers(0, len(TOML)), st.integers(0, 8), soup(["[", "]", "{", "}", "=", "\"", "nan", "inf", "1e999",
                                                             "\n", "#", ",", "relu", " ", "'''", "\\"], 6))
@example(0, 0, "a = " + "[" * 600 + "]" * 600 + "\n")
@example(0, 0, "a = " + "{b = " * 600 + "}" * 600 + "\n")
def test_toml_specs(tmp_path_factory, at, cut, text):
    path = tmp_path_factory.mktemp("spec") / "net.toml"
    path.write_text(TOML[:at] + text + TOML[at + cut:], encoding="utf-8")
    accepts_or_refuses(spec.load, path)


CHECK_TOKENS = ["W_2", "W2", "W^{[2]}", "W^{l+1}", "\\delta_2", "delta2", "h_1", "a_1", "x", "y", "\\hat y",
                "^T", "^\\top", ".T", "\\odot", "\\circ", "\\cdot", "@", "*", "/", "+", "-", "(", ")", "{", "}",
                "\\frac", "\\sum", "sum(", ", axis=1)", "relu'(z_1)", "\\sigma'", "f'(z_1)", "1[z_1 > 0]",
                "np.where(z1 > 0, 1, 0)", "np.clip(", "**2", "^", "_", "\\left(", "\\right)", "'", "dL/dz_1",
                "\\partial", "\\", "$", "&", "%", "\\begin{align}", "\\\\", "\x00", "9" * 40]
DERIVATION = None


def _checker():
    global DERIVATION
    if DERIVATION is None:
        from derive import derive
        DERIVATION = Checker(derive("2 -> 2 relu -> 1 ; mse"))
    return DERIVATION


@FUZZ
@given(soup(CHECK_TOKENS, 14))
@example("(" * 500 + "W2" + ")" * 500)
@example("W2" + "^T" * 400)
@example("\\frac{" * 200)
def test_check_expressions(text):
    accepts_or_refuses(parse_expression, text)


@FUZZ
@given(st.sampled_from(["W2", "delta1", "b1", "W^{l}", "delta^l", "x", "dL/dW_1", "Q", ""]), soup(CHECK_TOKENS, 10))
def test_checked_gradients(wrt, text):
    accepts_or_refuses(_checker().check, wrt, text, seconds=20.0)


@FUZZ
@given(st.lists(st.one_of(soup(CHECK_TOKENS + [" = ", "=", "\n", "&=", "%", "#"], 10),
                          st.sampled_from(["\\delta_2 = (\\hat y - y)", "W2 = delta2 a1^T", "dL/db1 = delta1"])),
                max_size=6).map("\n".join))
def test_derivation_files(text):
    equations = accepts_or_refuses(read_equations, text)
    for _, lhs, rhs in (equations or [])[:3]:
        accepts_or_refuses(_checker().check, lhs, rhs, seconds=20.0)


FLAG_VALUES = st.one_of(st.sampled_from(["nan", "inf", "-inf", "1e308", "0", "-1", "full", "adam", "sgd", "step",
                                         "0.9,0.999", "0.9", "nan,nan", "step_size=10", "milestones=1,2", "=",
                                         "-delta2@h1.T", "\x1b[2J", "a\nb", "1" * 400]), st.text(max_size=6))
FLAGS = ["--optimizer", "--lr", "--momentum", "--betas", "--eps", "--weight-decay", "--schedule", "--schedule-arg",
         "--epochs", "--batch-size", "--clip-norm", "--clip-value", "--patience", "--seed", "--init", "--dtype"]


def run_cli(argv, capsys):
    """(exit code, stderr) of ``chainrule ARGV``; an exception other than SystemExit fails the case."""
    with bounded(30.0):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:
            code = exit_.code
    captured = capsys.readouterr()
    return code, captured.err


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(FLAGS), FLAG_VALUES), min_size=1, max_size=3))
@example([("--lr", "inf")])
@example([("--batch-size", "0")])
@example([("--betas", "nan,nan")])
def test_generate_flags(capsys, pairs):
    argv = ["generate", "2 -> 2 relu -> 1 ; mse"] + [word for pair in pairs for word in pair]
    code, err = run_cli(argv, capsys)
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("chainrule: error: "), (argv, err)


@FUZZ
@given(st.sampled_from(["derive", "check", "check-code", "generate", "list", "nonsense"]),
       st.lists(st.one_of(FLAG_VALUES, st.sampled_from(["--format", "tex", "md", "-o", "--wrt", "--grad", "--file",
                                                        "--timeout", "--convention", "--force", "-h"])), max_size=4))
def test_command_lines(tmp_path_factory, capsys, command, words):
    # run in a fresh folder so that no flag can name a file of the project
    folder = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        code, err = run_cli([command, "2 -> 2 relu -> 1 ; mse"] + words, capsys)
    assert code in (0, 1, 2), (words, code, err)
    assert "Traceback" not in err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("chainrule: error: "), (command, words, err)
