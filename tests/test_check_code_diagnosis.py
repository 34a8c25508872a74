"""check-code names the mistakes check names (issue 15, item 4): each case is one the issue reports."""
import functools
import textwrap

import numpy as np
import pytest

from derive import derive
from derive.check import compare
from derive.check.code import check_code


@functools.lru_cache(maxsize=None)
def _derived(spec):
    return derive(spec)


def verdicts(tmp_path, spec, body, function="backward"):
    """{parameter: its line of the report} and the exit code, for ``function`` in ``body``."""
    path = tmp_path / "student.py"
    path.write_text("import numpy as np\n\n" + textwrap.dedent(body))
    lines, code = check_code(_derived(spec), f"{path}:{function}")
    found = {}
    for line in lines:
        if line.startswith("  dL/d"):
            name, _, verdict = line[len("  dL/d"):].partition(": ")
            found[name] = verdict
    return found, code, "\n".join(lines)


SQUARE = "3 -> 3 tanh -> 3 tanh -> 1 ; mse"


def test_the_transpose_of_a_square_matrix_is_named(tmp_path):
    found, code, text = verdicts(tmp_path, SQUARE, """
        def backward(params, cache, X, T):
            N = X.shape[0]
            d3 = 2 / N * (cache["Yhat"] - T)
            d2 = (d3 @ params["W3"]) * (1 - cache["A2"] ** 2)
            d1 = (d2 @ params["W2"].T) * (1 - cache["A1"] ** 2)     # W2 is square: W2.T runs, and is wrong
            return {"W3": d3.T @ cache["A2"], "b3": d3.sum(axis=0), "W2": d2.T @ cache["A1"],
                    "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0)}
    """)
    assert code == 1
    assert found["W3"] == found["W2"] == found["b2"] == "correct"
    assert found["W1"].startswith("different: W2 transposed where W2 belongs: batch-first, dL/dA1 = Δ2 W2"), text
    assert "d @ W2, not d @ W2.T" in found["W1"]
    assert found["b1"].startswith("different: follows from dL/dW1's mistake"), text


def test_another_activations_derivative_is_named(tmp_path):
    found, code, text = verdicts(tmp_path, "3 -> 4 tanh -> 1 sigmoid ; bce", """
        def backward(params, cache, X, T):
            N = X.shape[0]
            d2 = (cache["Yhat"] - T) / N
            d1 = (d2 @ params["W2"]) * cache["A1"] * (1 - cache["A1"])     # sigmoid's a(1 - a) in a tanh layer
            return {"W2": d2.T @ cache["A1"], "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0)}
    """)
    assert code == 1 and found["W2"] == "correct"
    assert found["W1"].startswith("different: wrong activation derivative: layer 1 uses tanh, whose derivative "
                                  "is 1 - a², and yours is sigmoid's, a(1 - a)"), text


def test_another_activations_derivative_at_z_is_named(tmp_path):
    found, code, text = verdicts(tmp_path, "3 -> 4 tanh -> 1 sigmoid ; bce", """
        def sigmoid(z):
            return 1 / (1 + np.exp(-z))

        def backward(params, cache, X, T):
            N = X.shape[0]
            d2 = (cache["Yhat"] - T) / N
            s = sigmoid(cache["Z1"])
            d1 = (d2 @ params["W2"]) * s * (1 - s)                         # sigmoid'(Z1) in a tanh layer
            return {"W2": d2.T @ cache["A1"], "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0)}
    """)
    assert found["W1"].startswith("different: wrong activation derivative: layer 1 uses tanh, not sigmoid"), text


@pytest.mark.parametrize("width", [4, 3])  # 3 = N: the wrong sum has the bias's shape and only its values differ
def test_a_bias_summed_over_the_wrong_axis_names_the_axis(tmp_path, width):
    found, code, text = verdicts(tmp_path, f"2 -> {width} relu -> 1 ; mse", """
        def backward(params, cache, X, T):
            N = X.shape[0]
            d2 = 2 / N * (cache["Yhat"] - T)
            d1 = (d2 @ params["W2"]) * (cache["Z1"] > 0)
            return {"W2": d2.T @ cache["A1"], "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=1)}
    """)
    assert code == 1 and found["W1"] == "correct"
    assert found["b1"] == ("different: summed over the wrong axis: yours sums Δ1 over axis=1 (each sample's "
                           "features); the bias gradient sums it over the batch, axis=0"), text


def test_a_missing_mean_with_an_l2_penalty_is_named(tmp_path):
    found, code, text = verdicts(tmp_path, "3 -> 4 relu -> 1 ; mse ; l2=0.1", """
        def backward(params, cache, X, T):
            d2 = 2 * (cache["Yhat"] - T)                                    # no 1/N
            d1 = (d2 @ params["W2"]) * (cache["Z1"] > 0)
            return {"W2": d2.T @ cache["A1"] + 0.1 * params["W2"], "b2": d2.sum(axis=0),
                    "W1": d1.T @ X + 0.1 * params["W1"], "b1": d1.sum(axis=0)}
    """)
    assert code == 1
    assert found["W2"].startswith("different: constant factor in the loss's part: yours is 3 times it (the 1/N of "
                                  "the mean over the batch, N = 3 at the check's points); the L2 penalty's 0.1·W2 is right"), text
    for later in ("b2", "W1", "b1"):
        assert found[later] == "different: follows from dL/dW2's mistake (constant factor in Δ2)", text


def test_one_mistake_propagated_to_several_layers_is_named_once_at_its_source(tmp_path):
    found, code, text = verdicts(tmp_path, "3 -> 4 sigmoid -> 4 sigmoid -> 2 sigmoid ; sse_half", """
        def backward(params, cache, X, T):
            N = X.shape[0]
            d3 = (cache["Yhat"] - T) * cache["Yhat"] * (1 - cache["Yhat"]) / N
            d2 = d3 @ params["W3"]                                          # sigmoid'(Z2) left out
            d1 = (d2 @ params["W2"]) * cache["A1"] * (1 - cache["A1"])
            return {"W3": d3.T @ cache["A2"], "b3": d3.sum(axis=0), "W2": d2.T @ cache["A1"],
                    "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0)}
    """)
    assert found["W3"] == found["b3"] == "correct"
    assert found["W2"].startswith("different: missing activation derivative: Δ2 needs ⊙ sigmoid'(Z2)"), text
    for later in ("b2", "W1", "b1"):
        assert found[later] == "different: follows from dL/dW2's mistake (missing activation derivative in Δ2)", text
    assert text.count("missing activation derivative") == 4


def test_the_same_mistake_at_every_layer_is_named_at_each_source(tmp_path):
    found, code, text = verdicts(tmp_path, "3 -> 4 sigmoid -> 4 sigmoid -> 2 sigmoid ; sse_half", """
        def backward(params, cache, X, T):
            N = X.shape[0]
            d3 = (cache["Yhat"] - T) * cache["Yhat"] * (1 - cache["Yhat"]) / N
            d2 = d3 @ params["W3"]                                          # no sigmoid' in either hidden layer
            d1 = d2 @ params["W2"]
            return {"W3": d3.T @ cache["A2"], "b3": d3.sum(axis=0), "W2": d2.T @ cache["A1"],
                    "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0)}
    """)
    assert found["W2"].startswith("different: missing activation derivative: Δ2 needs ⊙ sigmoid'(Z2)"), text
    assert found["W1"].startswith("different: missing activation derivative: Δ1 needs ⊙ sigmoid'(Z1), besides "
                                  "dL/dW2's mistake"), text
    assert found["b1"].startswith("different: follows from dL/dW1's mistake"), text


def test_already_wrong_nearer_the_output_only_where_the_gradient_depends_on_it(tmp_path):
    body = """
        def backward(params, cache, X, T, axis=1, above=0.0):
            N = X.shape[0]
            d3 = 2 / N * (cache["Yhat"] - T)
            d2 = (d3 @ params["W3"]) * (cache["Z2"] > 0) + above * np.cos(cache["Z2"])
            d1 = (d2 @ params["W2"]) * (cache["Z1"] > 0) + 0.01 * np.sin(cache["Z1"])   # an unusual mistake
            return {"W3": d3.T @ cache["A2"], "b3": d3.sum(axis=axis), "W2": d2.T @ cache["A1"],
                    "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0)}

        def unusual_above(params, cache, X, T):
            return backward(params, cache, X, T, axis=0, above=0.01)
    """
    spec = "2 -> 4 relu -> 4 relu -> 1 ; mse"
    found, code, text = verdicts(tmp_path, spec, body)
    assert found["b3"].startswith("different: summed over the wrong axis"), text
    assert found["W2"] == found["b2"] == "correct"
    assert found["W1"].startswith("different: no usual mistake"), text
    assert "already wrong" not in text  # W1 does not depend on db3, only on Δ3, which dW3 shows right
    found, code, text = verdicts(tmp_path, spec, body, "unusual_above")
    assert found["W2"].startswith("different: no usual mistake"), text
    assert "(dL/dW2 is already wrong; fix the layers nearer the output first)" in text


STABLE = """
    def backward(params, cache, X, T, eps=1e-8):
        Y = cache["Yhat"]
        dY = -(T / (Y + eps) - (1 - T) / (1 - Y + eps)) / T.size            # bce (a mean), stabilized
        d2 = dY * Y * (1 - Y)
        d1 = (d2 @ params["W2"]) * (1 - cache["A1"] ** 2)
        return {"W2": d2.T @ cache["A1"], "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0)}

    def half_eps(params, cache, X, T):
        return backward(params, cache, X, T, eps=0.5)
"""


def test_correct_code_stabilized_with_an_epsilon_passes(tmp_path):
    found, code, text = verdicts(tmp_path, "3 -> 4 tanh -> 2 sigmoid ; bce", STABLE)
    assert code == 0 and set(found.values()) == {"correct"}, text


def test_an_epsilon_large_enough_to_matter_still_fails(tmp_path):
    found, code, text = verdicts(tmp_path, "3 -> 4 tanh -> 2 sigmoid ; bce", STABLE, "half_eps")
    assert code == 1 and found["W2"].startswith("different"), text


LAYERNORM = """
    def layernorm_backward(dout, x, gamma, eps=1e-5, paths=True):      # cs231n's layout: one sample per row
        mu = x.mean(axis=1, keepdims=True)
        std = np.sqrt(x.var(axis=1, keepdims=True) + eps)
        xhat = (x - mu) / std
        g = dout * gamma
        dx = (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True)) / std
        return (dx if paths else g / std), (dout * xhat).sum(axis=0), dout.sum(axis=0)

    def backward(params, cache, X, T, paths=True):
        d3 = 2 * (cache["Yhat"] - T) / T.size
        dA1, dgamma, dbeta = layernorm_backward(d3 @ params["W3"], cache["A1"], params["gamma2"], paths=paths)
        d1 = dA1 * (cache["Z1"] > 0)
        assert cache["mu2"].shape == cache["sigma2"].shape == (X.shape[0], 1)
        assert np.allclose(cache["Xhat2"], (cache["A1"] - cache["mu2"]) / cache["sigma2"])
        return {"W3": d3.T @ cache["A2"], "b3": d3.sum(axis=0), "gamma2": dgamma, "beta2": dbeta,
                "W1": d1.T @ X, "b1": d1.sum(axis=0)}

    def constant_statistics(params, cache, X, T):
        return backward(params, cache, X, T, paths=False)
"""


def test_a_layer_norm_network_is_checked_and_its_statistics_paths_named(tmp_path):
    spec = "3 -> 4 relu -> layernorm -> 2 ; mse"
    found, code, text = verdicts(tmp_path, spec, LAYERNORM)
    assert code == 0 and list(found) == ["W3", "b3", "gamma2", "beta2", "W1", "b1"], text
    assert set(found.values()) == {"correct"}, text
    found, code, text = verdicts(tmp_path, spec, LAYERNORM, "constant_statistics")
    assert found["gamma2"] == "correct"
    assert found["W1"].startswith("different: layer norm 2's backward without the paths through μ2 and σ2"), text
    assert found["b1"] == "different: follows from dL/dW1's mistake (layer norm 2's backward in dL/dA1)", text


def test_a_missing_penalty_and_a_gradient_never_stored_are_named(tmp_path):
    found, code, text = verdicts(tmp_path, "3 -> 4 relu -> 1 ; mse ; l2=0.1", """
        def backward(params, cache, X, T):
            N = X.shape[0]
            d2 = 2 / N * (cache["Yhat"] - T)
            d1 = (d2 @ params["W2"]) * (cache["Z1"] > 0)
            return {"W2": d2.T @ cache["A1"] + 0.2 * params["W2"], "b2": d2.sum(axis=0),
                    "W1": d1.T @ X, "b1": np.zeros(4)}
    """)
    assert found["W2"] == "different: the L2 penalty's gradient twice: it is 0.1·W2, once", text
    assert found["b2"] == "correct"
    assert found["W1"] == "different: missing the L2 penalty's gradient: add 0.1·W1", text
    assert found["b1"] == "different: zero: yours is 0 everywhere; was it never computed, or never stored?", text


def test_points_where_the_derivation_itself_overflows_give_no_verdict(tmp_path, monkeypatch):
    def huge(self, rng=None):  # every input and parameter 900: the softmax overflows
        return {q.symbol: np.full(tuple(int(s.subs(compare.N, compare.BATCH)) for s in q.symbol.shape), 900.0)
                for q in self.q.values() if q.key in self.leaf_keys}
    monkeypatch.setattr(compare.Comparer, "leaves", huge)
    found, code, text = verdicts(tmp_path, "2 -> 3 softmax ; cross_entropy", """
        def backward(params, cache, X, T):
            d1 = (cache["Yhat"] - T) / X.shape[0]
            return {"W1": d1.T @ X, "b1": d1.sum(axis=0)}
    """)
    assert code == 1 and found["W1"].startswith("could not decide: the derivation's own gradient is not finite"), text
