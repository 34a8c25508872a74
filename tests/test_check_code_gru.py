"""check-code --op gru_step, gru: the reference against torch.nn.GRU, the GRU corpus (tests/corpus/code,
sources in SOURCES.md), each usual GRU mistake named once at its source, and gradient clipping named as a
mistake only where the clip explains the difference."""
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


def _torch_gradients(op, p) -> dict:
    """The op's outputs from torch.nn.GRU itself, its parameters set from cs231n's Wx = W_ihᵀ, Wh = W_hhᵀ, bx, bh."""
    D, H = p["Wx"].shape[0], p["Wh"].shape[0]
    gru = torch.nn.GRU(D, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for name, value in (("weight_ih_l0", p["Wx"].T), ("weight_hh_l0", p["Wh"].T), ("bias_ih_l0", p["bx"]),
                            ("bias_hh_l0", p["bh"])):
            getattr(gru, name).copy_(torch.tensor(value))
    x = torch.tensor(p["x"] if op.steps > 1 else p["x"][:, None], requires_grad=True)
    h0 = torch.tensor(p["h0" if op.steps > 1 else "prev_h"][None], requires_grad=True)
    out, _ = gru(x, h0)
    upstream = p["dh"] if op.steps > 1 else p["dnext_h"][:, None]
    (out * torch.tensor(upstream)).sum().backward()
    return {"dx": x.grad.numpy() if op.steps > 1 else x.grad.numpy()[:, 0], "dh0" if op.steps > 1 else "dprev_h":
            h0.grad.numpy()[0], "dWx": gru.weight_ih_l0.grad.numpy().T, "dWh": gru.weight_hh_l0.grad.numpy().T,
            "dbx": gru.bias_ih_l0.grad.numpy(), "dbh": gru.bias_hh_l0.grad.numpy()}


@pytest.mark.parametrize("name", ["gru_step", "gru"])
def test_the_reference_is_torch_grus_gradient_in_cs231ns_layout(name):
    op = recurrent_ops()[name]
    for seed in SEEDS:
        point = _recurrent_point(op, seed)
        ours, theirs = recurrent_gradients(op, point, {}), _torch_gradients(op, point)
        assert set(ours) == set(op.outputs) == set(theirs)
        for out in op.outputs:
            np.testing.assert_allclose(ours[out], theirs[out], rtol=1e-10, atol=1e-12, err_msg=out)


RIGHT = None  # every output correct
CASES = [
    ("gru_step", "cmu_gru_step", RIGHT),
    ("gru", "cmu_gru", RIGHT),
    ("gru_step", "cmu_gru_step_bias_outside",
     ["dx: different: b_hn read outside r ⊙ (W_hn prev_h + b_hn): torch's n = tanh(W_in x + b_in + r ⊙ (W_hn prev_h + b_hn))",
      "dbh: different: follows from dx's mistake (b_hn outside r ⊙ (...))"]),
    ("gru", "cmu_gru_bias_outside", ["dx: different: b_hn read outside r ⊙ (W_hn h_(t-1) + b_hn)",
                                     "dWh: different: follows from dx's mistake (b_hn outside r ⊙ (...))"]),
    ("gru_step", "cmu_gru_step_z_swapped",
     ["dx: different: (1 − z) and z swapped: next_h = (1 − z) ⊙ n + z ⊙ prev_h, so dn = dnext_h ⊙ (1 − z) ⊙ (1 − n²)",
      "dprev_h: different: follows from dx's mistake ((1 − z) and z swapped)"]),
    ("gru_step", "cmu_gru_step_tanh_at_h",
     ["dx: different: tanh's derivative taken at next_h: dn = dnext_h ⊙ (1 − z) ⊙ (1 − n²)", "yours is 1 − next_h²"]),
    ("gru", "cmu_gru_tanh_at_h", ["dx: different: tanh's derivative taken at h_t", "yours is 1 − h_t²",
                                  "dbx: different: follows from dx's mistake (tanh' at h_t)"]),
]


@pytest.mark.parametrize("op, function, expected", CASES, ids=[c[1] for c in CASES])
def test_a_gru_corpus_case_gets_its_verdict_and_its_mistake(op, function, expected):
    lines, code = check_op(op, f"{CORPUS / 'adapters.py'}:{function}")
    text = "\n".join(lines)
    verdicts = [line for line in lines[1:] if not line.startswith("    ")]
    assert len(verdicts) == len(recurrent_ops()[op].outputs), text
    if expected is RIGHT:
        assert code == 0 and all(line.endswith(": correct") for line in verdicts), text
        return
    assert code == 1, text
    for line in expected:
        assert line in text, text
    mistakes = [line for line in lines if ": different: " in line and "follows from" not in line]
    assert len(mistakes) == 1, text  # named once, at its source


def test_the_gru_corpus_is_in_sources_with_its_commit():
    sources = (CORPUS / "SOURCES.md").read_text()
    for name in ("cmu_gru_cell.py", "cmu_gru_bias_outside.py", "cmu_gru_z_swapped.py", "cmu_gru_tanh_at_h.py"):
        assert f"| {name} |" in sources and (CORPUS / name).is_file(), name
    assert "Llynoirx/gru-architecture, mytorch/gru_cell.py, 00bde4142543d9c2c0e9948949e7314651744fed" in sources


# -- the mistakes no corpus case makes, in cs231n-style functions written here: gru_step_forward's cache, --
# gru_step_backward(dnext_h, cache) with one mistake, and the whole sequence's loop over it
SOURCE = '''
import numpy as np
def sigmoid(a):
    return 1 / (1 + np.exp(-a))
def gru_step_forward(x, prev_h, Wx, Wh, bx, bh, chung=False):
    H = prev_h.shape[1]
    a, ah = x @ Wx + bx, prev_h @ Wh + bh
    r, z = sigmoid(a[:, :H] + ah[:, :H]), sigmoid(a[:, H:2*H] + ah[:, H:2*H])
    n = np.tanh(a[:, 2*H:] + r * ah[:, 2*H:])
    next_h = z * n + (1 - z) * prev_h if chung else (1 - z) * n + z * prev_h
    return next_h, (x, prev_h, Wx, Wh, bh, r, z, n, ah, next_h, a)
def gru_step_backward(dnext_h, cache, mistake=None):
    x, prev_h, Wx, Wh, bh, r, z, n, ah, next_h, a = cache
    H = prev_h.shape[1]
    swapped = mistake in ("swapped", "chung")
    keep, direct = (z, 1 - z) if swapped else (1 - z, z)
    v = next_h if mistake == "output" else a[:, 2*H:] + r * ah[:, 2*H:] if mistake == "pre" else n
    dn = dnext_h * keep * (1 - v ** 2)
    dr = dn * ah[:, 2*H:] * r * (1 - r)
    dz = dnext_h * ((n - prev_h) if swapped else (prev_h - n)) * z * (1 - z)
    dax, dah = np.hstack([dr, dz, dn]), np.hstack([dr, dz, dn * r])
    dprev_h = dah @ Wh.T + (0 if mistake == "z_path" else dnext_h * direct)
    return dax @ Wx.T, dprev_h, x.T @ dax, prev_h.T @ dah, dax.sum(axis=0), dah.sum(axis=0)
def step(mistake=None):
    def backward(dnext_h, x, prev_h, Wx, Wh, bx, bh):
        _, cache = gru_step_forward(x, prev_h, Wx, Wh, bx, bh)
        return gru_step_backward(dnext_h, cache, mistake)
    return backward
def sequence(mistake=None, clip=None, only_first_dbh=False):
    def backward(dh, x, h0, Wx, Wh, bx, bh):
        h, caches = h0, []
        for t in range(x.shape[1]):
            h, cache = gru_step_forward(x[:, t], h, Wx, Wh, bx, bh, chung=mistake == "chung")
            caches.append(cache)
        dx, dprev, grads = np.zeros_like(x), np.zeros_like(h0), [0, 0, 0, 0]
        for t in reversed(range(x.shape[1])):
            upstream = dh[:, t] if mistake == "hidden_path" else dh[:, t] + dprev
            dx[:, t], dprev, *step_grads = gru_step_backward(upstream, caches[t], mistake)
            grads = [g + s for g, s in zip(grads, step_grads)]
            if only_first_dbh:
                grads[3] = step_grads[3]  # = instead of +=: the last step the loop reaches, t = 1
        if clip:
            grads = [np.clip(g, -clip, clip) for g in grads]
        return (dx, dprev, *grads)
    return backward
z_path_step, pre_step = step("z_path"), step("pre")
hidden_path, chung, dbh_not_summed = sequence("hidden_path"), sequence("chung"), sequence(only_first_dbh=True)
clipped, clip_not_reached = sequence(clip=1), sequence(clip=1000)
def clipped_and_off(*args):
    grads = list(clipped(*args))
    grads[2] = grads[2] + 0.01  # beside the clip, a difference no clip explains
    return tuple(grads)
'''


@pytest.mark.parametrize("op, function, expected", [
    ("gru_step", "z_path_step", "dprev_h: different: the path from next_h to prev_h through z dropped: next_h = "
                                "(1 − z) ⊙ n + z ⊙ prev_h, so dprev_h = dnext_h ⊙ z + the gates' paths through Wh"),
    ("gru_step", "pre_step", "dx: different: tanh's derivative taken at the pre-activation: dn = dnext_h ⊙ (1 − z) ⊙ "
                             "(1 − n²) with n = tanh(a_n); yours is 1 − a_n²"),
    ("gru", "hidden_path", "dx: different: the path through h_(t-1) dropped: step t's upstream gradient is dh[:, t] + "
                           "dprev_h"),
    ("gru", "chung", "dx: different: z and 1 − z swapped throughout: torch's GRU is h_t = (1 − z) ⊙ n + z ⊙ h_(t-1); "
                     "yours computes (1 − z) ⊙ h_(t-1) + z ⊙ n (Chung et al.'s and Olah's convention), forward and "
                     "backward"),
    ("gru", "dbh_not_summed", "dbh: different: the sum over time missing in dbh: bh is shared by the 3 steps"),
    ("gru", "clipped", "dWx: different: clipped to [-1, 1]: np.clip(dparam, -1, 1) in the backward pass (as "
                       "min-char-rnn does against exploding gradients) cuts every entry beyond ±1"),
], ids=lambda v: v if isinstance(v, str) and v.isidentifier() else "")
def test_each_usual_gru_mistake_is_named_once_at_its_source(tmp_path, op, function, expected):
    path = tmp_path / "student.py"
    path.write_text(SOURCE)
    lines, code = check_op(op, f"{path}:{function}")
    text = "\n".join(lines)
    assert code == 1 and f"  {expected}" in text, text
    mistakes = [line for line in lines if ": different: " in line and "follows from" not in line]
    assert len(mistakes) == 1, text


def test_a_clip_is_named_only_where_it_explains_the_difference(tmp_path):
    path = tmp_path / "student.py"
    path.write_text(SOURCE)
    lines, code = check_op("gru", f"{path}:clip_not_reached")  # a clip that cuts nothing changes nothing
    assert code == 0 and all(line.endswith(": correct") for line in lines[1:]), lines
    lines, code = check_op("gru", f"{path}:clipped_and_off")
    text = "\n".join(lines)
    assert code == 1 and "  dWx: different: no usual mistake of this op" in text, text  # not "clipped"
    assert "  dWh: different: clipped to [-1, 1]" in text, text  # dWh's own difference is the clip alone


def test_a_gru_dict_is_read_by_its_bias_names(tmp_path):
    path = tmp_path / "student.py"
    path.write_text(SOURCE + '''
def named(dnext_h, x, prev_h, Wx, Wh, bx, bh):
    dx, dprev_h, dWx, dWh, dbx, dbh = step()(dnext_h, x, prev_h, Wx, Wh, bx, bh)
    return {"dx": dx, "dh_prev": dprev_h, "dW_ih": dWx, "dW_hh": dWh, "db_ih": dbx, "db_hh": dbh}
''')
    lines, code = check_op("gru_step", f"{path}:named")
    assert code == 0 and lines[1:] == [f"  {n}: correct" for n in recurrent_ops()["gru_step"].outputs], lines
    assert "db_hh" in RECURRENT_NAMES["dbh"] and "db_ih" in RECURRENT_NAMES["dbx"]


def test_the_cli_checks_a_gru_and_a_gru_network_is_sent_to_it(tmp_path):
    target = f"{CORPUS / 'adapters.py'}:cmu_gru_step_bias_outside"
    out = subprocess.run([sys.executable, "-m", "codegen.cli", "check-code", "--op", "gru_step", target],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 1 and "  dx: different: b_hn read outside r ⊙ (W_hn prev_h + b_hn)" in out.stdout, out
    spec = tmp_path / "gru.toml"
    spec.write_text('[network]\ninputs = { length = 3, features = 2 }\n'
                    'layers = [ { type = "gru", hidden_size = 2, return_sequences = false }, { units = 2 } ]\nloss = "mse"\n')
    whole = subprocess.run([sys.executable, "-m", "codegen.cli", "check-code", str(spec), target],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert whole.returncode == 2 and "check-code --op gru FILE.py:FUNCTION" in whole.stderr and not whole.stdout, whole
    for row in ("gru_step    f(dnext_h, x, prev_h, Wx, Wh, bx, bh) -> (dx, dprev_h, dWx, dWh, dbx, dbh)",
                "gru         f(dh, x, h0, Wx, Wh, bx, bh) -> (dx, dh0, dWx, dWh, dbx, dbh)",
                "np.clip(dWx, -c, c) for c = 1, 5 or 10, is named so", "dbx, db_ih / dbh, db_hh"):
        assert row in OP_CONTRACT
