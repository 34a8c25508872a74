"""derive.verify's per-node hook (``OfSpec``'s ``hold``): attention holds each head's scores, softmax weights and
output as symbols and the recurrent cells hold each step's state, so no entry of the expanded network is a
whole layer; the reference is still sympy.diff of the forward definitions, so a wrong attention step is
reported, and the gallery transformer is proved in seconds. --exact refuses attention in one line."""
import pytest
import sympy as sp

import derive
import derive.ops.attention as attention
from codegen.cli import main
from codegen.gallery import ROOT
from derive.verify import Expansion, verify

TRANSFORMER = str(ROOT / "generated" / "specs" / "tiny_transformer.toml")


def attention_network(heads: int = 2, causal: bool = True) -> dict:
    """A sequence (T = 3, E = 2) -> causal self-attention -> sse_half: the attention's steps and nothing else."""
    return {"network": {"inputs": {"length": 3, "features": 2}, "loss": "sse_half",
                        "layers": [{"type": "attention", "num_heads": heads, "causal": causal}]}}


def expansion(spec, form: str = "batch") -> Expansion:
    sweep = dict(derive.derive(spec).forms)[form]
    return Expansion(sweep, 1 if form == "sample" else 2)


def test_the_gallery_transformer_is_proved_in_both_forms():
    report = verify(derive.derive(TRANSFORMER))
    assert report.ok and len(report.proofs) == 56, report.text()
    assert {p.form for p in report.proofs} == {"sample", "batch"}


def test_attention_holds_each_heads_scores_weights_and_output():
    """Per sample and head three matrices are held (S_h, A_h, O_h); the output's entries read the held O_h and
    hold no exp (the softmax is not copied into them); a number stays one: the masked weights 0, and the first
    query's weight on itself 1 (it sees no other key)."""
    e = expansion(attention_network())
    samples, heads, T = 2, 2, 3
    assert len(e.held) == samples * heads * 3
    symbols = {s for m in e.held.values() for s in m.free_symbols}
    output = e.levels[-2]  # the attention Step's own entries (the loss's come last)
    assert len(output) == T * 2 * samples
    assert all(not value.has(sp.exp) and value.free_symbols & symbols for value in output.values())
    weights = [held for matrix, held in e.held.items() if matrix.has(sp.exp)]
    assert len(weights) == samples * heads
    assert all(m[i, j] == 0 for m in weights for i in range(T) for j in range(T) if j > i)
    assert all(m[0, 0] == 1 for m in weights)
    assert all(m[i, j].is_Symbol for m in weights for i in range(1, T) for j in range(i + 1))
    # the backward Steps read the held forward values instead of the softmax expanded again
    assert all(not value.has(sp.exp) for _, matrix in e.backward for value in matrix)
    assert any(value.free_symbols & symbols for _, matrix in e.backward for value in matrix)


@pytest.mark.parametrize("cell, states", [("gru", 1), ("lstm", 2)])
def test_a_recurrent_layer_holds_each_steps_state(cell, states):
    """h_t (and the LSTM's c_t) at each of the T = 3 steps, for the batch's columns at once."""
    spec = {"network": {"inputs": {"length": 3, "features": 2}, "loss": "mse",
                        "layers": [{"type": cell, "hidden_size": 2}, {"type": "flatten"}, {"units": 1}]}}
    e = expansion(spec)
    assert len(e.held) == 3 * states
    assert all(m.shape == (2, 2) and all(s.is_Symbol for s in m) for m in e.held.values())


@pytest.mark.parametrize("which", [0, 1, 3], ids=["dX", "dW_in", "dW_out"])
def test_a_wrong_attention_gradient_is_the_only_step_reported(monkeypatch, which):
    """The op's stated backward pass made wrong by one part in a thousand for one input: that Step (in both
    forms) is reported and every other one proved, so the reference cannot be the stated VJP."""
    stated = attention.backprop

    def wrong(*args, **kwargs):
        grads = list(stated(*args, **kwargs))
        grads[which] = grads[which] * sp.Rational(1001, 1000)
        return tuple(grads)

    monkeypatch.setattr(attention, "backprop", wrong)
    spec = attention_network(heads=1, causal=False)
    spec["network"]["layers"].insert(0, {"units": 2, "activation": "tanh"})  # dX: the dense layer's δ1 reads it
    report = verify(derive.derive(spec))
    targets = {0: ("Δ1", "δ1"), 1: ("dL/dW_in2",) * 2, 3: ("dL/dW_out2",) * 2}[which]
    assert sorted((p.target, p.form) for p in report.failures()) == list(zip(targets, ("batch", "sample"))), \
        report.text()
    assert all(p.error > 1e-6 for p in report.failures())
    assert len(report.proofs) == 16


def test_exact_refuses_attention_in_one_line(capsys):
    assert main(["verify", TRANSFORMER, "--exact"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("chainrule: error: the exact proof cannot cancel attention's") \
        and "drop --exact" in err
