"""Section 2: training on scikit-learn's bundled digits (8x8 images, no download).

64 -> 128 relu -> 10 softmax, cross-entropy, Adam lr 1e-3, batch 32, 20 epochs, float64, for
chainrule's emitted ``train``, sklearn's MLPClassifier (no L2, no early stopping) and PyTorch.
"""
import contextlib
import inspect
import io
import statistics
import sys
import time
import warnings

import numpy as np

from nets import Unavailable, emitted_folder, load_emitted

EPOCHS, BATCH, LR, HIDDEN = 20, 32, 1e-3, 128
SPEC = f"""\
name = "digits_mlp"
description = "benchmarks/digits.py: scikit-learn's digits, Adam"

[network]
inputs = 64
layers = [{{ units = {HIDDEN}, activation = "relu" }}, {{ units = 10, activation = "softmax" }}]
loss = "cross_entropy"

[optimizer]
type = "adam"
lr = {LR}

[training]
epochs = {EPOCHS}
batch_size = {BATCH}
"""


def load_split():
    """Train/test split of digits (stratified, 25 % test), pixels scaled to [0, 1]."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise Unavailable("scikit-learn is not installed here, so there is no digits data; skipped") from None
    digits = load_digits()
    X = digits.data / 16.0
    return train_test_split(X, digits.target, test_size=0.25, random_state=0, stratify=digits.target)


def run_chainrule(X, y, X_test, y_test):
    path = emitted_folder() / "digits_mlp.toml"
    path.write_text(SPEC, encoding="utf-8")
    module = load_emitted(str(path), "float64", "emitted_digits_mlp")
    if not hasattr(module, "train"):
        raise Unavailable("the emitted module has no train() yet (the training loop is still being written)")
    params = module.init_params(seed=0)
    quiet = {"verbose": False} if "verbose" in inspect.signature(module.train).parameters else {}
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):   # its progress lines would break the tables
        module.train(params, X, y, epochs=EPOCHS, batch_size=BATCH, **quiet)
    seconds = time.perf_counter() - start
    Y, _ = module.forward(params, X_test)
    return seconds, float(np.mean(np.argmax(Y, axis=1) == y_test))


def run_sklearn(X, y, X_test, y_test):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    model = MLPClassifier(hidden_layer_sizes=(HIDDEN,), activation="relu", solver="adam", alpha=0.0,
                          batch_size=BATCH, learning_rate_init=LR, max_iter=EPOCHS, shuffle=True,
                          random_state=0, tol=0.0, n_iter_no_change=EPOCHS + 1, early_stopping=False)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    seconds = time.perf_counter() - start
    return seconds, float(model.score(X_test, y_test))


def run_torch(X, y, X_test, y_test, threads=None):
    try:
        import torch
    except ImportError:
        raise Unavailable("torch is not installed; skipped") from None
    saved = torch.get_num_threads()
    torch.set_num_threads(threads or saved)
    try:
        return _train_torch(torch, X, y, X_test, y_test)
    finally:
        torch.set_num_threads(saved)


def _train_torch(torch, X, y, X_test, y_test):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10)).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x, t = torch.from_numpy(X), torch.from_numpy(y).long()
    start = time.perf_counter()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x))
        for i in range(0, len(x), BATCH):
            batch = order[i:i + BATCH]
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x[batch]), t[batch]).backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(X_test)).argmax(1).numpy() == y_test).mean()
    return seconds, float(accuracy)


# Small batches leave torch's intra-op threads mostly waiting on each other, which a busy
# machine turns into a large slowdown; the one-thread row shows how much.
RUNNERS = {"chainrule": run_chainrule, "sklearn MLP": run_sklearn, "PyTorch": run_torch,
           "PyTorch, 1 thread": lambda *data: run_torch(*data, threads=1)}


def run(quick: bool) -> dict:
    try:
        X, X_test, y, y_test = load_split()
    except Unavailable as err:
        print(f"  digits: SKIPPED: {err}", file=sys.stderr)
        return {"rows": [], "skipped": {"all": str(err)}}
    repeats = 1 if quick else 3
    results, skipped = {}, {}
    for r in range(repeats):
        for name, runner in RUNNERS.items():   # interleaved: one of each, then again
            if name in skipped:
                continue
            try:
                outcome = runner(X, y, X_test, y_test)
                results.setdefault(name, []).append(outcome)
            except Unavailable as err:
                skipped[name] = str(err)
                print(f"  digits: {name} SKIPPED: {err}", file=sys.stderr)
    rows = [{"peer": name, "wall_s": statistics.median([s for s, _ in runs]),
             "test_accuracy": statistics.median([a for _, a in runs]), "runs": len(runs),
             "train_samples": len(X), "test_samples": len(X_test)}
            for name, runs in results.items()]
    print("  digits: done", file=sys.stderr, flush=True)
    return {"rows": rows, "skipped": skipped}
