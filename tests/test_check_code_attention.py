"""check-code --op attention: the reference (the attention op's own backward) against PyTorch, the CMU 11-785
corpus (tests/corpus/code, sources in SOURCES.md) and each usual attention mistake named at its source."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from derive.check.code import SEEDS, _at, _attention_point, attention_mistaken, check_op, propagated
from derive.check.options import ATTENTION_NAMES, OP_CONTRACT

CORPUS = Path(__file__).resolve().parent / "corpus" / "code"
ROOT = Path(__file__).resolve().parent.parent


def _torch_gradients(point, causal):
    """dq, dk, dv of L = Σ dout ⊙ softmax(q kᵀ/√d + mask) v by PyTorch (float64)."""
    t = {a: torch.tensor(point[a], requires_grad=True) for a in "qkv"}
    mask = torch.tensor(point["mask"]) if causal else None
    out = torch.nn.functional.scaled_dot_product_attention(t["q"], t["k"], t["v"],
                                                           attn_mask=None if mask is None else ~mask)
    (out * torch.tensor(point["dout"])).sum().backward()
    return {f"d{a}": t[a].grad.numpy() for a in "qkv"}


@pytest.mark.parametrize("causal", [True, False])
def test_the_reference_is_pytorchs_gradient(causal):
    for seed in SEEDS:
        point = _attention_point(seed)
        ours = _at(seed, causal, "grads")  # attention_reference at the seed's point, as check_op has it
        for name, value in _torch_gradients(point, causal).items():
            np.testing.assert_allclose(ours[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
    A = _at(seed, causal, "weights")
    assert np.allclose(A.sum(axis=-1), 1) and np.all(A[..., point["mask"]] == 0) == causal


def test_each_mistake_changes_what_it_says_and_nothing_else():
    point = _attention_point(SEEDS[0])
    right, A = _at(SEEDS[0], True, "grads"), _at(SEEDS[0], True, "weights")

    def weights():
        return A
    assert all(np.array_equal(attention_mistaken(point, right, weights, {})[n], right[n]) for n in right)
    no_scale = attention_mistaken(point, right, weights, {"scale dq": True})
    np.testing.assert_allclose(no_scale["dq"], 2 * right["dq"])  # d_k = 4
    assert np.array_equal(no_scale["dk"], right["dk"])
    for mistake in ("elementwise", "transpose"):
        wrong = attention_mistaken(point, right, weights, {mistake: True})
        assert np.array_equal(wrong["dv"], right["dv"]) and not np.allclose(wrong["dk"], right["dk"]), mistake
        assert np.allclose(wrong["dq"], right["dq"]) == (mistake == "transpose"), mistake


RIGHT = None  # every output correct
# (adapters.py's function, the lines the report must have; RIGHT: exit 0 and only "correct")
CASES = [
    ("cmu_attention_backward", RIGHT),
    ("cmu_attention_no_scale_backward",
     ["dq: different: the 1/√d_k of the scores S = q kᵀ/√d_k left out of dq", "yours is 2 times it",
      "dk: different: the 1/√d_k of the scores S = q kᵀ/√d_k left out of dk", "dv: correct"]),
    ("cmu_attention_dk_transposed_backward",
     ["dq: correct", "dk: different: dS not transposed in dk: S = q kᵀ, so dk = dSᵀ q / √d_k", "dv: correct"]),
    ("cmu_softmax_diagonal_backward",
     ["dq: different: softmax treated as element-wise: dS = A ⊙ (1 − A) ⊙ dA is the Jacobian's diagonal alone",
      "dk: different: follows from dq's mistake (softmax read as element-wise)", "dv: correct"]),
    ("cmu_attention_no_mask_backward",
     ["dq: different: the mask not applied in the backward pass", "dk: different: follows from dq's mistake "
      "(the mask missing)", "dv: different: follows from dq's mistake (the mask missing)"]),
]


@pytest.mark.parametrize("function, expected", CASES, ids=[c[0] for c in CASES])
def test_an_attention_corpus_case_gets_its_verdict_and_its_mistake(function, expected):
    lines, code = check_op("attention", f"{CORPUS / 'adapters.py'}:{function}")
    text = "\n".join(lines)
    if expected is RIGHT:
        assert code == 0 and lines[1:] == ["  dq: correct", "  dk: correct", "  dv: correct"], text
        return
    assert code == 1, text
    for line in expected:
        assert line in text, text
    named = [line for line in lines if ": different: " in line and "follows from" not in line]
    assert len(named) == (2 if "no_scale" in function else 1), text  # the scale is left out of each of dq and dk


def test_the_attention_corpus_is_in_sources_with_its_commit():
    sources = (CORPUS / "SOURCES.md").read_text()
    for name in ("cmu_attention.py", "cmu_attention_no_scale.py", "cmu_attention_dk_transposed.py",
                 "cmu_softmax_diagonal.py", "cmu_attention_no_mask.py"):
        assert f"| {name} |" in sources and (CORPUS / name).is_file(), name
    assert "smit25/Transformer-using-numpy" in sources and "554dd0fcc18fa2c2f36cc9a1759fb65d737f5062" in sources


# A plain function in the layout of NumPy write-ups (recompute A; mask == 0 means masked there, so it is
# adapted as mask == False), returning a dict by the names people write.
PLAIN = '''
import numpy as np
def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
def named(dout, q, k, v, mask):
    d_k = q.shape[-1]
    A = softmax(np.where(mask, -1e9, q @ np.swapaxes(k, -2, -1) / np.sqrt(d_k)))
    dA = dout @ np.swapaxes(v, -2, -1)
    dS = A * (dA - (dA * A).sum(axis=-1, keepdims=True))
    return {"grad_Q": dS @ k / np.sqrt(d_k), "grad_K": np.swapaxes(dS, -2, -1) @ q / np.sqrt(d_k),
            "grad_V": np.swapaxes(A, -2, -1) @ dout}
def heads_merged(dout, q, k, v, mask):
    out = named(dout, q, k, v, mask)
    n, h, t, d = q.shape
    return out["grad_Q"].transpose(0, 2, 1, 3).reshape(n, t, h * d), out["grad_K"], out["grad_V"]
'''


def test_a_dict_is_read_by_the_names_people_write_and_a_wrong_layout_says_its_shape(tmp_path):
    path = tmp_path / "student.py"
    path.write_text(PLAIN)
    lines, code = check_op("attention", f"{path}:named")
    assert code == 0 and lines[1:] == ["  dq: correct", "  dk: correct", "  dv: correct"], lines
    lines, code = check_op("attention", f"{path}:heads_merged")
    assert code == 1 and "  dq: different: wrong shape: yours is (3, 3, 8), dq is (3, 2, 3, 4)" in lines, lines
    for names in ATTENTION_NAMES.values():
        assert len(set(names)) == len(names)
    assert "d_Q" in ATTENTION_NAMES["dq"] and "dK" in ATTENTION_NAMES["dk"] and "grad_V" in ATTENTION_NAMES["dv"]


def test_the_cli_documents_attention():
    assert "attention   f(dout, q, k, v, mask) -> (dq, dk, dv)" in OP_CONTRACT
    for name in ("W_Q", "d_k", "attention_scores", "dQ, d_Q, grad_Q"):
        assert name in OP_CONTRACT, name
    help_text = subprocess.run([sys.executable, "-m", "codegen.cli", "check-code", "--help"],
                               capture_output=True, text=True, cwd=ROOT, timeout=60).stdout
    assert "lstm_step, lstm, gru_step, gru, attention, mha (the signatures are below)" in " ".join(help_text.split())
    assert "mha         f(dout, x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads, mask)" in OP_CONTRACT


# -- the whole layer (check-code --op mha): torch's parameters, heads split and merged -------------------
def test_the_layers_reference_is_torchs_multihead_attention_and_its_heads_path_agrees():
    for seed in SEEDS:
        p = _attention_point(seed, layer=True)
        e = p["x"].shape[2]
        mha = torch.nn.MultiheadAttention(e, int(p["num_heads"]), batch_first=True, dtype=torch.float64)
        with torch.no_grad():
            for name in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
                mha.get_parameter(name).copy_(torch.tensor(p[name.replace(".", "_")]))
        x = torch.tensor(p["x"], requires_grad=True)
        out, _ = mha(x, x, x, need_weights=False, attn_mask=torch.tensor(p["mask"]))
        (out * torch.tensor(p["dout"])).sum().backward()
        ours = _at(seed, True, "layer")  # layer_reference at the seed's point
        torch_grads = {"dx": x.grad, "din_proj_weight": mha.in_proj_weight.grad, "din_proj_bias": mha.in_proj_bias.grad,
                       "dout_proj_weight": mha.out_proj.weight.grad, "dout_proj_bias": mha.out_proj.bias.grad}
        for name, value in torch_grads.items():
            np.testing.assert_allclose(ours[name], value.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
        # the mistakes' path (the per-head op, then merge and projections) gives the reference when nothing is wrong
        for name, value in propagated(p, ours, _at(seed, True, "heads"), {}).items():
            np.testing.assert_allclose(value, ours[name], rtol=1e-10, atol=1e-12, err_msg=name)


LAYER = '''
import numpy as np
def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
def layer(dout, x, W, b, Wo, bo, num_heads, mask, merge_back=True, scale_dq=True):
    n, t, e = x.shape
    h = int(num_heads)
    d = e // h
    split = lambda a: a.reshape(n, t, h, d).transpose(0, 2, 1, 3)
    merge = (lambda a: a.transpose(0, 2, 1, 3).reshape(n, t, e)) if merge_back else (lambda a: a.reshape(n, t, e))
    q, k, v = (split(x @ W[i * e:(i + 1) * e].T + b[i * e:(i + 1) * e]) for i in range(3))
    A = softmax(np.where(mask, -np.inf, q @ np.swapaxes(k, -1, -2) / np.sqrt(d)))
    o = (A @ v).transpose(0, 2, 1, 3).reshape(n, t, e)
    do = split(dout @ Wo)
    dA = do @ np.swapaxes(v, -1, -2)
    dS = A * (dA - (dA * A).sum(-1, keepdims=True))
    dq = dS @ k / (np.sqrt(d) if scale_dq else 1)
    dP = np.concatenate([merge(dq), merge(np.swapaxes(dS, -1, -2) @ q / np.sqrt(d)),
                         merge(np.swapaxes(A, -1, -2) @ do)], axis=2)
    return {"dX": dP @ W, "dW_in": np.einsum("nti,ntj->ij", dP, x), "db_in": dP.sum(axis=(0, 1)),
            "dW_out": np.einsum("nti,ntj->ij", dout, o), "db_out": dout.sum(axis=(0, 1))}
def merged_wrong(*a):
    return layer(*a, merge_back=False)
def dq_unscaled(*a):
    return layer(*a, scale_dq=False)
'''


def test_the_layers_mistakes_are_named_at_dx_and_the_projections_follow(tmp_path):
    path = tmp_path / "student.py"
    path.write_text(LAYER)
    outputs = ("dx", "din_proj_weight", "din_proj_bias", "dout_proj_weight", "dout_proj_bias")
    lines, code = check_op("mha", f"{path}:layer")
    assert code == 0 and lines[1:] == [f"  {n}: correct" for n in outputs], lines
    for function, mistake, short in (("merged_wrong", "the heads not merged back as they were split", "the heads merged wrongly"),
                                     ("dq_unscaled", "the 1/√d_k of the scores S = q kᵀ/√d_k left out of dq",
                                      "1/√d_k missing in dq")):
        lines, code = check_op("mha", f"{path}:{function}")
        text = "\n".join(lines)
        assert code == 1 and f"  dx: different: {mistake}" in text, text
        for name in ("din_proj_weight", "din_proj_bias"):
            assert f"  {name}: different: follows from dx's mistake ({short})" in text, text
        assert "  dout_proj_weight: correct" in lines and "  dout_proj_bias: correct" in lines, text
