"""Prove a derivation: every adjoint and gradient Step equals SymPy's derivative of the expanded loss.

The network is shrunk to small widths (at most ``cap`` units a layer, keeping residual layers
square), every matrix becomes a matrix of scalar symbols, and the loss is expanded into one
scalar expression. For a Step defining dL/dq, the forward pass is replayed with ``q`` replaced
by fresh symbols, so ``sympy.diff`` of that loss is the true dL/dq. The Step's own right-hand
side, evaluated element-wise, must equal it at random points to 30 digits; with ``exact=True``
the difference must also cancel to zero symbolically (slow for exp-heavy networks, and
Piecewise and erf resist it, so those stay numeric).
"""
import random
from dataclasses import dataclass, replace

import mpmath
import sympy as sp

from .chain import N, Derivation

_DIGITS = 30


@dataclass(frozen=True)
class Proof:
    """The verdict on one Step."""
    number: int
    target: str
    form: str
    method: str  # "exact" or "numeric"
    ok: bool
    error: float


@dataclass(frozen=True)
class Report:
    proofs: tuple

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.proofs)

    def failures(self) -> list:
        return [p for p in self.proofs if not p.ok]

    def text(self) -> str:
        lines = [f"({p.number}) {p.target} [{p.form}]: {'proved' if p.ok else 'WRONG'} ({p.method}"
                 + (f", error {p.error:.2e})" if p.method == "numeric" else ")") for p in self.proofs]
        return "\n".join(lines) + "\n"


def shrink(network, cap: int = 2):
    """The same network with every width at most `cap` (softmax keeps at least 2 outputs)."""
    layers = tuple(replace(layer, units=min(layer.units, cap)) for layer in network.layers)
    return replace(network, inputs=min(network.inputs, cap), layers=layers)


def verify(derivation: Derivation, cap: int = 2, batch: int = 2, seed: int = 0, exact: bool = False) -> Report:
    """Prove every backward Step of both forms of `derivation` at small sizes."""
    net = derivation.network
    small = derivation if max(net.widths) <= cap else Derivation(shrink(net, cap))
    proofs = []
    for sweep, columns in ((small.sample, 1), (small.batch, batch)):
        proofs.extend(_prove_sweep(sweep, columns, random.Random(seed), exact))
    return Report(tuple(proofs))


def _explicit(q, columns: int):
    rows, cols = q.symbol.shape
    cols = columns if cols == N else cols
    return sp.ImmutableMatrix(rows, cols, lambda i, j: sp.Symbol(f"{q.key}_{i}_{j}", real=True))


def _evaluate(expr, values: dict, columns: int):
    expr = expr.xreplace({N: columns, **values})
    return expr.replace(sp.OneMatrix, lambda rows, cols: sp.ImmutableMatrix.ones(rows, cols)).doit()


def _prove_sweep(sweep, columns: int, rng: random.Random, exact: bool) -> list:
    quantities = sweep.quantities
    inputs = {q.symbol: _explicit(q, columns) for q in quantities.values() if q.role in ("data", "param", "mask")}
    constraint = _one_hot_constraint(sweep, inputs)
    forward = [s for s in sweep.steps if s.phase in ("forward", "loss")]

    def replay(fresh_key=None, fresh=None):
        values = dict(inputs)
        for step in forward:
            values[step.target.symbol] = fresh if step.target.key == fresh_key else _evaluate(step.rhs, values, columns)
        return values

    values = replay()
    loss = values[sweep.L.symbol]
    points = [{s: sp.Float(rng.uniform(-1.5, 1.5), _DIGITS) for m in inputs.values() for s in m} for _ in range(2)]
    proofs = []
    for step in (s for s in sweep.steps if s.phase == "backward"):
        derived = _evaluate(step.rhs, values, columns)
        values[step.target.symbol] = derived
        expected = _true_gradient(step, sweep, values, replay, loss, columns, inputs)
        proofs.append(_compare(step, derived, expected, constraint, points, exact))
    return proofs


def _true_gradient(step, sweep, values, replay, loss, columns, inputs):
    """sympy.diff of the expanded loss with respect to the quantity the Step's target is dL/d of."""
    key = step.target.key
    if key.startswith("dL_d") and key[4:] in sweep.quantities and sweep.quantities[key[4:]].role == "param":
        wrt = inputs[sweep.quantities[key[4:]].symbol]
        return wrt.applyfunc(lambda s: sp.diff(loss, s))
    of = _of(step, sweep)
    fresh = _explicit(replace(of, key=f"fresh_{of.key}"), columns)
    fresh_loss = replay(of.key, fresh)[sweep.L.symbol]
    at = dict(zip(fresh, values[of.symbol]))
    return fresh.applyfunc(lambda s: sp.diff(fresh_loss, s).xreplace(at))


def _of(step, sweep):
    """The forward quantity an adjoint Step is the gradient of (delta_l -> z_l, dL_dA1 -> A1)."""
    key = step.target.key
    if key.startswith("dL_d"):
        return sweep.quantities[key[4:]]
    layer = step.target.layer
    return next(q for q in sweep.quantities.values() if q.role == "forward" and q.layer == layer
                and q.key.lower().startswith("z"))


def _one_hot_constraint(sweep, inputs) -> dict:
    """Cross-entropy's fused rule holds where each target column sums to 1: impose it."""
    if sweep.net.loss.fused_with != "softmax":
        return {}
    target = next(q for q in sweep.quantities.values() if q.role == "data" and q.key.lower() == "y")
    Y = inputs[target.symbol]
    return {Y[Y.rows - 1, j]: 1 - sum(Y[i, j] for i in range(Y.rows - 1)) for j in range(Y.cols)}


def _compare(step, derived, expected, constraint, points, exact) -> Proof:
    difference = (derived - expected).xreplace(constraint)
    label = step.target.text
    symbols = sorted(points[0], key=str)
    evaluate = sp.lambdify(symbols, list(difference), modules="mpmath", cse=True)
    worst = 0.0
    with mpmath.workdps(_DIGITS):
        for point in points:
            values = evaluate(*(mpmath.mpf(str(point[s])) for s in symbols))
            worst = max([worst] + [float(abs(v)) for v in values])
    if worst >= 1e-20:
        return Proof(step.number, label, step.form, "numeric", False, worst)
    if exact and not any(isinstance(d, sp.Piecewise) or d.has(sp.Piecewise, sp.erf) for d in difference) \
            and all(sp.cancel(sp.expand(d)) == 0 for d in difference):
        return Proof(step.number, label, step.form, "exact", True, 0.0)
    return Proof(step.number, label, step.form, "numeric", True, worst)
