"""Layer normalization, as ``torch.nn.LayerNorm(features, eps, elementwise_affine)``.

Each sample (a column) is normalized over its features, with the biased variance and ε inside the
square root, then scaled and shifted feature by feature::

    μ = mean(x)                      one mean per sample (a row in the batch form)
    σ = sqrt(mean((x - μ)²) + ε)     one standard deviation per sample
    x̂ = (1/σ) ⊙ (x - μ)
    y = γ ⊙ x̂ + β                    γ (torch's weight, init 1) and β (its bias, init 0), one per feature

The spec's ``{ type = "layernorm", eps = 1e-5, affine = true }`` (:class:`LayerNormLayer`) expands into the three statistics ops below (each a Step of the notes, each with its
own VJPs, partial derivatives like every op's) and its own node, whose VJP for x is stated once for
all three paths through μ, σ and x̂, in the compact textbook form::

    g = γ ⊙ dL/dy,   dL/dx = (1/σ) ⊙ (g - mean(g) - x̂ ⊙ mean(g ⊙ x̂))   (means over the features)
    dL/dγ = Σ_batch dL/dy ⊙ x̂,   dL/dβ = Σ_batch dL/dy

so x̂, σ and μ pass on no share of their own. The Step writes g out where it is read; the emitted
code computes it once (``codegen.emit`` computes a repeated product once). ``tests/test_ops.py`` proves every rule here against
``sympy.diff`` of the definitions on the ``examples``.

On a sequence (layout length × features) the same layer is ``torch.nn.LayerNorm(E)`` at every position
(a transformer's): the ``step_layernorm`` op at the end, whose nodes unroll the compact backward per
position.
"""
from dataclasses import dataclass, replace

import sympy as sp
from sympy.matrices.expressions import MatrixExpr

from ..errors import ChainruleError
from ..fields import boolean, number, sequence_input, sequence_length
from ..naming import Names, greek, indexed, letter, network_output, normalized
from ..nodes import FeatureMean, Pointwise, broadcast, explicit, held, shared_backward
from ..sequence import at_step
from ..steps import formula, ref
from .activations import Z
from .registry import Grad, LayerKind, Op, Out, Param, hadamard, layer, op, scaled


def reciprocal(sigma):
    """1/σ, entry by entry."""
    return Pointwise(sp.Lambda(Z, 1 / Z), "", sigma)


def centred(x, mu):
    """x - μ, the sample's mean taken from each of its features."""
    return sp.MatAdd(x, scaled(-1, broadcast(mu, x.shape)))


def _stat_axes(g) -> tuple:
    """One number per sample: a (1, N) row in the batch form, a scalar-like (1, 1) for one sample."""
    return (("stat", 1), ("batch", g.batch))


def _per(node) -> str:
    return "each column (sample)" if node.batched else "the sample"


@op("layernorm_mean")
class Mean(Op):
    """``(F, N) -> (1, N)``: μ, the mean of each sample's F features."""

    def build(self, g, inputs, layer):
        return inputs, _stat_axes(g), greek("mu", layer, f"mean of each sample's features in layer {layer}")

    def forward(self, node, ins):
        return Out(FeatureMean(ins[0]), f"the mean over the {node.inputs[0].shape[0]} features of {_per(node)}")

    def vjp(self, node, g, ins, out):
        x = ins[0]
        return {0: Grad(scaled(sp.Rational(1, x.shape[0]), broadcast(g, x.shape)),
                        "each feature adds one F-th of itself to the mean")}

    def examples(self):
        return [("3 features", lambda g: g.add("layernorm_mean", [g.leaf("x", 3)], 1))]


@op("layernorm_std")
class Std(Op):
    """``(F, N), (1, N) -> (1, N)``: σ = sqrt(mean((x - μ)²) + ε), inputs x and its mean μ; attr ``eps``."""

    def build(self, g, inputs, layer, eps):
        return inputs, _stat_axes(g), greek("sigma", layer, f"standard deviation of each sample's features in "
                                                            f"layer {layer}, with eps")

    def forward(self, node, ins):
        x, mu = ins
        eps = sp.Float(node.attrs["eps"])
        square = Pointwise(sp.Lambda(Z, Z ** 2), "", centred(x, mu))
        return Out(Pointwise(sp.Lambda(Z, sp.sqrt(Z + eps)), "", FeatureMean(square)),
                   f"the standard deviation over the features of {_per(node)}: the biased variance (divided by "
                   f"F, as PyTorch's layer norm divides it) plus eps = {node.attrs['eps']:g} under the square root, so a "
                   f"constant input gives sqrt(eps), never 0")

    def vjp(self, node, g, ins, out):
        x, mu = ins
        per_sigma = hadamard(g, reciprocal(out))
        return {0: Grad(scaled(sp.Rational(1, x.shape[0]), hadamard(broadcast(per_sigma, x.shape), centred(x, mu))),
                        "the standard deviation moves with each feature by its distance from the mean over F times the standard deviation"),
                1: Grad(scaled(-1, hadamard(per_sigma, FeatureMean(centred(x, mu)))), "and against the mean by the mean distance from it over the standard deviation")}

    def examples(self):
        def build(eps):
            return lambda g: g.add("layernorm_std", [g.leaf("x", 3), g.leaf("mu", 1)], 1, eps=eps)
        return [("eps 1e-5", build(1e-5)), ("eps 0.5", build(0.5))]


@op("layernorm_normalize")
class Normalize(Op):
    """``(F, N), (1, N), (1, N) -> (F, N)``: x̂ = (1/σ) ⊙ (x - μ), inputs x, μ, σ."""
    reuses_adjoint = True

    def build(self, g, inputs, layer, named=True):
        names = normalized(g.batched, layer, f"normalized input of layer {layer}") if named else None
        return inputs, inputs[0].axes, names

    def forward(self, node, ins):
        x, mu, sigma = ins
        return Out(hadamard(broadcast(reciprocal(sigma), x.shape), centred(x, mu)),
                   f"each feature less the mean, divided by the standard deviation of {_per(node)}")

    def vjp(self, node, g, ins, out):
        x, _, sigma = ins
        features = x.shape[0]
        inv = reciprocal(sigma)
        return {0: Grad(hadamard(broadcast(inv, x.shape), g), "each normalized feature moves with its feature by one over the standard deviation"),
                1: Grad(scaled(-features, hadamard(inv, FeatureMean(g))), "against the mean by the same"),
                2: Grad(scaled(-features, hadamard(inv, FeatureMean(hadamard(g, out)))), "and against the standard deviation by the normalized feature over the standard deviation")}

    def examples(self):
        return [("3 features", lambda g: g.add("layernorm_normalize", [g.leaf("x", 3), g.leaf("mu", 1),
                                                                       g.leaf("sigma", 1)], 1))]


@op("layernorm")
class LayerNorm(Op):
    """``(F, N) -> (F, N)``; attrs ``eps`` and ``affine`` (γ and β, torch's weight and bias, when true).

    Its node reads (x, x̂, σ[, γ, β]): x̂ and σ for the VJP, x to state that VJP for x directly.
    """
    reuses_adjoint = True  # dL/dy is read by the VJPs of x, γ and β
    params = (Param("gamma", "weight", "gain", init=1.0), Param("beta", "bias", "shift", init=0.0))

    def build(self, g, inputs, layer, eps=1e-5, affine=True):
        (x,) = inputs
        mu = g.add("layernorm_mean", [x], layer)
        sigma = g.add("layernorm_std", [x, mu], layer, eps=eps)
        # without γ and β, y is x̂: x̂ is folded into y's Step rather than copied into it
        xhat = g.add("layernorm_normalize", [x, mu, sigma], layer, named=affine)
        # one gain and one shift per feature
        params = g.greek_params(self.params, layer, (("features", x.shape[0]), ("batch", 1))) if affine else ()
        out = indexed(letter("a", g.batched), layer, f"output of layer {layer}")
        return (x, xhat, sigma) + params, x.axes, out

    def forward(self, node, ins):
        xhat = ins[1]
        if not node.attrs.get("affine", True):
            return Out(xhat, "layer norm without gain and shift")
        gamma, beta = ins[3:]
        return Out(sp.MatAdd(hadamard(broadcast(gamma, xhat.shape), xhat), broadcast(beta, xhat.shape)),
                   "scaled by the gain and shifted by the bias, feature by feature")

    def vjp(self, node, g, ins, out):
        affine = node.attrs.get("affine", True)
        x, sigma = node.inputs[0], node.inputs[2]
        xhat = ins[1] if affine else out
        shape = xhat.shape
        # g = γ ⊙ dL/dy, kept one product (not flattened into g ⊙ x̂) so the code computes it once
        grad = sp.HadamardProduct(broadcast(ins[3], shape), g) if affine else g
        spread = sp.MatAdd(grad, scaled(-1, broadcast(FeatureMean(grad), shape)),
                           scaled(-1, hadamard(xhat, broadcast(FeatureMean(sp.HadamardProduct(grad, xhat)), shape))))
        xhat_name = ref(node.inputs[1]) if affine else ref(node.output)
        dy, dx = (formula(f"⟦partial⟧L/⟦partial⟧{ref(v)}") for v in (node.output, x))
        g_is = f"the gain {ref(node.inputs[3])} times {dy}, element-wise" if affine else dy
        shares = {0: Grad(hadamard(broadcast(reciprocal(ins[2]), shape), spread),
                          f"chain rule through the layer norm along all three paths from {ref(x)} (through the mean, "
                          f"the standard deviation and {xhat_name}) at once, in the compact form: with g = {g_is}, "
                          f"{dx} is g less its mean, less {xhat_name} times the mean of g times {xhat_name}, "
                          f"all over {ref(sigma)} (means over the features of {_per(node)})")}
        if affine:
            total = sp.OneMatrix(node.batch, 1) if node.batched else None
            summed = " summed over the batch" if node.batched else ""
            shares[3] = Grad(hadamard(g, xhat) * total if total is not None else hadamard(g, xhat),
                             f"each gain scales its normalized feature: {dy} times {xhat_name}{summed}")
            shares[4] = Grad(g * total if total is not None else g, f"each shift adds to its feature: {dy}{summed}")
        return shares

    def examples(self):
        def build(**attrs):
            return lambda g: g.add("layernorm", [g.leaf("x", 3)], 1, **attrs)
        return [("affine", build()), ("without affine", build(affine=False)), ("eps 0.5", build(eps=0.5))]


@layer("layernorm")
@dataclass(frozen=True)
class LayerNormLayer(LayerKind):
    """``torch.nn.LayerNorm(units, eps, elementwise_affine=affine)``: normalizes each sample's features."""
    units: int
    eps: float = 1e-5
    affine: bool = True
    keys = ("type", "eps", "affine")

    @classmethod
    def parse(cls, raw, at):
        if sequence_length(at.shape):
            return StepLayerNormLayer.parse(raw, at)  # torch.nn.LayerNorm(E) at every position of a sequence
        where = at.where
        eps = number(raw, "eps", 1e-5, where, 0, 1, closed=(False, True), hint=" (torch's default is 1e-5)")
        affine = boolean(raw, "affine", True, where)
        if at.width < 2:
            raise ChainruleError(f"{where} normalizes {at.width} feature; layer norm needs at least 2 (every value "
                                 f"of one feature normalizes to 0)")
        return cls(at.width, eps, affine)

    def parameters(self, shape) -> int:
        return 2 * self.units if self.affine else 0  # γ and β, one per feature

    def expand(self, g, l, a, last):
        out = g.value(network_output(g.batched), a.axes, "forward", l) if last else None
        return g.add("layernorm", [a], l, out=out, eps=self.eps, affine=self.affine)


# -- layer norm at every position of a sequence --------------------------------------------------------

def _position_names(g, layer) -> Names:
    return indexed(letter("a", g.batched), layer, f"layer norm at every position (layer {layer})")


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
        affine = [printer._print(m) for m in self.mats[1:]]
        inner = at_step(printer, self.mats[0], True, factor=False) + (f"; {', '.join(affine)}" if affine else "")
        return rf"\left[\operatorname{{LN}}\left({inner}\right)\right]_{{t=1}}^{{T}}"

    def _sympystr(self, printer):
        X, affine = at_step(printer, self.mats[0], False, factor=False), [printer._print(m) for m in self.mats[1:]]
        return f"[LN({X}{''.join('; ' + a for a in affine[:1])}{''.join(', ' + a for a in affine[1:])})]_(t=1..T)"

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
        Gt = at_step(printer, self.mats[0], latex)
        ones = self.mats[0].shape[1] != 1  # the batch form: summed over the samples too
        if latex:
            total = r" \mathbf{1}_{N}" if ones else ""
            scaled = rf"{Gt} \odot \hat{{x}}_{{t}}"
            return (r"\left[\frac{1}{\sigma_{t}} \odot \left(g_{t} - \overline{g_{t}} - \hat{x}_{t} \odot "
                    r"\overline{g_{t} \odot \hat{x}_{t}}\right)\right]_{t=1}^{T}",
                    r"\sum_{t=1}^{T} " + (rf"\left({scaled}\right){total}" if ones else scaled),
                    rf"\sum_{{t=1}}^{{T}} {Gt}{total}")[self.which]
        total = " 1_N" if ones else ""
        scaled = f"{Gt} ⊙ x̂_t"
        return ("[(g_t - mean(g_t) - x̂_t ⊙ mean(g_t ⊙ x̂_t)) / σ_t]_(t=1..T)",
                "Σ_t " + (f"({scaled}){total}" if ones else scaled), f"Σ_t {Gt}{total}")[self.which]

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
        return (x,) + params, x.axes, _position_names(g, layer)

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
                   f"standard deviation and the normalized features) in the compact form: with {formula('g_t')} the gain "
                   f"times the position's gradient, {formula('g_t')} less its mean, less the normalized features times "
                   f"the mean of {formula('g_t')} times them, all over the position's standard deviation",
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
        names = network_output(g.batched) if last else _position_names(g, l)
        return g.add("step_layernorm", [a], l, out=g.value(names, a.axes, "forward", l, layout=self.shape),
                     length=self.length, eps=self.eps, affine=self.affine)

    def capped(self, cap: int):
        T, E = min(self.length, cap), min(self.features, cap)
        return replace(self, units=T * E, length=T)

    def inline(self, dense, user=str) -> str:
        return LayerNormLayer(self.units, self.eps, self.affine).inline(dense, user)
