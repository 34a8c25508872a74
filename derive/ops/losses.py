"""Losses, one definition each: the per-element formula in ``yhat`` and ``y`` and its reduction.

``reduction`` says what the sum of the per-element terms is divided by, as PyTorch does by
default: ``"mean"`` by every element (N samples times m outputs), ``"batch"`` by N alone
(the per-sample sum over outputs, averaged over the batch). The derivative of the formula is
``sympy.diff``'s. A loss may name the output activation it is fused with and the matrix-level
rule of that fusion; ``derive.verify`` proves the rule against SymPy's element-wise derivative.
A loss may give ``textbook``, the short form in which the notes print its derivative
(mae: sign(ŷ - y)); it is only printed, and only where it agrees with SymPy's derivative.
"""
from dataclasses import dataclass
from typing import Callable

import sympy as sp

from .. import limits
from ..errors import ChainruleError, unknown
from ..formula import parse_formula, undefined_where
from . import bind_params
from ..functions import Named, expand_named

YHAT = sp.Symbol("yhat", real=True)
Y = sp.Symbol("y", real=True)


class clip(Named):
    """x clipped to [lo, hi]."""
    nargs, latex_name, text_name = 3, r"\operatorname{clip}", "clip"

    @classmethod
    def define(cls, x, lo, hi):
        return sp.Min(sp.Max(x, lo), hi)


def clip_form(expr):
    """(k, u, d) when ``expr`` is "k u if |u| <= d else k d sign(u)" (Huber's derivative), which is
    k clip(u, -d, d); u is ``oriented`` (ŷ - y, not y - ŷ: clip is odd, so k changes sign)."""
    if not isinstance(expr, sp.Piecewise) or len(expr.args) != 2:
        return None
    (first, cond), (other, _) = expr.args
    if not (isinstance(cond, (sp.LessThan, sp.StrictLessThan)) and isinstance(cond.lhs, sp.Abs)
            and cond.rhs.is_number and cond.rhs > 0):
        return None
    u, d = cond.lhs.args[0], cond.rhs
    k = sp.simplify(first / u)
    if not (k.is_number and sp.simplify(other - k * d * sp.sign(u)) == 0):
        return None
    return (-k, -u, d) if oriented(u) != u else (k, u, d)


def oriented(diff):
    """``yhat - y`` for either order of a difference, so a loss's differences all read one way: the
    prediction (a symbol named with a hat, however a printer spells it: yhat, \\hat{y}, ŷ) first."""
    if isinstance(diff, sp.Add):
        hats = [s for s in diff.free_symbols if "hat" in s.name or set(s.name) & set("ŷŶ")]
        if len(hats) == 1 and diff.coeff(hats[0]).is_negative:
            return -diff
    return diff


@dataclass(frozen=True)
class LossKind:
    name: str
    title: str
    build: Callable
    reduction: str
    defaults: dict
    fused_with: str = ""
    textbook: Callable = None


CATALOGUE: dict[str, LossKind] = {}


def loss(name, title, reduction, fused_with="", textbook=None, **defaults):
    """Register the decorated ``f(yhat, y, **params) -> SymPy expression`` as a loss.

    ``textbook(yhat, y, **params)``, if given, is the form in which the notes print d/dyhat.
    """
    def register(build):
        CATALOGUE[name] = LossKind(name, title, build, reduction, defaults, fused_with, textbook)
        return build
    return register


@loss("mse", "mean squared error", "mean")
def mse(yhat, y):
    return (yhat - y) ** 2


@loss("sse_half", "halved sum of squared errors", "batch")
def sse_half(yhat, y):
    return (yhat - y) ** 2 / 2


@loss("mae", "mean absolute error", "mean", textbook=lambda yhat, y: sp.sign(yhat - y))
def mae(yhat, y):
    return sp.Abs(yhat - y)


@loss("huber", "Huber loss", "mean", textbook=lambda yhat, y, delta: clip(yhat - y, -delta, delta), delta=1.0)
def huber(yhat, y, delta):
    r = yhat - y
    return sp.Piecewise((r ** 2 / 2, sp.Abs(r) <= delta), (delta * (sp.Abs(r) - delta / 2), True))


@loss("bce", "binary cross-entropy", "mean", fused_with="sigmoid",
      textbook=lambda yhat, y: (yhat - y) / (yhat * (1 - yhat)))
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
    textbook: sp.Expr = None

    @property
    def derivative(self) -> sp.Expr:
        return sp.diff(self.pointwise, YHAT)

    def derivative_display(self) -> sp.Expr:
        """d/dyhat in its plainest form: the catalogue's textbook form where it agrees with SymPy's
        derivative (``agrees``), else SymPy's, factored (unless over SIMPLIFY_OPS operations, where
        factoring can take SymPy minutes)."""
        derivative = self.derivative
        if self.textbook is not None and agrees(expand_named(self.textbook), derivative):
            return self.textbook
        return sp.factor(derivative) if sp.count_ops(derivative) <= limits.SIMPLIFY_OPS else derivative

    @property
    def undefined(self) -> str:
        """A sentence naming where a formula loss or its derivative is undefined, else ''."""
        where = undefined_where(self.pointwise, [YHAT, Y]) if self.formula else []
        return (f"The loss {self.formula} or its derivative is undefined or infinite where "
                f"{'; '.join(where)}: the code gives inf or nan there.") if where else ""

    @property
    def spec(self):
        if self.formula:
            return {"formula": self.formula}
        if self.params:
            return {"type": self.name, **dict(self.params)}
        return self.name


def agrees(a: sp.Expr, b: sp.Expr) -> bool:
    """Whether two formulas in yhat and y agree to 1e-12 at points on both sides of every kink.

    The kinks of the piecewise losses (mae, huber) are where yhat - y is 0 or plus or minus a
    number of the formula, so the points put yhat - y at each of those, a little either side
    (a thousandth of the smallest such number) and two points away from them.
    """
    kinks = {0} | {s * abs(n) for n in a.atoms(sp.Number) | b.atoms(sp.Number) if n != 0 for s in (1, -1)}
    step = min((k for k in kinks if k > 0), default=1) / 1000
    gaps = {k + e for k in kinks for e in (0, -step, step)} | {sp.Rational(-29, 10), sp.Rational(37, 100)}
    for y in (sp.Rational(5, 16), sp.Rational(-3, 2)):
        for gap in gaps:
            point = {YHAT: y + gap, Y: y}
            if not abs(sp.N(a.subs(point) - b.subs(point))) < 1e-12:
                return False
    return True


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
        return Loss("custom", "custom loss", pointwise, "mean", formula=text)
    name = value.pop("type", None)
    name = name.lower() if isinstance(name, str) else name  # MSE is mse
    if name not in CATALOGUE:
        raise unknown("loss", name, list(CATALOGUE) + ["{formula = ...}"])
    kind = CATALOGUE[name]
    exact, shown = bind_params(f"loss {name}", kind.defaults, value, positive=True)
    textbook = kind.textbook(YHAT, Y, **exact) if kind.textbook else None
    return Loss(name, kind.title, kind.build(YHAT, Y, **exact), kind.reduction, kind.fused_with, shown,
                textbook=textbook)
