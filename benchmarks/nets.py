"""The benchmark networks, their data and parameters, and the emitted module under test.

Every peer gets the same parameters and data: ``W`` is (out, in) and ``b`` is (out,), as in
``torch.nn.Linear``; ``X`` is (N, inputs); ``T`` holds class indices (N,) for cross-entropy
and targets (N, outputs) for MSE.
"""
import importlib.util
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Net:
    """A dense network: layer widths, one hidden activation, a loss and a batch size."""
    key: str
    widths: tuple
    hidden: str
    loss: str
    batch: int

    @property
    def spec(self) -> str:
        """The inline chainrule spec, e.g. ``"2 -> 2 relu -> 1 ; mse"``."""
        output = "softmax" if self.loss == "cross_entropy" else ""
        layers = [f"{w} {self.hidden}" for w in self.widths[1:-1]]
        layers.append(f"{self.widths[-1]} {output}".strip())
        return " -> ".join([str(self.widths[0])] + layers) + f" ; {self.loss}"

    @property
    def label(self) -> str:
        return f"{'-'.join(map(str, self.widths))} {self.hidden} {self.loss} N={self.batch}"

    @property
    def shapes(self) -> dict:
        """PARAM_SHAPES as the emitted module states them."""
        shapes = {}
        for l, (fan_in, fan_out) in enumerate(zip(self.widths[:-1], self.widths[1:]), start=1):
            shapes[f"W{l}"] = (fan_out, fan_in)
            shapes[f"b{l}"] = (fan_out,)
        return shapes


NETS = (
    Net("seed-2-2-1", (2, 2, 1), "relu", "mse", 2),
    Net("mnist-mlp", (784, 256, 128, 10), "relu", "cross_entropy", 128),
    Net("wide-tanh", (1024, 1024, 1024, 10), "tanh", "cross_entropy", 512),
)


def make_params(net: Net, dtype, seed: int = 0) -> dict:
    """Scaled-normal weights (so deep tanh layers neither saturate nor vanish) and small biases."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in net.shapes.items():
        scale = 1.0 / np.sqrt(shape[1]) if name.startswith("W") else 0.1
        params[name] = (rng.standard_normal(shape) * scale).astype(dtype)
    return params


def make_data(net: Net, dtype, seed: int = 1):
    """A batch (X, T) of random inputs and targets."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((net.batch, net.widths[0])).astype(dtype)
    if net.loss == "cross_entropy":
        T = rng.integers(0, net.widths[-1], size=net.batch)
    else:
        T = rng.standard_normal((net.batch, net.widths[-1])).astype(dtype)
    return X, T


class Unavailable(Exception):
    """A peer that cannot run here; the message says why, and the benchmark skips it."""


def available(makers: dict, only=None) -> tuple:
    """({name: step} of the peers whose maker ran, {name: why} of those that raised Unavailable); of the peers
    named in ``only`` alone, when given."""
    steps, skipped = {}, {}
    for name, make in makers.items():
        if only is not None and name not in only:
            continue
        try:
            steps[name] = make()
        except Unavailable as err:
            skipped[name] = str(err)
    return steps, skipped


_EMITTED_DIR = None
PREBUILT = None  # a folder of modules another process of this run generated (fresh.py): loaded, not generated


def emitted_source(spec, dtype: str = "float64") -> str:
    """chainrule's generated module for ``spec`` (inline or a TOML path), as text."""
    try:
        from derive import derive
        from codegen.emit import generate
    except ImportError as err:
        raise Unavailable(f"codegen.generate is not importable yet ({err})") from None
    try:
        return generate(derive(spec), dtype=dtype)
    except Exception as err:  # the generator is under construction: report, do not crash
        raise Unavailable(f"codegen.generate failed on {spec!r}: {type(err).__name__}: {err}") from None


def emitted_folder() -> Path:
    """One temporary folder per run that holds every generated module."""
    global _EMITTED_DIR
    if _EMITTED_DIR is None:
        _EMITTED_DIR = tempfile.TemporaryDirectory(prefix="chainrule-bench-")
    return Path(_EMITTED_DIR.name)


def write_emitted(spec, dtype: str, name: str) -> Path:
    """Generate ``spec`` into the run's temporary folder as ``name.py``; return its path (in PREBUILT, where set,
    the module already there: nothing is generated)."""
    if PREBUILT is not None:
        return PREBUILT / f"{name}.py"
    path = emitted_folder() / f"{name}.py"
    path.write_text(emitted_source(spec, dtype), encoding="utf-8")
    return path


def emitted_step(spec, shapes: dict, name: str, dtype: str, params, X, T, checked=True):
    """The emitted module's loss_and_grads, which checks its inputs; or (checked=False) _loss_and_grads on inputs
    checked once beforehand, as train runs it per batch. Unavailable where its PARAM_SHAPES are not ``shapes``."""
    module = load_emitted(spec, dtype, f"{name}_{dtype}")
    if {k: tuple(v) for k, v in module.PARAM_SHAPES.items()} != shapes:
        raise Unavailable(f"emitted PARAM_SHAPES {module.PARAM_SHAPES} differ from the expected {shapes}")
    if checked:
        return lambda: module.loss_and_grads(params, X, T)
    ready, X_ready, Y_ready = module._checked(params, X, T)
    return lambda: module._loss_and_grads(ready, X_ready, Y_ready)


def load_emitted(spec, dtype: str, name: str):
    """Generate ``spec`` and import it as a fresh module called ``name``."""
    path = write_emitted(spec, dtype, name)
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:
        raise Unavailable(f"the emitted module for {spec!r} does not import: {type(err).__name__}: {err}") from None
    sys.modules[name] = module
    return module
