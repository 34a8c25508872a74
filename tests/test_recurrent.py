"""Recurrent layers and embeddings end to end: the stated BPTT of every cell equals the chain rule over
sympy.diff of the unrolled recurrence at T = 3 (widths 2-3), and the emitted module, loaded with a PyTorch
twin's weights (nn.RNN/LSTM/GRU with batch_first=True, nn.Embedding, nn.Linear in an nn.ModuleList),
gives its loss and every gradient to 1e-10 in float64, for return_sequences true and false; central
differences agree, float32 runs, and bad specs and inputs get one-line errors."""
import random
import warnings

import numpy as np
import pytest
import sympy as sp
import torch

from codegen.gallery import ROOT
from derive import derive
from derive.errors import ChainruleError
from derive.ops.recurrent import RecurrentSpec, _Affine, backprop
from gradcheck import assert_equals_torch, load_module, random_params, sequence_twin


def matrix(key, rows, cols):
    return sp.ImmutableMatrix(rows, cols, lambda i, j: sp.Symbol(f"{key}_{i}_{j}", real=True))


CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


@pytest.mark.parametrize("sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize("kind, nonlinearity", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_bptt_is_the_chain_rule_over_sympy_diff_of_the_unrolled_steps(kind, nonlinearity, sequences):
    """T = 3, F = 2, H = 2, two samples, at two random points. Each step is defined in symbols of its own
    input state (Cell.step), so the reference is sympy.diff of each step's definition chained backwards
    by hand through the states (dL/d state_(t-1) = ∂<dL/d state_t, state_t>/∂ state_(t-1)), the weights'
    gradients summing every step's ∂/∂W: sympy.diff of the unrolled network, kept as a graph. BPTT
    (Cell.back and backprop) states the same thing its own way."""
    T, F, H, N = 3, 2, 2, 2
    spec = RecurrentSpec(kind, nonlinearity, T, sequences)
    c = spec.cell
    rows = c.gates * H
    leaves = [matrix("x", T * F, N), matrix("Wi", rows, F), matrix("Wh", rows, H), matrix("bi", rows, 1),
              matrix("bh", rows, 1)]
    X, W_ih, W_hh, b_ih, b_hh = leaves
    G = matrix("g", T * H if sequences else H, N)
    P = _Affine(W_ih, W_hh, b_ih, b_hh)
    states = [tuple(matrix(f"s{t}_{k}", H, N) for k in range(c.states)) for t in range(T)]
    steps = [c.step(P, X[t * F:(t + 1) * F, :], states[t])[0] for t in range(T)]
    rng = random.Random(0)
    for _ in range(2):
        point = {s: sp.Float(rng.uniform(-1.5, 1.5), 30) for m in leaves + [G] for s in m}
        values, envs = [sp.zeros(H, N) for _ in range(c.states)], []
        for t in range(T):  # the forward pass at the point
            env = {**point, **{s: v for m, vm in zip(states[t], values) for s, v in zip(m, vm)}}
            envs.append(env)
            values = [m.xreplace(env) for m in steps[t]]
        reference = {s: 0 for m in leaves for s in m}
        carry = [sp.zeros(H, N) for _ in range(c.states)]
        for t in reversed(range(T)):
            out = G[t * H:(t + 1) * H, :] if sequences else G if t == T - 1 else sp.zeros(H, N)
            adjoint = [carry[0] + out.xreplace(point)] + carry[1:]
            local = sum(a * e for k in range(c.states) for a, e in zip(adjoint[k], steps[t][k]))
            for s in reference:
                reference[s] += sp.diff(local, s).xreplace(envs[t])
            carry = [sp.ImmutableMatrix(H, N, lambda i, j, k=k: sp.diff(local, states[t][k][i, j]).xreplace(envs[t]))
                     for k in range(c.states)]
        stated = backprop(spec, G.xreplace(point), *(m.xreplace(point) for m in leaves))
        for matrix_, leaf in zip(stated, leaves):
            for value, s in zip(matrix_, leaf):
                assert abs(sp.N(value - reference[s], 30)) < 1e-20, (kind, str(s))


# -- the emitted module against PyTorch ----------------------------------------------------------------

def spec_of(layers, inputs, loss="cross_entropy"):
    return {"name": "seq", "network": {"inputs": inputs, "layers": layers, "loss": loss}}


def torch_forward(net, modules, X):
    a = torch.from_numpy(X)
    for layer, module in zip(net.layers, modules):
        if layer.kind in ("rnn", "lstm", "gru"):
            out, _ = module(a)
            a = out if layer.return_sequences else out[:, -1]
        else:
            a = module(a)
    return a


def data(net, n=5, seed=0):
    rng = np.random.default_rng(seed)
    layout = dict(net.input_shape)
    if "vocab" in layout:
        X = rng.integers(0, layout["vocab"], size=(n, layout["length"]))
        X[0, :2] = X[1, 0]  # a repeated id: its row gathers several steps' gradients
    else:
        X = rng.normal(size=(n, layout["length"], layout["features"]))
    if net.loss.name == "cross_entropy":
        return X, rng.integers(0, net.outputs, size=n)
    if net.loss.name == "bce":
        return X, rng.integers(0, 2, size=(n, net.outputs)).astype(np.float64)
    return X, rng.normal(size=(n, net.outputs))


NETWORKS = {
    "rnn-tanh-last": spec_of([{"type": "rnn", "hidden_size": 4, "return_sequences": False},
                              {"units": 3, "activation": "softmax"}], {"length": 5, "features": 3}),
    "rnn-relu-last": spec_of([{"type": "rnn", "hidden_size": 4, "nonlinearity": "relu", "return_sequences": False},
                              {"units": 2}], {"length": 4, "features": 2}, "mse"),
    "lstm-last": spec_of([{"type": "lstm", "hidden_size": 4, "return_sequences": False},
                          {"units": 3, "activation": "softmax"}], {"length": 5, "features": 3}),
    "gru-last": spec_of([{"type": "gru", "hidden_size": 3, "return_sequences": False},
                         {"units": 2, "activation": "sigmoid"}], {"length": 6, "features": 2}, "bce"),
    # return_sequences = true feeding a second recurrent layer: every h_t of the first gets a gradient
    "lstm-sequences-then-gru": spec_of([{"type": "lstm", "hidden_size": 3},
                                        {"type": "gru", "hidden_size": 4, "return_sequences": False},
                                        {"units": 3, "activation": "softmax"}], {"length": 4, "features": 2}),
    "gru-sequences-then-rnn": spec_of([{"type": "gru", "hidden_size": 3},
                                       {"type": "rnn", "hidden_size": 2, "return_sequences": False},
                                       {"units": 2}], {"length": 3, "features": 3}, "mse"),
    "rnn-sequences-then-lstm": spec_of([{"type": "rnn", "hidden_size": 3},
                                        {"type": "lstm", "hidden_size": 2, "return_sequences": False},
                                        {"units": 2}], {"length": 3, "features": 2}, "mse"),
    "embedding-lstm": spec_of([{"type": "embedding", "embedding_dim": 3}, {"type": "lstm", "hidden_size": 4,
                                                                          "return_sequences": False},
                               {"units": 5, "activation": "softmax"}], {"length": 6, "vocab": 7}),
    "gallery-gru-classifier": str(ROOT / "generated" / "specs" / "gru_classifier.toml"),
}


def torch_loss(net, modules, X, T):
    """The spec's loss of the twin; the output layer's activation is fused into the loss (its logits are read)."""
    out = torch_forward(net, modules, X)
    if net.loss.name == "cross_entropy":
        return torch.nn.functional.cross_entropy(out, torch.from_numpy(T))
    if net.loss.name == "bce":
        return torch.nn.functional.binary_cross_entropy_with_logits(out, torch.from_numpy(T))
    return torch.nn.functional.mse_loss(out, torch.from_numpy(T))


@pytest.mark.parametrize("name", NETWORKS)
def test_loss_and_every_gradient_equal_torch(name):
    spec = NETWORKS[name]
    net = derive(spec).network
    module = load_module(spec)
    params = random_params(module)
    X, T = data(net)
    assert_equals_torch(module, params, X, T, sequence_twin(net), lambda modules: torch_loss(net, modules, X, T))
    assert module.gradient_check(params, X, T) < 1e-6


def test_parameters_are_torch_shaped_and_initialised_as_torch():
    module = load_module(NETWORKS["lstm-last"])
    assert module.PARAM_SHAPES == {"W_ih1": (16, 3), "W_hh1": (16, 4), "b_ih1": (16,), "b_hh1": (16,),
                                   "W2": (3, 4), "b2": (3,)}
    params = module.init_params(seed=0)
    bound = 1 / np.sqrt(4)
    assert all(np.abs(params[k]).max() <= bound and np.abs(params[k]).max() > bound / 2
               for k in ("W_ih1", "W_hh1", "b_ih1", "b_hh1"))
    assert list(module.to_torch_state_dict(params)) == ["0.weight_ih_l0", "0.weight_hh_l0", "0.bias_ih_l0",
                                                        "0.bias_hh_l0", "1.weight", "1.bias"]
    embedded = load_module(NETWORKS["embedding-lstm"])
    assert embedded.PARAM_SHAPES["W1"] == (7, 3)
    assert "0.weight" in embedded.to_torch_state_dict(embedded.init_params())


def test_float32_runs_and_long_sequences_stay_finite_without_warnings():
    spec = spec_of([{"type": "lstm", "hidden_size": 8, "return_sequences": False},
                    {"units": 3, "activation": "softmax"}], {"length": 200, "features": 2})
    narrow, wide = load_module(spec, dtype="float32"), load_module(spec)
    params = wide.init_params(seed=0)
    rng = np.random.default_rng(1)
    X, T = 1e4 * rng.normal(size=(4, 200, 2)), rng.integers(0, 3, size=4)  # gates saturate: σ(±1e4)
    # underflow (e^-1e4 = 0, which makes σ exactly 0 or 1) is NumPy's default "ignore", and right here
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        loss32, grads32 = narrow.loss_and_grads({k: v.astype(np.float32) for k, v in params.items()},
                                                X.astype(np.float32), T)
        loss64, grads64 = wide.loss_and_grads(params, X, T)
    assert all(g.dtype == np.float32 and np.isfinite(g).all() for g in grads32.values())
    assert abs(loss32 - loss64) < 1e-4


def test_emitted_code_loops_over_time_not_samples():
    source = __import__("codegen.emit", fromlist=["generate"]).generate(derive(NETWORKS["gru-last"]))
    assert 'H1, H1_saved = _recurrent_forward("gru", X, W_ih1, W_hh1, b_ih1, b_hh1, False)' in source
    assert source.count("_recurrent_backward(\"gru\"") == 1  # one BPTT call serves all four gradients
    assert "for t in range(T - 1, -1, -1):" in source and "for n in range(" not in source


@pytest.mark.parametrize("layers, inputs, message", [
    ([{"type": "embedding", "embedding_dim": 4}, {"units": 2}], {"length": 3, "features": 2},
     "layer 1 (embedding) takes token ids"),
    ([{"type": "lstm", "hidden_size": 4}, {"units": 2}], {"length": 3, "vocab": 5}, "put { type = \"embedding\""),
    ([{"type": "gru", "hidden_size": 4}], 6, "layer 1 (gru) takes a sequence { length, features }"),
    ([{"type": "rnn", "hidden_size": 4, "nonlinearity": "tahn"}, {"units": 2}], {"length": 3, "features": 2},
     "did you mean 'tanh'"),
    ([{"type": "lstm", "hidden_size": 0}], {"length": 3, "features": 2}, "hidden_size must be a positive whole"),
    ([{"type": "lstm", "hidden_size": 2, "bias": False}], {"length": 3, "features": 2}, "bias = false"),
    ([{"type": "lstm", "hiden_size": 2}], {"length": 3, "features": 2}, "did you mean 'hidden_size'"),
])
def test_spec_mistakes_are_one_line_errors(layers, inputs, message):
    with pytest.raises(ChainruleError) as err:
        derive(spec_of(layers, inputs, "mse"))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_inputs_are_refused_by_the_module():
    tokens = load_module(NETWORKS["embedding-lstm"])
    params = tokens.init_params()
    for X, message in ((np.zeros((2, 6)), "integer token ids"), (np.full((2, 6), 7), "in 0..6"),
                       (np.zeros((2, 5), int), r"shape \(N, 6\)")):
        with pytest.raises(ValueError, match=message):
            tokens.forward(params, X)
    sequences = load_module(NETWORKS["lstm-last"])
    with pytest.raises(ValueError, match=r"shape \(N, 5, 3\)"):
        sequences.forward(sequences.init_params(), np.zeros((2, 4, 3)))


def test_the_many_to_one_classifier_trains():
    module = load_module({**NETWORKS["gru-last"], "optimizer": {"type": "adam", "lr": 0.02}})
    params = module.init_params(seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 6, 2))
    positive = X[:, :, 0].sum(axis=1) > 0  # the sign of a sum over time, two outputs
    T = np.stack([positive, ~positive], axis=1).astype(float)
    history = module.train(params, X, T, epochs=30, batch_size=16, verbose=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert module.evaluate(params, X, T)["accuracy"] > 0.9
