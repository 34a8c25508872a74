# After TaeSanKIM/python, deep_learning/deep-learning-from-scratch-8ca57dea36b05ffe6bc4486069e5ffb9bd444285/
# taesan/Affine.py @ e90e811787332a6b2157c2387ec59070ddaa4b38. Same layout and computation; written for
# this corpus, not a verbatim copy. Its own mistake, kept: dw and db are computed into local names and
# never stored on the layer, so self.dw stays None.
import numpy as np


class Affine:
    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.dw = None
        self.db = None

    def forward(self, x):
        self.x = x
        return np.dot(self.x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        dw = np.dot(self.x.T, dout)  # noqa: F841 (the mistake)
        db = np.sum(dout, axis=0)  # noqa: F841
        return dx
