"""Benchmarks of chainrule's emitted NumPy code and of the derivation itself (issue 6).

    python benchmarks/run.py [--quick] [--json PATH] [--only SECTION ...]

Prints one table per section and the targets with met/missed, and writes the same figures as
JSON (default benchmarks/results.json). Installs nothing: a missing peer is skipped, with the
reason printed. Targets are reported, never asserted; the exit code is 1 only when some
implementation's gradients disagree with the hand-written NumPy step.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import numpy as np  # noqa: E402

import attention_step  # noqa: E402
import cnn_step  # noqa: E402
import derivation  # noqa: E402
import digits  # noqa: E402
import fresh  # noqa: E402
import layernorm_step  # noqa: E402
import memory  # noqa: E402
import nets  # noqa: E402
import peers  # noqa: E402
import rnn_step  # noqa: E402
import startup  # noqa: E402
import train_cli  # noqa: E402
import train_step  # noqa: E402
from targets import judge  # noqa: E402

SECTIONS = {"train_step": train_step.run, "layernorm": layernorm_step.run, "cnn": cnn_step.run, "rnn": rnn_step.run,
            "digits": digits.run, "derivation": derivation.run, "startup": startup.run, "memory": memory.run,
            "train_cli": train_cli.run, "attention": attention_step.run}


# -- printing -----------------------------------------------------------------------------------
def table(title: str, header: list, rows: list) -> str:
    """A plain fixed-width table; numbers come in already formatted."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    rule = "-" * len(line(header))
    return "\n".join([f"\n{title}", rule, line(header), rule] + [line(r) for r in cells[1:]] + [rule])


def seconds(s) -> str:
    if s is None:
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def skipped_lines(skipped: dict) -> str:
    return "".join(f"\n  skipped {name}: {why}" for name, why in skipped.items())


def print_train_step(section):
    rows = []
    for r in section["rows"]:
        check = "ok" if r["grads_match"] else "MISMATCH"
        rows.append([r["label"], r["dtype"], r["peer"], seconds(r["median_s"]), seconds(r["cpu_median_s"]),
                     f"{r['ratio_to_hand']:.2f}x" if r["ratio_to_hand"] else "-",
                     f"{r['matmul_fraction']:.0%}", f"{check} ({r['grad_rel_error']:.1g})"])
    print(table("1. Train step: forward + loss + all gradients, no update (median; matmul bound = the "
                "step's matmuls alone / the step)",
                ["net", "dtype", "peer", "median", "CPU time", "vs hand", "matmul bound", "gradients vs hand f64"],
                rows)
          + skipped_lines(section["skipped"]))
    print("  CPU time: the process's, per call; comparable between peers only with --threads 1, and never "
          "for jax.jit, whose thread pool cannot be capped")
    blas = {(r["label"], r["dtype"]): (r["matmul_bound_s"], r["torch_matmul_bound_s"]) for r in section["rows"]
            if r["torch_matmul_bound_s"]}
    if blas:
        print("  the step's matmuls alone, NumPy's BLAS against PyTorch's (a peer whose BLAS is faster can pass "
              "100 % of NumPy's bound):")
        for (label, dtype), (ours, theirs) in blas.items():
            print(f"    {label} {dtype}: NumPy {seconds(ours)}, PyTorch {seconds(theirs)} ({theirs / ours:.2f}x)")
    if any(r["matmul_fraction"] > 1.05 for r in section["rows"] if r["peer"] in ("hand NumPy", "chainrule", "autograd")):
        print("  note: a NumPy peer above 100 % of the matmul bound means the matmuls alone ran slower than its "
              "whole step, so the machine was disturbed while sampling; rerun, or use --threads 1 and read the CPU time")
    for message in section["mismatches"]:
        print(f"  !!! {message}")
    rows = [[r["label"], r["dtype"], seconds(r["checked_s"]), seconds(r["unchecked_s"]), f"{r['ratio']:.2f}x",
             seconds(r["checked_cpu_s"]), seconds(r["unchecked_cpu_s"]), f"{r['cpu_ratio']:.2f}x"]
            for r in section.get("checks", [])]
    if rows:
        print(table("1b. The input checks: loss_and_grads (checks X, T and params) against the step train runs "
                    "per batch (unchecked; train checks once), same run",
                    ["net", "dtype", "checked", "unchecked", "ratio", "checked CPU", "unchecked CPU", "CPU ratio"],
                    rows))
        print("  on a busy machine the wall-time ratio can fall below 1; the CPU ratio (with --threads 1) is the "
              "steadier figure")


def print_layernorm(section):
    rows = [[r["peer"], seconds(r["median_s"]), seconds(r["cpu_median_s"]), f"{r['ratio_to_hand']:.2f}x",
             f"{'ok' if r['grads_match'] else 'MISMATCH'} ({r['grad_rel_error']:.1g})"] for r in section["rows"]]
    label = section["rows"][0]["label"] if section["rows"] else layernorm_step.LABEL
    print(table(f"1c. Train step of a layer-norm network, {label} float32 (median)",
                ["peer", "median", "CPU time", "vs hand", "gradients vs hand f64 and f32"], rows)
          + skipped_lines(section["skipped"]))
    for message in section["mismatches"]:
        print(f"  !!! {message}")


def print_cnn(section):
    rows = [[r["peer"], seconds(r["median_s"]), seconds(r["cpu_median_s"]), f"{r['ratio_to_hand']:.2f}x",
             f"{r['gemm_fraction']:.0%}", f"{r['peak_mib']:.1f} MiB" if r["peak_mib"] else "-",
             f"{'ok' if r['grads_match'] else 'MISMATCH'} ({r['grad_rel_error']:.1g})"] for r in section["rows"]]
    label = section["rows"][0]["label"] if section["rows"] else cnn_step.LABEL
    print(table(f"1d. Train step of a CNN, {label} float32 (median; GEMM bound = the step's GEMMs alone, "
                f"{seconds(section['gemm_s'])}, / the step)",
                ["peer", "median", "CPU time", "vs hand", "GEMM bound", "peak memory", "gradients vs hand f64 and f32"],
                rows) + skipped_lines(section["skipped"]))
    for message in section["mismatches"]:
        print(f"  !!! {message}")


def print_attention(section):
    rows = [[r["peer"], seconds(r["median_s"]), seconds(r["cpu_median_s"]), f"{r['ratio_to_hand']:.2f}x",
             f"{r['peak_mib']:.1f} MiB" if r["peak_mib"] else "-",
             f"{'ok' if r['grads_match'] else 'MISMATCH'} ({r['grad_rel_error']:.1g})"] for r in section["rows"]]
    label = section["rows"][0]["label"] if section["rows"] else attention_step.LABEL
    print(table(f"1e. Train step of a pre-norm transformer block, {label} float32 (median; peak memory: "
                "tracemalloc's, NumPy peers only)",
                ["peer", "median", "CPU time", "vs hand", "peak memory", "gradients vs hand f64 and f32"],
                rows) + skipped_lines(section["skipped"]))
    for message in section["mismatches"]:
        print(f"  !!! {message}")


def print_rnn(section):
    rows = [[r["net"], r["peer"], seconds(r["median_s"]), seconds(r["cpu_median_s"]), f"{r['ratio_to_hand']:.2f}x",
             f"{r['ratio_to_torch']:.2f}x" if r["ratio_to_torch"] else "-",
             f"{'ok' if r['grads_match'] else 'MISMATCH'} ({r['grad_rel_error']:.1g})"] for r in section["rows"]]
    print(table(f"1f. Train step of a recurrent network, float32 (median): {'; '.join(section['labels'])}",
                ["net", "peer", "median", "CPU time", "vs hand", "vs PyTorch", "gradients vs hand f64 and f32"], rows)
          + skipped_lines(section["skipped"]))
    for message in section["mismatches"]:
        print(f"  !!! {message}")


def print_digits(section):
    rows = [[r["peer"], seconds(r["wall_s"]), f"{r['test_accuracy']:.1%}", r["runs"]] for r in section["rows"]]
    print(table(f"2. Digits ({digits.EPOCHS} epochs, batch {digits.BATCH}, Adam lr {digits.LR:g}, "
                f"64-{digits.HIDDEN}-10 relu, float64)",
                ["trainer", "wall time", "test accuracy", "runs"], rows) + skipped_lines(section["skipped"]))


def print_derivation(section):
    rows = []
    for r in section["staged"]:
        if "derive_s" not in r:
            rows.append([r["depth"], "-", "-", "-", "-", r.get("error") or f"> {r.get('cap_s')} s"])
            continue
        rows.append([r["depth"], r["steps"], seconds(r["derive_s"]), seconds(r.get("generate_s")),
                     seconds(r["total_s"]), f"{r['per_layer_ms']:.2f} ms"])
    print(table("3a. Staged derivation: derive.derive + codegen.generate, width 4 tanh, mse",
                ["depth", "steps", "derive", "generate", "total", "per layer"], rows))
    notes = {r.get("generate_skipped") for r in section["staged"]} - {None}
    for note in notes:
        print(f"  generate not timed: {note}")
    rows = []
    for r in section["naive"]:
        if "diff_s" not in r:
            rows.append([r["depth"], "-", "-", "-", r.get("error") or f"> {r.get('cap_s')} s (capped)"])
            continue
        rows.append([r["depth"], r["params"], r["loss_tree_size"], r["gradient_tree_size"], seconds(r["diff_s"])])
    print(table(f"3b. Naive sympy.diff of the expanded loss, width 2 tanh, scalar symbols "
                f"(cap {section['naive_cap_s']:g} s per depth)",
                ["depth", "params", "loss tree nodes", "gradient tree nodes", "diff time"], rows))


def print_startup(section):
    rows = [[r["command"], seconds(r["median_s"]), seconds(r["min_s"]), r["runs"]] for r in section["rows"]]
    print(table(f"4. Start-up, fresh process each (chainrule = {section['chainrule']})",
                ["command", "median", "min", "runs"], rows) + skipped_lines(section["skipped"]))


def print_memory(section):
    rows = []
    for r in section["rows"]:
        if "error" in r:
            rows.append([r["peer"], r["error"], "", ""])
            continue
        rows.append([r["peer"], f"{r['peak_traced_mib']:.1f} MiB", f"{r['gradients_mib']:.1f} MiB",
                     f"{r['activations_mib']:.1f} MiB"])
    print(table(f"5. Memory of one train step, {section['net']} {section['dtype']} (peak allocated "
                f"during the step; for scale: the gradients alone, the hidden activations alone)",
                ["peer", "tracemalloc peak", "gradients", "activations"], rows)
          + skipped_lines(section["skipped"]))


def print_train_cli(section):
    rows = [[r["peer"], seconds(r["wall_s"]), f"{r['ratio']:.2f}x", seconds(r["cpu_s"]), f"{r['cpu_ratio']:.2f}x", r["runs"]]
            for r in section["rows"]]
    print(table(f"6. chainrule train --data digits against the emitted train called directly (20 epochs, "
                f"{section.get('samples', '?')} samples, validation 20 %; median)",
                ["run", "wall time", "vs direct", "CPU time", "CPU vs direct", "runs"], rows)
          + skipped_lines(section["skipped"]))


def print_fresh(name, rows):
    cells = [[r["net"], r["peer"], "failed: " + r["error"]] + [""] * 3 if "error" in r else
             [r["net"], r["peer"], seconds(r["median_s"]), seconds(r["cpu_median_s"]), f"{r['faults_per_step']:.0f}",
              f"{r['ratio_to_torch']:.2f}x" if r["ratio_to_torch"] else "-"] for r in rows]
    print(table(f"   {name}, each peer in a fresh process of its own (NumPy alone, or NumPy and torch), float32",
                ["net", "peer", "median", "CPU time", "page faults a step", "vs PyTorch"], cells))


def print_targets(verdicts):
    word = {True: "met", False: "MISSED", None: "not run"}
    rows = [[v["target"], v["wanted"], v["figure"], word[v["met"]]] for v in verdicts]
    print(table("Targets (reported, not asserted)", ["target", "wanted", "figure", "met?"], rows))
    counts = {w: sum(1 for v in verdicts if word[v["met"]] == w) for w in ("met", "MISSED", "not run")}
    print("  " + ", ".join(f"{n} {w}" for w, n in counts.items()))


PRINTERS = {"train_step": print_train_step, "layernorm": print_layernorm, "cnn": print_cnn, "rnn": print_rnn,
            "digits": print_digits, "derivation": print_derivation, "startup": print_startup, "memory": print_memory,
            "train_cli": print_train_cli, "attention": print_attention}


# -- the run ------------------------------------------------------------------------------------
def environment() -> dict:
    env = {"python": platform.python_version(), "numpy": np.__version__, "peers": peers.versions(),
           "machine": platform.machine(), "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
           "blas": None}
    try:
        import threadpoolctl
        env["blas"] = [{k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                       for info in threadpoolctl.threadpool_info()]
    except ImportError:
        pass
    try:
        import torch
        env["torch_threads"] = torch.get_num_threads()
        env["torch_blas"] = "MKL" if torch.backends.mkl.is_available() else "not MKL"
    except ImportError:
        pass
    return env


def cap_threads(threads: int):
    """Cap BLAS and torch threads in this process (not jax, whose pool is fixed at start-up)."""
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("  note: threadpoolctl is not installed, so --threads leaves NumPy's BLAS as it is")
        return None
    return threadpool_limits(limits=threads)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about 3 minutes)")
    parser.add_argument("--json", default=str(HERE / "results.json"), help="where to write the figures")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    parser.add_argument("--threads", type=int, help="cap NumPy's BLAS (through threadpoolctl) and torch at this "
                        "many threads, for a busy machine; default: leave every library as it is")
    args = parser.parse_args(argv)
    limits = cap_threads(args.threads) if args.threads else None  # noqa: F841 (held for the run)
    env = environment()
    env["threads_cap"] = args.threads
    load = env["load_average_at_start"][0]
    print(f"chainrule benchmarks ({'quick' if args.quick else 'full'}): Python {env['python']}, "
          f"NumPy {env['numpy']}, {env['cpus']} CPUs, load average {load:.2f}; peers: "
          + ", ".join(f"{k} {v}" if v else f"{k} MISSING (skipped)" for k, v in env["peers"].items())
          + "".join(f"; NumPy's BLAS {b['internal_api']} {b['version']} ({b['architecture']})"
                    for b in env["blas"] or [] if b["internal_api"] in ("openblas", "mkl", "blis"))
          + (f"; torch's BLAS {env['torch_blas']}" if "torch_blas" in env else ""))
    if load > 0.5:
        print(f"  note: the machine is busy (load {load:.2f}); multi-threaded BLAS and torch suffer most")
    started = time.perf_counter()
    results = {"environment": env, "quick": args.quick}
    for name in args.only or SECTIONS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = SECTIONS[name](args.quick)
        PRINTERS[name](results[name])
        if name in fresh.CASES:
            results[name]["fresh"] = fresh.run(name, args.quick, args.threads, nets.emitted_folder())
            print_fresh(name, results[name]["fresh"])
    results["targets"] = judge(results)
    print_targets(results["targets"])
    results["wall_s"] = time.perf_counter() - started
    Path(args.json).write_text(json.dumps(results, indent=1, default=float) + "\n", encoding="utf-8")
    print(f"\nfigures written to {args.json} ({results['wall_s']:.0f} s)")
    mismatched = any(results.get(name, {}).get("mismatches")
                     for name in ("train_step", "layernorm", "cnn", "rnn", "attention"))
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
