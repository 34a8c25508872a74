"""Weights move to and from PyTorch: the emitted module's state-dict keys are those of the network's
torch.nn.ModuleList twin, and loaded into the module they give torch's loss and gradients."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings, strategies as st

from codegen.gallery import ROOT, spec_paths
from derive import derive
from derive.verify import verify
from gradcheck import central_differences, load_module, relative_error, torch_loss, twin



def data(network, n=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, network.inputs))
    if network.loss.name == "cross_entropy":
        return X, rng.integers(0, network.outputs, size=n)
    if network.loss.name == "bce":
        return X, rng.integers(0, 2, size=(n, network.outputs)).astype(np.float64)
    return X, rng.normal(size=(n, network.outputs))


def randomized(modules, seed):
    """Every parameter drawn at random (layer norm's γ and β too, so they are not 1 and 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in modules.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.7)
    return modules


def assert_matches_torch(spec, seed=0):
    """Load the twin's state_dict into the emitted module: loss and every gradient as torch's; back again."""
    module = load_module(spec)
    network = derive(spec).network
    modules = randomized(twin(network.layers, network.inputs), seed)
    state = modules.state_dict()
    assert list(state) == list(module.TORCH_KEYS.values())
    params = module.from_torch_state_dict(state)
    X, T = data(network, seed=seed)
    loss, grads = module.loss_and_grads(params, X, T)
    value = torch_loss(network, modules, X, T)
    value.backward()
    assert abs(loss - value.item()) <= 1e-10 * max(1.0, abs(loss))
    torch_grads = dict(modules.named_parameters())
    for name in module.PARAM_SHAPES:  # TORCH_KEYS also has a batch norm's buffers, which get no gradient
        key = module.TORCH_KEYS[name]
        np.testing.assert_allclose(grads[name], torch_grads[key].grad.numpy(), rtol=1e-10, atol=1e-10, err_msg=name)
    back = twin(network.layers, network.inputs)
    back.load_state_dict({k: torch.from_numpy(v) for k, v in module.to_torch_state_dict(params).items()}, strict=True)
    learned = {module.TORCH_KEYS[name] for name in module.PARAM_SHAPES}
    for key, value in back.state_dict().items():
        if key in learned:
            np.testing.assert_array_equal(value.numpy(), state[key].numpy(), err_msg=key)
        else:  # a running statistic, which the training step updated in NumPy and in torch
            np.testing.assert_allclose(value.numpy(), state[key].numpy(), rtol=1e-12, atol=1e-15, err_msg=key)
    return module, params, X, T


# vector inputs (the twin and the data here); tests/test_recurrent.py does the same for the recurrent gallery entries
@pytest.mark.parametrize("path", [p for p in spec_paths() if not derive(str(ROOT / p)).network.layout],
                         ids=lambda p: p.stem)
def test_gallery_weights_move_both_ways(path):
    assert_matches_torch(str(ROOT / path))


NEW_SPECS = [
    "4 -> 8 relu -> residual(8 tanh -> 8 sigmoid) -> tanh -> 3 softmax ; cross_entropy",
    "3 -> 3 tanh residual -> sigmoid -> residual(residual(3 relu) -> 3) -> 2 ; mse ; l2=0.1",
    "2 -> relu -> 3 elu -> residual(3 -> tanh) -> 1 sigmoid ; bce ; l1=0.01",
    "3 -> 4 leaky_relu(slope=0.2) dropout=0.3 -> residual(4 tanh dropout=0.2) -> 2 ; huber(delta=0.5)",
]
LAYERNORM_SPECS = [
    "4 -> 8 relu -> layernorm -> residual(8 tanh -> layernorm) -> relu -> 2 softmax ; cross_entropy",
    "3 -> layernorm(eps=0.001, affine=false) -> 4 tanh -> layernorm -> 2 ; mse",
]


@pytest.mark.parametrize("spec", NEW_SPECS)
def test_new_layers_weights_move_both_ways(spec):
    assert_matches_torch(spec)


@pytest.mark.parametrize("spec", LAYERNORM_SPECS)
def test_layernorm_weights_move_both_ways(spec):
    assert_matches_torch(spec)


def test_keys_follow_the_module_list():
    """Dense -> Linear, an activation layer has no keys, a block nests, residual = true keeps its own."""
    module = load_module("3 -> 3 relu residual -> tanh -> residual(3 relu -> residual(3)) -> 2 ; mse")
    assert module.TORCH_KEYS == {"W1": "0.weight", "b1": "0.bias", "W3_1": "2.0.weight", "b3_1": "2.0.bias",
                                 "W3_2_1": "2.1.0.weight", "b3_2_1": "2.1.0.bias", "W4": "3.weight", "b4": "3.bias"}


def test_from_torch_state_dict_names_the_bad_key():
    module = load_module("2 -> 3 relu -> 1 ; mse")
    state = module.to_torch_state_dict(module.init_params())
    with pytest.raises(ValueError, match=r"state has no '1.bias' \(b2\)"):
        module.from_torch_state_dict({k: v for k, v in state.items() if k != "1.bias"})
    with pytest.raises(ValueError, match=r"state has the key '2.weight'"):
        module.from_torch_state_dict({**state, "2.weight": state["1.weight"]})
    with pytest.raises(ValueError, match=r"state\['0.weight'\] must have shape \(3, 2\) \(W1\), got \(2, 3\)"):
        module.from_torch_state_dict({**state, "0.weight": state["0.weight"].T})
    with pytest.raises(ValueError, match=r"state\['0.bias'\] must hold finite numbers"):
        module.from_torch_state_dict({**state, "0.bias": np.array([1.0, np.nan, 0.0])})
    params = module.from_torch_state_dict({k: torch.from_numpy(v).float() for k, v in state.items()}, dtype=np.float32)
    assert all(p.dtype == np.float32 for p in params.values())


# -- random networks ----------------------------------------------------------------------------------

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity", "elu")


@st.composite
def layer_lists(draw, width, depth, allow_resize=True):
    """Inline layer tokens from input ``width``: dense, activation layers, layer norms and residual blocks."""
    tokens = []
    for _ in range(draw(st.integers(1, 3))):
        kinds = ["dense", "activation"] + (["layernorm"] if width >= 2 else []) + \
            (["residual"] if depth < 2 else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "dense":
            units = draw(st.integers(1, 3)) if allow_resize else width
            tokens.append(f"{units} {draw(st.sampled_from(ACTIVATIONS))}")
            width = units
        elif kind == "activation":
            tokens.append(draw(st.sampled_from(ACTIVATIONS)))
        elif kind == "layernorm":
            tokens.append("layernorm")
        else:
            inner, _ = draw(layer_lists(width, depth + 1, allow_resize=False))
            tokens.append(f"residual({' -> '.join(inner)})")
    return tokens, width


@st.composite
def networks(draw):
    inputs = draw(st.integers(2, 3))
    tokens, _ = draw(layer_lists(inputs, 0))
    loss = draw(st.sampled_from(["mse", "cross_entropy"]))
    output = "2 softmax" if loss == "cross_entropy" else f"{draw(st.integers(1, 2))} {draw(st.sampled_from(ACTIVATIONS))}"
    return f"{inputs} -> {' -> '.join(tokens + [output])} ; {loss}"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks(), st.integers(0, 2 ** 16))
# a layer norm over 2 features of small spread amplifies the loss's rounding: at a step of 1e-6 its noise
# alone was 2e-6 of dL/dW1 (torch agreed with the module to 1e-10); at 1e-5 it is 1e-7
@example(spec="3 -> 2 relu -> layernorm -> 1 relu ; mse", seed=974)
def test_random_networks_match_torch_and_central_differences(spec, seed):
    module, params, X, T = assert_matches_torch(spec, seed)
    _, grads = module.loss_and_grads(params, X, T)
    numeric = central_differences(module, params, X, T, eps=1e-5)
    for name in grads:
        assert relative_error(grads[name], numeric[name]) < 1e-6, name
    assert verify(derive(spec)).ok
