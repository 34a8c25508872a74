"""Section 1: one train step (forward, loss, every gradient, no update) across peers.

Before any timing, every peer's loss and gradients are compared with the hand-written NumPy
step run in float64 on the same numbers; a mismatch is printed loudly and recorded.
"""
import sys
import tracemalloc

import numpy as np

import hand_numpy
import peers
from nets import NETS, Unavailable, available, load_emitted, make_data, make_params
from timing import interleaved

PEERS = ("hand NumPy", "chainrule", "chainrule unchecked", "PyTorch", "autograd", "jax.jit")
TOLERANCE = {"float64": 1e-8, "float32": 2e-3}   # max |g - g_ref| / max |g_ref|, per gradient


def emitted_step(net, dtype, params, X, T, checked=True):
    """The emitted loss_and_grads, which checks its inputs; or (checked=False) the step train runs
    per batch, _loss_and_grads on inputs checked once beforehand (as train checks them)."""
    module = load_emitted(net.spec, dtype, f"emitted_{net.key.replace('-', '_')}_{dtype}")
    shapes = {k: tuple(v) for k, v in getattr(module, "PARAM_SHAPES", {}).items()}
    if shapes and shapes != net.shapes:
        raise Unavailable(f"emitted PARAM_SHAPES {shapes} differ from the expected {net.shapes}")
    if not hasattr(module, "loss_and_grads"):
        raise Unavailable("the emitted module has no loss_and_grads yet")
    if checked:
        return lambda: module.loss_and_grads(params, X, T)
    if not hasattr(module, "_checked"):
        raise Unavailable("the emitted module has no unchecked step")
    ready, X_ready, Y_ready = module._checked(params, X, T)
    return lambda: module._loss_and_grads(ready, X_ready, Y_ready)


def build_steps(net, dtype, params, X, T) -> tuple:
    """{peer: step} for the peers that run here, and {peer: why skipped} for the rest."""
    makers = {
        "hand NumPy": lambda: (lambda: hand_numpy.loss_and_grads(params, X, T, net.hidden, net.loss)),
        "chainrule": lambda: emitted_step(net, dtype, params, X, T),
        "chainrule unchecked": lambda: emitted_step(net, dtype, params, X, T, checked=False),
        "PyTorch": lambda: peers.make_torch(net, params, X, T),
        "autograd": lambda: peers.make_autograd(net, params, X, T),
        "jax.jit": lambda: peers.make_jax(net, params, X, T),
    }
    return available(makers)


def compare(step, reference, tolerance) -> tuple:
    """(worst relative error over the loss and every gradient, what was worst or None)."""
    value, grads = step()
    grads = peers.to_numpy(grads)
    ref_value, ref_grads = reference
    worst, where = abs(float(value) - ref_value) / max(abs(ref_value), 1e-30), "loss"
    for name, ref in ref_grads.items():
        if name not in grads:
            return float("inf"), f"no gradient {name}"
        got = grads[name]
        if got.shape != ref.shape:
            return float("inf"), f"{name} has shape {got.shape}, expected {ref.shape}"
        err = float(np.max(np.abs(got - ref))) / max(float(np.max(np.abs(ref))), 1e-30)
        if err > worst:
            worst, where = err, name
    return worst, (where if worst > tolerance else None)


class Measured:
    """What measure() found for one case: the steps timed, their times, each peer's worst error, the peers
    whose loss or gradients disagreed, the peers skipped (and why) and the mismatch messages."""

    def __init__(self):
        self.steps, self.times, self.errors, self.bad, self.skipped, self.messages = {}, {}, {}, set(), {}, []

    def rows(self, order, **fields) -> list:
        """One row per timed peer, in ``order``, with ``fields`` (net, label, dtype) and the ratio to hand NumPy."""
        hand = self.times.get("hand NumPy", {}).get("median_s")
        rows = []
        for name in order:
            if name in self.steps:
                t = self.times[name]
                rows.append({**fields, "peer": name, "median_s": t["median_s"], "min_s": t["min_s"],
                             "cpu_median_s": t["cpu_median_s"], "samples": t["samples"],
                             "ratio_to_hand": t["median_s"] / hand if hand else None,
                             "grad_rel_error": self.errors.get(name), "grads_match": name not in self.bad})
        return rows


def measure(label, build, reference, dtypes, rounds, target, extra=None) -> Measured:
    """The peer-timing loop every train-step section shares: for each dtype, the peers of ``build(dtype)``
    ({peer: step}, {peer: why skipped}) are compared with ``reference`` (loss and gradients in float64, to
    TOLERANCE[dtype]); a peer that crashes is reported and dropped. Then the last dtype's peers, and the
    functions in ``extra`` (bounds: the step's GEMMs alone), are timed in interleaved rounds."""
    m = Measured()
    for dtype in dtypes:
        steps, why = build(dtype)
        for name, reason in why.items():
            m.skipped.setdefault(name, reason)
        for name, step in list(steps.items()):
            try:
                err, problem = compare(step, reference, TOLERANCE[dtype])
            except Exception as exc:   # a peer that crashes is reported, not fatal
                err, problem = float("inf"), f"raised {type(exc).__name__}: {exc}"
            m.errors[name] = max(m.errors.get(name, 0.0), err)
            if problem:
                message = (f"GRADIENT MISMATCH: {name} on {label} {dtype}: {problem} "
                           f"(relative error {err:.3g} > {TOLERANCE[dtype]:g})")
                print("!" * 100, f"\n!! {message}\n" + "!" * 100, file=sys.stderr, flush=True)
                m.messages.append(message)
                m.bad.add(name)
                if err == float("inf"):
                    del steps[name]
    m.steps = steps
    m.times = interleaved({**steps, **(extra or {})}, rounds, target)
    return m


def numpy_peaks(steps) -> dict:
    """The tracemalloc peak of one call of each NumPy peer in ``steps`` (hand NumPy, chainrule unchecked), in
    MiB: NumPy reports its buffers to tracemalloc, torch and jax do not."""
    peaks = {}
    for name in ("hand NumPy", "chainrule unchecked"):
        if name in steps:
            steps[name]()
            tracemalloc.start()
            try:
                steps[name]()
                peaks[name] = tracemalloc.get_traced_memory()[1] / 2 ** 20
            finally:
                tracemalloc.stop()
    return peaks


def run(quick: bool) -> dict:
    rounds, target = (5, 0.02) if quick else (15, 0.05)
    rows, skipped, mismatches = [], {}, []
    for net in NETS:
        params64 = make_params(net, np.float64)
        X64, T64 = make_data(net, np.float64)
        reference = hand_numpy.loss_and_grads(params64, X64, T64, net.hidden, net.loss)
        for dtype in ("float64", "float32"):
            params = {k: v.astype(dtype) for k, v in params64.items()}
            X = X64.astype(dtype)
            T = T64 if net.loss == "cross_entropy" else T64.astype(dtype)
            operands = hand_numpy.matmul_operands(net.widths, net.batch, dtype)
            bounds = {"matmuls": hand_numpy.matmuls_only(operands)}
            try:  # PyTorch has its own BLAS: its matmuls alone, for comparison
                bounds["torch matmuls"] = hand_numpy.matmuls_only(peers.torch_operands(operands))
            except Unavailable:
                pass
            m = measure(net.label, lambda d: build_steps(net, d, params, X, T), reference, (dtype,), rounds, target,
                        bounds)
            for name, reason in m.skipped.items():
                skipped.setdefault(name, reason)
            mismatches += m.messages
            bound = m.times["matmuls"]["median_s"]
            torch_bound = m.times.get("torch matmuls", {}).get("median_s") if "PyTorch" in m.steps else None
            for row in m.rows(PEERS, net=net.key, label=net.label, dtype=dtype):
                rows.append({**row, "matmul_bound_s": bound, "matmul_fraction": bound / row["median_s"],
                             "torch_matmul_bound_s": torch_bound})
            print(f"  train step {net.key} {dtype}: done", file=sys.stderr, flush=True)
    return {"rows": rows, "skipped": skipped, "mismatches": mismatches, "checks": input_checks(rows)}


def input_checks(rows) -> list:
    """The cost of the emitted loss_and_grads' input checks, per net and dtype: its time against
    the unchecked step of the same run (the one train runs per batch, having checked once)."""
    out = []
    for checked in rows:
        if checked["peer"] != "chainrule":
            continue
        bare = next((r for r in rows if r["peer"] == "chainrule unchecked"
                     and (r["net"], r["dtype"]) == (checked["net"], checked["dtype"])), None)
        if bare is not None:
            out.append({"net": checked["net"], "label": checked["label"], "dtype": checked["dtype"],
                        "checked_s": checked["median_s"], "unchecked_s": bare["median_s"],
                        "ratio": checked["median_s"] / bare["median_s"],
                        "checked_cpu_s": checked["cpu_median_s"], "unchecked_cpu_s": bare["cpu_median_s"],
                        "cpu_ratio": checked["cpu_median_s"] / bare["cpu_median_s"]})
    return out
