"""Section 3: how derivation time grows with depth.

Staged: ``derive.derive`` plus ``codegen.generate`` on "4 -> 4 tanh -> ... -> 1 ; mse", where
every adjoint is a named symbol, so the work per layer stays flat. Naive: one expanded SymPy
expression of the loss of a width-2 tanh net in scalar symbols, differentiated by
``sympy.diff`` for every parameter; the expression (counted as a tree, as it would print) grows
like 2**depth. Each measurement runs in its own process under a time cap.

Run as a worker: ``python derivation.py staged DEPTH`` or ``python derivation.py naive DEPTH``
prints one JSON line.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def deep_spec(depth: int, width: int = 4) -> str:
    """An inline spec with ``depth`` layers: ``depth - 1`` tanh layers of ``width``, then 1 output."""
    return " -> ".join([str(width)] + [f"{width} tanh"] * (depth - 1) + ["1"]) + " ; mse"


def staged(depth: int) -> dict:
    from derive import derive
    start = time.perf_counter()
    derivation = derive(deep_spec(depth))
    derived = time.perf_counter()
    result = {"depth": depth, "derive_s": derived - start, "steps": len(derivation.steps)}
    try:
        from codegen.emit import generate
    except ImportError as err:
        result["generate_skipped"] = f"codegen.generate is not importable yet ({err})"
        return result
    source = generate(derivation)
    result["generate_s"] = time.perf_counter() - derived
    result["source_lines"] = source.count("\n")
    return result


def tree_size(expr, memo=None) -> int:
    """Nodes of ``expr`` written out as a tree (shared subexpressions counted each time)."""
    memo = {} if memo is None else memo
    if expr not in memo:
        memo[expr] = 1 + sum(tree_size(arg, memo) for arg in expr.args)
    return memo[expr]


def naive(depth: int, width: int = 2) -> dict:
    import sympy as sp
    inputs = sp.symbols(f"x0:{width}", real=True)
    target = sp.Symbol("y", real=True)
    params, a = [], list(inputs)
    for l in range(1, depth + 1):
        units = 1 if l == depth else width
        W = [[sp.Symbol(f"w{l}_{i}{j}", real=True) for j in range(len(a))] for i in range(units)]
        b = [sp.Symbol(f"b{l}_{i}", real=True) for i in range(units)]
        params += [w for row in W for w in row] + b
        z = [sum((W[i][j] * a[j] for j in range(len(a))), b[i]) for i in range(units)]
        a = z if l == depth else [sp.tanh(zi) for zi in z]
    loss = (a[0] - target) ** 2
    start = time.perf_counter()
    grads = [sp.diff(loss, p) for p in params]
    seconds = time.perf_counter() - start
    memo = {}
    return {"depth": depth, "diff_s": seconds, "params": len(params), "loss_tree_size": tree_size(loss, memo),
            "gradient_tree_size": sum(tree_size(g, memo) for g in grads)}


def in_subprocess(kind: str, depth: int, cap: float) -> dict:
    """Run one worker under a wall-time cap; a timeout or crash comes back as a note."""
    try:
        done = subprocess.run([sys.executable, str(HERE / "derivation.py"), kind, str(depth)],
                              capture_output=True, text=True, timeout=cap)
    except subprocess.TimeoutExpired:
        return {"depth": depth, "timed_out": True, "cap_s": cap}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"depth": depth, "error": last}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool) -> dict:
    staged_rows = []
    for depth in (10, 25, 50, 100, 200):
        row = in_subprocess("staged", depth, 60 if quick else 300)
        if "derive_s" in row:
            row["total_s"] = row["derive_s"] + row.get("generate_s", 0.0)
            row["per_layer_ms"] = 1e3 * row["total_s"] / depth
        staged_rows.append(row)
        print(f"  derivation depth {depth}: done", file=sys.stderr, flush=True)
    naive_rows, cap = [], 5.0 if quick else 30.0
    for depth in range(2, 9):
        row = in_subprocess("naive", depth, cap)
        naive_rows.append(row)
        if row.get("timed_out") or row.get("error"):
            break   # deeper ones only take longer
    print("  naive sympy.diff: done", file=sys.stderr, flush=True)
    return {"staged": staged_rows, "naive": naive_rows, "naive_cap_s": cap}


if __name__ == "__main__":
    kind, depth = sys.argv[1], int(sys.argv[2])
    sys.path.insert(0, str(HERE.parent))
    print(json.dumps({"staged": staged, "naive": naive}[kind](depth)))
