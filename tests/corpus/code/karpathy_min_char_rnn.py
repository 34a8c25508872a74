# After Karpathy's min-char-rnn.py (gist d4dee566867f8291f086), as copied in
# Anirudh-Swaminathan/ece_285_fa19_project, learning_stuff/min_char_rnn.py @ 4bc54ab81678d021e059fe3b3ba6fee503c20520
# (lossFun). One sequence, columns (H, 1), Wxh (H, D), Whh (H, H), bh (H, 1), hs a dict with hs[-1]
# the previous hidden state. Reproduced as its two halves, for the hidden layer: the forward loop with
# the 1-of-k xs[t] given as vectors, and the backward loop with the output layer's share
# np.dot(Why.T, dy) given as dhs[t]; Python 3 (range for xrange). Its clipping to [-5, 5] is kept.
import numpy as np


def lossFun_forward(xs, hprev, Wxh, Whh, bh):
    hs = {}
    hs[-1] = np.copy(hprev)
    for t in range(len(xs)):
        hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)  # hidden state
    return hs


def lossFun_backward(xs, hs, dhs, Wxh, Whh, bh):
    dWxh, dWhh = np.zeros_like(Wxh), np.zeros_like(Whh)
    dbh = np.zeros_like(bh)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(xs))):
        dh = dhs[t] + dhnext  # backprop into h
        dhraw = (1 - hs[t] * hs[t]) * dh  # backprop through tanh nonlinearity
        dbh += dhraw
        dWxh += np.dot(dhraw, xs[t].T)
        dWhh += np.dot(dhraw, hs[t - 1].T)
        dhnext = np.dot(Whh.T, dhraw)
    for dparam in [dWxh, dWhh, dbh]:
        np.clip(dparam, -5, 5, out=dparam)  # clip to mitigate exploding gradients
    return dWxh, dWhh, dbh, hs[len(xs) - 1]
