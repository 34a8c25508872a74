"""The emitted recurrent kernels' fast paths (issue 13's speed): the LSTM keeps c_(t-1) below its gates
and the backward loop keeps every step's errors for one GEMM per weight after the loop, so these check
that the backward reads the forward's cache without changing it, that a chunked forward (truncated
BPTT's carried state) ends where the whole one does, and that the per-step softmax, whose max and sum
run down columns, is the textbook one even at extreme logits. test_recurrent.py holds the equality
with PyTorch."""
import warnings

import numpy as np
import pytest

from codegen.emit import generate
from derive import derive
from gradcheck import load_module

N, T, F, H = 3, 5, 4, 3
CELLS = [("rnn", False), ("rnn", True), ("lstm", False), ("gru", False)]


@pytest.fixture(scope="module")
def kernels():
    """An emitted module with a recurrent layer: its helpers hold every cell's loops."""
    network = {"inputs": {"length": T, "features": F},
               "layers": [{"type": "lstm", "hidden_size": H}, {"units": 2, "activation": "softmax"}],
               "loss": "cross_entropy"}
    return load_module({"name": "fastpath", "network": network})


def weights(cell, rng):
    rows = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * H
    return [rng.uniform(-0.8, 0.8, shape) for shape in ((rows, F), (rows, H), (rows,), (rows,))]


@pytest.mark.parametrize("sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize("cell, relu", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_the_backward_leaves_the_forward_cache_as_it_was_and_gives_the_same_twice(kernels, cell, relu, sequences):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, T * F))
    W_ih, W_hh, b_ih, b_hh = weights(cell, rng)
    out, saved = kernels._recurrent_forward(cell, X, W_ih, W_hh, b_ih, b_hh, sequences, relu=relu)
    before = [np.array(a) for a in saved[1:] if a is not None]
    G = rng.standard_normal(out.shape)
    first = kernels._recurrent_backward(cell, G, saved, W_ih, W_hh, sequences, relu=relu)
    second = kernels._recurrent_backward(cell, G, saved, W_ih, W_hh, sequences, relu=relu)
    for a, b in zip(before, [a for a in saved[1:] if a is not None]):
        assert np.array_equal(a, b)
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    assert [a.shape for a in first] == [X.shape, W_ih.shape, W_hh.shape, b_ih.shape, b_hh.shape]


@pytest.mark.parametrize("cell, relu", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_a_forward_in_two_chunks_carrying_the_state_ends_where_the_whole_one_does(kernels, cell, relu):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((N, T * F))
    params = weights(cell, rng)
    whole, saved = kernels._recurrent_forward(cell, X, *params, True, relu=relu)
    cut = 2 * F
    head, head_saved = kernels._recurrent_forward(cell, X[:, :cut], *params, True, relu=relu)
    tail, tail_saved = kernels._recurrent_forward(cell, X[:, cut:], *params, True, relu=relu,
                                                  state=kernels._recurrent_state(head_saved))
    assert np.allclose(np.concatenate([head, tail], axis=1), whole, rtol=0, atol=1e-14)
    for a, b in zip(kernels._recurrent_state(tail_saved), kernels._recurrent_state(saved)):
        assert a.shape == (N, H) and np.allclose(a, b, rtol=0, atol=1e-14)
    if cell == "lstm":  # c_T differs from h_T: the state carries the cell state, not h twice
        h_T, c_T = kernels._recurrent_state(saved)
        assert not np.allclose(h_T, c_T)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_step_softmax_is_the_textbook_one_even_at_extreme_logits(kernels, dtype):
    rng = np.random.default_rng(3)
    k = 5
    z = (rng.standard_normal((4, 3 * k)) * 30).astype(dtype)
    z[0, :k] = [1e4, -1e4, 0, 3, 9e3]     # exp of the raw values would overflow either dtype
    z[1, k:2 * k] = -1e4                  # and underflow to 0 without the shift
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e, lse = kernels._step_softmax_logsumexp(z, k)
    steps = z.astype(np.float64).reshape(4, 3, k)
    expected_lse = np.logaddexp.reduce(steps, axis=2)
    expected = np.exp(steps - expected_lse[:, :, None])
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    assert e.dtype == lse.dtype == dtype and e.shape == lse.shape == z.shape
    assert np.allclose(e.reshape(4, 3, k), expected, rtol=tolerance, atol=tolerance)
    assert np.allclose(lse.reshape(4, 3, k), np.repeat(expected_lse[:, :, None], k, axis=2), rtol=tolerance, atol=0)


def test_a_softmax_at_every_step_emits_no_unused_whole_row_softmax():
    step = generate(derive({"name": "steps", "network": {"inputs": {"length": 3, "features": 2},
                                                          "layers": [{"type": "rnn", "hidden_size": 2},
                                                                     {"units": 4, "activation": "softmax"}],
                                                          "loss": "cross_entropy"}}))
    assert "def _step_softmax_logsumexp(" in step and "def _softmax_logsumexp(" not in step
    assert "def _softmax_logsumexp(" in generate(derive("3 -> 4 softmax ; cross_entropy"))
