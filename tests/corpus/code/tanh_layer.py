# After Vidit-01/lenet-5-implementation, Layers/TanH.py (commit below, SOURCES.md). Same layout and
# computation; written for this corpus, not a verbatim copy. The layer keeps its output for backward.
import numpy as np


class Tanh:
    def forward(self, X):
        self.out = np.tanh(X)
        return self.out

    def backward(self, d_out):
        return d_out * (1 - self.out ** 2)
