"""The notes' worked example, computed by the emitted code itself.

``worked_example`` generates the network's NumPy module, runs its ``loss_and_grads`` on a small batch
(``derive.worked.example_inputs``) with the parameters its ``init_params`` draws (at the first seed,
from the spec's, at which no unit's gradient is all zeros), and records the
value of every quantity the module assigns, as it assigns it: each line of the module that computes
a step ends in ``# (eq. n)``, so the value of step n is the variable that the last such line assigns,
read right after that line runs (a later in-place update of the same array cannot change it). Then
one step of the module's optimizer. So the numbers in the notes are the code's, never a second
computation of the same formulas.
"""
import re
import sys
import types

import numpy as np

from derive.errors import ChainruleError
from derive.optim import validate
from derive.steps import N
from derive.worked import Example, example_inputs, small_enough

from .emit import generate

FILENAME = "<chainrule worked example>"
#: How many seeds, from the spec's training seed on, are tried for one at which every unit of every
#: layer gets a gradient (a ReLU dead on both samples would make the example rows of zeros).
SEEDS = 100
_ASSIGNS = re.compile(r"^\s*([A-Za-z_]\w*)(?:\s*,\s*[A-Za-z_]\w*)*\s*[-+*/@]?=(?!=).*#\s*\(eq\.\s*([\d,\s]+)\)\s*$")


def worked_example(derivation, module_text: str = None):
    """The Example of ``derivation``; None when the network is too big to print (``derive.worked``'s
    MAX_UNITS and MAX_LAYERS) or not one the generator emits, when the module refuses the batch (targets outside a custom loss's
    domain) or computes a number that is not finite there, or when a step's value cannot be read off
    the module. ``module_text``: the generated module, if already generated."""
    net = derivation.network
    if not small_enough(net):
        return None
    try:
        module = _load(module_text if module_text is not None else generate(derivation))
    except ChainruleError:  # a network the generator does not emit yet: notes without numbers
        return None
    X, T = example_inputs(net)
    try:
        with np.errstate(all="ignore"):  # a number that is not finite ends the example, not a warning
            return _example(derivation, module, X, T)
    except ValueError:  # the module's own check of its inputs refused the batch
        return None


def _example(derivation, module, X, T):
    first = validate(derivation.network.tables)["training"]["seed"]
    for seed in range(first, first + SEEDS):
        params = module.init_params(seed=seed)
        _, grads = module.loss_and_grads(params, X, T)
        if all(np.abs(g).reshape(len(g), -1).sum(axis=1).all() for g in grads.values()):
            break
    else:
        seed, params = first, module.init_params(seed=first)
    assigned, (_, grads) = _traced(module.loss_and_grads, params, X, T)
    quantities = derivation.batch.quantities
    steps = {}
    for step in derivation.batch.steps:
        name, value = assigned.get(step.number, (None, None))
        if name == step.target.key:
            steps[step.number] = _as_math(value, quantities[name])
    if len(steps) < len(derivation.batch.steps):  # a step the module computes under another name: no half example
        return None
    updated = {name: np.array(p, copy=True) for name, p in params.items()}
    module.make_optimizer(updated).step(updated, grads)
    if not all(np.isfinite(v).all() for v in [*steps.values(), *updated.values()]):
        return None

    def as_math(arrays):
        return {name: _as_math(value, quantities[name]) for name, value in arrays.items()}
    return Example(data={"X": X.T, "Y": T.T}, params=as_math(params), steps=steps, updated=as_math(updated), seed=seed)


def _load(text: str):
    """The generated module's source as a module object (our own emitted code, run in its own namespace)."""
    module = types.ModuleType("chainrule_worked_example")
    exec(compile(text, FILENAME, "exec"), module.__dict__)  # noqa: S102 - the code chainrule itself emitted
    module.__dict__["__source_lines__"] = text.splitlines()
    return module


def _traced(function, *args):
    """({step number: (the variable assigned, a copy of its value)}, function(*args)), recording each
    line of the module tagged ``# (eq. n)`` right after it runs."""
    assigned, previous = {}, {}
    lines = None

    def record(frame):
        line = previous.pop(frame, None)
        if line is None:
            return
        m = _ASSIGNS.match(lines[line - 1])
        if m and m[1] in frame.f_locals:
            value = np.array(frame.f_locals[m[1]], copy=True)
            for number in re.findall(r"\d+", m[2]):
                assigned[int(number)] = (m[1], value)

    def local(frame, event, arg):
        if event in ("line", "return"):
            record(frame)
            if event == "line":
                previous[frame] = frame.f_lineno
        return local

    def calls(frame, event, arg):
        return local if frame.f_code.co_filename == FILENAME else None

    lines = function.__globals__["__source_lines__"]
    old = sys.gettrace()
    sys.settrace(calls)
    try:
        result = function(*args)
    finally:
        sys.settrace(old)
    return assigned, result


def _as_math(value, quantity):
    """An array of the module as the math writes it: a batch value (N, features) transposed to
    (features, N), a bias (out,) as a column, a scalar as a float."""
    value = np.asarray(value, dtype=float)
    if not quantity.shape:
        return float(value)
    rows, cols = quantity.shape
    if cols == N or N in getattr(cols, "free_symbols", ()):
        return value.T
    return value.reshape(rows, 1) if value.ndim == 1 else value
