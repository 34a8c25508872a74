"""Values at points and the comparison: a person's expression against the derived gradient.

The derivation's leaves get values (SymPy symbols for the exact proof; for the numeric test, random
numbers scaled as a network is initialised, so nothing overflows at any width: weights of variance
1/fan-in, inputs and targets of unit scale), every step is evaluated from them (``explicit``
through each node's own ``doit``, ``numeric_value`` through each node's own ``numeric``), and two
values are compared point by point, relative to the gradient's scale. ``verdict`` says "equal" when
every point agrees, "different" only when it is conclusive (finite, far above rounding, at two
points or more) and "undecided", with the reason, otherwise.
"""
import time
import zlib
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..steps import N

BATCH = 3  # N at the checking points: 3, so a missing 1/N is not mistaken for the 2 of a square
POINTS = 5  # random points a verdict rests on: a relu kink region is missed at all of them only rarely
WIDE_POINTS, BIG_POINTS = 3, 2  # on a network of more than BUDGETED, and of more than BIG, parameters
BIG = 1_000_000
MAX_POINTS = 12  # points drawn at most: when some are not finite, or to reproduce a difference
AGREE = 1e-7  # relative to the gradient's largest entry: below this, rounding
DIFFER = 1e-4  # above this, a real difference; in between the point decides nothing
SHOWN_ENTRIES = 40  # a counterexample lists every input up to this many numbers
MAX_PROOF_ENTRIES = 150  # beyond this many symbols the exact proof is skipped
PROOF_SECONDS = 1.0  # the exact proof's budget; past it the random points decide
SEARCH_SECONDS = 2.0  # the mistake search's budget on a network of more than BUDGETED parameters
BUDGETED = 20_000
BIAS_SCALE = 0.5  # biases, and the spread of a parameter that starts at a constant (layer norm's γ, β)


class OutOfTime(Exception):
    """The mistake search ran past SEARCH_SECONDS."""


@dataclass
class Verdict:
    """How a value compares with the gradient at the points: "equal", "different" or "undecided"."""
    status: str
    reason: str = ""
    point: int = 0  # the index of a point where it differs


class Comparer:
    """The values and comparisons of a Checker (its ``q``, ``leaf_keys``, ``net``, ``sweep``, ``view``)."""

    deadline = None  # time.monotonic() past which ``same`` raises OutOfTime (None: no budget)
    drawn = {}  # (seed, key, rows, cols) -> the random value of a leaf; a Checker gets its own (or a shared one)

    # -- values at points -----------------------------------------------------------------------
    def leaves(self, rng=None):
        """Values for the data and parameters: SymPy symbols (rng None) or NumPy arrays, drawn from
        ``rng`` (a ``random.Random``) at the scale of an initialised network."""
        values = {}
        params = {v.key: v.param for v in self.sweep.graph.values if v.role == "param"}
        seed = None if rng is None else rng.getrandbits(32)
        for q in self.q.values():
            if q.key not in self.leaf_keys:
                continue
            rows, cols = (int(s.subs(N, BATCH)) for s in q.symbol.shape)
            if seed is None:
                values[q.symbol] = sp.ImmutableMatrix(rows, cols, lambda i, j: sp.Symbol(f"{q.key}_{i}{j}", real=True))
                continue
            # one stream per quantity, kept in ``drawn``: a parameter has the same value in every convention
            kept = (seed, q.key, rows, cols)
            if kept in self.drawn:
                values[q.symbol] = self.drawn[kept]
                continue
            draw = np.random.default_rng([seed, zlib.crc32(q.key.encode())])
            if q.role == "mask":
                keep = 1 / (1 - self.net.layers[q.layer - 1].dropout)
                values[q.symbol] = keep * (draw.random((rows, cols)) < 0.6)
            elif q.role == "param":
                param = params.get(q.key)
                if param is not None and param.init is not None:
                    values[q.symbol] = param.init + BIAS_SCALE * _normal(draw, rows, cols)
                elif cols > 1:  # a weight matrix, (out, in): variance 1/fan-in
                    values[q.symbol] = _normal(draw, rows, cols) / np.sqrt(cols)
                else:
                    values[q.symbol] = BIAS_SCALE * _normal(draw, rows, cols)
            elif q.key.lower() == "y" and self.net.loss.name == "cross_entropy" and self._steps_out() > 1:
                # a class at every step of the output sequence (its (t, f) order), as the notes' 1ᵀ y = 1 assumes
                T = self._steps_out()
                values[q.symbol] = np.eye(rows // T)[draw.integers(rows // T, size=(T, cols))].transpose(0, 2, 1)\
                    .reshape(rows, cols)
            elif q.key.lower() == "y" and self.net.loss.name == "cross_entropy":
                values[q.symbol] = np.eye(rows)[:, draw.integers(rows, size=cols)]
            elif q.key.lower() == "y" and self.net.loss.name == "bce":
                values[q.symbol] = draw.uniform(0.1, 0.9, (rows, cols))
            else:
                values[q.symbol] = _normal(draw, rows, cols)
            self.drawn[kept] = values[q.symbol]
        return values

    def _steps_out(self) -> int:
        """The steps of the output, a sequence's T when the last layer acts at every step (else 1)."""
        return getattr(self.net.layers[-1], "length", None) or 1

    def evaluate_steps(self, leaves, overrides=None):
        """Every step's value from the leaves: SymPy matrices for symbols (all at once); NumPy arrays
        for numbers, each computed when first looked up (a Point), so a check pays only for the steps
        its gradient needs."""
        overrides = overrides or {}
        rhs = {step.target.symbol: overrides.get(step.target.key, step.rhs) for step in self.sweep.steps}
        if any(isinstance(v, np.ndarray) for v in leaves.values()):
            return Point(leaves, rhs, (q.symbol for q in self.q.values() if q.role == "gradient"))
        env = dict(leaves)
        for symbol, value in rhs.items():
            env[symbol] = explicit(value, env)
        return env

    def seeds(self, wanted=None):
        """The seeds of the points a verdict rests on: the first POINTS (fewer on a big network), or
        ``wanted``, at which the loss is finite, of at most MAX_POINTS seeds. The points live in
        ``shared``, which checkers of the same sweep (other conventions) may share."""
        store = self.shared
        if not store:
            store.update(seeds=[], points=[], leaves={}, tried=0)
        wanted = wanted or (POINTS if self._size <= BUDGETED else WIDE_POINTS if self._size <= BIG else BIG_POINTS)
        loss = [q.symbol for q in self.q.values() if q.role == "loss"]
        while len(store["seeds"]) < wanted and store["tried"] < MAX_POINTS:
            store["tried"] += 1
            seed = store["tried"]
            leaves = store["leaves"][seed] = self.leaves(_random(seed))
            env = self.evaluate_steps(leaves)
            if all(np.all(np.isfinite(env[symbol])) for symbol in loss):
                store["seeds"].append(seed)
                store["points"].append(env)
        return store["seeds"]

    def points(self):
        self.seeds()
        return self.shared["points"]

    def _at_points(self, overrides):
        """The steps' values at the verdict's points, with ``overrides`` in place of steps."""
        return [self.evaluate_steps(self.shared["leaves"][seed], overrides) for seed in self.seeds()]

    def numeric(self, expr, env) -> list:
        return self.flat(expr, env).tolist()

    def flat(self, expr, env):
        """``expr``'s value at a point as one flat array (row by row)."""
        with np.errstate(all="ignore"):  # a person's division by an entry that is 0 gives inf, never equal
            return np.atleast_2d(np.asarray(numeric_value(expr, env), dtype=float)).ravel()

    def in_time(self):
        """Raise OutOfTime once the search is past its deadline."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise OutOfTime()

    def same(self, a, b, envs=None) -> bool:
        """Equal at the random points (both matrices or both scalars, equal shapes), within rounding."""
        self.in_time()
        if shape_of(a) != shape_of(b):
            return False
        for env in envs or self.points():
            try:
                x, y = self.flat(a, env), self.flat(b, env)
            except (TypeError, ValueError, ZeroDivisionError, KeyError):
                return False
            if _agreement(x, y) != "agree":
                return False
        return True

    def verdict(self, mine, expected) -> Verdict:
        """Equal, different (conclusively: finite, far above rounding, at two points or more; a difference
        at one point only is looked for at more points) or undecided, with the reason."""
        if not self.points():
            return Verdict("undecided", f"the loss is not finite at any of {MAX_POINTS} random points")
        found = []
        while True:
            for env in self.points()[len(found):]:
                try:
                    found.append(_agreement(self.flat(mine, env), self.flat(expected, env)))
                except (TypeError, ValueError, ZeroDivisionError, KeyError) as err:
                    return Verdict("undecided", f"yours could not be evaluated ({err})")
            differ = [i for i, f in enumerate(found) if f == "differ"]
            if len(differ) != 1 or self.shared["tried"] >= MAX_POINTS:
                break
            self.seeds(len(found) + 1)  # one point differs: look for a second one
        count = len(found)
        if found.count("agree") == count:
            return Verdict("equal")
        if len(differ) >= 2:
            return Verdict("different", point=differ[0])
        if found.count("infinite") == count:
            return Verdict("undecided", f"yours is not finite (inf or NaN) at all {count} random points, where "
                                        f"the gradient is")
        if differ:
            return Verdict("undecided", f"yours differs at one of {count} random points only and agrees, or is not "
                                        f"finite, at the others")
        return Verdict("undecided", f"yours differs from the gradient by between {AGREE:g} and {DIFFER:g} of its "
                                    f"largest entry at some of {count} random points: rounding, or a tiny term "
                                    f"(an epsilon) yours has and the derivation has not, or the reverse")

    def exactly_equal(self, a, b):
        """True when SymPy proves the entries equal with a symbol for every input and parameter, within
        PROOF_SECONDS; False when it does not; None when it is not tried, as it is not cheap (more than
        MAX_PROOF_ENTRIES symbols, or a Piecewise or erf, whose expansion blows up through the layers)."""
        if any(e.has(sp.Piecewise, sp.erf) for e in (a, b, *(step.rhs for step in self.sweep.steps))):
            return None
        leaves = self.leaves(None)
        if sum(len(v) for v in leaves.values()) > MAX_PROOF_ENTRIES:
            return None
        deadline = time.monotonic() + PROOF_SECONDS
        try:
            env = dict(leaves)
            for step in self.sweep.steps:
                if time.monotonic() > deadline:
                    return False
                env[step.target.symbol] = explicit(step.rhs, env)
            x, y = sp.Matrix([explicit(a, env)]), sp.Matrix([explicit(b, env)])
        except Exception:  # symbolic evaluation can fail on exotic formulas; the numeric check decides
            return False
        for d in (x - y):
            if d == 0:
                continue
            if time.monotonic() > deadline or sp.count_ops(d) > 400:
                return False
            if sp.expand(d) == 0:
                continue
            if sp.count_ops(d) > 80 or time.monotonic() > deadline or sp.simplify(d) != 0:
                return False
        return True

    def counterexample(self, mine, expected, label, point=0) -> str:
        """The values at a point where yours differs, with enough digits that the two numbers differ."""
        env, seed = self.points()[point], self.seeds()[point]
        x, y = self.flat(mine, env), self.flat(expected, env)
        worst = int(np.argmax(np.abs(x - y)))
        digits = _digits(x[worst], y[worst])
        leaves = [q for q in self.q.values() if q.key in self.leaf_keys]
        if sum(self.flat(self.view(q), env).size for q in leaves) <= SHOWN_ENTRIES and len(y) <= SHOWN_ENTRIES:
            inputs = ", ".join(f"{q.text} = {_fmt(self.flat(self.view(q), env), self.view(q), 4)}" for q in leaves)
            return f"at {inputs}: yours = {_fmt(x, mine, digits)}, {label} = {_fmt(y, expected, digits)}"
        cols = int(shape_of(expected)[1])
        return (f"at random inputs and parameters (seed {seed}), entry ({worst // cols + 1}, {worst % cols + 1}): "
                f"yours = {x[worst]:.{digits}g}, {label} = {y[worst]:.{digits}g}")


class Point(dict):
    """The values at one point: the leaves, and each step's value computed the first time it is looked
    up, with the steps before it in order (no deep recursion), a parameter's gradient, which no other
    step uses, only when it is the one looked up."""

    def __init__(self, leaves, rhs, final=()):
        super().__init__(leaves)
        self.rhs, self.final = rhs, frozenset(final)

    def __contains__(self, key):
        return dict.__contains__(self, key) or key in self.rhs

    def __missing__(self, key):
        if key not in self.rhs:
            raise KeyError(key)
        with np.errstate(all="ignore"):  # a step that is not finite makes its point unusable, no more
            for symbol, rhs in self.rhs.items():
                if not dict.__contains__(self, symbol) and (symbol == key or symbol not in self.final):
                    self[symbol] = numeric_value(rhs, self)
                if symbol == key:
                    break
        return dict.__getitem__(self, key)


def _normal(draw, rows, cols):
    # drawn in float32, twice as fast as float64 on a wide network's ten million weights; the values are
    # points like any others, and everything computed from them is float64
    return draw.standard_normal((rows, cols), dtype=np.float32).astype(float)


def _random(seed):
    import random
    return random.Random(seed)


def _agreement(x, y) -> str:
    """One point: "agree" (within rounding of the gradient's scale), "differ", "close" (neither) or
    "infinite" (a value that is not finite)."""
    if len(x) != len(y):
        return "differ"
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return "infinite"
    scale = max(float(np.max(np.abs(y), initial=0.0)), float(np.max(np.abs(x), initial=0.0)))
    error = float(np.max(np.abs(x - y), initial=0.0))
    if error <= AGREE * scale:
        return "agree"
    return "differ" if error >= DIFFER * scale else "close"


# -- explicit evaluation of the derivation's matrix expressions --------------------------------------
def explicit(expr, env):
    """``expr`` with every MatrixSymbol replaced by its explicit matrix in ``env`` and N by BATCH, then
    expanded by SymPy's and each node's own ``doit``."""
    value = sp.sympify(expr).xreplace({**env, N: sp.Integer(BATCH)})
    # constant matrices made explicit too, so every product multiplies entries (never a symbolic Sum)
    value = value.replace(lambda e: isinstance(e, (sp.OneMatrix, sp.ZeroMatrix, sp.Identity)),
                          lambda e: sp.ImmutableMatrix(e.as_explicit())).doit()
    return sp.ImmutableMatrix(value.as_explicit()) if isinstance(value, sp.MatrixExpr) else value


def numeric_value(expr, env):
    """``expr`` evaluated with NumPy: 2-D arrays for matrices, floats for scalars. SymPy's matrix algebra
    is mapped to NumPy here; the derivation's own nodes evaluate themselves (their ``numeric``)."""
    if expr in env:
        return env[expr]
    own = getattr(expr, "numeric", None)
    if own is not None:
        return own(lambda e: numeric_value(e, env))
    for cls in type(expr).__mro__:
        rule = _ALGEBRA.get(cls)
        if rule is not None:
            return rule(expr, lambda e: numeric_value(e, env))
    raise TypeError(f"cannot evaluate {type(expr).__name__}")


def _size(s):
    return int(sp.sympify(s).subs(N, BATCH))


def _product(expr, value):
    out = 1.0
    for arg in expr.args:
        v = value(arg)
        out = out @ v if isinstance(out, np.ndarray) and isinstance(v, np.ndarray) else out * v
    return out


def _hadamard(expr, value):
    out = value(expr.args[0])
    for arg in expr.args[1:]:
        out = out * value(arg)
    return out


def _no_value(expr, value):
    raise KeyError(f"no value for {expr}")


def _by_doit(expr, value):
    """A node without a ``numeric`` of its own (a convolution's, a pooling's): its ``doit`` on the
    explicit matrices of its arguments' values, entry by entry."""
    args = [sp.ImmutableMatrix(value(a)) if is_matrix(a) else a.xreplace({N: sp.Integer(BATCH)})
            for a in expr.args]
    return np.array(sp.ImmutableMatrix(expr.func(*args).doit().as_explicit()).tolist(), dtype=float)


_ALGEBRA = {
    sp.MatrixSymbol: _no_value,
    sp.OneMatrix: lambda e, value: np.ones(tuple(_size(s) for s in e.shape)),
    sp.ZeroMatrix: lambda e, value: np.zeros(tuple(_size(s) for s in e.shape)),
    sp.Identity: lambda e, value: np.eye(_size(e.shape[0])),
    sp.Transpose: lambda e, value: value(e.arg).T,
    sp.MatMul: _product,
    sp.Mul: _product,
    sp.MatAdd: lambda e, value: sum((value(a) for a in e.args[1:]), value(e.args[0])),
    sp.Add: lambda e, value: sum((value(a) for a in e.args[1:]), value(e.args[0])),
    sp.HadamardProduct: _hadamard,
    sp.HadamardPower: lambda e, value: value(e.base) ** value(e.exp),
    sp.Pow: lambda e, value: value(e.base) ** value(e.exp),
    sp.Symbol: lambda e, value: float(BATCH) if e == N else _no_value(e, value),
    sp.MatrixExpr: _by_doit,
    sp.Expr: lambda e, value: float(e) if e.is_number else _no_value(e, value),
}


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


def _digits(a, b) -> int:
    """The fewest significant digits (at least 4) that print a and b differently."""
    for digits in range(4, 18):
        if f"{a:.{digits}g}" != f"{b:.{digits}g}":
            return digits
    return 17


def _fmt(values, like, digits=4) -> str:
    if not is_matrix(like):
        return f"{values[0]:.{digits}g}"
    rows, cols = (_size(s) for s in like.shape)
    grid = [values[i * cols:(i + 1) * cols] for i in range(rows)]
    return "[" + "; ".join(" ".join(f"{v:.{digits}g}" for v in row) for row in grid) + "]"
