"""Layers on a sequence of T·E features in (t, e) order: a learned position table added to it,
``{ type = "positional" }``, stored as ``torch.nn.Embedding(T, E)`` (row t is added at position t); the
mean over its positions, ``{ type = "mean", axis = "length" }``, which ends the sequence (E features)
for a classifier; and ``{ type = "layernorm" }`` read on a sequence, ``torch.nn.LayerNorm(E)`` at every
position (a transformer's), whose nodes unroll the compact layer-norm backward per position.

In the math the table P (T, E) enters as the column of its rows stacked, vec(Pᵀ) (T·E, 1), added to
every sample; its gradient is the sum of the samples' gradients, unstacked into rows. The mean is
(1/T) Σ_t x_t and gives each position a T-th of its gradient.
"""
from dataclasses import dataclass, replace

import sympy as sp
from sympy.matrices.expressions import MatrixExpr

from ..errors import ChainruleError, shown
from ..fields import sequence_input
from ..naming import Names, indexed, layer_key, letter, network_output
from ..nodes import OfOneMatrix, broadcast, explicit, held, shared_backward
from ..steps import ref
from .attention import SequenceOut
from .layernorm import LayerNormLayer
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

    def _latex(self, printer):
        return rf"\operatorname{{vec}}\left({printer._print(self.mat)}^{{\top}}\right)"

    def _sympystr(self, printer):
        return f"vec({printer._print(self.mat)}ᵀ)"

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

    def _latex(self, printer):
        return rf"\operatorname{{rows}}_{{T}}\left({printer._print(self.mat)}\right)"

    def _sympystr(self, printer):
        return f"rows_T({printer._print(self.mat)})"

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
        return rf"\frac{{1}}{{T}} \sum_{{t=1}}^{{T}} \left({printer._print(self.mat)}\right)_{{t}}"

    def _sympystr(self, printer):
        return f"(1/T) Σ_t {printer._print(self.mat)}_t"

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

    def _latex(self, printer):
        return rf"\frac{{1}}{{T}} \left[{printer._print(self.mat)}\right]_{{t=1}}^{{T}}"

    def _sympystr(self, printer):
        return f"(1/T) [{printer._print(self.mat)}] for t = 1..T"

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
        return {0: Grad(g, "the identity plus a constant"),
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


# -- layer norm at every position of a sequence --------------------------------------------------------

def _normalized(x, eps):
    """(x̂, σ) of one position's column block x (E, N): each column less its mean, over its σ."""
    E = x.rows
    mu = sp.ones(1, E) * x / E
    centred = x - sp.ones(E, 1) * mu
    sigma = (sp.ones(1, E) * centred.applyfunc(lambda u: u ** 2) / E).applyfunc(lambda v: sp.sqrt(v + eps))
    return centred.multiply_elementwise(sp.ones(E, 1) * sigma.applyfunc(lambda s: 1 / s)), sigma


class StepLayerNorm(MatrixExpr):
    """Layer norm over the E features of each position t of X (T·E, N), the same γ and β (E, 1) at every t
    (γ, β absent without affine): ``args`` X[, γ, β], eps, T."""

    def __new__(cls, *args):
        return sp.Basic.__new__(cls, *args[:-2], sp.Float(args[-2]), sp.sympify(args[-1]))

    @property
    def mats(self) -> tuple:
        return self.args[:-2]

    @property
    def eps(self):
        return self.args[-2]

    @property
    def length(self) -> int:
        return int(self.args[-1])

    @property
    def shape(self):
        return self.mats[0].shape

    def doit(self, **hints):
        mats = [m.doit(**hints) for m in self.mats]
        if not explicit(*mats):
            return StepLayerNorm(*mats, self.eps, self.length)
        X, *affine = mats
        E = X.rows // self.length
        blocks = []
        for t in range(self.length):
            xhat, _ = _normalized(X[t * E:(t + 1) * E, :], self.eps)
            if affine:
                gamma, beta = affine
                xhat = xhat.multiply_elementwise(gamma * sp.ones(1, X.cols)) + beta * sp.ones(1, X.cols)
            blocks.append(xhat)
        return sp.ImmutableMatrix.vstack(*blocks)

    def _latex(self, printer):
        X, *affine = (printer._print(m) for m in self.mats)
        inner = rf"\left({X}\right)_{{t}}" + (f"; {', '.join(affine)}" if affine else "")
        return rf"\left[\operatorname{{LN}}\left({inner}\right)\right]_{{t=1}}^{{T}}"

    def _sympystr(self, printer):
        X, *affine = (printer._print(m) for m in self.mats)
        return f"[LN({X}_t{''.join('; ' + a for a in affine[:1])}{''.join(', ' + a for a in affine[1:])})] for t = 1..T"

    saves = True  # its code returns (the output, what the backward pass reads), stored as <name>_saved

    def _numpycode(self, printer):
        printer.helpers.add("_layernorm_steps")
        X, *affine = (_held(printer, m) for m in self.mats)
        gamma, beta = affine or ("None", "None")
        return f"_layernorm_steps({X}, {gamma}, {beta}, {self.length}, {float(self.eps)!r})"


class StepLayerNormGrad(MatrixExpr):
    """dL/d(input ``which``: 0 X, 1 γ, 2 β) of a :class:`StepLayerNorm`, G = dL/d(its output), at every position
    the compact form g = γ ⊙ G_t, dL/dx_t = (g - mean(g) - x̂_t ⊙ mean(g ⊙ x̂_t)) / σ_t; dL/dγ = Σ_t Σ_n G_t ⊙ x̂_t,
    dL/dβ = Σ_t Σ_n G_t. ``out`` is the node's output (the code reads what its forward pass stored)."""

    def __new__(cls, which, G, out, *args):
        return sp.Basic.__new__(cls, sp.sympify(which), G, out, *args[:-2], sp.Float(args[-2]), sp.sympify(args[-1]))

    @property
    def which(self) -> int:
        return int(self.args[0])

    @property
    def mats(self) -> tuple:
        return self.args[1:-2]

    @property
    def length(self) -> int:
        return int(self.args[-1])

    @property
    def shape(self):
        return self.mats[2 + self.which].shape

    def doit(self, **hints):
        G, out, *mats = (m.doit(**hints) for m in self.mats)
        eps = self.args[-2]
        if not explicit(G, *mats):
            return StepLayerNormGrad(self.which, G, out, *mats, eps, self.length)
        X, *affine = mats
        E, N = X.rows // self.length, X.cols
        gamma = affine[0] if affine else sp.ones(E, 1)
        dX, dgamma, dbeta = [], sp.zeros(E, 1), sp.zeros(E, 1)
        for t in range(self.length):
            rows = slice(t * E, (t + 1) * E)
            xhat, sigma = _normalized(X[rows, :], eps)
            Gt = G[rows, :]
            g = Gt.multiply_elementwise(gamma * sp.ones(1, N))
            mean_g = sp.ones(E, 1) * (sp.ones(1, E) * g) / E
            mean_gx = sp.ones(E, 1) * (sp.ones(1, E) * g.multiply_elementwise(xhat)) / E
            spread = g - mean_g - xhat.multiply_elementwise(mean_gx)
            dX.append(spread.multiply_elementwise(sp.ones(E, 1) * sigma.applyfunc(lambda s: 1 / s)))
            dgamma += Gt.multiply_elementwise(xhat) * sp.ones(N, 1)
            dbeta += Gt * sp.ones(N, 1)
        return (sp.ImmutableMatrix.vstack(*dX), dgamma.as_immutable(), dbeta.as_immutable())[self.which]

    def _form(self, printer, latex):
        """The compact form at position t, with G_t the position's rows of G and g_t = γ ⊙ G_t."""
        G = printer._print(self.mats[0])
        ones = self.mats[0].shape[1] != 1  # the batch form: summed over the samples too
        if latex:
            Gt = rf"\left({G}\right)_{{t}}"
            total = r" \mathbf{1}_{N}" if ones else ""
            return (r"\left[\frac{1}{\sigma_{t}} \odot \left(g_{t} - \overline{g_{t}} - \hat{x}_{t} \odot "
                    r"\overline{g_{t} \odot \hat{x}_{t}}\right)\right]_{t=1}^{T}",
                    rf"\sum_{{t=1}}^{{T}} \left({Gt} \odot \hat{{x}}_{{t}}\right){total}",
                    rf"\sum_{{t=1}}^{{T}} {Gt}{total}")[self.which]
        total = " 1_N" if ones else ""
        return ("[(g_t - mean(g_t) - x̂_t ⊙ mean(g_t ⊙ x̂_t)) / σ_t] for t = 1..T", f"Σ_t ({G}_t ⊙ x̂_t){total}",
                f"Σ_t {G}_t{total}")[self.which]

    def _latex(self, printer):
        return self._form(printer, True)

    def _sympystr(self, printer):
        return self._form(printer, False)

    def _numpycode(self, printer):
        """One call of the backward pass gives every input's gradient: made once, indexed by each Step."""
        G, out, *mats = self.mats
        gamma = _held(printer, mats[1]) if len(mats) > 1 else "None"
        call = f"_layernorm_steps_backward({_held(printer, G)}, {printer._name(f'{out.name}_saved')}, {gamma})"
        return shared_backward(printer, call, out, self.which)


def _held(printer, m) -> str:
    """``held``, a batch value's expression in parentheses."""
    text = held(printer, m)
    return text if isinstance(m, sp.MatrixSymbol) else f"({text})"


@op("step_layernorm")
class StepLayerNormOp(Op):
    """``(T·E, N) -> (T·E, N)``: torch.nn.LayerNorm(E) at every position; attrs ``length``, ``eps``, ``affine``."""
    reuses_adjoint = True
    params = (Param("gamma", "weight", "gain", init=1.0), Param("beta", "bias", "shift", init=0.0))

    def build(self, g, inputs, layer, length, eps=1e-5, affine=True):
        (x,) = inputs
        E = x.shape[0] // length
        # one gain and one shift per feature, the same at every position
        params = g.greek_params(self.params, layer, (("features", E), ("batch", 1))) if affine else ()
        return (x,) + params, x.axes, _names(g, layer, "layer norm at every position")

    def forward(self, node, ins):
        a = node.attrs
        return Out(StepLayerNorm(*ins, a.get("eps", 1e-5), a["length"]),
                   f"each position's {ins[0].shape[0] // a['length']} features of {ref(node.inputs[0])} normalized "
                   f"by their own mean and standard deviation (biased, eps = {a.get('eps', 1e-5):g} inside the square "
                   f"root)" + (", then scaled and shifted feature by feature, the same gain and shift at every "
                               "position" if a.get("affine", True) else ""))

    def vjp(self, node, g, ins, out):
        a = node.attrs
        args = (*ins, a.get("eps", 1e-5), a["length"])
        reasons = ("at each position t, the chain rule through the layer norm along all three paths (the mean, the "
                   "standard deviation and the normalized features) in the compact form: with g_t the gain times the "
                   "position's gradient, g_t less its mean, less the normalized features times the mean of g times "
                   "them, all over the position's standard deviation",
                   "each gain scales its normalized feature at every position: the gradient times the normalized "
                   "features, summed over the positions" + (" and the batch" if node.batched else ""),
                   "each shift adds to its feature at every position: the gradient summed over the positions"
                   + (" and the batch" if node.batched else ""))
        return {i: Grad(StepLayerNormGrad(i, g, out, *args), reasons[i]) for i in range(len(ins))}

    def examples(self):
        def build(**attrs):
            return lambda g: g.add("step_layernorm", [g.leaf("x", 4)], 1, length=2, **attrs)
        return [("T = 2, E = 2", build()), ("without affine, eps 0.5", build(affine=False, eps=0.5))]


@dataclass(frozen=True)
class StepLayerNormLayer(LayerNormLayer):
    """``{ type = "layernorm" }`` on a sequence: torch.nn.LayerNorm(E) normalizes each position's E features."""
    length: int = 1

    @property
    def features(self) -> int:
        return self.units // self.length

    @property
    def shape(self) -> tuple:
        return (("length", self.length), ("features", self.features))

    @classmethod
    def parse(cls, raw, at):
        T, E = sequence_input(at, f"{at.where} (layernorm)")
        flat = LayerNormLayer.parse(raw, replace(at, shape=(("features", E),)))  # eps, affine and E >= 2 checked
        return cls(T * E, flat.eps, flat.affine, T)

    def parameters(self, shape) -> int:
        return 2 * self.features if self.affine else 0

    def expand(self, g, l, a, last):
        names = network_output(g.batched) if last else _names(g, l, "layer norm at every position")
        return g.add("step_layernorm", [a], l, out=g.value(names, a.axes, "forward", l, layout=self.shape),
                     length=self.length, eps=self.eps, affine=self.affine)

    def capped(self, cap: int):
        T, E = min(self.length, cap), min(self.features, cap)
        return replace(self, units=T * E, length=T)

    def inline(self, dense, user=str) -> str:
        return LayerNormLayer(self.units, self.eps, self.affine).inline(dense, user)
