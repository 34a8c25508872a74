# ALTERED for this corpus (the mistake): the L2 gradient left out of W1's (W2 keeps it).
# After kaiweihuang/CS231n, assignment2/cs231n/classifiers/fc_net.py (TwoLayerNet.loss)
# @ 5779458f336e070b50cdf6a11e0044e5ac439361; the layers are cs231n_layers.py's.
import numpy as np

from cs231n_layers import affine_backward, affine_forward, relu_backward, relu_forward, softmax_loss


def two_layer_net_loss_no_reg_w1(params, reg, X, y):
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
    grads["W1"] = dW1
    grads["b1"] = db1
    return loss, grads
