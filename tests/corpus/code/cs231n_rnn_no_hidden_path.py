# ALTERED for this corpus (the mistake): each step's upstream gradient is dh[:, t] alone; the dprev_h
# of step t + 1 is not added (the path through h_(t-1) dropped).
# After Burton2000/CS231n-2017, assignment3/cs231n/rnn_layers.py @ 23587971eff6452488ab66eb0afbd50b9b274b14
# (rnn_backward); the step is cs231n_rnn_layers.py's.
import numpy as np

from cs231n_rnn_layers import rnn_step_backward


def rnn_backward(dh, cache):
    Wx, Wh, b, x, prev_h, next_h = cache[0]
    N, T, H = dh.shape
    D, H = Wx.shape
    dx = np.zeros([N, T, D])
    dWx = np.zeros_like(Wx)
    dWh = np.zeros_like(Wh)
    db = np.zeros_like(b)
    dprev_h = np.zeros_like(prev_h)
    for t_step in reversed(range(T)):
        cur_dh = dh[:, t_step, :]
        dx[:, t_step, :], dprev_h, dWx_temp, dWh_temp, db_temp = rnn_step_backward(cur_dh, cache[t_step])
        dWx += dWx_temp
        dWh += dWh_temp
        db += db_temp
    dh0 = dprev_h
    return dx, dh0, dWx, dWh, db
