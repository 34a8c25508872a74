"""The worked example in the notes: one small batch through the network, as numbers.

The numbers are computed by the generated NumPy module (``codegen.worked`` runs it), so they are
the code's and cannot disagree with the steps the code implements; this module only prints them
beside the steps' symbols. derive never imports codegen: an ``Example`` is plain arrays.
"""
from dataclasses import dataclass

import numpy as np

from .optim import OPTIMIZERS, validate
from .printing import MathLatex, NotesText

#: The largest network the notes work through: at most this many units in any value, and layers.
MAX_UNITS, MAX_LAYERS = 4, 4
#: The batch the example runs: this many samples (so the sums over the batch show).
SAMPLES = 2
DIGITS = 4
SIDE_BY_SIDE = {True: r", \quad ", False: ",   "}


@dataclass(frozen=True)
class Example:
    """One batch through the emitted code. ``data`` (X, Y), ``params`` and ``updated`` (after one
    optimizer step) by key, ``steps`` by step number: arrays as the math writes them (features ×
    samples, W as (out, in), b as a column), the loss a float. ``seed`` drew the parameters."""
    data: dict
    params: dict
    steps: dict
    updated: dict
    seed: int


def small_enough(network) -> bool:
    """Whether the notes work the network through: every value's features and the layer count small."""
    from .graph import expand
    graph = expand(network, 1)
    return len(network.layers) <= MAX_LAYERS and all(not v.shape or v.shape[0] <= MAX_UNITS for v in graph.values)


def example_inputs(network, samples: int = SAMPLES) -> tuple:
    """(X, T) batch-first, as the generated module takes them: the inputs are the counting numbers row by
    row (the seeds' SimpleNN's [[1, 2], [3, 4]]); the targets too ([[1], [2]]), except a softmax's, which
    are one-hot (sample i in class i), and a sigmoid's, alternately 0 and 1."""
    X = np.arange(1, samples * network.inputs + 1, dtype=float).reshape(samples, network.inputs)
    k = network.outputs
    output = network.activations[-1].name if network.activations else "identity"
    if output == "softmax":
        T = np.eye(k)[np.arange(samples) % k]
    elif output == "sigmoid":
        T = (np.arange(samples * k).reshape(samples, k) % 2).astype(float)
    else:
        T = np.arange(1, samples * k + 1, dtype=float).reshape(samples, k)
    return X, T


def worked_outline(derivation, example, latex: bool, names: dict, printed: dict, cite):
    """The outline's blocks of the worked example (nothing when ``example`` is None), each display a
    numbered equation (labelled ``eq:worked-…``) and each step's citing the step it works; ``names``: the
    batch form's names, as the notes print them; ``printed``: key -> the label of its batch step;
    ``cite(label)``: the outline's citation of an equation."""
    if example is None:
        return
    net, sweep = derivation.network, derivation.batch
    printer = MathLatex(names) if latex else NotesText(names)
    settings = validate(net.tables)
    opt = settings["optimizer"]
    yield "heading", "A worked example"
    yield "para", (f"The batch form above on N = {SAMPLES} samples, in numbers. Every number is what the generated "
                   f"NumPy module computes (its forward and backward pass, then one step of its optimizer), rounded "
                   f"to {DIGITS} significant digits. The inputs are the counting numbers, {_target_words(net)}, and "
                   f"the parameters are those the module's initialisation draws with seed {example.seed}"
                   + (" (the first seed from the spec's at which every unit gets a gradient)" if example.seed else "")
                   + ":")
    yield "rule", None, "eq:worked-data", SIDE_BY_SIDE[latex].join(
        f"{names[key]} = {matrix(example.data[key], latex)}" for key in ("X", "Y"))
    yield from _parameters(net, sweep, example.params, latex, names, "eq:worked-")
    phase = None
    for step in sweep.steps:
        if step.number not in example.steps:
            continue
        if step.phase != phase:
            phase = step.phase
            yield "subheading", {"forward": "Forward pass", "loss": "Loss", "backward": "Backward pass"}[phase]
        value = example.steps[step.number]
        shown = _number(value, latex) if np.ndim(value) == 0 else matrix(value, latex)
        own = printed[step.target.key]
        yield ("eq", None, own.replace("eq:batch-", "eq:worked-"), printer.doprint(step.target.symbol),
               f"{printer.doprint(step.rhs)} = {shown}", f"equation {cite(own)} on this batch", "")
    kind = OPTIMIZERS[opt["type"]]
    rules = len(kind.rules(opt))  # the Training section's labels of them (documents.training_outline)
    yield "subheading", "One optimizer step"
    yield "para", (f"One step of {kind.torch_name} (lr = {opt['lr']:g}"
                   + (f", the rules {cite(f'eq:{kind.name}-1')}–{cite(f'eq:{kind.name}-{rules}')} of the Training "
                      "section" if net.tables else ", the module's default optimizer")
                   + ") moves each parameter against its gradient, to (← its value after the step):")
    yield from _parameters(net, sweep, example.updated, latex, names, "eq:worked-step-", updated=True)


def _target_words(net) -> str:
    output = net.activations[-1].name if net.activations else "identity"
    return {"softmax": "the targets one-hot (sample i in class i)",
            "sigmoid": "the targets alternately 0 and 1"}.get(output, "and so are the targets")


def _parameters(net, sweep, values, latex: bool, printed: dict, prefix: str, updated: bool = False):
    """One numbered equation per layer, labelled ``prefix`` and its first parameter: its parameters'
    values side by side (``printed``: their names), as ``W ← …`` when ``updated`` (after the step)."""
    gets = (r" \leftarrow " if latex else " ← ") if updated else " = "
    layer = {}
    for name in net.param_names:
        layer.setdefault(sweep.quantities[name].layer, []).append(name)
    for names in layer.values():
        yield "rule", None, prefix + names[0], SIDE_BY_SIDE[latex].join(
            f"{printed[n]}{gets}{matrix(values[n], latex)}" for n in names)


def matrix(value, latex: bool) -> str:
    r"""``\begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix}`` or ``[1 2; 3 4]``, each entry to DIGITS digits."""
    rows = np.atleast_2d(np.asarray(value, dtype=float))
    cells = [[_number(v, latex) for v in row] for row in rows]
    if latex:
        return r"\begin{bmatrix} " + r" \\ ".join(" & ".join(row) for row in cells) + r" \end{bmatrix}"
    return "[" + "; ".join(" ".join(row) for row in cells) + "]"


def _number(v: float, latex: bool) -> str:
    """``v`` to DIGITS significant digits: ``-0.25``, ``1.194e-9`` (in LaTeX ``1.194 \\cdot 10^{-9}``)."""
    text = f"{v:.{DIGITS}g}"
    if text == "-0":
        return "0"
    mantissa, _, exponent = text.partition("e")
    if not exponent:
        return text
    return rf"{mantissa} \cdot 10^{{{int(exponent)}}}" if latex else f"{mantissa}e{int(exponent)}"
