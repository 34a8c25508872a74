"""Section 5: peak memory of one train step of the large net (1024-1024-1024-10 tanh, N=512).

Each implementation runs in a fresh process that imports NumPy and the code under test only
(the emitted module is generated beforehand by the parent, so SymPy is never loaded there).
The figure is tracemalloc's peak of the bytes allocated during the step (NumPy reports its
buffers to tracemalloc); ru_maxrss is no use here, as setting up the data peaks higher.

Worker: ``python memory.py hand|chainrule [EMITTED_FILE]`` prints one JSON line.
"""
import json
import subprocess
import sys
from pathlib import Path

from nets import NETS, Unavailable, write_emitted

HERE = Path(__file__).resolve().parent
NET = NETS[2]
MIB = 1 << 20


def worker(kind: str, emitted_file: str = "") -> dict:
    import importlib.util
    import tracemalloc

    import numpy as np

    import hand_numpy
    from nets import make_data, make_params
    params = make_params(NET, np.float64)
    X, T = make_data(NET, np.float64)
    if kind == "hand":
        def step():
            return hand_numpy.loss_and_grads(params, X, T, NET.hidden, NET.loss)
    else:
        spec = importlib.util.spec_from_file_location("emitted_memory", emitted_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        def step():
            return module.loss_and_grads(params, X, T)
    tracemalloc.start()
    step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    param_bytes = sum(p.nbytes for p in params.values())
    activation_bytes = NET.batch * sum(NET.widths[1:]) * 8
    return {"peak_traced_mib": peak / MIB, "gradients_mib": param_bytes / MIB, "activations_mib": activation_bytes / MIB}


def in_subprocess(kind: str, emitted_file: str = "") -> dict:
    done = subprocess.run([sys.executable, str(HERE / "memory.py"), kind, emitted_file],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool) -> dict:
    rows, skipped = [], {}
    rows.append({"peer": "hand NumPy", **in_subprocess("hand")})
    try:
        path = write_emitted(NET.spec, "float64", "memory_wide_tanh")
        rows.append({"peer": "chainrule", **in_subprocess("chainrule", str(path))})
    except Unavailable as err:
        skipped["chainrule"] = str(err)
    print("  memory: done", file=sys.stderr, flush=True)
    return {"net": NET.label, "dtype": "float64", "rows": rows, "skipped": skipped}


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")))
