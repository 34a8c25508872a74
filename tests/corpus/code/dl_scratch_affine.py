# After dionisos198/CardiacTest, Affine.py @ 3077034c2bb4bac08732107e60665b640ab71a09 (the Affine layer
# of "Deep Learning from Scratch"). Same layout and computation; written for this corpus, not a verbatim
# copy. x (N, D), W (D, M); backward(dout) returns dx and keeps dW, db on the layer.
import numpy as np


class Affine:
    def __init__(self, w, b):
        self.W, self.b = w, b
        self.x, self.dW, self.db = None, None, None

    def forward(self, x):
        self.x = x
        return np.dot(x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx
