"""The emitted recurrent kernels' third round of fast paths (issue 13's speed): the backward moves every step's
errors side by side as rows of N numbers (one void item each, _swapped) up to 1 KB a row, by NumPy's transposing copy
beyond and for one sample; both sides of that bound, for every cell, against torch's own backward of
torch.nn.RNN/LSTM/GRU given the same output gradient."""
import numpy as np
import pytest
import torch

from gradcheck import load_module

T, F, H = 3, 2, 3
CELLS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


@pytest.fixture(scope="module")
def kernels():
    """An emitted module with a recurrent layer: its helpers hold every cell's loops."""
    network = {"inputs": {"length": T, "features": F},
               "layers": [{"type": "lstm", "hidden_size": H}, {"units": 2, "activation": "softmax"}],
               "loss": "cross_entropy"}
    return load_module({"name": "fastpath3", "network": network})


def torch_grads(cell, X, G, params, sequences):
    """(dX, dW_ih, dW_hh, db_ih, db_hh) from torch: the gradient of sum(output * G) in float64."""
    layer = CELLS[cell](F, H, batch_first=True, dtype=torch.float64)
    leaves = [layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0]
    with torch.no_grad():
        for leaf, value in zip(leaves, params):
            leaf.copy_(torch.from_numpy(value.astype(np.float64)))
    x = torch.from_numpy(X.astype(np.float64).reshape(len(X), T, F)).requires_grad_()
    out, _ = layer(x)
    out = out.reshape(len(X), T * H) if sequences else out[:, -1]
    grads = torch.autograd.grad((out * torch.from_numpy(G.astype(np.float64))).sum(), [x] + leaves)
    return [g.numpy().reshape(len(X), T * F) if k == 0 else g.numpy() for k, g in enumerate(grads)]


@pytest.mark.parametrize("sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("dtype, n", [(np.float64, 1), (np.float64, 2), (np.float64, 128), (np.float64, 129),
                                      (np.float32, 256), (np.float32, 257)],
                         ids=["f64-one", "f64-void-2", "f64-void-128", "f64-copy-129", "f32-void-256", "f32-copy-257"])
def test_the_backward_equals_torch_on_either_side_of_the_row_copy_bound(kernels, cell, sequences, dtype, n):
    rng = np.random.default_rng(7)
    rows = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * H
    params = [rng.uniform(-0.8, 0.8, shape).astype(dtype) for shape in ((rows, F), (rows, H), (rows,), (rows,))]
    X = rng.standard_normal((n, T * F)).astype(dtype)
    out, saved = kernels._recurrent_forward(cell, X, *params, sequences)
    G = rng.standard_normal(out.shape).astype(dtype)
    ours = kernels._recurrent_backward(cell, G, saved, params[0], params[1], sequences)
    expected = torch_grads(cell, X, G, params, sequences)
    tolerance = 1e-10 if dtype == np.float64 else 1e-4
    for name, a, b in zip(("dX", "dW_ih", "dW_hh", "db_ih", "db_hh"), ours, expected):
        assert a.dtype == dtype and a.shape == b.shape, name
        assert np.allclose(a, b, rtol=tolerance, atol=tolerance), name


@pytest.mark.parametrize("dtype, k", [(np.float64, 1), (np.float64, 2), (np.float64, 128), (np.float64, 129),
                                      (np.float32, 256), (np.float32, 257)])
def test_swapped_is_the_swapaxes_copy_on_either_side_of_its_bound(kernels, dtype, k):
    # up to 1 KB a row the rows of k numbers move as void items, beyond by NumPy's copy; both C-contiguous, and a
    # strided input (a slice) read as its values
    x = np.random.default_rng(8).standard_normal((3, 5, 2 * k)).astype(dtype)[:, :, :k]
    y = kernels._swapped(x)
    assert y.dtype == dtype and y.flags.c_contiguous and np.array_equal(y, x.swapaxes(0, 1))
