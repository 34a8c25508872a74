"""check-code --op NAME FILE.py:FUNCTION: one op's backward function, cs231n style (issue 15, item 5)."""
import textwrap

import pytest

from codegen.cli import main
from derive.check.code import ops
from derive.check.options import OP_CONTRACT

OPS = """
import numpy as np

def affine_backward(dout, x, w, b):
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)

def affine_mistakes(dout, x, w, b):
    return dout @ w.T, dout.T @ x, dout.sum(axis=1)

def relu_backward(dout, x):
    return dout * (x > 0)

def relu_no_derivative(dout, x):
    return dout

def sigmoid_backward(dout, x):
    s = 1 / (1 + np.exp(-x))
    return dout * s * (1 - s)

def tanh_as_sigmoid(dout, x):
    a = np.tanh(x)
    return dout * a * (1 - a)

def softmax_loss(x, y):
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    N = x.shape[0]
    loss = -np.log(p[np.arange(N), y]).mean()
    dx = p.copy()
    dx[np.arange(N), y] -= 1
    return loss, dx / N

def softmax_no_mean(x, y):
    loss, dx = softmax_loss(x, y)
    return loss * 2, dx * x.shape[0]

def layernorm_backward(dout, x, gamma, beta, eps=1e-5, paths=True):
    mu = x.mean(axis=1, keepdims=True)
    std = np.sqrt(x.var(axis=1, keepdims=True) + eps)
    xhat = (x - mu) / std
    g = dout * gamma
    dx = (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True)) / std
    return (dx if paths else g / std), (dout * xhat).sum(axis=0), dout.sum(axis=0)

def layernorm_constant_statistics(dout, x, gamma, beta):
    return layernorm_backward(dout, x, gamma, beta, paths=False)

def affine_one_value(dout, x, w, b):
    return dout @ w.T
"""


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    path = tmp_path_factory.mktemp("ops") / "layers.py"
    path.write_text(textwrap.dedent(OPS))
    return path


def run(capsys, *args):
    code = main(["check-code", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("op, function", [("affine", "affine_backward"), ("relu", "relu_backward"),
                                          ("sigmoid", "sigmoid_backward"), ("softmax", "softmax_loss"),
                                          ("layernorm", "layernorm_backward")])
def test_a_right_backward_function_passes(capsys, module, op, function):
    code, out, _ = run(capsys, "--op", op, f"{module}:{function}")
    assert code == 0 and "different" not in out, out
    assert out.count(": correct") == {"affine": 3, "softmax": 2, "layernorm": 3}.get(op, 1), out


@pytest.mark.parametrize("op, function, lines", [
    ("affine", "affine_mistakes", ["dx: correct", "dw: different: transposed: yours is (4, 5), the transpose of dw",
                                   "db: different: summed over the wrong axis: yours sums dout over axis=1"]),
    ("relu", "relu_no_derivative", ["dx: different: missing activation derivative: dx needs ⊙ relu'(x)"]),
    ("tanh", "tanh_as_sigmoid", ["dx: different: wrong activation derivative: the op is tanh, whose derivative is "
                                 "1 - a², and yours is sigmoid's, a(1 - a) of its output"]),
    ("softmax", "softmax_no_mean", ["dx: different: constant factor: yours is 3 times the gradient (the 1/N of "
                                    "the mean over the batch, N = 3 at the check's points)", "loss: different: yours = "]),
    ("layernorm", "layernorm_constant_statistics", ["dgamma: correct", "dbeta: correct",
                                                    "dx: different: its backward without the paths through μ and σ"]),
    ("affine", "affine_one_value", ["affine_one_value raised an exception: TypeError: affine_one_value returned 1 value(s); it must "
                                    "return dx, dw, db"]),
])
def test_a_mistake_in_one_op_is_named(capsys, module, op, function, lines):
    code, out, _ = run(capsys, "--op", op, f"{module}:{function}")
    assert code == 1
    for line in lines:
        assert f"  {line}" in out, out


def test_every_elementwise_activation_is_an_op():
    assert {"affine", "softmax", "layernorm", "relu", "sigmoid", "tanh", "leaky_relu", "gelu"} <= set(ops())
    assert "identity" not in ops()
    for name in ops():  # check-code --help lists every op it checks
        assert name in OP_CONTRACT, name


@pytest.mark.parametrize("args, words", [
    (["--op", "conv", "x.py:f"], "unknown op 'conv'; choose one of: affine, softmax, layernorm, "),
    (["--op", "relu", "2 -> 1 ; mse", "x.py:f"], "--op relu takes one FILE.py:FUNCTION and no spec"),
    (["2 -> 1 ; mse"], "give SPEC FILE.py:FUNCTION, or --op NAME FILE.py:FUNCTION"),
])
def test_a_wrong_op_command_exits_2(capsys, args, words):
    code, out, err = run(capsys, *args)
    assert code == 2 and err.startswith("chainrule: error: ") and words in err and not out


NG = """
import numpy as np

def linear_backward(dZ, cache):                  # deeplearning.ai's layout: one column per sample
    A_prev, W, b = cache
    m = A_prev.shape[1]
    dW = 1 / m * np.dot(dZ, A_prev.T)
    db = 1 / m * np.sum(dZ, axis=1, keepdims=True)
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db

def affine(dout, x, w, b):                        # the README's adapter
    m = x.shape[0]                                # Ng's dZ has no 1/m: it is m times dL/dZ
    dA_prev, dW, db = linear_backward(m * dout.T, (x.T, w.T, b.reshape(-1, 1)))
    return dA_prev.T / m, dW.T, db.ravel()
"""


def test_the_readmes_adapter_for_ngs_linear_backward(capsys, tmp_path):
    path = tmp_path / "ng.py"
    path.write_text(textwrap.dedent(NG))
    code, out, _ = run(capsys, "--op", "affine", f"{path}:affine")
    assert code == 0 and out.count(": correct") == 3, out


def test_an_op_runs_in_the_same_contained_child(capsys, tmp_path):
    path = tmp_path / "hang.py"
    path.write_text("def relu_backward(dout, x):\n    print('spinning')\n    while True:\n        pass\n")
    code, out, _ = run(capsys, "--op", "relu", f"{path}:relu_backward", "--timeout", "1")
    assert code == 1 and "did not finish within 1 s (--timeout)" in out and "| spinning" in out, out
