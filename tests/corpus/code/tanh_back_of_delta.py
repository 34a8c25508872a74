# After DivyanshuTirkey/da6401_assignment1, nn/Activations/_tanh.py (commit in SOURCES.md). Same layout
# and computation; written for this corpus, not a verbatim copy. Its own mistake, kept: back() returns
# tanh's derivative evaluated at the upstream gradient, 1 - tanh(delta)², instead of delta times
# tanh'(x) at the layer's input.
import numpy as np


class Tanh:
    def forward(self, x):
        return np.tanh(np.array(x))

    def back(self, delta):
        delta = np.array(delta)
        self.grads = 1 - np.tanh(delta) ** 2
        return self.grads
