"""A whole CNN's backward(params, cache, X, T) for check-code, built from the cs231n-style layers beside it:
1x6x6 -> conv2d(2, k3, p1) -> batchnorm -> maxpool2d(2) -> conv2d(2, k3, s2, p1, relu) -> flatten -> 3 softmax."""
from batchnorm import batchnorm_backward_alt
from conv import conv_backward_naive
from pool import max_pool_backward_naive


def backward(params, cache, X, T, conv=None, pool="max", norm=None):
    """dL/d of every parameter; ``conv``, ``pool``, ``norm``: one usual mistake in layer 4, 3 or 2."""
    N = X.shape[0]
    d6 = (cache["Yhat"] - T) / N
    grads = {"W6": d6.T @ cache["A4"].reshape(N, -1), "b6": d6.sum(axis=0)}
    d4 = (d6 @ params["W6"]).reshape(cache["Z4"].shape) * (cache["Z4"] > 0)
    dA3, grads["W4"], grads["b4"] = conv_backward_naive(
        d4, (cache["A3"], params["W4"], params["b4"], {"stride": 2, "pad": 1}), **(conv or {}))
    dA2 = max_pool_backward_naive(dA3, (cache["A2"], {"pool_height": 2, "pool_width": 2, "stride": 2}), route=pool)
    C = dA2.shape[1]
    flat = lambda a: a.transpose(0, 2, 3, 1).reshape(-1, C)  # noqa: E731  (N·H·W, C): batch norm per channel
    bn = (flat(cache["Z1"]), flat(cache["Xhat2"]), cache["mu2"], cache["var2"], cache["sigma2"], params["gamma2"])
    dZ1, grads["gamma2"], grads["beta2"] = batchnorm_backward_alt(flat(dA2), bn, **(norm or {}))
    dZ1 = dZ1.reshape(N, 6, 6, C).transpose(0, 3, 1, 2)
    _, grads["W1"], grads["b1"] = conv_backward_naive(dZ1, (X, params["W1"], params["b1"], {"stride": 1, "pad": 1}))
    return grads


def kernel_not_flipped(params, cache, X, T):
    return backward(params, cache, X, T, conv={"flip": True})


def pool_spread(params, cache, X, T):
    return backward(params, cache, X, T, pool="spread")


def no_variance_path(params, cache, X, T):
    return backward(params, cache, X, T, norm={"var_path": False})
