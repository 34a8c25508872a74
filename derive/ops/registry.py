"""The op registry: every op of the graph, defined once in a module of ``derive/ops``.

An op is a class registered with ``@op("name")``. It states, side by side (see :class:`Op`):
its own values (parameters with their PyTorch names, masks) and its output's shape; its forward
definition, a SymPy matrix expression of its inputs; the vector-Jacobian product for each input,
a SymPy expression of the output's adjoint and the forward symbols, proved equal to
``sympy.diff`` of the definition by ``tests/test_ops.py`` on the op's own ``examples``; its
reasons in words, with ``ref`` placeholders for quantity names; and how its quantities are named.

A layer kind of the spec (``{ type = "layernorm" }``) is a frozen dataclass registered with
``@layer("name")`` beside its ops (see :class:`LayerKind`): it parses its spec table, says what it
learns, and expands into the graph's nodes. Adding an op, or a layer, is adding one module here;
``ops()`` imports every module of the package.
"""
import importlib
import pkgutil
from dataclasses import dataclass, fields, replace
from pathlib import Path

import sympy as sp

from ..fields import inline_args, inline_value

OPS: dict = {}
LAYERS: dict = {}


def op(name: str):
    """Register the decorated Op subclass under ``name`` (one instance: ops hold no state)."""
    def register(cls):
        cls.name = name
        OPS[name] = cls()
        return cls
    return register


def ops() -> dict:
    """Every registered op, by name: imports each module of ``derive.ops`` (sorted, so the order is fixed)."""
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        importlib.import_module(f"{__package__}.{info.name}")
    return OPS


def layer(kind: str):
    """Register the decorated LayerKind dataclass as the spec's layer ``type = kind``."""
    def register(cls):
        cls.kind = kind
        LAYERS[kind] = cls
        return cls
    return register


def layers() -> dict:
    """Every registered layer kind, by its spec name (dense first, the order ``--help`` lists them)."""
    ops()
    return LAYERS


@dataclass(frozen=True)
class Param:
    """A parameter an op owns: its letter in the notes, its attribute in the PyTorch module, its
    meaning, whether the spec's l1 and l2 penalties apply to it (weights, not biases), and ``init``,
    the constant it starts at whatever the init scheme (layer norm's γ = 1, β = 0; None: the layer's
    init scheme draws it)."""
    letter: str
    torch: str
    meaning: str
    penalized: bool = False
    init: float = None


@dataclass(frozen=True)
class Buffer:
    """State an op keeps beside the parameters, as torch's buffers (batch norm's running statistics): its
    name, its attribute in the PyTorch module, its meaning and its value at the start, an int for a
    counter (num_batches_tracked, a scalar) and a float for a statistic (the shape of the op's output).
    It gets no gradient and no optimizer step; a forward pass in training mode sets it to the op's ``update``."""
    name: str
    torch: str
    meaning: str
    init: float

    @property
    def integer(self) -> bool:
        return isinstance(self.init, int)


@dataclass(frozen=True)
class Out:
    """An op's forward result: the output's expression and the reason in words."""
    expr: sp.Basic
    reason: str


@dataclass(frozen=True)
class Grad:
    """One input's share of the adjoint: ``expr`` and its reason.

    Where a value's adjoint sums several shares (a value with several consumers), each reason after
    the first is attached with its ``joint`` ("; " starts a new clause, ", " continues the sentence).
    """
    expr: sp.Basic
    reason: str = ""
    joint: str = "; "


class Op:
    """The protocol of an op. ``node`` is a :class:`derive.graph.Node` (``inputs``, ``output``,
    ``layer``, ``attrs``, ``batch``); ``ins`` are the inputs' SymPy expressions (their symbols, or
    the expression of an input folded into this op's Step)."""
    name = ""
    params: tuple = ()
    role = "forward"        # the output's role ("loss" for a scalar the derivation minimises)
    reuses_adjoint = False  # the VJPs read the output's adjoint more than once: give it a symbol
    couples_samples = False  # the output of a sample depends on the other samples (no per-sample form)
    state: tuple = ()       # Buffers: module state beside the parameters (Node.state holds their values)

    def build(self, g, inputs: tuple, layer: int, **attrs):
        """Create the op's own values (parameters, masks) in the graph ``g``; return
        (every input, the output's axes, the output's names or None to fold it into its consumer)."""
        raise NotImplementedError

    def forward(self, node, ins) -> Out:
        """The output's expression in ``ins`` and the reason (a folded input's reason is put before it)."""
        raise NotImplementedError

    def vjp(self, node, g, ins, out) -> dict:
        """{input index: Grad} given the output's adjoint ``g`` and the output's expression ``out``; an
        input left out gets no share (the fused loss gives ŷ none, having stated its VJP for z)."""
        raise NotImplementedError

    def adjoint_names(self, node):
        """The names of the output's adjoint when the op gives it a symbol of its own (δ), else None."""
        return None

    def constraint(self, node, entries: dict) -> dict:
        """Substitutions on the inputs' entries under which the stated VJPs hold (default: none)."""
        return {}

    def evaluation(self, node, state):
        """The output's expression in evaluation mode, in the symbols ``state`` of the node's buffers (batch
        norm's running mean for the batch's mean), or None when both modes compute the same."""
        return None

    def update(self, node, ins, out, state) -> dict:
        """{buffer name: its new value} after a forward pass in training mode, in the inputs ``ins``, the
        output ``out`` and the buffers' symbols ``state`` (default: no buffers)."""
        return {}

    def examples(self) -> list:
        """[(label, build(g))]: small instances; ``build`` adds this op's node last to the graph ``g``."""
        raise NotImplementedError


class LayerKind:
    """The protocol of a layer kind: a frozen dataclass whose fields are its validated settings.

    ``keys`` are its spec keys (``type`` is allowed in all). ``parse(raw, at)`` validates a spec table
    at ``at`` (a :class:`derive.fields.At`: the path, the input's named sizes, whether it is last) and
    returns the layer; ``expand(g, l, a, last)`` adds its nodes to the graph ``g`` at position ``l``
    applied to the value ``a`` and returns its output value; ``shape`` is its output's named sizes.
    """
    kind = ""
    keys: tuple = ()
    activations: tuple = ()  # the activations it applies (the checker and the proof's domains read them)
    layers: tuple = ()       # a block's inner layers
    couples_samples = False  # it normalizes with the batch's statistics (batch norm): no training batch of 1

    @classmethod
    def parse(cls, raw: dict, at):
        raise NotImplementedError

    @classmethod
    def inline_table(cls, args, at) -> dict:
        """The spec table of the inline ``kind(key=value, ...)``: true/false, whole numbers, numbers, names."""
        return {"type": cls.kind, **{k: inline_value(v) for k, v in inline_args(args, at.where).items()}}

    @property
    def shape(self) -> tuple:
        return (("features", self.units),)

    def parameters(self, shape: tuple) -> int:
        """How many numbers the layer learns from an input of named sizes ``shape``."""
        return 0

    def expand(self, g, l, a, last: bool):
        raise NotImplementedError

    def capped(self, cap: int):
        """The same layer at most ``cap`` wide, for the proof at small sizes (``derive.verify.shrink``)."""
        return replace(self, units=min(self.units, cap))

    def inline(self, dense, user=str) -> str:
        """The layer in the inline grammar (``dense`` and ``user`` as ``derive.spec.inline`` gives them)."""
        settings = [f"{f.name}={_inline_value(getattr(self, f.name))}" for f in fields(self)
                    if f.name != "units" and getattr(self, f.name) != f.default]
        return self.kind + (f"({', '.join(settings)})" if settings else "")


def _inline_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


# -- expression helpers shared by the ops ------------------------------------------------------------

def scaled(coefficient, matrix):
    """``coefficient * matrix`` kept as a product, so ``2 (yhat - y)`` is not distributed."""
    return matrix if coefficient == 1 else sp.MatMul(coefficient, matrix, evaluate=False)


def hadamard(g, factor):
    """``g ⊙ factor`` as one flat product, so a chain of element-wise VJPs reads ``g ⊙ m ⊙ f'(z)``."""
    factors = g.args if isinstance(g, sp.HadamardProduct) else (g,)
    return sp.HadamardProduct(*factors, factor)


def times(g, expr):
    """A scalar output's adjoint ``g`` times the local derivative ``expr`` (just ``expr`` when g is 1)."""
    return expr if g == 1 else g * expr
