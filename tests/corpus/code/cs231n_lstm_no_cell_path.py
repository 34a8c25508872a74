# ALTERED for this corpus (the mistake): each step gets dnext_c = 0; the dprev_c of step t + 1 is
# discarded (the cell-state path between the steps dropped).
# After 0809zheng/CS231n-assignment2019, assignment3/cs231n/rnn_layers.py @ 3f5c853986637e2eba33f70c982fac7c618ff0f3
# (lstm_backward); the step is cs231n_lstm_layers.py's.
import numpy as np

from cs231n_lstm_layers import lstm_step_backward


def lstm_backward(dh, cache):
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D))
    dWx = np.zeros((D, 4 * H))
    dWh = np.zeros((H, 4 * H))
    db = np.zeros((4 * H,))
    dht = 0
    for i in range(T - 1, -1, -1):
        dht += dh[:, i, :]
        dxt, dht, _, dWxt, dWht, dbt = lstm_step_backward(dht, 0, cache[i])
        dx[:, i, :] = dxt
        dWx += dWxt
        dWh += dWht
        db += dbt
    dh0 = dht
    return dx, dh0, dWx, dWh, db
