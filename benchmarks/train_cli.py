"""Section 6: ``chainrule train --data digits`` against calling the emitted ``train`` directly.

Both train the gallery's digits spec (64-128-10 relu, Adam lr 1e-3, batch 32, 20 epochs) on the
same data: scikit-learn's digits with a stratified 20 % held out for validation. "chainrule train"
is ``codegen.train.fit``, what the command runs once the data are loaded: the callback that keeps
every epoch's logs (accuracy, lr, per-layer gradient norms) and prints a line per epoch (or draws
the tqdm bar), and the final evaluation. "emitted train" is ``module.train(...,
verbose=False)`` with the same validation data. Runs alternate, and the medians are compared.
"""
import contextlib
import io
import statistics
import sys
import time

from nets import REPO, Unavailable

SPEC = REPO / "generated" / "specs" / "digits.toml"


def _data():
    from codegen.train import bundled, module_from_spec, split
    try:
        X, T = bundled("digits")
    except Exception as err:  # ChainruleError: scikit-learn missing
        raise Unavailable(str(err)) from None
    module, label = module_from_spec(str(SPEC))
    X, T, X_val, T_val = split(X, T, 0.2, classes=True, seed=0)
    return module, label, {"X": X, "T": T, "X_val": X_val, "T_val": T_val}


def run(quick: bool) -> dict:
    from codegen.train import fit
    try:
        module, label, data = _data()
    except Unavailable as err:
        print(f"  train_cli: SKIPPED: {err}", file=sys.stderr)
        return {"rows": [], "skipped": {"all": str(err)}}

    def direct():
        params = module.init_params(seed=0)
        module.train(params, data["X"], data["T"], X_val=data["X_val"], T_val=data["T_val"], verbose=False)

    def lines():
        with contextlib.redirect_stdout(io.StringIO()):
            fit(module, data, label, {}, bar=False)

    def bar():
        with contextlib.redirect_stderr(io.StringIO()):
            fit(module, data, label, {}, bar=True)
    runners = {"emitted train": direct, "chainrule train (plain lines)": lines, "chainrule train (tqdm bar)": bar}
    try:
        import tqdm  # noqa: F401
    except ImportError:
        del runners["chainrule train (tqdm bar)"]
    times = {name: [] for name in runners}
    cpu = {name: [] for name in runners}
    names = list(runners)
    for r in range(5 if quick else 11):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            runners[name]()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    base, base_cpu = statistics.median(times["emitted train"]), statistics.median(cpu["emitted train"])
    rows = [{"peer": name, "wall_s": statistics.median(times[name]), "cpu_s": statistics.median(cpu[name]),
             "ratio": statistics.median(times[name]) / base, "cpu_ratio": statistics.median(cpu[name]) / base_cpu,
             "runs": len(times[name])} for name in runners]
    print("  train_cli: done", file=sys.stderr, flush=True)
    return {"rows": rows, "skipped": {}, "samples": len(data["X"])}
