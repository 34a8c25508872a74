"""The small things people expect: --version, verify, generate's inputs, a bare network dict,
case-insensitive names, and a demo that finishes on a big net; check --names and check-code --help."""
import dataclasses
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import codegen
import derive
from codegen.cli import main
from derive.chain import Derivation
from derive.optim import validate
from derive.spec import build, from_dict

ROOT = Path(__file__).resolve().parent.parent
NETWORK = {"inputs": 2, "layers": [{"units": 3, "activation": "relu"}, 1], "loss": "mse"}


def run(*args, timeout=120):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def module_from(source: str, path: Path):
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- chainrule --version ---------------------------------------------------------------------------

def test_version_is_the_package_metadata_and_imports_no_sympy():
    code = ("import sys\nfrom codegen.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit as stop:\n"
            "    print('exit', stop.code)\nprint('sympy' in sys.modules)")
    result = run("-c", code)
    assert result.stdout.splitlines() == [f"chainrule {importlib.metadata.version('chainrule')}", "exit 0", "False"]


# -- chainrule verify ------------------------------------------------------------------------------

def test_verify_prints_a_line_per_step_and_the_time(capsys):
    assert main(["verify", "2 -> 3 tanh -> 1 ; mse"]) == 0
    lines = capsys.readouterr().out.splitlines()
    steps = [line for line in lines if line.startswith("(")]
    assert len(steps) == 12 and all(": proved (numeric" in line for line in steps)
    assert "(10) dL/dW1 [sample]: proved" in lines[4]
    assert lines[-1].startswith("all 12 steps proved in ") and lines[-1].endswith(" s")


def test_verify_exact_and_the_note_on_a_wide_network(capsys):
    assert main(["verify", "5 -> 4 sigmoid -> 2 softmax ; cross_entropy", "--exact"]) == 0
    out = capsys.readouterr().out
    assert out.count("proved (exact)") == 12
    assert "(proved at the widths 3 -> 3 -> 2, the same network made narrow" in out


def test_verify_exits_1_and_names_the_wrong_step(capsys, slipped):
    slipped("dL_db1")
    assert main(["verify", "2 -> 2 tanh -> 1 ; mse"]) == 1
    out = capsys.readouterr().out
    assert "(11) dL/db1 [sample]: WRONG (numeric" in out and "(22) dL/db1 [batch]: WRONG (numeric" in out
    assert out.count(": WRONG") == 2 and out.splitlines()[-1].startswith("2 of 12 steps WRONG in ")


def test_verify_of_a_bad_spec_is_one_line_and_exit_2(capsys):
    assert main(["verify", "2 -> 1 ; nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chainrule: error: unknown loss 'nonsense'") and err.count("\n") == 1


# -- codegen.generate takes what derive.derive takes ----------------------------------------------

def test_generate_takes_a_string_a_path_a_dict_a_network_and_a_derivation():
    inline = "2 -> 3 relu -> 1 ; mse"
    assert codegen.generate(inline) == codegen.generate(derive.derive(inline)) \
        == codegen.generate(build(inline)) == codegen.generate(Derivation(build(inline)))
    path = ROOT / "generated" / "specs" / "simple_nn.toml"
    assert codegen.generate(path) == codegen.generate(str(path)) == codegen.generate(derive.derive(path))
    assert codegen.generate(NETWORK) == codegen.generate({"network": NETWORK}) != codegen.generate(inline)
    with pytest.raises(derive.ChainruleError, match="no spec file"):
        codegen.generate("missing.toml")


# -- a dict of the network's keys alone -------------------------------------------------------------

def test_a_dict_of_the_network_keys_is_read_as_the_network_table():
    assert from_dict(NETWORK) == from_dict({"network": NETWORK})
    named = from_dict({"name": "tiny", "training": {"epochs": 3}, **NETWORK, "l2": 0.5})
    assert (named.name, named.l2, named.tables) == ("tiny", 0.5, {"training": {"epochs": 3}})
    assert derive.derive(NETWORK).network == build({"network": NETWORK})
    with pytest.raises(derive.ChainruleError, match="the network has no loss"):
        from_dict({"inputs": 2, "layers": [1]})
    with pytest.raises(derive.ChainruleError, match="no \\[network\\] table"):
        from_dict({"name": "x"})


# -- case-insensitive names ------------------------------------------------------------------------

def test_activation_loss_optimizer_schedule_and_init_names_are_case_insensitive(capsys, tmp_path):
    assert dataclasses.replace(build("2 -> 3 Relu -> 2 SoftMax ; Cross_Entropy"), source="") == \
        dataclasses.replace(build("2 -> 3 relu -> 2 softmax ; cross_entropy"), source="")
    assert build({**NETWORK, "layers": [{"units": 3, "activation": {"type": "LEAKY_RELU", "slope": 0.2}}, 1],
                  "loss": {"type": "Huber", "delta": 0.5}}) == \
        build({**NETWORK, "layers": [{"units": 3, "activation": {"type": "leaky_relu", "slope": 0.2}}, 1],
               "loss": {"type": "huber", "delta": 0.5}})
    settings = validate({"optimizer": {"type": "ADAM", "lr": 0.002}, "schedule": {"type": "Cosine", "T_max": 4},
                         "training": {"init": "He_Normal"}})
    assert (settings["optimizer"]["type"], settings["optimizer"]["lr"]) == ("adam", 0.002)
    assert settings["schedule"]["type"] == "cosine" and settings["training"]["init"] == "he_normal"
    with pytest.raises(derive.ChainruleError, match="unknown activation at layer 1 'rellu'"):
        build("2 -> 3 Rellu -> 1 ; mse")
    # --optimizer ADAM over the spec's adam keeps the spec's adam settings (lr = 0.0123)
    spec = tmp_path / "net.toml"
    spec.write_text('[network]\ninputs = 2\nlayers = [1]\nloss = "mse"\n[optimizer]\ntype = "adam"\nlr = 0.0123\n')
    assert main(["generate", str(spec), "--optimizer", "ADAM", "--init", "XAVIER_NORMAL"]) == 0
    out = capsys.readouterr().out
    assert "def __init__(self, params, lr=0.0123, betas=(0.9, 0.999)" in out and '1: ("xavier_normal", 1.0)' in out


# -- the demo of a big network finishes in seconds ----------------------------------------------------

def test_the_demo_of_a_784_512_512_10_network_finishes(tmp_path):
    # 669 706 parameters: entry by entry, its gradient check alone ran for hours
    path = tmp_path / "big.py"
    assert main(["generate", "784 -> 512 relu -> 512 relu -> 10 softmax ; cross_entropy", "--epochs", "1",
                 "-o", str(path)]) == 0
    # one BLAS thread: on a busy shared machine threads fighting for the cores, not the demo's own
    # work, would decide the time (ten times longer here)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env=env)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-500:]
    first = result.stdout.splitlines()[0]
    assert first.startswith("gradient check, largest relative error: ") and float(first.split()[-1]) < 1e-6
    assert seconds < 60, f"the demo took {seconds:.0f} s"  # checking every weight took hours


def test_the_sampled_gradient_check_still_catches_a_wrong_gradient(tmp_path):
    m = module_from(codegen.generate("30 -> 12 tanh -> 3 ; mse"), tmp_path / "mid.py")  # W1: 360 entries
    X, T = m._demo_data(6)
    params = m.init_params(seed=0)
    sampled = m.gradient_check(params, X, T)
    assert sampled < 1e-7 and abs(sampled - m.gradient_check(params, X, T)) == 0  # the same entries each call
    assert m.gradient_check(params, X, T, max_entries=None) < 1e-7
    real = m._loss_and_grads

    def off_by_one_percent(*args):
        loss, grads = real(*args)
        return loss, {**grads, "W1": grads["W1"] * 1.01}
    m._loss_and_grads = off_by_one_percent
    assert m.gradient_check(params, X, T) > 1e-3
    with pytest.raises(ValueError, match="max_entries must be an integer >= 1"):
        m.gradient_check(params, X, T, max_entries=0)
    assert np.isfinite(m.gradient_check(params, X, T, max_entries=1))


# -- check --names and check-code --help ---------------------------------------------------------

def test_check_names_lists_the_names_the_checker_reads(capsys):
    assert main(["check", "--names", "--convention", "sample", "2 -> 3 tanh -> 1 ; mse"]) == 0
    lines = capsys.readouterr().out.splitlines()
    d = derive.derive("2 -> 3 tanh -> 1 ; mse")
    assert lines == ["chainrule check reads these names for this network (sample convention):"] + \
        [f"  {name}" for name in derive.check.accepted_names(d)]
    assert main(["check", "--names", "2 -> 3 tanh -> 1 ; mse"]) == 0  # auto, the default: those and the others'
    auto = capsys.readouterr().out.splitlines()
    assert auto[0] == "chainrule check reads these names for this network (auto convention):"
    assert auto[1:-1] == lines[1:] and "goodfellow" in auto[-1]
    assert "  \\delta_1 (delta1)" in lines and "  tanh'(z_1) (or f'(z_1))" in lines
    assert main(["check", "--names", "--convention", "rows", "2 -> 3 tanh -> 1 ; mse"]) == 0
    assert "  \\hat Y (Yhat)" in capsys.readouterr().out.splitlines()


def test_check_code_help_gives_the_backward_signature_and_the_cache_keys():
    result = run("-X", "importtime", "-m", "codegen.cli", "check-code", "--help")
    out = result.stdout
    assert result.returncode == 0 and "sympy" not in result.stderr  # --help stays quick
    assert "    def backward(params, cache, X, T) -> dict:\n" in out
    assert 'cache   {"X": (N, in), "Z1": (N, n1), "A1": (N, n1), ..., "ZL": (N, out), "Yhat": (N, out)}' in out
    assert 'returns {"W1": dL/dW1 (out, in), "b1": dL/db1 (out,), ...}' in out
    assert "may also be spelt dW1, dL_dW1 or grad_W1" in out and "``" not in out
    assert "contained child process" not in out  # the contract, not the whole docstring
