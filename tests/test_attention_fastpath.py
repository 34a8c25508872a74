"""The transformer step's fast paths (issue 14's speed target): gelu's erf computed once in the forward and read
back by the backward, attention's scores held key-major with A saved as one (N, heads, T, T) array, the float32
erf's sign and clamp by bit operations and clip, and layer norm's means as matrix-vector products; each still
exact in float64 against PyTorch, and float32 without a warning at saturated scores."""
import re
import tracemalloc
import warnings

import numpy as np
import pytest
import torch

from codegen.emit import generate
from derive import derive
from gradcheck import assert_equals_torch, load_module, torch_loss_and_grads
from test_attention import spec_of, torch_forward, torch_twin

#: The benchmark's block (benchmarks/attention_step.py, section 1e) with a smaller vocabulary.
N, T, E, HEADS, HIDDEN, VOCAB = 8, 64, 64, 4, 256, 32
BLOCK = spec_of([{"type": "embedding", "embedding_dim": E}, {"type": "positional"},
                 {"type": "residual", "layers": [{"type": "layernorm"},
                                                 {"type": "attention", "num_heads": HEADS, "causal": True}]},
                 {"type": "residual", "layers": [{"type": "layernorm"}, {"units": HIDDEN, "activation": "gelu"},
                                                 {"units": E}]},
                 {"units": VOCAB, "activation": "softmax"}], {"length": T, "vocab": VOCAB}, name="block")


def function_source(source: str, name: str) -> str:
    return re.search(rf"(?ms)^def {name}\(.*?(?=^def )", source)[0]


def test_gelu_erf_is_computed_once_and_read_back_by_the_backward():
    module = load_module("3 -> 5 gelu -> 2 ; mse")
    source = generate(derive("3 -> 5 gelu -> 2 ; mse"))
    assert function_source(source, "_forward").count("_erf(") == 1
    assert 'erf_Z1 = _erf(' in function_source(source, "_forward")
    backward = function_source(source, "_loss_and_grads")
    assert "_erf(" not in backward and 'erf_Z1 = cache["erf_Z1"]' in backward
    rng = np.random.default_rng(0)
    params = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in module.init_params().items()}
    X, Y = rng.normal(size=(7, 3)) * 2, rng.normal(size=(7, 2))
    loss, grads = module.loss_and_grads(params, X, Y)
    want_loss, want = torch_loss_and_grads(derive("3 -> 5 gelu -> 2 ; mse").network, params, X, Y)
    assert abs(loss - want_loss) < 1e-12
    for key in params:
        assert np.abs(grads[key] - want[key]).max() < 1e-12, key


@pytest.mark.parametrize("scale", [0.5, 30], ids=["scores-bounded", "scores-shifted-by-their-max"])
def test_the_benchmark_block_equals_torch_in_float64(scale):
    """Section 1e's network at its own sizes, from the same weights: loss and every gradient to 1e-10, with the
    query and key weights halved, so that the scores' bound |q||k| is under 64 (about 18: the softmax's shift by
    the max skipped), and 30 times larger (about 65000: shifted)."""
    net = derive(BLOCK).network
    module = load_module(BLOCK)
    rng = np.random.default_rng(1)
    params = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in module.init_params(seed=1).items()}
    params["W_in3_2"][:2 * E] *= scale
    X, Y = rng.integers(0, VOCAB, size=(3, T)), rng.integers(0, VOCAB, size=(3, T))
    assert_equals_torch(module, params, X, Y, torch_twin(net), lambda modules: torch.nn.functional.cross_entropy(
        torch_forward(net, modules, X).reshape(-1, VOCAB), torch.from_numpy(Y).reshape(-1)))


def test_float32_saturated_scores_run_without_warnings_and_keep_one_weights_array():
    """Query and key weights 40 times torch's scale: scores in the hundreds, the softmax saturated, masked
    entries -inf; no warning, finite gradients, and the cache holds one (N, heads, T, T) array (A is its view
    with the queries as rows: weights over the keys summing to 1, exactly 0 after each query)."""
    module = load_module(BLOCK, dtype="float32")
    params = {k: v.copy() for k, v in module.init_params(seed=2).items()}
    params["W_in3_2"][:2 * E] *= 40
    rng = np.random.default_rng(2)
    X, Y = rng.integers(0, VOCAB, size=(N, T)), rng.integers(0, VOCAB, size=(N, T))
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow is exact 0
        warnings.simplefilter("error")
        loss, grads = module.loss_and_grads(params, X, Y)
        ready, X_ready, _ = module._checked(params, X, Y)
        _, cache = module._forward(ready, X_ready)
    assert np.isfinite(loss) and all(np.isfinite(g).all() and g.dtype == np.float32 for g in grads.values())
    A = cache["A3_2_saved"][4]
    assert A.shape == (N, HEADS, T, T)
    assert (A[:, :, np.triu(np.ones((T, T), bool), 1)] == 0).all()
    assert np.allclose(A.sum(axis=3), 1, atol=1e-5) and A.max() > 0.999  # saturated: some rows one-hot
    roots = {}
    for value in cache.values():
        for array in value if isinstance(value, tuple) else (value,):
            while array.base is not None:
                array = array.base
            roots[id(array)] = array
    assert sum(a.shape == (N, HEADS, T, T) for a in roots.values()) == 1


def test_float32_step_peak_memory():
    """The tracemalloc peak of one float32 train step of the benchmark block (6.1 MiB when written; the
    (N, heads, T, T) weights are 0.5 MiB): a second copy of them, or of gelu's (N·T, 256) arrays, shows."""
    module = load_module(BLOCK, dtype="float32")
    rng = np.random.default_rng(3)
    ready, X, Y = module._checked(module.init_params(seed=3), rng.integers(0, VOCAB, size=(N, T)),
                                  rng.integers(0, VOCAB, size=(N, T)))
    module._loss_and_grads(ready, X, Y)
    tracemalloc.start()
    try:
        module._loss_and_grads(ready, X, Y)
        peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()
    assert peak < 6.5, peak


def test_float32_erf_sign_and_clamp_by_bits_and_clip():
    """-0.0 stays -0.0, NaN stays NaN, ±inf and huge inputs give ±1, without a warning; non-contiguous and 0-d
    inputs too, and the input is left as it was."""
    erf = load_module("2 -> 3 gelu -> 1 ; mse", dtype="float32")._erf32
    x = np.array([-0.0, 0.0, np.nan, -np.nan, np.inf, -np.inf, 3e38, -3e38, 0.5, -0.5, 2.0, -2.0], np.float32)
    before = x.copy()
    with np.errstate(all="raise"):
        got = erf(x)
        strided = erf(x[::2])
        scalar = erf(np.float32(-0.5))
    np.testing.assert_array_equal(x, before)
    assert np.signbit(got[0]) and got[0] == 0 and not np.signbit(got[1]) and got[1] == 0
    assert np.isnan(got[2:4]).all()
    np.testing.assert_array_equal(got[4:8], [1, -1, 1, -1])
    np.testing.assert_allclose(got[8:], [0.5204999, -0.5204999, 0.9953223, -0.9953223], rtol=1e-7)
    np.testing.assert_array_equal(strided, got[::2])
    assert scalar.shape == () and scalar == got[9]


def test_layernorm_means_by_matrix_vector_product_keep_float64_exact_at_a_large_offset():
    """Features of mean 1e4 and spread 1: layer norm's centring still agrees with torch to 1e-10."""
    spec = spec_of([{"type": "positional"}, {"type": "layernorm"}, {"type": "mean"}, {"units": 2}], {"length": 3, "features": 6},
                   loss="mse", name="ln")
    net = derive(spec).network
    module = load_module(spec)
    rng = np.random.default_rng(4)
    params = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in module.init_params(seed=4).items()}
    X, Y = 1e4 + rng.normal(size=(5, 18)), rng.normal(size=(5, 2))
    assert_equals_torch(module, params, X, Y, torch_twin(net), lambda modules: (  # mse: Σ / 2N
        (torch_forward(net, modules, X.reshape(5, 3, 6)) - torch.from_numpy(Y)) ** 2).sum() / 10)
