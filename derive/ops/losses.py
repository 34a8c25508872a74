"""Losses, one definition each: the per-element formula in ``yhat`` and ``y`` and its reduction.

``reduction`` says what the sum of the per-element terms is divided by, as PyTorch does by
default: ``"mean"`` by every element (N samples times m outputs), ``"batch"`` by N alone
(the per-sample sum over outputs, averaged over the batch). The derivative of the formula is
``sympy.diff``'s. A loss may name the output activation it is fused with and the matrix-level
rule of that fusion; ``derive.verify`` proves the rule against SymPy's element-wise derivative.
"""
from dataclasses import dataclass
from typing import Callable

import sympy as sp

from ..errors import ChainruleError, unknown
from ..formula import parse_formula
from . import bind_params

YHAT = sp.Symbol("yhat", real=True)
Y = sp.Symbol("y", real=True)


@dataclass(frozen=True)
class LossKind:
    name: str
    title: str
    build: Callable
    reduction: str
    defaults: dict
    fused_with: str = ""


CATALOGUE: dict[str, LossKind] = {}


def loss(name, title, reduction, fused_with="", **defaults):
    """Register the decorated ``f(yhat, y, **params) -> SymPy expression`` as a loss."""
    def register(build):
        CATALOGUE[name] = LossKind(name, title, build, reduction, defaults, fused_with)
        return build
    return register


@loss("mse", "mean squared error", "mean")
def mse(yhat, y):
    return (yhat - y) ** 2


@loss("sse_half", "half the sum of squared errors", "batch")
def sse_half(yhat, y):
    return (yhat - y) ** 2 / 2


@loss("mae", "mean absolute error", "mean")
def mae(yhat, y):
    return sp.Abs(yhat - y)


@loss("huber", "Huber loss", "mean", delta=1.0)
def huber(yhat, y, delta):
    r = yhat - y
    return sp.Piecewise((r ** 2 / 2, sp.Abs(r) <= delta), (delta * (sp.Abs(r) - delta / 2), True))


@loss("bce", "binary cross-entropy", "mean", fused_with="sigmoid")
def bce(yhat, y):
    return -(y * sp.log(yhat) + (1 - y) * sp.log(1 - yhat))


@loss("cross_entropy", "categorical cross-entropy", "batch", fused_with="softmax")
def cross_entropy(yhat, y):
    return -y * sp.log(yhat)


@dataclass(frozen=True)
class Loss:
    """A loss with its parameters bound. ``pointwise`` is one element's term, ``derivative`` its d/dyhat."""
    name: str
    title: str
    pointwise: sp.Expr
    reduction: str
    fused_with: str = ""
    params: tuple = ()
    formula: str = ""

    @property
    def derivative(self) -> sp.Expr:
        return sp.diff(self.pointwise, YHAT)

    @property
    def spec(self):
        if self.formula:
            return {"formula": self.formula}
        if self.params:
            return {"type": self.name, **dict(self.params)}
        return self.name


def make_loss(value) -> Loss:
    """A Loss from a spec value: a name, ``{type=..., param=...}`` or ``{formula=...}``."""
    if value is None:
        raise ChainruleError("the network has no loss; add e.g. loss = \"mse\"")
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        raise ChainruleError(f"loss must be a name or a table, not {value!r}")
    value = dict(value)
    if "formula" in value:
        if value.keys() - {"formula"}:
            raise ChainruleError("a formula loss takes only 'formula'")
        text = value["formula"]
        pointwise = parse_formula(text, {"yhat": YHAT, "y": Y}, "loss formula")
        return Loss("custom", "a custom loss", pointwise, "mean", formula=text)
    name = value.pop("type", None)
    if name not in CATALOGUE:
        raise unknown("loss", name, list(CATALOGUE) + ["{formula = ...}"])
    kind = CATALOGUE[name]
    exact, shown = bind_params(f"loss {name}", kind.defaults, value, positive=True)
    return Loss(name, kind.title, kind.build(YHAT, Y, **exact), kind.reduction, kind.fused_with, shown)
