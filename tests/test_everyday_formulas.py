"""Everyday custom formulas end to end: derive, verify, generate, import, gradient_check, torch
autograd of the same network, and the module's functions without a NumPy warning."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from derive import derive
from derive.ops.activations import make_activation
from derive.verify import verify
from tests.gradcheck import load_module

#: formula, the same function in torch, whether it needs z > 0 (log), the kinks of its derivative.
FORMULAS = [
    ("sign(z)", torch.sign, False, [0.0]),
    ("abs(z)", torch.abs, False, [0.0]),
    ("min(max(z,-1),1)", F.hardtanh, False, [-1.0, 1.0]),
    ("max(0,min(1,z))", lambda x: F.hardtanh(x, 0.0, 1.0), False, [0.0, 1.0]),
    ("min(max(z,0),6)", F.relu6, False, [0.0, 6.0]),
    ("max(z,0)", torch.relu, False, [0.0]),
    ("max(z,0.1*z)", lambda x: F.leaky_relu(x, 0.1), False, [0.0]),
    ("z/(1+abs(z))", F.softsign, False, [0.0]),
    ("1/z", torch.reciprocal, True, []),
    ("log(z)", torch.log, True, []),
]


def _data(positive: bool, module, dtype=np.float64):
    """Parameters and a batch; with ``positive`` every pre-activation of layer 1 is > 0."""
    rng = np.random.default_rng(3)
    params = module.init_params(seed=1, dtype=dtype)
    X = rng.uniform(-2, 2, (15, 3)).astype(dtype)
    if positive:
        params["W1"], params["b1"] = np.abs(params["W1"]), np.abs(params["b1"]) + dtype(0.5)
        X = np.abs(X) + dtype(0.1)
    T = rng.uniform(-1, 1, (15, 2)).astype(dtype)
    return params, X, T


def _torch_grads(fn, params, X, T):
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    A1 = fn(torch.tensor(X) @ p["W1"].T + p["b1"])
    loss = ((A1 @ p["W2"].T + p["b2"] - torch.tensor(T)) ** 2).mean()
    loss.backward()
    return loss.item(), {k: v.grad.numpy() for k, v in p.items()}


@pytest.mark.parametrize("formula, fn, positive, kinks", FORMULAS, ids=[f[0] for f in FORMULAS])
def test_end_to_end(formula, fn, positive, kinks):
    spec = f"3 -> 4 [{formula}] -> 2 ; mse"
    derivation = derive(spec)
    assert verify(derivation).ok
    module = load_module(spec)
    params, X, T = _data(positive, module)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert module.gradient_check(params, X, T) < 1e-6
        loss, grads = module.loss_and_grads(params, X, T)
        module.forward(params, X)
        module.train({k: v.copy() for k, v in params.items()}, X, T, epochs=2, batch_size=8, verbose=False)
    torch_loss, torch_grads = _torch_grads(fn, params, X, T)
    assert loss == pytest.approx(torch_loss, rel=1e-12)
    for name, grad in torch_grads.items():
        np.testing.assert_allclose(grads[name], grad, rtol=1e-10, atol=1e-12)
    # at a kink the derivative is PyTorch's (hardtanh and relu6: 0 at the bounds; sign, abs: 0)
    act = make_activation({"formula": formula}, "layer 1")
    for kink in kinks:
        x = torch.tensor([kink], dtype=torch.float64, requires_grad=True)
        fn(x).sum().backward()
        assert float(act.prime(kink)) == x.grad.item(), (formula, kink)


@pytest.mark.parametrize("formula", ["min(max(z,-1),1)", "sign(z)", "z/(1+abs(z))", "max(z,0.1*z)"])
def test_float32_runs_without_warnings_and_keeps_its_dtype(formula):
    module = load_module(f"3 -> 4 [{formula}] -> 2 ; mse", dtype="float32")
    params, X, T = _data(False, module, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Y, _ = module.forward(params, X)
        _, grads = module.loss_and_grads(params, X, T)
    assert Y.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())


def test_a_clamp_prints_as_np_clip_and_its_derivative_as_a_mask():
    from codegen.emit import generate
    source = generate(derive("3 -> 4 [min(max(z,0),6)] -> 2 ; mse"))
    assert "A1 = np.clip(Z1, 0, 6)" in source
    assert "Delta1 *= ((Z1 > 0) & (Z1 < 6))" in source


def test_custom_losses_with_max_and_abs():
    for loss, reference in [("max(0,1-y*yhat)", lambda yh, t: torch.clamp(1 - t * yh, min=0).mean()),
                            ("abs(yhat-y)", lambda yh, t: (yh - t).abs().mean())]:
        spec = f"3 -> 4 tanh -> 2 ; [{loss}]"
        assert verify(derive(spec)).ok
        module = load_module(spec)
        params, X, T = _data(False, module)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert module.gradient_check(params, X, T) < 1e-6
        p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        yhat = torch.tanh(torch.tensor(X) @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]
        reference(yhat, torch.tensor(T)).backward()
        _, grads = module.loss_and_grads(params, X, T)
        for name in p:
            np.testing.assert_allclose(grads[name], p[name].grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("formula, where", [("1/z", "z = 0"), ("log(z)", "z <= 0"), ("sqrt(z)", "z <= 0")])
def test_a_formula_undefined_somewhere_says_where_in_notes_and_module(formula, where):
    from codegen.emit import generate
    derivation = derive(f"2 -> 2 [{formula}] -> 1 ; mse")
    note = f"f(z) = {formula} or its derivative is undefined or infinite where {where}"
    assert note in derivation.text()
    assert note in generate(derivation)


def test_a_formula_defined_everywhere_has_no_note():
    derivation = derive("2 -> 2 [z/(1+abs(z))] -> 1 ; [(yhat-y)**2]")
    assert "undefined" not in derivation.text()
