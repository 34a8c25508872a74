"""Batch normalization, as ``torch.nn.BatchNorm1d(features, eps, momentum, affine)``.

Each feature (a row) is normalized over the batch, with the biased variance and ε inside the square
root, then scaled and shifted feature by feature::

    μ = (1/N) x 1_N                   one mean per feature, over the N samples of the batch
    var = (1/N) (x - μ)² 1_N          the biased variance per feature
    σ = sqrt(var + ε)
    x̂ = (1/σ) ⊙ (x - μ)
    y = γ ⊙ x̂ + β                     γ (torch's weight, init 1) and β (its bias, init 0), one per feature

The statistics couple the samples, so the op has no per-sample form: a derivation of a network with
batch norm has the batch form only. ``batchnorm`` expands into the four ops below and its own node,
whose VJP for x is stated once for all paths through μ, var, σ and x̂, in the compact form of cs231n's
``batchnorm_backward_alt`` (sums over the batch)::

    g = γ ⊙ dL/dy,   dL/dx = (1/(N σ)) ⊙ (N g - g 1_N - x̂ ⊙ ((g ⊙ x̂) 1_N))
    dL/dγ = (dL/dy ⊙ x̂) 1_N,   dL/dβ = dL/dy 1_N

so x̂, σ, var and μ pass on no share of their own. ``tests/test_ops.py`` proves every rule here against
``sympy.diff`` of the definitions on the ``examples``.

Training mode uses the batch's μ and var, and each such forward pass updates the running statistics
(buffers, no gradient) as torch does: running_mean ← (1 - m) running_mean + m μ, running_var ←
(1 - m) running_var + m (N/(N - 1)) var (the unbiased variance), num_batches_tracked ← num_batches_tracked + 1. Evaluation
mode uses running_mean and running_var in place of μ and var.
"""
from dataclasses import dataclass

import sympy as sp

from ..fields import boolean, number
from ..naming import Names, greek, indexed, layer_key, letter, network_output, normalized
from ..nodes import BatchMean, Pointwise, broadcast
from ..steps import ref
from .activations import Z
from .registry import Buffer, Grad, LayerKind, Op, Out, Param, hadamard, layer, op, scaled


def _column_axes(x) -> tuple:
    """One number per feature, broadcast over the batch (the axes of a parameter such as β)."""
    return (x.axes[0], ("batch", 1))


def _centred(x, mu):
    """x - μ, each feature's mean taken from it in every sample."""
    return sp.MatAdd(x, scaled(-1, broadcast(mu, x.shape)))


def _summed(m):
    """M 1_N: each row of M summed over the batch, a column."""
    return sp.MatMul(m, sp.OneMatrix(m.shape[1], 1))


def _fn(body):
    return sp.Lambda(Z, body)


class _Statistic(Op):
    """μ or var: one number per feature over the batch; in evaluation mode its running average (a buffer)."""
    couples_samples = True

    def evaluation(self, node, state):
        return state[0]


@op("batchnorm_mean")
class Mean(_Statistic):
    """``(F, N) -> (F, 1)``: μ, the mean of each feature over the batch; attr ``momentum``."""
    state = (Buffer("running_mean", "running_mean", "running mean of each feature (evaluation's μ)", 0.0),)

    def build(self, g, inputs, layer, momentum):
        return inputs, _column_axes(inputs[0]), greek("mu", layer, f"mean of each feature over the batch in layer {layer}")

    def forward(self, node, ins):
        return Out(BatchMean(ins[0]), "the mean of each feature over the N samples of the batch")

    def vjp(self, node, g, ins, out):
        x = ins[0]
        return {0: Grad(scaled(1 / sp.sympify(node.batch), broadcast(g, x.shape)),
                        "each sample adds one N-th of itself to its feature's mean")}

    def update(self, node, ins, out, state):
        m = sp.Float(node.attrs["momentum"])
        return {"running_mean": sp.MatAdd(scaled(1 - m, state[0]), scaled(m, out))}

    def examples(self):
        return [("3 features", lambda g: g.add("batchnorm_mean", [g.leaf("x", 3)], 1, momentum=0.1))]


@op("batchnorm_var")
class Variance(_Statistic):
    """``(F, N), (F, 1) -> (F, 1)``: var = (1/N) (x - μ)² 1_N, inputs x and its mean μ; attr ``momentum``."""
    # the variance's node also counts the batches: a layer's buffers are all updated where its statistics are
    state = (Buffer("running_var", "running_var", "running unbiased variance of each feature (evaluation's var)", 1.0),
             Buffer("num_batches_tracked", "num_batches_tracked", "number of training batches seen", 0))

    def build(self, g, inputs, layer, momentum):
        names = Names(f"var{layer_key(layer)}", rf"\operatorname{{var}}_{{{layer}}}", f"var{layer}",
                      f"biased variance of each feature over the batch in layer {layer}")
        return inputs, _column_axes(inputs[0]), names

    def forward(self, node, ins):
        x, mu = ins
        return Out(BatchMean(Pointwise(_fn(Z ** 2), "", _centred(x, mu))),
                   "the biased variance of each feature over the batch (divided by N, as torch.nn.BatchNorm1d "
                   "normalizes)")

    def vjp(self, node, g, ins, out):
        x, mu = ins
        n = sp.sympify(node.batch)
        return {0: Grad(scaled(2 / n, hadamard(broadcast(g, x.shape), _centred(x, mu))),
                        "the variance moves with each sample by twice its distance from the mean over N"),
                1: Grad(scaled(-2, hadamard(g, BatchMean(_centred(x, mu)))),
                        "and against the mean by twice the mean distance from it")}

    def update(self, node, ins, out, state):
        m, n = sp.Float(node.attrs["momentum"]), sp.sympify(node.batch)
        # torch keeps the unbiased variance, N/(N - 1) times the biased one that normalizes
        return {"running_var": sp.MatAdd(scaled(1 - m, state[0]), scaled(m * n / (n - 1), out)),
                "num_batches_tracked": state[1] + 1}

    def examples(self):
        def build(g):
            x = g.leaf("x", 3)
            return g.add("batchnorm_var", [x, g.value(Names.plain("mu"), _column_axes(x), "data")], 1, momentum=0.1)
        return [("3 features", build)]


@op("batchnorm_std")
class Std(Op):
    """``(F, 1) -> (F, 1)``: σ = sqrt(var + ε); attr ``eps``."""
    couples_samples = True

    def build(self, g, inputs, layer, eps):
        return inputs, inputs[0].axes, greek("sigma", layer, f"standard deviation of each feature over the batch "
                                                            f"in layer {layer}, with eps")

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
    """``(F, N), (F, 1), (F, 1) -> (F, N)``: x̂ = (1/σ) ⊙ (x - μ), inputs x, μ, σ."""
    couples_samples = True
    reuses_adjoint = True

    def build(self, g, inputs, layer, named=True):
        names = normalized(g.batched, layer, f"normalized input of layer {layer}") if named else None
        return inputs, inputs[0].axes, names

    def forward(self, node, ins):
        x, mu, sigma = ins
        return Out(hadamard(broadcast(Pointwise(_fn(1 / Z), "", sigma), x.shape), _centred(x, mu)),
                   "each feature less its mean, divided by its standard deviation")

    def vjp(self, node, g, ins, out):
        x, _, sigma = ins
        inv = Pointwise(_fn(1 / Z), "", sigma)
        return {0: Grad(hadamard(broadcast(inv, x.shape), g),
                        "each normalized entry moves with its entry by one over the standard deviation"),
                1: Grad(scaled(-1, hadamard(inv, _summed(g))), "against the mean by the same, summed over the batch"),
                2: Grad(scaled(-1, hadamard(inv, _summed(hadamard(g, out)))),
                        "and against the standard deviation by the normalized entry over the standard deviation")}

    def examples(self):
        def build(g):
            x = g.leaf("x", 3)
            column = _column_axes(x)
            return g.add("batchnorm_normalize", [x, g.value(Names.plain("mu"), column, "data"),
                                                 g.value(Names.plain("sigma"), column, "data")], 1)
        return [("3 features", build)]


@op("batchnorm")
class BatchNorm(Op):
    """``(F, N) -> (F, N)``; attrs ``momentum``, ``eps`` and ``affine`` (γ and β, torch's weight and bias).

    Its node reads (x, x̂, σ[, γ, β]): x̂ and σ for the VJP, x to state that VJP for x directly.
    """
    couples_samples = True
    reuses_adjoint = True  # dL/dy is read by the VJPs of x, γ and β
    params = (Param("gamma", "weight", "gain", init=1.0), Param("beta", "bias", "shift", init=0.0))

    def build(self, g, inputs, layer, momentum=0.1, eps=1e-5, affine=True):
        (x,) = inputs
        mu = g.add("batchnorm_mean", [x], layer, momentum=momentum)
        var = g.add("batchnorm_var", [x, mu], layer, momentum=momentum)
        sigma = g.add("batchnorm_std", [var], layer, eps=eps)
        # without γ and β, y is x̂: x̂ is folded into y's Step rather than copied into it
        xhat = g.add("batchnorm_normalize", [x, mu, sigma], layer, named=affine)
        params = ()
        if affine:
            params = tuple(g.value(greek(p.letter, layer, f"{p.meaning} of layer {layer} (torch's {p.torch})"),
                                   _column_axes(x), "param", layer, param=p) for p in self.params)
        out = indexed(letter("a", g.batched), layer, f"output of layer {layer}")
        return (x, xhat, sigma) + params, x.axes, out

    def forward(self, node, ins):
        xhat = ins[1]
        if not node.attrs.get("affine", True):
            return Out(xhat, "batch norm without gain and shift")
        gamma, beta = ins[3:]
        return Out(sp.MatAdd(hadamard(broadcast(gamma, xhat.shape), xhat), broadcast(beta, xhat.shape)),
                   "scaled by the gain and shifted by the bias, feature by feature")

    def vjp(self, node, g, ins, out):
        affine = node.attrs.get("affine", True)
        x, sigma = node.inputs[0], node.inputs[2]
        xhat = ins[1] if affine else out
        shape, n = xhat.shape, sp.sympify(node.batch)
        # g = γ ⊙ dL/dy, kept one product (not flattened into g ⊙ x̂) so the code computes it once
        grad = sp.HadamardProduct(broadcast(ins[3], shape), g) if affine else g
        spread = sp.MatAdd(scaled(n, grad), scaled(-1, broadcast(_summed(grad), shape)),
                           scaled(-1, hadamard(xhat, broadcast(_summed(sp.HadamardProduct(grad, xhat)), shape))))
        y, xhat_name = ref(node.output), ref(node.inputs[1]) if affine else ref(node.output)
        g_is = f"the gain {ref(node.inputs[3])} times dL/d{y}, element-wise" if affine else f"dL/d{y}"
        shares = {0: Grad(hadamard(broadcast(Pointwise(_fn(1 / (n * Z)), "", ins[2]), shape), spread),
                          f"chain rule through the batch norm along every path from {ref(x)} (through the mean, the "
                          f"variance, the standard deviation and {xhat_name}) at once, in the compact form: with g = "
                          f"{g_is}, dL/d{ref(x)} is N g less g summed over the batch, less {xhat_name} times g "
                          f"{xhat_name} summed over the batch, all over N {ref(sigma)}")}
        if affine:
            shares[3] = Grad(_summed(hadamard(g, xhat)),
                             f"each gain scales its normalized feature: dL/d{y} times {xhat_name}, summed over the batch")
            shares[4] = Grad(_summed(g), f"each shift adds to its feature: dL/d{y} summed over the batch")
        return shares

    def examples(self):
        def build(**attrs):
            return lambda g: g.add("batchnorm", [g.leaf("x", 3)], 1, **attrs)
        return [("affine", build()), ("without affine", build(affine=False)), ("eps 0.5", build(eps=0.5))]


@layer("batchnorm")
@dataclass(frozen=True)
class BatchNormLayer(LayerKind):
    """``torch.nn.BatchNorm1d(units, eps, momentum, affine)``: normalizes each feature over the batch."""
    units: int
    momentum: float = 0.1
    eps: float = 1e-5
    affine: bool = True
    keys = ("type", "momentum", "eps", "affine")

    @classmethod
    def parse(cls, raw, at):
        where = at.where
        momentum = number(raw, "momentum", 0.1, where, 0, 1, hint=" (torch's default is 0.1; the running statistics "
                                                                 "move this fraction towards each batch's)")
        eps = number(raw, "eps", 1e-5, where, 0, 1, closed=(False, True), hint=" (torch's default is 1e-5)")
        return cls(at.width, momentum, eps, boolean(raw, "affine", True, where))

    def parameters(self, shape) -> int:
        return 2 * self.units if self.affine else 0  # γ and β, one per feature

    def expand(self, g, l, a, last):
        out = g.value(network_output(g.batched), a.axes, "forward", l) if last else None
        return g.add("batchnorm", [a], l, out=out, momentum=self.momentum, eps=self.eps, affine=self.affine)
