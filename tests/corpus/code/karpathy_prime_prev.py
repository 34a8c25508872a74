# ALTERED for this corpus (the mistake): dhraw = (1 - hs[t-1] * hs[t-1]) * dh, tanh' at the previous
# hidden state (an index slip with the dict hs).
# After Karpathy's min-char-rnn.py as in karpathy_min_char_rnn.py (Anirudh-Swaminathan/ece_285_fa19_project,
# learning_stuff/min_char_rnn.py @ 4bc54ab81678d021e059fe3b3ba6fee503c20520), lossFun's backward loop.
import numpy as np


def lossFun_backward(xs, hs, dhs, Wxh, Whh, bh):
    dWxh, dWhh = np.zeros_like(Wxh), np.zeros_like(Whh)
    dbh = np.zeros_like(bh)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(xs))):
        dh = dhs[t] + dhnext
        dhraw = (1 - hs[t - 1] * hs[t - 1]) * dh
        dbh += dhraw
        dWxh += np.dot(dhraw, xs[t].T)
        dWhh += np.dot(dhraw, hs[t - 1].T)
        dhnext = np.dot(Whh.T, dhraw)
    for dparam in [dWxh, dWhh, dbh]:
        np.clip(dparam, -5, 5, out=dparam)
    return dWxh, dWhh, dbh, hs[len(xs) - 1]
