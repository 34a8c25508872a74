# After 0809zheng/CS231n-assignment2019, assignment3/cs231n/rnn_layers.py @ 3f5c853986637e2eba33f70c982fac7c618ff0f3
# (sigmoid, lstm_step_forward, lstm_step_backward, lstm_forward, lstm_backward). Same layout and
# computation, tanh written through the sigmoid as there; written for this corpus, not a verbatim copy.
# Gates i, f, o, g (cs231n's order); Wx (D, 4H), Wh (H, 4H), b (4H,); the initial cell state is 0.
import numpy as np


def sigmoid(x):
    pos_mask = (x >= 0)
    neg_mask = (x < 0)
    z = np.zeros_like(x)
    z[pos_mask] = np.exp(-x[pos_mask])
    z[neg_mask] = np.exp(x[neg_mask])
    top = np.ones_like(x)
    top[neg_mask] = z[neg_mask]
    return top / (1 + z)


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    N, H = prev_h.shape
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    tanh = lambda x: sigmoid(2 * x) - sigmoid(-2 * x)
    gate_i = sigmoid(a[:, 0:H])
    gate_f = sigmoid(a[:, H:2 * H])
    gate_o = sigmoid(a[:, 2 * H:3 * H])
    gate_g = tanh(a[:, 3 * H:])
    next_c = prev_c * gate_f + gate_i * gate_g
    next_h = tanh(next_c) * gate_o
    cache = (x, prev_h, prev_c, Wx, Wh, b, gate_i, gate_f, gate_o, gate_g, next_c, next_h)
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, b, gate_i, gate_f, gate_o, gate_g, next_c, next_h = cache
    tanh = lambda x: sigmoid(2 * x) - sigmoid(-2 * x)
    dgate_o = dnext_h * tanh(next_c)
    dtanhnext_c = dnext_h * gate_o
    dnext_c += dtanhnext_c * (1 - tanh(next_c) ** 2)  # in place, as in the source
    dgate_f = dnext_c * prev_c
    dprev_c = dnext_c * gate_f
    dgate_i = dnext_c * gate_g
    dgate_g = dnext_c * gate_i
    da1 = dgate_i * gate_i * (1 - gate_i)
    da2 = dgate_f * gate_f * (1 - gate_f)
    da3 = dgate_o * gate_o * (1 - gate_o)
    da4 = dgate_g * (1 - gate_g ** 2)
    da = np.hstack([da1, da2, da3, da4])
    dx = da.dot(Wx.T)
    dWx = x.T.dot(da)
    dprev_h = da.dot(Wh.T)
    dWh = prev_h.T.dot(da)
    db = np.sum(da, axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    N, H = h0.shape
    h = np.zeros((N, T, H))
    ht = h0
    ct = 0
    cache = []
    for i in range(T):
        ht, ct, next_cache = lstm_step_forward(x[:, i, :], ht, ct, Wx, Wh, b)
        h[:, i, :] = ht
        cache.append(next_cache)
    return h, cache


def lstm_backward(dh, cache):
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D))
    dWx = np.zeros((D, 4 * H))
    dWh = np.zeros((H, 4 * H))
    db = np.zeros((4 * H,))
    dht = 0
    dct = 0
    for i in range(T - 1, -1, -1):
        dht += dh[:, i, :]
        dxt, dht, dct, dWxt, dWht, dbt = lstm_step_backward(dht, dct, cache[i])
        dx[:, i, :] = dxt
        dWx += dWxt
        dWh += dWht
        db += dbt
    dh0 = dht
    return dx, dh0, dWx, dWh, db
