"""Batch norm end to end: the derivation has the batch form only and verify proves it; the emitted module
matches a torch.nn.BatchNorm1d twin (float64, 1e-10) in training mode (loss, every gradient, the running
statistics) and in evaluation mode, over several training steps, by central differences (1e-6) and in
float32; its buffers go to and from torch, save and load, and get no optimizer step."""
import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch

from derive import derive
from derive.errors import ChainruleError
from derive.verify import verify
from gradcheck import load_module, relative_error, torch_loss, twin

SPECS = [
    "4 -> 5 relu -> batchnorm -> 3 softmax ; cross_entropy",
    "3 -> batchnorm(momentum=0.3, eps=0.001, affine=false) -> 4 tanh -> batchnorm -> 2 ; mse",
]
IDS = ["relu-batchnorm-softmax", "input-batchnorm-no-affine"]


def data(net, n=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, net.inputs)) * 2 + 1
    if net.loss.name == "cross_entropy":
        return X, rng.integers(0, net.outputs, size=n)
    return X, rng.normal(size=(n, net.outputs))


def random_params(module, seed=0):
    """init_params with γ, β and the running statistics drawn at random, so that every one of them counts."""
    rng = np.random.default_rng(seed)
    params = module.init_params(seed=seed)
    for name in params:
        if name.startswith(("gamma", "beta", "running_mean")):
            params[name] = params[name] + rng.normal(size=params[name].shape)
        elif name.startswith("running_var"):
            params[name] = rng.uniform(0.5, 2.0, size=params[name].shape)
        elif name.startswith("num_batches_tracked"):
            params[name][...] = 7
    return params


def torch_twin(module, spec, params):
    net = derive(spec).network
    modules = twin(net.layers, net.inputs)
    modules.load_state_dict({k: torch.from_numpy(v) for k, v in module.to_torch_state_dict(params).items()})
    return net, modules


def torch_grads(module, modules):
    names = {key: name for name, key in module.TORCH_KEYS.items()}
    return {names[k]: p.grad.numpy() for k, p in modules.named_parameters()}


def buffers_equal(module, params, modules):
    theirs = module.from_torch_state_dict(modules.state_dict())
    for name in module.BUFFERS:
        assert params[name].dtype == theirs[name].dtype, name
        assert np.abs(params[name] - theirs[name]).max() < 1e-10, name


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_verify_proves_every_step_of_the_batch_form(spec):
    d = derive(spec)
    assert d.sample is None and d.sample_steps == [] and [form for form, _ in d.forms] == ["batch"]
    assert d.steps[0].number == 1
    report = verify(d)
    assert report.ok, report.text()
    assert {p.form for p in report.proofs} == {"batch"}


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_training_step_equals_torch(spec):
    """loss_and_grads is a forward and backward pass in training mode: torch's loss and gradients, and the
    running statistics (unbiased variance, momentum, num_batches_tracked) updated as torch updates them."""
    module = load_module(spec)
    params = random_params(module)
    net, modules = torch_twin(module, spec, params)
    X, T = data(net)
    modules.train()
    value = torch_loss(net, modules, X, T)
    value.backward()
    loss, grads = module.loss_and_grads(params, X, T)
    assert abs(loss - value.item()) < 1e-10
    expected = torch_grads(module, modules)
    assert grads.keys() == expected.keys() == module.PARAM_SHAPES.keys()
    for name in grads:
        assert np.abs(grads[name] - expected[name]).max() < 1e-10, name
    buffers_equal(module, params, modules)
    assert all(params[name] == 8 for name in module.BUFFERS if name.startswith("num_batches_tracked"))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_evaluation_mode_equals_torch(spec):
    """forward(train=False), loss, evaluate and predict normalize with the running statistics, as torch's eval()."""
    module = load_module(spec)
    params = random_params(module)
    net, modules = torch_twin(module, spec, params)
    X, T = data(net, seed=1)
    modules.eval()
    with torch.no_grad():
        value = torch_loss(net, modules, X, T).item()
        out = modules_output(net, modules, X)
    before = {name: params[name].copy() for name in module.BUFFERS}
    assert abs(module.loss(params, X, T) - value) < 1e-10
    assert abs(module.evaluate(params, X, T)["loss"] - value) < 1e-10
    Y, _ = module.forward(params, X)
    assert np.abs(Y - out).max() < 1e-10
    assert all(np.array_equal(params[name], before[name]) for name in module.BUFFERS)  # evaluation changes nothing
    # one sample is fine in evaluation, as in torch's eval()
    assert module.forward(params, X[:1])[0].shape == (1, net.outputs)
    # and train=True is the training mode of loss_and_grads
    modules.train()
    with torch.no_grad():
        value = torch_loss(net, modules, X, T).item()
    assert abs(module.loss(params, X, T, train=True) - value) < 1e-10
    buffers_equal(module, params, modules)


def modules_output(net, modules, X):
    from gradcheck import apply
    return apply(net.layers, modules, torch.from_numpy(X))[0].numpy()


def test_training_run_equals_torch_steps():
    """train (SGD with momentum, mini-batches in order) gives torch's parameters and running statistics
    after every step, and its validation loss is torch's in evaluation mode."""
    spec = {"network": {"inputs": 4, "loss": "cross_entropy", "layers": [
        {"units": 6, "activation": "relu"}, {"type": "batchnorm", "momentum": 0.2}, {"units": 3, "activation": "softmax"}]},
        "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9}}
    module = load_module(spec)
    params = random_params(module)
    net, modules = torch_twin(module, spec, params)
    X, T = data(net, n=10, seed=2)
    optimizer = torch.optim.SGD(modules.parameters(), lr=0.1, momentum=0.9)
    history = module.train(params, X, T, epochs=3, batch_size=4, shuffle=False, verbose=False, X_val=X, T_val=T)
    for _ in range(3):
        modules.train()
        for start in range(0, 10, 4):
            optimizer.zero_grad()
            torch_loss(net, modules, X[start:start + 4], T[start:start + 4]).backward()
            optimizer.step()
        modules.eval()
        with torch.no_grad():
            last = torch_loss(net, modules, X, T).item()
    theirs = module.from_torch_state_dict(modules.state_dict())
    for name in module.SHAPES:
        assert np.abs(params[name] - theirs[name]).max() < 1e-10, name
    assert params["num_batches_tracked2"] == 7 + 9  # 3 epochs of batches of 4, 4 and 2
    assert abs(history["val_loss"][-1] - last) < 1e-10


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_central_differences_with_the_batch_statistics(spec):
    module = load_module(spec)
    params = random_params(module)
    X, T = data(derive(spec).network)
    before = {name: params[name].copy() for name in module.BUFFERS}
    assert module.gradient_check(params, X, T) < 1e-6
    assert all(np.array_equal(params[name], before[name]) for name in module.BUFFERS)  # it trains on copies
    agrees_with_central_differences(module, params, X, T)


def test_gradient_check_of_linear_batchnorm_relu():
    """Linear -> BatchNorm -> ReLU, the usual order: the bias before batch norm has a gradient of 0 exactly
    (the mean takes it away), which gradient_check holds against the differences' noise, not against itself."""
    module = load_module("4 -> 6 -> batchnorm -> relu -> 3 softmax ; cross_entropy")
    params = module.init_params(seed=2)
    X, T = data(derive("4 -> 6 -> batchnorm -> relu -> 3 softmax ; cross_entropy").network)
    _, grads = module.loss_and_grads(params, X, T)
    assert np.abs(grads["b1"]).max() < 1e-15
    assert module.gradient_check(params, X, T) < 1e-6
    right = module._loss_and_grads

    def wrong(*args):  # the bias's gradient off by 1e-6, far below the others but above the noise: caught
        L, grads = right(*args)
        return L, {**grads, "b1": grads["b1"] + 1e-6}
    module._loss_and_grads = wrong
    assert module.gradient_check(params, X, T) > 1e-2


def agrees_with_central_differences(module, params, X, T, eps=1e-6):
    """Every gradient of loss_and_grads against central differences of the training-mode loss (the batch's
    statistics), with the relative error of gradcheck, whose floor spares a gradient that is 0 exactly (the
    bias of a layer that batch norm follows without an activation between)."""
    _, grads = module.loss_and_grads(params, X, T)
    for name in module.PARAM_SHAPES:
        numeric = np.zeros_like(params[name])
        for i in np.ndindex(params[name].shape):
            saved = params[name][i]
            params[name][i] = saved + eps
            up = module.loss(params, X, T, train=True)
            params[name][i] = saved - eps
            down = module.loss(params, X, T, train=True)
            params[name][i] = saved
            numeric[i] = (up - down) / (2 * eps)
        assert relative_error(grads[name], numeric) < 1e-6, name


def test_state_dict_keys_dtypes_and_round_trips(tmp_path):
    spec = SPECS[0]
    module = load_module(spec)
    params = random_params(module)
    net, modules = torch_twin(module, spec, params)
    state = module.to_torch_state_dict(params)
    assert list(state) == list(modules.state_dict())  # torch's keys, in torch's order
    assert state["1.num_batches_tracked"].dtype == np.int64 and state["1.running_var"].shape == (5,)
    back = module.from_torch_state_dict(modules.state_dict())
    assert back.keys() == params.keys() and all(np.array_equal(back[k], params[k]) for k in params)
    module.loss_and_grads(back, *data(net))  # a training step updates back's running statistics, not torch's
    assert not np.array_equal(back["running_mean2"], params["running_mean2"])
    assert np.array_equal(modules.state_dict()["1.running_mean"].numpy(), params["running_mean2"])
    path = tmp_path / "weights.npz"
    module.save(params, path)
    loaded = module.load(path)
    assert loaded.keys() == params.keys() and all(np.array_equal(loaded[k], params[k]) for k in params)
    assert loaded["num_batches_tracked2"].dtype == np.int64
    fresh = module.init_params()
    assert (fresh["running_mean2"] == 0).all() and (fresh["running_var2"] == 1).all()
    assert fresh["num_batches_tracked2"] == 0 and fresh["num_batches_tracked2"].dtype == np.int64
    with pytest.raises(ValueError, match="running_var2"):
        module.loss_and_grads({k: v for k, v in params.items() if k != "running_var2"}, *data(net))


def test_buffers_get_no_optimizer_step():
    """The optimizer sees the parameters only: with weight decay and a learning rate, only training's own
    update moves the running statistics."""
    spec = {"network": {"inputs": 3, "loss": "mse", "layers": [{"type": "batchnorm"}, {"units": 2}]},
            "optimizer": {"type": "adam", "lr": 0.5, "weight_decay": 0.1}}
    module = load_module(spec)
    params = module.init_params()
    X, T = data(derive(spec).network, n=8)
    module.train(params, X, T, epochs=1, batch_size=None, verbose=False)
    mu, var = X.mean(axis=0), X.var(axis=0, ddof=1)
    np.testing.assert_allclose(params["running_mean1"], 0.1 * mu, rtol=1e-12)
    np.testing.assert_allclose(params["running_var1"], 0.9 + 0.1 * var, rtol=1e-12)


def test_a_training_batch_of_one_is_refused():
    module = load_module(SPECS[0])
    params = module.init_params()
    X, T = data(derive(SPECS[0]).network, n=5)
    with pytest.raises(ValueError, match="at least 2 samples"):
        module.loss_and_grads(params, X[:1], T[:1])
    with pytest.raises(ValueError, match="leave a batch of 1"):
        module.train(params, X, T, epochs=1, batch_size=2, verbose=False)  # 5 = 2 + 2 + 1
    module.train(params, X, T, epochs=1, batch_size=3, verbose=False)  # 3 + 2: fine


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_constant_features_stay_finite_without_warnings(dtype):
    """A constant feature has variance 0: eps keeps σ = sqrt(eps), x̂ = 0, and every gradient is finite."""
    module = load_module("3 -> batchnorm -> 4 relu -> batchnorm -> 3 softmax ; cross_entropy", dtype=dtype)
    params = module.init_params(seed=1)
    X = np.array([[2.0, -1e3, 0.0], [2.0, -1e3, 1.0], [2.0, -1e3, 3.0], [2.0, -1e3, -2.0]], dtype=dtype)
    T = np.array([0, 1, 2, 0])
    # underflow is no warning by default: evaluation with the running statistics of one batch of -1e3
    # gives logits of hundreds, whose softmax underflows to 0 exactly
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        loss, grads = module.loss_and_grads(params, X, T)
        Y, _ = module.forward(params, X)
    assert np.isfinite(loss) and np.isfinite(Y).all()
    assert all(np.isfinite(g).all() and g.dtype == np.dtype(dtype) for g in grads.values())
    assert all(params[name].dtype == (np.int64 if name.startswith("num") else np.dtype(dtype)) for name in module.BUFFERS)


def test_float32_agrees_with_float64():
    spec = SPECS[0]
    wide, narrow = load_module(spec), load_module(spec, dtype="float32")
    params = random_params(wide)
    small = {k: v.astype(np.float32) if v.dtype == np.float64 else v.copy() for k, v in params.items()}
    X, T = data(derive(spec).network)
    loss64, grads64 = wide.loss_and_grads(params, X, T)
    loss32, grads32 = narrow.loss_and_grads(small, X.astype(np.float32), T)
    assert abs(loss32 - loss64) < 1e-5
    for name in grads64:
        assert grads32[name].dtype == np.float32 and relative_error(grads32[name], grads64[name]) < 1e-4, name
    for name in wide.BUFFERS:
        assert small[name].dtype == (np.int64 if name.startswith("num") else np.float32)
        assert np.abs(small[name] - params[name]).max() < 1e-5, name


def test_notes_show_the_batch_form_and_the_compact_backward():
    d = derive(SPECS[0])
    text = d.text()
    assert "the derivation has the batch form only" in text
    assert "μ2 = (1/N) A1 1_N" in text and "var2 = (1/N) (A1 - μ2)² 1_N" in text
    assert "σ2 = sqrt(var2 + 1e-05)" in text and "X̂2 = 1/σ2 ⊙ (A1 - μ2)" in text
    assert "∂L/∂γ2 = (∂L/∂A2 ⊙ X̂2) 1_N" in text and "∂L/∂β2 = ∂L/∂A2 1_N" in text
    steps = {s.target.key: s for s in d.steps}
    assert steps["mu2"].shape == (5, 1) and steps["dL_dgamma2"].shape == (5, 1)
    assert "N g less g summed over the batch" in steps["dL_dA1"].reason
    assert r"\frac{1}{N \sigma_{2}} \odot" in d.latex()


def test_emitted_lines_cite_their_equations_and_branch_on_the_mode():
    from codegen.emit import generate
    d = derive(SPECS[0])
    source = generate(d)
    steps = {s.target.key: s.number for s in d.steps}
    for key in ("sigma2", "Xhat2", "A2", "dL_dgamma2", "dL_dbeta2", "dL_dA1"):
        assert re.search(rf"^    {key} [*+]?= .*# \(eq\. {steps[key]}\)$", source, re.M), key
    assert re.search(rf"^    if train:\n        mu2 = A1.mean\(axis=0\)  # \(eq\. {steps['mu2']}\)$", source, re.M)
    assert re.search(r"^        running_var2\[\.\.\.\] = 0\.9\*running_var2 \+ 0\.1\*N/\(N - 1\)\*var2  #", source, re.M)
    assert re.search(r"^    else:\n        mu2 = running_mean2  #", source, re.M)
    assert source.count("gamma2 * dL_dA2") == 1  # g = γ ⊙ dL/dy, read three times, computed once


def test_check_refuses_a_batchnorm_network_in_one_line():
    from derive.check import check
    with pytest.raises(ChainruleError, match=r'layer 2 has type = "batchnorm"'):
        check(derive(SPECS[0]), "dL/dgamma2", "dL/da2")


@pytest.mark.parametrize("spec, message", [
    ("4 -> batchnorm(momentum=1.5) -> 2 ; mse", r"^layer 1 momentum must be a number in \[0, 1\] .*not 1\.5$"),
    ("4 -> batchnorm(eps=0) -> 2 ; mse", r"^layer 1 eps must be a number in \(0, 1\] .*not 0$"),
    ("4 -> batchnorm(affine=1) -> 2 ; mse", r"^layer 1 affine must be true or false, not 1$"),
    ({"network": {"inputs": 3, "loss": "mse", "layers": [{"type": "batchnorm", "momentum": "0.1"}, {"units": 1}]}},
     r"^layer 1 momentum must be a number in \[0, 1\]"),
    ("4 -> batchnorm(momentun=0.2) -> 2 ; mse", r"unknown key 'momentun' \(did you mean 'momentum'\?\)"),
    ({"network": {"inputs": 3, "loss": "mse", "layers": [{"type": "residual", "layers": [{"type": "batchnorm"}]},
                                                        {"units": 1}]}, "training": {"batch_size": 1}},
     r"^\[training\] batch_size = 1 cannot train batch norm, .* use a batch_size of 2 or more$"),
])
def test_spec_errors_are_one_line(spec, message):
    with pytest.raises(ChainruleError) as err:
        derive(spec)
    assert "\n" not in str(err.value) and re.search(message, str(err.value)), str(err.value)


def test_settings_reach_the_layer_and_the_inline_form():
    net = derive("3 -> batchnorm(momentum=0.3, eps=0.001, affine=false) -> 2 ; mse").network
    layer = net.layers[0]
    assert (layer.kind, layer.units, layer.momentum, layer.eps, layer.affine) == ("batchnorm", 3, 0.3, 0.001, False)
    assert layer.inline(str) == "batchnorm(momentum=0.3, eps=0.001, affine=false)"
    assert net.param_names == ["W2", "b2"]  # no γ and β without affine


# -- after a convolution: BatchNorm2d over images, BatchNorm1d over signals ------------------------------

CNNS = [
    ({"network": {"inputs": {"channels": 2, "height": 4, "width": 4}, "loss": "cross_entropy", "layers": [
        {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1, "activation": "relu"},
        {"type": "batchnorm", "momentum": 0.2}, {"type": "flatten"}, {"units": 3, "activation": "softmax"}]}},
     lambda: [torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3, momentum=0.2), torch.nn.Flatten(),
              torch.nn.Linear(48, 3)]),
    ({"network": {"inputs": {"channels": 2, "length": 5}, "loss": "mse", "layers": [
        {"type": "conv1d", "out_channels": 2, "kernel_size": 2}, {"type": "batchnorm", "affine": False},
        {"type": "activation", "activation": "tanh"}, {"type": "flatten"}, {"units": 2}]}},
     lambda: [torch.nn.Conv1d(2, 2, 2), torch.nn.BatchNorm1d(2, affine=False), torch.nn.Tanh(), torch.nn.Flatten(),
              torch.nn.Linear(8, 2)]),
    # the network
    ({"network": {"inputs": {"channels": 1, "height": 8, "width": 8}, "loss": "cross_entropy", "layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1, "activation": "relu"},
        {"type": "batchnorm"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "stride": 1, "padding": 0, "activation": "relu"},
        {"type": "avgpool2d", "kernel_size": 2}, {"type": "flatten"}, {"units": 10, "activation": "softmax"}]}},
     lambda: [torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.MaxPool2d(2),
              torch.nn.Conv2d(8, 16, 3), torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 10)]),
]


def cnn_loss(spec, modules, X, T):
    out = torch.from_numpy(X)
    for layer, module in zip(spec["network"]["layers"], modules):
        out = module(out)
        if layer.get("activation") == "relu":  # a convolution's; the softmax is cross_entropy's
            out = torch.relu(out)
    if spec["network"]["loss"] == "cross_entropy":
        return torch.nn.functional.cross_entropy(out, torch.from_numpy(T))
    return torch.nn.functional.mse_loss(out, torch.from_numpy(T))


@pytest.mark.parametrize("spec, build", CNNS, ids=["conv2d-batchnorm2d", "conv1d-batchnorm1d", "the-issue's-cnn"])
def test_after_a_convolution_equals_torch(spec, build):
    """Statistics per channel over the batch and the image (torch.nn.BatchNorm2d, or BatchNorm1d over signals):
    a training step's loss, gradients and running statistics, then evaluation, equal torch's; central differences."""
    module = load_module(spec)
    params = random_params(module)
    modules = torch.nn.ModuleList(build()).double()
    modules.load_state_dict({k: torch.from_numpy(v) for k, v in module.to_torch_state_dict(params).items()})
    net = derive(spec).network
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5,) + tuple(n for _, n in net.layout))
    T = rng.integers(0, net.outputs, size=5) if net.loss.name == "cross_entropy" else rng.normal(size=(5, 2))
    value = cnn_loss(spec, modules, X, T)
    value.backward()
    loss, grads = module.loss_and_grads(params, X, T)
    assert abs(loss - value.item()) < 1e-10
    expected = torch_grads(module, modules)
    assert grads.keys() == expected.keys()
    for name in grads:
        assert np.abs(grads[name] - expected[name]).max() < 1e-10, name
    buffers_equal(module, params, modules)
    modules.eval()
    with torch.no_grad():
        assert abs(module.loss(params, X, T) - cnn_loss(spec, modules, X, T).item()) < 1e-10
    agrees_with_central_differences(module, params, X, T)


def test_after_a_convolution_the_notes_and_the_code_take_each_channel():
    from codegen.emit import generate
    d = derive(CNNS[0][0])
    steps = {s.target.key: s for s in d.steps}
    assert steps["mu2"].shape == (3, 1) and steps["dL_dgamma2"].shape == (3, 1)  # one per channel, not per feature
    text = d.text()
    assert "μ2 = mean_c(A1)" in text and "∂L/∂β2 = Σ_c(∂L/∂A2)" in text
    source = generate(d)
    assert "mu2 = A1.reshape(-1, 3, 16).mean(axis=(0, 2))  # (eq. 3)" in source
    module = load_module(CNNS[0][0])
    assert module.PARAM_SHAPES["gamma2"] == (3,) and module.BUFFERS["running_var2"] == ((3,), 1.0)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is installed by .ci/run")
@pytest.mark.parametrize("spec", [SPECS[0], CNNS[0][0]], ids=["dense", "conv2d"])
def test_latex_compiles(spec, tmp_path):
    tex = tmp_path / "batchnorm.tex"
    tex.write_text(derive(spec).latex(), encoding="utf-8")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", tex.name],
                            cwd=tmp_path, capture_output=True, text=True, errors="replace")
    assert result.returncode == 0, "\n".join(re.findall(r"^!.*$", result.stdout, re.M))
    if spec is SPECS[0]:  # the CNN's title, its convolution's settings inline, is the convolution's to fit
        assert "Overfull" not in result.stdout
