"""chainrule check-code contains hostile backward passes: the tree, its limits, its output and its result."""
import os
import resource
import sys
import textwrap
import time

import pytest

from codegen.cli import main

SPEC = "2 -> 2 relu -> 1 ; mse"
LINUX = pytest.mark.skipif(sys.platform != "linux", reason="the subreaper and /proc are Linux's")

# a right backward pass for SPEC, which each hostile file calls after its mischief
RIGHT = """
import os, signal, sys, time
import numpy as np

def right(params, cache, X, T):
    d2 = 2 / X.shape[0] * (cache["Yhat"] - T)
    d1 = (d2 @ params["W2"]) * (cache["Z1"] > 0)
    return {"W2": d2.T @ cache["A1"], "b2": d2.sum(axis=0), "W1": d1.T @ X, "b1": d1.sum(axis=0)}

def wait_for(path):
    while not os.path.exists(path) or not open(path).read().endswith("\\n"):
        time.sleep(0.01)
"""


def write(tmp_path, body, **paths):
    path = tmp_path / "student.py"
    names = {key: repr(str(tmp_path / value)) for key, value in paths.items()}
    path.write_text(RIGHT + textwrap.dedent(body).format(**names))
    return f"{path}:backward"


def run(capsys, target, *flags):
    start = time.monotonic()
    code = main(["check-code", SPEC, target, *flags])
    out = capsys.readouterr()
    return code, out.out, out.err, time.monotonic() - start


def dead(pid_file) -> bool:
    for pid in pid_file.read_text().split():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            continue
        return False
    return True


@LINUX
def test_a_grandchild_that_calls_setsid_and_holds_the_pipes_ends_at_the_timeout(tmp_path, capsys):
    target = write(tmp_path, """
        def backward(params, cache, X, T):
            if os.fork() == 0:
                os.setsid()
                open({pids}, "a").write(f"{{os.getpid()}}\\n")
                while True:
                    print("still here", flush=True)
                    time.sleep(0.1)
            wait_for({pids})
            open({pids}, "a").write(f"{{os.getpid()}}\\n")
            time.sleep(600)
    """, pids="pids")
    code, out, err, seconds = run(capsys, target, "--timeout", "2")
    assert code == 1 and "it did not finish: backward did not finish within 2 s (--timeout)" in out
    assert seconds < 6, seconds
    assert len((tmp_path / "pids").read_text().split()) == 2 and dead(tmp_path / "pids")
    assert "    | still here" in out and err == ""


@LINUX
def test_a_detached_daemon_is_killed_when_the_check_ends(tmp_path, capsys):
    target = write(tmp_path, """
        def backward(params, cache, X, T):
            if not os.path.exists({pids}):
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        open({pids}, "w").write(f"{{os.getpid()}}\\n")
                        time.sleep(600)
                    os._exit(0)
                wait_for({pids})
            return right(params, cache, X, T)
    """, pids="pids")
    code, out, _, seconds = run(capsys, target)
    assert code == 0 and out.count(": correct") == 4, out
    assert seconds < 10 and dead(tmp_path / "pids")


@LINUX
def test_a_memory_hog_is_stopped_by_the_memory_limit(tmp_path, capsys):
    target = write(tmp_path, """
        def backward(params, cache, X, T):
            hog = np.ones(4 * 2**30 // 8)        # 4 GB
            return right(params, cache, X, T)
    """)
    code, out, _, _ = run(capsys, target)
    assert code == 1 and "  stopped: it ran out of memory: more than 2048 MiB (--memory)" in out
    code, out, _, _ = run(capsys, target, "--memory", "512")
    assert code == 1 and "more than 512 MiB (--memory)" in out


def test_a_cpu_spin_is_stopped_by_the_cpu_limit(tmp_path, capsys):
    target = write(tmp_path, """
        def backward(params, cache, X, T):
            while True:
                pass
    """)
    code, out, _, seconds = run(capsys, target, "--cpu", "1", "--timeout", "30")
    assert code == 1 and "  stopped: it used more than 1 s of CPU time (--cpu)" in out
    assert seconds < 10, seconds


def test_100_mb_of_prints_are_counted_not_kept(tmp_path, capsys):
    target = write(tmp_path, """
        def backward(params, cache, X, T):
            line = "x" * 999 + "\\n"
            for _ in range(50_000):
                sys.stdout.write(line)
            return right(params, cache, X, T)
    """)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, out, _, seconds = run(capsys, target)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux, bytes on macOS
    assert code == 0 and out.count(": correct") == 4
    # two calls print 50 MB each; the first 64 KiB are shown
    assert f"  printed on stdout (65536 bytes shown, {100_000_000 - 65536} more bytes discarded (--output)):" in out
    assert out.count("    | xxx") == 65536 // 1000 + 1
    assert grown < 50 * 1024 * (1024 if sys.platform == "darwin" else 1), grown


def test_prints_are_shown_escaped_and_cut_at_the_output_limit(tmp_path, capsys):
    target = write(tmp_path, """
        def backward(params, cache, X, T):
            print("Z1 is", cache["Z1"].shape, "\\x1b[31mred\\x1b[0m \\u202e")
            print("a" * 2000, file=sys.stderr)
            return right(params, cache, X, T)
    """)
    code, out, err, _ = run(capsys, target, "--output", "1")
    assert code == 0 and err == ""
    assert "  printed on stdout (60 bytes shown):\n    | Z1 is (3, 2) \\x1b[31mred\\x1b[0m \\u202e\n" in out
    assert "  printed on stderr (1024 bytes shown, 2978 more bytes discarded (--output)):\n    | " + "a" * 1024 in out
    assert "\x1b" not in out


@pytest.mark.parametrize("signals", ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1"])
def test_a_signal_to_its_parent_does_not_stop_the_check(tmp_path, capsys, signals):
    target = write(tmp_path, f"""
        def backward(params, cache, X, T):
            os.kill(os.getppid(), signal.{signals})
            time.sleep(0.05)
            return right(params, cache, X, T)
    """)
    code, out, _, _ = run(capsys, target)
    assert code == 0 and out.count(": correct") == 4, out


@LINUX
def test_a_child_that_kills_its_supervisor_is_killed_too(tmp_path, capsys):
    target = write(tmp_path, """
        def backward(params, cache, X, T):
            open({pids}, "w").write(f"{{os.getpid()}}\\n")
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(600)
    """, pids="pids")
    code, out, _, seconds = run(capsys, target, "--timeout", "30")
    assert code == 1 and "  the process crashed: its supervisor was killed by SIGKILL" in out
    assert seconds < 10 and dead(tmp_path / "pids")


@pytest.mark.parametrize("forged, verdict", [
    ('{{"stage": "done", "results": [[1]]}}', "  no usable result: the result on the private pipe could not be read"),
    ('not json at all', "  no usable result: the result on the private pipe could not be read"),
    ('{{"stage": "done", "results": [{{"W1": {{"kind": "f", "dtype": "float64", "shape": [2, 2], '
     '"values": [[1, 1], [1]]}}}}, {{}}]}}', "  dL/dW1: malformed: the result on the private pipe could not be read"),
    ('{{"stage": "done", "results": [{{"W1": {{"kind": "f", "shape": [2, 2], "values": [["a", 1], [1, 1]]}}}}, {{}}]}}',
     "  dL/dW1: malformed"),
    ('{{"stage": "done", "results": [{{"W1": {{"kind": "c", "dtype": "\\u001b[2J", "shape": [1]}}}}, {{}}]}}',
     "  dL/dW1: wrong type: yours has dtype \\x1b[2J; a gradient must be an array of real floats"),
    ('{{"stage": "call", "error": "Boom\\u001b[2J' + "x" * 100_000 + '"}}', "  backward raised an exception: Boom\\x1b[2Jxxx"),
    ('[' * 100_000, "  no usable result"),
], ids=["results-not-dicts", "not-json", "ragged-values", "string-values", "escape-in-dtype", "huge-escaped-error",
        "nested-100000-deep"])
def test_a_forged_result_gives_a_verdict_not_a_crash(tmp_path, capsys, forged, verdict):
    target = write(tmp_path, """
        def backward(params, cache, X, T):
            os.write(int(sys.argv[3]), {forged!r}.encode())
            os._exit(0)
    """.replace("{forged!r}", repr(forged)))
    code, out, err, _ = run(capsys, target)
    assert code == 1 and verdict in out, out
    assert err == "" and "\x1b" not in out and max(len(line) for line in out.splitlines()) < 400


@pytest.mark.parametrize("spoil, dtype", [("+ 1j", "complex128"), (".astype(int)", "int64"),
                                          (".astype(object)", "object"), ("> 0", "bool")])
def test_a_gradient_that_is_not_real_floating_is_the_wrong_type(tmp_path, capsys, spoil, dtype):
    target = write(tmp_path, f"""
        def backward(params, cache, X, T):
            grads = right(params, cache, X, T)
            grads["W2"] = grads["W2"] {spoil}
            return grads
    """)
    code, out, _, _ = run(capsys, target)
    assert code == 1
    assert f"  dL/dW2: wrong type: yours has dtype {dtype}; a gradient must be an array of real floats" in out
    assert "dL/dW1: correct" in out


@pytest.mark.parametrize("value", ["np.inf", "np.nan", "-np.inf"])
def test_an_infinite_or_nan_gradient_is_not_finite_with_where(tmp_path, capsys, value):
    target = write(tmp_path, f"""
        def backward(params, cache, X, T):
            grads = right(params, cache, X, T)
            grads["W1"][1, 0] = {value}
            return grads
    """)
    code, out, err, _ = run(capsys, target)
    shown = {"np.inf": "inf", "np.nan": "nan", "-np.inf": "-inf"}[value]
    assert code == 1 and f"  dL/dW1: not finite: yours has {shown} at entry [1, 0] at the first point\n" in out
    assert "times the gradient" not in out and err == ""


def test_a_huge_finite_gradient_is_no_factor_and_warns_nothing(tmp_path, capsys):
    target = write(tmp_path, """
        def backward(params, cache, X, T):
            grads = right(params, cache, X, T)
            grads["W1"] = grads["W1"] * 1e300 + 1e300
            return grads
    """)
    code, out, err, _ = run(capsys, target)
    assert code == 1 and "  dL/dW1: different: no usual mistake" in out and err == ""


@pytest.mark.parametrize("flag, value", [
    ("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "0"), ("--timeout", "-1"), ("--timeout", "1e300"),
    ("--timeout", "601"), ("--cpu", "0"), ("--cpu", "nan"), ("--memory", "100"), ("--memory", "inf"),
    ("--output", "0"), ("--output", "1e9"),
])
def test_a_limit_out_of_range_is_one_line_and_exit_2(capsys, flag, value):
    code = main(["check-code", SPEC, "nowhere.py:backward", flag, value])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert out.err.startswith(f"chainrule: error: {flag} ") and out.err.count("\n") == 1, out.err
    assert "and at most" in out.err
