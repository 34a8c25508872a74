"""Multi-head self-attention, the position table and the mean over a sequence, end to end: the stated backward
pass equals sympy.diff of the forward definition at T = 3, E = 4 (1 and 2 heads, causal and not), and the
emitted module, loaded with the weights of a PyTorch twin (nn.Embedding, nn.MultiheadAttention with
batch_first=True, nn.Linear in an nn.ModuleList), gives its loss and every gradient to 1e-10 in float64;
central differences agree, float32 with a causal mask runs without a warning, and bad specs get one-line
errors."""
import random
import warnings

import numpy as np
import pytest
import sympy as sp
import torch

from codegen.emit import generate
from codegen.gallery import ROOT
from derive import derive
from derive.errors import ChainruleError
from derive.ops.attention import AttentionSpec, attend, backprop
from derive.verify import verify
from gradcheck import assert_equals_torch, load_module, random_params, torch_activation


def matrix(key, rows, cols):
    return sp.ImmutableMatrix(rows, cols, lambda i, j: sp.Symbol(f"{key}_{i}_{j}", real=True))


@pytest.mark.parametrize("heads, causal, bias", [(2, True, True), (1, False, False)],
                         ids=["2-heads-causal", "1-head-no-bias"])
def test_backward_is_sympy_diff_of_the_forward_definition(heads, causal, bias):
    """T = 3, E = 4, one sample (tests/test_ops.py proves the sum over a batch of 2), at a random point: for
    six entries (or all) of each input in turn (sympy's 30-digit arithmetic costs about a second an entry), the
    forward definition (attend) with that entry a symbol and everything else at the point, then sympy.diff
    of <G, output> with respect to it, evaluated at the point, against the stated backward (backprop)."""
    T, E = 3, 4
    spec = AttentionSpec(T, heads, causal, bias)
    shapes = [(T * E, 1), (3 * E, E), (3 * E, 1), (E, E), (E, 1)]
    rng = random.Random(0)
    point = [sp.Matrix(r, c, lambda i, j: sp.Float(rng.uniform(-1.5, 1.5), 30)) for r, c in shapes]
    if not bias:
        point[2], point[4] = sp.zeros(3 * E, 1), sp.zeros(E, 1)
    G = sp.ImmutableMatrix(T * E, 1, lambda i, j: sp.Float(rng.uniform(-1, 1), 30))
    stated = backprop(spec, G, *point)
    s = sp.Symbol("s", real=True)
    for k, (rows, cols) in enumerate(shapes):
        if not bias and k in (2, 4):
            continue
        for e in rng.sample(range(rows * cols), min(6, rows * cols)):
            leaf = point[k].copy()
            leaf[e] = s
            pairing = sum(g * y for g, y in zip(G, attend(spec, *point[:k], leaf, *point[k + 1:])))
            value = sp.diff(pairing, s).xreplace({s: point[k][e]})
            assert abs(sp.N(value - stated[k][e], 30)) < 1e-20, (k, e)


def test_verify_proves_a_prenorm_block_in_both_forms():
    """derive.verify: every backward Step (per sample and batch) against sympy.diff of the expanded network."""
    spec = spec_of([{"type": "positional"},
                    {"type": "residual", "layers": [{"type": "layernorm"},
                                                    {"type": "attention", "num_heads": 2, "causal": True}]},
                    {"type": "mean"}, {"units": 2, "activation": "softmax"}], {"length": 2, "features": 2})
    report = verify(derive(spec))
    assert report.ok and len(report.proofs) == 28


# -- the emitted module against PyTorch ----------------------------------------------------------------

def spec_of(layers, inputs, loss="cross_entropy", name="seq"):
    return {"name": name, "network": {"inputs": inputs, "layers": layers, "loss": loss}}


def classifier(heads, causal, bias=True, length=5, vocab=7, width=4):
    """embedding -> positional -> attention -> mean -> dense softmax: many-to-one, no per-step dense layer."""
    return spec_of([{"type": "embedding", "embedding_dim": width}, {"type": "positional"},
                    {"type": "attention", "num_heads": heads, "causal": causal, "bias": bias},
                    {"type": "mean", "axis": "length"}, {"units": 3, "activation": "softmax"}],
                   {"length": length, "vocab": vocab})


class Positional(torch.nn.Module):
    """The position table as nn.Embedding(T, E) stores it ("i.weight", drawn N(0, 1)), row t added at position t."""

    def __init__(self, length, features):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(length, features, dtype=torch.float64))

    def forward(self, a):
        return a + self.weight


def torch_twin(net):
    """torch.nn.ModuleList: module i is spec layer i, float64 (a mean is an nn.Identity, with no keys)."""
    return _twin(net.layers, net.input_shape)


def _twin(layers, shape):
    modules = []
    for layer in layers:
        width = shape[-1][1]
        if layer.kind == "residual":
            modules.append(_twin(layer.layers, shape))
        elif layer.kind == "layernorm":
            modules.append(torch.nn.LayerNorm(width, layer.eps, layer.affine, dtype=torch.float64))
        elif layer.kind == "embedding":
            modules.append(torch.nn.Embedding(layer.vocab, layer.embedding_dim, dtype=torch.float64))
        elif layer.kind == "positional":
            modules.append(Positional(layer.length, layer.features))
        elif layer.kind == "attention":
            modules.append(torch.nn.MultiheadAttention(width, layer.num_heads, bias=layer.bias, batch_first=True,
                                                       dtype=torch.float64))
        elif layer.kind == "mean":
            modules.append(torch.nn.Identity())
        else:  # a dense layer, at every position of a sequence
            modules.append(torch.nn.Linear(width, layer.shape[-1][1], dtype=torch.float64))
        shape = layer.shape
    return torch.nn.ModuleList(modules)


def torch_forward(net, modules, X):
    return _apply(net.layers, modules, torch.from_numpy(X))


def _apply(layers, modules, a):
    for layer, module in zip(layers, modules):
        if layer.kind == "residual":
            a = a + _apply(layer.layers, module, a)
        elif layer.kind == "attention":
            mask = torch.nn.Transformer.generate_square_subsequent_mask(layer.length, dtype=torch.float64) \
                if layer.causal else None
            a = module(a, a, a, need_weights=False, attn_mask=mask)[0]
        elif layer.kind == "mean":
            a = a.mean(dim=1)
        elif layer.kind == "dense" and layer.activation.name != "softmax":  # softmax: the fused loss reads the logits
            a = torch_activation(layer.activation)(module(a))
        else:
            a = module(a)
    return a


def tokens(net, n=6, seed=0):
    rng = np.random.default_rng(seed)
    layout = dict(net.input_shape)
    X = rng.integers(0, layout["vocab"], size=(n, layout["length"]))
    X[0, :2] = X[1, 0]  # a repeated id: its row gathers several positions' gradients
    return X, rng.integers(0, net.outputs, size=n)


def prenorm_classifier(heads, causal, affine=True):
    """A pre-norm attention block on a sequence: residual(layernorm -> attention), a final layer norm (each
    torch.nn.LayerNorm(E), at every position), the mean, dense softmax."""
    return spec_of([{"type": "embedding", "embedding_dim": 4}, {"type": "positional"},
                    {"type": "residual", "layers": [{"type": "layernorm", "affine": affine},
                                                    {"type": "attention", "num_heads": heads, "causal": causal}]},
                    {"type": "layernorm", "eps": 1e-3}, {"type": "mean"}, {"units": 3, "activation": "softmax"}],
                   {"length": 5, "vocab": 7})


CLASSIFIERS = {"1-head": classifier(1, False), "1-head-causal": classifier(1, True),
               "2-heads": classifier(2, False), "2-heads-causal": classifier(2, True),
               "4-heads-causal-no-bias": classifier(4, True, bias=False, width=8, length=6),
               "prenorm-block-causal": prenorm_classifier(2, True),
               "prenorm-block-no-affine": prenorm_classifier(1, False, affine=False)}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_loss_and_every_gradient_equal_torch(name):
    spec = CLASSIFIERS[name]
    net = derive(spec).network
    module = load_module(spec)
    params = random_params(module)
    X, T = tokens(net)
    assert_equals_torch(module, params, X, T, torch_twin(net), lambda modules: torch.nn.functional.cross_entropy(
        torch_forward(net, modules, X), torch.from_numpy(T)))


TRANSFORMER = str(ROOT / "generated" / "specs" / "tiny_transformer.toml")


def test_the_gallery_transformer_equals_torch():
    """The issue's tiny causal transformer (pre-norm attention and feed-forward blocks, softmax at every
    position, cross-entropy over N·T next-token ids, as F.cross_entropy of the (N·T, 40) logits)."""
    net = derive(TRANSFORMER).network
    module = load_module(TRANSFORMER)
    params = random_params(module)
    rng = np.random.default_rng(0)
    X, T = rng.integers(0, 40, size=(3, 16)), rng.integers(0, 40, size=(3, 16))
    assert_equals_torch(module, params, X, T, torch_twin(net), lambda modules: torch.nn.functional.cross_entropy(
        torch_forward(net, modules, X).reshape(-1, 40), torch.from_numpy(T).reshape(-1)))


def test_central_differences_agree():
    module = load_module(CLASSIFIERS["2-heads-causal"])
    X, T = tokens(derive(CLASSIFIERS["2-heads-causal"]).network)
    assert module.gradient_check(random_params(module), X, T, max_entries=None) < 1e-6


def test_parameters_are_torch_shaped_and_initialised_as_torch():
    module = load_module(CLASSIFIERS["2-heads"])
    assert module.PARAM_SHAPES == {"W1": (7, 4), "P2": (5, 4), "W_in3": (12, 4), "b_in3": (12,), "W_out3": (4, 4),
                                   "b_out3": (4,), "W5": (3, 4), "b5": (3,)}
    assert module.TORCH_KEYS == {"W1": "0.weight", "P2": "1.weight", "W_in3": "2.in_proj_weight",
                                 "b_in3": "2.in_proj_bias", "W_out3": "2.out_proj.weight", "b_out3": "2.out_proj.bias",
                                 "W5": "4.weight", "b5": "4.bias"}
    params = module.init_params(seed=0)
    xavier, linear = np.sqrt(6 / (4 + 12)), 1 / np.sqrt(4)
    assert xavier / 2 < np.abs(params["W_in3"]).max() <= xavier
    assert linear / 2 < np.abs(params["W_out3"]).max() <= linear
    assert not params["b_in3"].any() and not params["b_out3"].any()  # torch zeroes both
    assert 1 < np.abs(params["P2"]).max() < 5  # N(0, 1), as nn.Embedding


def test_float32_causal_runs_without_warnings_and_masked_weights_are_zero():
    spec = classifier(2, True, length=16, width=8)
    narrow, wide = load_module(spec, dtype="float32"), load_module(spec)
    params = random_params(wide)
    X, T = tokens(derive(spec).network, n=4)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        loss32, grads32 = narrow.loss_and_grads({k: v.astype(np.float32) for k, v in params.items()}, X, T)
        loss64, grads64 = wide.loss_and_grads(params, X, T)
        _, cache = narrow._forward(narrow._params({k: v.astype(np.float32) for k, v in params.items()})[0],
                                   narrow._inputs(X, np.float32))
    assert all(g.dtype == np.float32 and np.isfinite(g).all() for g in grads32.values())
    assert abs(loss32 - loss64) < 1e-4
    A = cache["A3_saved"][4]
    assert A.dtype == np.float32 and A.shape == (4, 2, 16, 16)
    assert (A[:, :, np.triu(np.ones((16, 16), bool), 1)] == 0).all()
    assert np.allclose(A.sum(axis=3), 1, atol=1e-5)


def test_emitted_code_batches_samples_and_heads():
    source = generate(derive(CLASSIFIERS["2-heads-causal"]))
    assert "A3, A3_saved = _attention_forward(A2, W_in3, b_in3, W_out3, b_out3, 5, 2, True)" in source
    assert source.count("_attention_backward(") == 2  # its definition and one call for all four gradients
    assert "for n in range(" not in source and "for h in range(" not in source


def test_notes_state_the_attention_steps():
    d = derive(CLASSIFIERS["2-heads-causal"])
    text, latex = d.text(), d.latex()
    for line in ("S_h = Q_h K_hᵀ / √d + M", "δS_h = A_h ⊙ (δA_h - rowsum(δA_h ⊙ A_h) 1ᵀ)",
                 "δQ_h = δS_h K_h / √d", "δK_h = δS_hᵀ Q_h / √d", "δV_h = A_hᵀ δO_h"):
        assert line in text, line
    assert r"\delta S_h = A_h \odot" in latex and "mask carries no gradient" in text
    nested = derive(CLASSIFIERS["prenorm-block-causal"]).text()  # inside a residual block, numbered as its Steps
    assert "Layer 3.2 is torch.nn.MultiheadAttention(4, 2, batch_first=True)" in nested
    assert "∂L/∂γ3.1 = Σ_t ((∂L/∂A3.1)_t ⊙ x̂_t) 1_N" in nested  # layer norm at every position, summed over t and N


@pytest.mark.parametrize("layers, inputs, message", [
    ([{"type": "attention", "num_heads": 3}, {"type": "mean"}, {"units": 2}], {"length": 3, "features": 4},
     "num_heads = 3 does not divide the embedding width 4"),
    ([{"type": "attention", "num_heads": 2}, {"units": 2}], {"length": 3, "vocab": 5}, "put { type = \"embedding\""),
    ([{"type": "attention", "num_heads": 1}], 6, "layer 1 (attention) takes a sequence { length, features }, but its input is 6 features"),
    ([{"units": 4}, {"type": "attention", "num_heads": 1}], 6, "layer 2 (attention) takes a sequence"),
    ([{"type": "attention", "num_heads": 0}], {"length": 3, "features": 2}, "num_heads must be a positive whole"),
    ([{"type": "attention", "num_heads": 1, "causal": "yes"}], {"length": 3, "features": 2}, "causal must be true"),
    ([{"type": "attention", "num_head": 1}], {"length": 3, "features": 2}, "did you mean 'num_heads'"),
    ([{"type": "mean", "axis": "features"}, {"units": 2}], {"length": 3, "features": 2}, 'axis must be "length"'),
    ([{"type": "positional"}, {"type": "mean"}, {"type": "positional"}, {"units": 2}], {"length": 3, "features": 2},
     "layer 3 (positional) takes a sequence"),
    ([{"type": "positional"}, {"type": "layernorm"}, {"type": "mean"}, {"units": 2}], {"length": 3, "features": 1},
     "layer 2 normalizes 1 feature"),
    ([{"type": "residual", "layers": [{"type": "mean"}]}, {"units": 2}], {"length": 3, "features": 2},
     "layer 1 (residual block) maps 6 to 2 features"),
])
def test_spec_mistakes_are_one_line_errors(layers, inputs, message):
    with pytest.raises(ChainruleError) as err:
        derive(spec_of(layers, inputs, "mse"))
    assert message in str(err.value) and "\n" not in str(err.value)
