"""cs231n-style conv_backward functions for check-code --op conv2d: one right, each other one usual mistake."""
import numpy as np


def conv_backward_naive(dout, cache, stride_in_dx=True, stride_in_dw=True, flip=False, crop=True):
    """The textbook loop: each output's dout goes back to the window it read."""
    x, w, b, conv_param = cache
    s, p = conv_param["stride"], conv_param["pad"]
    F, _, HH, WW = w.shape
    _, _, Ho, Wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    kernel = w[:, :, ::-1, ::-1] if flip else w
    for i in range(Ho):
        for j in range(Wo):
            r, c = (i * s, j * s)
            window = xp[:, :, r:r + HH, c:c + WW] if stride_in_dw else xp[:, :, i:i + HH, j:j + WW]
            dw += np.einsum("nf,nchw->fchw", dout[:, :, i, j], window)
            r, c = (r, c) if stride_in_dx else (i, j)
            dxp[:, :, r:r + HH, c:c + WW] += np.einsum("nf,fchw->nchw", dout[:, :, i, j], kernel)
    dx = dxp[:, :, p:-p, p:-p] if crop and p else dxp
    return dx, dw, dout.sum(axis=(0, 2, 3))


def conv(dout, x, w, b, conv_param):
    """The adapter: check-code's arguments to cs231n's (dout, cache)."""
    return conv_backward_naive(dout, (x, w, b, conv_param))


def conv_flipped_twice(dout, x, w, b, conv_param):
    """Correlates dout with the kernel as it is where the full convolution turns it by 180°."""
    return conv_backward_naive(dout, (x, w, b, conv_param), flip=True)


def conv_no_stride_in_dx(dout, x, w, b, conv_param):
    return conv_backward_naive(dout, (x, w, b, conv_param), stride_in_dx=False)


def conv_no_stride(dout, x, w, b, conv_param):
    return conv_backward_naive(dout, (x, w, b, conv_param), stride_in_dx=False, stride_in_dw=False)


def conv_padded_dx(dout, x, w, b, conv_param):
    return conv_backward_naive(dout, (x, w, b, conv_param), crop=False)
