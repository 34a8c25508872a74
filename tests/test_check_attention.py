"""chainrule check on attention derivations: a network with a self-attention layer (T = 3, E = 4; one head, or
two heads with the causal mask) read one sample at a time with the positions as rows. Every intermediate
gradient a course writes (δO, δV, δA, δS, δQ, δK, dW_Q, dX) is checked against the op's own steps, in the
notes' orientation of W_Q (torch's) and in the vaswani convention (Q = X W_Q); each usual mistake is named;
the command line reads a file, lists the names, and refuses bad input in one line."""
import subprocess
import sys

import pytest

from derive import derive
from derive.check import accepted_names, check
from derive.check.parse import parse
from derive.errors import ChainruleError

T, E = 3, 4


def spec(heads, causal, tail=None):
    return {"network": {"inputs": {"length": T, "features": E}, "loss": "cross_entropy", "layers": [
        {"type": "attention", "num_heads": heads, "causal": causal}] + (tail or [
            {"type": "mean", "axis": "length"}, {"units": 2, "activation": "softmax"}])}}


ONE = derive(spec(1, False))
TWO = derive(spec(2, True))

RIGHT_ONE_HEAD = [
    ("dO", "G W_O"), ("dV", r"A^\top dO"), ("dP", r"dO V^\top"), ("dA", r"\delta O V^T"),
    ("dS", r"P \odot (dP - \operatorname{rowsum}(dP \odot P))"),
    ("dS", r"P \odot (dP - \mathrm{rowsum}(dO \odot O))"),  # FlashAttention's D = rowsum(dO ⊙ O)
    ("dS", r"A \odot (\delta A - \operatorname{rowsum}(\delta A \odot A) \mathbf{1}^{\top})"),  # the notes' own
    ("dQ", r"dS K / \sqrt{d_k}"), (r"\delta Q", r"\frac{1}{\sqrt{d}} \delta S K"), ("dK", r"dS^T Q / \sqrt{d_k}"),
    ("dQ", "(dL/dS) @ K / sqrt(d_k)"),
    (r"\frac{\partial L}{\partial W_Q}", r"\delta Q^\top X"), ("db_Q", r"\mathbf{1}^T dQ"),
    ("dW_O", "G^T O"), ("db_O", r"\mathbf{1}^T G"), ("dX", "dQ W_Q + dK W_K + dV W_V"),
    ("dS", r"\mathrm{softmax}(Q K^T / \sqrt{d_k}) \odot (dA - rowsum(dA \odot \mathrm{softmax}(Q K^T / \sqrt{d_k})))"),
    ("dW3", r"\delta_3 a_2^T"),
]
RIGHT_TWO_HEADS = [
    ("dV_1", r"P_1^\top dO_1"), ("dV_2", r"P_2^\top dO_2"), ("dP_2", r"dO_2 V_2^\top"),
    ("dS_1", r"P_1 \odot (dP_1 - rowsum(dP_1 \odot P_1))"), ("dQ_2", r"dS_2 K_2 / \sqrt{d_k}"),
    ("dK_1", r"dS_1^\top Q_1 / \sqrt{d_k}"), ("dQ", "dQ"), ("dW_Q", r"dQ^\top X"),
    ("dS_1", r"\mathrm{softmax}(S_1) \odot (dP_1 - rowsum(dP_1 \odot \mathrm{softmax}(S_1)))"),  # S_1 holds M
    ("dS_2", r"\mathrm{softmax}(Q_2 K_2^T/\sqrt{d_k} + M) \odot (dP_2 - rowsum(dP_2 \odot P_2))"),
]


@pytest.mark.parametrize("wrt, text", RIGHT_ONE_HEAD, ids=[f"{w}={t}" for w, t in RIGHT_ONE_HEAD])
def test_one_head_gradients_are_right(wrt, text):
    result = check(ONE, wrt, text, "sample")
    assert result.equal, result.report()


@pytest.mark.parametrize("wrt, text", RIGHT_TWO_HEADS, ids=[f"{w}={t}" for w, t in RIGHT_TWO_HEADS])
def test_two_causal_heads_gradients_are_right(wrt, text):
    result = check(TWO, wrt, text, "sample")
    assert result.equal, result.report()


MISTAKES = [
    (ONE, "dQ", "dS K", "the 1/√d_k factor missing in δQ"),
    (ONE, "dK", r"dS^T Q", "the 1/√d_k factor missing in δK"),
    (ONE, "dK", r"dS Q / \sqrt{d_k}", "a transpose missing in δK"),
    (ONE, "dS", r"A \odot (1 - A) \odot dA", "softmax treated as element-wise"),
    (ONE, "dQ", r"(A \odot (1 - A) \odot dA) K / \sqrt{d_k}", "softmax treated as element-wise"),
    (TWO, "dQ_2", r"dS_2 K_2 / \sqrt{d_{model}}", "d_k = E/H = 2, not the model's width E = 4"),
    (TWO, "dV_2", r"P_2^T dO_1", "heads not split the same way backwards"),
    (TWO, "dS_1", r"\mathrm{softmax}(Q_1 K_1^T/\sqrt{d_k}) \odot (dP_1 - rowsum(dP_1 \odot "
                  r"\mathrm{softmax}(Q_1 K_1^T/\sqrt{d_k})))", "the causal mask not applied to the gradient"),
    (TWO, "dW_Q", r"(dS_1 K_1 / \sqrt{d_k})^T X", "heads not merged the same way backwards"),  # one head's dQ_1
]


@pytest.mark.parametrize("derivation, wrt, text, phrase", MISTAKES, ids=[m[3][:40] for m in MISTAKES])
def test_each_usual_mistake_is_named(derivation, wrt, text, phrase):
    result = check(derivation, wrt, text, "sample")
    assert not result.equal and phrase in result.diagnosis, result.report()
    assert result.correct and result.correct_latex


def test_the_correct_form_is_the_ops_stated_step():
    assert check(TWO, "dK_1", r"dS_1 Q_1", "sample").correct == "δS_1ᵀ Q_1 / √d"
    assert check(ONE, "dS", "dA", "sample").correct == "A ⊙ (δA − rowsum(δA ⊙ A) 1ᵀ)"


def test_the_vaswani_convention_reads_W_Q_as_the_papers():
    """Q = X W_Q with W_Q (E × d_k): a course's dW_Q = Xᵀ dQ is right there, and auto says so; the notes' δQᵀ X
    is right in the sample convention and wrong (a transpose) in vaswani."""
    assert check(TWO, "dW_Q", r"X^\top dQ", "vaswani").equal
    assert check(TWO, "dX", r"dQ W_Q^T + dK W_K^T + dV W_V^T", "vaswani").equal
    assert check(TWO, "dW_O", r"O^T G", "vaswani").equal
    auto = check(TWO, r"\frac{\partial L}{\partial W^Q}", r"X^T \frac{\partial L}{\partial Q}", "auto")
    assert auto.equal and "vaswani" in auto.note
    wrong = check(TWO, "dW_Q", r"\delta Q^\top X", "vaswani")
    assert not wrong.equal and "transpose" in wrong.diagnosis and wrong.correct == "Xᵀ δQ"
    with pytest.raises(ChainruleError, match="vaswani convention reads the names of an attention layer"):
        check(derive("3 -> 2 softmax ; cross_entropy"), "W1", "delta1 x^T", "vaswani")


def test_the_derivations_own_stacked_parameters_and_the_layers_after():
    assert check(ONE, "dW_in1", "dL/dW_in1", "sample").equal
    assert check(ONE, "dW_{in}", "dL/dW_{in}", "sample").wrt == "dL/dW_in"  # shown as the notes name it
    assert check(ONE, "dW_out1", "dL/dW_out1", "sample").wrt == "dL/dW_out1"
    per_step = derive({**spec(1, False, [{"units": 2, "activation": "tanh"}, {"type": "mean", "axis": "length"}]),
                       "network": {**spec(1, False)["network"], "loss": "mse", "layers": [
                           {"type": "attention", "num_heads": 1}, {"units": 2, "activation": "tanh"},
                           {"type": "mean", "axis": "length"}]}})
    assert check(per_step, "dV", r"A^T dO", "sample").equal
    assert check(per_step, "dX", r"dQ W_Q + dK W_K + dV W_V", "sample").equal


def test_attention_notation_parses_and_d_k_is_not_dK():
    assert parse(r"\sqrt{d_k}").kind == "sqrt" and parse("d_k").args[0] != parse("dK").args[0]
    assert parse(r"\delta Q_h") == parse("dQ_h") and parse("δS").args[0] == "ds"
    assert parse(r"\mathrm{d}{V}").args[0] == "dv" and parse("W^Q").args[0] == parse("W_Q").args[0] == "wq"
    assert parse(r"\operatorname{rowsum}(dP \odot P)").kind == "rowsum"


def test_names_lists_attentions_own():
    names = "\n".join(accepted_names(TWO))
    for name in ("Q, K, V, O", "S_h, P_h", "M (the causal mask", "d_k (= 2", "dS_h, dQ_h", "W_Q, W_K, W_V"):
        assert name in names


def test_bad_attention_input_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "attn.toml"
    path.write_text('[network]\ninputs = { length = 3, features = 4 }\nlayers = [\n'
                    '  { type = "attention", num_heads = 2, causal = true },\n  { type = "mean", axis = "length" },\n'
                    '  { units = 2, activation = "softmax" },\n]\nloss = "cross_entropy"\n')
    for wrt, grad, says in (("dQ_3", "dS_1", "cannot check a gradient with respect to 'dQ_3'"),
                            ("dQ_1", r"\sqrt{Q}", "square root of a matrix"),
                            ("dQ_1", "rowsum(d_k)", "sums the rows of a matrix")):
        run = subprocess.run([sys.executable, "-m", "codegen.cli", "check", str(path), "--wrt", wrt, "--grad", grad],
                             capture_output=True, text=True)
        assert run.returncode == 2 and run.stdout == "", run
        assert run.stderr.count("\n") == 1 and run.stderr.startswith("chainrule: error: ") and says in run.stderr


def test_a_file_of_attention_steps_from_the_command_line(tmp_path):
    spec_path, notes = tmp_path / "attn.toml", tmp_path / "notes.md"
    spec_path.write_text('[network]\ninputs = { length = 3, features = 4 }\nlayers = [\n'
                         '  { type = "attention", num_heads = 1 },\n  { type = "mean", axis = "length" },\n'
                         '  { units = 2, activation = "softmax" },\n]\nloss = "cross_entropy"\n')
    notes.write_text("Backward, one head:\n\n$$dV = A^\\top dO \\in \\mathbb{R}^{T \\times d}$$\n\n"
                     "$$dQ = dS K$$\n\n$$dK = dS^\\top Q / \\sqrt{d_k}$$\n")
    run = subprocess.run([sys.executable, "-m", "codegen.cli", "check", str(spec_path), "--file", str(notes)],
                         capture_output=True, text=True)
    assert run.returncode == 1, run
    lines = [line for line in run.stdout.splitlines() if line.startswith("line ")]
    assert [line.split(": ")[1] for line in lines] == ["dL/dV", "dL/dQ", "dL/dK"]
    assert "dL/dV: correct" in lines[0] and "different" in lines[1] and "correct" in lines[2]
    assert "the 1/√d_k factor missing in δQ" in run.stdout


def test_a_layer_too_big_to_read_is_checked_narrow_and_says_so():
    big = derive({"network": {"inputs": {"length": 8, "features": 16}, "loss": "mse", "layers": [
        {"type": "attention", "num_heads": 2}, {"type": "mean", "axis": "length"}]}})
    result = check(big, "dQ_1", r"dS_1 K_1 / \sqrt{d_k}", "sample")
    assert result.equal and "CHECK_ATTENTION" in result.note and "T = 8 and the widths 4 -> 4 -> 4" in result.note
    assert "the widths 16 -> 16 -> 16" in result.note


def test_attention_inside_a_block_is_read():
    block = derive({"network": {"inputs": {"length": 3, "features": 4}, "loss": "mse", "layers": [
        {"type": "residual", "layers": [{"type": "attention", "num_heads": 1}]}, {"type": "mean", "axis": "length"}]}})
    assert check(block, "dQ", r"dS K / \sqrt{d_k}", "sample").equal
    assert not check(block, "dK", r"dS Q / \sqrt{d_k}", "sample").equal
