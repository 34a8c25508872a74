"""The emitted step kernels' second round of fast paths (issue 13's speed): the per-step softmax shifts every
step by its first logit while all logits lie within 64 of each other, and by its own max otherwise; an embedding's
gradient is a GEMM with the ids' one-hot rows up to 64 ids, a scatter-add beyond. Both sides of each bound
against the textbook in float64; test_recurrent.py holds the equality with PyTorch."""
import warnings

import numpy as np
import pytest

from gradcheck import load_module


@pytest.fixture(scope="module")
def kernels():
    """An emitted module with a softmax at every step of a sequence."""
    network = {"inputs": {"length": 4, "features": 3},
               "layers": [{"type": "lstm", "hidden_size": 3}, {"units": 6, "activation": "softmax"}],
               "loss": "cross_entropy"}
    return load_module({"name": "fastpath2", "network": network})


@pytest.fixture(scope="module")
def tokens():
    """An emitted module whose first layer embeds token ids: it holds the embedding's gradient."""
    network = {"inputs": {"length": 4, "vocab": 8},
               "layers": [{"type": "embedding", "embedding_dim": 3}, {"type": "lstm", "hidden_size": 3},
                          {"units": 8, "activation": "softmax"}],
               "loss": "cross_entropy"}
    return load_module({"name": "fastpath2_tokens", "network": network})


def textbook(z, k):
    steps = z.astype(np.float64).reshape(z.shape[0], -1, k)
    lse = np.logaddexp.reduce(steps, axis=2)
    return np.exp(steps - lse[:, :, None]).reshape(z.shape), np.repeat(lse, k, axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spread", [63.5, 100.0], ids=["first-logit-shift", "max-shift"])
def test_a_step_whose_first_logit_is_far_from_its_max(kernels, dtype, spread):
    # under the bound each step is shifted by its first logit, here its min or its max; above it a shift by
    # the min would overflow float32 (e^100), so each step must take its own max
    rng = np.random.default_rng(4)
    k = 6
    z = rng.uniform(0, spread, (3, 4 * k))
    z[0, :2] = 0, spread
    z[1, k:k + 2] = spread, 0
    z = z.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e, lse = kernels._step_softmax_logsumexp(z, k)
    expected, expected_lse = textbook(z, k)
    tolerance = 1e-13 if dtype == np.float64 else 1e-6
    assert e.dtype == lse.dtype == dtype and e.shape == lse.shape == z.shape
    assert np.allclose(e, expected, rtol=tolerance, atol=tolerance)
    assert np.allclose(lse, expected_lse, rtol=tolerance, atol=0)
    assert np.allclose(e.astype(np.float64).reshape(3, 4, k).sum(axis=2), 1, rtol=0, atol=10 * tolerance)


@pytest.mark.parametrize("vocab", [64, 65], ids=["one-hot-gemm", "scatter-add"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_embedding_gradient_sums_every_position_of_each_id(tokens, vocab, dtype):
    # up to 64 ids a GEMM with their one-hot rows, beyond a scatter-add: both against a loop over positions,
    # ids repeated and some never seen (their rows stay 0)
    rng = np.random.default_rng(5)
    n, t, width = 3, 7, 5
    ids = rng.integers(0, vocab // 2, (n, t))
    ids[0, :3] = vocab - 1
    G = rng.standard_normal((n, t * width)).astype(dtype)
    expected = np.zeros((vocab, width))
    for (i, j), token in np.ndenumerate(ids):
        expected[token] += G[i, j * width:(j + 1) * width]
    dW = tokens._embedding_grad(ids, G, vocab)
    assert dW.dtype == dtype and dW.shape == (vocab, width)
    assert np.allclose(dW, expected, rtol=1e-12 if dtype == np.float64 else 1e-5, atol=1e-6)
    assert not dW[vocab // 2:vocab - 1].any()
