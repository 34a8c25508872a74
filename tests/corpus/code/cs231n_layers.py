# After kaiweihuang/CS231n, assignment2/cs231n/layers.py and classifiers/fc_net.py (TwoLayerNet.loss)
# @ 5779458f336e070b50cdf6a11e0044e5ac439361 (Stanford cs231n assignment 2). Same layouts and
# computations; written for this corpus, not a verbatim copy. Batch-first: x (N, D), w (D, M), b (M,);
# y (N,) integer labels; L2 with the 0.5 of the assignment, so its gradient is reg * W.
import numpy as np


def affine_forward(x, w, b):
    N = x.shape[0]
    out = x.reshape(N, -1).dot(w) + b
    cache = (x, w, b)
    return out, cache


def affine_backward(dout, cache):
    x, w, b = cache
    N = x.shape[0]
    x_unravelled = x.reshape(N, -1)
    db = np.sum(dout, axis=0)
    dw = x_unravelled.T.dot(dout)
    dx = dout.dot(w.T).reshape(x.shape)
    return dx, dw, db


def relu_forward(x):
    out = np.maximum(0, x)
    cache = x
    return out, cache


def relu_backward(dout, cache):
    x = cache
    dx = np.copy(dout)
    dx[x < 0] = 0
    return dx


def softmax_loss(x, y):
    shifted = x - np.max(x, axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= np.sum(probs, axis=1, keepdims=True)
    N = x.shape[0]
    loss = -np.sum(np.log(probs[np.arange(N), y])) / N
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx


def two_layer_net_loss(params, reg, X, y):
    hidden, first_cache = affine_forward(X, params["W1"], params["b1"])
    relu_out, relu_cache = relu_forward(hidden)
    scores, second_cache = affine_forward(relu_out, params["W2"], params["b2"])
    grads = {}
    loss, dscores = softmax_loss(scores, y)
    loss += 0.5 * reg * (np.sum(params["W1"] * params["W1"]) + np.sum(params["W2"] * params["W2"]))
    drelu_out, dW2, db2 = affine_backward(dscores, second_cache)
    grads["W2"] = dW2 + reg * params["W2"]
    grads["b2"] = db2
    dX, dW1, db1 = affine_backward(relu_backward(drelu_out, relu_cache), first_cache)
    grads["W1"] = dW1 + reg * params["W1"]
    grads["b1"] = db1
    return loss, grads
