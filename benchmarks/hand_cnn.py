"""A careful hand-written NumPy train step of the CIFAR-sized CNN of issue 12, the baseline of section 1d.

conv(3->16, k3, p1) - relu - maxpool 2 - conv(16->32, k3, p1) - relu - maxpool 2 - flatten -
dense(2048->10), softmax cross-entropy (mean over the batch). The cs231n way, written for speed:
im2col through sliding_window_view into one contiguous (N·H·W, C·k·k) matrix kept for the backward
pass (one copy, read twice), one GEMM per convolution per direction, col2im by one strided add per
kernel offset, and 2×2 max pooling by a reshape (no windows to copy) with routing through the
argmax of each window. Parameters as torch stores them: W (out, in, k, k), b (out,).
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv_forward(x, W, b):
    """x (N, C, H, W), W (O, C, k, k), padding (k - 1) / 2, stride 1: (out (N, O, H, W), im2col columns)."""
    n, c, h, w = x.shape
    o, _, k, _ = W.shape
    p = (k - 1) // 2
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cols = sliding_window_view(padded, (k, k), axis=(2, 3)).transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * k * k)
    out = cols @ W.reshape(o, -1).T
    out += b
    return out.reshape(n, h, w, o).transpose(0, 3, 1, 2), cols


def conv_backward(dout, cols, W, need_dx=True):
    """dout (N, O, H, W): (dx (N, C, H, W) or None, dW, db)."""
    n, o, h, w = dout.shape
    _, c, k, _ = W.shape
    p = (k - 1) // 2
    d = dout.transpose(0, 2, 3, 1).reshape(n * h * w, o)
    dW = (d.T @ cols).reshape(W.shape)
    db = d.sum(axis=0)
    if not need_dx:
        return None, dW, db
    dcols = (d @ W.reshape(o, -1)).reshape(n, h, w, c, k, k)
    dpadded = np.zeros((n, c, h + 2 * p, w + 2 * p), dout.dtype)
    for u in range(k):
        for v in range(k):
            dpadded[:, :, u:u + h, v:v + w] += dcols[:, :, :, :, u, v].transpose(0, 3, 1, 2)
    return dpadded[:, :, p:p + h, p:p + w], dW, db


def pool_forward(x):
    """2×2 max pooling, stride 2: (out (N, C, H/2, W/2), the argmax of each window)."""
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    first = windows.argmax(axis=-1)
    return np.take_along_axis(windows, first[..., None], axis=-1)[..., 0], first


def pool_backward(dout, first):
    n, c, h2, w2 = dout.shape
    routed = (np.arange(4) == first[..., None]) * dout[..., None]
    return routed.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * h2, 2 * w2)


def loss_and_grads(params, X, T):
    """(loss, grads) of the CNN on X (N, 3, 32, 32) and class indices T (N,)."""
    z1, cols1 = conv_forward(X, params["W1"], params["b1"])
    a1 = np.maximum(z1, 0)
    p2, arg2 = pool_forward(a1)
    z3, cols3 = conv_forward(p2, params["W3"], params["b3"])
    a3 = np.maximum(z3, 0)
    p4, arg4 = pool_forward(a3)
    flat = p4.reshape(len(X), -1)
    z6 = flat @ params["W6"].T + params["b6"]
    top = z6.max(axis=1, keepdims=True)
    e = np.exp(z6 - top)
    total = e.sum(axis=1, keepdims=True)
    n = len(X)
    loss = float(np.mean(np.log(total[:, 0]) + top[:, 0] - z6[np.arange(n), T]))
    delta6 = e / total
    delta6[np.arange(n), T] -= 1
    delta6 /= n
    grads = {"W6": delta6.T @ flat, "b6": delta6.sum(axis=0)}
    dp4 = (delta6 @ params["W6"]).reshape(p4.shape)
    dz3 = pool_backward(dp4, arg4) * (z3 > 0)
    dp2, grads["W3"], grads["b3"] = conv_backward(dz3, cols3, params["W3"])
    dz1 = pool_backward(dp2, arg2) * (z1 > 0)
    _, grads["W1"], grads["b1"] = conv_backward(dz1, cols1, params["W1"], need_dx=False)
    return loss, grads


def gemms(params, X):
    """The step's own matrix products on contiguous operands of the right shapes: () -> None, to time alone."""
    n = len(X)
    rng = np.random.default_rng(0)
    dtype = X.dtype

    def m(*shape):
        return rng.standard_normal(shape).astype(dtype)
    cols1, cols3, flat = m(n * 1024, 27), m(n * 256, 144), m(n, 2048)
    d1, d3, d6 = m(n * 1024, 16), m(n * 256, 32), m(n, 10)
    W1, W3, W6 = params["W1"].reshape(16, -1), params["W3"].reshape(32, -1), params["W6"]

    def run():
        cols1 @ W1.T, cols3 @ W3.T, flat @ W6.T          # forward
        d6.T @ flat, d6 @ W6, d3.T @ cols3, d3 @ W3, d1.T @ cols1  # backward (no dx for the data)
    return run
