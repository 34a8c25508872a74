"""check-code --op conv2d, maxpool2d, avgpool2d, batchnorm, spatial_batchnorm: cs231n-style backward
functions (tests/corpus/cnn/) are accepted when right and each usual mistake is named (issue 12)."""
from pathlib import Path

import pytest

from codegen.cli import main
from derive.check.code import cnn_ops
from derive.check.options import OP_CONTRACT

CORPUS = Path(__file__).parent / "corpus" / "cnn"


def run(capsys, op, target):
    code = main(["check-code", "--op", op, str(CORPUS / target)])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("op, target", [
    ("conv2d", "conv.py:conv"),
    ("maxpool2d", "pool.py:maxpool"),
    ("avgpool2d", "pool.py:avgpool"),
    ("batchnorm", "batchnorm.py:batchnorm"),          # the staged graph: x̂, the variance, the mean
    ("batchnorm", "batchnorm.py:batchnorm_alt"),      # the compact form
    ("spatial_batchnorm", "batchnorm.py:spatial_batchnorm"),
])
def test_the_textbook_backward_passes(capsys, op, target):
    code, out = run(capsys, op, target)
    outputs = [out for out, _, _ in cnn_ops()[op].outputs]
    assert code == 0 and "different" not in out, out
    assert [line.split(":")[0].strip() for line in out.splitlines()[1:]] == outputs, out
    assert out.count(": correct") == len(outputs), out


@pytest.mark.parametrize("op, target, lines", [
    ("conv2d", "conv.py:conv_flipped_twice", ["dx: different: kernel not flipped: ", "dw: correct", "db: correct"]),
    ("conv2d", "conv.py:conv_no_stride_in_dx", ["dx: different: stride ignored in dx: output (i, j) reads the input "
                                                "at (i·2, j·2)", "dw: correct"]),
    ("conv2d", "conv.py:conv_no_stride", ["dx: different: stride ignored in dx", "dw: different: stride ignored in dw",
                                          "db: correct"]),
    ("conv2d", "conv.py:conv_padded_dx", ["dx: different: padding not cropped: yours is (3, 2, 7, 7), the gradient of "
                                          "the padded input; the padding is not the input, so dx = dx_pad[:, :, 1:-1, 1:-1]",
                                          "dw: correct"]),
    ("maxpool2d", "pool.py:maxpool_spread", ["dx: different: max pool's gradient spread to the whole window"]),
    ("maxpool2d", "pool.py:maxpool_averaged", ["dx: different: max pool's gradient averaged over the window"]),
    ("avgpool2d", "pool.py:avgpool_no_fraction", ["dx: different: average pooling's 1/4 left out"]),
    ("avgpool2d", "pool.py:avgpool_routed", ["dx: different: average pooling's gradient routed to the maximum"]),
    ("batchnorm", "batchnorm.py:batchnorm_no_mean_path", ["dx: different: batch norm's path through the mean left out",
                                                          "dgamma: correct", "dbeta: correct"]),
    ("batchnorm", "batchnorm.py:batchnorm_no_variance_path", ["dx: different: batch norm's path through the variance "
                                                              "left out"]),
    ("batchnorm", "batchnorm.py:batchnorm_constant_statistics", ["dx: different: batch norm's paths through the mean "
                                                                 "and the variance left out"]),
    ("batchnorm", "batchnorm.py:batchnorm_sums", ["dx: different: batch norm's 1/N left out of the mean and variance "
                                                  "paths"]),
    ("batchnorm", "batchnorm.py:batchnorm_one_over_n_everywhere", ["dx: different: batch norm's 1/N on every term"]),
    ("spatial_batchnorm", "batchnorm.py:spatial_batchnorm_no_variance_path",
     ["dx: different: batch norm's path through the variance left out", "dgamma: correct"]),
])
def test_each_usual_mistake_is_named(capsys, op, target, lines):
    code, out = run(capsys, op, target)
    assert code == 1, out
    for line in lines:
        assert f"\n  {line}" in out, out
    assert out.count("different") == sum("different" in line for line in lines), out  # named once, where it is


def test_a_mistake_outside_the_usual_ones_is_said_so(capsys, tmp_path):
    path = tmp_path / "odd.py"
    path.write_text("import numpy as np\n\ndef conv(dout, x, w, b, conv_param):\n"
                    "    return np.sin(x), np.zeros_like(w), dout.sum(axis=(0, 2, 3))\n")
    code = main(["check-code", "--op", "conv2d", f"{path}:conv"])
    out = capsys.readouterr().out
    assert code == 1 and "dx: different: no usual mistake of this op" in out and "dw: different: zero: yours is 0" in out, out


def test_every_cnn_op_is_documented():
    for name in cnn_ops():
        assert f"\n    {name} " in OP_CONTRACT, name


NETWORK = ("1x6x6 -> conv2d(out_channels=2, kernel_size=3, padding=1) -> batchnorm -> maxpool2d(kernel_size=2) -> "
           "conv2d(out_channels=2, kernel_size=3, stride=2, padding=1, activation=relu) -> flatten -> 3 softmax ; "
           "cross_entropy")
ORDER = ["W6", "b6", "W4", "b4", "gamma2", "beta2", "W1", "b1"]


def network(capsys, function):
    code = main(["check-code", NETWORK, f"{CORPUS / 'network.py'}:{function}"])
    out = capsys.readouterr().out
    return code, {line.split(":")[0].strip(): line.split(": ", 1)[1] for line in out.splitlines()[1:]
                  if line.startswith("  dL/d")}, out


def test_a_whole_cnn_backward_pass_is_checked(capsys):
    code, verdicts, out = network(capsys, "backward")
    assert code == 0 and list(verdicts) == [f"dL/d{n}" for n in ORDER], out
    assert set(verdicts.values()) == {"correct"}, out


@pytest.mark.parametrize("function, named, mistake", [
    ("kernel_not_flipped", "gamma2", "kernel not flipped: "),
    ("pool_spread", "gamma2", "max pool's gradient spread to the whole window"),
    ("no_variance_path", "W1", "batch norm's path through the variance left out"),
])
def test_a_cnns_mistake_is_named_once_where_it_shows(capsys, function, named, mistake):
    code, verdicts, out = network(capsys, function)
    assert code == 1, out
    first = ORDER.index(named)
    assert all(verdicts[f"dL/d{n}"] == "correct" for n in ORDER[:first]), out  # the layers above it are right
    assert verdicts[f"dL/d{named}"].startswith(f"different: {mistake}"), out
    below = [verdicts[f"dL/d{n}"] for n in ORDER[first + 1:] if verdicts[f"dL/d{n}"] != "correct"]
    assert all(v.startswith(f"different: follows from dL/d{named}'s mistake") for v in below), out
    assert verdicts["dL/db1"] == "correct", out  # batch norm takes the bias's gradient away whatever comes from above
