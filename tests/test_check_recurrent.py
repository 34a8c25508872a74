"""``chainrule check`` on backpropagation through time: an rnn (tanh, relu) or lstm layer, then a dense layer
per step or on h_T. Per-step names get the cell's own values at T = 3, width 2; right rules are right at
every t, and the usual BPTT mistakes are named (the sum over t, the path from step t + 1, f' at the wrong
value, W_hh untransposed, the LSTM's forget-gate path)."""
import functools
import subprocess
import sys

import pytest

from derive import derive
from derive.check import Checker, Conventions, accepted_names
from derive.errors import ChainruleError


def _spec(cell="rnn", nonlinearity="tanh", sequences=True, output="softmax", loss="cross_entropy"):
    layer = {"type": cell, "hidden_size": 3, "return_sequences": sequences}
    if cell == "rnn":
        layer["nonlinearity"] = nonlinearity
    return {"network": {"inputs": {"length": 4, "features": 3},
                        "layers": [layer, {"units": 3, "activation": output}], "loss": loss}}


@functools.lru_cache(maxsize=None)
def _checker(convention="sample", **kw) -> Conventions:
    return Conventions(derive(_spec(**dict(kw))), convention)


def check(wrt, text, convention="auto", **kw):
    return _checker(convention, **kw).check(wrt, text)


def steps(result):
    """Each step's verdict of a rule in t: {t: CheckResult}."""
    return {v.layer: v.result for v in result.layers}


RIGHT = [
    ("dh_t", r"W_{hy}^T dy_t + W_{hh}^T \delta_{t+1}"),
    (r"\delta_t", r"dh_t \odot (1 - h_t^2)"),
    (r"\delta_t", r"dh_t \odot \tanh'(a_t)"),
    ("W_hh", r"\sum_{t=1}^{T} \delta_t h_{t-1}^\top"),
    ("W_ih", r"\sum_t \delta_t x_t^T"),
    ("b_hh", r"\sum_t \delta_t"),
    ("W_hy", r"\sum_t dy_t h_t^T"),
    ("dx_t", r"W_{ih}^T \delta_t"),
    (r"\nabla_W L", r"\sum_t \mathrm{diag}(1-(h^{(t)})^2)(\nabla_{h^{(t)}}L) (h^{(t-1)})^T"),
    (r"\nabla_{h^{(\tau)}} L", r"V^T \nabla_{o^{(\tau)}} L"),
    ("dWhh +", "np.dot(dhraw, hs[t-1].T)"),
    ("dhnext", "np.dot(Whh.T, dhraw)"),
]


@pytest.mark.parametrize("wrt, text", RIGHT)
def test_right_bptt_expressions_are_correct_at_every_step(wrt, text):
    result = check(wrt, text)
    assert result.equal, result.report()
    assert "T = 3 and the widths 2 -> 2 -> 2 per step" in result.report()
    if hasattr(result, "layers"):  # a rule in t: a verdict at each of the three steps
        assert sorted(steps(result)) == [1, 2, 3] and "a rule in t, checked at t = 1, 2, 3" in result.report()


MISTAKES = [
    ("W_hh", r"\delta_T h_{T-1}^T", "the sum over t is missing"),
    ("W_hh", r"\delta_t h_{t-1}^T", "the sum over t is missing"),
    ("dh_t", r"W_{hy}^T dy_t", "path through h_t into step t + 1 is missing"),
    ("dh_t", r"W_{hy}^T dy_t + W_{hh} \delta_{t+1}", "W_hh not transposed"),
    (r"\delta_t", r"dh_t \odot \tanh'(h_t)", "taken at h_t instead of at the pre-activation"),
    (r"\delta_t", r"dh_t \odot (1 - h_{t-1}^2)", "previous step's h_(t-1)"),
    (r"\delta_t", "dh_t", "the activation's derivative is missing"),
    ("W_hh", r"\sum_t \delta_t h_t^T", "h_t where h_(t-1) belongs"),
    (r"\nabla_{o^{(t)}} L", r"\hat y^{(t)} - y^{(t)}", "a constant factor: yours is 3 times"),
]


@pytest.mark.parametrize("wrt, text, mistake", MISTAKES)
def test_the_usual_bptt_mistakes_are_named(wrt, text, mistake):
    result = check(wrt, text)
    assert not result.equal
    assert mistake in result.report(), result.report()


def test_a_rule_wrong_only_where_the_path_from_step_t_plus_1_exists():
    found = steps(check("dh_t", r"W_{hy}^T dy_t"))  # right at t = T, where nothing comes back
    assert [t for t, r in found.items() if r.equal] == [3]


def test_relu_rnn_reads_its_own_derivative_and_names_another():
    assert check(r"\delta_t", r"dh_t \odot \mathbb{1}[a_t > 0]", nonlinearity="relu").equal
    assert check(r"\delta_t", r"dh_t \odot f'(a_t)", nonlinearity="relu").equal
    wrong = check(r"\delta_t", r"dh_t \odot \tanh'(a_t)", nonlinearity="relu")
    assert "the recurrent layer uses relu" in wrong.report()


def test_many_to_one_reads_the_output_at_step_T_only():
    kw = dict(sequences=False, output="identity", loss="sse_half")
    assert check("dh_T", "W_y^T dy", **kw).equal
    assert check("W_y", "dy h_T^T", **kw).equal
    assert check("dh_t", r"W_{hh}^T \delta_{t+1}", **kw).layers[0].result.equal  # t = 1 has no output share
    assert check(r"\delta_t", r"dh_t \odot (1 - h_t^2)", **kw).equal


def test_batch_first_step_functions_in_the_rows_convention():
    assert check("dt", "dh_next * ( 1 - h_next ** 2)").equal  # Deep Learning from Scratch 2
    assert check("dprev_h", "dtanh.dot(Wh.T)").equal  # cs231n: Wh stored H × H as x @ Wx + prev_h @ Wh
    result = check("dWx", "np.dot(x.T, dt)")
    assert "rows convention" in result.report() and "the sum over t is missing" in result.report()
    assert check("dWx +", "x.T.dot(dtanh)").equal


LSTM_RIGHT = [
    ("dc_t", r"dh_t \odot o_t \odot (1 - \tanh^2(c_t)) + dc_{t+1} \odot f_{t+1}"),
    (r"\delta^f_t", r"dc_t \odot c_{t-1} \odot f_t \odot (1 - f_t)"),
    (r"\delta^i_t", r"dc_t \odot \tilde{c}_t \odot i_t \odot (1 - i_t)"),
    (r"\delta^g_t", r"dc_t \odot i_t \odot (1 - g_t^2)"),
    (r"\delta^o_t", r"dh_t \odot \tanh(c_t) \odot o_t \odot (1 - o_t)"),
    ("W_hh", r"\sum_t \delta_t h_{t-1}^T"),
]


@pytest.mark.parametrize("wrt, text", LSTM_RIGHT)
def test_lstm_cell_state_and_gates(wrt, text):
    assert check(wrt, text, cell="lstm").equal


def test_lstm_forget_gate_path_missing_is_named():
    result = check("dc_t", r"dh_t \odot o_t \odot (1 - \tanh^2(c_t))", cell="lstm")
    assert "the forget-gate path of dc_t is missing" in result.report()
    assert [t for t, r in steps(result).items() if r.equal] == [3]


def test_names_lists_the_recurrent_names_and_the_sizes():
    names = "\n".join(accepted_names(derive(_spec(cell="lstm"))))
    for name in ("h_{t-1}", "W_hh", "dhnext", "dc_t", "\\delta^f_t", "checked at T = 3"):
        assert name in names
    assert "onehot(x_t)" in "\n".join(accepted_names(derive("generated/specs/lstm_lm.toml")))  # an embedding: read


_GRU = ('[network]\ninputs = { length = 3, features = 2 }\nlayers = [ { type = "gru", hidden_size = 2 } ]\n'
        'loss = "sse_half"\n')
_RNN = _GRU.replace('"gru"', '"rnn"')
_DENSE_FIRST = _RNN.replace('layers = [ {', 'layers = [ { units = 2 }, {')


@pytest.mark.parametrize("spec, args, message", [
    (_DENSE_FIRST, ["--wrt", "W_hh", "--grad", "0"], "first layer is rnn, lstm or gru, and this one's is dense"),
    (_GRU.replace('hidden_size = 2 } ]', 'hidden_size = 2 }, { units = 2 }, { units = 2 } ]').replace('"gru"', '"rnn"'),
     ["--wrt", "W_hh", "--grad", "0"], "followed by at most one dense layer"),
    (None, ["--wrt", "W_hh", "--grad", "h_{t+5}"], "a step is written t - 1, t, t + 1, T, T + 1"),
    (None, ["--wrt", "W_hh", "--grad", "q_t"], "unknown name 'q_t'"),
    (None, ["--wrt", "h_t", "--grad", "x_t"], "is not a gradient"),
], ids=["dense-first", "deeper", "offset", "unknown", "not-a-gradient"])
def test_cli_errors_are_one_line(tmp_path, spec, args, message):
    if spec is None or spec.startswith("["):
        text, spec = spec or _RNN, tmp_path / "net.toml"
        spec.write_text(text)
    run = subprocess.run([sys.executable, "-m", "codegen.cli", "check", str(spec), *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("chainrule: error:") and message in run.stderr, run.stderr


def test_a_dense_layer_before_the_recurrent_one_is_refused_with_the_way_out(tmp_path):
    spec = tmp_path / "net.toml"
    spec.write_text(_DENSE_FIRST)
    with pytest.raises(ChainruleError, match="check the derivation with derive.verify"):
        Checker(derive(str(spec)))
    assert accepted_names(derive(str(spec))) is None  # its notes point to no checker
    assert "W_hn" in "\n".join(accepted_names(derive("generated/specs/gru_classifier.toml")))  # a GRU: read


def test_softmax_of_the_output_is_the_prediction_and_its_prime_is_refused():
    assert check("dy_t", "(softmax(o_t) - y_t)/3").equal  # the mean over T = 3 steps of one sample
    with pytest.raises(ChainruleError, match="the softmax is not element-wise"):
        check("dy_t", "softmax'(o_t)")


def test_a_file_of_bptt_equations_checks_line_by_line(tmp_path):
    spec = tmp_path / "net.toml"
    spec.write_text(_RNN)
    derivation = tmp_path / "bptt.tex"
    derivation.write_text("\\begin{align}\n\\delta_t &= dh_t \\odot (1 - h_t^2) \\\\\n"
                          "\\frac{\\partial L}{\\partial W_{hh}} &= \\sum_{t=1}^{T} \\delta_t h_{t-1}^\\top \\\\\n"
                          "\\frac{\\partial L}{\\partial W_{ih}} &= \\delta_T x_T^\\top\n\\end{align}\n")
    run = subprocess.run([sys.executable, "-m", "codegen.cli", "check", str(spec), "--file", str(derivation)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "line 2: \\delta_t = dh_t \\odot (1 - h_t^2): a rule in t, checked at t = 1, 2, 3: correct" in run.stdout
    assert "line 3: \\frac{\\partial L}{\\partial W_{hh}}: correct" in run.stdout
    assert "line 4: \\frac{\\partial L}{\\partial W_{ih}}: different" in run.stdout and "sum over t is missing" in run.stdout


@pytest.mark.parametrize("text, message", [
    ("diag(h_t)" * 300, "longer than 2000 characters"),
    ("diag(h_t", "unbalanced parentheses after diag"),
    ("__import__('os').system('true')", "unexpected '_'"),
])
def test_hostile_or_huge_text_is_refused_before_anything_is_bound(text, message):
    with pytest.raises(ChainruleError, match=message):
        check("W_hh", text)


@pytest.mark.parametrize("spec", ["generated/specs/gru_classifier.toml", "generated/specs/lstm_lm.toml"])
def test_the_names_command_lists_a_recurrent_networks_names_and_its_conventions(spec):
    """`check --names` under auto asks the sample checker for what it reads and names the other conventions: a
    recurrent network's are columns, rows and goodfellow (its checker has no attention layer to offer vaswani for)."""
    run = subprocess.run([sys.executable, "-m", "codegen.cli", "check", spec, "--names"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert "W_hh" in run.stdout and "onehot(x_t)" in run.stdout
    assert run.stdout.rstrip().endswith("or the names of the columns, rows or goodfellow convention (auto picks the "
                                        "one your names use; see check --help)")


def test_a_files_forward_steps_are_skipped_not_misread(tmp_path):
    """The forward equations of a BPTT write-up (a_t, the gates, c_t, h_t) are skipped with the reason, as a dense
    network's are, and the file's gradient lines still decide the exit code."""
    notes = tmp_path / "lstm.md"
    notes.write_text("$$a_t = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}$$\n\n"
                     "$$i_t = \\sigma(a^{i}_t), \\quad g_t = \\tanh(a^{g}_t)$$\n\n"
                     "$$c_t = f_t \\odot c_{t-1} + i_t \\odot g_t$$\n\n"
                     "$$\\frac{\\partial L}{\\partial W_{hh}} = \\sum_{t=1}^{T} \\delta_t h_{t-1}^{\\top}$$\n")
    run = subprocess.run([sys.executable, "-m", "codegen.cli", "check", "generated/specs/lstm_lm.toml", "--file",
                          str(notes)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    skipped = [line for line in run.stdout.splitlines() if "skipped" in line]
    assert len(skipped) == 4 and all("is not a gradient: an equation for it is the forward pass" in line for line in skipped), run.stdout
    assert "not understood" not in run.stdout and "line 7: \\frac{\\partial L}{\\partial W_{hh}}: correct" in run.stdout
