"""Issue 10, items 4 and 5: every bad value is one line and exit 2; outputs never harm the user's files.

In-process runs of ``codegen.cli.main`` check the error line (one line, ``chainrule: error:``,
control characters escaped, nothing written); subprocesses check what needs a process of its own
(a closed pipe, a SIGTERM in the middle of a write).
"""
import errno
import math
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codegen import files
from codegen.cli import main
from codegen.emit import HEADER
from codegen.files import NOTE_HEADERS, first_line, write_atomic
from codegen.options import TRAINING_FLAGS
from derive.errors import ChainruleError
from derive.optim import OPTIMIZERS, SCHEDULES, TRAINING_DEFAULTS
from derive.spec import from_dict

ROOT = Path(__file__).resolve().parent.parent
SPEC = "2 -> 2 relu -> 1 ; mse"
NETWORK = '[network]\ninputs = 2\nlayers = [{ units = 2, activation = "relu" }, 1]\nloss = "mse"\n'


def fails_in_one_line(capsys, argv, fragment="", output=None):
    """Run the command line; assert exit 2, one 'chainrule: error:' line containing `fragment`, no file."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("chainrule: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "\x1b" not in err and "usage:" not in err
    assert fragment in err, err
    assert output is None or not Path(output).exists()
    return err


def toml(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def deep(n, leaf=1, key=None):
    value = leaf
    for _ in range(n):
        value = [value] if key is None else {key: value}
    return value


# -- bad values in a spec ---------------------------------------------------------------------------

def network(activation='"relu"', loss='"mse"', extra=""):
    return (f"[network]\ninputs = 2\nlayers = [{{ units = 2, activation = {activation} }}, 1]\n"
            f"loss = {loss}\n{extra}")


@pytest.mark.parametrize("text, fragment", [
    (network(loss='{ type = "huber", delta = nan }'), "delta must be a positive number of size at most 1000000, not nan"),
    (network(loss='{ type = "huber", delta = inf }'), "not inf"),
    (network(loss='{ type = "huber", delta = true }'), "not True"),
    (network('{ type = "leaky_relu", slope = nan }'), "slope must be a number of size at most 1000000"),
    (network('{ type = "leaky_relu", slope = 1e308 }'), "not 1e+308"),
    (network('{ type = "leaky_relu", slope = -99999999999999999999999999 }'), "size at most 1000000"),
    (network('{ type = "leaky_relu", slope = "0.1" }'), "not '0.1'"),
    (network('{ type = "elu", alpha = inf }'), "alpha must be a number"),
    (network('{ type = "elu", alpha = -inf }'), "alpha must be a number"),
    (network(extra="l2 = nan"), "[network] l2 must be a number in [0, 1000000], not nan"),
    (network(extra="l2 = inf"), "l2 must be a number in [0, 1000000], not inf"),
    (network(extra="l1 = 1e300"), "l1 must be a number in [0, 1000000]"),
    (network(extra="l1 = false"), "not False"),
    (network('{ type = ["relu"] }'), "layer 1: activation type must be a string, not ['relu']"),
    (network('{ type = { a = 1 } }'), "activation type must be a string, not {'a': 1}"),
    (network('["relu"]'), "activation must be a name or a table, not ['relu']"),
    (network('{ formula = ["z"] }'), "activation formula must be a string"),
    (network('{ formula = "z", name = 3 }'), "activation name must be a string"),
    (network(loss="3"), "loss must be a name or a table, not 3"),
    (network(loss='{ type = ["mse"] }'), "loss type must be a string"),
    (network(loss="{ formula = 2 }"), "loss formula must be a string, not 2"),
    (network('"relu", residual = 1'), "residual must be true or false, not 1"),
    (network('"relu", dropout = nan'), "dropout must be a probability in [0, 1), not nan"),
    ('description = ["x"]\n' + NETWORK, "description must be a string"),
    (NETWORK.replace("inputs = 2", "inputs = true"), "inputs must be a positive whole number, not True"),
    (NETWORK.replace("inputs = 2", "inputs = -" + "9" * 5000), "has a value TOML cannot read"),
    (network(deep(500).__repr__()), "nests arrays or tables too deeply"),
    (network("{ a = " * 500 + "1" + " }" * 500), "nests arrays or tables too deeply"),
    (NETWORK + "[optimizer]\ntype = \"adam\"\nlr = inf", "[optimizer] adam lr must be finite and of size at most 1000000, not inf"),
    (NETWORK + "[optimizer]\nlr = nan", "lr must be finite"),
    (NETWORK + "[optimizer]\nlr = true", "lr must be a number >= 0, not True"),
    (NETWORK + "[optimizer]\ntype = [\"sgd\"]", "unknown optimizer ['sgd']"),
    (NETWORK + "[optimizer]\ntype = \"adam\"\nbetas = [nan, 0.9]", "betas must be finite"),
    (NETWORK + "[schedule]\ntype = \"step\"\nstep_size = inf", "step_size must be a whole number >= 1, not inf"),
    (NETWORK + "[schedule]\ntype = \"step\"\nstep_size = 99999999999999999999", "at most 4294967295 (2**32 - 1) in size"),
    (NETWORK + "[schedule]\ntype = { a = 1 }", "unknown schedule {'a': 1}"),
    (NETWORK + "[schedule]\ntype = \"multistep\"\nmilestones = [1, nan]", "milestones must be an increasing list"),
    (NETWORK + "[training]\nepochs = 99999999999999999999", "epochs must be at most 4294967295"),
    (NETWORK + "[training]\nseed = -99999999999999999999", "seed must be at most 4294967295"),
    (NETWORK + "[training]\ninit = [\"torch\"]", "init must be one of"),
    (NETWORK + "[training]\nbatch_size = nan", "batch_size must be"),
])
def test_bad_spec_values_are_one_line(text, fragment, tmp_path, capsys):
    out = tmp_path / "out.py"
    fails_in_one_line(capsys, ["generate", toml(tmp_path, text), "-o", str(out)], fragment, out)


def _numeric_keys():
    """(table, type, key) of every number-valued hyperparameter in the catalogues, and betas."""
    for name, kind in OPTIMIZERS.items():
        for key, default in kind.defaults.items():
            if key == "betas" or (isinstance(default, float)):
                yield "optimizer", name, key
    for name, kind in SCHEDULES.items():
        for key in [*kind.defaults, "warmup_epochs"]:
            if key != "mode":
                yield "schedule", name, key
    for key in TRAINING_DEFAULTS:
        if key != "init":
            yield "training", None, key


@pytest.mark.parametrize("table, kind, key", list(_numeric_keys()))
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 10 ** 400, True])
def test_every_hyperparameter_refuses_nan_inf_huge_and_bools(table, kind, key, bad):
    raw = {"type": kind} if kind else {}
    if table == "schedule":  # the required arguments, so that only `key` is wrong
        raw.update({k: v for k, v in SCHEDULES[kind].examples[0].items()})
    raw[key] = [bad, 0.9] if key in ("betas", "milestones") else bad
    spec = {"network": {"inputs": 2, "layers": [1], "loss": "mse"}, table: raw}
    with pytest.raises(ChainruleError, match=f"{key} must be "):
        from_dict(spec)


@pytest.mark.parametrize("where", ["activation", "loss", "description", "optimizer", "layers"])
@pytest.mark.parametrize("depth", [500, 100_000])
def test_deeply_nested_dict_specs_are_one_line_errors(where, depth):
    net = {"inputs": 2, "layers": [1], "loss": "mse"}
    spec = {"network": net}
    if where == "activation":
        net["layers"] = [{"units": 1, "activation": deep(depth, key="type")}]
    elif where == "loss":
        net["loss"] = {"type": "huber", "delta": deep(depth)}
    elif where == "description":
        spec["description"] = deep(depth)
    elif where == "optimizer":
        spec["optimizer"] = {"lr": deep(depth, key="lr")}
    else:
        net["layers"] = deep(depth)
    with pytest.raises(ChainruleError) as caught:
        from_dict(spec)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400


def test_a_spec_that_contains_itself_is_a_one_line_error():
    spec = {"network": {"inputs": 2, "layers": [1], "loss": {"type": "huber"}}}
    spec["network"]["loss"]["delta"] = spec
    with pytest.raises(ChainruleError, match="delta must be a positive number"):
        from_dict(spec)


# -- bad flags ---------------------------------------------------------------------------------------

def _bad_flag_values():
    for flag, _, key, kind, _ in TRAINING_FLAGS:
        if kind == "number":
            yield from ([flag, "nan"], [flag, "inf"], [flag, "-inf"], [flag, "1e999"], [flag, "1e300"])
        elif kind in ("whole", "batch"):
            yield from ([flag, "nan"], [flag, "inf"], [flag, "1.5"], [flag, "9" * 30], [flag, "9" * 5000])
        elif kind == "pair":
            yield from ([flag, "nan,0.9"], [flag, "0.9,inf"], [flag, "0.9"], [flag, "0.9,0.99,0.999"])
    yield from (["--schedule", "step", "--schedule-arg", "step_size=inf"],
                ["--schedule", "exponential", "--schedule-arg", "gamma=nan"],
                ["--schedule", "multistep", "--schedule-arg", "milestones=1,1e999"],
                ["--schedule-arg", "no-equals-sign"], ["--optimizer", "ad\nam"], ["--init", "\x1b[31mred"],
                ["--dtype", "float16"])


@pytest.mark.parametrize("flags", list(_bad_flag_values()), ids=lambda flags: " ".join(flags)[:40])
def test_bad_generate_flags_are_one_line(flags, tmp_path, capsys):
    out = tmp_path / "out.py"
    fails_in_one_line(capsys, ["generate", SPEC, "-o", str(out), *flags], output=out)


# -- the error line ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, escaped", [
    (["derive", "2 -> 2 re\nlu -> 1 ; mse"], "\\n"),
    (["derive", "2 -> 2 re\x1b[2Jlu -> 1 ; mse"], "\\x1b"),
    (["derive", "2 -> 2 relu -> 1 ; ms\u2028e"], "\\u2028"),
    (["derive", "2 -> 2 relu -> 1 ; ms\re"], "\\r"),
    (["generate", SPEC, "--optimizer", "\x1b]0;title\x07"], "\\x1b"),
])
def test_user_text_in_errors_is_escaped_onto_one_line(argv, escaped, capsys):
    err = fails_in_one_line(capsys, argv)
    assert escaped in err and "\r" not in err and "\u2028" not in err


def test_a_toml_key_with_control_characters_is_escaped(tmp_path, capsys):
    spec = toml(tmp_path, NETWORK + '"\\u001b[31mred\\nline" = 1\n')
    assert "\\x1b[31mred\\nline" in fails_in_one_line(capsys, ["derive", spec], "unknown key")


@pytest.mark.parametrize("argv, fragment", [
    (["check", SPEC, "--wrt", "W2", "--grad", "-delta2@h1.T"], "is written --grad=VALUE"),
    (["derive", SPEC, "-o"], "argument --output/-o: expected one argument"),
    (["derive", SPEC, "--format", "pdf"], "invalid choice: 'pdf'"),
    (["derive"], "required: spec"),
    (["derive", SPEC, "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "give a command"),
])
def test_argparse_errors_are_one_line_without_usage(argv, fragment, capsys):
    fails_in_one_line(capsys, argv, fragment)


def test_a_value_that_starts_with_a_dash_works_after_an_equals_sign(capsys):
    assert main(["check", SPEC, "--wrt", "W2", "--grad=-delta2@h1.T"]) == 1  # read, and judged wrong
    assert "chainrule: error" not in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["derive", "3 -> 8 tanh -> 8 tanh -> 8 tanh -> 2 ; mse", "--format", "tex"],
    ["list"],
    ["check", SPEC, "--wrt", "W2", "--grad", "delta2 @ h1.T"],
])
def test_a_closed_pipe_ends_quietly(argv):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte, as with `| head -c 0`
    try:
        result = subprocess.run([sys.executable, "-m", "codegen.cli", *argv], stdout=write,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    finally:
        os.close(write)
    assert result.returncode in (0, 141, -signal.SIGPIPE) and result.stderr == ""


def test_head_reads_the_first_bytes_and_the_rest_ends_quietly():
    command = f"{sys.executable} -m codegen.cli derive '{SPEC}' --format tex | head -c 10"
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout == "\\documentc" and result.stderr == ""


# -- outputs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["text", "tex", "md"])
def test_derive_o_marks_its_file_and_refuses_others_without_force(fmt, tmp_path, capsys):
    out = tmp_path / f"notes.{fmt}"
    assert main(["derive", SPEC, "-f", fmt]) == 0
    printed = capsys.readouterr().out
    assert main(["derive", SPEC, "-f", fmt, "-o", str(out)]) == 0
    assert out.read_text() == NOTE_HEADERS[fmt] + "\n" + printed
    assert main(["derive", SPEC, "-f", fmt, "-o", str(out)]) == 0  # its own file: overwritten
    out.write_text("my own notes\n")
    fails_in_one_line(capsys, ["derive", SPEC, "-f", fmt, "-o", str(out)], "pass --force")
    assert out.read_text() == "my own notes\n"
    assert main(["derive", SPEC, "-f", fmt, "-o", str(out), "--force"]) == 0
    assert first_line(out) == NOTE_HEADERS[fmt]


@pytest.mark.parametrize("command", ["derive", "generate"])
@pytest.mark.parametrize("force", [[], ["--force"]])
def test_no_command_writes_onto_its_own_spec(command, force, tmp_path, capsys):
    spec = toml(tmp_path, NETWORK)
    (tmp_path / "sub").mkdir()
    for output in (spec, str(tmp_path / "sub" / ".." / "spec.toml")):
        fails_in_one_line(capsys, [command, spec, "-o", output, *force], "is the spec being read")
    assert Path(spec).read_text() == NETWORK


@pytest.mark.parametrize("command", ["derive", "generate"])
def test_links_devices_folders_and_fifos_are_refused_and_kept(command, tmp_path, capsys):
    target = tmp_path / "target.txt"
    target.write_text("keep me\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "nowhere")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, kind in ((link, "is a symbolic link"), (dangling, "is a symbolic link"), (tmp_path, "is a folder"),
                       (fifo, "is not a regular file"), (Path(os.devnull), "is not a regular file")):
        fails_in_one_line(capsys, [command, SPEC, "-o", str(path), "--force"], kind)
    assert link.is_symlink() and target.read_text() == "keep me\n" and dangling.is_symlink()
    assert stat.S_ISFIFO(fifo.stat().st_mode) and stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.txt", "fifo", "link.txt", "target.txt"]


def test_the_header_check_reads_only_the_start_of_regular_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes to it: a blocking read would never end
    assert first_line(fifo) == "" and first_line(tmp_path) == "" and first_line(os.devnull) == ""
    big = tmp_path / "big"
    big.write_bytes(b"x" * (files.HEAD_BYTES * 4))
    assert first_line(big) == "x" * files.HEAD_BYTES
    (tmp_path / "crlf.py").write_bytes(HEADER.encode() + b"\r\nrest")
    assert first_line(tmp_path / "crlf.py") == HEADER


def _no_temporary_files(folder):
    return not [p for p in Path(folder).iterdir() if p.name.endswith(".tmp")]


def _fail(code, only=lambda *args: True, real=None):
    """An os function that raises OSError(code) (when ``only`` holds for its arguments; else ``real``)."""
    def raises(*args, **kwargs):
        if not only(*args):
            return real(*args, **kwargs)
        raise OSError(code, os.strerror(code))
    return raises


@pytest.mark.parametrize("patched, code, fragment", [
    ("write", errno.ENOSPC, "No space left on device"),
    ("replace", errno.EACCES, "Permission denied"),
    ("open", errno.EROFS, "Read-only file system"),
    ("open", errno.EACCES, "Permission denied"),
])
@pytest.mark.parametrize("command", ["derive", "generate"])
def test_write_errors_are_one_line_and_keep_the_old_file(patched, code, fragment, command, tmp_path, monkeypatch,
                                                          capsys):
    out = tmp_path / "out.txt"
    assert main([command, SPEC, "-o", str(out)]) == 0
    before = out.read_bytes()
    with monkeypatch.context() as patch:
        # the temporary file is the one os.open may not create (reading the old file's marker still works)
        patch.setattr(os, patched, _fail(code, lambda name, *rest: str(name).endswith(".tmp"), os.open)
                      if patched == "open" else _fail(code))
        err = fails_in_one_line(capsys, [command, "2 -> 3 tanh -> 1 ; mse", "-o", str(out)], fragment)
    assert "no file was changed" in err
    assert out.read_bytes() == before and _no_temporary_files(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_a_one_line_error(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    fails_in_one_line(capsys, ["derive", SPEC, "-o", str(folder / "x.txt")], "Permission denied", folder / "x.txt")


@pytest.mark.parametrize("name", ["a" * 300, "a" * 250])  # 250 fits, but its temporary name would not
def test_long_names_are_one_line_errors_or_written(name, tmp_path, capsys):
    out = tmp_path / name
    if len(name) > 255:
        fails_in_one_line(capsys, ["derive", SPEC, "-o", str(out)], "File name too long")
    else:
        assert main(["derive", SPEC, "-o", str(out)]) == 0 and out.exists()
    assert _no_temporary_files(tmp_path)


@pytest.mark.parametrize("name, fragment", [("no/x.txt", "folder"), ("a\0b.txt", "cannot contain a NUL"),
                                            ("file.txt/x.txt", "Not a directory")])
def test_impossible_names_are_one_line(name, fragment, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("keep me\n")
    fails_in_one_line(capsys, ["derive", SPEC, "-o", str(tmp_path / name)], fragment)
    assert (tmp_path / "file.txt").read_text() == "keep me\n"


def test_new_files_get_the_umask_mode_and_old_files_keep_theirs(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "new.txt", "new\n")
        mine = tmp_path / "mine.txt"
        mine.write_text("old\n")
        mine.chmod(0o604)
        write_atomic(mine, "replaced\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE(mine.stat().st_mode) == 0o604 and mine.read_text() == "replaced\n"


SLOW_WRITER = """
import os, sys, time
real = os.write
def slow(fd, data):  # 1 KB every 10 ms: the write takes seconds
    time.sleep(0.01)
    return real(fd, bytes(data[:1024]))
os.write = slow
from codegen.files import write_atomic
try:
    write_atomic(sys.argv[1], "x" * 1_000_000)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_a_signal_as_the_temporary_file_is_created_still_removes_it(tmp_path, monkeypatch):
    real = os.open

    def created_then_interrupted(name, *args):  # a Ctrl-C that lands just after the file exists
        fd = real(name, *args)
        if str(name).endswith(".tmp"):
            os.close(fd)
            raise KeyboardInterrupt
        return fd
    monkeypatch.setattr(os, "open", created_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "out.txt", "new\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130),
                                       (signal.SIGHUP, 128 + signal.SIGHUP)])
def test_a_signal_mid_write_removes_the_temporary_file(sig, code, tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    child = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(out)], cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _no_temporary_files(tmp_path):
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    child.send_signal(sig)
    assert child.wait(timeout=60) == code
    assert b"Traceback" not in child.stderr.read()
    child.stderr.close()
    assert out.read_text() == "old\n" and _no_temporary_files(tmp_path)
