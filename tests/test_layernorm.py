"""Layer norm end to end: the notes print the compact backward form, derive.verify proves every Step,
and the emitted module matches a torch.nn.LayerNorm twin (float64 to 1e-10), central differences
(1e-6) and float32, and stays finite without warnings on constant inputs."""
import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch

from codegen.emit import generate
from derive import derive
from derive.verify import verify
from gradcheck import load_module, relative_error, torch_loss, twin

SPECS = [
    "4 -> 8 relu -> layernorm -> 8 tanh -> 3 softmax ; cross_entropy",
    "3 -> layernorm(eps=0.001, affine=false) -> 3 tanh residual -> 2 ; mse",
    {"network": {"inputs": 4, "loss": "cross_entropy", "layers": [
        {"units": 5, "activation": "relu"},
        {"type": "layernorm"},
        {"type": "residual", "layers": [{"units": 5, "activation": "tanh"}, {"type": "layernorm"}]},
        {"units": 3, "activation": "softmax"}]}},
]
IDS = ["relu-layernorm-tanh", "no-affine-then-residual", "residual-block"]


def data(net, n=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, net.inputs))
    if net.loss.name == "cross_entropy":
        return X, rng.integers(0, net.outputs, size=n)
    return X, rng.normal(size=(n, net.outputs))


def random_params(module, seed=0):
    """init_params, with layer norm's γ and β also drawn at random (not 1 and 0), so their gradients count."""
    rng = np.random.default_rng(seed)
    params = module.init_params(seed=seed)
    return {k: v + rng.normal(size=v.shape) * 0.5 if k.startswith(("gamma", "beta")) else v
            for k, v in params.items()}


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_verify_proves_every_step(spec):
    report = verify(derive(spec))
    assert report.ok, report.text()
    assert any("dL/dγ" in p.target for p in report.proofs) or "affine=false" in str(spec)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_gradients_equal_torch_and_central_differences(spec):
    net = derive(spec).network
    module = load_module(spec)
    params = random_params(module)
    X, T = data(net)
    modules = twin(net.layers, net.inputs)
    modules.load_state_dict({k: torch.from_numpy(v) for k, v in module.to_torch_state_dict(params).items()})
    value = torch_loss(net, modules, X, T)
    value.backward()
    torch_grads = module.from_torch_state_dict({k: p.grad for k, p in modules.named_parameters()})
    loss, grads = module.loss_and_grads(params, X, T)
    assert abs(loss - float(value.detach())) < 1e-12
    assert grads.keys() == torch_grads.keys()
    for name in grads:
        assert np.abs(grads[name] - torch_grads[name]).max() < 1e-10, name
    assert module.gradient_check(params, X, T) < 1e-6


def test_float32_runs_and_agrees_with_float64():
    spec = SPECS[0]
    wide, narrow = load_module(spec), load_module(spec, dtype="float32")
    params = random_params(wide)
    X, T = data(derive(spec).network)
    loss64, grads64 = wide.loss_and_grads(params, X, T)
    loss32, grads32 = narrow.loss_and_grads({k: v.astype(np.float32) for k, v in params.items()},
                                            X.astype(np.float32), T)
    assert all(g.dtype == np.float32 for g in grads32.values())
    assert abs(loss32 - loss64) < 1e-5
    for name in grads64:
        assert relative_error(grads32[name], grads64[name]) < 1e-4, name


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_constant_inputs_stay_finite_without_warnings(dtype):
    """A constant row has variance 0: eps keeps σ = sqrt(eps), so x̂ = 0 and every gradient is finite."""
    module = load_module("4 -> layernorm -> 6 relu -> layernorm -> 3 softmax ; cross_entropy", dtype=dtype)
    params = module.init_params(seed=1)
    X = np.array([[2.0] * 4, [-1e3] * 4, [0.0] * 4, [1.0, 2.0, 3.0, 4.0]], dtype=dtype)
    T = np.array([0, 1, 2, 0])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        Y, _ = module.forward(params, X)
        loss, grads = module.loss_and_grads(params, X, T)
    assert np.isfinite(Y).all() and np.isfinite(loss)
    assert all(np.isfinite(g).all() for g in grads.values())
    np.testing.assert_allclose(Y[0], Y[2])  # two constant rows normalize to the same x̂ = 0


def test_parameters_are_named_initialised_and_keyed_as_torch():
    module = load_module(SPECS[0])
    assert list(module.PARAM_SHAPES) == ["W1", "b1", "gamma2", "beta2", "W3", "b3", "W4", "b4"]
    assert module.PARAM_SHAPES["gamma2"] == (8,) and module.PARAM_SHAPES["beta2"] == (8,)
    params = module.init_params(seed=3)
    assert (params["gamma2"] == 1).all() and (params["beta2"] == 0).all()
    keys = module.to_torch_state_dict(params)
    assert keys.keys() == twin(derive(SPECS[0]).network.layers, 4).state_dict().keys()
    assert np.array_equal(keys["1.weight"], params["gamma2"])


def test_notes_show_the_forward_steps_and_the_compact_backward_form():
    d = derive(SPECS[0])
    text = d.text()
    assert "μ2 = mean(a1)" in text
    assert "σ2 = sqrt(mean((a1 - μ2)²) + 1e-05)" in text
    assert "x̂2 = 1/σ2 ⊙ (a1 - μ2)" in text
    assert "a2 = γ2 ⊙ x̂2 + β2" in text
    assert "∂L/∂a1 = 1/σ2 ⊙ (γ2 ⊙ ∂L/∂a2 - mean(γ2 ⊙ ∂L/∂a2) - (x̂2 ⊙ mean((γ2 ⊙ ∂L/∂a2) ⊙ x̂2)))" in text
    assert "∂L/∂γ2 = ∂L/∂a2 ⊙ x̂2" in text and "∂L/∂β2 = ∂L/∂a2" in text
    batch = {s.target.key: s for s in d.steps}
    assert batch["mu2"].shape == (1, d.steps[0].shape[1])  # one mean per sample: a row of N
    assert "g less its mean, less ⟦Xhat2⟧ times the mean of g times ⟦Xhat2⟧, all over ⟦sigma2⟧" in batch["dL_dA1"].reason


def test_emitted_lines_cite_their_equations():
    source = generate(derive(SPECS[0]), dtype="float32")
    steps = {s.target.key: s.number for s in derive(SPECS[0]).steps}
    for key in ("mu2", "sigma2", "Xhat2", "A2", "dL_dgamma2", "dL_dbeta2", "dL_dA1"):
        assert re.search(rf"^    {key} [*+]?= .*# \(eq\. {steps[key]}\)$", source, re.M), key
    assert "mean(axis=1, keepdims=True)" in source
    # g = γ ⊙ dL/dy, read three times by the compact form, is computed once
    assert source.count("gamma2 * dL_dA2") == 1 and re.search(r"^    dL_dA1_part0 = gamma2 \* dL_dA2  #", source, re.M)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is installed by .ci/run")
def test_latex_compiles(tmp_path):
    tex = tmp_path / "layernorm.tex"
    tex.write_text(derive(SPECS[2]).latex(), encoding="utf-8")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", tex.name],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, "\n".join(re.findall(r"^!.*$", result.stdout, re.M))


TEXTBOOK = (r"\frac{1}{\sigma_2} \odot \left(\gamma_2 \odot \frac{\partial L}{\partial a_2} - \operatorname{mean}"
            r"\left(\gamma_2 \odot \frac{\partial L}{\partial a_2}\right) - \hat{x}_2 \odot \operatorname{mean}"
            r"\left(\gamma_2 \odot \frac{\partial L}{\partial a_2} \odot \hat{x}_2\right)\right)")


@pytest.mark.parametrize("convention", ["sample", "columns", "rows"])
def test_check_accepts_the_textbook_layernorm_gradient(convention):
    from derive.check import check
    d = derive(SPECS[0])
    assert check(d, r"\frac{\partial L}{\partial a_1}", TEXTBOOK, convention=convention).equal
    # without the x̂ term it is wrong, and the checker says so
    wrong = TEXTBOOK.split(r" - \hat{x}_2")[0] + r"\right)"
    assert not check(d, r"\frac{\partial L}{\partial a_1}", wrong, convention=convention).equal


def test_check_reads_layernorm_names_in_plain_text():
    from derive.check import check
    d = derive(SPECS[0])
    g = "γ2 ⊙ dL/da2"
    assert check(d, "dL/da1", f"(1/σ2) ⊙ ({g} - mean({g}) - x̂2 ⊙ mean({g} ⊙ x̂2))").equal
    assert check(d, "dL/dgamma2", "dL/da2 ⊙ xhat2").equal
    assert check(d, "dL/dbeta2", "dL/da2").equal
    assert not check(d, "dL/dgamma2", "dL/da2").equal
