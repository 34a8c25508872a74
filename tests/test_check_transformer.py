"""chainrule check on the pre-norm transformer block (issue #14): embedding, positions, residual(layer norm ->
causal attention), residual(layer norm -> gelu feed-forward), layer norm, softmax at every step. The gallery's
tiny_transformer (T = 16, E = 32, 4 heads) is checked narrow (E = 4, 2 heads of d = 2, T = 16) and says so; the
notes' own lines are correct (the steps as derive prints them: [f(t)]_{t=1}^{T}, sums over t, a layer norm's
σ_t, x̂_t, g_t, attention's names inside the block, rules in the head h), each usual mistake is named inside the
block, and what is still out of reach is refused in one line that names the fix."""
import subprocess
import sys
from pathlib import Path

import pytest

from derive import derive
from derive.check import accepted_names, check
from derive.check.document import checked, read_document
from derive.check.checker import Conventions
from derive.errors import ChainruleError

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "generated" / "specs" / "tiny_transformer.toml"
TINY = derive(SPEC)
SAMPLE = Conventions(TINY, "sample")  # one checker for the module: its random points are evaluated once
ISSUE = derive({"network": {"inputs": {"length": 16, "vocab": 40}, "loss": "cross_entropy", "layers": [
    {"type": "embedding", "embedding_dim": 32}, {"type": "positional"},
    {"type": "residual", "layers": [{"type": "layernorm"}, {"type": "attention", "num_heads": 4, "causal": True}]},
    {"type": "residual", "layers": [{"type": "layernorm"}, {"units": 64, "activation": "gelu"}, {"units": 32}]},
    {"type": "layernorm"}, {"units": 40, "activation": "softmax"}]}})

LN = r"\frac{1}{\sigma_{t}} \odot \left(g_{t} - \overline{g_{t}} - \hat{x}_{t} \odot \overline{g_{t} \odot \hat{x}_{t}}\right)"
DL = r"\frac{\partial L}{\partial "
# the notes' lines (15)-(42), as derive prints them for tiny_transformer
NOTES = [
    (r"\delta_{6}", r"\frac{1}{16} \left(\hat{y} - y\right)"),
    (DL + "W_{6}}", r"\sum_{t=1}^{T} \delta_{6,t} a_{5,t}^{\top}"),
    (DL + "b_{6}}", r"\sum_{t=1}^{T} \delta_{6,t}"),
    (DL + "a_{5}}", r"\left[W_{6}^{\top} \delta_{6,t}\right]_{t=1}^{T}"),
    (DL + r"\gamma_{5}}", r"\sum_{t=1}^{T} \left(" + DL + r"a_{5}}\right)_{t} \odot \hat{x}_{t}"),
    (DL + "a_{4}}", rf"\left[{LN}\right]_{{t=1}}^{{T}}"),
    (r"\delta_{4.2}", r"\left[W_{4.3}^{\top} \delta_{4.3,t}\right]_{t=1}^{T} \odot \operatorname{gelu}'\left(z_{4.2}\right)"),
    (DL + "a_{3}}", rf"\left[{LN}\right]_{{t=1}}^{{T}} + " + DL + "a_{4}}"),
    (DL + "a_{3.2}}", DL + "a_{3}}"),
    (DL + "W_{in,3.2}}", r"\sum_{t=1}^{T} \delta p_{t} a_{3.1,t}^{\top}"),
    (DL + "b_{out,3.2}}", r"\sum_{t=1}^{T} \left(" + DL + r"a_{3.2}}\right)_{t}"),
    (DL + "W_{out,3.2}}", r"\sum_{t=1}^{T} \left(" + DL + r"a_{3.2}}\right)_{t} o_{t}^{\top}"),
    (DL + "a_{3.1}}", r"\left[W_{in,3.2}^{\top} \delta p_{t}\right]_{t=1}^{T}"),
    (DL + r"\beta_{3.1}}", r"\sum_{t=1}^{T} \left(" + DL + r"a_{3.1}}\right)_{t}"),
    (DL + "P_{2}}", r"\left[\left(" + DL + r"a_{2}}\right)_{t}^{\top}\right]_{t=1}^{T}"),
    (DL + "W_{1}}", r"\sum_{t=1}^{T} x_{t} \left(" + DL + r"a_{2}}\right)_{t}^{\top}"),
]
# attention's own names inside the block (the notes' Definitions), one head at a time or as a rule in h
ATTENTION = [
    (r"\delta O", "G W_O"), (r"\delta V_h", r"A_h^{\top} \delta O_h"),
    (r"\delta S_h", r"A_h \odot (\delta A_h - \operatorname{rowsum}(\delta A_h \odot A_h) \mathbf{1}^{\top})"),
    (r"\delta K_h", r"\delta S_h^{\top} Q_h / \sqrt{d}"), ("dQ_1", r"dS_1 K_1 / \sqrt{d_k}"),
    (DL + "W_Q}", r"\sum_{t=1}^{T} \delta q_t x_t^{\top}"), (DL + "b_O}", r"\sum_{t=1}^{T} g_t"),
    (DL + "X}", r"\delta Q W_Q + \delta K W_K + \delta V W_V"),
]


@pytest.mark.parametrize("wrt, text", NOTES + ATTENTION, ids=[w for w, _ in NOTES + ATTENTION])
def test_the_notes_lines_are_correct(wrt, text):
    result = SAMPLE.check(wrt, text)
    assert result.equal, result.report()


MISTAKES = [
    ("dQ_1", r"dS_1 K_1", "the 1/√d_k factor missing in δQ"),
    ("dK_2", r"dS_2 Q_2 / \sqrt{d_k}", "a transpose missing in δK"),
    ("dQ_2", r"dS_2 K_2 / \sqrt{d_{model}}", "d_k = E/H = 2, not the model's width E = 4"),
    ("dS_1", r"\mathrm{softmax}(Q_1 K_1^T/\sqrt{d_k}) \odot (dP_1 - rowsum(dP_1 \odot \mathrm{softmax}(Q_1 K_1^T/"
             r"\sqrt{d_k})))", "the causal mask not applied to the gradient"),
    ("dV_2", r"\mathrm{softmax}(S_2)^T dO_1", "heads not split the same way backwards"),
    ("dW_Q", r"(dS_1 K_1 / \sqrt{d_k})^T X", "heads not merged the same way backwards"),
    (DL + "a_{3}}", rf"\left[{LN}\right]_{{t=1}}^{{T}}", "missing the residual path: the gradient also arrives through "
                                                       "the skip connection; add dL/da4"),
    (DL + "a_{2}}", r"\left[" + LN + r"\right]_{t=1}^{T}", "missing the residual path"),
]


@pytest.mark.parametrize("wrt, text, phrase", MISTAKES, ids=[m[2][:40] for m in MISTAKES])
def test_each_usual_mistake_is_named_inside_the_block(wrt, text, phrase):
    result = SAMPLE.check(wrt, text)
    assert not result.equal and phrase in result.diagnosis, result.report()


def test_softmax_read_element_wise_is_named_at_every_head():
    rule = SAMPLE.check(r"\delta S_h", r"A_h \odot (1 - A_h) \odot \delta A_h")
    assert [v.layer for v in rule.layers] == [1, 2] and not rule.equal
    assert all("softmax treated as element-wise" in v.result.diagnosis for v in rule.layers)
    assert "a rule in h, checked at h = 1, 2: wrong at h = 1, 2" in rule.report()


def test_the_issues_spec_is_checked_narrow_and_says_at_which_sizes():
    result = check(ISSUE, DL + "a_{3.2}}", DL + "a_{3}}", "sample")
    assert result.equal
    assert ("checked at T = 16 and the widths 4 -> 4 -> 4 -> 4 -> 4 -> 4 -> 4 per step with 2 heads of d = 2" in
            result.note and "the spec has T = 16 and the widths 40 -> 32" in result.note and "4 of d = 8" in result.note)
    names = "\n".join(accepted_names(ISSUE))
    for name in ("one sample step by step (T = 16)", "attention (layer 3.2)", "W_{in,3.2}", "P_2, a_2", "W_1, e_1",
                 "checked at T = 16"):
        assert name in names


def test_forward_steps_in_the_notes_are_skipped_not_checked():
    conventions = Conventions(TINY, "auto")
    steps = [(r"z_{4.2}", r"\left[W_{4.2} a_{4.1,t} + b_{4.2}\right]_{t=1}^{T}"), ("z_t", "W a_t + b"),
             ("O_h", "A_h V_h"), ("S_h", r"Q_h K_h^{\top} / \sqrt{d} + M"),
             ("a_{3.1}", r"\left[\operatorname{LN}\left(a_{2,t}; \gamma_{3.1}, \beta_{3.1}\right)\right]_{t=1}^{T}"),
             ("a_{3.2}", r"\operatorname{MHA}_{\mathrm{causal}}\left(a_{3.1}; W_{in,3.2}, b_{in,3.2}, W_{out,3.2}, "
                         r"b_{out,3.2}\right)")]
    items = [item for lhs, rhs in steps for item in read_document(f"$${lhs} = {rhs}$$")]
    verdicts = list(checked(conventions, items))
    assert len(verdicts) == 6 and all(verdict is None for _, verdict in verdicts), verdicts
    assert all("forward" in item.reason for item, _ in verdicts)


@pytest.mark.parametrize("wrt, grad, says", [
    ("dW6", r"\sum_{t=1}^{T} \sigma_t", "σ_t, x̂_t and g_t are a layer norm's at position t; check them in the "
                                        "gradient through one"),
    ("dQ_3", "dS_3 K_3", "attention here has 2 heads (h = 1..2)"),
    ("dQ_1", "dS_1 K_1", "attention's own names (Q, K, V, S_h, dQ, ...) are read one sample at a time: use "
                         "--convention sample"),
    (DL + "a_{2}}", r"\overline g", r"\overline in"),
])
def test_what_is_out_of_reach_is_one_line_that_names_the_fix(wrt, grad, says):
    convention = "columns" if "one sample at a time" in says else "sample"
    run = subprocess.run([sys.executable, "-m", "codegen.cli", "check", str(SPEC), "--wrt", wrt, "--grad", grad,
                          "--convention", convention], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and run.stdout == "", run
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("chainrule: error: ") and says in run.stderr, run.stderr


def test_two_attention_layers_refuse_attentions_names_and_say_why():
    two = derive({"network": {"inputs": {"length": 3, "features": 4}, "loss": "mse", "layers": [
        {"type": "residual", "layers": [{"type": "attention", "num_heads": 1}]},
        {"type": "residual", "layers": [{"type": "attention", "num_heads": 1}]}]}})
    with pytest.raises(ChainruleError, match="read in a network of one attention layer, and this one has 2"):
        check(two, "dQ", "dS K", "sample")
    assert check(two, DL + "a_{2.1}}", DL + "a_{2}}", "sample").equal  # the block's own names are read


def test_the_gallery_notes_attention_and_block_lines_check_as_correct():
    """check --file generated/tiny_transformer.md: every gradient of the block, the layers around it and
    attention's Definitions that the checker reads is correct (the per-element loss ℓ's line excepted)."""
    text = (ROOT / "generated" / "tiny_transformer.md").read_text()
    results = [(item, verdict) for item, verdict in checked(Conventions(TINY, "auto"), read_document(text))
               if verdict is not None and not isinstance(verdict, ChainruleError)]
    correct = [verdict for _, verdict in results if verdict.equal]
    wrong = [verdict.wrt for _, verdict in results if not verdict.equal]
    assert len(correct) >= 65, len(correct)
    assert set(wrong) <= {"dL/dŷ", "δ6"}, wrong  # ∂ℓ/∂ŷ of one element (no 1/T) and the fused step's derivation
    rules = [verdict for _, verdict in results if hasattr(verdict, "letter") and verdict.letter == "h"]
    assert len(rules) >= 5 and all(rule.equal for rule in rules)


def test_a_layer_norms_own_sigma_and_xhat_by_number():
    assert SAMPLE.check(DL + r"\gamma_{3.1}}", r"\sum_t (" + DL + r"a_{3.1}})_t \odot \hat{x}_{3.1}").equal
    assert not SAMPLE.check(DL + r"\gamma_{3.1}}", r"\sum_t (" + DL + r"a_{3.1}})_t \odot \hat{x}_{5}").equal


def test_check_code_refuses_the_block_in_one_line_and_names_the_op(tmp_path):
    code = tmp_path / "bw.py"
    code.write_text("def backward(cache, dout):\n    return {}\n")
    run = subprocess.run([sys.executable, "-m", "codegen.cli", "check-code", str(SPEC), f"{code}:backward"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and run.stdout == "" and run.stderr.count("\n") == 1, run
    assert "layer 1 is embedding(embedding_dim=32)" in run.stderr and "check-code --op mha" in run.stderr
