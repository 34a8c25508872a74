# ALTERED for this corpus (the mistake): the cache Z used as if it were the activation A, so
# sigmoid's a(1 - a) is taken at z (a mistake another, unattributed, public file makes the same way).
# After Dictria/MNIST, layer_utils.py (commit in SOURCES.md).
import numpy as np  # noqa: F401


def sigmoid_backward(dA, cache):
    s = cache
    dZ = dA * s * (1 - s)
    return dZ
