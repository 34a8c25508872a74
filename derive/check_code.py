"""``chainrule check-code SPEC FILE.py:FUNCTION``: run a person's NumPy backward pass and check it.

The calling convention, batch-first like the generated module (N samples as rows)::

    def backward(params, cache, X, T) -> dict:
        params  {"W1": (out, in), "b1": (out,), "W2": ..., ...}      float64 arrays
        cache   {"X": (N, in), "Z1": (N, n1), "A1": (N, n1), ..., "ZL": (N, out), "Yhat": (N, out)}
                (A_l of a hidden identity layer is Z_l; Yhat is the output after its activation;
                M_l, (N, n_l), is the inverted-dropout mask of a layer with dropout: A_l = f(Z_l) * M_l)
        X       (N, in) inputs; T (N, out) targets (one-hot rows for cross-entropy)
        returns {"W1": dL/dW1 (out, in), "b1": dL/db1 (out,), ...}

The returned keys may also be spelt ``dW1``, ``dL_dW1`` or ``grad_W1``; a bias gradient may be
``(out,)``, ``(1, out)`` or ``(out, 1)``. When the dict also has ``X`` (``dX``, ``dL_dX``), dL/dX,
``(N, in)``, is checked too. The loss is the spec's, reduction included (a mean over
the batch gives the gradients a 1/N).

The function runs in a child process with a time limit (a crash, an exception or a hang is
reported, never inherited) at two random points with N = 3. Its gradients are compared with
the derivation's batch-form steps evaluated at the same points, and a difference is explained
as ``check`` does: transposed, sign, constant factor, an activation derivative left out, a
bias gradient not summed over the batch, a softmax output read as element-wise.
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import sympy as sp

from .checking import BATCH, Checker, _factor_message, numeric_value
from .errors import ChainruleError
from .nodes import Pointwise

SEEDS = (11, 12)

_RUNNER = r"""
import importlib.util, json, os, sys, traceback
path, name, out = sys.argv[1], sys.argv[2], sys.argv[3]
def report(payload):
    with open(out, "w") as handle:
        json.dump(payload, handle)
try:
    import numpy as np
    cases = json.load(sys.stdin)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location("checked_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
except BaseException:
    report({"stage": "import", "error": traceback.format_exc(limit=4)})
    sys.exit(0)
function = getattr(module, name, None)
if not callable(function):
    report({"stage": "missing", "error": f"{path} has no function {name}"})
    sys.exit(0)
results = []
for case in cases:
    arrays = {k: {n: np.array(v, dtype=float) for n, v in case[k].items()} for k in ("params", "cache")}
    try:
        grads = function(arrays["params"], arrays["cache"], np.array(case["X"], dtype=float),
                         np.array(case["T"], dtype=float))
        if isinstance(grads, tuple) and len(grads) == 2 and isinstance(grads[1], dict):
            grads = grads[1]
        if not isinstance(grads, dict):
            raise TypeError(f"{name} returned {type(grads).__name__}, not a dict of gradients")
        results.append({str(k): np.asarray(v, dtype=float).tolist() for k, v in grads.items()})
    except BaseException:
        report({"stage": "call", "error": traceback.format_exc(limit=4)})
        sys.exit(0)
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
    """For each seed: (the arguments as JSON-ready lists, the expected gradients, the step values)."""
    out = []
    for seed in SEEDS:
        env = checker.evaluate_steps(checker.leaves(random.Random(seed)))
        out.append((_arguments(checker, env), expected_gradients(checker, env), env))
    return out


def _array(value):
    return np.array(value.tolist(), dtype=float)


def _arguments(checker, env):
    q, net = checker.q, checker.net
    params, cache = {}, {"X": _array(env[q["X"].symbol]).T.tolist()}
    for l in range(1, len(net.layers) + 1):
        params[f"W{l}"] = _array(env[q[f"W{l}"].symbol]).tolist()
        params[f"b{l}"] = _array(env[q[f"b{l}"].symbol]).ravel().tolist()
        cache[f"Z{l}"] = _array(env[q[f"Z{l}"].symbol]).T.tolist()
        if l < len(net.layers):
            cache[f"A{l}"] = _array(env[q.get(f"A{l}", q[f"Z{l}"]).symbol]).T.tolist()
        if f"M{l}" in q:
            cache[f"M{l}"] = _array(env[q[f"M{l}"].symbol]).T.tolist()
    cache["Yhat"] = _array(env[q["Yhat"].symbol]).T.tolist()
    return {"params": params, "cache": cache, "X": cache["X"], "T": _array(env[q["Y"].symbol]).T.tolist()}


def expected_gradients(checker, env):
    """The parameters' gradients, batch-first, and "X": dL/dX, (N, in), which no step names."""
    out = {}
    for name in checker.net.param_names:
        value = _array(env[checker.q[f"dL_d{name}"].symbol])
        out[name] = value.ravel() if name.startswith("b") else value
    out["X"] = np.asarray(numeric_value(checker.grads["x"][2], env), dtype=float).T
    return out


def _without(checker, layer, what):
    """Overrides that leave layer ``layer``'s activation derivative (or dropout mask) out of its Δ."""
    key = f"Delta{layer}"
    step = next(s for s in checker.sweep.steps if s.target.key == key)
    if not isinstance(step.rhs, sp.HadamardProduct):
        return None
    if what == "mask":
        def dropped(a):
            return isinstance(a, sp.MatrixSymbol) and a.name == f"M{layer}"
    else:
        def dropped(a):
            return isinstance(a, Pointwise) and a.label.endswith("'")
    kept = [a for a in step.rhs.args if not dropped(a)]
    if len(kept) == len(step.rhs.args):
        return None
    rhs = kept[0] if len(kept) == 1 else sp.HadamardProduct(*kept)
    return {key: rhs}


def run_child(path, name, payload, timeout):
    """The child's report: {'stage': 'done', 'results': [...]} or a failure stage with the error."""
    with tempfile.TemporaryDirectory(prefix="chainrule-check-") as tmp:
        out = os.path.join(tmp, "result.json")
        proc = subprocess.Popen([sys.executable, "-c", _RUNNER, os.path.abspath(path), name, out],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=os.path.dirname(os.path.abspath(path)), start_new_session=True)
        try:
            _, stderr = proc.communicate(json.dumps(payload).encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            return {"stage": "timeout", "error": f"{name} did not finish within {timeout:g} s"}
        try:
            with open(out, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
            return {"stage": "crash", "error": f"the process ended with code {proc.returncode}"
                                               + (": " + " | ".join(tail) if tail else "")}


def _lookup(grads: dict, name: str):
    for key in (name, f"d{name}", f"dL_d{name}", f"grad_{name}", f"d{name}".lower(), name.lower()):
        if key in grads:
            return np.array(grads[key], dtype=float)
    return None


def _close(a, b) -> bool:
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=1e-9)


def judge(name, got_by_case, want_by_case, alternatives, network) -> str:
    """'' when right, else the diagnosis for one parameter's gradient: one usual mistake, else a pair.

    A mistake is a view of yours (transposed, not summed over the batch), a gradient computed
    without a step (``alternatives``: an activation derivative or a dropout mask left out) or a
    constant factor; each combination of at most one of each kind is tried.
    """
    want0, got0 = want_by_case[0], got_by_case[0]
    if got0 is None:
        return f"no gradient for {name} in the returned dict (keys {name}, d{name} or dL_d{name})"
    if name.startswith("b") and got0.size == want0.size:
        got_by_case = [g.ravel() for g in got_by_case]
        got0 = got_by_case[0]
    if all(_close(g, w) for g, w in zip(got_by_case, want_by_case)):
        return ""
    views = [("", got_by_case)]
    if want0.ndim == 2 and got0.shape == want0.T.shape:
        views.append((f"transposed: yours is {got0.shape}, the transpose of dL/d{name}", [g.T for g in got_by_case]))
    if name.startswith("b") and got0.ndim == 2 and got0.shape[0] == BATCH and got0.size == BATCH * want0.size:
        views.append(("missing sum over the batch: yours has one row per sample; sum it with axis=0",
                      [g.sum(axis=0) for g in got_by_case]))
    wants = [("", want_by_case)] + [(label, [a[name] for a in alt]) for label, alt in alternatives]
    found = []
    for view, gots in views:
        for without, expected in wants:
            k = _factor(gots, expected)
            if k is not None:
                found.append(([m for m in (view, without) if m] + ([_factor_message(k, network)] if k != 1 else []),
                              k != 1))
    # the fewest mistakes, a step left out before a factor (a dropout mask of 2s is also a factor of 2)
    found = [labels for labels, _ in sorted(found, key=lambda f: (len(f[0]), f[1]))]
    if found and len(found[0]) == 1:
        return found[0][0]
    if got0.shape != want0.shape and len(views) == 1:
        return f"wrong shape: yours is {got0.shape}, dL/d{name} is {want0.shape}"
    if found and len(found[0]) == 2:
        return f"two mistakes: {found[0][0]}; and {found[0][1]}"
    return "no usual mistake (transpose, sign, factor, activation derivative, sum) or pair of them explains the difference"


def _factor(gots, wants):
    """k when every ``got`` is k times its ``want`` (1 when equal), else None."""
    if any(g.shape != w.shape for g, w in zip(gots, wants)):
        return None
    if all(_close(g, w) for g, w in zip(gots, wants)):
        return 1
    want0 = wants[0]
    big = np.unravel_index(np.argmax(np.abs(want0)), want0.shape)
    if abs(want0[big]) <= 1e-12:
        return None
    k = sp.nsimplify(float(gots[0][big] / want0[big]), rational=True, tolerance=1e-7)
    if k != 0 and all(np.allclose(g, float(k) * w, rtol=1e-6, atol=1e-9) for g, w in zip(gots, wants)):
        return k
    return None


def check_code(derivation, target: str, timeout: float = 20.0):
    """(lines of the report, exit code) for the backward pass FILE.py:FUNCTION."""
    path, name = _split_target(target)
    checker = Checker(derivation, "columns")
    rows = Checker(derivation, "rows")
    prepared = cases(checker)
    report = run_child(path, name, [args for args, _, _ in prepared], timeout)
    if report.get("stage") == "missing":
        raise ChainruleError(report["error"])
    header = f"{target}: batch-first arrays, N = {BATCH}, {len(prepared)} random points"
    if report.get("stage") != "done":
        what = {"import": "importing the file failed", "call": f"{name} raised an exception",
                "timeout": "it did not finish", "crash": "the process crashed"}[report["stage"]]
        error = report["error"].strip().splitlines()
        return [header, f"  {what}: {error[-1] if error else ''}"] + [f"    {line}" for line in error[-4:-1]], 1
    mistaken = []  # (the mistake, overrides of the steps that make it)
    for l, layer in enumerate(derivation.network.layers, start=1):
        for what, label in (("mask", f"missing dropout mask: Δ{l} needs ⊙ M{l}"),
                            ("derivative", f"missing activation derivative: Δ{l} needs ⊙ {layer.activation.name}'(Z{l})")):
            mistaken.append((label, _without(checker, l, what)))
    softmax = checker.elementwise_softmax()
    if softmax:
        mistaken.append((rows.softmax_message(), softmax))
    alternatives = [(label, [expected_gradients(checker, checker.evaluate_steps(
        {s: env[s] for s in env if getattr(s, "name", "") in checker.leaf_keys}, overrides)) for _, _, env in prepared])
        for label, overrides in mistaken if overrides]
    lines, worst, wrong_above = [header], 0, []
    given_x = _lookup(report["results"][0], "X") is not None
    for param in list(reversed(derivation.network.param_names)) + (["X"] if given_x else []):
        got = [_lookup(result, param) for result in report["results"]]
        want = [expected for _, expected, _ in prepared]
        verdict = judge(param, got, [w[param] for w in want], alternatives, derivation.network)
        if not verdict:
            lines.append(f"  dL/d{param}: correct")
            continue
        worst = 1
        correct, _ = rows.printed(rows.target(param))
        lines.append(f"  dL/d{param}: different: {verdict}")
        lines.append(f"    correct: dL/d{param} = {correct}")
        if got[0] is not None:
            lines.append("    " + _difference(np.asarray(got[0]), want[0][param]))
        if wrong_above and verdict.startswith("no usual mistake"):
            lines.append(f"    (dL/d{wrong_above[0]} is already wrong; fix the layers nearer the output first)")
        wrong_above.append(param)
    return lines, worst


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


def cli_check_code(args) -> int:
    from .chain import derive
    derivation = derive(args.spec)
    lines, code = check_code(derivation, args.target, getattr(args, "timeout", 20.0) or 20.0)
    print("\n".join(lines))
    return code
