"""Layers on a sequence of T·E features in (t, e) order: a learned position table added to it,
``{ type = "positional" }``, stored as ``torch.nn.Embedding(T, E)`` (row t is added at position t); the
mean over its positions, ``{ type = "mean", axis = "length" }``, which ends the sequence (E features)
for a classifier. (``{ type = "layernorm" }`` read on a sequence, ``torch.nn.LayerNorm(E)`` at every
position, lives with layer norm in ``layernorm.py``.)

In the math the table P (T, E) enters as the column of its rows stacked, [P_tᵀ]_(t=1..T) (T·E, 1),
added to every sample; its gradient is the sum of the samples' gradients, unstacked into rows. The mean is
(1/T) Σ_t x_t and gives each position a T-th of its gradient.
"""
from dataclasses import dataclass, replace

import sympy as sp

from ..errors import ChainruleError, shown
from ..fields import sequence_input
from ..naming import Names, indexed, layer_key, letter, network_output
from ..nodes import OfOneMatrix, broadcast
from ..sequence import at_step, stacked
from ..steps import ref
from .attention import SequenceOut
from .registry import Grad, LayerKind, Op, Out, Param, layer, op


class Stacked(OfOneMatrix):
    """The rows of a table P (T, E) stacked into one column vec(Pᵀ) (T·E, 1), in (t, e) order."""

    @property
    def shape(self):
        rows, cols = self.mat.shape
        return rows * cols, sp.Integer(1)

    def entries(self, mat):
        return sp.ImmutableMatrix(mat.rows * mat.cols, 1, list(mat))

    def numeric(self, value):
        return value(self.mat).reshape(-1, 1)

    def step_form(self, printer, latex):
        """Row t of the table as a column, P_tᵀ: what position t's features get."""
        return at_step(printer, self.mat, latex) + (r"^{\top}" if latex else "ᵀ"), False

    def _latex(self, printer):
        return stacked(self.step_form(printer, True)[0], True)

    def _sympystr(self, printer):
        return stacked(self.step_form(printer, False)[0], False)

    def _numpycode(self, printer):
        # the table as torch stores it, (T, E): a row of T·E numbers broadcast over the samples held (N, T·E)
        return f"{printer._name(self.mat.name)}.reshape({'-1' if printer._transposed else '-1, 1'})"


class _OfSequence(OfOneMatrix):
    """A node of one matrix argument ``mat`` and the sequence's length T."""

    @property
    def length(self) -> int:
        return int(self.args[1])


class Unstacked(_OfSequence):
    """A column (T·E, 1) back into the table of its rows (T, E): the inverse of :class:`Stacked`."""

    @property
    def shape(self):
        return self.args[1], self.mat.shape[0] / self.args[1]

    def entries(self, mat):
        return sp.ImmutableMatrix(self.length, mat.rows // self.length, list(mat))

    def numeric(self, value):
        return value(self.mat).reshape(self.length, -1)

    def _row(self, printer, latex):
        """Row t of the table: step t of the column, transposed (of the samples' sum, ``(G 1_N)_tᵀ``, in the batch form)."""
        return at_step(printer, self.mat, latex) + (r"^{\top}" if latex else "ᵀ")

    def _latex(self, printer):
        return stacked(self._row(printer, True), True)

    def _sympystr(self, printer):
        return stacked(self._row(printer, False), False)

    def _numpycode(self, printer):
        text = printer._print(self.mat)  # the samples' sum, 1-D (T·E,)
        return f"({text}).reshape({self.length}, -1)"


class SequenceMean(_OfSequence):
    """(1/T) Σ_t x_t of a sequence X (T·E, N): (E, N)."""

    @property
    def shape(self):
        return self.mat.shape[0] / self.args[1], self.mat.shape[1]

    def entries(self, mat):
        E = mat.rows // self.length
        return sp.ImmutableMatrix(E, mat.cols, lambda e, n: sum(mat[t * E + e, n] for t in range(self.length))
                                  / self.length)

    def numeric(self, value):
        M = value(self.mat)
        return M.reshape(self.length, -1, M.shape[1]).mean(axis=0)

    def _latex(self, printer):
        return rf"\frac{{1}}{{T}} \sum_{{t=1}}^{{T}} {at_step(printer, self.mat, True, factor=False)}"

    def _sympystr(self, printer):
        return f"(1/T) Σ_t {at_step(printer, self.mat, False, factor=False)}"

    def _numpycode(self, printer):
        text = printer._factor(self.mat)
        if printer._transposed:  # held (N, T·E): the positions are the middle axis of (N, T, E)
            return f"{text}.reshape({text}.shape[0], {self.length}, -1).mean(axis=1)"
        return f"{text}.reshape({self.length}, -1, {text}.shape[1]).mean(axis=0)"


class SequenceSpread(_OfSequence):
    """(1/T) G copied to each of T positions: G (E, N) -> (T·E, N), the mean's VJP."""

    @property
    def shape(self):
        return self.mat.shape[0] * self.args[1], self.mat.shape[1]

    def entries(self, mat):
        return sp.ImmutableMatrix.vstack(*([mat / self.length] * self.length))

    def numeric(self, value):
        import numpy as np
        return np.tile(value(self.mat) / self.length, (self.length, 1))

    def step_form(self, printer, latex):
        """Every position's share, the same at each t: ``(1/T) G``."""
        G = printer._print(self.mat)
        if isinstance(self.mat, (sp.MatAdd, sp.HadamardProduct)):
            G = rf"\left({G}\right)" if latex else f"({G})"
        return (rf"\frac{{1}}{{T}} {G}" if latex else f"(1/T) {G}"), True

    def _latex(self, printer):
        return stacked(self.step_form(printer, True)[0], True)

    def _sympystr(self, printer):
        return stacked(self.step_form(printer, False)[0], False)

    def _numpycode(self, printer):
        text = printer._factor(self.mat)
        reps = f"(1, {self.length})" if printer._transposed else f"({self.length}, 1)"  # (t, e) order either way
        return f"np.tile({text} / {self.length}, {reps})"


@op("positional")
class Positional(Op):
    """``(T·E, N) -> (T·E, N)``: the input plus the position table P (T, E) (torch's nn.Embedding weight)."""
    params = (Param("P", "weight", "position table"),)

    def build(self, g, inputs, layer, length):
        (x,) = inputs
        E = x.shape[0] // length
        P = g.value(Names(f"P{layer_key(layer)}", f"P_{{{layer}}}", f"P{layer}", f"position table of layer {layer} "
                          f"(a row of {E} numbers per position)"),
                    (("num_embeddings", length), ("embedding_dim", E)), "param", layer, param=self.params[0])
        return (x, P), x.axes, _names(g, layer, "input plus its positions")

    def draws(self, node) -> dict:
        """As torch.nn.Embedding draws its weight: N(0, 1)."""
        return {node.inputs[1]: ("normal", 1.0)}

    def forward(self, node, ins):
        x, P = ins
        return Out(sp.MatAdd(x, broadcast(Stacked(P), x.shape)),
                   f"row t of the position table {ref(node.inputs[1])} added to the features of position t"
                   + (", in every sample" if node.batched else ""))

    def vjp(self, node, g, ins, out):
        total = g * sp.OneMatrix(node.batch, 1) if node.batched else g
        return {0: Grad(g, "adding the position table passes the gradient on unchanged"),
                1: Grad(Unstacked(total, node.attrs["length"]),
                        "row t of the table gets the gradient of position t" + (" summed over the batch"
                                                                               if node.batched else ""))}

    def examples(self):
        return [("T = 3, E = 2", lambda g: g.add("positional", [g.leaf("x", 6)], 1, length=3))]


@op("sequence_mean")
class Mean(Op):
    """``(T·E, N) -> (E, N)``: the mean of the T positions' features; attr ``length`` (T)."""

    def build(self, g, inputs, layer, length):
        (x,) = inputs
        return inputs, g.features(x.shape[0] // length), _names(g, layer, "mean over the positions")

    def forward(self, node, ins):
        return Out(SequenceMean(ins[0], node.attrs["length"]),
                   f"the mean over the T = {node.attrs['length']} positions of {ref(node.inputs[0])}, feature by feature")

    def vjp(self, node, g, ins, out):
        return {0: Grad(SequenceSpread(g, node.attrs["length"]), "each position adds a T-th of itself to the mean")}

    def examples(self):
        return [("T = 3, E = 2", lambda g: g.add("sequence_mean", [g.leaf("x", 6)], 1, length=3))]


def _names(g, layer, meaning) -> Names:
    return indexed(letter("a", g.batched), layer, f"{meaning} (layer {layer})")


@layer("positional")
@dataclass(frozen=True)
class PositionalLayer(SequenceOut, LayerKind):
    """A learned position table added to a sequence (length, features), stored as nn.Embedding(T, E)."""
    length: int
    features: int
    keys = ("type",)
    takes = ("sequences", "tokens")  # tokens: its parse says to put an embedding first

    @classmethod
    def parse(cls, raw, at):
        return cls(*sequence_input(at, f"{at.where} (positional)"))

    def parameters(self, shape) -> int:
        return self.units

    def expand(self, g, l, a, last):
        names = network_output(g.batched) if last else _names(g, l, "input plus its positions")
        return g.add("positional", [a], l, out=g.value(names, a.axes, "forward", l, layout=self.shape),
                     length=self.length)

    def capped(self, cap: int):
        return replace(self, length=min(self.length, cap), features=min(self.features, cap))

    def inline(self, dense, user=str) -> str:
        return "positional"


@layer("mean")
@dataclass(frozen=True)
class MeanLayer(LayerKind):
    """The mean over a sequence's positions, (length, features) -> features: a sequence classifier's pooling."""
    length: int
    features: int
    keys = ("type", "axis")
    takes = ("sequences", "tokens")

    @property
    def units(self) -> int:
        return self.features

    @classmethod
    def parse(cls, raw, at):
        where = f"{at.where} (mean)"
        axis = raw.get("axis", "length")
        if axis != "length":
            raise ChainruleError(f"{where} axis must be \"length\" (the mean over the positions), not {shown(axis)}")
        return cls(*sequence_input(at, where))

    def expand(self, g, l, a, last):
        names = network_output(g.batched) if last else _names(g, l, "mean over the positions")
        return g.add("sequence_mean", [a], l, out=g.value(names, g.features(self.features), "forward", l),
                     length=self.length)

    def capped(self, cap: int):
        return replace(self, length=min(self.length, cap), features=min(self.features, cap))

    def inline(self, dense, user=str) -> str:
        return "mean"
