# After Dictria/MNIST, layer_utils.py (commit in SOURCES.md): deeplearning.ai's dnn_utils backward
# functions, dZ from dA and the cache Z. Same layout and computation; written for this corpus, not a
# verbatim copy. Element-wise, so the layout (rows or columns) does not matter.
import numpy as np


def sigmoid_backward(dA, cache):
    Z = cache
    s = 1 / (1 + np.exp(-Z))
    dZ = dA * s * (1 - s)
    return dZ


def ReLU_backward(dA, cache):
    Z = cache
    dZ = np.array(dA, copy=True)
    dZ[Z <= 0] = 0
    return dZ
