"""The emitted convolution and pooling helpers on their fast paths (issue 12's speed work): im2col built
by one strided copy per kernel offset with no padded copy of the input, col2im added into the unpadded
input, and the kernel's gradient reading the forward's saved columns. Each helper is compared with
torch.nn.functional (and its autograd) to 1e-10 in float64 on geometries that stress the spans: odd
sizes, strides that skip the last rows, dilation, rectangular kernels, 1-D signals, and padding so wide
that whole kernel offsets read nothing but padding."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import derive
from codegen.emit import generate
from gradcheck import load_module, torch_loss, twin

# one module that defines every window helper (the helpers are the same text whatever the spec)
HELPERS = load_module("1x6x6 -> conv2d(out_channels=2, kernel_size=3, padding=1, activation=relu) "
                      "-> maxpool2d(kernel_size=2, padding=1) -> conv2d(out_channels=2, kernel_size=2, activation=relu) "
                      "-> avgpool2d(kernel_size=2, padding=1) -> flatten -> 2 softmax ; cross_entropy")

#: (C, *spatial), O, kernel, stride, padding, dilation
GEOMETRIES = {
    "3x7x9 k3 s1 p1": ((3, 7, 9), 4, (3, 3), (1, 1), (1, 1), (1, 1)),
    "2x8x7 k3 s2 p1 (stride skips the last row)": ((2, 8, 7), 3, (3, 3), (2, 2), (1, 1), (1, 1)),
    "2x5x6 k2x3 s3x1 p2x0 d2x1": ((2, 5, 6), 3, (2, 3), (3, 1), (2, 0), (2, 1)),
    "1x3x3 k2 p3 (offsets wholly in the padding)": ((1, 3, 3), 2, (2, 2), (1, 1), (3, 3), (1, 1)),
    "2x4x5 k3 s2 p4 d2": ((2, 4, 5), 2, (3, 3), (2, 2), (4, 4), (2, 2)),
    "1-D 3x11 k4 s2 p2 d1": ((3, 11), 2, (4,), (2,), (2,), (1,)),
    "1-D 2x5 k2 s1 p3 d3": ((2, 5), 3, (2,), (1,), (3,), (3,)),
}
CONV = {1: F.conv1d, 2: F.conv2d}


def _torch_conv(shape, O, kernel, stride, padding, dilation, n=11, seed=0):
    """(x, W, b, z, delta): float64 tensors whose grads autograd fills, and z's adjoint delta; n = 11 is more
    than one block of _conv_input_grad and not a multiple of it."""
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=(n,) + shape), requires_grad=True)
    W = torch.tensor(rng.normal(size=(O, shape[0]) + kernel), requires_grad=True)
    b = torch.tensor(rng.normal(size=O), requires_grad=True)
    z = CONV[len(kernel)](x, W, b, stride=stride, padding=padding, dilation=dilation)
    delta = torch.tensor(rng.normal(size=z.shape))
    z.backward(delta)
    return x, W, b, z, delta


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_conv_and_both_gradients_equal_torch(geometry):
    shape, O, kernel, stride, padding, dilation = geometry
    x, W, b, z, delta = _torch_conv(shape, O, kernel, stride, padding, dilation)
    n = len(x)
    flat = x.detach().numpy().reshape(n, -1)
    out, cols = HELPERS._conv(flat, W.detach().numpy(), b.detach().numpy(), shape, stride, padding, dilation)
    assert out.shape == (n, z[0].numel())
    assert np.abs(out - z.detach().numpy().reshape(n, -1)).max() < 1e-10
    d = delta.numpy().reshape(n, -1)
    dW = HELPERS._conv_weight_grad(d, cols, shape, kernel)
    assert dW.shape == W.shape and np.abs(dW - W.grad.numpy()).max() < 1e-10
    dx = HELPERS._conv_input_grad(d, W.detach().numpy(), shape, stride, padding, dilation)
    assert np.abs(dx - x.grad.numpy().reshape(n, -1)).max() < 1e-10


def test_im2col_columns_read_zeros_only_in_the_padding():
    """Every column entry is the input at its position or 0 in the padding, also where a whole kernel
    offset reads padding: the border strips of np.empty are written, not left as garbage."""
    shape, kernel, stride, padding, dilation = (2, 3, 4), (3, 2), (2, 1), (3, 2), (1, 2)
    x = np.arange(1.0, 1 + 2 * np.prod(shape)).reshape((2,) + shape)
    cols = HELPERS._im2col(x, kernel, stride, padding, dilation)
    padded = np.pad(x, ((0, 0), (0, 0), (3, 3), (2, 2)))
    view = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))[:, :, ::2, :, :, ::2]
    expected = view.transpose(0, 1, 4, 5, 2, 3).reshape(cols.shape)
    assert np.array_equal(cols, expected)
    assert (cols == 0).any() and cols.flags["C_CONTIGUOUS"]


POOLS = {
    "maxpool k3 s2 p1 on 2x7x6": (F.max_pool2d, "_maxpool", "_maxpool_grad", (2, 7, 6), (3, 3), (2, 2), (1, 1)),
    "maxpool k2 s1 p1 on 1x5x5": (F.max_pool2d, "_maxpool", "_maxpool_grad", (1, 5, 5), (2, 2), (1, 1), (1, 1)),
    "avgpool k3 s2 p1 on 2x7x6": (F.avg_pool2d, "_avgpool", "_avgpool_grad", (2, 7, 6), (3, 3), (2, 2), (1, 1)),
    "avgpool 1-D k3 s2 p1 on 2x9": (F.avg_pool1d, "_avgpool", "_avgpool_grad", (2, 9), (3,), (2,), (1,)),
}


@pytest.mark.parametrize("pool", POOLS.values(), ids=POOLS.keys())
def test_pool_gradients_through_col2im_equal_torch(pool):
    """The pooling gradients whose windows overlap or are padded go through _col2im's spans."""
    torch_pool, forward, backward, shape, kernel, stride, padding = pool
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(3,) + shape), requires_grad=True)
    y = torch_pool(x, kernel, stride, padding)
    delta = torch.tensor(rng.normal(size=y.shape))
    y.backward(delta)
    flat, d = x.detach().numpy().reshape(3, -1), delta.numpy().reshape(3, -1)
    ours = getattr(HELPERS, forward)(flat, shape, kernel, stride, padding)
    assert np.abs(ours - y.detach().numpy().reshape(3, -1)).max() < 1e-12
    args = (d, flat, ours) if forward == "_maxpool" else (d,)
    dx = getattr(HELPERS, backward)(*args, shape, kernel, stride, padding)
    assert np.abs(dx - x.grad.numpy().reshape(3, -1)).max() < 1e-12


SPEC = {"network": {"inputs": {"channels": 2, "height": 9, "width": 8}, "loss": "cross_entropy", "layers": [
    {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 2, "dilation": 2, "activation": "relu"},
    {"type": "conv2d", "out_channels": 2, "kernel_size": [2, 3], "padding": 1, "activation": "tanh"},
    {"type": "flatten"},
    {"units": 3, "activation": "softmax"}]}}


def test_the_backward_reads_the_forward_columns_and_matches_torch():
    network = derive.derive(SPEC).network
    module = load_module(SPEC)
    source = generate(derive.derive(SPEC))
    # each kernel gradient reads the columns its convolution returned, never builds them again
    assert source.count("_saved = _conv(") == 2
    assert "_conv_weight_grad(Delta1, Z1_saved," in source and "_conv_weight_grad(Delta2, Z2_saved," in source
    torch.manual_seed(0)
    modules = twin(network.layers, network.inputs)
    params = module.from_torch_state_dict({k: v.numpy() for k, v in modules.state_dict().items()})
    rng = np.random.default_rng(2)
    X, T = rng.normal(size=(4, 2, 9, 8)), rng.integers(0, 3, size=4)
    L, grads = module.loss_and_grads(params, X, T)
    value = torch_loss(network, modules, X, T)
    value.backward()
    assert abs(L - value.item()) < 1e-10
    named = dict(modules.named_parameters())
    for name, key in module.TORCH_KEYS.items():
        assert np.abs(grads[name] - named[key].grad.numpy()).max() < 1e-10, name


@pytest.mark.parametrize("kernel, stride, padding", [((3, 3), (3, 3), (0, 0)), ((1, 3), (1, 3), (0, 0)),
                                                     ((3, 2), (1, 2), (1, 0))],
                         ids=["tiling 3x3", "tiling 1x3", "overlapping padded 3x2"])
def test_max_pool_ties_go_to_the_first_maximum_on_both_paths(kernel, stride, padding):
    """Windows full of equal entries (a relu's zeros, small integers): each gradient goes to the first
    maximum only, on the tiling path (one write per offset) as on the general one (col2im)."""
    rng = np.random.default_rng(3)
    shape = (2, 6, 6)
    x = torch.tensor(np.maximum(rng.integers(-2, 3, size=(4,) + shape), 0).astype(float), requires_grad=True)
    y = F.max_pool2d(x, kernel, stride, padding)
    delta = torch.tensor(rng.normal(size=y.shape))
    y.backward(delta)
    flat = x.detach().numpy().reshape(4, -1)
    ours = HELPERS._maxpool(flat, shape, kernel, stride, padding)
    dx = HELPERS._maxpool_grad(delta.numpy().reshape(4, -1), flat, ours, shape, kernel, stride, padding)
    assert np.abs(dx - x.grad.numpy().reshape(4, -1)).max() < 1e-12
