"""Activations, one definition each: the scalar SymPy formula in ``z``.

The derivative is never typed here: it is ``sympy.diff`` of the definition. Kinks are written
as ``Piecewise`` with the ``z <= 0`` branch first, so the derivative at 0 is the left branch's,
as PyTorch takes it (relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = alpha).
Add an activation by adding one ``@activation`` function below; everything else picks it up.

An entry may give ``textbook``, the short form in which the notes print its derivative
(silu' = σ(z)(1 + z(1 - σ(z)))), written with the ``Named`` functions of ``derive.functions``. It is only ever
printed, and only once SymPy proves it equal to ``sympy.diff`` of the definition.
"""
import functools
from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

from .. import limits
from ..errors import ChainruleError, unknown
from ..formula import parse_formula, undefined_where, value_at
from ..functions import Phi, expand_named, phi, sigma
from . import bind_params

Z = sp.Symbol("z", real=True)


@dataclass(frozen=True)
class ActivationKind:
    """A catalogue entry: how to build the formula (and the textbook form of its derivative)."""
    name: str
    latex: str
    build: Callable
    defaults: dict
    domain: tuple = (-3.0, 3.0)
    elementwise: bool = True
    textbook: Callable = None


CATALOGUE: dict[str, ActivationKind] = {}


def activation(name, latex, domain=(-3.0, 3.0), elementwise=True, textbook=None, **defaults):
    """Register the decorated ``f(z, **params) -> SymPy expression`` as an activation.

    ``textbook(z, **params)``, if given, is the form in which the notes print f'(z).
    """
    def register(build):
        CATALOGUE[name] = ActivationKind(name, latex, build, defaults, domain, elementwise, textbook)
        return build
    return register


@activation("identity", r"\operatorname{id}")
def identity(z):
    return z


@activation("sigmoid", r"\sigma")
def sigmoid(z):
    return sigma.define(z)


@activation("tanh", r"\tanh")
def tanh(z):
    return sp.tanh(z)


@activation("relu", r"\operatorname{relu}")
def relu(z):
    return sp.Piecewise((0, z <= 0), (z, True))


@activation("leaky_relu", r"\operatorname{lrelu}", slope=0.01)
def leaky_relu(z, slope):
    return sp.Piecewise((slope * z, z <= 0), (z, True))


@activation("elu", r"\operatorname{elu}", alpha=1.0)
def elu(z, alpha):
    return sp.Piecewise((alpha * (sp.exp(z) - 1), z <= 0), (z, True))


@activation("softplus", r"\operatorname{softplus}", textbook=sigma)
def softplus(z):
    return sp.log(1 + sp.exp(z))


@activation("gelu", r"\operatorname{gelu}", textbook=lambda z: Phi(z) + z * phi(z))
def gelu(z):
    return z / 2 * (1 + sp.erf(z / sp.sqrt(2)))


@activation("silu", r"\operatorname{silu}", textbook=lambda z: sigma(z) * (1 + z * (1 - sigma(z))))
def silu(z):
    return z / (1 + sp.exp(-z))


@activation("softmax", r"\operatorname{softmax}", elementwise=False)
def softmax(z):
    """Component i of softmax over a column z_1..z_n: exp(z_i) / sum_j exp(z_j) (see the loss)."""
    return sp.exp(z)


@dataclass(frozen=True)
class Activation:
    """An activation with its parameter values bound: ``f(z)`` and ``f'(z)`` as SymPy formulas."""
    name: str
    latex: str
    definition: sp.Expr
    params: tuple = ()
    domain: tuple = (-3.0, 3.0)
    elementwise: bool = True
    formula: str = ""
    textbook: sp.Expr = None
    derivative: sp.Expr = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "derivative", sp.diff(self.definition, Z))

    @property
    def undefined(self) -> str:
        """A sentence naming where a formula activation or its derivative is undefined, else ''."""
        where = undefined_where(self.definition, [Z]) if self.formula else []
        return (f"{self.name}(z) = {self.formula} or its derivative is undefined or infinite where "
                f"{'; '.join(where)}: the code gives inf or nan there.") if where else ""

    @property
    def is_identity(self) -> bool:
        return self.definition == Z

    @property
    def spec(self):
        """The TOML value that gives this activation back."""
        if self.formula:
            return {"formula": self.formula, "name": self.name}
        if self.params:
            return {"type": self.name, **dict(self.params)}
        return self.name

    def __call__(self, value):
        return self.definition.subs(Z, value)

    def prime(self, value):
        return self.derivative.subs(Z, value)

    @functools.lru_cache(maxsize=None)
    def derivative_display(self) -> sp.Expr:
        """f'(z) in its plainest form: the catalogue's textbook form, else in terms of f(z) itself, else
        with z sign(z) written |z|, the first that SymPy proves equal to f'; else SymPy's own
        (simplified unless piecewise).

        The search is skipped for a derivative over SIMPLIFY_OPS operations, and a candidate is only
        sent to ``simplify`` once it agrees with f' at sample points: both can take SymPy minutes.
        """
        if sp.count_ops(self.derivative) > limits.SIMPLIFY_OPS:
            return self.derivative
        f = sp.Function(self.name)(Z)
        candidates = ([self.textbook] if self.textbook is not None else []) + [f * (1 - f), 1 - f ** 2]
        if self.derivative.has(sp.sign):  # d|z|/dz = sign(z), and z sign(z) is |z|: softsign' = 1/(1 + |z|)²
            candidates.append(sp.factor(sp.together(self.derivative.subs(Z * sp.sign(Z), sp.Abs(Z)))))
        for candidate in candidates:
            difference = self.derivative - expand_named(candidate.subs(f, self.definition))
            if _near_zero(difference) and sp.simplify(difference) == 0:
                return candidate
        if self.derivative.has(sp.Piecewise):
            return self.derivative
        simplified = sp.simplify(self.derivative)  # unless it splits into cases (|z| as z = 0 or not)
        return self.derivative if simplified.has(sp.Piecewise) else simplified


def _near_zero(expr, points=(-2.5, -0.3, 0.7, 1.9)) -> bool:
    """Whether ``expr`` in z is within 1e-12 of 0 at the points where it is finite."""
    for point in points:
        value = value_at(expr, {Z: point})
        if value is not None and abs(value) > 1e-12:
            return False
    return True


A = sp.Symbol("a", real=True)


@functools.lru_cache(maxsize=None)
def derivative_of_output(act: Activation):
    """f'(z) written in a = f(z) alone, when SymPy finds such a form (sigmoid: a(1 - a), tanh:
    1 - a**2, relu: 0 if a <= 0 else 1), else None. Code that keeps a need not recompute f.

    Each branch of f is inverted with ``sympy.solve`` and put into the matching branch of f';
    a form is kept only if it is a rational function of ``a`` and agrees with f' at points on
    both sides of every kink.
    """
    if not act.elementwise:
        return None
    pairs = [(act.definition, act.derivative, sp.true)]
    if isinstance(act.derivative, sp.Piecewise):
        if not isinstance(act.definition, sp.Piecewise) or len(act.definition.args) != len(act.derivative.args):
            return None
        pairs = [(f, d, cond) for (f, cond), (d, _) in zip(act.definition.args, act.derivative.args)]
    branches = []
    for f, d, cond in pairs:
        form = d if Z not in d.free_symbols else _in_terms_of_output(f, d)
        if form is None:
            return None
        branches.append((form, cond.subs(Z, A) if cond is not sp.true else sp.true))
    candidate = branches[0][0] if len(branches) == 1 else sp.Piecewise(*branches)
    for point in (-2.5, -1.0, -0.3, 0.0, 0.3, 1.0, 2.5):
        a, exact = value_at(act.definition, {Z: point}), value_at(act.derivative, {Z: point})
        if a is None or exact is None:  # f or f' undefined there (1/z at 0): nothing to agree with
            continue
        value = value_at(candidate, {A: a})
        if value is None or abs(value - exact) > 1e-12:
            return None
    return candidate


def _in_terms_of_output(f, d):
    """d written in a = f(z) when z occurs once in f (so f is inverted step by step, see _invert)
    and d is small (SIMPLIFY_OPS), else None."""
    if sp.count_ops(d) > limits.SIMPLIFY_OPS:
        return None
    inverse = _invert(f, A)
    if inverse is None:
        return None
    form = sp.cancel(sp.expand(d.subs(Z, inverse).rewrite(sp.exp)))
    if Z not in form.free_symbols and form.is_rational_function(A):
        return min((sp.simplify(form), form), key=sp.count_ops)  # a*(1 - a) before a - a**2
    return None


def _invert(f, value):
    """z such that f(z) = value, peeling f from the outside (z + c, c z, 1/u, exp, and the functions
    SymPy knows an inverse of, such as tanh), when z occurs once in f; else None. Fast where
    ``sympy.solve`` may take minutes (z*sigmoid(1.702*z) asks it for Lambert W); a wrong branch
    (sin) is caught by the caller's check at sample points."""
    if f.count(Z) != 1:
        return None
    while f != Z:
        if isinstance(f, sp.Add):
            rest, f = f.as_independent(Z, as_Add=True)
            value = value - rest
        elif isinstance(f, sp.Mul):
            rest, f = f.as_independent(Z, as_Add=False)
            value = value / rest
        elif isinstance(f, sp.Pow) and f.exp == -1:
            f, value = f.base, 1 / value
        elif isinstance(f, sp.exp):
            f, value = f.args[0], sp.log(value)
        elif isinstance(f, sp.Function) and len(f.args) == 1 and hasattr(f.func, "inverse"):
            f, value = f.args[0], f.inverse()(value)
        else:
            return None
    return value


def make_activation(value, where: str) -> Activation:
    """An Activation from a spec value: a name, ``{type=..., param=...}`` or ``{formula=...}``."""
    if value is None:
        value = "identity"
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        raise ChainruleError(f"{where}: activation must be a name or a table, not {value!r}")
    value = dict(value)
    if "formula" in value:
        name = value.pop("name", "f")
        if not (isinstance(name, str) and name.isidentifier()):
            raise ChainruleError(f"{where}: activation name {name!r} must be a plain identifier like 'mish'")
        if value.keys() - {"formula"}:
            raise ChainruleError(f"{where}: a formula activation takes only 'formula' and 'name'")
        text = value["formula"]
        definition = parse_formula(text, {"z": Z}, f"activation formula at {where}")
        return Activation(name, rf"\operatorname{{{name}}}" if len(name) > 1 else name, definition, formula=text)
    kind_name = value.pop("type", None)
    kind_name = kind_name.lower() if isinstance(kind_name, str) else kind_name  # Relu is relu
    if kind_name not in CATALOGUE:
        raise unknown(f"activation at {where}", kind_name, list(CATALOGUE) + ["{formula = ...}"])
    kind = CATALOGUE[kind_name]
    exact, shown = bind_params(f"{where}: {kind_name}", kind.defaults, value)
    textbook = kind.textbook(Z, **exact) if kind.textbook else None
    return Activation(kind.name, kind.latex, kind.build(Z, **exact), tuple(sorted(shown)), kind.domain,
                      kind.elementwise, textbook=textbook)
