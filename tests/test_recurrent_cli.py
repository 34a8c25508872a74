"""``chainrule verify`` on whole recurrent networks: each is proved against sympy.diff of its unrolled
expansion at T = 3 and widths 2 (derive.verify.shrink), within seconds, says the sizes it proved at,
and still names a wrong step. ``chainrule train``'s gradient norms cover every layer that learns
(recurrent, embedding, layer norm, convolution), named by the parameters the notes name."""
import json
import re

import numpy as np
import pytest

import derive
from codegen.cli import main
from codegen.gallery import ROOT
from codegen.train import module_from_spec
from derive.verify import LENGTH, SEQUENCE_CAP, shrink, sizes, verify


def network(cell: str, sequences: bool, **settings) -> dict:
    """Token ids -> embedding -> the cell -> softmax (many-to-one), or a sequence -> the cell (every step
    kept) -> flatten -> a dense layer."""
    recurrent = {"type": cell, "hidden_size": 5, "return_sequences": sequences, **settings}
    if sequences:
        return {"network": {"inputs": {"length": 6, "features": 4}, "loss": "mse",
                            "layers": [recurrent, {"type": "flatten"}, {"units": 1}]}}
    return {"network": {"inputs": {"length": 7, "vocab": 5}, "loss": "cross_entropy",
                        "layers": [{"type": "embedding", "embedding_dim": 3}, recurrent,
                                   {"units": 3, "activation": "softmax"}]}}


def test_the_gallery_gru_is_proved_and_the_cli_says_at_which_sizes(capsys):
    assert main(["verify", str(ROOT / "generated" / "specs" / "gru_classifier.toml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    steps = [line for line in lines if re.match(r"\(\d+\) ", line)]
    assert len(steps) == 18 and all(": proved (numeric" in line for line in steps)
    assert "dL/dW_hh2 [batch]: proved" in "\n".join(steps) and "dL/dW1 [sample]: proved" in "\n".join(steps)
    assert lines[-2] == ("(proved at T = 3 and the widths 2 -> 2 -> 2 -> 2 per step, the same network made narrow "
                         "(the spec has T = 8 and the widths 6 -> 4 -> 8 -> 2 per step): the steps are the same at "
                         "every size)")
    assert lines[-1].startswith("all 18 steps proved in ")


@pytest.mark.parametrize("cell, sequences, settings", [("rnn", True, {"nonlinearity": "relu"}), ("rnn", False, {}),
                                                       ("lstm", False, {})], ids=["rnn-relu-sequences", "rnn-last", "lstm-last"])
def test_every_cell_is_proved_at_three_steps_and_width_two(cell, sequences, settings):
    d = derive.derive(network(cell, sequences, **settings))
    report = verify(d)
    assert report.ok, report.text()
    assert len(report.proofs) == 2 * len([s for s in d.steps if s.phase == "backward"])
    small = report.network
    assert small == shrink(d.network) and small.input_shape[0] == ("length", LENGTH)
    (recurrent,) = [layer for layer in small.layers if layer.kind == cell]
    assert (recurrent.length, recurrent.hidden_size) == (LENGTH, SEQUENCE_CAP)
    assert all(layer.length == LENGTH for layer in small.layers if getattr(layer, "length", 0))


def test_a_network_already_small_is_proved_as_derived():
    spec = network("rnn", True)
    spec["network"]["inputs"] = {"length": 2, "features": 2}
    spec["network"]["layers"][0]["hidden_size"] = 2
    d = derive.derive(spec)
    assert shrink(d.network) == d.network and sizes(d.network) == "T = 2 and the widths 2 -> 2 -> 4 -> 1 per step"
    assert verify(d).network is d.network


def test_a_wrong_bptt_step_is_named(tmp_path, capsys, slipped):
    spec = tmp_path / "small_rnn.toml"  # already small: proved as derived, so the slip is what is proved
    spec.write_text('[network]\ninputs = { length = 3, features = 2 }\n'
                    'layers = [{ type = "rnn", hidden_size = 2, return_sequences = false }, { units = 1 }]\nloss = "mse"\n')
    slipped("dL_dW_hh1")  # the sum over time of dL/dW_hh doubled
    assert main(["verify", str(spec)]) == 1
    out = capsys.readouterr().out
    wrong = [line for line in out.splitlines() if ": WRONG" in line]
    assert len(wrong) == 2 and all("dL/dW_hh1" in line for line in wrong), out
    assert "made narrow" not in out and out.splitlines()[-1].startswith("2 of ")


# -- chainrule train: a gradient norm for every layer that learns, named by its parameters -----------

GRU = str(ROOT / "generated" / "specs" / "gru_classifier.toml")


def test_train_norms_every_layer_that_learns_and_plots_them_by_their_parameters(tmp_path, capsys):
    from codegen import plots
    rng = np.random.default_rng(0)
    X = rng.integers(0, 6, size=(48, 8))
    np.savez(tmp_path / "tokens.npz", X=X, T=(X[:, -1] > 2).astype(int))
    assert main(["train", GRU, "--data", str(tmp_path / "tokens.npz"), "--epochs", "2", "--out", str(tmp_path / "w.npz"),
                 "--history", str(tmp_path / "h.json"), "--plot", str(tmp_path / "plots"), "-q"]) == 0
    history = json.loads((tmp_path / "h.json").read_text())
    assert history["grad_norm_layers"] == ["layer 1: W1", "layer 2: W_ih2, W_hh2, b_ih2, b_hh2", "layer 3: W3, b3"]
    assert all(len(epoch) == 3 and min(epoch) > 0 for epoch in history["grad_norms"])
    labels = [t.get_text() for t in plots.figures([("gru", history)])["gradient_norms"].legends[0].get_texts()]
    assert labels == ["layer 1: W1 (input side)", "layer 2: W_ih2, W_hh2, b_ih2, b_hh2", "layer 3: W3, b3 (output)"]
    with np.load(tmp_path / "w.npz") as saved:  # the widths of the layers, inputs (T·V one-hot features) first
        assert saved["chainrule_weights"].tolist() == [48, 32, 8, 2]


@pytest.mark.parametrize("spec, layers", [
    (GRU, {1: ("W1",), 2: ("W_ih2", "W_hh2", "b_ih2", "b_hh2"), 3: ("W3", "b3")}),
    (str(ROOT / "generated" / "specs" / "layernorm.toml"),
     {1: ("W1", "b1"), 2: ("gamma2", "beta2"), "3_1": ("W3_1", "b3_1"), "3_2": ("gamma3_2", "beta3_2"), 4: ("W4", "b4")}),
    ("1x6x6 -> conv2d(out_channels=2, kernel_size=3) -> flatten -> 3 softmax ; cross_entropy",
     {1: ("W1", "b1"), 3: ("W3", "b3")})], ids=["gru", "layernorm-residual", "conv"])
def test_each_norm_is_that_of_its_layers_parameters_gradients(spec, layers):
    module, _ = module_from_spec(spec)
    assert module.LAYER_PARAMS == layers and sorted(k for keys in layers.values() for k in keys) == sorted(module.PARAM_SHAPES)
    rng = np.random.default_rng(1)
    X = rng.integers(0, 6, size=(16, 8)) if spec == GRU else rng.normal(size=(16, module.INPUTS))  # token ids, or features
    T = rng.integers(0, module.OUTPUTS, size=16) if module.TARGET_KIND == "classes" else rng.normal(size=(16, module.OUTPUTS))
    logs = []
    module.train(module.init_params(0), X, T, epochs=1, batch_size=16, shuffle=False, verbose=False,
                 callback=lambda epoch, log: logs.append(log))
    _, grads = module.loss_and_grads(module.init_params(0), X, T)
    assert logs[0]["grad_norms"] == pytest.approx([np.sqrt(sum(np.sum(grads[k] ** 2) for k in keys))
                                                   for keys in layers.values()])


def test_train_reads_token_ids_and_refuses_bad_ones_in_one_line(tmp_path, capsys):
    X = np.random.default_rng(0).integers(0, 6, size=(10, 8)).astype(float)
    X[3, 2] = 6
    np.savez(tmp_path / "bad.npz", X=X, T=np.zeros(10, dtype=int))
    assert main(["train", GRU, "--data", str(tmp_path / "bad.npz"), "--epochs", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "X must hold token ids, whole numbers in 0..5 (vocab = 6); sample 3 has" in err


def test_exact_cancels_an_rnn_and_refuses_gated_cells_in_one_line(capsys):
    report = verify(derive.derive(network("rnn", False)), exact=True)
    assert report.ok and {p.method for p in report.proofs} == {"exact"}, report.text()
    assert main(["verify", GRU, "--exact"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("chainrule: error: the exact proof cannot cancel the GRU's") \
        and "drop --exact" in err
