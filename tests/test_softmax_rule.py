"""A softmax output with a loss other than cross-entropy: the softmax Jacobian-vector rule
δ = (diag(ŷ) - ŷ ŷᵀ) dL/dŷ, written ŷ ⊙ (g - 1 ŷᵀ g) and, for a batch, Ŷ ⊙ (G - 1 1ᵀ (Ŷ ⊙ G)).
Accepted by the spec, proved by derive.verify, printed, checked by derive.check and emitted as
code whose gradients match central differences and PyTorch autograd."""
import dataclasses

import numpy as np
import pytest
import sympy as sp

import derive
from codegen.emit import generate
from derive.errors import ChainruleError
from derive.verify import verify

from gradcheck import central_differences, load_module, relative_error
from test_codegen import test_logits_of_1000_are_finite_without_warnings as logits_stay_finite

LOSSES = ["mse", "sse_half", "mae", "huber(delta=0.5)", "[(yhat - y)**4/4]"]


def spec(loss: str, hidden: str = "4 tanh") -> str:
    return f"3 -> {hidden} -> 3 softmax ; {loss}"


# -- the spec -----------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", LOSSES)
def test_softmax_output_is_accepted_with_any_unfused_loss(loss):
    network = derive.parse_inline(spec(loss))
    assert network.layers[-1].activation.name == "softmax" and network.outputs == 3


@pytest.mark.parametrize("text, message", [
    ("3 -> 4 softmax -> 3 softmax ; mse", "layer 1: softmax is only supported on the output layer"),
    ("3 -> 3 softmax residual ; mse", "the softmax output layer cannot be residual"),
    ("3 -> 4 tanh -> 3 softmax ; bce", "loss bce needs a sigmoid output layer, not softmax"),
    ("3 -> 4 tanh -> 3 sigmoid ; cross_entropy", "loss cross_entropy needs a softmax output layer, not sigmoid"),
    ("3 -> 4 tanh -> 1 softmax ; mse", "a softmax output needs at least 2 units"),
])
def test_what_stays_rejected(text, message):
    with pytest.raises(ChainruleError, match=message):
        derive.parse_inline(text)


# -- the proof ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["2 -> 3 softmax ; mse", "2 -> 2 tanh -> 3 softmax ; huber(delta=0.5)",
                                  "2 -> 3 softmax ; [(yhat - y)**4/4] ; l2=0.1"])
def test_rule_is_proved_with_three_outputs(text):
    d = derive.derive(text)
    report = verify(d, cap=3)
    assert report.ok, report.text()
    L = len(d.network.layers)
    assert {p.target for p in report.proofs} >= {f"δ{L}", f"Δ{L}"}  # the rule itself is proved, in both forms


@pytest.mark.parametrize("loss", ["mse", "sse_half"])
def test_rule_cancels_symbolically(loss):
    report = verify(derive.derive(f"2 -> 3 softmax ; {loss}"), cap=3, exact=True)
    assert report.ok and {p.method for p in report.proofs} == {"exact"}, report.text()


def test_verify_rejects_the_elementwise_rule():
    """Ŷ ⊙ G (the Jacobian's diagonal alone, as if softmax were element-wise) is caught."""
    d = derive.derive("2 -> 2 tanh -> 3 softmax ; mse")
    i, step = next((i, s) for i, s in enumerate(d.steps) if s.target.key == "Delta2")
    q = d.batch.quantities
    d.steps[i] = dataclasses.replace(step, rhs=sp.HadamardProduct(q["Yhat"].symbol, q["dL_dYhat"].symbol))
    report = verify(d, cap=3)
    failures = report.failures()
    assert "Δ2" in {p.target for p in failures} and all(p.form == "batch" for p in failures)


# -- printing -----------------------------------------------------------------------------------

def test_text_and_latex_show_the_rule_and_say_why():
    d = derive.derive("2 -> 3 tanh -> 3 softmax ; mse")
    text = d.text()
    assert "δ2 = ŷ ⊙ (∂L/∂ŷ - 1_3 ŷᵀ ∂L/∂ŷ)" in text
    assert "Δ2 = Ŷ ⊙ (∂L/∂Ŷ - 1_3 1_3ᵀ (Ŷ ⊙ ∂L/∂Ŷ))" in text
    assert text.count("chain rule through softmax, which couples the outputs of a column") == 2
    latex = d.latex()
    assert (r"\delta_{2} = \hat{y} \odot \left(\frac{\partial L}{\partial \hat{y}} - \mathbf{1}_{3} \hat{y}^{\top} "
            r"\frac{\partial L}{\partial \hat{y}}\right)") in latex
    assert (r"\Delta_{2} = \hat{Y} \odot \left(\frac{\partial L}{\partial \hat{Y}} - \mathbf{1}_{3} \mathbf{1}_{3}^{\top} "
            r"\left(\hat{Y} \odot \frac{\partial L}{\partial \hat{Y}}\right)\right)") in latex
    assert r"diag($\hat{y}$) minus $\hat{y}$ times its transpose" in latex
    # the batch-sum ones keep their N
    assert r"\mathbf{1}_{N}^{\top}" in latex and r"\Delta_{2} \mathbf{1}_{N}" in latex


def test_check_accepts_the_rule_and_names_the_elementwise_one_wrong():
    d = derive.derive("2 -> 3 tanh -> 3 softmax ; mse")
    assert derive.check(d, "delta2", r"\hat y \odot (dL/dyhat - 1 \hat y^T dL/dyhat)").equal
    assert not derive.check(d, "delta2", r"\hat y \odot dL/dyhat").equal
    assert derive.check(d, "W2", r"\delta_2 h_1^\top").equal


# -- the emitted code ---------------------------------------------------------------------------

def _data(network, n=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, network.inputs))
    T = rng.dirichlet(np.ones(network.outputs), size=n)  # probability-like targets, as for a softmax
    return X, T


def _torch_reference(network, params, X, T):
    """torch.softmax and the loss with PyTorch's own reduction, by autograd."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    w = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    a = torch.tensor(X, dtype=torch.float64)
    t = torch.tensor(T, dtype=torch.float64)
    for l in range(1, len(network.layers) + 1):
        z = a @ w[f"W{l}"].T + w[f"b{l}"]
        a = torch.softmax(z, dim=1) if l == len(network.layers) else torch.tanh(z)
    losses = {
        "mse": lambda: F.mse_loss(a, t),
        "sse_half": lambda: 0.5 * F.mse_loss(a, t, reduction="sum") / t.shape[0],
        "mae": lambda: F.l1_loss(a, t),
        "huber": lambda: F.huber_loss(a, t, delta=0.5),
        "custom": lambda: ((a - t) ** 4 / 4).mean(),
    }
    value = losses[network.loss.name]()
    value.backward()
    return float(value.detach()), {k: v.grad.numpy() for k, v in w.items()}


@pytest.mark.parametrize("loss", LOSSES)
def test_emitted_gradients_match_central_differences_and_pytorch(loss):
    network = derive.parse_inline(spec(loss))
    module = load_module(network)
    params = module.init_params(seed=1, init="torch")
    X, T = _data(network)
    value, grads = module.loss_and_grads(params, X, T)
    numeric = central_differences(module, params, X, T)
    torch_value, torch_grads = _torch_reference(network, params, X, T)
    assert abs(value - torch_value) < 1e-10
    for name in params:
        assert relative_error(grads[name], numeric[name]) < 1e-6, name
        assert np.abs(grads[name] - torch_grads[name]).max() < 1e-10, name


def test_emitted_code_sums_each_column_once():
    code = generate(derive.derive(spec("mse")))
    line = next(line for line in code.splitlines() if ".sum(axis=1, keepdims=True)" in line)
    assert "(Yhat * dL_dYhat).sum(axis=1, keepdims=True)" in line and line.strip().startswith("Delta2")
    assert line.endswith("# (eq. 19)")


def test_logits_of_1000_stay_finite():
    logits_stay_finite(spec("mse"))
