"""A careful hand-written NumPy train step of a recurrent network, the baseline of section 1f.

embedding - rnn / lstm / gru (torch's equations, gate order and two biases, h_0 = 0) - dense - softmax
cross-entropy: on the last hidden state (many-to-one, targets (N,)) or on every step (the char model,
targets (N, T), the mean over N·T). The cs231n way, written for speed: batch first, the input
projections of all steps one GEMM, one GEMM per step for the stacked gates, the gate errors of every
step kept so each weight gradient is one GEMM, the embedding's gradient a scatter-add. Parameters as
the emitted module names them: W1 (vocab, E), W_ih2, W_hh2, b_ih2, b_hh2 (torch's stacking), W3, b3.
"""
import numpy as np


def sigmoid(u):
    return 1 / (1 + np.exp(-u))


def cell_forward(cell, x, W_ih, W_hh, b_ih, b_hh):
    """x (N, T, F): (hs (N, T + 1, H) with h_0 = 0, what cell_backward reads)."""
    N, T, _ = x.shape
    H = W_hh.shape[1]
    gi = x @ W_ih.T + b_ih
    hs = np.zeros((N, T + 1, H), x.dtype)
    cs = np.zeros((N, T + 1, H), x.dtype)
    gates = np.empty(gi.shape, x.dtype)
    hn = np.empty((N, T, H), x.dtype)
    for t in range(T):
        h = hs[:, t]
        gh = h @ W_hh.T + b_hh
        if cell == "rnn":
            hs[:, t + 1] = np.tanh(gi[:, t] + gh)
        elif cell == "lstm":
            a = gi[:, t] + gh
            i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
            cs[:, t + 1] = f * cs[:, t] + i * g
            hs[:, t + 1] = o * np.tanh(cs[:, t + 1])
            gates[:, t] = np.concatenate((i, f, g, o), axis=1)
        else:
            rz = sigmoid(gi[:, t, :2 * H] + gh[:, :2 * H])
            r, z = rz[:, :H], rz[:, H:]
            hn[:, t] = gh[:, 2 * H:]
            n = np.tanh(gi[:, t, 2 * H:] + r * hn[:, t])
            hs[:, t + 1] = (1 - z) * n + z * h
            gates[:, t] = np.concatenate((r, z, n), axis=1)
    return hs, (x, hs, cs, gates, hn)


def cell_backward(cell, dhs, cache, W_ih, W_hh):
    """dhs (N, T, H): the loss's gradient at every h_t. (dx, dW_ih, dW_hh, db_ih, db_hh)."""
    x, hs, cs, gates, hn = cache
    N, T, H = dhs.shape
    da_i = np.empty((N, T, W_hh.shape[0]), x.dtype)   # of W_ih x_t + b_ih
    da_h = da_i if cell != "gru" else np.empty(da_i.shape, x.dtype)   # of W_hh h_(t-1) + b_hh
    dh_next = np.zeros((N, H), x.dtype)
    dc_next = np.zeros((N, H), x.dtype)
    for t in reversed(range(T)):
        dh = dhs[:, t] + dh_next
        if cell == "rnn":
            h = hs[:, t + 1]
            da_i[:, t] = dh * (1 - h * h)
            dh_next = da_i[:, t] @ W_hh
        elif cell == "lstm":
            i, f, g, o = (gates[:, t, k * H:(k + 1) * H] for k in range(4))
            tc = np.tanh(cs[:, t + 1])
            dc = dc_next + dh * o * (1 - tc * tc)
            da_i[:, t] = np.concatenate((dc * g * i * (1 - i), dc * cs[:, t] * f * (1 - f), dc * i * (1 - g * g),
                                         dh * tc * o * (1 - o)), axis=1)
            dc_next = dc * f
            dh_next = da_i[:, t] @ W_hh
        else:
            r, z, n = (gates[:, t, k * H:(k + 1) * H] for k in range(3))
            dn = dh * (1 - z) * (1 - n * n)
            dr = dn * hn[:, t] * r * (1 - r)
            dz = dh * (hs[:, t] - n) * z * (1 - z)
            da_i[:, t] = np.concatenate((dr, dz, dn), axis=1)
            da_h[:, t] = np.concatenate((dr, dz, dn * r), axis=1)
            dh_next = da_h[:, t] @ W_hh + dh * z
    G = W_hh.shape[0]
    flat_i, flat_h = da_i.reshape(N * T, G), da_h.reshape(N * T, G)
    return (da_i @ W_ih, flat_i.T @ x.reshape(N * T, -1), flat_h.T @ hs[:, :T].reshape(N * T, H),
            flat_i.sum(axis=0), flat_h.sum(axis=0))


def loss_and_grads(cell, params, X, T, sequences):
    """(loss, grads) on token ids X (N, T) and targets T: (N,) on h_T, or (N, T) on every step."""
    W1 = params["W1"]
    N, length = X.shape
    x = W1[X]
    hs, cache = cell_forward(cell, x, params["W_ih2"], params["W_hh2"], params["b_ih2"], params["b_hh2"])
    h = hs[:, 1:].reshape(N * length, -1) if sequences else hs[:, length]
    targets = T.reshape(-1)
    z = h @ params["W3"].T + params["b3"]
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(targets))
    loss = float(np.mean(np.log(total[:, 0]) - z[rows, targets]))
    dz = e / total
    dz[rows, targets] -= 1
    dz /= len(targets)
    grads = {"W3": dz.T @ h, "b3": dz.sum(axis=0)}
    dh = dz @ params["W3"]
    if sequences:
        dhs = dh.reshape(N, length, -1)
    else:
        dhs = np.zeros((N, length, dh.shape[1]), dh.dtype)
        dhs[:, -1] = dh
    dx, grads["W_ih2"], grads["W_hh2"], grads["b_ih2"], grads["b_hh2"] = cell_backward(
        cell, dhs, cache, params["W_ih2"], params["W_hh2"])
    dW1 = np.zeros_like(W1)
    np.add.at(dW1, X.reshape(-1), dx.reshape(N * length, -1))
    grads["W1"] = dW1
    return loss, grads
