# After sourabh-burnwal/ML, nn_backprop.py @ 0f784c3fed0305f4c8d884fe5d264a2f95edb008
# (deeplearning.ai course 1, week 3: the planar-data network, tanh hidden layer, sigmoid output,
# cross-entropy). Same layout and computation; written for this corpus, not a verbatim copy.
# Column layout: X (n_x, m), W (n_out, n_in), b (n_out, 1); dZ2 has no 1/m, dW and db apply it.
import numpy as np


def backward_propagation(parameters, cache, X, Y):
    m = X.shape[1]
    W2 = parameters["W2"]
    A1 = cache["A1"]
    A2 = cache["A2"]
    dZ2 = A2 - Y
    dW2 = 1 / m * np.dot(dZ2, A1.T)
    db2 = 1 / m * np.sum(dZ2, axis=1, keepdims=True)
    dZ1 = np.dot(W2.T, dZ2) * (1 - np.power(A1, 2))
    dW1 = 1 / m * np.dot(dZ1, X.T)
    db1 = 1 / m * np.sum(dZ1, axis=1, keepdims=True)
    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}
