"""check-code --op rnn_step, rnn, lstm_step, lstm: the reference against PyTorch, the recurrent corpus
(tests/corpus/code, sources in SOURCES.md) and each usual BPTT mistake named once, at its source."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from derive.check.code import SEEDS, _recurrent_point, check_op, recurrent_gradients, recurrent_ops
from derive.check.options import OP_CONTRACT, RECURRENT_NAMES

CORPUS = Path(__file__).resolve().parent / "corpus" / "code"
ROOT = Path(__file__).resolve().parent.parent
RIGHT = None  # every output correct


def _torch_forward(op, p):
    """cs231n's forward in PyTorch (float64), and L = Σ dh ⊙ h (+ Σ dnext_c ⊙ next_c for lstm_step)."""
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p.items()}
    H = p["Wh"].shape[0]
    x = t["x"] if op.steps > 1 else t["x"][:, None]
    h = t["prev_h"] if "prev_h" in t else t["h0"]
    c = t["prev_c"] if "prev_c" in t else torch.zeros_like(h)
    hs = []
    for step in range(op.steps):
        a = x[:, step] @ t["Wx"] + h @ t["Wh"] + t["b"]
        if op.cell == "rnn":
            h = torch.tanh(a)
        else:
            i, f, o = (torch.sigmoid(a[:, k * H:(k + 1) * H]) for k in range(3))
            c = f * c + i * torch.tanh(a[:, 3 * H:])
            h = o * torch.tanh(c)
        hs.append(h)
    if op.steps > 1:
        loss = (t["dh"] * torch.stack(hs, 1)).sum()
    else:
        loss = (t["dnext_h"] * h).sum() + ((t["dnext_c"] * c).sum() if "dnext_c" in t else 0)
    loss.backward()
    return t


@pytest.mark.parametrize("name", ["rnn_step", "rnn", "lstm_step", "lstm"])
def test_the_reference_is_pytorchs_gradient_in_cs231ns_layout(name):
    op = recurrent_ops()[name]
    for seed in SEEDS:
        point = _recurrent_point(op, seed)
        ours = recurrent_gradients(op, point, {})
        t = _torch_forward(op, point)
        inputs = {"dx": "x", "dWx": "Wx", "dWh": "Wh", "db": "b", "dprev_h": "prev_h", "dh0": "h0", "dprev_c": "prev_c"}
        assert set(ours) == set(op.outputs)
        for out, value in ours.items():
            np.testing.assert_allclose(value, t[inputs[out]].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=out)


# (--op NAME, adapters.py's function, the lines the report must have; RIGHT: exit 0 and only "correct")
CASES = [
    ("rnn_step", "cs231n_rnn_step", RIGHT),
    ("rnn_step", "cs231n_rnn_step_prev_h",
     ["dx: different: tanh's derivative taken at prev_h: da = dnext_h ⊙ (1 − next_h²)",
      "dprev_h: different: follows from dx's mistake (tanh' at prev_h)",
      "dWh: different: follows from dx's mistake (tanh' at prev_h)"]),
    ("rnn", "cs231n_rnn", RIGHT),
    ("rnn", "cs231n_rnn_no_hidden_path",
     ["dx: different: the path through h_(t-1) dropped: step t's upstream gradient is dh[:, t] + dprev_h",
      "dWh: different: follows from dx's mistake (the path through h_(t-1) missing)"]),
    ("rnn", "cs231n_rnn_dwh_not_summed",
     ["dx: correct", "dh0: correct", "dWx: correct", "db: correct",
      "dWh: different: the sum over time missing in dWh: Wh is shared by the 3 steps", "yours is step 1's"]),
    ("lstm_step", "cs231n_lstm_step", RIGHT),
    ("lstm_step", "cs231n_lstm_step_no_forget",
     ["dx: correct", "dprev_h: correct", "dWh: correct",
      "dprev_c: different: the forget gate left out of dprev_c: c_t = f ⊙ c_(t-1) + i ⊙ g, so dprev_c = dc ⊙ f"]),
    ("lstm", "cs231n_lstm", RIGHT),
    ("lstm", "cs231n_lstm_no_cell_path",
     ["dx: different: the cell-state path dropped: step t's dnext_c is the dprev_c of step t + 1",
      "dh0: different: follows from dx's mistake (the cell-state path missing)",
      "dWh: different: follows from dx's mistake (the cell-state path missing)"]),
    ("rnn_step", "dlfs2_rnn_step", RIGHT),
    ("rnn", "dlfs2_time_rnn", RIGHT),
    ("rnn", "ng_rnn_backward", RIGHT),  # a dict by Ng's names: dx, da0, dWax, dWaa, dba
    ("rnn", "ng_rnn_no_numpy_backward", ["ng_rnn_no_numpy_backward raised an exception: NameError: name 'np' is not defined"]),
    ("rnn", "karpathy_min_char_rnn_backward",  # its np.clip(dparam, -5, 5) cuts one entry of one sequence's dWxh
     ["dWx: different: clipped to [-5, 5]: np.clip(dparam, -5, 5) on each sequence's gradient, before the batch's "
      "are summed, in the backward pass", "dWh: correct", "db: correct",
      "dx: not returned, not checked", "dh0: not returned, not checked"]),
    ("rnn", "karpathy_prime_prev_backward",
     ["dWx: different: tanh's derivative taken at h_(t-1): da = dh_t ⊙ (1 − h_t²)",
      "dWh: different: follows from dWx's mistake (tanh' at h_(t-1))", "db: different: follows from dWx's mistake"]),
]


@pytest.mark.parametrize("op, function, expected", CASES, ids=[c[1] for c in CASES])
def test_a_recurrent_corpus_case_gets_its_verdict_and_its_mistake(op, function, expected):
    lines, code = check_op(op, f"{CORPUS / 'adapters.py'}:{function}")
    text = "\n".join(lines)
    if expected is RIGHT:
        verdicts = [line for line in lines[1:] if not line.startswith("    ")]
        assert code == 0 and len(verdicts) == len(recurrent_ops()[op].outputs), text
        assert all(line.endswith(": correct") for line in verdicts), text
        return
    assert code == 1, text
    for line in expected:
        assert line in text, text
    mistakes = [line for line in lines if ": different: " in line and "follows from" not in line]
    assert len(mistakes) == (0 if "raised an exception" in expected[0] else 1), text  # named once, at its source


def test_the_recurrent_corpus_is_in_sources_with_its_commits():
    sources = (CORPUS / "SOURCES.md").read_text()
    files = ["cs231n_rnn_layers.py", "cs231n_rnn_step_prev_h.py", "cs231n_rnn_no_hidden_path.py",
             "cs231n_rnn_dwh_not_summed.py", "cs231n_lstm_layers.py", "cs231n_lstm_step_no_forget.py",
             "cs231n_lstm_no_cell_path.py", "dlfs2_time_layers.py", "karpathy_min_char_rnn.py", "karpathy_prime_prev.py", "ng_rnn.py",
             "ng_rnn_no_numpy.py"]
    for name in files:
        assert f"| {name} |" in sources, name
        assert (CORPUS / name).is_file(), name
    for commit in ("23587971eff6452488ab66eb0afbd50b9b274b14", "3f5c853986637e2eba33f70c982fac7c618ff0f3",
                   "01d5ba73e8c18652c562fe4c9dab64a10b2f0277", "4bc54ab81678d021e059fe3b3ba6fee503c20520",
                   "bcb64cd02c4c99a96d91735bee392633294e3e6e"):
        assert commit in sources


# -- the mistakes no corpus case makes, each in a cs231n-style function written here ------------------
STEP = '''
import numpy as np
def forward(x, prev_h, Wx, Wh, b):
    a = x @ Wx + prev_h @ Wh + b
    return a, np.tanh(a)
def pre_activation(dnext_h, x, prev_h, Wx, Wh, b):
    a, next_h = forward(x, prev_h, Wx, Wh, b)
    da = dnext_h * (1 - a ** 2)
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)
def wh_transposed(dnext_h, x, prev_h, Wx, Wh, b):
    a, next_h = forward(x, prev_h, Wx, Wh, b)
    da = dnext_h * (1 - next_h ** 2)
    return da @ Wx.T, da @ Wh, x.T @ da, prev_h.T @ da, da.sum(axis=0)
def dwh_transposed(dnext_h, x, prev_h, Wx, Wh, b):
    a, next_h = forward(x, prev_h, Wx, Wh, b)
    da = dnext_h * (1 - next_h ** 2)
    return da @ Wx.T, da @ Wh.T, x.T @ da, da.T @ prev_h, da.sum(axis=0)
def named(dnext_h, x, prev_h, Wx, Wh, b):
    a, next_h = forward(x, prev_h, Wx, Wh, b)
    dhraw = dnext_h * (1 - next_h ** 2)
    return {"dWxh": x.T @ dhraw, "dWhh": prev_h.T @ dhraw, "dbh": dhraw.sum(axis=0), "dhnext": dhraw @ Wh.T,
            "dinputs": dhraw @ Wx.T}
def nothing(dnext_h, x, prev_h, Wx, Wh, b):
    return {"grads": 0}
def sequence_last_step_only(dh, x, h0, Wx, Wh, b):
    N, T, D = x.shape
    hs, h = [h0], h0
    for t in range(T):
        h = forward(x[:, t], h, Wx, Wh, b)[1]
        hs.append(h)
    dx, dWx, dWh, db, dprev = np.zeros_like(x), 0, None, 0, 0
    for t in reversed(range(T)):
        da = (dh[:, t] + dprev) * (1 - hs[t + 1] ** 2)
        dx[:, t] = da @ Wx.T
        dWx = dWx + x[:, t].T @ da
        if dWh is None:
            dWh = hs[t].T @ da  # kept from the first step the loop reaches, t = T
        db = db + da.sum(axis=0)
        dprev = da @ Wh.T
    return dx, dprev, dWx, dWh, db
'''
LSTM = '''
import numpy as np
def sigmoid(a):
    return 1 / (1 + np.exp(-a))
def forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2*H]), sigmoid(a[:, 2*H:3*H]), np.tanh(a[:, 3*H:])
    next_c = f * prev_c + i * g
    return (i, f, o, g, next_c), o * np.tanh(next_c)
def back(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, gates):
    i, f, o, g, next_c = gates
    dc = dnext_c + dnext_h * o * (1 - np.tanh(next_c) ** 2)
    da = np.hstack([dc * g * i * (1 - i), dc * prev_c * f * (1 - f), dnext_h * np.tanh(next_c) * o * (1 - o),
                    dc * i * (1 - g ** 2)])
    return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, da.sum(axis=0)
def no_dnext_c(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b):
    gates, _ = forward(x, prev_h, prev_c, Wx, Wh, b)
    return back(dnext_h, 0 * dnext_c, x, prev_h, prev_c, Wx, Wh, gates)
def no_hidden_path(dh, x, h0, Wx, Wh, b):
    N, T, D = x.shape
    h, c, saved = h0, np.zeros_like(h0), []
    for t in range(T):
        gates, h_new = forward(x[:, t], h, c, Wx, Wh, b)
        saved.append((h, c, gates))
        h, c = h_new, gates[4]
    dx, dWx, dWh, db, dc = np.zeros_like(x), 0, 0, 0, np.zeros_like(h0)
    for t in reversed(range(T)):
        prev_h, prev_c, gates = saved[t]
        dx[:, t], dprev_h, dc, dWx_t, dWh_t, db_t = back(dh[:, t], dc, x[:, t], prev_h, prev_c, Wx, Wh, gates)
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return dx, dprev_h, dWx, dWh, db
'''


@pytest.mark.parametrize("source, op, function, expected", [
    (STEP, "rnn_step", "pre_activation", "dx: different: tanh's derivative taken at the pre-activation: da = dnext_h ⊙ "
                                         "(1 − next_h²) with next_h = tanh(a); yours is 1 − a²"),
    (STEP, "rnn_step", "wh_transposed", "dprev_h: different: Wh transposed in dprev_h: dprev_h = da @ Wh.T"),
    (STEP, "rnn_step", "dwh_transposed", "dWh: different: dWh transposed: dWh = prev_hᵀ da"),
    (STEP, "rnn", "sequence_last_step_only", "dWh: different: the sum over time missing in dWh: Wh is shared by the 3 "
                                             "steps, so dWh = Σ_t (step t's dWh), accumulated with +=; yours is step T = 3's alone"),
    (LSTM, "lstm_step", "no_dnext_c", "dx: different: dnext_c not added: the cell state's gradient is dc = dnext_c + "
                                      "dnext_h ⊙ o ⊙ (1 − tanh²(next_c)); yours has the path through next_h alone"),
    (LSTM, "lstm", "no_hidden_path", "dx: different: the path through h_(t-1) dropped"),
], ids=lambda v: v if isinstance(v, str) and v.isidentifier() else "")
def test_each_usual_bptt_mistake_is_named_once_at_its_source(tmp_path, source, op, function, expected):
    path = tmp_path / "student.py"
    path.write_text(source)
    lines, code = check_op(op, f"{path}:{function}")
    text = "\n".join(lines)
    assert code == 1 and f"  {expected}" in text, text
    mistakes = [line for line in lines if ": different: " in line and "follows from" not in line]
    assert len(mistakes) == 1, text


def test_two_mistakes_are_each_named_at_their_source_and_what_follows_says_from_which(tmp_path):
    path = tmp_path / "student.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(CORPUS)!r})\n" + '''
import numpy as np
from cs231n_rnn_layers import rnn_forward, rnn_step_backward
def rnn_backward(dh, x, h0, Wx, Wh, b):
    _, cache = rnn_forward(x, h0, Wx, Wh, b)
    dx, dWx, dWh, db = np.zeros_like(x), 0, 0, 0
    for t in reversed(range(dh.shape[1])):
        dx[:, t], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t], cache[t])  # no + dprev_h
        dWx, dWh, db = dWx + dWx_t, dWh_t, db + db_t  # dWh kept, not summed
    return dx, dprev_h, dWx, dWh, db
''')
    lines, code = check_op("rnn", f"{path}:rnn_backward")
    text = "\n".join(lines)
    assert code == 1 and "  dx: different: the path through h_(t-1) dropped" in text, text
    assert ("  dWh: different: the sum over time missing in dWh: Wh is shared by the 3 steps, so dWh = Σ_t (step t's "
            "dWh), accumulated with +=; yours is step 1's (the last one the backward loop reaches) alone, besides dx's "
            "mistake (the path through h_(t-1) missing)") in text, text
    assert "  db: different: follows from dx's mistake (the path through h_(t-1) missing)" in text, text


def test_a_dict_is_read_by_the_names_people_write_for_bptt(tmp_path):
    path = tmp_path / "student.py"
    path.write_text(STEP)
    lines, code = check_op("rnn_step", f"{path}:named")
    assert code == 0 and [line for line in lines[1:]] == [f"  {n}: correct" for n in recurrent_ops()["rnn_step"].outputs], lines
    lines, code = check_op("rnn_step", f"{path}:nothing")
    assert code == 1 and lines[1].startswith("  no gradient returned: return (dx, dprev_h, dWx, dWh, db), or a dict"), lines
    for names in RECURRENT_NAMES.values():
        assert len(set(names)) == len(names)
    assert "dhnext" in RECURRENT_NAMES["dprev_h"] and "dWhh" in RECURRENT_NAMES["dWh"] and "dW_xh" in RECURRENT_NAMES["dWx"]


def test_the_cli_checks_a_recurrent_op_and_documents_it(tmp_path):
    target = f"{CORPUS / 'adapters.py'}:cs231n_lstm_step_no_forget"
    out = subprocess.run([sys.executable, "-m", "codegen.cli", "check-code", "--op", "lstm_step", target],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 1 and "  dprev_c: different: the forget gate left out of dprev_c" in out.stdout, out
    wrong = subprocess.run([sys.executable, "-m", "codegen.cli", "check-code", "--op", "gru_cell", target],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert wrong.returncode == 2 and "rnn_step, rnn, lstm_step, lstm" in wrong.stderr and wrong.stdout == "", wrong
    spec = tmp_path / "lstm.toml"
    spec.write_text('[network]\ninputs = { length = 3, features = 2 }\n'
                    'layers = [ { type = "lstm", hidden_size = 2, return_sequences = false }, { units = 2 } ]\nloss = "mse"\n')
    whole = subprocess.run([sys.executable, "-m", "codegen.cli", "check-code", str(spec), target],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert whole.returncode == 2 and "check-code --op lstm FILE.py:FUNCTION" in whole.stderr, whole
    for row in ("rnn_step    f(dnext_h, x, prev_h, Wx, Wh, b) -> (dx, dprev_h, dWx, dWh, db)",
                "lstm_step   f(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b)", "dh_next, dhnext"):
        assert row in OP_CONTRACT
