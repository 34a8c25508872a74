# After Burton2000/CS231n-2017, assignment3/cs231n/rnn_layers.py @ 23587971eff6452488ab66eb0afbd50b9b274b14
# (rnn_step_forward, rnn_step_backward, rnn_forward, rnn_backward). Same layout and computation, the
# comments shortened; written for this corpus, not a verbatim copy. x (N, D) or (N, T, D), Wx (D, H),
# Wh (H, H), b (H,), batch-first.
import numpy as np


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    x_Wx = np.dot(x, Wx)
    prev_h_Wh = np.dot(prev_h, Wh)
    next_h = np.tanh(x_Wx + prev_h_Wh + b)
    cache = (Wx, Wh, b, x, prev_h, next_h)
    return next_h, cache


def rnn_step_backward(dnext_h, cache):
    Wx, Wh, b, x, prev_h, next_h = cache
    dtanh = (1 - np.square(next_h)) * dnext_h  # tanh' from its output
    db = np.sum(dtanh, axis=0)
    dWh = np.dot(prev_h.T, dtanh)
    dprev_h = np.dot(dtanh, Wh.T)
    dWx = np.dot(x.T, dtanh)
    dx = np.dot(dtanh, Wx.T)
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    N, H = h0.shape
    h = np.zeros([N, T, H])
    cache = []
    prev_h = h0
    for t_step in range(T):
        cur_x = x[:, t_step, :]
        h[:, t_step, :], cache_temp = rnn_step_forward(cur_x, prev_h, Wx, Wh, b)
        prev_h = h[:, t_step, :].copy()
        cache.append(cache_temp)
    return h, cache


def rnn_backward(dh, cache):
    Wx, Wh, b, x, prev_h, next_h = cache[0]
    N, T, H = dh.shape
    D, H = Wx.shape
    dx = np.zeros([N, T, D])
    dWx = np.zeros_like(Wx)
    dWh = np.zeros_like(Wh)
    db = np.zeros_like(b)
    dprev_h = np.zeros_like(prev_h)
    for t_step in reversed(range(T)):  # from the last step back
        cur_dh = dprev_h + dh[:, t_step, :]
        dx[:, t_step, :], dprev_h, dWx_temp, dWh_temp, db_temp = rnn_step_backward(cur_dh, cache[t_step])
        dWx += dWx_temp
        dWh += dWh_temp
        db += db_temp
    dh0 = dprev_h
    return dx, dh0, dWx, dWh, db
