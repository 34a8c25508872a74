"""The float32 erf (`_erf32`, Arm's erff evaluated in float32, which a float32 gelu module calls instead
of the float64 fdlibm port): its ulp error on a dense grid and at its branch edges against math.erf, and
a float32 gelu network's gradients against PyTorch's."""
import math

import numpy as np
import pytest

from gradcheck import load_module

torch = pytest.importorskip("torch")

#: _erf32's branch edge and its clamp: past 4, float32's erf is 1.
EDGES = (0.921875, 4.0)


@pytest.fixture(scope="module")
def erf():
    return load_module("2 -> 3 gelu -> 1 ; mse", dtype="float32")._erf


def ulps(got, x) -> np.ndarray:
    """|got - math.erf(x)| in float32 ulps of the exact value (math.erf is within a float64 ulp of it)."""
    want = np.array([math.erf(v) for v in x.tolist()])
    return np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32))


def test_dense_grid_within_1_4_ulp(erf):
    """Every 499th float32 from the smallest subnormal to 4.5 (2.2 million), and -x gives exactly -erf(x)."""
    x = np.arange(1, 0x40900000, 499, dtype=np.uint32).view(np.float32)
    got = erf(x)
    assert got.dtype == np.float32
    assert ulps(got, x).max() <= 1.4
    np.testing.assert_array_equal(erf(-x), -got)


def test_branch_edges_within_1_4_ulp_and_one_past_the_clamp(erf):
    """4096 float32 steps either side of each edge (below 4 they are half steps: every other float32)."""
    steps = np.arange(-4096, 4097, dtype=np.float32)
    x = np.concatenate([np.float32(edge) + steps * np.spacing(np.float32(edge)) for edge in EDGES])
    x = np.concatenate([x, -x])
    got = erf(x)
    assert ulps(got, x).max() <= 1.4
    past = np.abs(x) >= 4
    np.testing.assert_array_equal(got[past], np.sign(x[past]))


def test_float32_module_calls_the_float32_path(erf):
    """Exactly _erf32's results (not the float64 port rounded: they differ somewhere on this grid)."""
    module = load_module("2 -> 3 gelu -> 1 ; mse", dtype="float32")
    x = np.linspace(-5, 5, 100_001, dtype=np.float32)
    np.testing.assert_array_equal(module._erf(x), module._erf32(x))
    assert not np.array_equal(module._erf32(x), module._erf(x.astype(np.float64)).astype(np.float32))


def torch_gelu_grads(params, X, T):
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    hidden = torch.nn.functional.gelu(torch.from_numpy(X) @ p["W1"].T + p["b1"])
    loss = torch.nn.functional.mse_loss(hidden @ p["W2"].T + p["b2"], torch.from_numpy(T))
    loss.backward()
    return {k: v.grad.numpy() for k, v in p.items()}


def test_float32_gelu_gradients_within_float32_rounding_of_torch():
    module = load_module("8 -> 64 gelu -> 3 ; mse", dtype="float32")
    rng = np.random.default_rng(5)
    params = module.init_params(seed=3)
    X = rng.normal(scale=2.0, size=(256, 8)).astype(np.float32)
    T = rng.normal(size=(256, 3)).astype(np.float32)
    _, grads = module.loss_and_grads(params, X, T)
    want = torch_gelu_grads(params, X, T)
    for name, value in grads.items():
        assert value.dtype == np.float32
        np.testing.assert_allclose(value, want[name], rtol=2e-5, atol=2e-6 * np.abs(want[name]).max(), err_msg=name)
