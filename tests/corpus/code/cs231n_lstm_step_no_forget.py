# ALTERED for this corpus (the mistake): dprev_c = dnext_c, the forget gate left out of the cell-state path.
# After 0809zheng/CS231n-assignment2019, assignment3/cs231n/rnn_layers.py @ 3f5c853986637e2eba33f70c982fac7c618ff0f3
# (lstm_step_backward); sigmoid and the forward are cs231n_lstm_layers.py's.
import numpy as np

from cs231n_lstm_layers import sigmoid


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, b, gate_i, gate_f, gate_o, gate_g, next_c, next_h = cache
    tanh = lambda x: sigmoid(2 * x) - sigmoid(-2 * x)
    dgate_o = dnext_h * tanh(next_c)
    dtanhnext_c = dnext_h * gate_o
    dnext_c += dtanhnext_c * (1 - tanh(next_c) ** 2)
    dgate_f = dnext_c * prev_c
    dprev_c = dnext_c
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
