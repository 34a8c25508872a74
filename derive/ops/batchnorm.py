"""Batch normalization, as ``torch.nn.BatchNorm1d(features, eps, momentum, affine)`` after a dense
layer, ``BatchNorm1d(channels)`` after a 1-D convolution and ``BatchNorm2d(channels)`` after a 2-D one.

Each feature (a row), or each channel (its k = H·W rows of an image, L of a signal), is normalized over
the batch (and the image), with the biased variance and ε inside the square root, then scaled and
shifted. For vectors (k = 1)::

    μ = (1/N) x 1_N                   one mean per feature, over the N samples of the batch
    var = (1/N) (x - μ)² 1_N          the biased variance per feature
    σ = sqrt(var + ε)
    x̂ = (1/σ) ⊙ (x - μ)
    y = γ ⊙ x̂ + β                     γ (torch's weight, init 1) and β (its bias, init 0), one per feature

and for channels the same with Σ_c (each channel's sum over the batch and the image) for x 1_N, N k for
N, and μ, σ, γ and β copied to each channel's rows.

The statistics couple the samples, so the op has no per-sample form: a derivation of a network with
batch norm has the batch form only. ``batchnorm`` expands into the four ops below and its own node,
whose VJP for x is stated once for all paths through μ, var, σ and x̂, in the compact form of cs231n's
``batchnorm_backward_alt`` (sums over the batch)::

    g = γ ⊙ dL/dy,   dL/dx = (1/(N σ)) ⊙ (N g - g 1_N - x̂ ⊙ ((g ⊙ x̂) 1_N))
    dL/dγ = (dL/dy ⊙ x̂) 1_N,   dL/dβ = dL/dy 1_N

so x̂, σ, var and μ pass on no share of their own. ``tests/test_ops.py`` proves every rule here against
``sympy.diff`` of the definitions on the ``examples`` (vectors, and channels of k = 2).

Training mode uses the batch's μ and var, and each such forward pass updates the running statistics
(buffers, no gradient) as torch does: running_mean ← (1 - m) running_mean + m μ, running_var ←
(1 - m) running_var + m (n/(n - 1)) var with n = N k (the unbiased variance), num_batches_tracked ←
num_batches_tracked + 1. Evaluation mode uses running_mean and running_var in place of μ and var.
"""
from dataclasses import dataclass, replace

import sympy as sp

from ..fields import boolean, number, size
from ..naming import Names, greek, indexed, layer_key, letter, network_output, normalized
from ..nodes import BatchMean, ChannelMean, ChannelRepeat, ChannelTotal, Pointwise, broadcast
from ..steps import formula, ref
from .activations import Z
from .registry import Buffer, Grad, LayerKind, Op, Out, Param, hadamard, layer, op, scaled


def _column_axes(x, k: int) -> tuple:
    """One number per feature (per channel of k features), broadcast over the batch (a parameter such as β)."""
    return (("features", x.shape[0]) if k == 1 else ("channels", x.shape[0] // k), ("batch", 1))


def _spread(m, k: int, shape):
    """One number per feature (or channel) copied to every sample (and to each of the channel's k rows)."""
    return broadcast(m, shape) if k == 1 else ChannelRepeat(m, k, shape[1])


def _summed(m, k: int = 1):
    """Each row of M summed over the batch, ``M 1_N`` (each channel, over its k rows too: ``Σ_c M``)."""
    return sp.MatMul(m, sp.OneMatrix(m.shape[1], 1)) if k == 1 else ChannelTotal(m, k)


def _count(node):
    """How many numbers each statistic averages: N samples, times k positions of a channel."""
    return sp.sympify(node.batch) * node.attrs.get("group", 1)


def _mean(m, node):
    """The mean of each feature (channel) over the batch (and its positions), a column."""
    k = node.attrs.get("group", 1)
    return BatchMean(m) if k == 1 else ChannelMean(m, k)


def _centred(x, mu, k: int):
    """x - μ, each feature's (channel's) mean taken from it in every sample."""
    return sp.MatAdd(x, scaled(-1, _spread(mu, k, x.shape)))


def _unit(node) -> str:
    return "feature" if node.attrs.get("group", 1) == 1 else "channel"


def _over(node) -> str:
    return "the batch" if node.attrs.get("group", 1) == 1 else "the batch and the positions"


def _fn(body):
    return sp.Lambda(Z, body)


class _Statistic(Op):
    """μ or var: one number per feature (channel) over the batch; in evaluation mode its running average (a
    buffer). Attrs ``momentum`` and ``group`` (k, the features of one channel; 1 for vectors)."""
    couples_samples = True

    def evaluation(self, node, state):
        return state[0]


@op("batchnorm_mean")
class Mean(_Statistic):
    """``(C k, N) -> (C, 1)``: μ, the mean of each feature (channel) over the batch."""
    state = (Buffer("running_mean", "running_mean", "running mean of each feature (evaluation's μ)", 0.0),)

    def build(self, g, inputs, layer, momentum, group=1):
        return inputs, _column_axes(inputs[0], group), greek("mu", layer, f"mean over the batch in layer {layer}")

    def forward(self, node, ins):
        return Out(_mean(ins[0], node), f"the mean of each {_unit(node)} over {_over(node)}")

    def vjp(self, node, g, ins, out):
        x, k = ins[0], node.attrs.get("group", 1)
        return {0: Grad(scaled(1 / _count(node), _spread(g, k, x.shape)),
                        f"each entry adds one {'N' if k == 1 else '(N k)'}-th of itself to its {_unit(node)}'s mean")}

    def update(self, node, ins, out, state):
        m = sp.Float(node.attrs["momentum"])
        return {"running_mean": sp.MatAdd(scaled(1 - m, state[0]), scaled(m, out))}

    def examples(self):
        return [(f"{k} per channel", lambda g, k=k: g.add("batchnorm_mean", [g.leaf("x", 2 * k)], 1, momentum=0.1,
                                                           group=k)) for k in (1, 2)]


@op("batchnorm_var")
class Variance(_Statistic):
    """``(C k, N), (C, 1) -> (C, 1)``: var, the biased variance of each feature (channel), inputs x and μ."""
    # the variance's node also counts the batches: a layer's buffers are all updated where its statistics are
    state = (Buffer("running_var", "running_var", "running unbiased variance of each feature (evaluation's var)", 1.0),
             Buffer("num_batches_tracked", "num_batches_tracked", "number of training batches seen", 0))

    def build(self, g, inputs, layer, momentum, group=1):
        names = Names(f"var{layer_key(layer)}", rf"\operatorname{{var}}_{{{layer}}}", f"var{layer}",
                      f"biased variance over the batch in layer {layer}")
        return inputs, _column_axes(inputs[0], group), names

    def forward(self, node, ins):
        x, mu = ins
        k = node.attrs.get("group", 1)
        return Out(_mean(Pointwise(_fn(Z ** 2), "", _centred(x, mu, k)), node),
                   f"the biased variance of each {_unit(node)} over {_over(node)} (divided by the count, as "
                   f"torch's batch norm normalizes)")

    def vjp(self, node, g, ins, out):
        x, mu = ins
        k = node.attrs.get("group", 1)
        return {0: Grad(scaled(2 / _count(node), hadamard(_spread(g, k, x.shape), _centred(x, mu, k))),
                        "the variance moves with each entry by twice its distance from the mean over the count"),
                1: Grad(scaled(-2, hadamard(g, _mean(_centred(x, mu, k), node))),
                        "and against the mean by twice the mean distance from it")}

    def update(self, node, ins, out, state):
        m, n = sp.Float(node.attrs["momentum"]), _count(node)
        # torch keeps the unbiased variance, n/(n - 1) times the biased one that normalizes
        return {"running_var": sp.MatAdd(scaled(1 - m, state[0]), scaled(m * n / (n - 1), out)),
                "num_batches_tracked": state[1] + 1}

    def examples(self):
        def build(k):
            def add(g):
                x = g.leaf("x", 2 * k)
                return g.add("batchnorm_var", [x, g.value(Names.plain("mu"), _column_axes(x, k), "data")], 1,
                             momentum=0.1, group=k)
            return add
        return [(f"{k} per channel", build(k)) for k in (1, 2)]


@op("batchnorm_std")
class Std(Op):
    """``(C, 1) -> (C, 1)``: σ = sqrt(var + ε); attr ``eps``."""
    couples_samples = True

    def build(self, g, inputs, layer, eps):
        return inputs, inputs[0].axes, greek("sigma", layer, f"standard deviation over the batch in layer {layer}, "
                                                            f"with eps")

    def forward(self, node, ins):
        eps = sp.Float(node.attrs["eps"])
        return Out(Pointwise(_fn(sp.sqrt(Z + eps)), "", ins[0]),
                   f"the square root of the variance plus eps = {node.attrs['eps']:g}, so a constant feature gives "
                   f"sqrt(eps), never 0")

    def vjp(self, node, g, ins, out):
        return {0: Grad(hadamard(g, Pointwise(_fn(1 / (2 * Z)), "", out)), "the square root's derivative, 1/(2σ)")}

    def examples(self):
        def build(eps):
            return lambda g: g.add("batchnorm_std", [g.value(Names.plain("var"), (("features", 3), ("batch", 1)),
                                                             "data")], 1, eps=eps)
        return [("eps 1e-5", build(1e-5)), ("eps 0.5", build(0.5))]


@op("batchnorm_normalize")
class Normalize(Op):
    """``(C k, N), (C, 1), (C, 1) -> (C k, N)``: x̂ = (1/σ) ⊙ (x - μ), inputs x, μ, σ; attr ``group``."""
    couples_samples = True
    reuses_adjoint = True

    def build(self, g, inputs, layer, named=True, group=1):
        names = normalized(g.batched, layer, f"normalized input of layer {layer}") if named else None
        return inputs, inputs[0].axes, names

    def forward(self, node, ins):
        x, mu, sigma = ins
        k = node.attrs.get("group", 1)
        return Out(hadamard(_spread(Pointwise(_fn(1 / Z), "", sigma), k, x.shape), _centred(x, mu, k)),
                   f"each {_unit(node)} less its mean, divided by its standard deviation")

    def vjp(self, node, g, ins, out):
        x, _, sigma = ins
        k = node.attrs.get("group", 1)
        inv = Pointwise(_fn(1 / Z), "", sigma)
        return {0: Grad(hadamard(_spread(inv, k, x.shape), g),
                        "each normalized entry moves with its entry by one over the standard deviation"),
                1: Grad(scaled(-1, hadamard(inv, _summed(g, k))), f"against the mean by the same, summed over {_over(node)}"),
                2: Grad(scaled(-1, hadamard(inv, _summed(hadamard(g, out), k))),
                        "and against the standard deviation by the normalized entry over the standard deviation")}

    def examples(self):
        def build(k):
            def add(g):
                x = g.leaf("x", 2 * k)
                column = _column_axes(x, k)
                return g.add("batchnorm_normalize", [x, g.value(Names.plain("mu"), column, "data"),
                                                     g.value(Names.plain("sigma"), column, "data")], 1, group=k)
            return add
        return [(f"{k} per channel", build(k)) for k in (1, 2)]


@op("batchnorm")
class BatchNorm(Op):
    """``(C k, N) -> (C k, N)``; attrs ``momentum``, ``eps``, ``affine`` (γ and β, torch's weight and bias) and
    ``group`` (k, the features of one channel: H·W of an image, L of a signal, 1 for vectors).

    Its node reads (x, x̂, σ[, γ, β]): x̂ and σ for the VJP, x to state that VJP for x directly.
    """
    couples_samples = True
    reuses_adjoint = True  # dL/dy is read by the VJPs of x, γ and β
    params = (Param("gamma", "weight", "gain", init=1.0), Param("beta", "bias", "shift", init=0.0))

    def build(self, g, inputs, layer, momentum=0.1, eps=1e-5, affine=True, group=1):
        (x,) = inputs
        mu = g.add("batchnorm_mean", [x], layer, momentum=momentum, group=group)
        var = g.add("batchnorm_var", [x, mu], layer, momentum=momentum, group=group)
        sigma = g.add("batchnorm_std", [var], layer, eps=eps)
        # without γ and β, y is x̂: x̂ is folded into y's Step rather than copied into it
        xhat = g.add("batchnorm_normalize", [x, mu, sigma], layer, named=affine, group=group)
        params = g.greek_params(self.params, layer, _column_axes(x, group)) if affine else ()
        out = indexed(letter("a", g.batched), layer, f"output of layer {layer}")
        return (x, xhat, sigma) + params, x.axes, out

    def forward(self, node, ins):
        xhat = ins[1]
        if not node.attrs.get("affine", True):
            return Out(xhat, "batch norm without gain and shift")
        gamma, beta = ins[3:]
        k = node.attrs.get("group", 1)
        return Out(sp.MatAdd(hadamard(_spread(gamma, k, xhat.shape), xhat), _spread(beta, k, xhat.shape)),
                   f"scaled by the gain and shifted by the bias, {_unit(node)} by {_unit(node)}")

    def vjp(self, node, g, ins, out):
        affine = node.attrs.get("affine", True)
        k = node.attrs.get("group", 1)
        x, sigma = node.inputs[0], node.inputs[2]
        xhat = ins[1] if affine else out
        shape, n = xhat.shape, _count(node)
        # g = γ ⊙ dL/dy, kept one product (not flattened into g ⊙ x̂) so the code computes it once
        grad = sp.HadamardProduct(_spread(ins[3], k, shape), g) if affine else g
        spread = sp.MatAdd(scaled(n, grad), scaled(-1, _spread(_summed(grad, k), k, shape)),
                           scaled(-1, hadamard(xhat, _spread(_summed(sp.HadamardProduct(grad, xhat), k), k, shape))))
        xhat_name = ref(node.inputs[1]) if affine else ref(node.output)
        dy, dx = (formula(f"⟦partial⟧L/⟦partial⟧{ref(v)}") for v in (node.output, x))
        g_is = f"the gain {ref(node.inputs[3])} times {dy}, element-wise" if affine else dy
        count = "N" if k == 1 else "N k"
        shares = {0: Grad(hadamard(_spread(Pointwise(_fn(1 / (n * Z)), "", ins[2]), k, shape), spread),
                          f"chain rule through the batch norm along every path from {ref(x)} (through the mean, the "
                          f"variance, the standard deviation and {xhat_name}) at once, in the compact form: with g = "
                          f"{g_is}, {dx} is {count} g less g summed over {_over(node)}, less {xhat_name} "
                          f"times g {xhat_name} summed over {_over(node)}, all over {count} {ref(sigma)}"
                          + ("" if k == 1 else f" (k = {k}, the positions of a channel)"))}
        if affine:
            shares[3] = Grad(_summed(hadamard(g, xhat), k), f"each gain scales its normalized {_unit(node)}: "
                                                           f"{dy} times {xhat_name}, summed over {_over(node)}")
            shares[4] = Grad(_summed(g, k), f"each shift adds to its {_unit(node)}: {dy} summed over {_over(node)}")
        return shares

    def examples(self):
        def build(**attrs):
            return lambda g: g.add("batchnorm", [g.leaf("x", 2 * attrs.get("group", 1) if "group" in attrs else 3)],
                                   1, **attrs)
        return [("affine", build()), ("without affine", build(affine=False)), ("eps 0.5", build(eps=0.5)),
                ("2 channels of 2", build(group=2)), ("2 channels of 2 without affine", build(group=2, affine=False))]


@layer("batchnorm")
@dataclass(frozen=True)
class BatchNormLayer(LayerKind):
    """``torch.nn.BatchNorm1d(units, eps, momentum, affine)`` after vectors, and after a convolution
    ``BatchNorm1d(channels)`` (signals) or ``BatchNorm2d(channels)`` (images): normalizes each feature, or
    each channel, over the batch (and the image). ``sizes`` are the input's named sizes, () for vectors."""
    units: int
    momentum: float = 0.1
    eps: float = 1e-5
    affine: bool = True
    sizes: tuple = ()
    keys = ("type", "momentum", "eps", "affine")
    couples_samples = True

    @classmethod
    def parse(cls, raw, at):
        where = at.where
        momentum = number(raw, "momentum", 0.1, where, 0, 1, hint=" (torch's default is 0.1; the running statistics "
                                                                 "move this fraction towards each batch's)")
        eps = number(raw, "eps", 1e-5, where, 0, 1, closed=(False, True), hint=" (torch's default is 1e-5)")
        return cls(at.width, momentum, eps, boolean(raw, "affine", True, where), at.shape if len(at.shape) > 1 else ())

    @property
    def shape(self) -> tuple:
        return self.sizes or (("features", self.units),)

    def parameters(self, shape) -> int:
        return 2 * shape[0][1] if self.affine else 0  # γ and β, one per feature (channel)

    def expand(self, g, l, a, last):
        out = g.value(network_output(g.batched), a.axes, "forward", l, layout=a.layout) if last else None
        group = size(a.layout[1:]) if len(a.layout) > 1 else 1  # a channel's positions, H·W or L
        return g.add("batchnorm", [a], l, out=out, momentum=self.momentum, eps=self.eps, affine=self.affine,
                     group=group)

    def capped(self, cap: int):
        # a vector's width is capped as any layer's; a channel's follows the convolution before it
        return self if self.sizes else replace(self, units=min(self.units, cap))

    def inline(self, dense, user=str) -> str:
        return LayerKind.inline(replace(self, sizes=()), dense, user)
