"""Convolutional networks end to end: conv2d, conv1d, the poolings and flatten derive, derive.verify
proves every Step, and the emitted module matches a PyTorch twin (torch.nn.Conv2d, MaxPool2d, ... in a
ModuleList, loaded through from_torch_state_dict) to 1e-10 in float64, central differences to 1e-6,
and runs in float32 without a NumPy warning. The ops' own VJPs are proved by tests/test_ops.py."""
import warnings

import numpy as np
import pytest
import torch

import derive
from derive.verify import verify
from gradcheck import central_differences, load_module, relative_error, torch_loss, twin

SPECS = {
    "conv-s2-p1-overlapping-maxpool":
        "1x6x6 -> conv2d(out_channels=3, kernel_size=3, stride=2, padding=1, activation=relu) "
        "-> maxpool2d(kernel_size=2, stride=1) -> flatten -> 4 softmax ; cross_entropy",
    "dilated-no-bias-padded-maxpool-avgpool-l2":
        "2x7x7 -> conv2d(out_channels=3, kernel_size=2, dilation=2, bias=false, activation=tanh) "
        "-> maxpool2d(kernel_size=3, stride=1, padding=1) -> avgpool2d(kernel_size=2) -> flatten -> 3 ; mse ; l2=0.01",
    "kernel-pairs-padded-avgpool": {"network": {
        "inputs": {"channels": 1, "height": 5, "width": 6}, "loss": "cross_entropy", "layers": [
            {"type": "conv2d", "out_channels": 2, "kernel_size": [2, 3], "stride": [2, 1], "padding": [1, 0],
             "activation": "relu"},
            {"type": "avgpool2d", "kernel_size": 3, "stride": 2, "padding": 1},
            {"type": "flatten"},
            {"units": 3, "activation": "softmax"}]}},
    "conv1d-pools":
        "2x16 -> conv1d(out_channels=3, kernel_size=3, stride=2, padding=1, activation=relu) -> maxpool1d(kernel_size=2) "
        "-> conv1d(out_channels=2, kernel_size=2, dilation=2, activation=elu) -> avgpool1d(kernel_size=2, stride=1, "
        "padding=1) -> flatten -> 3 softmax ; cross_entropy",
    "global-avgpool":
        "1x5x5 -> conv2d(out_channels=4, kernel_size=3, padding=1, activation=relu) -> global_avgpool "
        "-> 2 softmax ; cross_entropy",
}


def data(network, n=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n,) + tuple(s for _, s in network.input_shape))
    T = rng.integers(0, network.outputs, size=n) if network.loss.name == "cross_entropy" else \
        rng.normal(size=(n, network.outputs))
    return X, T


def loaded(spec, seed=0):
    """(network, emitted module, its params from the twin's state_dict, the twin)."""
    network = derive.derive(spec).network
    module = load_module(spec)
    torch.manual_seed(seed)
    modules = twin(network.layers, network.inputs)
    params = module.from_torch_state_dict({k: v.numpy() for k, v in modules.state_dict().items()})
    return network, module, params, modules


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_loss_and_gradients_equal_the_torch_twin(spec):
    network, module, params, modules = loaded(spec)
    assert list(module.to_torch_state_dict(params)) == list(modules.state_dict())
    X, T = data(network)
    L, grads = module.loss_and_grads(params, X, T)
    value = torch_loss(network, modules, X, T)
    value.backward()
    assert abs(L - value.item()) < 1e-10
    named = dict(modules.named_parameters())
    for name, key in module.TORCH_KEYS.items():
        assert grads[name].shape == tuple(named[key].shape)
        assert np.abs(grads[name] - named[key].grad.numpy()).max() < 1e-10, name


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_gradients_equal_central_differences(spec):
    network, module, params, _ = loaded(spec, seed=1)
    X, T = data(network, n=3, seed=1)
    _, grads = module.loss_and_grads(params, X, T)
    numeric = central_differences(module, params, X, T)
    for name in grads:
        assert relative_error(grads[name], numeric[name]) < 1e-6, name


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_float32_trains_without_numpy_warnings(spec):
    network = derive.derive(spec).network
    m64, m32 = load_module(spec), load_module(spec, dtype="float32")
    X, T = data(network, n=16)
    params = m32.init_params(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L32, grads32 = m32.loss_and_grads(params, X.astype(np.float32), T)
        _, grads64 = m64.loss_and_grads({k: v.astype(np.float64) for k, v in params.items()}, X, T)
        history = m32.train(params, X, T, epochs=3, batch_size=8, verbose=False)
    assert all(g.dtype == np.float32 for g in grads32.values())
    for name in grads32:
        assert relative_error(grads32[name], grads64[name]) < 1e-4, name
    assert np.isfinite(history["loss"]).all()


def test_max_pool_routes_ties_to_the_first_maximum_as_torch():
    """A zero kernel makes every window of the pooled map a tie: the gradient goes to each window's first
    entry in row-major order, as torch's MaxPool2d sends it (dL/dW1 reads where it went)."""
    spec = ("1x4x4 -> conv2d(out_channels=2, kernel_size=3, padding=1) -> maxpool2d(kernel_size=2) -> flatten "
            "-> 3 softmax ; cross_entropy")
    network, module, params, modules = loaded(spec)
    with torch.no_grad():
        modules[0].weight.zero_()
    params = module.from_torch_state_dict({k: v.numpy() for k, v in modules.state_dict().items()})
    X, T = data(network)
    _, grads = module.loss_and_grads(params, X, T)
    torch_loss(network, modules, X, T).backward()
    assert np.abs(grads["W1"] - modules[0].weight.grad.numpy()).max() < 1e-10
    assert np.abs(grads["W1"]).max() > 1e-3  # the routing decides a gradient that is not zero


@pytest.mark.parametrize("spec", [
    SPECS["conv-s2-p1-overlapping-maxpool"],
    SPECS["conv1d-pools"],
    # small enough to prove in seconds: a max over 9 entries has 9 derivatives, each a Heaviside of a max
    "1x5x5 -> conv2d(out_channels=2, kernel_size=2, dilation=2, bias=false, activation=tanh) -> maxpool2d(kernel_size=2, "
    "stride=1, padding=1) -> avgpool2d(kernel_size=2) -> flatten -> 2 ; mse ; l2=0.01",
], ids=["conv-s2-p1-overlapping-maxpool", "conv1d-pools", "dilated-no-bias-padded-maxpool-avgpool-l2"])
def test_verify_proves_every_step(spec):
    report = verify(derive.derive(spec))
    assert report.ok, report.text()
    assert any("dL/dW1" in p.target for p in report.proofs)


def test_the_notes_state_each_rule_in_index_form():
    text = derive.derive(SPECS["conv-s2-p1-overlapping-maxpool"]).text()
    assert "z1 = [b1[o] + Σ_{c,u,v} W1[o,c,u,v] x[c,2i+u-1,2j+v-1]]_{o,i,j}" in text
    assert "∂L/∂W1 = [Σ_{i,j} δ1[o,i,j] x[c,2i+u-1,2j+v-1]]_{o,c,u,v}" in text
    assert "∂L/∂b1 = [Σ_{i,j} δ1[o,i,j]]_{o}" in text
    assert "argmax_(i+u,j+v) a1[c,i+u,j+v]" in text  # max pooling routes to the first maximum
    dilated = derive.derive("1x5x5 -> conv2d(out_channels=2, kernel_size=2, activation=relu) -> conv2d(out_channels=2, "
                            "kernel_size=2, stride=2) -> flatten -> 2 softmax ; cross_entropy").latex()
    # the input's gradient: the full convolution with the kernel, Δ dilated by the stride
    assert r"\left[\sum_{o,u,v} \Delta_{2}^{\uparrow 2}[n,o,h-u,w-v]\, W_{2}[o,c,u,v]\right]_{n,c,h,w}" in dilated
    assert "the full convolution of the error with the kernel" in dilated


def test_images_are_taken_as_n_c_h_w_or_flattened_rows():
    network, module, params, _ = loaded(SPECS["global-avgpool"])
    X, T = data(network)
    assert module.loss(params, X, T) == module.loss(params, X.reshape(len(X), -1), T)
    with pytest.raises(ValueError, match=r"X must have shape \(N, 1, 5, 5\) with N >= 1: one 1×5×5 image "
                                         r"\(channels, height, width\) per sample \(or its rows flattened, \(N, 25\)\); "
                                         r"got shape \(5, 5, 5\)"):
        module.loss(params, X[:, 0], T)


@pytest.mark.parametrize("spec, message", [
    ("1x8x8 -> conv2d(out_channels=8, kernel_size=3) -> conv2d(out_channels=16, kernel_size=3) -> "
     "maxpool2d(kernel_size=2) -> conv2d(out_channels=4, kernel_size=3) -> flatten -> 2 ; mse",
     "layer 4 (conv2d): its input is 16×2×2, smaller than the 3×3 kernel"),
    ("1x6x6 -> conv2d(out_channels=8, kernel_size=3) -> maxpool2d(kernel_size=2) -> conv2d(out_channels=4, "
     "kernel_size=3) -> flatten -> 2 ; mse",
     "layer 3 (conv2d): its input is 8×2×2, smaller than the 3×3 kernel; use a smaller kernel_size or more padding"),
    ("1x4x4 -> conv2d(out_channels=2, kernel_size=2, dilation=4) -> flatten -> 2 ; mse",
     "layer 1 (conv2d): its input is 1×4×4, smaller than the 2×2 kernel (spanning 5×5 with dilation 4)"),
    ("1x6x6 -> conv2d(out_channels=2, kernel_size=3, stride=0) -> flatten -> 2 ; mse",
     "layer 1 (conv2d) stride must be a whole number from 1 to 4096 or a list of 2 (like stride = [3, 3]), not 0"),
    ("1x6x6 -> conv2d(out_channels=2) -> flatten -> 2 ; mse", "layer 1 (conv2d) needs kernel_size, like kernel_size = 3"),
    ("1x6x6 -> conv2d(kernel_size=3) -> flatten -> 2 ; mse",
     "layer 1 (conv2d) out_channels must be a positive whole number, not None"),
    ("1x6x6 -> maxpool2d(kernel_size=2, padding=2) -> flatten -> 2 ; mse",
     "layer 1 (maxpool2d) padding 2 is more than half the 2×2 kernel; PyTorch refuses it"),
    ("1x6x6 -> conv2d(out_channels=2, kernel_size=3) -> 2 ; mse",
     "layer 2 (dense) takes vectors but its input is a 2×4×4 image; put a flatten layer before it"),
    ("2x16 -> conv2d(out_channels=2, kernel_size=3) -> flatten -> 2 ; mse",
     "layer 1 (conv2d) takes images (channels, height, width), but its input is a 2×16 signal; use conv1d"),
    ("16 -> conv1d(out_channels=2, kernel_size=3) -> 2 ; mse",
     "layer 1 (conv1d) takes 1-D signals (channels, length), but its input is 16 features; give the network such "
     "an input, like inputs = { channels = 1, length = 16 }"),
    ("1x6x6 -> flatten -> 4 relu -> maxpool1d(kernel_size=2) -> 2 ; mse",
     "layer 3 (maxpool1d) takes 1-D signals (channels, length), but its input is 4 features; put it before the flatten"),
    ("1x6x6 -> conv2d(out_channels=2, kernel_size=3, activation=softmax) -> flatten -> 2 ; mse",
     "layer 1 (conv2d): softmax would act on all 32 features of the convolution's output at once"),
])
def test_spec_errors_name_the_layer_and_its_sizes(spec, message):
    with pytest.raises(derive.ChainruleError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        derive.derive(spec)


def test_inline_and_toml_specs_agree():
    inline = derive.derive(SPECS["conv1d-pools"]).network
    toml = derive.derive({"network": {"inputs": {"channels": 2, "length": 16}, "loss": "cross_entropy", "layers": [
        {"type": "conv1d", "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1, "activation": "relu"},
        {"type": "maxpool1d", "kernel_size": 2},
        {"type": "conv1d", "out_channels": 2, "kernel_size": 2, "dilation": 2, "activation": "elu"},
        {"type": "avgpool1d", "kernel_size": 2, "stride": 1, "padding": 1},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"}]}}).network
    assert inline.layers == toml.layers and inline.layout == toml.layout
    assert derive.derive(derive.documents.architecture(inline) + " ; cross_entropy").network.layers == inline.layers
