"""The backward-code corpus (tests/corpus/code, sources in SOURCES.md): each case's verdict and the mistake named."""
import functools
from pathlib import Path

import pytest

from derive import derive
from derive.check.code import check_code, check_op

CORPUS = Path(__file__).resolve().parent / "corpus" / "code"
PLANAR = "2 -> 4 tanh -> 1 sigmoid ; bce"                 # deeplearning.ai course 1, week 3
NIELSEN = "3 -> 4 sigmoid -> 4 sigmoid -> 2 sigmoid ; sse_half"
CS231N = "4 -> 5 relu -> 3 softmax ; cross_entropy ; l2=0.1"
RIGHT = None  # every gradient correct

# (spec, or "--op NAME"), FILE:FUNCTION, the lines the report must have (RIGHT: exit 0 and only "correct")
CASES = [
    (PLANAR, "adapters.py:ng_planar_backward", RIGHT),
    (PLANAR, "adapters.py:ng_planar_sigmoid_prime_backward",
     ["dL/dW1: different: wrong activation derivative: layer 1 uses tanh, whose derivative is 1 - a², and yours "
      "is sigmoid's, a(1 - a)", "dL/db1: different: follows from dL/dW1's mistake", "dL/dW2: correct"]),
    (PLANAR, "adapters.py:ng_planar_db_axis0_backward",
     ["dL/db1: different: summed over the wrong axis: yours sums Δ1 over axis=1", "dL/dW1: correct"]),
    (NIELSEN, "adapters.py:nielsen_backprop", RIGHT),
    (NIELSEN, "adapters.py:nielsen_xrange_backprop", ["nielsen_xrange_backprop raised an exception: NameError: name 'xrange' is not defined"]),
    (NIELSEN, "adapters.py:nielsen_no_prime_backprop",
     ["dL/dW2: different: missing activation derivative: Δ2 needs ⊙ sigmoid'(Z2)",
      "dL/dW1: different: missing activation derivative: Δ1 needs ⊙ sigmoid'(Z1), besides dL/dW2's mistake",
      "dL/dW3: correct"]),
    (CS231N, "adapters.py:cs231n_two_layer", RIGHT),
    (CS231N, "adapters.py:cs231n_two_layer_no_reg_w1",
     ["dL/dW1: different: missing the L2 penalty's gradient: add 0.1·W1", "dL/dW2: correct", "dL/db1: correct"]),
    ("--op affine", "adapters.py:cs231n_affine", RIGHT),
    ("--op relu", "adapters.py:cs231n_relu", RIGHT),
    ("--op softmax", "cs231n_layers.py:softmax_loss", RIGHT),
    ("--op softmax", "xs2445_softmax.py:softmax_loss", ["dx: correct", "loss: different: yours = "]),
    ("--op affine", "adapters.py:dl_scratch_affine_layer", RIGHT),
    ("--op affine", "adapters.py:dl_scratch_affine_unsaved_layer",
     ["dx: correct", "dw: wrong type: yours has dtype object", "db: wrong type: yours has dtype object"]),
    ("--op layernorm", "adapters.py:layernorm_mlbites_backward", RIGHT),
    ("--op layernorm", "adapters.py:layernorm_constant_statistics_backward",
     ["dx: different: its backward without the paths through μ and σ", "dgamma: correct", "dbeta: correct"]),
    ("--op tanh", "adapters.py:tanh_layer_backward", RIGHT),
    ("--op tanh", "adapters.py:tanh_back_of_delta_backward",
     ["dx: different: tanh's derivative taken at the upstream gradient: dx = dout ⊙ tanh'(x), not tanh'(dout)"]),
    ("--op sigmoid", "ng_activations.py:sigmoid_backward", RIGHT),
    ("--op relu", "ng_activations.py:ReLU_backward", RIGHT),
    ("--op sigmoid", "ng_sigmoid_on_z.py:sigmoid_backward",
     ["dx: different: wrong activation derivative: a(1 - a) is sigmoid's derivative in its output a = sigmoid(z), "
      "and yours applies it to z itself"]),
    ("--op sigmoid", "ng_sigmoid_tuple.py:sigmoid_backward",
     ["sigmoid_backward raised an exception: TypeError: unsupported operand type(s) for -: 'int' and 'tuple'"]),
]


@functools.lru_cache(maxsize=None)
def _derived(spec):
    return derive(spec)


@pytest.mark.parametrize("how, target, expected", CASES, ids=[c[1].split(":")[1] for c in CASES])
def test_a_corpus_case_gets_its_verdict_and_its_mistake(how, target, expected):
    where = f"{CORPUS / target.split(':')[0]}:{target.split(':')[1]}"
    if how.startswith("--op "):
        lines, code = check_op(how.split()[1], where)
    else:
        lines, code = check_code(_derived(how), where)
    text = "\n".join(lines)
    if expected is RIGHT:
        verdicts = [line for line in lines[1:] if not line.startswith("    ")]
        assert code == 0 and verdicts and all(line.endswith(": correct") for line in verdicts), text
        return
    assert code == 1, text
    for line in expected:
        assert f"  {line}" in text, text


def test_the_corpus_has_fifteen_functions_and_every_file_is_used():
    assert len(CASES) >= 15
    used = {target.split(":")[0] for _, target, _ in CASES}
    imported = (CORPUS / "adapters.py").read_text()
    for path in CORPUS.glob("*.py"):
        assert path.name in used or f"import {path.stem}\n" in imported, path.name
        assert path.name == "adapters.py" or path.name in (CORPUS / "SOURCES.md").read_text(), path.name
