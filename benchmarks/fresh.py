"""Sections 1d-1f again, chainrule and PyTorch each timed in a process of its own that has loaded only what it
needs (NumPy; and torch, for PyTorch), as a user's training runs.

The benchmark's own process has imported sympy, torch and jax and run them all; their frees have warmed up
glibc's malloc, which would hide from the in-process figures what a process of NumPy alone pays when its
allocator hands freed arrays back to the system: page faults, counted here per step.

    python benchmarks/fresh.py SECTION CASE PEER ROUNDS TARGET_S THREADS FOLDER    (what run.py starts)
"""
import json
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = ("chainrule unchecked", "PyTorch")
CASES = {"cnn": ("cnn",), "attention": ("attention",), "rnn": ("char-lstm", "gru", "rnn")}
COUNTED = 20  # steps whose page faults are counted, after the timing


def _step(section: str, case: str, peer: str):
    """The step of ``peer`` on ``case``, built from the same parameters and data as in the section itself."""
    import numpy as np

    if section == "cnn":
        import cnn_step
        X, T = cnn_step.make_data("float32")
        params = {k: v.astype("float32") for k, v in cnn_step.make_params(np.float64).items()}
        steps, why = cnn_step.build_steps("float32", params, X, T, only=(peer,))
    elif section == "attention":
        import attention_step
        X, Y = attention_step.make_data()
        params = {k: v.astype("float32") for k, v in attention_step.make_params(np.float64).items()}
        steps, why = attention_step.build_steps("float32", params, X, Y, only=(peer,))
    else:
        import rnn_step
        net = next(n for n in rnn_step.NETS if n.key == case)
        X, T = rnn_step.make_data(net)
        params = {k: v.astype("float32") for k, v in rnn_step.make_params(net, np.float64).items()}
        steps, why = rnn_step.build_steps(net, "float32", params, X, T, only=(peer,))
    if peer not in steps:
        raise SystemExit(f"{peer} unavailable: {why.get(peer)}")
    return steps[peer]


def child(section, case, peer, rounds, target, threads, folder) -> dict:
    """Time one peer's step here, in this fresh process, and count its page faults."""
    sys.path.insert(0, str(HERE))
    import nets
    import timing
    nets.PREBUILT = Path(folder)
    if threads:
        if peer == "PyTorch":
            import torch
            torch.set_num_threads(threads)
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=threads)
    step = _step(section, case, peer)
    figures = timing.interleaved({peer: step}, rounds, target)[peer]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(COUNTED):
        step()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / COUNTED
    loaded = sorted(name for name in ("sympy", "torch", "jax") if name in sys.modules)
    return {"median_s": figures["median_s"], "cpu_median_s": figures["cpu_median_s"], "faults_per_step": faults,
            "loaded": loaded}


def run(section: str, quick: bool, threads, folder) -> list:
    """One row per case and peer of ``section``: the step's median and page faults, each in a fresh process
    (the modules chainrule generated for the section's own run, in ``folder``, are imported, not regenerated)."""
    rounds, target = (5, 0.05) if quick else (9, 0.2)
    rows = []
    for case in CASES[section]:
        found = {}
        for peer in PEERS:
            args = [sys.executable, str(Path(__file__)), section, case, peer, str(rounds), str(target),
                    str(threads or 0), str(folder)]
            done = subprocess.run(args, capture_output=True, text=True, timeout=600)
            if done.returncode:
                rows.append({"net": case, "peer": peer, "error": (done.stderr or done.stdout).strip()[-300:]})
                continue
            figures = json.loads(done.stdout)
            if figures["loaded"] != (["torch"] if peer == "PyTorch" else []):
                rows.append({"net": case, "peer": peer, "error": f"not a fresh process: it loaded {figures['loaded']}"})
                continue
            found[peer] = {"net": case, "peer": peer, **figures}
        torch_s = found.get("PyTorch", {}).get("median_s")
        rows += [{**row, "ratio_to_torch": row["median_s"] / torch_s if torch_s else None} for row in found.values()]
    return rows


if __name__ == "__main__":
    section, case, peer, rounds, target, threads, folder = sys.argv[1:]
    print(json.dumps(child(section, case, peer, int(rounds), float(target), int(threads), folder)))
