# After taesiri/MLBites, db/layernorm_forward_backward_numpy/solution.py @ 63fa899276a99e98f213ab374e92312edf7a2297.
# Same layout and computation (the shape checks left out); written for this corpus, not a verbatim copy.
# x (N, D), each row normalized over its D features; gamma, beta (D,).
import numpy as np


def layernorm_forward(x, gamma, beta, eps=1e-5):
    d = x.shape[1]
    mu = np.mean(x, axis=1, keepdims=True)
    var = np.var(x, axis=1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mu) * inv_std
    y = x_hat * gamma.reshape(1, d) + beta.reshape(1, d)
    return y, (x_hat, inv_std, gamma.reshape(1, d))


def layernorm_backward(dy, cache):
    x_hat, inv_std, gamma_2d = cache
    n, d = dy.shape
    dbeta = np.sum(dy, axis=0)
    dgamma = np.sum(dy * x_hat, axis=0)
    dxhat = dy * gamma_2d
    sum_dxhat = np.sum(dxhat, axis=1, keepdims=True)
    sum_dxhat_xhat = np.sum(dxhat * x_hat, axis=1, keepdims=True)
    dx = (inv_std / d) * (d * dxhat - sum_dxhat - x_hat * sum_dxhat_xhat)
    return dx, dgamma, dbeta
