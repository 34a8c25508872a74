"""chainrule check-code: a person's NumPy backward pass, run in a child process and diagnosed."""
import textwrap
import time
from pathlib import Path

import pytest

from codegen.cli import main

SIMPLE = "2 -> 2 relu -> 1 ; mse"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "student_backward.py"


def run(capsys, spec, target, *extra):
    code = main(["check-code", spec, target, *extra])
    return code, capsys.readouterr()


def write(tmp_path, body):
    path = tmp_path / "student.py"
    path.write_text("import numpy as np\n\n" + textwrap.dedent(body))
    return path


def test_a_right_backward_pass_passes(capsys):
    code, out = run(capsys, SIMPLE, f"{EXAMPLE}:backward")
    assert code == 0, out.out
    assert out.out.count(": correct") == 4


def test_a_missing_mean_is_named(capsys):
    code, out = run(capsys, SIMPLE, f"{EXAMPLE}:backward_no_mean")
    assert code == 1 and "1/N of the mean" in out.out


def test_a_missing_activation_derivative_and_a_missing_sum_are_named(capsys):
    code, out = run(capsys, SIMPLE, f"{EXAMPLE}:backward_no_relu_prime")
    assert code == 1
    assert "dL/dW1: different: missing activation derivative" in out.out
    assert "dL/db1: different: missing sum over the batch" in out.out
    assert "dL/dW2: correct" in out.out


def test_transposed_and_sign_on_a_sigmoid_network(tmp_path, capsys):
    path = write(tmp_path, """
        def backward(params, cache, X, T):
            N = X.shape[0]
            d3 = (cache["Yhat"] - T) * cache["Yhat"] * (1 - cache["Yhat"]) / N
            d2 = (d3 @ params["W3"]) * cache["A2"] * (1 - cache["A2"])
            d1 = (d2 @ params["W2"]) * cache["A1"] * (1 - cache["A1"])
            return {"W3": d3.T @ cache["A2"], "b3": -d3.sum(axis=0),
                    "W2": cache["A1"].T @ d2, "b2": d2.sum(axis=0),
                    "dL_dW1": d1.T @ X, "db1": d1.sum(axis=0)}
    """)
    code, out = run(capsys, "3 -> 4 sigmoid -> 4 sigmoid -> 2 sigmoid ; sse_half", f"{path}:backward")
    assert code == 1
    assert "dL/db3: different: sign" in out.out
    assert "dL/dW2: different: transposed" in out.out
    assert "dL/dW1: correct" in out.out and "dL/dW3: correct" in out.out


@pytest.mark.parametrize("body, words", [
    ("def backward(params, cache, X, T):\n    raise RuntimeError('oops')\n", "raised an exception: RuntimeError: oops"),
    ("def backward(params, cache, X, T):\n    return 3\n", "not a dict"),
    ("def backward(params, cache, X, T):\n    import os\n    os._exit(3)\n", "crashed"),
    ("raise SystemExit('no import for you')\n", "importing the file failed"),
])
def test_failures_of_the_code_are_reported_not_inherited(tmp_path, capsys, body, words):
    path = write(tmp_path, body)
    code, out = run(capsys, SIMPLE, f"{path}:backward")
    assert code == 1
    assert words in out.out


def test_a_hang_is_stopped_by_the_time_limit(tmp_path, capsys):
    path = write(tmp_path, "def backward(params, cache, X, T):\n    while True:\n        pass\n")
    start = time.monotonic()
    code, out = run(capsys, SIMPLE, f"{path}:backward", "--timeout", "1")
    assert code == 1 and "did not finish within 1 s" in out.out
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("target", ["nowhere.py:backward", "no_colon", f"{EXAMPLE}:not_there", f"{EXAMPLE}:1x"])
def test_a_target_that_cannot_be_found_exits_2(capsys, target):
    code, out = run(capsys, SIMPLE, target)
    assert code == 2 and out.err.startswith("chainrule: error: ")


def test_dropout_masks_are_in_the_cache_and_a_missing_mask_is_named(tmp_path, capsys):
    path = write(tmp_path, """
        def backward(params, cache, X, T, use_mask=True):
            N = X.shape[0]
            d2 = 2 / N * (cache["Yhat"] - T)
            d1 = (d2 @ params["W2"]) * (cache["Z1"] > 0) * (cache["M1"] if use_mask else 1)
            return {"W2": d2.T @ cache["A1"], "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0)}

        def no_mask(params, cache, X, T):
            return backward(params, cache, X, T, use_mask=False)
    """)
    spec = "2 -> 3 relu dropout=0.5 -> 1 ; mse"
    assert run(capsys, spec, f"{path}:backward")[0] == 0
    code, out = run(capsys, spec, f"{path}:no_mask")
    assert code == 1 and "dL/dW1: different: missing dropout mask" in out.out


def test_the_gradient_of_the_input_is_checked_when_returned(tmp_path, capsys):
    path = write(tmp_path, """
        def backward(params, cache, X, T, relu_prime=True):
            N = X.shape[0]
            d2 = 2 / N * (cache["Yhat"] - T)
            d1 = (d2 @ params["W2"]) * ((cache["Z1"] > 0) if relu_prime else 1)
            return {"W2": d2.T @ cache["A1"], "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0),
                    "dX": d1 @ params["W1"]}

        def no_relu_prime(params, cache, X, T):
            return backward(params, cache, X, T, relu_prime=False)
    """)
    spec = "3 -> 2 relu -> 1 ; mse"
    code, out = run(capsys, spec, f"{path}:backward")
    assert code == 0 and "dL/dX: correct" in out.out
    code, out = run(capsys, spec, f"{path}:no_relu_prime")
    assert code == 1 and "dL/dW1: different: missing activation derivative: Δ1 needs ⊙ relu'(Z1)" in out.out
    assert "dL/dX: different: follows from dL/dW1's mistake (missing activation derivative in Δ1)" in out.out
    assert "correct: dL/dX = Δ1 W1" in out.out


def test_a_huber_backward_pass_with_np_clip_and_np_where(tmp_path, capsys):
    path = write(tmp_path, """
        def backward(params, cache, X, T, scale=None):
            d2 = np.clip(cache["Yhat"] - T, -1, 1) / (scale or T.size)      # the mean over all elements
            d1 = np.where(cache["Z1"] > 0, d2 @ params["W2"], 0.0)
            return {"W2": d2.T @ cache["A1"], "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0)}

        def no_mean_over_the_batch(params, cache, X, T):
            return backward(params, cache, X, T, scale=T.shape[1])
    """)
    spec = "2 -> 3 relu -> 2 ; huber"
    code, out = run(capsys, spec, f"{path}:backward")
    assert code == 0 and out.out.count(": correct") == 4, out.out
    code, out = run(capsys, spec, f"{path}:no_mean_over_the_batch")
    assert code == 1 and out.out.count("the 1/N of the mean over the batch") == 1, out.out  # named at its source
    assert "dL/dW2: different: constant factor: yours is 3 times the gradient (the 1/N" in out.out
    assert out.out.count("follows from dL/dW2's mistake (constant factor in Δ2)") == 3, out.out


def test_two_mistakes_in_a_backward_pass_are_both_named(tmp_path, capsys):
    path = write(tmp_path, """
        def backward(params, cache, X, T):
            d2 = 2 * (cache["Yhat"] - T)                       # no 1/N of the mean
            d1 = d2 @ params["W2"]                             # and no relu'(Z1)
            return {"W2": cache["A1"].T @ d2, "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0)}
    """)
    code, out = run(capsys, "3 -> 2 relu -> 1 ; mse", f"{path}:backward")
    assert code == 1
    assert "dL/dW2: different: two mistakes: transposed: yours is (2, 1)" in out.out
    assert "the 1/N of the mean over the batch" in out.out.split("dL/dW2:")[1].splitlines()[0]
    assert "dL/dW1: different: missing activation derivative: Δ1 needs ⊙ relu'(Z1), besides dL/dW2's mistake " \
           "(constant factor in Δ2)" in out.out


def test_softmax_read_as_element_wise_is_named_in_code_with_any_loss(tmp_path, capsys):
    path = write(tmp_path, """
        def backward(params, cache, X, T, elementwise=False, fused=False):
            Y = cache["Yhat"]
            G = -T / Y / X.shape[0] if fused else 2 * (Y - T) / T.size           # dL/dYhat
            if elementwise:
                d2 = Y * (1 - Y) * G                                             # the diagonal only
            else:
                d2 = Y * (G - (Y * G).sum(axis=1, keepdims=True))                # each row times its Jacobian
            d1 = (d2 @ params["W2"]) * (1 - cache["A1"] ** 2)
            return {"W2": d2.T @ cache["A1"], "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0),
                    "dX": d1 @ params["W1"]}

        def elementwise(params, cache, X, T):
            return backward(params, cache, X, T, elementwise=True)

        def fused(params, cache, X, T):
            return backward(params, cache, X, T, fused=True)

        def fused_elementwise(params, cache, X, T):
            return backward(params, cache, X, T, elementwise=True, fused=True)
    """)
    mse, ce = "3 -> 4 tanh -> 3 softmax ; mse", "3 -> 4 tanh -> 3 softmax ; cross_entropy"
    for spec, right in ((mse, "backward"), (ce, "fused")):
        code, out = run(capsys, spec, f"{path}:{right}")
        assert code == 0 and out.out.count(": correct") == 5, out.out
    named = ("different: softmax is not element-wise: ŷ ⊙ (1 − ŷ) is only the diagonal of each sample's Jacobian "
             "diag(ŷ) − ŷŷᵀ; with the off-diagonal −ŷ_i ŷ_j terms, ")
    code, out = run(capsys, mse, f"{path}:elementwise")
    assert code == 1 and out.out.count(named + "Δ2 = Ŷ ⊙ (dL/dŶ - (Ŷ ⊙ dL/dŶ) 1 1ᵀ)\n") == 1, out.out
    assert out.out.count("follows from dL/dW2's mistake (softmax read as element-wise in Δ2)") == 4, out.out
    code, out = run(capsys, ce, f"{path}:fused_elementwise")
    assert code == 1 and out.out.count(named + "the Jacobian times g = dL/dŷ is ŷ ⊙ (g − 1 ŷᵀ g), which with the "
                                               "categorical cross-entropy is Δ2 = (1/N)·(Ŷ - Y)\n") == 1, out.out
    assert out.out.count("follows from dL/dW2's mistake (softmax read as element-wise in Δ2)") == 4, out.out
