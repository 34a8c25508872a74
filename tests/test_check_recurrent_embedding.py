"""``chainrule check`` on issue #13's own networks: token ids, an embedding, then an lstm or gru and a dense
softmax layer (the gallery's lstm_lm and gru_classifier). The table's gradient is a scatter-add (the loop's
dE[x_t] += dx_t; overwriting is named), a GRU is read in torch's equations with check-code's GRU mistakes,
and the notes' own BPTT lines check as correct when pasted back (the round trip a teacher relies on)."""
import functools
import re
import subprocess
import sys

import pytest

from derive import derive
from derive.check import Conventions, accepted_names
from derive.check.document import Equation, read_document
from derive.errors import ChainruleError

LM, GRU = "generated/specs/lstm_lm.toml", "generated/specs/gru_classifier.toml"


@functools.lru_cache(maxsize=None)
def _checker(spec, convention) -> Conventions:
    return Conventions(derive(spec), convention)


def check(wrt, text, spec=LM, convention="auto"):
    return _checker(spec, convention).check(wrt, text)


def at_every_step(result) -> bool:
    return [v.layer for v in result.layers if v.result.equal] == [1, 2, 3]


EMBEDDING_RIGHT = [
    ("dE", r"\sum_t \text{onehot}(x_t)\, dx_t^T", "sample"),
    (r"\frac{\partial L}{\partial W_e}", r"\sum_{t=1}^{T} onehot(x^{(t)}) (W_{ih}^T \delta_t)^T", "sample"),
    ("dE[x_t] +", "dx_t", "sample"),
    ("dW_emb[x[t]] +", r"W_{ih}^T \delta_t", "columns"),
    ("dE[ids] +", "dx_t", "rows"),
    ("dE", r"\sum_t onehot_t^T dx_t", "rows"),
    ("W_ih", r"\sum_t \delta_t e_t^T", "sample"),  # the LSTM reads the embedded step e_t (x_t)
    ("dx_t", r"W_{ih}^T \delta_t", "columns"),
]


@pytest.mark.parametrize("wrt, text, convention", EMBEDDING_RIGHT)
def test_the_tables_gradient_is_a_scatter_add_of_every_steps_share(wrt, text, convention):
    result = check(wrt, text, convention=convention)
    assert result.equal, result.report()
    assert "T = 3 and the widths 2 -> 2 -> 2 -> 2 per step" in result.report()


EMBEDDING_WRONG = [
    ("dE[x_t]", "dx_t", "overwritten instead of added to"),
    ("dW_e[ids]", "dx_t", "np.add.at(dE, ids, dx)"),
    ("dE", r"onehot(x_T) dx_T^T", "yours has only the last step's term"),
    ("dE", r"onehot(x_t) dx_t^T", "the sum over t is missing"),
    ("dE[x_t] +", r"W_{ih} \delta_t", "cannot multiply"),
]


@pytest.mark.parametrize("wrt, text, mistake", EMBEDDING_WRONG)
def test_the_embeddings_usual_mistakes_are_named(wrt, text, mistake):
    result = check(wrt, text, convention="sample")
    assert not result.equal
    assert mistake in result.report(), result.report()


def test_a_language_models_dh_t_gathers_every_steps_output_and_the_next_step():
    assert at_every_step(check("dh_t", r"W_{hy}^T dy_t + W_{hh}^T \delta_{t+1}", convention="sample"))
    wrong = check("dh_t", r"W_{hy}^T dy_t", convention="sample")
    assert "path through h_t into step t + 1 is missing" in wrong.report()


def test_the_per_step_softmax_cross_entropy_names_the_mean_over_the_steps():
    assert at_every_step(check("dy_t", r"(\hat y_t - y_t)/3"))
    wrong = check("dy_t", r"\hat y_t - y_t")
    assert "a constant factor: yours is 3 times" in wrong.report() and "mean over the T = 3 steps" in wrong.report()
    batch = check("dy_t", r"\hat y_t - y_t", convention="columns").report()
    assert "9 times" in batch and "the N = 3 samples" in batch  # PyTorch's mean over N·T


GRU_RIGHT = [
    (r"\delta^n_t", r"dh_t \odot (1 - z_t) \odot (1 - n_t^2)"),
    (r"\delta^z_t", r"dh_t \odot (h_{t-1} - \tilde h_t) \odot z_t \odot (1 - z_t)"),
    (r"\delta^r_t", r"\delta^n_t \odot (W_{hn} h_{t-1} + b_{hn}) \odot r_t \odot (1 - r_t)"),
    ("dn_t", r"dh_t \odot (1 - z_t)"),
    ("dz_t", r"dh_t \odot (h_{t-1} - n_t)"),
    # many-to-one: the output's share (∂L/∂h_t)_out is W_hyᵀ dy at t = T and nothing before
    ("dh_t", r"\left(\frac{\partial L}{\partial h_t}\right)_{\mathrm{out}} + W_{hr}^T \delta^r_{t+1} + W_{hz}^T "
             r"\delta^z_{t+1} + W_{hn}^T (r_{t+1} \odot \delta^n_{t+1}) + dh_{t+1} \odot z_{t+1}"),
    ("dprev_h", r"W_{hh}^T \delta^h_t + dh_t \odot z_t"),
    (r"\delta^h_t", r"[\delta^r_t; \delta^z_t; r_t \odot \delta^n_t]"),  # the stacked blocks W_hh h + b_hh gets
]


@pytest.mark.parametrize("wrt, text", GRU_RIGHT)
def test_a_grus_gates_in_torchs_equations_are_right_at_every_step(wrt, text):
    result = check(wrt, text, GRU, "sample")
    assert at_every_step(result), result.report()


@pytest.mark.parametrize("wrt, text", [
    ("W_hn", r"\sum_t (r_t \odot \delta^n_t) h_{t-1}^T"),
    ("b_hn", r"\sum_t (r_t \odot \delta^n_t)"),
    ("b_in", r"\sum_t \delta^n_t"),
    ("W_iz", r"\sum_t \delta^z_t x_t^T"),
    ("W_hh", r"\sum_t \delta^h_t h_{t-1}^T"),
])
def test_a_grus_gate_blocks_and_its_two_biases_apart(wrt, text):
    result = check(wrt, text, GRU, "sample")
    assert result.equal, result.report()


GRU_WRONG = [  # check-code's GRU mistakes (diagnose._gru_worlds), each made at step t
    (r"\delta^n_t", r"dh_t \odot z_t \odot (1 - n_t^2)", "(1 − z) and z swapped"),
    (r"\delta^r_t", r"\delta^n_t \odot (W_{hn} h_{t-1}) \odot r_t \odot (1 - r_t)", "b_hn read outside r ⊙ (W_hn"),
    ("b_hn", r"\sum_t \delta^n_t", "b_hn read outside r ⊙ (W_hn"),
    ("dprev_h", r"W_{hh}^T \delta^h_t", "through z dropped"),
    (r"\delta^n_t", r"dh_t \odot (1 - z_t) \odot (1 - h_t^2)", "tanh' taken at h_t"),
    ("W_hh", r"\sum_t \delta^h_t h_t^T", "h_t where h_(t-1) belongs"),
]


@pytest.mark.parametrize("wrt, text, mistake", GRU_WRONG)
def test_the_grus_usual_mistakes_are_named_with_check_codes_names(wrt, text, mistake):
    result = check(wrt, text, GRU, "sample")
    assert not result.equal
    report = result.report()
    assert mistake in report, report
    if hasattr(result, "layers"):  # a rule in t: named at every step it is wrong at, not only some
        wrong = [v.result for v in result.layers if not v.result.equal]
        assert wrong and all(mistake in r.diagnosis for r in wrong), report


def test_the_names_list_the_embedding_and_the_gru_gates():
    lm = "\n".join(accepted_names(derive(LM)))
    gru = "\n".join(accepted_names(derive(GRU)))
    for name in ("onehot(x_t)", "dE[x_t] += dx_t", "e_t or x_t", "W3", "dc_t"):
        assert name in lm, name
    for name in ("W_hn", "\\delta^n_t", "\\tilde h_t", "b_ih (bx) and b_hh (bh) apart", "onehot(x_t)"):
        assert name in gru, name
    assert "b (bh: b_ih + b_hh)" not in gru  # a GRU's two biases are not one


def _bptt_lines(notes: str) -> str:
    """The notes' BPTT section, verbatim: from its opening sentence to the vanishing-gradient paragraph."""
    text = open(notes, encoding="utf-8").read()
    start = text.index("Backpropagation through time, from")
    return text[start:text.index("Why gradients vanish", start)]


@pytest.mark.parametrize("name, count", [("lstm_lm", 12), ("gru_classifier", 11)])
def test_the_notes_own_bptt_equations_check_as_correct_when_pasted_back(name, count):
    section = _bptt_lines(f"generated/{name}.md")
    checker = _checker(f"generated/specs/{name}.toml", "sample")
    equations = [e for e in read_document(section) if isinstance(e, Equation)
                 and not re.fullmatch(r"\s*t\s*", e.lhs)]  # the prose's "from $t = T$ down to 1"
    assert len(equations) == count, [e.lhs for e in equations]
    for e in equations:
        result = checker.check(e.lhs, e.rhs)
        assert result.equal, result.report()


def test_check_file_on_the_notes_section_is_correct_line_by_line(tmp_path):
    notes = tmp_path / "bptt.md"
    notes.write_text(_bptt_lines("generated/gru_classifier.md"))
    run = subprocess.run([sys.executable, "-m", "codegen.cli", "check", GRU, "--file", str(notes)],
                         capture_output=True, text=True, timeout=300)
    verdicts = re.findall(r"(?m)^line \d+: .*?: (correct|different|wrong|not understood)", run.stdout)
    assert verdicts.count("correct") >= 11 and "different" not in verdicts and "wrong" not in verdicts, run.stdout


@pytest.mark.parametrize("spec, args, message", [
    ('[network]\ninputs = { length = 3, vocab = 4 }\nlayers = [ { type = "embedding", embedding_dim = 2 }, '
     '{ type = "lstm", hidden_size = 2 }, { units = 2 }, { units = 4, activation = "softmax" } ]\n'
     'loss = "cross_entropy"\n', ["--wrt", "W_hh", "--grad", "0"], "followed by at most one dense layer"),
    (LM, ["--wrt", "dE[x_t]", "--grad", "dx_t @ dx_t"], "cannot multiply"),
    (LM, ["--wrt", "dE[x_t] +", "--grad", "q_t"], "unknown name 'q_t'"),
], ids=["deeper", "shape", "unknown"])
def test_cli_errors_are_one_line(tmp_path, spec, args, message):
    if spec.startswith("["):
        path = tmp_path / "net.toml"
        path.write_text(spec)
        spec = str(path)
    run = subprocess.run([sys.executable, "-m", "codegen.cli", "check", spec, *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode in (1, 2), run.stderr
    if run.returncode == 2:
        assert run.stdout == "" and run.stderr.count("\n") == 1 and run.stderr.startswith("chainrule: error:")
        assert message in run.stderr, run.stderr
    else:  # a verdict, not an error: the shape problem is the diagnosis
        assert message in run.stdout, run.stdout


def test_hostile_text_in_the_scattered_share_is_refused_before_anything_is_bound():
    with pytest.raises(ChainruleError, match="unexpected '_'"):
        check("dE[x_t] +", "__import__('os').system('true')", convention="sample")
