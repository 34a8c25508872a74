# After OmarTahoun/Deep-Learn, helper.py (commit in SOURCES.md). Same layout and computation; written
# for this corpus, not a verbatim copy. Its own mistake, kept: sigmoid returns the pair (A, z), and
# sigmoid_backward multiplies by that pair, so the call raises a TypeError.
import numpy as np


def sigmoid(z):
    A = 1 / (1 + np.exp(-z))
    return A, z


def sigmoid_backward(dA, cache):
    s = sigmoid(cache)
    dZ = dA * s * (1 - s)
    return dZ
