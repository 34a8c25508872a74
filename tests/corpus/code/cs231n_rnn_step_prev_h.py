# ALTERED for this corpus (the mistake): tanh's derivative taken at prev_h, (1 - prev_h²), not at next_h.
# After Burton2000/CS231n-2017, assignment3/cs231n/rnn_layers.py @ 23587971eff6452488ab66eb0afbd50b9b274b14
# (rnn_step_backward); the forward is cs231n_rnn_layers.py's.
import numpy as np


def rnn_step_backward(dnext_h, cache):
    Wx, Wh, b, x, prev_h, next_h = cache
    dtanh = (1 - np.square(prev_h)) * dnext_h
    db = np.sum(dtanh, axis=0)
    dWh = np.dot(prev_h.T, dtanh)
    dprev_h = np.dot(dtanh, Wh.T)
    dWx = np.dot(x.T, dtanh)
    dx = np.dot(dtanh, Wx.T)
    return dx, dprev_h, dWx, dWh, db
