"""Values at points and the comparison: a person's expression against the derived gradient.

The derivation's leaves get values (SymPy symbols for the exact proof, one-decimal random numbers
at POINTS seeds for the numeric test), every step is evaluated from them (``explicit`` with SymPy,
``numeric_value`` with NumPy), and two values are compared: equal at the points, then equal entry
by entry when SymPy can say so within PROOF_SECONDS.
"""
import math
import random
import time

import numpy as np
import sympy as sp

from ..nodes import ColumnNormalize, ElementSum, Pointwise
from ..steps import N

BATCH = 3  # N at the checking points: 3, so a missing 1/N is not mistaken for the 2 of a square
POINTS = 3
SHOWN_ENTRIES = 40  # a counterexample lists every input up to this many numbers
MAX_PROOF_ENTRIES = 150  # beyond this many symbols the exact proof is skipped
PROOF_SECONDS = 1.0  # SymPy's simplify may take long; past this the random points decide


class Comparer:
    """The values and comparisons of a Checker (its ``q``, ``leaf_keys``, ``net``, ``sweep``, ``view``)."""

    # -- values at points -----------------------------------------------------------------------
    def leaves(self, rng=None):
        """Values for the data and parameters: SymPy symbols (rng None) or NumPy arrays of one-decimal numbers."""
        values = {}
        for q in self.q.values():
            if q.key not in self.leaf_keys:
                continue
            rows, cols = (int(s.subs(N, BATCH)) for s in q.symbol.shape)
            if q.role == "mask" and rng is not None:
                keep = 1 / (1 - self.net.layers[q.layer - 1].dropout)
                values[q.symbol] = np.array([[keep * (rng.random() < 0.6) for _ in range(cols)] for _ in range(rows)])
                continue
            if rng is None:
                values[q.symbol] = sp.ImmutableMatrix(rows, cols, lambda i, j: sp.Symbol(f"{q.key}_{i}{j}", real=True))
                continue
            if q.key.lower() == "y" and self.net.loss.name == "cross_entropy":
                hot = [rng.randrange(rows) for _ in range(cols)]
                values[q.symbol] = np.array([[float(hot[j] == i) for j in range(cols)] for i in range(rows)])
                continue
            low, high = (1, 9) if q.key.lower() == "y" and self.net.loss.name == "bce" else (-15, 15)
            values[q.symbol] = np.array([[_nonzero(rng, low, high) / 10 for _ in range(cols)] for _ in range(rows)])
        return values

    def evaluate_steps(self, leaves, overrides=None):
        """Every step's value from the leaves: SymPy matrices for symbols, NumPy arrays for numbers."""
        env = dict(leaves)
        overrides = overrides or {}
        numeric = any(isinstance(v, np.ndarray) for v in leaves.values())
        evaluate = numeric_value if numeric else explicit
        for step in self.sweep.steps:
            env[step.target.symbol] = evaluate(overrides.get(step.target.key, step.rhs), env)
        return env

    def points(self):
        if self._points is None:
            self._points = self._at_points({})
        return self._points

    def _at_points(self, overrides):
        """The steps' values at the random points, with ``overrides`` in place of steps."""
        return [self.evaluate_steps(self.leaves(random.Random(seed)), overrides) for seed in range(1, POINTS + 1)]

    def numeric(self, expr, env):
        with np.errstate(all="ignore"):  # a person's division by an entry that is 0 gives inf, never equal
            return np.atleast_2d(np.asarray(numeric_value(expr, env), dtype=float)).ravel().tolist()

    def same(self, a, b, envs=None) -> bool:
        """Equal at the random points (both matrices or both scalars, equal shapes)."""
        if shape_of(a) != shape_of(b):
            return False
        with np.errstate(all="ignore"):
            for env in envs or self.points():
                try:
                    x, y = self.numeric(a, env), self.numeric(b, env)
                except (TypeError, ValueError, ZeroDivisionError, KeyError):
                    return False
                if not _close(x, y):
                    return False
        return True

    def exactly_equal(self, a, b) -> bool:
        """True when SymPy proves the entries equal with a symbol for every input and parameter."""
        leaves = self.leaves(None)
        if sum(len(v) for v in leaves.values()) > MAX_PROOF_ENTRIES:
            return False
        try:
            env = self.evaluate_steps(leaves)
            x, y = sp.Matrix(sp.Matrix([explicit(a, env)])), sp.Matrix(sp.Matrix([explicit(b, env)]))
        except Exception:  # symbolic evaluation can fail on exotic formulas; the numeric check decides
            return False
        deadline = time.monotonic() + PROOF_SECONDS
        for d in (sp.Matrix(x) - sp.Matrix(y)):
            if d == 0:
                continue
            if time.monotonic() > deadline or d.has(sp.Piecewise, sp.erf) or sp.count_ops(d) > 400:
                return False
            if sp.expand(d) == 0:
                continue
            if sp.count_ops(d) > 80 or time.monotonic() > deadline or sp.simplify(d) != 0:
                return False
        return True

    def counterexample(self, mine, expected, label) -> str:
        env = self.points()[0]
        inputs = []
        for q in self.q.values():
            if q.key in self.leaf_keys:
                inputs.append(f"{q.text} = {_fmt(self.numeric(self.view(q), env), self.view(q))}")
        x, y = self.numeric(mine, env), self.numeric(expected, env)
        if sum(len(self.numeric(self.view(q), env)) for q in self.q.values() if q.key in self.leaf_keys) \
                <= SHOWN_ENTRIES and len(y) <= SHOWN_ENTRIES:
            return f"at {', '.join(inputs)}: yours = {_fmt(x, mine)}, {label} = {_fmt(y, expected)}"
        worst = max(range(len(y)), key=lambda k: abs(x[k] - y[k]))
        cols = int(shape_of(expected)[1])
        return (f"at random inputs and parameters (one decimal each, seed 1), entry ({worst // cols + 1}, "
                f"{worst % cols + 1}): yours = {x[worst]:.4g}, {label} = {y[worst]:.4g}")


# -- explicit evaluation of the derivation's matrix expressions --------------------------------------
def explicit(expr, env):
    """``expr`` with every MatrixSymbol replaced by its explicit matrix in ``env``, N by BATCH."""
    if expr in env:
        return env[expr]
    if expr == N:
        return sp.Integer(BATCH)
    if isinstance(expr, sp.MatrixSymbol):
        raise KeyError(f"no value for {expr}")
    if isinstance(expr, sp.OneMatrix):
        rows, cols = (int(sp.sympify(s).subs(N, BATCH)) for s in expr.shape)
        return sp.ImmutableMatrix.ones(rows, cols)
    if isinstance(expr, sp.ZeroMatrix):
        rows, cols = (int(sp.sympify(s).subs(N, BATCH)) for s in expr.shape)
        return sp.ImmutableMatrix.zeros(rows, cols)
    if isinstance(expr, sp.Transpose):
        return explicit(expr.arg, env).T
    if isinstance(expr, sp.MatMul):
        out = sp.Integer(1)
        for arg in expr.args:
            value = explicit(arg, env)
            out = value * out if not isinstance(out, sp.MatrixBase) and isinstance(value, sp.MatrixBase) else out * value
        return out
    if isinstance(expr, sp.MatAdd):
        values = [explicit(arg, env) for arg in expr.args]
        total = values[0]
        for v in values[1:]:
            total = total + v
        return total
    if isinstance(expr, sp.HadamardProduct):
        values = [explicit(arg, env) for arg in expr.args]
        out = values[0]
        for v in values[1:]:
            out = out.multiply_elementwise(v)
        return sp.ImmutableMatrix(out)
    if isinstance(expr, sp.HadamardPower):
        base, power = explicit(expr.base, env), explicit(expr.exp, env)
        return base.applyfunc(lambda v: v ** power)
    if isinstance(expr, Pointwise):
        mats = [explicit(m, env) for m in expr.mats]
        rows, cols = mats[0].shape
        return sp.ImmutableMatrix(rows, cols, lambda i, j: expr.fn(*(m[i, j] for m in mats)))
    if isinstance(expr, ColumnNormalize):
        mat = explicit(expr.mat, env)
        sums = [sum(mat[:, j]) for j in range(mat.cols)]
        return sp.ImmutableMatrix(mat.rows, mat.cols, lambda i, j: mat[i, j] / sums[j])
    if isinstance(expr, ElementSum):
        mats = [explicit(m, env) for m in expr.mats]
        return sp.Add(*(expr.fn(*(m[k] for m in mats)) for k in range(len(mats[0]))))
    if isinstance(expr, (sp.Add, sp.Mul, sp.Pow)) and expr.has(ElementSum, sp.MatrixExpr):
        return expr.func(*(explicit(a, env) for a in expr.args))
    if isinstance(expr, sp.MatrixExpr):  # another node of derive.nodes (layer norm's): its own doit
        return sp.ImmutableMatrix(expr.func(*(explicit(a, env) for a in expr.args)).doit().as_explicit())
    if isinstance(expr, sp.Expr):
        return expr.xreplace({N: sp.Integer(BATCH)})
    raise TypeError(f"cannot evaluate {type(expr).__name__}")


_COMPILED = {}


def _compiled(fn: sp.Lambda):
    """A NumPy function for a scalar Lambda (activations, their derivatives, losses)."""
    if fn not in _COMPILED:
        body = fn.expr.xreplace({N: sp.Integer(BATCH)})  # batch norm's 1/(N σ) has the batch size inside
        try:
            f = sp.lambdify(fn.variables, body, modules=["numpy", {"erf": np.vectorize(math.erf)}])
        except Exception:  # a formula NumPy cannot print: evaluate it element by element
            scalar = sp.lambdify(fn.variables, body, modules=["mpmath"])
            f = np.vectorize(lambda *a: float(scalar(*a)))
        _COMPILED[fn] = f
    return _COMPILED[fn]


def _ones_like(shape):
    return np.ones(tuple(int(sp.sympify(s).subs(N, BATCH)) for s in shape))


def numeric_value(expr, env):
    """``expr`` evaluated with NumPy: 2-D arrays for matrices, floats for scalars."""
    if expr in env:
        return env[expr]
    if expr == N:
        return float(BATCH)
    if isinstance(expr, sp.MatrixSymbol):
        raise KeyError(f"no value for {expr}")
    if isinstance(expr, sp.OneMatrix):
        return _ones_like(expr.shape)
    if isinstance(expr, sp.ZeroMatrix):
        return 0 * _ones_like(expr.shape)
    if isinstance(expr, sp.Transpose):
        return numeric_value(expr.arg, env).T
    if isinstance(expr, sp.MatMul):
        out = 1.0
        for arg in expr.args:
            value = numeric_value(arg, env)
            out = out @ value if isinstance(out, np.ndarray) and isinstance(value, np.ndarray) else out * value
        return out
    if isinstance(expr, (sp.MatAdd, sp.Add)):
        return sum((numeric_value(a, env) for a in expr.args[1:]), numeric_value(expr.args[0], env))
    if isinstance(expr, sp.HadamardProduct):
        out = numeric_value(expr.args[0], env)
        for arg in expr.args[1:]:
            out = out * numeric_value(arg, env)
        return out
    if isinstance(expr, sp.HadamardPower):
        return numeric_value(expr.base, env) ** numeric_value(expr.exp, env)
    if isinstance(expr, Pointwise):
        mats = [numeric_value(m, env) for m in expr.mats]
        return np.broadcast_to(np.asarray(_compiled(expr.fn)(*mats), dtype=float), mats[0].shape).copy()
    if isinstance(expr, ColumnNormalize):
        mat = numeric_value(expr.mat, env)
        return mat / mat.sum(axis=0, keepdims=True)
    if isinstance(expr, ElementSum):
        mats = [numeric_value(m, env) for m in expr.mats]
        return float(np.sum(np.broadcast_to(np.asarray(_compiled(expr.fn)(*mats), dtype=float), mats[0].shape)))
    if isinstance(expr, sp.Mul):
        out = 1.0
        for arg in expr.args:
            out = out * numeric_value(arg, env)
        return out
    if isinstance(expr, sp.Pow):
        return numeric_value(expr.base, env) ** numeric_value(expr.exp, env)
    if isinstance(expr, sp.MatrixExpr):  # another node of derive.nodes: its own doit, on the values as matrices
        args = [sp.ImmutableMatrix(numeric_value(a, env)) if is_matrix(a) else a.xreplace({N: sp.Integer(BATCH)})
                for a in expr.args]
        return np.array(sp.ImmutableMatrix(expr.func(*args).doit().as_explicit()).tolist(), dtype=float)
    if isinstance(expr, sp.Expr):
        return float(expr.xreplace({N: sp.Integer(BATCH)}))
    raise TypeError(f"cannot evaluate {type(expr).__name__}")


def _close(x, y) -> bool:
    return len(x) == len(y) and all(abs(a - b) <= 1e-8 * (1 + abs(b)) for a, b in zip(x, y))


def is_matrix(value) -> bool:
    return isinstance(value, (sp.MatrixExpr, sp.MatrixBase))


def shape_of(value):
    if is_matrix(value):
        return tuple(sp.sympify(s).subs(N, BATCH) for s in value.shape)
    return (1, 1) if isinstance(value, sp.Expr) else None


def describe_shape(value) -> str:
    if not is_matrix(value):
        return "a scalar"
    return " × ".join(str(s) for s in value.shape)


def _nonzero(rng, low, high) -> int:
    while True:
        v = rng.randint(low, high)
        if v:
            return v


def _fmt(values, like) -> str:
    def num(v):
        return f"{v:.4g}"
    if not is_matrix(like):
        return num(values[0])
    rows, cols = (int(sp.sympify(s).subs(N, BATCH)) for s in like.shape)
    grid = [values[i * cols:(i + 1) * cols] for i in range(rows)]
    return "[" + "; ".join(" ".join(num(v) for v in row) for row in grid) + "]"
