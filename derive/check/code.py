"""``chainrule check-code SPEC FILE.py:FUNCTION``: run a person's NumPy backward pass and check it.

The calling convention is ``derive.check.options.BACKWARD_CONTRACT`` (``check-code --help`` prints it):
backward(params, cache, X, T) -> a dict of gradients, batch-first like the generated module.

The function runs in a contained child process (a crash, an exception, a hang or a hostile
file is reported, never inherited) at two random points with N = 3. Its gradients are compared
with the derivation's batch-form steps evaluated at the same points, within a fraction of each
gradient's scale, and a difference is explained by ``diagnose.BackwardJudge`` with the mistakes
``check`` names (transposed, sign, constant factor, an activation derivative left out or another
activation's, the transpose of a square weight, a sum over the wrong axis, a penalty left out, a
softmax output read as element-wise), each named once, at the layer where it is made.

``check_op`` (``check-code --op NAME``) checks one op's backward function (``options.OP_CONTRACT``)
the same way, in the same contained child: the op is held between identity weights in a small
derived network, so its gradients and its mistakes are the derivation's. The CNN ops (conv2d, the
pooling ops, batch norm) and whole networks with them are judged by ``diagnose.OpJudge`` against
the derivation's steps and ``diagnose.cnn_worlds``, their usual mistakes. The recurrent ops and attention
(``attention`` per head, ``mha`` the whole layer) are judged by it against their op's own backward.

Containment (see ``Limits``): the wall-clock timeout bounds the whole process tree; memory
(RLIMIT_AS and RLIMIT_DATA), CPU time (RLIMIT_CPU) and file size (RLIMIT_FSIZE) are limited in the
child before the person's file is imported; its stdout and stderr are kept up to ``--output`` KiB
each and shown, the rest counted and discarded. The tree is parent -> supervisor -> runner: the
supervisor ignores the signals a child can send its parent, so the check cannot be stopped through
``os.getppid()``. On Linux the parent is a child subreaper during the run, so a descendant that
double-forks and calls ``setsid`` is re-parented to it and found through /proc; every new
descendant is killed at the end. Elsewhere only the child's session (its process group) is killed.
The result comes back on a private pipe and is validated field by field: user code runs in the
same interpreter as the runner and could write on that pipe too, so a forged result can at worst
claim gradients (judged like any others), never crash the parent or put text on its terminal.
"""
import ctypes
import functools
import json
import math
import os
import random
import re
import selectors
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import sympy as sp

from .. import limits as limits_module
from ..errors import ChainruleError
from ..escape import terminal_text
from ..printing import MathText
from .checker import Checker, unreadable
from .sequence import attention_layers
from .compare import BATCH, BIAS_SCALE, Comparer
from ..ops.activations import CATALOGUE as ACTIVATIONS
from .compare import numeric_value
from .diagnose import (BackwardJudge, BoundCell, OpJudge, attention_worlds, cnn_worlds, cropped, mistaken_scores,
                       padding_not_cropped, recurrent_worlds)
from .options import ATTENTION_NAMES, RECURRENT_NAMES
from ..ops.recurrent import backprop as recurrent_backprop, cell as recurrent_cell

SEEDS = (11, 12)
MAX_SECONDS = 600.0
FILE_BYTES = 64 << 20                # RLIMIT_FSIZE: the largest file the code may write
ERROR_LINES, LINE_CHARS = 4, 300     # how much of the child's traceback is shown
KILL_SECONDS = 5.0                   # the most spent finding and killing the tree after the run


@dataclass(frozen=True)
class Limits:
    """What the person's code may use; ``cpu`` None means the timeout, rounded up."""
    timeout: float = 20.0            # seconds of wall-clock time for the whole process tree
    cpu: float | None = None         # seconds of CPU time for each process
    memory: float = 2048             # MiB of address space for each process
    output: float = 64               # KiB of stdout and of stderr kept and shown

    @property
    def cpu_seconds(self) -> int:
        return math.ceil(self.timeout if self.cpu is None else self.cpu)


# (lowest, lowest allowed?, highest, unit) of each flag
_RANGES = {"timeout": (0.0, False, MAX_SECONDS, "seconds"), "cpu": (0.0, False, MAX_SECONDS, "seconds"),
           "memory": (256.0, True, 65536.0, "MiB"), "output": (1.0, True, 16384.0, "KiB")}


def limits(**given) -> Limits:
    """Limits from the flags (None: the default); a value out of range is a ChainruleError."""
    values = {}
    for name, value in given.items():
        if value is None:
            continue
        low, inclusive, high, unit = _RANGES[name]
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value <= high
                and (low <= value if inclusive else low < value)):
            bound = f"at least {low:g}" if inclusive else f"greater than {low:g}"
            raise ChainruleError(f"--{name} {value:g}: give a number of {unit} {bound} and at most {high:g}")
        values[name] = float(value)
    return Limits(**values)


# The supervisor: ignores what a child can send its parent, runs the runner under the limits and
# exits with its status (128 + N for a signal N).
_SUPERVISOR = r"""
import os, resource, signal, sys
memory, cpu, fsize = (int(a) for a in sys.argv[1:4])
shield = [getattr(signal, s) for s in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
                                       "SIGALRM", "SIGPIPE", "SIGTSTP", "SIGTTIN", "SIGTTOU")]
for s in shield:
    signal.signal(s, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    for s in shield:
        signal.signal(s, signal.SIG_DFL)
    for which, value in (("RLIMIT_AS", memory), ("RLIMIT_DATA", memory), ("RLIMIT_CPU", cpu),
                         ("RLIMIT_FSIZE", fsize), ("RLIMIT_CORE", 0)):
        try:
            limit = getattr(resource, which)
            ceiling = resource.getrlimit(limit)[1]  # a stricter limit set by the user stays
            cap = (lambda v: v) if ceiling == resource.RLIM_INFINITY else (lambda v: min(v, ceiling))
            resource.setrlimit(limit, (cap(value), cap(value + 1 if which == "RLIMIT_CPU" else value)))
        except (AttributeError, ValueError, OSError):
            pass  # a limit the platform lacks
    os.execv(sys.executable, [sys.executable] + sys.argv[4:])
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
os._exit(128 - code if code < 0 else code)
"""

# The runner reads its cases before the person's file is imported, writes one JSON message on the
# result pipe and ends with os._exit, so no atexit handler or thread of the code runs after it.
_RUNNER = r"""
import importlib.util, json, os, sys, traceback
path, name, fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.set_inheritable(fd, False)
def report(payload):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    data = json.dumps(payload).encode()
    while data:
        data = data[os.write(fd, data):]
    os._exit(0)
def failed(stage):
    report({"stage": stage, "error": traceback.format_exc(limit=4)[-4000:]})
def encode(value, limit):
    a = np.asarray(value)
    out = {"kind": a.dtype.kind, "dtype": str(a.dtype), "shape": list(a.shape)}
    if a.dtype.kind == "f" and a.size <= limit:
        out["values"] = a.astype(float).tolist()
    return out
try:
    import numpy as np
    task = json.load(sys.stdin)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location("checked_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
except MemoryError:
    report({"stage": "memory"})
except BaseException:
    failed("import")
function = getattr(module, name, None)
if not callable(function):
    report({"stage": "missing"})
def positional(case):
    out = function(*[v if t == "dict" else np.array(v, dtype=t) for v, t in case["args"]])
    if isinstance(out, dict) and task.get("spellings"):  # keyed by the names people write (dWh, dh_prev, ...)
        keys = {n: next((k for k in ks if k in out), None) for n, ks in task["spellings"].items()}
        return {n: out[k] for n, k in keys.items() if k is not None}
    out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    names = task["outputs"]
    if task.get("loss") and len(out) == len(names) + 1:
        names = ["loss"] + names
    if len(out) != len(names):
        raise TypeError(f"{name} returned {len(out)} value(s); it must return {', '.join(task['outputs'])}")
    return dict(zip(names, out))
results = []
for case in task["cases"]:
    try:
        if "args" in case:
            results.append({k: encode(v, 4 * task["sizes"][k] + 64) for k, v in positional(case).items()})
            continue
        arrays = {k: {n: np.array(v, dtype=float) for n, v in case[k].items()} for k in ("params", "cache")}
        grads = function(arrays["params"], arrays["cache"], np.array(case["X"], dtype=float),
                         np.array(case["T"], dtype=float))
        if isinstance(grads, tuple) and len(grads) == 2 and isinstance(grads[1], dict):
            grads = grads[1]
        if not isinstance(grads, dict):
            raise TypeError(f"{name} returned {type(grads).__name__}, not a dict of gradients")
        found = {}
        for wanted, spellings in task["names"].items():
            key = next((k for k in spellings if k in grads), None)
            if key is not None:
                found[wanted] = encode(grads[key], 4 * task["sizes"][wanted] + 64)
        results.append(found)
    except MemoryError:
        report({"stage": "memory"})
    except BaseException:
        failed("call")
report({"stage": "done", "results": results})
"""


def _split_target(target: str):
    path, sep, name = target.rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise ChainruleError(f"'{target}' must be FILE.py:FUNCTION, like student.py:backward")
    if not Path(path).is_file():
        raise ChainruleError(f"no file '{path}'; give the Python file that defines {name}")
    return path, name


def cases(checker):
    """For each seed: (the arguments as JSON-ready lists, the step values)."""
    out = []
    for seed in SEEDS:
        env = checker.evaluate_steps(checker.leaves(random.Random(seed)))
        out.append((_arguments(checker, env), env))
    return out


def _array(value):
    return np.array(value.tolist(), dtype=float)


def _arguments(checker, env):
    """The backward pass's arguments at one point, batch-first (see BACKWARD_CONTRACT)."""
    params, cache = {}, {}
    for key, q in checker.q.items():
        if not isinstance(q.symbol, sp.MatrixSymbol) or q.role not in ("data", "param", "forward", "mask"):
            continue
        value = _array(env[q.symbol])
        if q.role == "param":
            params[key] = value.ravel().tolist() if value.shape[1] == 1 else value.tolist()
        elif key != "Y":
            cache[key] = value.T.tolist()
    for l, layer in enumerate(checker.net.layers[:-1], start=1):
        if layer.kind == "dense" and f"A{l}" not in cache:  # a hidden identity layer's output is its Z
            cache[f"A{l}"] = cache[f"Z{l}"]
    return {"params": params, "cache": cache, "X": cache["X"], "T": _array(env[checker.q["Y"].symbol]).T.tolist()}


class _Capped:
    """The first ``limit`` bytes of a stream; the rest is counted, not kept."""

    def __init__(self, limit: int):
        self.data, self.limit, self.dropped = bytearray(), limit, 0

    def add(self, chunk: bytes) -> None:
        room = max(0, self.limit - len(self.data))
        self.data += chunk[:room]
        self.dropped += len(chunk) - min(room, len(chunk))


PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37  # from <linux/prctl.h>


def _subreaper(on: int) -> int:
    """Set Linux's PR_SET_CHILD_SUBREAPER to ``on``; the previous value, or -1 where there is none."""
    if not sys.platform.startswith("linux"):
        return -1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        previous = ctypes.c_int(0)
        if (libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(previous), 0, 0, 0) != 0
                or libc.prctl(PR_SET_CHILD_SUBREAPER, on, 0, 0, 0) != 0):
            return -1
        return previous.value
    except (OSError, AttributeError):
        return -1


def _processes():
    """{pid: (ppid, state)} from /proc; empty where there is no /proc."""
    out = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    fields = handle.read().rpartition(b")")[2].split()
                out[int(name)] = (int(fields[1]), fields[0])
            except (OSError, IndexError, ValueError):
                pass
    return out


def _descendants(known):
    """This process's descendants that are not in ``known`` (nor under one): {pid: (ppid, state)}."""
    table, me = _processes(), os.getpid()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [p for p in children.get(me, []) if p not in known]
    while todo:
        pid = todo.pop()
        out[pid] = table[pid]
        todo += [c for c in children.get(pid, []) if c not in known and c not in out]
    return out


def _kill_tree(proc, known) -> None:
    """SIGKILL the child's session and every new descendant (escapees re-parented to us), and reap."""
    stop = time.monotonic() + KILL_SECONDS
    while True:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        found = _descendants(known)
        for pid, (_, state) in found.items():
            if state != b"Z":
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for pid, (ppid, _) in found.items():
            if ppid == os.getpid() and pid != proc.pid:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        try:
            proc.wait(timeout=0.01)
        except subprocess.TimeoutExpired:
            pass
        if not found and proc.returncode is not None or time.monotonic() > stop:
            return
        time.sleep(0.005)


def _exchange(proc, data: bytes, streams: dict, deadline: float) -> bool:
    """Feed ``data`` to stdin and read each stream into its _Capped until the child ends; False at the deadline.

    Nothing here blocks on a pipe: a grandchild holding one open cannot stretch the deadline.
    """
    with selectors.DefaultSelector() as selector:
        for fd, buffer in streams.items():
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ, buffer)
        stdin = proc.stdin.fileno()
        os.set_blocking(stdin, False)
        selector.register(stdin, selectors.EVENT_WRITE, None)
        view = memoryview(data)
        while proc.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for key, _ in selector.select(min(remaining, 0.05)):
                if key.data is None:
                    try:
                        view = view[os.write(key.fd, view[:1 << 16]):]
                    except BlockingIOError:
                        continue
                    except OSError:  # the child closed its stdin
                        view = view[:0]
                    if not view:
                        selector.unregister(key.fd)
                        proc.stdin.close()
                else:
                    _read(key.fd, key.data, selector)
    return True


def _read(fd, buffer, selector) -> None:
    """Read what ``fd`` has now into ``buffer``; at the end of the stream, stop watching it."""
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        return
    except OSError:
        chunk = b""
    if chunk:
        buffer.add(chunk)
    else:
        selector.unregister(fd)


def _drain(streams: dict) -> None:
    """After the tree is killed: what is left in the pipes, without waiting for writers that survived."""
    for fd, buffer in streams.items():
        for _ in range(1 + buffer.limit // (1 << 16) + 16):
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            buffer.add(chunk)


def run_child(path, name, task, limits: Limits):
    """(the child's validated report, its stdout and stderr as _Capped).

    The report is {'stage': 'done', 'results': [...]} or a failure stage ('import', 'call',
    'missing', 'memory', 'timeout', 'cpu', 'crash', 'malformed') with an 'error' text.
    """
    result_end, child_end = os.pipe()
    env = dict(os.environ)
    for threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(threads, "1")  # thread pools reserve address space that counts against the limit
    path = os.path.abspath(path)
    command = [sys.executable, "-c", _SUPERVISOR, str(int(limits.memory * (1 << 20))), str(limits.cpu_seconds),
               str(FILE_BYTES), "-c", _RUNNER, path, name, str(child_end)]
    out, err = _Capped(int(limits.output * 1024)), _Capped(int(limits.output * 1024))
    # the runner sends at most 4 size + 64 numbers of each gradient, each well under 32 bytes of JSON
    result = _Capped(len(task["cases"]) * sum(32 * (4 * n + 64) + 256 for n in task["sizes"].values()) + (1 << 20))
    previous = _subreaper(1)
    known, proc, streams, finished, status = set(_descendants(set())), None, {}, False, None
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=os.path.dirname(path), env=env, start_new_session=True, pass_fds=(child_end,))
        os.close(child_end)
        child_end = None
        streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err, result_end: result}
        finished = _exchange(proc, json.dumps(task).encode(), streams, time.monotonic() + limits.timeout)
        status = proc.returncode
    finally:
        if proc is not None:
            _kill_tree(proc, known)
            _drain(streams)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                pipe.close()
        for fd in (result_end, child_end):
            if fd is not None:
                os.close(fd)
        if previous == 0:
            _subreaper(0)
    if not finished:
        return {"stage": "timeout", "error": f"{name} did not finish within {limits.timeout:g} s (--timeout)"}, out, err
    return _verdict_of(status, result, limits, len(task["cases"]), set(task["names"])), out, err


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _verdict_of(status, result, limits, cases, names) -> dict:
    """The report from the supervisor's exit status and the bytes on the result pipe, checked."""
    if status is not None and status < 0:
        return {"stage": "crash", "error": f"its supervisor was killed by {_signal_name(-status)}"}
    if status and status > 128:
        number = status - 128
        if number == getattr(signal, "SIGXCPU", None):
            return {"stage": "cpu", "error": f"it used more than {limits.cpu_seconds} s of CPU time (--cpu)"}
        hint = " (the hard CPU limit, or the system ran out of memory)" if number == signal.SIGKILL else ""
        return {"stage": "crash", "error": f"the process was killed by {_signal_name(number)}{hint}"}
    report = _parse(result, cases, names)
    if report is None:
        if not result.data and not result.dropped:
            return {"stage": "crash", "error": f"the process ended with code {status} and no result"}
        return {"stage": "malformed", "error": "the result on the private pipe could not be read: the code wrote "
                                               "on it, or returned values that could not be sent"}
    if report["stage"] == "memory":
        report["error"] = f"it ran out of memory: more than {limits.memory:g} MiB (--memory)"
    return report


def _parse(result: _Capped, cases: int, names: set):
    """The runner's message when it is well formed, else None; nothing in it is trusted further."""
    if result.dropped:
        return None
    try:
        message = json.loads(result.data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(message, dict):
        return None
    stage = message.get("stage")
    if stage in ("import", "call"):
        return {"stage": stage, "error": message["error"]} if isinstance(message.get("error"), str) else None
    if stage in ("missing", "memory"):
        return {"stage": stage, "error": ""}
    results = message.get("results")
    if stage != "done" or not isinstance(results, list) or len(results) != cases:
        return None
    if not all(isinstance(r, dict) and set(r) <= names for r in results):
        return None
    return {"stage": "done", "results": results}


def _gradient(entry):
    """(the array, '') for a finite real floating gradient the runner sent, else (None, what is wrong)."""
    if entry is None:
        return None, ""
    shape = entry.get("shape") if isinstance(entry, dict) else None
    if not (isinstance(shape, list) and len(shape) <= 32 and all(type(n) is int and n >= 0 for n in shape)):
        return None, "malformed: the result on the private pipe could not be read"
    kind, dtype = entry.get("kind"), entry.get("dtype")
    if kind != "f":
        shown = terminal_text(dtype)[:40] if isinstance(dtype, str) else "not an array"
        return None, f"wrong type: yours has dtype {shown}; a gradient must be an array of real floats (float64)"
    if "values" not in entry:
        return None, f"wrong shape: yours is {tuple(shape)}, far larger than the gradient"
    try:
        array = np.array(entry["values"], dtype=np.float64)
    except (ValueError, TypeError, OverflowError, RecursionError):
        array = None
    if array is None or array.shape != tuple(shape):
        return None, "malformed: the result on the private pipe could not be read"
    return array, ""


def _not_finite(name, arrays) -> str:
    """'' when every point's gradient is finite, else where the first inf or NaN is."""
    for point, array in enumerate(arrays):
        bad = ~np.isfinite(array)
        if bad.any():
            where = np.unravel_index(int(np.argmax(bad)), array.shape)
            at = ", ".join(str(int(i)) for i in where)
            more = f" ({int(bad.sum())} entries are not finite)" if bad.sum() > 1 else ""
            return (f"not finite: yours has {array[where]} at entry [{at}] at the "
                    f"{('first', 'second')[point] if point < 2 else f'#{point + 1}'} point{more}")
    return ""


def _shown(label, stream: _Capped) -> list:
    """The lines of one of the child's streams, escaped, with what was discarded counted."""
    if not stream.data and not stream.dropped:
        return []
    text = stream.data.decode("utf-8", errors="backslashreplace")
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()
    note = f", {stream.dropped} more bytes discarded (--output)" if stream.dropped else ""
    return [f"  {label} ({len(stream.data)} bytes shown{note}):"] + [f"    | {terminal_text(line)}" for line in lines]


def _spellings(name: str) -> list:
    """The keys a returned dict may use for ``name``'s gradient, the first found wins."""
    return [name, f"d{name}", f"dL_d{name}", f"grad_{name}", f"d{name}".lower(), name.lower()]


def check_code(derivation, target: str, limits: Limits = Limits()):
    """(lines of the report, exit code) for the backward pass FILE.py:FUNCTION."""
    path, name = _split_target(target)
    recurrent = next((l for l, layer in enumerate(derivation.network.layers, 1) if layer.kind in ("rnn", "lstm", "gru")), None)
    if recurrent is not None:
        kind = derivation.network.layers[recurrent - 1].kind
        fix = (f"check the layer's backward function as one op: check-code --op {kind} FILE.py:FUNCTION (or "
               f"{kind}_step; cs231n's layouts, see check-code --help)")
        raise ChainruleError(f"check-code reads a network's backward pass without recurrent layers, and layer "
                             f"{recurrent} is {kind}; {fix}")
    sequence = next((l for l, layer in enumerate(derivation.network.layers, 1) if layer.kind in ("embedding", "positional")
                     or layer.kind == "residual" and attention_layers(layer.layers)), None)
    if sequence is not None:  # check reads these one sample at a time; a backward pass runs on a batch
        kind = derivation.network.layers[sequence - 1].inline(None)
        raise ChainruleError(f"check-code reads a network's backward pass without an embedding, a position table or "
                             f"attention inside a block, and layer {sequence} is {kind}; check the attention layer's "
                             f"backward function as one op (check-code --op mha FILE.py:FUNCTION, see check-code "
                             f"--help), or the derivation line by line with chainrule check --file")
    if unreadable(derivation.network) is not None and all(l.kind in CNN_KINDS for l in derivation.network.layers):
        return _check_cnn_code(derivation, target, limits)
    checker = Checker(derivation, "columns")
    rows = Checker(derivation, "rows")
    names = list(derivation.network.param_names) + ["X"]
    with np.errstate(all="ignore"):  # values that overflow are reported as undecided, not warned about
        prepared = cases(checker)
        judge = BackwardJudge(checker, rows, [_leaves(checker, env) for _, env in prepared])
        sizes = {n: int(judge.targets({})[0][n].size) for n in names}
    task = {"cases": [args for args, _ in prepared], "names": {n: _spellings(n) for n in names}, "sizes": sizes}
    header = f"{terminal_text(target)}: batch-first arrays, N = {BATCH}, {len(prepared)} random points"
    return _run_and_judge(path, name, task, limits, header,
                          lambda results: _verdicts(judge, lambda p: rows.printed(rows.target(p))[0], results))


def _leaves(checker, env):
    return {s: env[s] for s in env if getattr(s, "name", "") in checker.leaf_keys}


def _run_and_judge(path, name, task, limits, header, verdicts):
    """Run the person's function in the contained child on ``task`` and report, ``verdicts`` judging the results."""
    report, out, err = run_child(path, name, task, limits)
    if report["stage"] == "missing":
        raise ChainruleError(f"{path} has no function {name}")
    printed = _shown("printed on stdout", out) + _shown("printed on stderr", err)
    if report["stage"] != "done":
        what = {"import": "importing the file failed", "call": f"{name} raised an exception",
                "timeout": "it did not finish", "crash": "the process crashed", "memory": "stopped",
                "cpu": "stopped", "malformed": "no usable result"}[report["stage"]]
        error = [terminal_text(line)[:LINE_CHARS] for line in report["error"].strip().splitlines()]
        return ([header, f"  {what}: {error[-1] if error else ''}"]
                + [f"    {line}" for line in error[-ERROR_LINES:-1]] + printed), 1
    with np.errstate(all="ignore"):  # huge finite gradients overflow in the comparisons, harmlessly
        lines, worst = verdicts(report["results"])
    return [header] + lines + printed, worst


# -- one op's backward function (``check-code --op``) -------------------------------------------------
# Each op is checked inside a small network of the derivation's that holds it between identity weights,
# with the loss mean(yhat ⊙ y), whose dL/dŷ is y over its size: the derivation's gradients at a point
# are then the op's, for an upstream gradient dout that is the network's dL/dŷ there.
UPSTREAM = "[yhat*y]"
OP_WIDTHS = {"in": 5, "out": 4}  # neither is N = 3, so a mistaken axis or transpose has the wrong shape


@dataclass(frozen=True)
class Op:
    """One op's check: its network, the function's arguments, what it returns, and the correct formulas."""
    spec: str
    arguments: tuple      # names of the arguments, in order: dout, x, w, b, gamma, beta, y
    outputs: tuple        # (what the function returns, the network's gradient it is) in order
    correct: dict         # output -> its correct formula, printed
    identity: tuple = ()  # weights held at the identity, biases at 0
    names: dict = None    # the network's names in the messages -> the op's


def ops() -> dict:
    """Every op check-code --op checks: affine, each element-wise activation, softmax, layernorm."""
    n, m = OP_WIDTHS["in"], OP_WIDTHS["out"]
    dense = {"Δ1": "dout", "X": "x", "W1": "w", "b1": "b", "dL/dx": "dx", "dL/dw": "dw", "dL/db": "db"}
    found = {"affine": Op(f"{n} -> {m} ; {UPSTREAM}", ("dout", "x", "w", "b"),
                          (("dx", "X"), ("dw", "W1"), ("db", "b1")),
                          {"dx": "dout wᵀ", "dw": "xᵀ dout", "db": "dout summed over the batch (axis=0)"}, (),
                          {**dense, "dL/dX": "dx", "dL/dW1": "dw", "dL/db1": "db"}),
             "softmax": Op(f"{m} -> {m} softmax ; cross_entropy", ("x", "y"), (("dx", "X"),),
                           {"dx": "(softmax(x) - onehot(y)) / N"}, ("W1", "b1"),
                           {"Δ1": "dx", "Ŷ": "softmax(x)", "Y": "onehot(y)", "dL/dX": "dx"}),
             "layernorm": Op(f"{n} -> {n} -> layernorm -> {n} ; {UPSTREAM}", ("dout", "x", "gamma", "beta"),
                             (("dx", "X"), ("dgamma", "gamma2"), ("dbeta", "beta2")),
                             {"dx": "(g - mean(g) - x̂ ⊙ mean(g ⊙ x̂)) / σ with g = γ ⊙ dout, means over each row",
                              "dgamma": "Σ_batch dout ⊙ x̂", "dbeta": "Σ_batch dout"}, ("W1", "b1", "W3", "b3"),
                             {"dL/dA2": "dout", "dL/dA1": "dx", "γ2": "γ", "μ2": "μ", "σ2": "σ", "X̂2": "x̂",
                              "dL/dX": "dx", "dL/dgamma2": "dgamma", "dL/dbeta2": "dbeta", "layer norm 2's": "its",
                              "Δ1": "dx"})}
    for name, kind in ACTIVATIONS.items():
        if kind.elementwise and name != "identity":
            found[name] = Op(f"{n} -> {n} {name} -> {n} ; {UPSTREAM}", ("dout", "x"), (("dx", "X"),),
                             {"dx": f"dout ⊙ {name}'(x)"}, ("W1", "b1", "W2", "b2"),
                             {"Δ1": "dx", "Z1": "x", "dL/dX": "dx", "dL/dA1": "dout", "layer 1 uses": "the op is",
                              "the layer's output": "its output"})
    return found


def _op_case(checker, op, seed):
    """(the function's arguments at one point, as (values, dtype), the leaves) for ``op``."""
    leaves = _held(checker.leaves(random.Random(seed)), checker.q, op.identity)
    env = checker.evaluate_steps(leaves)
    q = checker.q
    top = q[f"{checker.key('delta')}{len(checker.net.layers)}"].symbol
    values = {"dout": _array(env[top]).T, "x": _array(env[q["X"].symbol]).T}
    for key, param in (("w", "W1"), ("b", "b1"), ("gamma", "gamma2"), ("beta", "beta2")):
        if param in q:
            value = _array(env[q[param].symbol])
            values[key] = value.T if key == "w" else value.ravel()
    if "y" in op.arguments:
        values["y"] = _array(env[q["Y"].symbol]).argmax(axis=0)
    args = [(values[a].tolist(), "int64" if a == "y" else "float64") for a in op.arguments]
    return args, {s: v for s, v in leaves.items()}


def check_op(op_name: str, target: str, limits: Limits = Limits()):
    """(lines of the report, exit code) for one op's backward function FILE.py:FUNCTION (``--op``)."""
    from derive import derive  # the op's network, derived on demand
    known = {**ops(), **cnn_ops(), **recurrent_ops(), **attention_ops()}
    if op_name not in known:
        raise ChainruleError(f"unknown op '{op_name}'; choose one of: {', '.join(known)}")
    path, name = _split_target(target)
    op = known[op_name]
    if isinstance(op, RecurrentOp):  # the recurrent op's own BPTT, from a given state: no network
        return _check_recurrent_op(op_name, op, target, limits)
    if isinstance(op, AttentionOp):  # the attention op's own backward on the given q, k, v: no network
        return _check_attention_op(op_name, op, target, limits)
    derivation = derive(op.spec)
    if isinstance(op, CnnOp):
        return _check_cnn_op(op_name, op, derivation, target, limits)
    checker = Checker(derivation, "columns")
    prepared = [_op_case(checker, op, seed) for seed in SEEDS]
    judge = BackwardJudge(checker, Checker(derivation, "rows"), [leaves for _, leaves in prepared],
                          transposed={"W1"} if op_name == "affine" else ())
    targets = judge.targets({})[0]
    outputs = [out for out, _ in op.outputs]
    task = {"cases": [{"args": args} for args, _ in prepared], "outputs": outputs, "loss": op_name == "softmax",
            "names": {n: [n] for n in outputs + ["loss"]},
            "sizes": {**{out: int(targets[grad].size) for out, grad in op.outputs}, "loss": 1}}
    shapes = ", ".join(f"{a} {_shape_of(values)}" for a, (values, _) in zip(op.arguments, prepared[0][0]))
    header = f"{terminal_text(target)}: {op_name} backward, {shapes}, {len(prepared)} random points"

    def verdicts(results):
        renamed = [{grad: r[out] for out, grad in op.outputs if out in r} for r in results]
        lines, worst = _verdicts(judge, op.correct.get, renamed, {grad: out for out, grad in op.outputs}, op.names)
        if op_name == "softmax" and all("loss" in r for r in results):
            lines, worst = _loss_line(checker, judge, results, lines, worst)
        return lines, worst
    return _run_and_judge(path, name, task, limits, header, verdicts)


def _shape_of(values) -> str:
    return str(tuple(np.shape(values)))


def _loss_line(checker, judge, results, lines, worst):
    """The loss a softmax function returns beside dx, against the derivation's at each point."""
    got = [_gradient(r["loss"])[0] for r in results]
    want = [float(numeric_value(checker.q["L"].symbol, checker.evaluate_steps(dict(leaves)))) for leaves in judge.leaves]
    if all(g is not None and g.size == 1 and abs(float(g.ravel()[0]) - w) <= 1e-6 * (1 + abs(w)) for g, w in zip(got, want)):
        return lines + ["  loss: correct"], worst
    shown = "not a number" if got[0] is None or got[0].size != 1 else f"{float(got[0].ravel()[0]):.6g}"
    return lines + [f"  loss: different: yours = {shown}, the mean cross-entropy = {want[0]:.6g}"], 1


def _verdicts(judge, correct, results, shown=None, words=None):
    """The report's lines after the header and its exit code, from the gradients the runner sent;
    ``correct(name)``: the printed rule; ``shown``: the names the report gives the gradients (the op's
    dx for X), ``words``: the names its messages use for the network's."""
    shown, words = shown or {}, words or {}
    lines, worst, gots, problems = [], 0, {}, {}
    given_x = "X" in results[0]
    names = [n for n in judge.order(given_x) if not shown or n in shown]
    want = judge.targets({})
    for param in names:
        checked = [_gradient(result.get(param)) for result in results]
        got = [array for array, _ in checked]
        if any(g is None for g in got):  # the function returned it at one point only: judged as missing
            got = [None] * len(got)
        if not np.all(np.isfinite(want[0][param])):  # the points overflow the network: no verdict is conclusive
            problems[param] = ("could not decide: the derivation's own gradient is not finite at the random points "
                               "(the network's values overflow there)")
            gots[param] = None
            continue
        problems[param] = next((p for _, p in checked if p), "") or (
            f"no gradient for {param} in the returned dict (keys {param}, d{param} or dL_d{param})"
            if got[0] is None else _not_finite(param, got))
        if not problems[param] and param in judge.sums and got[0].size == want[0][param].size:
            got = [g.ravel() for g in got]
        gots[param] = None if problems[param] else got
    verdicts = judge.verdicts(gots)
    for param in names:
        label = shown.get(param, f"dL/d{param}")
        if problems[param]:
            worst = 1
            lines.append(f"  {label}: {_renamed(problems[param], words)}")
            continue
        verdict = verdicts[param]
        if not verdict:
            lines.append(f"  {label}: correct")
            continue
        worst = 1
        first, *hint = _renamed(verdict, words).split("\n")
        lines.append(f"  {label}: different: {first}")
        lines.append(f"    correct: {label} = {correct(shown.get(param, param))}")
        lines.append("    " + _difference(np.asarray(gots[param][0]), want[0][param]))
        lines += hint
    return lines, worst


def _renamed(text, words) -> str:
    """``text`` with the network's names replaced by the op's (Δ1 by dout, Z1 by x)."""
    if not words:
        return text
    pattern = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.sub(rf"(?<![\w/])({pattern})(?!\w)", lambda m: words[m.group(1)], text)


def _difference(got, want) -> str:
    """The first point's values, whole when small, else the entry that differs most."""
    if got.size <= 8 and want.size <= 8:
        return f"at the first point: yours = {_flat(got)}, derived = {_flat(want)}"
    if got.shape != want.shape:
        return f"yours has shape {got.shape}, the gradient {want.shape}"
    worst = np.unravel_index(np.argmax(np.abs(got - want)), want.shape)
    where = ", ".join(str(i) for i in worst)
    return f"at the first point, entry [{where}]: yours = {got[worst]:.4g}, derived = {want[worst]:.4g}"


def _flat(array) -> str:
    return np.array2string(np.asarray(array), precision=4, max_line_width=10**6).replace("\n", "")


# -- the CNN ops (``check-code --op conv2d``, maxpool2d, avgpool2d, batchnorm, spatial_batchnorm) --------
# As above, each op sits in a small derived network, between identity layers, so its input x is the
# value Z1 = X and its dx is the network's step for dL/dZ1; the arrays have cs231n's layouts, (N, C, H, W)
# for images and (F, C, HH, WW) for kernels, and the settings dict (conv_param, ...) comes last.
# The checker (``checker.Checker``) reads dense networks only, so these ops are judged by
# ``diagnose.OpJudge`` on the derivation's steps and the Worlds of their usual mistakes.

@dataclass(frozen=True)
class CnnOp:
    """One CNN op's check: its network, the arguments and outputs as (name, the network's quantity, the
    shape without N), the settings dict, the correct formulas and the op's layer."""
    spec: str
    arguments: tuple
    settings: tuple       # (name, dict) passed after the arrays
    outputs: tuple
    correct: dict
    identity: tuple
    layer: int
    distinct: bool = False  # the input's entries all differ, so no window's maximum is tied


def cnn_ops() -> dict:
    """conv2d, maxpool2d, avgpool2d, batchnorm and spatial_batchnorm, in cs231n's layouts."""
    one = "2x{0}x{0} -> conv2d(out_channels=2, kernel_size=1)"  # layer 1, the identity: x is Z1 = X
    conv = CnnOp(f"{one.format(5)} -> conv2d(out_channels=3, kernel_size=3, stride=2, padding=1) -> flatten ; {UPSTREAM}",
                 (("dout", "Delta2", (3, 3, 3)), ("x", "Z1", (2, 5, 5)), ("w", "W2", (3, 2, 3, 3)), ("b", "b2", (3,))),
                 ("conv_param", {"stride": 2, "pad": 1}),
                 (("dx", "Delta1", (2, 5, 5)), ("dw", "dL_dW2", (3, 2, 3, 3)), ("db", "dL_db2", (3,))),
                 {"dx": "the full convolution of dout, dilated by the stride, with the kernel turned by 180°, "
                        "the padding cropped: dx_pad[:, :, i*s:i*s+HH, j*s:j*s+WW] += Σ_f w[f] dout[:, f, i, j]",
                  "dw": "x_pad correlated with dout: dw[f] = Σ_{n,i,j} dout[n, f, i, j] x_pad[n, :, i*s:i*s+HH, j*s:j*s+WW]",
                  "db": "dout summed over the batch and the positions, dout.sum(axis=(0, 2, 3))"}, ("W1", "b1"), 2)
    pools = {}
    for kind in ("max", "avg"):
        pools[f"{kind}pool2d"] = CnnOp(
            f"{one.format(4)} -> {kind}pool2d(kernel_size=2) -> flatten ; {UPSTREAM}",
            (("dout", "dL_dA2", (2, 2, 2)), ("x", "Z1", (2, 4, 4))),
            ("pool_param", {"pool_height": 2, "pool_width": 2, "stride": 2}), (("dx", "Delta1", (2, 4, 4)),),
            {"dx": "each window's dout routed to the window's maximum (the first, in row-major order), 0 elsewhere"
             if kind == "max" else "each window's dout spread over it, dout / (pool_height·pool_width) to each entry"},
            ("W1", "b1"), 2, distinct=kind == "max")
    compact = "(N·g − Σg − x̂ ⊙ Σ(g ⊙ x̂)) / (N σ) with g = γ ⊙ dout, N the count of each sum"
    norms = {"batchnorm": CnnOp(f"5 -> 5 -> batchnorm -> 5 ; {UPSTREAM}",
                                (("dout", "dL_dA2", (5,)), ("x", "Z1", (5,)), ("gamma", "gamma2", (5,)),
                                 ("beta", "beta2", (5,))), ("bn_param", {"mode": "train", "eps": 1e-5}),
                                (("dx", "dL_dZ1", (5,)), ("dgamma", "dL_dgamma2", (5,)), ("dbeta", "dL_dbeta2", (5,))),
                                {"dx": compact + ", the sums over the batch (axis=0)",
                                 "dgamma": "(dout ⊙ x̂).sum(axis=0)", "dbeta": "dout.sum(axis=0)"},
                                ("W1", "b1", "W3", "b3"), 2),
             "spatial_batchnorm": CnnOp(f"{one.format(3)} -> batchnorm -> flatten ; {UPSTREAM}",
                                        (("dout", "dL_dA2", (2, 3, 3)), ("x", "Z1", (2, 3, 3)), ("gamma", "gamma2", (2,)),
                                         ("beta", "beta2", (2,))), ("bn_param", {"mode": "train", "eps": 1e-5}),
                                        (("dx", "dL_dZ1", (2, 3, 3)), ("dgamma", "dL_dgamma2", (2,)),
                                         ("dbeta", "dL_dbeta2", (2,))),
                                        {"dx": compact + ", the sums over the batch and the positions (axis=(0, 2, 3))",
                                         "dgamma": "(dout ⊙ x̂).sum(axis=(0, 2, 3))", "dbeta": "dout.sum(axis=(0, 2, 3))"},
                                        ("W1", "b1"), 2)}
    return {"conv2d": conv, **pools, **norms}


class _Sweep(Comparer):
    """The values of a derivation's batch steps at points (``Comparer``'s leaves and evaluate_steps)."""

    def __init__(self, derivation):
        self.net, self.sweep = derivation.network, derivation.batch
        self.q = self.sweep.quantities
        computed = {step.target.key for step in self.sweep.steps}
        self.leaf_keys = {k for k, q in self.q.items() if k not in computed and isinstance(q.symbol, sp.MatrixSymbol)}

    def step(self, key):
        return next(s for s in self.sweep.steps if s.target.key == key)

    def every_step(self, leaves) -> dict:
        """The leaves and every step's value (the Comparer's point computes a step only when it is read)."""
        point = self.evaluate_steps(dict(leaves))
        return {**point, **{step.target.symbol: point[step.target.symbol] for step in self.sweep.steps}}

    def targets(self, points, wanted):
        """``targets(overrides)`` for OpJudge: per point {name: the value of quantity key in ``shape``} for
        ``wanted`` {name: (key, shape)}, with ``overrides`` in place of steps; ``points``: the leaves."""
        bases, cache = [self.every_step(leaves) for leaves in points], {}
        order = [s.target.key for s in self.sweep.steps]

        def targets(overrides):
            key = tuple(sorted((k, sp.srepr(v)) for k, v in overrides.items()))
            if key not in cache:
                start = min((order.index(k) for k in overrides), default=len(order))
                envs = []
                for base in bases:  # the steps before the first changed one keep their values
                    env = dict(base)
                    for step in self.sweep.steps[start:]:
                        env[step.target.symbol] = numeric_value(overrides.get(step.target.key, step.rhs), env)
                    envs.append(env)
                cache[key] = [{n: self.layout(k, _array(numeric_value(self.q[k].symbol, env)), shape)
                               for n, (k, shape) in wanted.items()} for env in envs]
            return cache[key]
        return targets

    def layout(self, key, value, shape):
        """A (features, N) value or a parameter in the op's layout: (N, *shape) or ``shape``."""
        batched = not self.q[key].symbol.cols.is_number  # (features, N), not a parameter's shape
        return value.T.reshape((BATCH,) + shape) if batched else value.reshape(shape)


def _held(leaves, q, keys):
    """``leaves`` with the weights ``keys`` held at the identity and the biases at 0."""
    for key in keys:
        symbol = q[key].symbol
        leaves[symbol] = np.eye(symbol.rows) if symbol.cols == symbol.rows else np.zeros((symbol.rows, symbol.cols))
    return leaves


def _cnn_leaves(sweep, op, seed):
    leaves = _held(sweep.leaves(random.Random(seed)), sweep.q, op.identity)
    if op.distinct:  # a tie would leave the first maximum to the code's convention
        X = sweep.q["X"].symbol
        rows, cols = leaves[X].shape
        leaves[X] = np.array(random.Random(seed).sample([v for v in range(-300, 301) if v], rows * cols),
                             dtype=float).reshape(rows, cols) / 100
    return leaves


def _check_cnn_op(op_name, op, derivation, target, limits):
    path, name = _split_target(target)
    sweep = _Sweep(derivation)
    points = [_cnn_leaves(sweep, op, seed) for seed in SEEDS]
    targets = sweep.targets(points, {out: (k, shape) for out, k, shape in op.outputs})
    given = sweep.targets(points, {a: (k, shape) for a, k, shape in op.arguments})({})
    args = [[(value[a].tolist(), "float64") for a, _, _ in op.arguments] + [(op.settings[1], "dict")] for value in given]
    layer = derivation.network.layers[op.layer - 1]
    views = (("dx", lambda a: cropped(layer.window, a), lambda a: padding_not_cropped(layer.window, a.shape)),
             ) if layer.kind == "conv2d" else ()
    judge = OpJudge(targets, cnn_worlds(sweep.sweep, derivation.network), derivation.network, views)
    right = targets({})
    outputs = [out for out, _, _ in op.outputs]
    task = {"cases": [{"args": a} for a in args], "outputs": outputs, "loss": False, "names": {n: [n] for n in outputs},
            "sizes": {out: int(right[0][out].size) for out in outputs}}
    shapes = ", ".join(f"{a} {_shape_of(v)}" for (a, _, _), (v, _) in zip(op.arguments, args[0]))
    header = (f"{terminal_text(target)}: {op_name} backward, {shapes}, {op.settings[0]} "
              f"{json.dumps(op.settings[1])}, {len(points)} random points")

    return _run_and_judge(path, name, task, limits, header,
                          lambda results: _cnn_verdicts(judge, right, outputs, results, op.correct.get))


def _cnn_verdicts(judge, right, outputs, results, correct, label=str):
    """The report's lines and exit code from the arrays the runner sent, judged by an OpJudge in the
    order of ``outputs``; ``correct(name)``: the printed rule, ``label(name)``: how the report names it."""
    lines, worst, problems, gots = [], 0, {}, {}
    for out in outputs:
        checked = [_gradient(r.get(out)) for r in results]
        problems[out] = next((p for _, p in checked if p), "") or (
            f"no {label(out)} returned" if any(g is None for g, _ in checked) else _not_finite(out, [g for g, _ in checked]))
        if not problems[out]:
            want = right[0][out]  # a bias-like gradient may be (n,), (1, n) or (n, 1)
            gots[out] = [g.ravel() if want.ndim == 1 and g.size == want.size and g.ndim == 2 and 1 in g.shape else g
                         for g, _ in checked]
    verdicts = judge.verdicts(gots)
    for out in outputs:
        if problems[out]:
            lines.append(f"  {label(out)}: {problems[out]}")
            worst = 1
            continue
        if not verdicts[out]:
            lines.append(f"  {label(out)}: correct")
            continue
        first, *rest = verdicts[out].split("\n")
        lines += [f"  {label(out)}: different: {first}", f"    correct: {label(out)} = {correct(out)}",
                  "    " + _difference(gots[out][0], right[0][out])] + rest
        worst = 1
    return lines, worst


# -- a whole CNN's backward pass (``check-code SPEC FILE.py:FUNCTION`` with convolutions, pooling, batch norm) --
#: The layer kinds a CNN's backward pass may have: ``Checker`` reads dense layers, these are judged by OpJudge.
CNN_KINDS = ("dense", "conv2d", "conv1d", "maxpool2d", "avgpool2d", "maxpool1d", "avgpool1d", "global_avgpool",
             "flatten", "batchnorm")


def _cnn_entry_shape(net, key, symbol) -> tuple:
    """The shape of a parameter or cache entry in CNN_CONTRACT's layout, N left out for a batched value."""
    if symbol.cols.is_number and symbol.cols == 1:  # a bias, γ, β, or batch norm's μ, var, σ: one per channel
        return (int(symbol.rows),)
    found = re.search(r"(\d+)$", key)
    layer = net.layers[int(found.group()) - 1] if found else None
    if symbol.cols.is_number:  # a weight: a kernel (F, C, HH, WW) or a dense layer's (out, in)
        kernel = getattr(getattr(layer, "window", None), "kernel", None)
        if layer is not None and layer.kind.startswith("conv"):
            return (int(symbol.rows), int(symbol.cols) // math.prod(kernel)) + tuple(kernel)
        return (int(symbol.rows), int(symbol.cols))
    sizes = net.input_shape if key == "X" else net.layers[-1].shape if key in ("Y", "Yhat") else layer.shape
    return tuple(n for _, n in sizes)


def _check_cnn_code(derivation, target, limits):
    """check_code for a network of CNN_KINDS: the cache has every forward value, images (N, C, H, W)."""
    path, name = _split_target(target)
    net, sweep = derivation.network, _Sweep(derivation)
    size = sum(q.symbol.rows * q.symbol.cols for q in sweep.q.values() if q.role == "param")
    if size > limits_module.CHECK_PARAMETERS:
        raise ChainruleError(f"the network has {size} weights and biases; check-code reads networks of at most "
                             f"{limits_module.CHECK_PARAMETERS} (CHECK_PARAMETERS); check a narrower network")
    points = [sweep.leaves(random.Random(seed)) for seed in SEEDS]
    shape = {k: _cnn_entry_shape(net, k, q.symbol) for k, q in sweep.q.items()
             if isinstance(q.symbol, sp.MatrixSymbol) and q.role in ("data", "param", "forward", "gradient")}
    names = sorted(net.param_names, key=lambda n: -int(re.search(r"\d+$", n).group()))
    with np.errstate(all="ignore"):
        targets = sweep.targets(points, {n: (f"dL_d{n}", shape[n]) for n in names})
        cases = []
        for value in sweep.targets(points, {k: (k, s) for k, s in shape.items() if sweep.q[k].role != "gradient"})({}):
            value = {k: v.tolist() for k, v in value.items()}
            params = {k: v for k, v in value.items() if sweep.q[k].role == "param"}
            entries = {k: v for k, v in value.items() if sweep.q[k].role == "forward" or k == "X"}
            for l, layer in enumerate(net.layers, start=1):  # a hidden identity layer's output is its Z
                if f"Z{l}" in entries and f"A{l}" not in entries and l < len(net.layers):
                    entries[f"A{l}"] = entries[f"Z{l}"]
            cases.append({"params": params, "cache": entries, "X": value["X"], "T": value["Y"]})
        right = targets({})
    judge = OpJudge(targets, cnn_worlds(derivation.batch, net), net)
    task = {"cases": cases, "names": {n: _spellings(n) for n in names}, "sizes": {n: int(right[0][n].size) for n in names}}
    header = (f"{terminal_text(target)}: batch-first arrays, images (N, C, H, W), kernels (F, C, HH, WW), "
              f"N = {BATCH}, {len(points)} random points")
    text = MathText({k: q.text for k, q in sweep.q.items()})
    rules = {n: text.doprint(sweep.step(f"dL_d{n}").rhs) + " (the derivation's step)"
             for n in names}
    return _run_and_judge(path, name, task, limits, header,
                          lambda results: _cnn_verdicts(judge, right, names, results, rules.get, lambda n: f"dL/d{n}"))


# -- the recurrent ops (``check-code --op rnn_step``, rnn, lstm_step, lstm, gru_step, gru), in cs231n's layouts --
# The reference is the recurrent op's own backpropagation through time (``recurrent.backprop``, proved
# against sympy.diff in tests/test_ops.py) on cs231n's arrays: Wx (D, G·H), Wh (H, G·H) and b (G·H,) are
# the op's W_ihᵀ, W_hhᵀ and b_ih (b_hh = 0), with the LSTM's gates moved from cs231n's order i, f, o, g to
# torch's i, f, g, o; the GRU keeps torch's gates r, z, n and both its biases, bx = b_ih and bh = b_hh. ``diagnose.BoundCell`` starts the recurrence from the given state and keeps the
# gradient that reaches it; ``diagnose.recurrent_worlds`` are the usual mistakes, judged by ``OpJudge``.
RECURRENT_WIDTHS = {"D": 4, "H": 5, "T": 3}  # neither D nor H is N = 3, so a transposed product has the wrong shape


@dataclass(frozen=True)
class RecurrentOp:
    """One recurrent op's check: its cell, T (1 for a step), its arguments and outputs, the correct formulas."""
    cell: str
    steps: int
    arguments: tuple
    outputs: tuple
    correct: dict


def recurrent_ops() -> dict:
    """rnn_step, rnn, lstm_step and lstm, as cs231n's assignment 3 writes their backward functions; gru_step and
    gru in the same layout with torch's equations (n = tanh(x Wx_n + bx_n + r ⊙ (prev_h Wh_n + bh_n)))."""
    rnn = {"dWx": "Σ_t x_tᵀ da_t", "dWh": "Σ_t h_(t-1)ᵀ da_t", "db": "Σ_t da_t summed over the batch (axis=0)"}
    step = {"dWx": "xᵀ da", "dWh": "prev_hᵀ da", "db": "da summed over the batch (axis=0)"}
    gru = "dax = [dr, dz, dn], dah = [dr, dz, r ⊙ dn] (torch's order): dn = dnext_h ⊙ (1 − z) ⊙ (1 − n²), " \
          "dr = dn ⊙ (prev_h Wh_n + bh_n) ⊙ r(1 − r), dz = dnext_h ⊙ (prev_h − n) ⊙ z(1 − z)"
    gates = "da = [di, df, do, dg] (cs231n's order): di = dc ⊙ g ⊙ i(1 − i), df = dc ⊙ c_(t-1) ⊙ f(1 − f), " \
            "do = dh ⊙ tanh(c_t) ⊙ o(1 − o), dg = dc ⊙ i ⊙ (1 − g²), dc = dnext_c + dh ⊙ o ⊙ (1 − tanh²(c_t))"
    return {
        "rnn_step": RecurrentOp("rnn", 1, ("dnext_h", "x", "prev_h", "Wx", "Wh", "b"),
                                ("dx", "dprev_h", "dWx", "dWh", "db"),
                                {"dx": "da Wxᵀ with da = dnext_h ⊙ (1 − next_h²)", "dprev_h": "da Whᵀ", **step}),
        "rnn": RecurrentOp("rnn", RECURRENT_WIDTHS["T"], ("dh", "x", "h0", "Wx", "Wh", "b"),
                           ("dx", "dh0", "dWx", "dWh", "db"),
                           {"dx": "dx[:, t] = da_t Wxᵀ, da_t = (dh[:, t] + dprev_h) ⊙ (1 − h_t²) from t = T down to 1",
                            "dh0": "step 1's dprev_h, da_1 Whᵀ", **rnn}),
        "lstm_step": RecurrentOp("lstm", 1, ("dnext_h", "dnext_c", "x", "prev_h", "prev_c", "Wx", "Wh", "b"),
                                 ("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"),
                                 {"dx": f"da Wxᵀ, {gates}", "dprev_h": "da Whᵀ", "dprev_c": "dc ⊙ f", **step}),
        "lstm": RecurrentOp("lstm", RECURRENT_WIDTHS["T"], ("dh", "x", "h0", "Wx", "Wh", "b"),
                            ("dx", "dh0", "dWx", "dWh", "db"),
                            {"dx": f"dx[:, t] = da_t Wxᵀ from t = T down to 1, dh_t = dh[:, t] + dprev_h, dnext_c = "
                                   f"the dprev_c of step t + 1; {gates}", "dh0": "step 1's dprev_h, da_1 Whᵀ", **rnn}),
        "gru_step": RecurrentOp("gru", 1, ("dnext_h", "x", "prev_h", "Wx", "Wh", "bx", "bh"),
                                ("dx", "dprev_h", "dWx", "dWh", "dbx", "dbh"),
                                {"dx": f"dax Wxᵀ, {gru}", "dprev_h": "dnext_h ⊙ z + dah Whᵀ", "dWx": "xᵀ dax",
                                 "dWh": "prev_hᵀ dah", "dbx": "dax summed over the batch (axis=0)",
                                 "dbh": "dah summed over the batch (axis=0)"}),
        "gru": RecurrentOp("gru", RECURRENT_WIDTHS["T"], ("dh", "x", "h0", "Wx", "Wh", "bx", "bh"),
                           ("dx", "dh0", "dWx", "dWh", "dbx", "dbh"),
                           {"dx": f"dx[:, t] = dax_t Wxᵀ from t = T down to 1, dnext_h = dh[:, t] + dprev_h of step "
                                  f"t + 1; {gru}", "dh0": "step 1's dprev_h, dnext_h ⊙ z + dah Whᵀ",
                            "dWx": "Σ_t x_tᵀ dax_t", "dWh": "Σ_t h_(t-1)ᵀ dah_t", "dbx": "Σ_t dax_t summed over the batch",
                            "dbh": "Σ_t dah_t summed over the batch"}),
    }


def _cs231n_gates(a, cell):
    """The LSTM's gate blocks (rows of ``a``) between cs231n's order i, f, o, g and torch's i, f, g, o (either way)."""
    if cell != "lstm":
        return a
    i, f, third, fourth = np.split(a, 4)
    return np.concatenate([i, f, fourth, third])


def _recurrent_point(op, seed) -> dict:
    """The op's arguments at one point, cs231n's shapes, at the scale of an initialised network."""
    rng = np.random.default_rng([seed, zlib.crc32(op.cell.encode())])
    n, d, h, t = BATCH, RECURRENT_WIDTHS["D"], RECURRENT_WIDTHS["H"], op.steps
    g = recurrent_cell(op.cell).gates
    shapes = {"dnext_h": (n, h), "dnext_c": (n, h), "dh": (n, t, h), "x": (n, t, d) if t > 1 else (n, d),
              "prev_h": (n, h), "h0": (n, h), "prev_c": (n, h), "Wx": (d, g * h), "Wh": (h, g * h), "b": (g * h,),
              "bx": (g * h,), "bh": (g * h,)}
    scale = {"Wx": d ** -0.5, "Wh": h ** -0.5, "b": BIAS_SCALE, "bx": BIAS_SCALE, "bh": BIAS_SCALE}
    out = {a: rng.normal(size=shapes[a]) * scale.get(a, 1.0) for a in op.arguments}
    for a in ("prev_h", "h0"):  # a hidden state: an output of tanh (or o ⊙ tanh(c))
        if a in out:
            out[a] = np.tanh(out[a])
    return out


class _Recurrent:
    """The recurrent op's sequence from a given state: ``recurrent.backprop`` reads ``cell``, ``length``, ``sequences``."""
    sequences = True

    def __init__(self, cell, length):
        self.make, self.length = cell, length

    @property
    def cell(self):
        return self.make()


class Numeric:
    """A float matrix with the explicit-matrix interface the recurrent op's cells and ``backprop`` use
    (``*`` as the matrix product, ``multiply_elementwise``, ``applyfunc``, slices, ``col_join``), held in
    NumPy: the op's own BPTT runs on it at NumPy's speed. Its ``_op_priority`` wins over SymPy's matrices,
    so a SymPy zero or ones matrix the op's code makes meets it through its reflected operators."""
    _op_priority = 100.0

    def __init__(self, a):
        self.a = np.asarray(a, dtype=float)

    @staticmethod
    def of(m):
        return m.a if isinstance(m, Numeric) else np.array(sp.Matrix(m).tolist(), dtype=float)

    shape = property(lambda self: self.a.shape)
    rows = property(lambda self: self.a.shape[0])
    cols = property(lambda self: self.a.shape[1])
    T = property(lambda self: Numeric(self.a.T))

    def __getitem__(self, key):
        return Numeric(self.a[key])

    def __add__(self, other):
        return Numeric(self.a + Numeric.of(other))

    __radd__ = __add__

    def __sub__(self, other):
        return Numeric(self.a - Numeric.of(other))

    def __rsub__(self, other):
        return Numeric(Numeric.of(other) - self.a)

    def __mul__(self, other):
        return Numeric(self.a @ Numeric.of(other))

    def __rmul__(self, other):
        return Numeric(Numeric.of(other) @ self.a)

    def multiply_elementwise(self, other):
        return Numeric(self.a * Numeric.of(other))

    def applyfunc(self, fn):
        """``fn`` (a SymPy function or formula of one entry) on each entry."""
        return Numeric(np.vectorize(lambda v: float(fn(sp.Float(v))), otypes=[float])(self.a))

    def col_join(self, other):
        return Numeric(np.vstack([self.a, Numeric.of(other)]))

    def as_immutable(self):
        return self


def recurrent_gradients(op, point, mistakes) -> dict:
    """{output: array} of cs231n's backward function for ``op`` at ``point``, with ``mistakes`` (the keys
    ``diagnose.BoundCell`` reads, and "convention") made in it: the recurrent op's BPTT from the given state."""
    n, d, h, t = point["x"].shape[0], RECURRENT_WIDTHS["D"], RECURRENT_WIDTHS["H"], op.steps
    gru = op.cell == "gru"
    # z and 1 - z swapped throughout is torch's GRU with z's weights and biases negated: z = σ(-a_z), so its
    # gradients are torch's at the negated parameters, with their z blocks negated
    flip = np.where((np.arange(3 * h) >= h) & (np.arange(3 * h) < 2 * h), -1.0, 1.0) if mistakes.get("convention") \
        else 1.0
    x = point["x"].reshape(n, t, d)
    dh = point["dh"] if "dh" in point else point["dnext_h"].reshape(n, 1, h)
    X = Numeric(np.vstack([np.zeros((d, n)), x.reshape(n, t * d).T]))  # step 0 sets the state and reads no x
    G = Numeric(np.vstack([np.zeros((h, n)), dh.reshape(n, t * h).T]))
    W_ih, W_hh = (Numeric(_cs231n_gates((point[w] * flip).T, op.cell)) for w in ("Wx", "Wh"))
    b_ih = Numeric(_cs231n_gates((point["bx" if gru else "b"] * flip).reshape(-1, 1), op.cell))
    b_hh = Numeric((point["bh"] * flip).reshape(-1, 1) if gru else np.zeros(b_ih.shape))
    state = [Numeric(point.get("prev_h", point.get("h0")).T), Numeric(point.get("prev_c", np.zeros((n, h))).T)]
    dc = Numeric(point.get("dnext_c", np.zeros((n, h))).T)
    kept = {}
    inner = recurrent_cell(op.cell)
    sequence = _Recurrent(lambda: BoundCell(inner, tuple(state[:inner.states]), dc, t, mistakes, kept), t + 1)
    dX, dW_ih, dW_hh, db_ih, db_hh = recurrent_backprop(sequence, G, X, W_ih, W_hh, b_ih, b_hh)
    dx = Numeric.of(dX)[d:].T.reshape(n, t, d)
    initial = kept["initial"]
    out = {"dx": dx if t > 1 else dx[:, 0], "dWx": _cs231n_gates(Numeric.of(dW_ih), op.cell).T * flip,
           "dWh": _cs231n_gates(Numeric.of(dW_hh), op.cell).T * flip,
           "dbx" if gru else "db": _cs231n_gates(Numeric.of(db_ih), op.cell).ravel() * flip,
           "dh0" if t > 1 else "dprev_h": Numeric.of(initial[0]).T}
    if gru:
        out["dbh"] = Numeric.of(db_hh).ravel() * flip
        if "db_hh" in kept:  # a mistake's share of the n gate's hidden bias beside the loop's
            out["dbh"][2 * h:] += Numeric.of(kept["db_hh"]).ravel()
    if op.cell == "lstm" and t == 1:
        out["dprev_c"] = Numeric.of(initial[1]).T
    return out


#: The recurrent ops' arguments that hold the batch (N first); the weights and biases do not
BATCHED = ("dnext_h", "dnext_c", "dh", "x", "prev_h", "h0", "prev_c")


def recurrent_targets(op, points):
    """``targets(overrides)`` for OpJudge: per point the op's gradients with the mistakes of ``overrides``;
    a "sum dW" key keeps one step's share of that shared weight's gradient, "first" (step 1) or "last" (T);
    "clip" (c, each) clips the weights' and biases' gradients to [-c, c], each sample's before the sum if each."""
    cache, samples = {}, {}

    def at(point, overrides):
        mistakes = {k: v for k, v in overrides.items() if not k.startswith("sum ")}
        out = recurrent_gradients(op, point, mistakes)
        for name, which in ((k[4:], v) for k, v in overrides.items() if k.startswith("sum ")):
            if which == "last":  # every step before T contributes nothing
                out[name] = recurrent_gradients(op, point, {**mistakes, "zeroed": "before_last"})[name]
            else:  # the whole sum less the sum without step 1
                out[name] = out[name] - recurrent_gradients(op, point, {**mistakes, "zeroed": "first"})[name]
        return out

    def each_sample(key, rest):
        """Per point, each sample's gradients alone (a batch of one), with the mistakes ``rest``."""
        if key not in samples:
            samples[key] = [[at({k: v[i:i + 1] if k in BATCHED else v for k, v in point.items()}, rest)
                             for i in range(len(point["x"]))] for point in points]
        return samples[key]

    def targets(overrides):
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            if "clip" not in overrides:
                cache[key] = [at(point, overrides) for point in points]
                return cache[key]
            bound, each = overrides["clip"]
            rest = {k: v for k, v in overrides.items() if k != "clip"}
            wholes = targets(rest)
            parts = each_sample(tuple(sorted(rest.items())), rest) if each else [[whole] for whole in wholes]
            cache[key] = [{**whole, **{name: sum(np.clip(p[name], -bound, bound) for p in part)
                                       for name in whole if name.startswith(("dW", "db"))}}
                          for whole, part in zip(wholes, parts)]
        return cache[key]
    return targets


#: factor_message's view of a recurrent op: no loss of its own, so no hint of a square or a mean
_NO_LOSS = SimpleNamespace(outputs=1, loss=SimpleNamespace(pointwise=sp.Integer(0), reduction="sum"))



def _spelled_task(op, points, right, spellings: dict, dtypes=None) -> tuple:
    """(the child's task, the arguments' shapes for the header) of an op whose outputs a function may also
    return in a dict keyed by the names people write (``spellings``, by output): each random point's
    arguments, float64 unless ``dtypes`` names another, and the sizes of the right gradients ``right``."""
    dtypes = dtypes or {}
    outputs = list(op.outputs)
    task = {"cases": [{"args": [(p[a].tolist(), dtypes.get(a, "float64")) for a in op.arguments]} for p in points],
            "outputs": outputs, "loss": False, "names": {n: [n] for n in outputs},
            "spellings": {n: list(spellings[n]) for n in outputs},
            "sizes": {n: int(right[0][n].size) for n in outputs}}
    return task, ", ".join(f"{a} {points[0][a].shape}" for a in op.arguments)

def _check_recurrent_op(op_name, op, target, limits):
    path, name = _split_target(target)
    points = [_recurrent_point(op, seed) for seed in SEEDS]
    targets = recurrent_targets(op, points)
    square = op.cell == "rnn"
    views = (("dWh", lambda a: a.T if a.ndim == 2 and a.shape[0] == a.shape[1] else None,
              lambda a: "dWh transposed: dWh = prev_hᵀ da (H × H, so daᵀ prev_h runs too)"),) if square else ()
    judge = OpJudge(targets, recurrent_worlds(op.cell, op.steps, square), _NO_LOSS, views)
    right = targets({})
    outputs = list(op.outputs)
    task, shapes = _spelled_task(op, points, right, RECURRENT_NAMES)
    header = f"{terminal_text(target)}: {op_name} backward (cs231n), {shapes}, {len(points)} random points"

    def verdicts(results):
        """A dict may leave outputs out (Karpathy's computes no dx): those are listed, not judged."""
        returned = [n for n in outputs if all(n in r for r in results)]
        if not returned:
            return [f"  no gradient returned: return ({', '.join(outputs)}), or a dict with keys such as "
                    + ", ".join(RECURRENT_NAMES[n][1] for n in outputs)], 1
        lines, worst = _cnn_verdicts(judge, right, returned, results, op.correct.get)
        return lines + [f"  {n}: not returned, not checked" for n in outputs if n not in returned], worst
    return _run_and_judge(path, name, task, limits, header, verdicts)


# -- scaled dot-product attention (``check-code --op attention``), in CMU 11-785's layout --------------
# The reference is chainrule's attention op's own backward (``attention.backprop``, proved against sympy.diff
# in tests/test_ops.py and tests/test_attention.py). Per-head q, k, v (N, H, T, d) are one op of 3H heads of
# d features whose input X (T, 3·H·d) is [q k v] with the heads side by side: selector weights make the first
# H heads' queries, keys and values q, k and v, the output projection keeps those heads and zeroes the
# others, so the op's dX is [dq dk dv]. The mask (True = ignore, as CMU's and torch's) is the op's causal one.
ATTENTION_WIDTHS = {"H": 2, "T": 3, "d": 4}  # d ≠ T, so a product transposed the wrong way has the wrong
# shape; d = 4 keeps 1/√d = 1/2 rational, so SymPy multiplies floats, not floats times √d


@dataclass(frozen=True)
class AttentionOp:
    """The attention op's check: its arguments, outputs and the correct formulas, printed; ``layer``: the whole
    torch.nn.MultiheadAttention layer (projections, heads split and merged), else one attention per head."""
    arguments: tuple
    outputs: tuple
    correct: dict
    layer: bool = False


def attention_ops() -> dict:
    """attention: the backward of out = softmax(q kᵀ/√d + mask) v for every sample and head."""
    return {"attention": AttentionOp(
        ("dout", "q", "k", "v", "mask"), ("dq", "dk", "dv"),
        {"dq": "dS k / √d with dS = A ⊙ (dA − rowsum(dA ⊙ A)), dA = dout vᵀ, A = softmax(q kᵀ/√d + mask) row by row",
         "dk": "dSᵀ q / √d", "dv": "Aᵀ dout"}),
        "mha": AttentionOp(
            ("dout", "x", "in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias", "num_heads", "mask"),
            ("dx", "din_proj_weight", "din_proj_bias", "dout_proj_weight", "dout_proj_bias"),
            {"dx": "dP in_proj_weight, dP = [dQ dK dV] (N, T, 3E), each the heads' dq, dk, dv merged as they were split",
             "din_proj_weight": "Σ_n,t dP_tᵀ x_t (dPᵀ x summed over the batch)", "din_proj_bias": "dP summed over N and T",
             "dout_proj_weight": "Σ_n,t dout_tᵀ o_t, o the heads' outputs merged", "dout_proj_bias": "dout summed over N and T"},
            True)}


def _attention_point(seed, layer=False) -> dict:
    """The op's arguments at one point: unit-scale q, k, v (or x) and dout, weights of variance 1/E, the causal mask
    (True above the diagonal)."""
    rng = np.random.default_rng([seed, zlib.crc32(b"mha" if layer else b"attention")])
    n, h, t, d = BATCH, ATTENTION_WIDTHS["H"], ATTENTION_WIDTHS["T"], ATTENTION_WIDTHS["d"]
    e = h * d
    if layer:
        out = {"dout": rng.normal(size=(n, t, e)), "x": rng.normal(size=(n, t, e)),
               "in_proj_weight": rng.normal(size=(3 * e, e)) * e ** -0.5, "in_proj_bias": rng.normal(size=3 * e) * BIAS_SCALE,
               "out_proj_weight": rng.normal(size=(e, e)) * e ** -0.5, "out_proj_bias": rng.normal(size=e) * BIAS_SCALE,
               "num_heads": np.array(h)}
    else:
        out = {a: rng.normal(size=(n, h, t, d)) for a in ("dout", "q", "k", "v")}
    out["mask"] = np.triu(np.ones((t, t), dtype=bool), 1)
    return out


def _attention_embedding(point, causal: bool):
    """(spec, G, X, W_in, b_in, W_out, b_out) of the op that computes ``point``'s attention (see above)."""
    from ..ops.attention import AttentionSpec
    n, h, t, d = point["q"].shape
    e = h * d
    E = 3 * e
    W_in, W_out = np.zeros((3 * E, E)), np.zeros((E, E))
    for k in range(3):  # W_Q, W_K, W_V: the first H heads read q, k, v
        W_in[k * E + np.arange(e), k * e + np.arange(e)] = 1
    W_out[np.arange(e), np.arange(e)] = 1

    def merged(a):  # (N, H, T, d) -> each sample's (T, H·d), heads side by side
        return a.transpose(0, 2, 1, 3).reshape(n, t, e)
    X = np.concatenate([merged(point[a]) for a in "qkv"], axis=2)
    G = np.concatenate([merged(point["dout"]), np.zeros((n, t, 2 * e))], axis=2)
    column = lambda a: sp.Matrix(a.reshape(n, -1).T)  # (T·E, N), (t, f) order
    return (AttentionSpec(t, 3 * h, causal, False), column(G), column(X), sp.Matrix(W_in), sp.zeros(3 * E, 1),
            sp.Matrix(W_out), sp.zeros(E, 1))


def attention_reference(point, causal=True) -> dict:
    """{dq, dk, dv} at ``point`` from the attention op's own backward."""
    from ..ops.attention import backprop
    spec, G, X, W_in, b_in, W_out, b_out = _attention_embedding(point, causal)
    n, h, t, d = point["q"].shape
    dX = np.array(backprop(spec, G, X, W_in, b_in, W_out, b_out)[0].tolist(), dtype=float).T.reshape(n, t, 3, h, d)
    return {name: dX[:, :, i].transpose(0, 2, 1, 3) for i, name in enumerate(("dq", "dk", "dv"))}


def attention_weights(point, causal=True):
    """A (N, H, T, T) at ``point``: the attention op's own forward, each head's softmax of its scores."""
    from ..ops.attention import _sample_forward, _samples
    spec, _, X, W_in, b_in, W_out, b_out = _attention_embedding(point, causal)
    heads = point["q"].shape[1]
    return np.array([[np.array(_sample_forward(spec, Xn, W_in, b_in, W_out, b_out)["heads"][j][3].tolist(), dtype=float)
                      for j in range(heads)] for Xn in _samples(X, spec.length)])


def layer_reference(point, causal=True) -> dict:
    """The mha op's gradients at ``point`` from the attention op's own backward, on torch's parameters as given."""
    from ..ops.attention import AttentionSpec, backprop
    n, t, e = point["x"].shape
    column = lambda a: sp.Matrix(a.reshape(n, -1).T)  # (T·E, N), (t, f) order
    grads = backprop(AttentionSpec(t, int(point["num_heads"]), causal, True), column(point["dout"]), column(point["x"]),
                     *(sp.Matrix(point[p].reshape(point[p].shape[0], -1)) for p in
                       ("in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias")))
    dx, *params = (np.array(g.tolist(), dtype=float) for g in grads)
    return {"dx": dx.T.reshape(n, t, e), "din_proj_weight": params[0], "din_proj_bias": params[1].ravel(),
            "dout_proj_weight": params[2], "dout_proj_bias": params[3].ravel()}


def _split(a, heads):
    """(N, T, E) -> (N, H, T, d): the heads' columns, as the layer's forward splits them."""
    n, t, e = a.shape
    return a.reshape(n, t, heads, e // heads).transpose(0, 2, 1, 3)


def heads_point(point) -> dict:
    """The per-head attention inside the mha layer at ``point``: its q, k, v and the heads' upstream gradient."""
    heads, W, b = int(point["num_heads"]), point["in_proj_weight"], point["in_proj_bias"]
    e = W.shape[1]
    out = {a: _split(point["x"] @ W[i * e:(i + 1) * e].T + b[i * e:(i + 1) * e], heads) for i, a in enumerate("qkv")}
    return {**out, "dout": _split(point["dout"] @ point["out_proj_weight"], heads), "mask": point["mask"]}


def propagated(point, right, heads, mistakes) -> dict:
    """The mha layer's gradients when its heads' dq, dk, dv are ``heads`` (mistaken), the output projection's
    ``right``'s: back through the merge of the heads ("merge": a reshape without the transpose back) and the
    projections, which act at every position."""
    n, h, t, d = heads["dq"].shape
    merge = (lambda a: a.reshape(n, t, h * d)) if mistakes.get("merge") else \
        (lambda a: a.transpose(0, 2, 1, 3).reshape(n, t, h * d))
    dP = np.concatenate([merge(heads[g]) for g in ("dq", "dk", "dv")], axis=2)  # (N, T, 3E)
    return {**right, "dx": dP @ point["in_proj_weight"], "din_proj_weight": np.einsum("nti,ntj->ij", dP, point["x"]),
            "din_proj_bias": dP.sum(axis=(0, 1))}


@functools.lru_cache(maxsize=None)
def _at(seed, causal, what):
    """The attention op's gradients ("grads": per head; "layer": mha's; "heads": mha's heads') or A ("weights"; "heads
    weights") at seed's point, made once per process (SymPy takes about a second for one)."""
    point = _attention_point(seed, what != "grads" and what != "weights")
    made = {"grads": lambda: attention_reference(point, causal), "weights": lambda: attention_weights(point, causal),
            "layer": lambda: layer_reference(point, causal), "heads": lambda: attention_reference(heads_point(point), causal),
            "heads weights": lambda: attention_weights(heads_point(point), causal)}
    return made[what]()


def attention_targets(seeds, layer=False):
    """``targets(overrides)`` for OpJudge: at each seed's point the op's gradients with the mistakes of
    ``overrides`` (the keys ``diagnose.attention_worlds`` set)."""
    cache = {}

    def at_seed(s, overrides):
        causal = not overrides.get("unmasked")
        if not layer:
            return attention_mistaken(_attention_point(s), _at(s, causal, "grads"),
                                      lambda: _at(s, causal, "weights"), overrides)
        if not overrides:
            return _at(s, True, "layer")
        point = _attention_point(s, True)
        heads = attention_mistaken(heads_point(point), _at(s, causal, "heads"), lambda: _at(s, causal, "heads weights"),
                                   overrides)
        return propagated(point, _at(s, True, "layer"), heads, overrides)

    def targets(overrides):
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            cache[key] = [at_seed(s, overrides) for s in seeds]
        return cache[key]
    return targets


def attention_mistaken(point, right, weights, mistakes) -> dict:
    """{dq, dk, dv}: the reference ``right`` with ``mistakes`` made in it; ``weights()`` gives A, read only by
    the mistakes made after the softmax's backward."""
    out = dict(right)
    root = math.sqrt(point["q"].shape[-1])
    if mistakes.get("elementwise") or mistakes.get("transpose"):
        dS = mistaken_scores(weights(), point["dout"] @ np.swapaxes(point["v"], -1, -2), mistakes)
        out["dq"] = dS @ point["k"] / root
        out["dk"] = (dS if mistakes.get("transpose") else np.swapaxes(dS, -1, -2)) @ point["q"] / root
    for name in ("dq", "dk"):
        if mistakes.get(f"scale {name}"):
            out[name] = out[name] * root
    return out


def _check_attention_op(op_name, op, target, limits):
    path, name = _split_target(target)
    points = [_attention_point(seed, op.layer) for seed in SEEDS]
    targets = attention_targets(SEEDS, op.layer)
    judge = OpJudge(targets, attention_worlds(op.layer), _NO_LOSS)
    right = targets({})
    outputs = list(op.outputs)
    task, shapes = _spelled_task(op, points, right, ATTENTION_NAMES, {"mask": "bool", "num_heads": "int64"})
    header = f"{terminal_text(target)}: {op_name} backward (causal), {shapes}, {len(points)} random points"

    def verdicts(results):
        return _cnn_verdicts(judge, right, outputs, results, op.correct.get)
    return _run_and_judge(path, name, task, limits, header, verdicts)
