"""Thin adapters from the corpus's layouts to check-code's (chainrule's own code, not a source's).

A network's backward pass is called as backward(params, cache, X, T) with batch-first arrays; an op's
as in ``check-code --help`` (cs231n's layouts). Each adapter only moves arrays between layouts.
"""
import numpy as np

import cs231n_layers
import cs231n_two_layer_no_reg_w1
import dl_scratch_affine
import dl_scratch_affine_unsaved
import layernorm_constant_statistics
import layernorm_mlbites
import ng_planar
import ng_planar_db_axis0
import ng_planar_sigmoid_prime
import nielsen
import nielsen_no_prime
import nielsen_xrange
import tanh_back_of_delta
import tanh_layer


# -- deeplearning.ai: one column per sample, b (n, 1), grads named dW1, db1 ----------------------------
def _ng(backward):
    def adapted(params, cache, X, T):
        parameters = {k: v if k.startswith("W") else v.reshape(-1, 1) for k, v in params.items()}
        columns = {"Z1": cache["Z1"].T, "A1": cache["A1"].T, "Z2": cache["Z2"].T, "A2": cache["Yhat"].T}
        return backward(parameters, columns, X.T, T.T)
    return adapted


ng_planar_backward = _ng(ng_planar.backward_propagation)
ng_planar_sigmoid_prime_backward = _ng(ng_planar_sigmoid_prime.backward_propagation)
ng_planar_db_axis0_backward = _ng(ng_planar_db_axis0.backward_propagation)


# -- Nielsen: one sample at a time as a column, lists nabla_b, nabla_w; the batch gradient is their mean --
class _Net:
    def __init__(self, params, layers):
        self.weights = [params[f"W{l}"] for l in range(1, layers + 1)]
        self.biases = [params[f"b{l}"].reshape(-1, 1) for l in range(1, layers + 1)]
        self.num_layers = layers + 1

    def cost_derivative(self, output_activations, y):
        return output_activations - y


def _nielsen(backprop, returns_net=True):
    def adapted(params, cache, X, T):
        net = _Net(params, sum(1 for k in params if k.startswith("W")))
        grads = {}
        for x, t in zip(X, T):
            found = backprop(net, x.reshape(-1, 1), t.reshape(-1, 1))
            nabla_b, nabla_w = found[1:] if returns_net else found
            for l, (b, w) in enumerate(zip(nabla_b, nabla_w), start=1):
                grads[f"b{l}"] = grads.get(f"b{l}", 0) + b.ravel() / len(X)
                grads[f"W{l}"] = grads.get(f"W{l}", 0) + w / len(X)
        return grads
    return adapted


nielsen_backprop = _nielsen(nielsen.backprop)
nielsen_no_prime_backprop = _nielsen(nielsen_no_prime.backprop)
nielsen_xrange_backprop = _nielsen(nielsen_xrange.backpropagation, returns_net=False)


# -- cs231n: W (D, M), integer labels, a loss function that returns (loss, grads) -------------------
def _cs231n(loss_function, reg=0.1):
    def adapted(params, cache, X, T):
        mine = {k: v.T if k.startswith("W") else v for k, v in params.items()}
        _, grads = loss_function(mine, reg, X, T.argmax(axis=1))
        return {k: v.T if k.startswith("W") else v for k, v in grads.items()}
    return adapted


cs231n_two_layer = _cs231n(cs231n_layers.two_layer_net_loss)
cs231n_two_layer_no_reg_w1 = _cs231n(cs231n_two_layer_no_reg_w1.two_layer_net_loss_no_reg_w1)


# -- ops: check-code --op's (dout, x, ...) from a (dout, cache) function or a layer object ------------
def cs231n_affine(dout, x, w, b):
    return cs231n_layers.affine_backward(dout, (x, w, b))


def cs231n_relu(dout, x):
    return cs231n_layers.relu_backward(dout, x)


def _affine_layer(module, dw):
    def adapted(dout, x, w, b):
        layer = module.Affine(w, b)
        layer.forward(x)
        dx = layer.backward(dout)
        return dx, getattr(layer, dw), layer.db
    return adapted


dl_scratch_affine_layer = _affine_layer(dl_scratch_affine, "dW")
dl_scratch_affine_unsaved_layer = _affine_layer(dl_scratch_affine_unsaved, "dw")


def _layernorm(backward):
    def adapted(dout, x, gamma, beta):
        _, cache = layernorm_mlbites.layernorm_forward(x, gamma, beta, eps=1e-5)
        return backward(dout, cache)
    return adapted


layernorm_mlbites_backward = _layernorm(layernorm_mlbites.layernorm_backward)
layernorm_constant_statistics_backward = _layernorm(layernorm_constant_statistics.layernorm_backward_constant_statistics)


def tanh_layer_backward(dout, x):
    layer = tanh_layer.Tanh()
    layer.forward(x)
    return layer.backward(dout)


def tanh_back_of_delta_backward(dout, x):
    layer = tanh_back_of_delta.Tanh()
    layer.forward(x)
    return np.asarray(layer.back(dout))
