"""cs231n-style pooling backward functions for check-code --op maxpool2d / avgpool2d."""
import numpy as np


def max_pool_backward_naive(dout, cache, route="max"):
    """Each window's dout goes to its maximum (route='max'), to every entry ('spread') or 1/k² to each ('mean')."""
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, Ho, Wo = dout.shape
    dx = np.zeros_like(x)
    for i in range(Ho):
        for j in range(Wo):
            window = x[:, :, i * s:i * s + ph, j * s:j * s + pw]
            g = dout[:, :, i, j][:, :, None, None]
            if route == "max":
                flat = window.reshape(N, C, -1)
                mask = np.zeros_like(flat)
                np.put_along_axis(mask, flat.argmax(axis=2)[:, :, None], 1.0, axis=2)
                share = mask.reshape(window.shape) * g
            else:
                share = np.broadcast_to(g / (ph * pw if route == "mean" else 1), window.shape)
            dx[:, :, i * s:i * s + ph, j * s:j * s + pw] += share
    return dx


def maxpool(dout, x, pool_param):
    return max_pool_backward_naive(dout, (x, pool_param))


def maxpool_spread(dout, x, pool_param):
    return max_pool_backward_naive(dout, (x, pool_param), route="spread")


def maxpool_averaged(dout, x, pool_param):
    return max_pool_backward_naive(dout, (x, pool_param), route="mean")


def avgpool(dout, x, pool_param):
    return max_pool_backward_naive(dout, (x, pool_param), route="mean")


def avgpool_no_fraction(dout, x, pool_param):
    return max_pool_backward_naive(dout, (x, pool_param), route="spread")


def avgpool_routed(dout, x, pool_param):
    return max_pool_backward_naive(dout, (x, pool_param), route="max")
