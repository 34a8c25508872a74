"""The emitted NumPy modules: gradients against central differences and PyTorch, stability,
float32, input errors, determinism, the command line and the committed gallery."""
import difflib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from codegen import gallery
from codegen.emit import HEADER, generate
from derive import derive
from derive.errors import ChainruleError
from derive.ops.activations import CATALOGUE as ACTIVATIONS
from derive.ops.losses import CATALOGUE as LOSSES
from derive.spec import from_dict

from gradcheck import central_differences, load_module, relative_error, torch_loss_and_grads

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def seeded():
    np.random.seed(0)


def make_data(network, n=5, seed=0, domain=(-3.0, 3.0)):
    """Inputs spread over the activation's domain and targets the loss accepts."""
    rng = np.random.default_rng(seed)
    lo, hi = domain
    X = rng.uniform(lo, hi, size=(n, network.inputs)) / np.sqrt(network.inputs)
    out = network.outputs
    if network.loss.name == "cross_entropy":
        T = rng.integers(0, out, size=n)
    elif network.loss.name == "bce":
        T = rng.uniform(0, 1, size=(n, out))
    else:
        T = rng.normal(size=(n, out))
    return X, T


def check_gradients(spec, seed=0, domain=(-3.0, 3.0), torch_too=True):
    network = derive(spec).network
    module = load_module(network)
    # nn.Linear's init draws non-zero biases, so no pre-activation sits exactly on a kink (with
    # zero biases a layer after an all-zero relu output would, and central differences straddle it)
    params = module.init_params(seed=seed, init="torch")
    X, T = make_data(network, seed=seed, domain=domain)
    value, grads = module.loss_and_grads(params, X, T)
    assert set(grads) == set(params)
    for name in params:
        assert grads[name].shape == params[name].shape and grads[name].dtype == params[name].dtype
    numeric = central_differences(module, params, X, T)
    for name in params:
        assert relative_error(grads[name], numeric[name]) < 1e-6, name
    if torch_too:
        reference = torch_loss_and_grads(network, params, X, T)
        if reference is not None:
            torch_value, torch_grads = reference
            assert abs(value - torch_value) < 1e-10
            for name in params:
                assert np.abs(grads[name] - torch_grads[name]).max() < 1e-10, name


def pair_spec(act_name, loss_name):
    """A two-layer spec using the activation and the loss, or None when the spec rejects it."""
    act, loss = ACTIVATIONS[act_name], LOSSES[loss_name]
    hidden = act_name if act.elementwise else "tanh"
    out = loss.fused_with or act_name
    units = 3 if (out == "softmax" or loss_name == "cross_entropy") else 2
    spec = {"name": "pair", "network": {"inputs": 3, "loss": loss_name, "layers": [
        {"units": 4, "activation": hidden}, {"units": units, "activation": out}]}}
    try:
        from_dict(spec)
    except ChainruleError:
        return None
    return spec


PAIRS = [(a, l) for a in ACTIVATIONS for l in LOSSES]


@pytest.mark.parametrize("act_name,loss_name", PAIRS)
def test_activation_loss_pair(act_name, loss_name):
    spec = pair_spec(act_name, loss_name)
    if spec is None:
        pytest.skip("the spec rejects this pair")
    check_gradients(spec, domain=ACTIVATIONS[act_name].domain)


@pytest.mark.parametrize("spec", [
    "3 -> 3 tanh residual -> 3 relu residual -> 2 ; mse",
    "3 -> 3 tanh residual -> 3 silu residual ; sse_half",
    "3 -> 3 identity residual -> 3 sigmoid residual -> 1 sigmoid ; bce",
    "4 -> 4 elu residual -> 3 softmax ; cross_entropy ; l2=0.01",
    "3 -> 3 [z*tanh(log(1+exp(z)))] residual -> 2 ; huber(delta=0.5) ; l1=0.01",
    "2 -> 3 tanh -> 2 ; [(yhat-y)**4/4]",
    "2 -> 3 leaky_relu(slope=0.2) -> 2 elu(alpha=0.5) ; huber(delta=2)",
    "1 -> 1 sigmoid -> 1 ; mae",
])
def test_residual_penalties_parameters_formulas(spec):
    check_gradients(spec)


ELEMENTWISE = sorted(name for name, kind in ACTIVATIONS.items() if kind.elementwise)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 4), st.lists(st.tuples(st.integers(1, 4), st.sampled_from(ELEMENTWISE), st.booleans()),
                                    min_size=1, max_size=3),
       st.sampled_from(sorted(LOSSES)), st.integers(0, 2 ** 16))
def test_random_networks(inputs, hidden, loss_name, seed):
    loss = LOSSES[loss_name]
    layers, width = [], inputs
    for units, act, residual in hidden:  # a residual layer keeps its input's width
        layers.append({"units": width if residual else units, "activation": act, "residual": residual})
        width = layers[-1]["units"]
    out = loss.fused_with or "identity"
    layers.append({"units": 3 if out == "softmax" else 2, "activation": out})
    check_gradients({"name": "random", "network": {"inputs": inputs, "layers": layers, "loss": loss_name}}, seed=seed)


def test_seeds_simple_nn_matches_pytorch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(2, 2).double(), torch.nn.Linear(2, 1).double()
    module = load_module(ROOT / "generated/specs/simple_nn.toml")
    params = {"W1": fc1.weight.detach().numpy().copy(), "b1": fc1.bias.detach().numpy().copy(),
              "W2": fc2.weight.detach().numpy().copy(), "b2": fc2.bias.detach().numpy().copy()}
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    T = np.array([[1.0], [2.0]])
    opt = torch.optim.SGD(list(fc1.parameters()) + list(fc2.parameters()), lr=0.01)
    out = fc2(torch.relu(fc1(torch.tensor(X))))
    loss = torch.nn.functional.mse_loss(out, torch.tensor(T))
    loss.backward()
    value, grads = module.loss_and_grads(params, X, T)
    assert abs(value - loss.item()) < 1e-12
    torch_grads = {"W1": fc1.weight.grad, "b1": fc1.bias.grad, "W2": fc2.weight.grad, "b2": fc2.bias.grad}
    for name, grad in torch_grads.items():
        np.testing.assert_allclose(grads[name], grad.numpy(), rtol=0, atol=1e-12)
    opt.step()
    if hasattr(module, "make_optimizer"):
        module.make_optimizer(params).step(params, grads)
    else:
        params = {k: v - 0.01 * grads[k] for k, v in params.items()}
    after = {"W1": fc1.weight, "b1": fc1.bias, "W2": fc2.weight, "b2": fc2.bias}
    for name, tensor in after.items():
        np.testing.assert_allclose(params[name], tensor.detach().numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("spec", [
    "2 -> 3 sigmoid -> 3 softmax ; cross_entropy",
    "2 -> 3 softplus -> 2 sigmoid ; bce",
    "2 -> 3 elu -> 3 silu -> 1 sigmoid ; mse",
    "2 -> 3 [z*tanh(log(1+exp(z)))] -> 2 gelu -> 1 ; mae",
])
def test_logits_of_1000_are_finite_without_warnings(spec):
    network = derive(spec).network
    module = load_module(network)
    params = module.init_params()
    X, T = make_data(network, n=4)
    for sign in (1.0, -1.0):
        big = {k: v * 0 + sign * 1000.0 if k.startswith("b") else v for k, v in params.items()}
        with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
            warnings.simplefilter("error")
            value, grads = module.loss_and_grads(big, X, T)
            Y, _ = module.forward(big, X)
        assert np.isfinite(value) and np.all(np.isfinite(Y))
        assert all(np.all(np.isfinite(g)) for g in grads.values())


@pytest.mark.parametrize("spec", ["3 -> 4 tanh -> 3 softmax ; cross_entropy", "3 -> 4 relu -> 2 sigmoid ; bce",
                                  "3 -> 4 gelu -> 4 elu -> 2 ; huber"])
def test_float32_agrees_with_float64(spec):
    network = derive(spec).network
    m64, m32 = load_module(network), load_module(network, dtype="float32")
    X, T = make_data(network, n=6)
    p32 = m32.init_params()
    assert all(v.dtype == np.float32 for v in p32.values())
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}
    v32, g32 = m32.loss_and_grads(p32, X.astype(np.float32), T)
    v64, g64 = m64.loss_and_grads(p64, X, T)
    Y32, _ = m32.forward(p32, X)
    assert Y32.dtype == np.float32
    assert abs(v32 - v64) <= 1e-5 * max(1.0, abs(v64))
    for name in p32:
        assert g32[name].dtype == np.float32
        np.testing.assert_allclose(g32[name], g64[name], rtol=1e-4, atol=1e-6)


def test_wrong_inputs_raise_value_errors():
    classes = load_module("3 -> 4 relu -> 3 softmax ; cross_entropy")
    params = classes.init_params()
    X = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"\(N, 3\).*\(5, 4\)"):
        classes.forward(params, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="0..2"):
        classes.loss(params, X, np.array([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        classes.loss(params, X, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integers"):
        classes.loss(params, X, np.zeros(5))
    one_hot = np.eye(3)[[0, 1, 2, 0, 1]]
    assert classes.loss(params, X, one_hot) == pytest.approx(classes.loss(params, X, np.array([0, 1, 2, 0, 1])))
    regression = load_module("3 -> 2 ; mse")
    with pytest.raises(ValueError, match=r"\(5, 2\).*\(5, 3\)"):
        regression.loss_and_grads(regression.init_params(), X, np.zeros((5, 3)))


def test_generation_is_deterministic():
    spec = "3 -> 4 [z*tanh(log(1+exp(z)))] -> 4 elu residual -> 2 sigmoid ; bce ; l2=0.1"
    first = generate(derive(spec))
    assert first == generate(derive(spec))
    script = ("import sys; from codegen.emit import generate; from derive import derive; "
              f"sys.stdout.write(generate(derive({spec!r})))")
    for seed in ("1", "12345"):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, cwd=ROOT)
        assert out.stdout == first


def test_module_runs_as_a_script(tmp_path):
    path = tmp_path / "simple.py"
    path.write_text(generate(derive("2 -> 3 tanh -> 1 ; mse")), encoding="utf-8")
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "gradient check" in out.stdout and out.stderr == ""
    losses = [float(line.split()[-1]) for line in out.stdout.splitlines() if line.startswith("epoch")]
    assert losses[-1] < losses[0]


def test_every_math_line_cites_an_equation():
    derivation = derive("3 -> 4 sigmoid -> 2 ; sse_half")
    source = generate(derivation)
    numbers = {s.number for s in derivation.steps}
    cited = {int(n) for part in source.split("# (eq. ")[1:] for n in part.split(")")[0].split(", ")}
    assert cited == numbers
    assert source.startswith(HEADER + "\n")
    assert "chainrule generate" in source and "3 -> 4 sigmoid -> 2 ; sse_half" in source


def test_cli_writes_refuses_and_forces(tmp_path, capsys):
    from codegen.cli import main
    out = tmp_path / "net.py"
    assert main(["generate", "2 -> 2 relu -> 1 ; mse", "-o", str(out)]) == 0
    assert out.read_text().startswith(HEADER)
    assert main(["generate", "2 -> 2 tanh -> 1 ; mse", "-o", str(out)]) == 0  # its own file: overwritten
    mine = tmp_path / "mine.py"
    mine.write_text("print('hand written')\n")
    assert main(["generate", "2 -> 2 relu -> 1 ; mse", "-o", str(mine)]) == 2
    assert "--force" in capsys.readouterr().err
    assert mine.read_text() == "print('hand written')\n"
    assert main(["generate", "2 -> 2 relu -> 1 ; mse", "-o", str(mine), "--force"]) == 0
    assert mine.read_text().startswith(HEADER)
    assert main(["generate", "2 -> 2 rleu -> 1 ; mse"]) == 2
    assert main(["generate", "2 -> 2 relu -> 1 ; mse", "--dtype", "float32"]) == 0
    assert "DTYPE = np.float32" in capsys.readouterr().out


def test_gallery_is_up_to_date():
    fresh = gallery.render()
    stale = []
    for relative, text in sorted(fresh.items()):
        path = ROOT / relative
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        if old != text:
            stale.append("".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                      f"{relative} (committed)", f"{relative} (fresh)", n=1)))
    assert not stale, "generated/ is stale; run `{}`\n{}".format(gallery.COMMAND, "\n".join(stale)[:6000])
