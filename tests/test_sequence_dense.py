"""A dense layer on a sequence (z_t = W a_t + b at every step, one W for all t) and the losses on sequences:
from the same weights (``from_torch_state_dict`` of an nn.ModuleList twin: nn.Embedding or nn.RNN/GRU/LSTM
with batch_first=True, then nn.Linear, which acts on the last axis), the emitted module's loss and every
gradient equal PyTorch's to 1e-10 in float64, for cross_entropy on (N, T) class ids (mean over N·T, as
``F.cross_entropy(logits.reshape(N*T, K), y.reshape(N*T))``) and mse on (N, T, K); central differences
agree, float32 runs without warnings, and targets of the wrong shape get one-line errors."""
import warnings

import numpy as np
import pytest
import torch

from codegen.emit import generate
from codegen.gallery import ROOT
from derive import derive
from derive.errors import ChainruleError
from gradcheck import assert_equals_torch, central_differences, load_module, random_params, sequence_twin


def spec_of(layers, inputs, loss):
    return {"name": "seqdense", "network": {"inputs": inputs, "layers": layers, "loss": loss}}


LM = spec_of([{"type": "embedding", "embedding_dim": 4}, {"type": "lstm", "hidden_size": 5},
              {"units": 6, "activation": "softmax"}], {"length": 4, "vocab": 6}, "cross_entropy")
NETWORKS = {
    "embedding-lstm-dense-softmax-ce": LM,
    # a hidden dense layer on the sequence (tanh at every entry), then the output one: mse on (N, T, K)
    "rnn-dense-tanh-dense-mse": spec_of([{"type": "rnn", "hidden_size": 4}, {"units": 3, "activation": "tanh"},
                                         {"units": 2}], {"length": 3, "features": 2}, "mse"),
    "gru-dense-mse": spec_of([{"type": "gru", "hidden_size": 3}, {"units": 2, "activation": "identity"}],
                             {"length": 5, "features": 3}, "mse"),
    # a dense layer straight on the embedding, softmax + mse: softmax's own VJP at every step
    "embedding-dense-softmax-mse": spec_of([{"type": "embedding", "embedding_dim": 3},
                                            {"units": 4, "activation": "softmax"}], {"length": 3, "vocab": 5}, "mse"),
    "gallery-lstm-lm": str(ROOT / "generated" / "specs" / "lstm_lm.toml"),
}
ACTIVATIONS = {"tanh": torch.tanh, "identity": lambda a: a}


class Twin(torch.nn.Module):
    """The spec's network in PyTorch: ``layers`` is an nn.ModuleList (its state-dict keys "i.weight" ...); a
    recurrent module returns (output, state), so the forward is written out; the output layer gives logits."""

    def __init__(self, net):
        super().__init__()
        self.net, self.layers = net, sequence_twin(net)

    def forward(self, X):
        a = torch.from_numpy(X)
        for i, (layer, module) in enumerate(zip(self.net.layers, self.layers)):
            if layer.kind in ("rnn", "lstm", "gru"):
                a = module(a)[0]
            else:
                a = module(a)
                if layer.kind == "dense" and i < len(self.layers) - 1:
                    a = ACTIVATIONS[layer.activation.name](a)
        return a

    def loss(self, X, T):
        out = self.forward(X)  # (N, T, K)
        n, steps, k = out.shape
        act = self.net.layers[-1].activation.name
        if self.net.loss.name == "cross_entropy":
            return torch.nn.functional.cross_entropy(out.reshape(n * steps, k), torch.from_numpy(T).reshape(n * steps))
        yhat = torch.softmax(out, dim=-1) if act == "softmax" else ACTIVATIONS[act](out)
        return torch.nn.functional.mse_loss(yhat, torch.from_numpy(T))


def data(net, n=5, seed=0):
    rng = np.random.default_rng(seed)
    layout = dict(net.input_shape)
    if "vocab" in layout:
        X = rng.integers(0, layout["vocab"], size=(n, layout["length"]))
        X[0, :2] = X[1, 0]  # a repeated id
    else:
        X = rng.normal(size=(n, layout["length"], layout["features"]))
    steps, k = (size for _, size in net.layers[-1].shape)
    if net.loss.name == "cross_entropy":
        return X, rng.integers(0, k, size=(n, steps))
    return X, rng.normal(size=(n, steps, k))


@pytest.fixture(scope="module")
def modules():
    return {name: load_module(spec) for name, spec in NETWORKS.items()}


@pytest.mark.parametrize("name", NETWORKS)
def test_loss_and_every_gradient_equal_torch(name, modules):
    spec, module = NETWORKS[name], modules[name]
    net = derive(spec).network
    params = random_params(module)
    X, T = data(net)
    twin = Twin(net)
    assert_equals_torch(module, params, X, T, twin.layers, lambda _: twin.loss(X, T))


def test_the_output_is_per_step_and_the_softmax_normalises_each_step(modules):
    module = modules["embedding-lstm-dense-softmax-ce"]
    params = random_params(module)
    X, T = data(derive(LM).network)
    Y, _ = module.forward(params, X)
    steps = Y.reshape(5, 4, 6)
    assert np.allclose(steps.sum(axis=2), 1)  # every step a distribution over K = 6, not over all T·K
    assert module.predict(params, X).shape == (5, 4)
    assert np.array_equal(module.predict(params, X), steps.argmax(axis=2))
    right = module.predict(params, X) == T
    assert module.evaluate(params, X, T)["accuracy"] == pytest.approx(right.mean())  # per token
    one_hot = np.eye(6)[T]  # (N, T, K) one-hot rows give the same loss as the ids
    assert module.loss(params, X, one_hot) == pytest.approx(module.loss(params, X, T), abs=1e-12)


def test_central_differences_agree():
    spec = spec_of([{"type": "embedding", "embedding_dim": 2}, {"type": "gru", "hidden_size": 2},
                    {"units": 3, "activation": "softmax"}], {"length": 3, "vocab": 4}, "cross_entropy")
    module = load_module(spec)
    params = random_params(module)
    X, T = data(derive(spec).network, n=3)
    _, grads = module.loss_and_grads(params, X, T)
    numeric = central_differences(module, params, X, T)
    for key in grads:
        assert np.abs(grads[key] - numeric[key]).max() < 1e-7, key


def test_float32_runs_without_warnings(modules):
    spec = NETWORKS["embedding-lstm-dense-softmax-ce"]
    narrow, wide = load_module(spec, dtype="float32"), modules["embedding-lstm-dense-softmax-ce"]
    params = random_params(wide)
    X, T = data(derive(spec).network, n=8)
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        loss32, grads32 = narrow.loss_and_grads({k: v.astype(np.float32) for k, v in params.items()}, X, T)
        big = {**params, "W3": 1e4 * params["W3"]}  # logits far beyond exp's range: the fused softmax + CE is stable
        large32, _ = narrow.loss_and_grads({k: v.astype(np.float32) for k, v in big.items()}, X, T)
    loss64, grads64 = wide.loss_and_grads(params, X, T)
    assert all(g.dtype == np.float32 and np.isfinite(g).all() for g in grads32.values())
    assert abs(loss32 - loss64) < 1e-5 and np.isfinite(large32)
    assert all(np.abs(grads32[k] - grads64[k]).max() < 1e-5 for k in grads64)


def test_emitted_code_is_one_gemm_over_every_step():
    source = generate(derive(LM))
    assert "Z3 = (H2.reshape(-1, 5) @ W3.T + b3).reshape(H2.shape[0], -1)" in source
    assert "dL_dW3 = Delta3.reshape(-1, 6).T @ H2.reshape(-1, 5)" in source
    assert "dL_db3 = np.ones(Delta3.size // 6, real) @ Delta3.reshape(-1, 6)" in source  # a GEMV over N·T rows
    assert "dL_dH2 = (Delta3.reshape(-1, 6) @ W3).reshape(Delta3.shape[0], -1)" in source
    assert "Yhat, logsumexp_Z3 = _step_softmax_logsumexp(Z3, 6)" in source
    assert "Delta3 *= (1/4)/N" in source  # the fused step divided by N·T
    assert "for t in" not in source.split("def _forward")[1].split("def _checked")[0]


def test_the_derivation_states_the_step_and_the_sums_over_t():
    text = derive(LM).text()
    assert "Z3 = [W3 H2_t + b3]_(t=1..T)" in text
    assert "Ŷ = [softmax(Z3_t)]_(t=1..T)" in text
    assert "∂L/∂W3 = Σ_t Δ3_t H2_tᵀ" in text and "∂L/∂b3 = Σ_t Δ3_t 1_N" in text
    assert "∂L/∂H2 = [W3ᵀ Δ3_t]_(t=1..T)" in text
    assert "Δ3 = (1/(4 N)) (Ŷ - Y)" in text and "divided by N T (N samples, T = 4 steps)" in text
    # the symbol table says how the input's column is made, not only its flat size (24 × 1)
    assert "input: 4 token ids, each a one-hot column of 6, stacked (length × vocab)" in text


def test_wrong_targets_are_one_line_errors(modules):
    module = modules["embedding-lstm-dense-softmax-ce"]
    params = module.init_params()
    X, T = data(derive(LM).network)
    cases = [(T[:, 0], r"one class index per step: shape \(5, 4\).*return_sequences = false"),
             (T[:, :3], r"shape \(5, 4\), the 4 steps"), (T + 6, r"in 0\.\.5"), (T.astype(float), "integers"),
             (np.ones((5, 4, 5)), r"one-hot rows of shape \(5, 4, 6\)")]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            module.loss(params, X, bad)
        assert "\n" not in str(err.value)
    regression = modules["gru-dense-mse"]
    X, T = data(derive(NETWORKS["gru-dense-mse"]).network)
    with pytest.raises(ValueError, match=r"shape \(5, 5, 2\): 2 targets at each of the 5 steps"):
        regression.loss(regression.init_params(), X, T[:, :, 0])
    assert regression.loss(regression.init_params(), X, T.reshape(5, -1)) == \
        regression.loss(regression.init_params(), X, T)  # its rows flattened, as the inputs


def test_a_dense_layer_reads_a_sequence_input_at_every_step():
    net = derive(spec_of([{"units": 3, "activation": "relu"}, {"units": 1}], {"length": 4, "features": 2},
                         "mse")).network
    assert [layer.shape for layer in net.layers] == [(("length", 4), ("features", 3)), (("length", 4), ("features", 1))]
    assert net.outputs == 4 and net.layers[0].parameters(net.input_shape) == 9  # W (3, 2) and b (3): one step's


@pytest.mark.parametrize("layers, inputs, message", [
    ([{"units": 2}], {"length": 3, "vocab": 4}, "takes features but its input is token ids"),
    ([{"type": "lstm", "hidden_size": 2}, {"units": 2, "residual": True}], {"length": 3, "features": 2},
     "cannot be residual or have dropout"),
    ([{"units": 2}, {"units": 2, "dropout": 0.5}, {"units": 1}], {"length": 3, "features": 2},
     "cannot be residual or have dropout"),
])
def test_spec_mistakes_are_one_line_errors(layers, inputs, message):
    with pytest.raises(ChainruleError) as err:
        derive(spec_of(layers, inputs, "mse"))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_training_data_check_reads_a_target_at_every_step(modules):
    from codegen.train import checked
    tagger = load_module(spec_of([{"type": "rnn", "hidden_size": 3}, {"units": 4, "activation": "softmax"}],
                                 {"length": 3, "features": 2}, "cross_entropy"))
    X = np.zeros((2, 6))
    assert checked(tagger, "data.npz", X, np.array([[0, 3, 1], [2, 2, 0]]))[1].dtype == np.int64
    for T, message in ((np.array([0, 1]), "set return_sequences = false"), (np.zeros((2, 4), int), r"shape \(N, 3\)"),
                       (np.array([[0, 4, 1], [0, 0, 0]]), "sample 0 has 4 at step 1")):
        with pytest.raises(ChainruleError, match=message) as err:
            checked(tagger, "data.npz", X, T)
        assert "\n" not in str(err.value)
    regression = modules["gru-dense-mse"]
    assert checked(regression, "data.npz", np.zeros((2, 15)), np.ones((2, 10)))[1].shape == (2, 5, 2)
    with pytest.raises(ChainruleError, match=r"2 values at each of its 5 steps; give targets of shape \(N, 5, 2\)"):
        checked(regression, "data.npz", np.zeros((2, 15)), np.ones((2, 5)))


def test_verify_proves_every_step_against_sympy_diff():
    """derive.verify: the chain rule over sympy.diff of the expanded network, the one-hot targets summing
    to 1 at every step (the fused softmax + cross-entropy rule holds per step)."""
    from derive.verify import verify
    spec = spec_of([{"type": "rnn", "hidden_size": 2}, {"units": 2, "activation": "tanh"},
                    {"units": 2, "activation": "softmax"}], {"length": 2, "features": 1}, "cross_entropy")
    report = verify(derive(spec))
    assert report.proofs and all(p.ok for p in report.proofs), [p for p in report.proofs if not p.ok]


def test_the_proof_shrinks_every_layer_of_a_language_model_to_the_same_length():
    """verify proves a long sequence at T = cap: the embedding, the recurrent and the dense layer all shrink."""
    from derive.chain import Derivation
    from derive.verify import shrink
    small = shrink(derive(NETWORKS["gallery-lstm-lm"]).network, 3)
    assert dict(small.layout)["length"] == 3
    assert [layer.shape for layer in small.layers] == [(("length", 3), ("features", 3))] * 3
    assert Derivation(small).batch.quantities["Z3"].symbol.shape[0] == 9  # 3 steps of 3 outputs
