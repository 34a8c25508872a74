"""cs231n-style batchnorm_backward functions for check-code --op batchnorm / spatial_batchnorm."""
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    """Training mode: the batch's mean and biased variance; the cache the backward reads."""
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    std = np.sqrt(var + bn_param["eps"])
    xhat = (x - mu) / std
    return gamma * xhat + beta, (x, xhat, mu, var, std, gamma)


def batchnorm_backward(dout, cache):
    """The computational graph step by step: through x̂, the variance and the mean."""
    x, xhat, mu, var, std, gamma = cache
    N = x.shape[0]
    dxhat = dout * gamma
    dvar = np.sum(dxhat * (x - mu), axis=0) * -0.5 * std ** -3
    dmu = np.sum(-dxhat / std, axis=0) + dvar * np.mean(-2 * (x - mu), axis=0)
    dx = dxhat / std + dvar * 2 * (x - mu) / N + dmu / N
    return dx, np.sum(dout * xhat, axis=0), np.sum(dout, axis=0)


def batchnorm_backward_alt(dout, cache, mean_path=True, var_path=True, scale="mean"):
    """The compact form (g - mean(g) - x̂ mean(g x̂)) / σ; ``scale``: 'mean', 'sum' (no 1/N) or 'all' (1/N on g too)."""
    x, xhat, mu, var, std, gamma = cache
    N = x.shape[0]
    g = dout * gamma
    reduce = (lambda a: a.sum(axis=0)) if scale == "sum" else (lambda a: a.mean(axis=0))
    total = g / N if scale == "all" else g
    if mean_path:
        total = total - (g.sum(axis=0) / N if scale == "all" else reduce(g))
    if var_path:
        total = total - xhat * ((g * xhat).sum(axis=0) / N if scale == "all" else reduce(g * xhat))
    return total / std, np.sum(dout * xhat, axis=0), np.sum(dout, axis=0)


def batchnorm(dout, x, gamma, beta, bn_param, **mistake):
    """The adapter: cs231n's backward needs the forward's cache."""
    _, cache = batchnorm_forward(x, gamma, beta, bn_param)
    return batchnorm_backward_alt(dout, cache, **mistake) if mistake else batchnorm_backward(dout, cache)


def batchnorm_alt(dout, x, gamma, beta, bn_param):
    _, cache = batchnorm_forward(x, gamma, beta, bn_param)
    return batchnorm_backward_alt(dout, cache)


def batchnorm_no_mean_path(dout, x, gamma, beta, bn_param):
    return batchnorm(dout, x, gamma, beta, bn_param, mean_path=False)


def batchnorm_no_variance_path(dout, x, gamma, beta, bn_param):
    return batchnorm(dout, x, gamma, beta, bn_param, var_path=False)


def batchnorm_constant_statistics(dout, x, gamma, beta, bn_param):
    return batchnorm(dout, x, gamma, beta, bn_param, mean_path=False, var_path=False)


def batchnorm_sums(dout, x, gamma, beta, bn_param):
    return batchnorm(dout, x, gamma, beta, bn_param, scale="sum")


def batchnorm_one_over_n_everywhere(dout, x, gamma, beta, bn_param):
    return batchnorm(dout, x, gamma, beta, bn_param, scale="all")


def spatial_batchnorm(dout, x, gamma, beta, bn_param, **mistake):
    """cs231n's spatial batch norm: the vanilla one on (N·H·W, C)."""
    N, C, H, W = x.shape
    flat = lambda a: a.transpose(0, 2, 3, 1).reshape(-1, C)  # noqa: E731
    dx, dgamma, dbeta = batchnorm(flat(dout), flat(x), gamma, beta, bn_param, **mistake)
    return dx.reshape(N, H, W, C).transpose(0, 3, 1, 2), dgamma, dbeta


def spatial_batchnorm_no_variance_path(dout, x, gamma, beta, bn_param):
    return spatial_batchnorm(dout, x, gamma, beta, bn_param, var_path=False)
