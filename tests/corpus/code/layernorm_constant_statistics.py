# ALTERED for this corpus (the mistake): dx = dxhat / std, as if the mean and the variance did not
# depend on x (the two sums dropped).
# After taesiri/MLBites, db/layernorm_forward_backward_numpy/solution.py @ 63fa899276a99e98f213ab374e92312edf7a2297.
import numpy as np  # noqa: F401


def layernorm_backward_constant_statistics(dy, cache):
    x_hat, inv_std, gamma_2d = cache
    n, d = dy.shape
    dbeta = np.sum(dy, axis=0)
    dgamma = np.sum(dy * x_hat, axis=0)
    dxhat = dy * gamma_2d
    sum_dxhat = np.sum(dxhat, axis=1, keepdims=True)
    sum_dxhat_xhat = np.sum(dxhat * x_hat, axis=1, keepdims=True)
    dx = inv_std * dxhat
    return dx, dgamma, dbeta
