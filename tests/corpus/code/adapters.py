"""Thin adapters from the corpus's layouts to check-code's (chainrule's own code, not a source's).

A network's backward pass is called as backward(params, cache, X, T) with batch-first arrays; an op's
as in ``check-code --help`` (cs231n's layouts). Each adapter only moves arrays between layouts.
"""
import numpy as np

import cmu_attention
import cmu_attention_dk_transposed
import cmu_attention_no_mask
import cmu_attention_no_scale
import cmu_gru_bias_outside
import cmu_gru_cell
import cmu_gru_tanh_at_h
import cmu_gru_z_swapped
import cmu_softmax_diagonal
import cs231n_layers
import cs231n_lstm_layers
import cs231n_lstm_no_cell_path
import cs231n_lstm_step_no_forget
import cs231n_rnn_dwh_not_summed
import cs231n_rnn_layers
import cs231n_rnn_no_hidden_path
import cs231n_rnn_step_prev_h
import cs231n_two_layer_no_reg_w1
import dl_scratch_affine
import dl_scratch_affine_unsaved
import dlfs2_time_layers
import karpathy_min_char_rnn
import karpathy_prime_prev
import layernorm_constant_statistics
import layernorm_mlbites
import ng_planar
import ng_planar_db_axis0
import ng_planar_sigmoid_prime
import ng_rnn
import ng_rnn_no_numpy
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


# -- recurrent ops: check-code --op rnn_step, rnn, lstm_step, lstm from cs231n's (dout, cache) ------
def _rnn_step(backward):
    def adapted(dnext_h, x, prev_h, Wx, Wh, b):
        _, cache = cs231n_rnn_layers.rnn_step_forward(x, prev_h, Wx, Wh, b)
        return backward(dnext_h, cache)
    return adapted


cs231n_rnn_step = _rnn_step(cs231n_rnn_layers.rnn_step_backward)
cs231n_rnn_step_prev_h = _rnn_step(cs231n_rnn_step_prev_h.rnn_step_backward)


def _rnn(backward):
    def adapted(dh, x, h0, Wx, Wh, b):
        _, cache = cs231n_rnn_layers.rnn_forward(x, h0, Wx, Wh, b)
        return backward(dh, cache)
    return adapted


cs231n_rnn = _rnn(cs231n_rnn_layers.rnn_backward)
cs231n_rnn_no_hidden_path = _rnn(cs231n_rnn_no_hidden_path.rnn_backward)
cs231n_rnn_dwh_not_summed = _rnn(cs231n_rnn_dwh_not_summed.rnn_backward)


def _lstm_step(backward):
    def adapted(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b):
        _, _, cache = cs231n_lstm_layers.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
        return backward(dnext_h, dnext_c, cache)
    return adapted


cs231n_lstm_step = _lstm_step(cs231n_lstm_layers.lstm_step_backward)
cs231n_lstm_step_no_forget = _lstm_step(cs231n_lstm_step_no_forget.lstm_step_backward)


def _lstm(backward):
    def adapted(dh, x, h0, Wx, Wh, b):
        _, cache = cs231n_lstm_layers.lstm_forward(x, h0, Wx, Wh, b)
        return backward(dh, cache)
    return adapted


cs231n_lstm = _lstm(cs231n_lstm_layers.lstm_backward)
cs231n_lstm_no_cell_path = _lstm(cs231n_lstm_no_cell_path.lstm_backward)


def dlfs2_rnn_step(dnext_h, x, prev_h, Wx, Wh, b):
    """A layer object; the gradients returned under its own names (dh_prev), read by check-code's table."""
    layer = dlfs2_time_layers.RNN(Wx, Wh, b)
    layer.forward(x, prev_h)
    dx, dh_prev = layer.backward(dnext_h)
    return {"dx": dx, "dh_prev": dh_prev, "dWx": layer.grads[0], "dWh": layer.grads[1], "db": layer.grads[2]}


def dlfs2_time_rnn(dh, x, h0, Wx, Wh, b):
    layer = dlfs2_time_layers.TimeRNN(Wx, Wh, b, stateful=True)
    layer.set_state(h0)
    layer.forward(x)
    dxs = layer.backward(dh)
    return (dxs, layer.dh) + tuple(layer.grads)


def _min_char_rnn(backward):
    """One sequence at a time as columns, Wxh = Wxᵀ; the batch's gradient is the sum of the sequences'.
    Returns Karpathy's names (dWxh, dWhh, dbh); he computes no dx and returns no dh0."""
    def adapted(dh, x, h0, Wx, Wh, b):
        total = {"dWxh": 0, "dWhh": 0, "dbh": 0}
        for n in range(x.shape[0]):
            xs = {t: x[n, t].reshape(-1, 1) for t in range(x.shape[1])}
            hs = karpathy_min_char_rnn.lossFun_forward(xs, h0[n].reshape(-1, 1), Wx.T, Wh.T, b.reshape(-1, 1))
            dhs = {t: dh[n, t].reshape(-1, 1) for t in range(x.shape[1])}
            found = backward(xs, hs, dhs, Wx.T, Wh.T, b.reshape(-1, 1))
            for name, value in zip(total, found):
                total[name] = total[name] + value
        return {"dWxh": total["dWxh"].T, "dWhh": total["dWhh"].T, "dbh": total["dbh"].ravel()}
    return adapted


karpathy_min_char_rnn_backward = _min_char_rnn(karpathy_min_char_rnn.lossFun_backward)
karpathy_prime_prev_backward = _min_char_rnn(karpathy_prime_prev.lossFun_backward)


def _ng_rnn(backward):
    """deeplearning.ai's columns (n, m, T_x) and (n_a, n_x) weights; its dict of gradients keeps Ng's names."""
    def adapted(dh, x, h0, Wx, Wh, b):
        parameters = {"Wax": Wx.T, "Waa": Wh.T, "ba": b.reshape(-1, 1), "Wya": np.zeros((2, Wh.shape[0])),
                      "by": np.zeros((2, 1))}
        _, _, caches = ng_rnn.rnn_forward(x.transpose(2, 0, 1), h0.T, parameters)
        g = backward(dh.transpose(2, 0, 1), caches)
        return {"dx": g["dx"].transpose(1, 2, 0), "da0": g["da0"].T, "dWax": g["dWax"].T, "dWaa": g["dWaa"].T,
                "dba": g["dba"].ravel()}
    return adapted


ng_rnn_backward = _ng_rnn(ng_rnn.rnn_backward)
ng_rnn_no_numpy_backward = _ng_rnn(ng_rnn_no_numpy.rnn_backward)


# -- GRU: check-code --op gru_step and gru from CMU 11-785's GRUCell (one sample; forward, then backward) --
def _gru_cell(module, Wx, Wh, bx, bh):
    """A cell holding cs231n's Wx (D, 3H), Wh (H, 3H), bx, bh (3H,) as CMU's per-gate (h, d) weights, r, z, n."""
    H = Wh.shape[0]
    cell = module.GRUCell(Wx.shape[0], H)
    gates = lambda a: [a[..., k * H:(k + 1) * H] for k in range(3)]
    cell.init_weights(*[w.T for w in gates(Wx)], *[w.T for w in gates(Wh)], *gates(bx), *gates(bh))
    return cell


def _cmu_gradients(cell):
    """cs231n's dWx, dWh, dbx, dbh from the cell's accumulated per-gate gradients."""
    return (np.hstack([cell.dWrx.T, cell.dWzx.T, cell.dWnx.T]), np.hstack([cell.dWrh.T, cell.dWzh.T, cell.dWnh.T]),
            np.concatenate([cell.dbrx, cell.dbzx, cell.dbnx]), np.concatenate([cell.dbrh, cell.dbzh, cell.dbnh]))


def _cmu_gru_step(module):
    """Each sample forward then backward through one cell, whose += sums the weights' gradients over the batch."""
    def adapted(dnext_h, x, prev_h, Wx, Wh, bx, bh):
        cell = _gru_cell(module, Wx, Wh, bx, bh)
        dx, dprev_h = np.zeros_like(x), np.zeros_like(prev_h)
        for i in range(x.shape[0]):
            cell.forward(x[i], prev_h[i])
            dx[i], dprev_h[i] = cell.backward(dnext_h[i])
        return (dx, dprev_h) + _cmu_gradients(cell)
    return adapted


def _cmu_gru(module):
    """The cell over each sequence; step t's backward (after its forward again, which the cell keeps) gets
    delta = dh[:, t] plus what step t + 1 sent back, as HW3P1's docstring says delta is."""
    def adapted(dh, x, h0, Wx, Wh, bx, bh):
        cell = _gru_cell(module, Wx, Wh, bx, bh)
        dx, dh0 = np.zeros_like(x), np.zeros_like(h0)
        for i in range(x.shape[0]):
            hs = [h0[i]]
            for t in range(x.shape[1]):
                hs.append(cell.forward(x[i, t], hs[t]))
            dprev = np.zeros_like(h0[i])
            for t in reversed(range(x.shape[1])):
                cell.forward(x[i, t], hs[t])
                dx[i, t], dprev = cell.backward(dh[i, t] + dprev)
            dh0[i] = dprev
        return (dx, dh0) + _cmu_gradients(cell)
    return adapted


cmu_gru_step = _cmu_gru_step(cmu_gru_cell)
cmu_gru = _cmu_gru(cmu_gru_cell)
cmu_gru_step_bias_outside = _cmu_gru_step(cmu_gru_bias_outside)
cmu_gru_bias_outside = _cmu_gru(cmu_gru_bias_outside)
cmu_gru_step_z_swapped = _cmu_gru_step(cmu_gru_z_swapped)
cmu_gru_step_tanh_at_h = _cmu_gru_step(cmu_gru_tanh_at_h)
cmu_gru_tanh_at_h = _cmu_gru(cmu_gru_tanh_at_h)


# -- attention: check-code --op attention from CMU 11-785's ScaledDotProductAttention (forward, then backward) --
def _cmu_attention(module):
    def adapted(dout, q, k, v, mask):
        layer = module.ScaledDotProductAttention()
        layer.forward(q, k, v, mask)
        return layer.backward(dout)
    return adapted


cmu_attention_backward = _cmu_attention(cmu_attention)
cmu_attention_no_scale_backward = _cmu_attention(cmu_attention_no_scale)
cmu_attention_dk_transposed_backward = _cmu_attention(cmu_attention_dk_transposed)
cmu_softmax_diagonal_backward = _cmu_attention(cmu_softmax_diagonal)
cmu_attention_no_mask_backward = _cmu_attention(cmu_attention_no_mask)
