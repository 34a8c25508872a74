"""The NumPy printer: a derivation's matrix expressions as batch-first NumPy code.

The derivation is written with samples as columns (``X`` is in × N); the emitted code keeps a
batch in rows (``X`` is N × in), as PyTorch does, and stores parameters as ``torch.nn.Linear``
does (``W`` out × in, ``b`` a vector of out). So a quantity with N columns is held transposed in
code and every other quantity as it is. The printer walks a right-hand side and prints the
expression whose value is what the code variable holds: ``Z1 = W1 X + b1 1ᵀ`` becomes
``Z1 = X @ W1.T + b1`` (the transpose, pushed down to the leaves), ``Δ 1_N`` becomes
``ones_N @ Delta1`` (the function defines ``ones_N``; one matrix-vector product sums over the
batch 2-3x faster than ``Delta1.sum(axis=0)``).

Element-wise formulas (the bodies of ``Pointwise`` and ``ElementSum``) print through SymPy's
``NumPyPrinter``, after :func:`stabilize` has rewritten the forms that overflow: ``log(1 + e^u)``
becomes :class:`Softplus`, ``1 / (1 + e^-u)`` becomes :class:`Sigmoid`, and each branch of a
``Piecewise`` sees its argument clipped to the branch's own side of the kink.
"""
import math

import sympy as sp
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.matrices.expressions import MatAdd, MatMul, MatrixSymbol, OneMatrix
from sympy.printing.numpy import NumPyPrinter

from derive.formula import clamp_bounds
from derive.functions import sigma
from derive.nodes import Broadcast, FeatureMean, Pointwise
from derive.ops.losses import clip, clip_form

from .numpy_window import WINDOW_HELPERS, WindowPrinting

#: Helper functions the emitted module defines when a printed expression calls them.
HELPERS = ("_erf", "_softmax", "_softmax_logsumexp", "_recurrent", "_embedding_grad", "_step_softmax",
           "_step_softmax_logsumexp", "_attention", "_layernorm_steps") + WINDOW_HELPERS


class Sigmoid(sp.Function):
    """The logistic function 1 / (1 + e^-u), printed without overflow for any u."""

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, u, **kwargs):
        return sigma.define(u)


class Softplus(sp.Function):
    """log(1 + e^u), printed as ``np.logaddexp(0, u)``."""

    def fdiff(self, argindex=1):
        return Sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, u, **kwargs):
        return sp.log(1 + sp.exp(u))


# -- stable forms of element-wise formulas ----------------------------------------------------

def _exp_of_one_plus(expr):
    """u when ``expr`` is 1 + e^u, else None."""
    if isinstance(expr, sp.Add) and len(expr.args) == 2 and sp.S.One in expr.args:
        other = expr.args[0] if expr.args[1] == 1 else expr.args[1]
        if isinstance(other, sp.exp):
            return other.args[0]
    return None


def _sigmoid_form(expr):
    """``expr`` with e^u written through σ(u) where 1 + e^u occurs and the result has no σ below a
    fraction bar (e^u/(1 + e^u) = σ(u) is safe; e^u alone as σ/(1 - σ) would not be)."""
    # (a constant 1 + e^c, from a formula such as log(sigmoid(1)), is a number: nothing to stabilize)
    args = sorted({-u if u.could_extract_minus_sign() else u for node in sp.preorder_traversal(expr)
                   if (u := _exp_of_one_plus(node)) is not None and not u.is_number}, key=sp.default_sort_key)
    for u in args:
        s = Sigmoid(u)
        trial = sp.factor(sp.cancel(expr.subs({sp.exp(u): s / (1 - s), sp.exp(-u): (1 - s) / s})))
        unsafe = any(isinstance(p, sp.Pow) and p.exp.is_negative and p.base.has(Sigmoid)
                     for p in sp.preorder_traversal(trial))
        if not unsafe:
            expr = trial
    return expr


def _log_rules(expr):
    """log σ(u) = -softplus(-u), log(1 - σ(u)) = -softplus(u), log(1 + e^u) = softplus(u)."""
    def rule(node):
        arg = node.args[0]
        if isinstance(arg, Sigmoid):
            return -Softplus(-arg.args[0])
        if isinstance(arg, sp.Add) and len(arg.args) == 2 and sp.S.One in arg.args:
            other = arg.args[0] if arg.args[1] == 1 else arg.args[1]
            if isinstance(other, sp.Mul) and other.args[0] == -1 and isinstance(other.args[1], Sigmoid) \
                    and len(other.args) == 2:
                return -Softplus(other.args[1].args[0])
        u = _exp_of_one_plus(arg)
        if u is not None:
            return Softplus(u)
        return node
    return expr.replace(lambda e: isinstance(e, sp.log), rule)


def _clip_branches(expr):
    """Each branch of a one-variable Piecewise sees its argument clipped to the branch's side.

    ``np.where`` evaluates every branch everywhere, so elu's ``e^z - 1`` would overflow at
    z = 1000 in the branch that is not taken; at ``min(z, 0)`` it cannot.
    """
    def clip(pw):
        pieces, lower = [], None
        for value, cond in pw.args:
            if value.has(sp.exp) and isinstance(cond, (sp.LessThan, sp.StrictLessThan)) \
                    and cond.lhs.is_Symbol and cond.rhs.is_number:
                value = value.subs(cond.lhs, sp.Min(cond.lhs, cond.rhs))
                lower = (cond.lhs, cond.rhs)
            elif value.has(sp.exp) and cond == sp.true and lower is not None:
                value = value.subs(lower[0], sp.Max(*lower))
            pieces.append((value, cond))
        return sp.Piecewise(*pieces, evaluate=False)
    return expr.replace(lambda e: isinstance(e, sp.Piecewise), clip)


def stabilize(expr):
    """An element-wise formula rewritten so that no input makes NumPy overflow."""
    expr = _log_rules(expr)
    expr = _sigmoid_form(expr)
    expr = _log_rules(expr)
    return _clip_branches(expr)


# -- shapes of Piecewise that print without np.where ------------------------------------------
# np.where computes both branches and a select, several passes over memory; each shape below
# is one or two ufunc passes. Each is an identity of the two-branch Piecewise it matches.

def _kink(cond):
    """(u, c, below) for a condition u <= c or u < c (below) or u >= c, u > c; else None."""
    if isinstance(cond, (sp.LessThan, sp.StrictLessThan, sp.GreaterThan, sp.StrictGreaterThan)) \
            and cond.lhs.is_Symbol and cond.rhs.is_number:
        return cond.lhs, cond.rhs, isinstance(cond, (sp.LessThan, sp.StrictLessThan))
    return None


def _clamped(pw):
    """f(min(u, c)) for "f(u) if u <= c else f(c)" (elu' from its output: min(a, 0) + 1), and
    g(max(u, c)) for "g(c) if u <= c else g(u)" (relu: max(z, 0)); the mirrored conditions alike."""
    if len(pw.args) != 2:
        return None
    (first, cond), (other, _) = pw.args
    kink = _kink(cond)
    if kink is None:
        return None
    u, c, below = kink
    clamp_first, clamp_other = (sp.Min, sp.Max) if below else (sp.Max, sp.Min)
    if first.has(u) and not other.has(u) and sp.simplify(first.subs(u, c) - other) == 0:
        return first.subs(u, clamp_first(u, c, evaluate=False))
    if other.has(u) and not first.has(u) and sp.simplify(other.subs(u, c) - first) == 0:
        return other.subs(u, clamp_other(u, c, evaluate=False))
    return None


def _clipped(pw):
    k, u, d = clip_form(pw)
    return k * clip(u, -d, d)


def _leaky(pw):
    """(u, a) for "a u if u <= 0 else u" with a >= 0 (leaky relu): max(u, a u) when a <= 1, else min."""
    if len(pw.args) != 2:
        return None
    (first, cond), (other, _) = pw.args
    kink = _kink(cond)
    if kink is None or kink[1] != 0 or not kink[2] or other != kink[0]:
        return None
    slope = sp.simplify(first / kink[0])
    return (kink[0], slope) if slope.is_number and slope >= 0 else None


def indicator(expr):
    """The condition under which ``expr`` is 1 when it is a Piecewise of 0 and 1 (relu', a step),
    else None: multiplied into a float array, the boolean array is that 0/1 factor."""
    if not isinstance(expr, sp.Piecewise) or len(expr.args) != 2:
        return None
    (first, cond), (other, _) = expr.args
    if (first, other) == (0, 1):
        return sp.Not(cond).to_nnf()  # not (u <= lo or u >= hi) as lo < u and u < hi
    if (first, other) == (1, 0):
        return cond
    return None


# -- printers ---------------------------------------------------------------------------------

class ElementwisePrinter(NumPyPrinter):
    """Scalar formulas on arrays: ``np.where`` for Piecewise, stable σ and softplus.

    Numbers that stand alone as a ``Piecewise`` branch print as ``real(c)`` (``real`` is the
    array's scalar type in the emitted code) so ``np.where`` keeps float32 float32.
    """

    def __init__(self, settings=None):
        super().__init__(settings or {})
        self.helpers = set()
        self.stable_sigmoid = False  # whether a sigmoid was printed (the module docstring says how)

    def _print_Piecewise(self, expr):
        value, cond = expr.args[-1]
        if cond != sp.true:
            raise ValueError(f"Piecewise without an otherwise branch: {expr}")
        # the Piecewise prints as one factor wherever it stands: a sum or product is parenthesized
        clamped = _clamped(expr)
        if clamped is not None:
            text = self._print(clamped)
            return "({})".format(text) if isinstance(clamped, (sp.Add, sp.Mul)) else text
        u, lo, hi = clamp_bounds(expr)
        if lo is not None and hi is not None:
            return "np.clip({}, {}, {})".format(self._print(u), self._print(lo), self._print(hi))
        leaky = _leaky(expr)
        if leaky is not None:
            u, slope = leaky
            return "np.{}({}, {})".format("maximum" if slope <= 1 else "minimum", self._print(u),
                                          self._print(slope * u))
        if len(expr.args) == 2 and all(v.is_number for v, _ in expr.args):
            # "c0 if cond else c1" as c1 + (c0 - c1) cond: the boolean array scaled, no select
            (c0, cond), (c1, _) = expr.args
            scaled = "{}*({})".format(self._branch(c0 - c1), self._print(cond))
            return "({})".format(scaled if c1 == 0 else "{} + {}".format(self._branch(c1), scaled))
        out = self._branch(value)
        for value, cond in reversed(expr.args[:-1]):
            out = "np.where({}, {}, {})".format(self._print(cond), self._branch(value), out)
        return out

    def _branch(self, value):
        return "real({})".format(self._print(value)) if value.is_number else self._print(value)

    def _print_Add(self, expr, order=None):
        # positive terms first: "Yhat - Y" is one subtraction, "-Y + Yhat" a negation and an addition
        terms = sorted(self._as_ordered_terms(expr, order=order), key=lambda t: t.could_extract_minus_sign())
        return super()._print_Add(sp.Add(*terms, evaluate=False), order="none")

    def _print_And(self, expr):
        # boolean arrays: & and | are one pass each, as readable as the condition they print
        return " & ".join("({})".format(self._print(a)) for a in expr.args)

    def _print_Or(self, expr):
        return " | ".join("({})".format(self._print(a)) for a in expr.args)

    def _print_Relational(self, expr):
        ops = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
        if expr.rel_op not in ops:
            return super()._print_Relational(expr)
        prec = precedence(expr)
        return "{} {} {}".format(self.parenthesize(expr.lhs, prec), ops[expr.rel_op],
                                 self.parenthesize(expr.rhs, prec))

    def _print_Pow(self, expr, rational=False):
        if expr.is_number and not expr.is_Rational:
            return self._print_NumberSymbol(expr)
        if expr.exp == -1:
            return "1/{}".format(self.parenthesize(expr.base, PRECEDENCE["Pow"]))
        return super()._print_Pow(expr, rational=rational)

    def _print_NumberSymbol(self, expr):
        # a Python float, which NumPy casts to the array's dtype (numpy.sqrt(2) would force float64)
        return repr(float(expr))

    _print_Pi = _print_NumberSymbol
    _print_Exp1 = _print_NumberSymbol

    def _module_format(self, fqn, register=True):
        # the emitted module imports numpy as np, as the optimizer code does
        if fqn.startswith("numpy."):
            fqn = "np." + fqn[len("numpy."):]
        return super()._module_format(fqn, register)

    def _print_Min(self, expr):
        return self._nested("np.minimum", expr.args)

    def _print_Max(self, expr):
        return self._nested("np.maximum", expr.args)

    def _nested(self, fn, args):
        # arrays before numbers: np.maximum(Z1, 0) reads as relu, and may take out=Z1
        args = sorted(args, key=lambda a: (a.is_number, sp.default_sort_key(a)))
        out = self._print(args[0])
        for arg in args[1:]:
            out = "{}({}, {})".format(fn, out, self._print(arg))
        return out

    def _print_Abs(self, expr):
        return "np.abs({})".format(self._print(expr.args[0]))

    def _print_clip(self, expr):
        return "np.clip({}, {}, {})".format(*(self._print(a) for a in expr.args))

    def _print_erf(self, expr):
        self.helpers.add("_erf")
        return "_erf({})".format(self._print(expr.args[0]))

    def _print_exp(self, expr):
        # e^(-c u^2k) is 0 in float64 and float32 once c u^2k > 1100 (e^-746 underflows), but u^2k
        # overflows long before (gelu' squares z: float32 at |z| > 1.8e19, a warning under -W error);
        # u clipped to the bound where the exp is already 0 gives the same values without overflow.
        coeff, power = expr.args[0].as_coeff_Mul()
        if coeff.is_negative and isinstance(power, sp.Pow) and power.exp.is_Integer and power.exp.is_even \
                and power.exp > 0:
            bound = math.ceil(float(1100 / -coeff) ** (1 / int(power.exp)))
            scale = "-" if coeff == -1 else self._print(coeff) + "*"
            return "np.exp({}np.clip({}, {}, {})**{})".format(scale, self._print(power.base), -bound, bound, power.exp)
        return super()._print_exp(expr)

    def _print_Sigmoid(self, expr):
        # exp(-log(1 + e^-u)): the logarithm never overflows and exp only underflows.
        self.stable_sigmoid = True
        return "np.exp(-np.logaddexp(0, {}))".format(self._print(-expr.args[0]))

    def _print_Softplus(self, expr):
        return "np.logaddexp(0, {})".format(self._print(expr.args[0]))


_N = sp.Symbol("N", integer=True, positive=True)  # the batch size, as derive.chain names it


def _product_pair(mat):
    """(a, b) when ``mat`` is a ⊙ b or a², both full arrays (no broadcast row or column), else None."""
    if isinstance(mat, sp.HadamardProduct) and len(mat.args) == 2:
        pair = mat.args
    elif isinstance(mat, Pointwise) and len(mat.mats) == 1 and mat.fn.expr == mat.fn.variables[0] ** 2:
        pair = (mat.mats[0], mat.mats[0])
    else:
        return None
    return pair if not any(isinstance(m, Broadcast) for m in pair) else None


def stored_transposed(matrix) -> bool:
    """A quantity with one column per sample is held transposed (batch-first) in code."""
    return getattr(matrix, "shape", (0, 0))[1] == _N


class BatchFirstPrinter(WindowPrinting, ElementwisePrinter):
    """Matrix expressions of the column convention printed as batch-first NumPy.

    ``print_value(expr, transposed)`` prints ``exprᵀ`` when ``transposed`` (the target is held
    transposed) and ``expr`` otherwise; the transpose is pushed to the leaves, where a data
    quantity is already stored transposed and a parameter gets ``.T``. ``names`` maps a
    quantity's key to its variable in code; the keys in ``vectors`` (biases) are stored 1-D, as
    torch stores them, and broadcast as rows.
    """
    stored_transposed = staticmethod(stored_transposed)  # for the window mixin, which does not import this module

    def __init__(self, names=None, vectors=(), cse_prefix="t"):
        super().__init__()
        self.names = dict(names or {})
        self.vectors = frozenset(vectors)
        self.cse_prefix = cse_prefix
        self._transposed = False
        self.preamble = []
        self.kernels = {}  # {a kernel's call: its result's name}, for nodes whose one call serves several Steps

    # -- entry point ----------------------------------------------------------------------------
    def print_value(self, expr, transposed: bool):
        """(lines of cse temporaries, the expression): the code for expr, or exprᵀ."""
        self.preamble, self._transposed, self._cse_count = [], transposed, 0
        text = self._print(expr)
        return list(self.preamble), text

    def print_factors(self, factors, transposed: bool):
        """(temporaries, code) of the element-wise product of ``factors``, the rest of the line
        print_value began: its temporaries continue that line's numbering."""
        self.preamble, self._transposed = [], transposed
        text = self._product(factors)
        return list(self.preamble), text

    def _flip(self, expr):
        self._transposed = not self._transposed
        try:
            return self._print(expr)
        finally:
            self._transposed = not self._transposed

    def _name(self, key):
        return self.names.get(key, key)

    # -- leaves ---------------------------------------------------------------------------------
    def _print_MatrixSymbol(self, expr):
        name = self._name(expr.name)
        if expr.name in self.vectors:  # a bias, stored 1-D: broadcasts as a row
            return name if self._transposed else "{}[:, None]".format(name)
        if self._transposed != stored_transposed(expr):
            return "{}.T".format(name)
        return name

    def _print_Symbol(self, expr):
        return self._name(expr.name)

    def _print_Transpose(self, expr):
        return self._flip(expr.arg)

    # -- matrix algebra -------------------------------------------------------------------------
    def _factor(self, expr):
        if isinstance(expr, Pointwise):
            text, body = self._apply(expr.fn, expr.mats)
            return "({})".format(text) if precedence(body) < PRECEDENCE["Mul"] else text
        text = self._print(expr)
        if isinstance(expr, (MatAdd, sp.HadamardProduct)) or (isinstance(expr, MatMul) and "@" in text) \
                or text.startswith("-") or isinstance(expr, FeatureMean) and " / " in text:
            return "({})".format(text)
        return text

    def _print_MatMul(self, expr):
        coeff, mats = expr.as_coeff_mmul()
        mats = list(mats.args) if isinstance(mats, MatMul) else [mats]
        if mats and isinstance(mats[-1], OneMatrix) and mats[-1].shape[0] == 1:
            mats = mats[:-1]  # b 1ᵀ: the bias added to every sample is a broadcast row
        elif mats and isinstance(mats[-1], OneMatrix) and mats[-1].shape == (_N, 1):
            # M 1_N sums the columns of M, the rows of what code holds: a 1-D vector
            rest = MatMul(*mats[:-1]) if len(mats) > 2 else mats[0]
            saved, self._transposed = self._transposed, True
            pair = _product_pair(rest) if isinstance(rest, sp.HadamardProduct) else None
            # (A ⊙ B) 1_N as one einsum, without the A ⊙ B array (layer norm's dL/dγ)
            body = 'np.einsum("ij,ij->j", {}, {})'.format(*map(self._factor, pair)) if pair \
                else "ones_N @ {}".format(self._factor(rest))
            self._transposed = saved
            return self._scaled(coeff, body)
        if self._transposed:
            mats = mats[::-1]
        return self._scaled(coeff, " @ ".join(self._factor(m) for m in mats))

    def _scaled(self, coeff, text):
        if coeff == 1:
            return text
        if coeff == -1:
            return "-" + text
        shown = self._print(coeff)
        if coeff.is_Add or (coeff.is_Rational and not coeff.is_Integer):
            shown = "({})".format(shown)
        return "{}*{}".format(shown, text)

    def _print_MatAdd(self, expr):
        terms = sorted(expr.args, key=lambda t: (t.as_coeff_mmul()[0].is_negative is True
                                                 if isinstance(t, MatMul) else False))
        out = ""
        for i, term in enumerate(terms):
            text = self._print(term)
            if i and text.startswith("-"):
                out += " - " + text[1:]
            else:
                out += (" + " if i else "") + text
        return out

    def _print_HadamardProduct(self, expr):
        return self._product(expr.args)

    def _product(self, factors):
        return " * ".join(self._mask(m) or self._factor(m) for m in factors)

    def _mask(self, factor):
        """A 0/1 Pointwise factor printed as a boolean array, ``(Z1 > 0)``: NumPy multiplies it in
        as 0 and 1 in the other factor's dtype, which costs far less than ``np.where``."""
        if not (isinstance(factor, Pointwise) and indicator(factor.fn.expr) is not None):
            return None
        names = {var: sp.Symbol(self._print(mat), real=True) for var, mat in zip(factor.fn.variables, factor.mats)
                 if isinstance(mat, MatrixSymbol)}
        if len(names) != len(factor.mats):
            return None
        return "({})".format(self._print(indicator(factor.fn.expr.xreplace(names))))

    def _print_OneMatrix(self, expr):
        raise ValueError("a matrix of ones is printed only as a broadcast or a sum over the batch")

    # -- the derivation's own nodes -------------------------------------------------------------
    def _apply(self, fn, mats):
        """fn's body with each variable replaced by the code of the matching matrix."""
        names = {}
        for var, mat in zip(fn.variables, mats):
            text = self._print(mat)
            names[var] = sp.Symbol(text if isinstance(mat, MatrixSymbol) else "({})".format(text), real=True)
        # Huber's derivative as k clip(Yhat - Y, -d, d), before cse could name Y - Yhat and negate it
        body = stabilize(fn.expr.xreplace(names)).replace(lambda e: clip_form(e) is not None, _clipped)
        replacements, (reduced,) = sp.cse(body, symbols=self._cse_symbols())
        for symbol, value in replacements:
            self.preamble.append((symbol.name, self._print(value)))
        return self._print(reduced), reduced

    def _cse_symbols(self):
        while True:  # counted as each is handed out, so no two temporaries of a line share a name
            self._cse_count += 1
            yield sp.Symbol("{}{}".format(self.cse_prefix, self._cse_count - 1), real=True)

    def _temporary(self, value):
        """The name of a new temporary holding ``value``, computed in the line's preamble."""
        name = next(self._cse_symbols()).name
        self.preamble.append((name, self._print(value)))
        return name

    def _print_Pointwise(self, expr):
        return self._apply(expr.fn, expr.mats)[0]

    def _print_ColumnNormalize(self, expr):
        axis = 1 if self._transposed else 0
        inner = expr.mat
        if isinstance(inner, Pointwise) and inner.fn.expr == sp.exp(inner.fn.variables[0]) \
                and isinstance(inner.mats[0], MatrixSymbol):
            self.helpers.add("_softmax")
            return "_softmax({}, axis={})".format(self._print(inner.mats[0]), axis)
        text = self._print(inner)
        return "({0}) / ({0}).sum(axis={1}, keepdims=True)".format(text, axis)

    def _print_ElementSum(self, expr):
        # a sum over every element is the same for a matrix and its transpose: print as stored
        saved, self._transposed = self._transposed, stored_transposed(expr.mats[0])
        try:
            text, body = self._apply(expr.fn, expr.mats)
            coeff, square = body.as_coeff_Mul()
            if isinstance(square, sp.Pow) and square.exp == 2:
                # a sum of squares is one dot product: no squared temporary, and BLAS does the sum
                base = self._print(square.base) if square.base.is_Symbol else self._temporary(square.base)
                return self._scaled(coeff, "np.vdot({0}, {0})".format(base))
            # the method, not np.sum: on a small batch np.sum's dispatch costs more than the sum
            bare = not isinstance(body, (sp.Add, sp.Mul, sp.Pow)) and not text.startswith("-")
            return "{}.sum()".format(text if bare else "({})".format(text))
        finally:
            self._transposed = saved

    def _print_Broadcast(self, expr):
        # a row of per-sample numbers is held (N, 1) and a parameter column 1-D: NumPy broadcasts both
        return self._factor(expr.mat)

    def _print_FeatureMean(self, expr):
        # the mean of each sample's features: along the rows of what code holds when transposed
        pair = _product_pair(expr.mat)
        if pair is not None:
            # mean(a ⊙ b) as one einsum: no a ⊙ b array (layer norm's σ and backward)
            a = self._factor(pair[0]) if pair[0] is not pair[1] or isinstance(pair[0], MatrixSymbol) \
                else self._temporary(pair[0])  # a², its base computed once
            b = a if pair[0] is pair[1] else self._factor(pair[1])
            rows = "ij,ij->i" if self._transposed else "ij,ij->j"
            index = "[:, None]" if self._transposed else "[None, :]"
            return 'np.einsum("{}", {}, {}){} / {}'.format(rows, a, b, index, expr.mat.shape[0])
        text = self._print(expr.mat)
        if not isinstance(expr.mat, MatrixSymbol):
            text = "({})".format(text)
        return "{}.mean(axis={}, keepdims=True)".format(text, 1 if self._transposed else 0)

    def _print_ColumnSums(self, expr):
        # 1 1ᵀ M gives each entry its column's sum: a column is a row of what code holds when transposed
        text = self._print(expr.mat)
        if not isinstance(expr.mat, MatrixSymbol):
            text = "({})".format(text)
        return "{}.sum(axis={}, keepdims=True)".format(text, 1 if self._transposed else 0)

    def _print_BatchMean(self, expr):
        # the mean of each row over the batch: along the rows of what code holds (a 1-D result, held
        # as a bias is) when transposed, along each row otherwise
        text = self._print(expr.mat)
        if not isinstance(expr.mat, MatrixSymbol):
            text = "({})".format(text)
        return "{}.mean(axis={})".format(text, 0 if self._transposed else 1)

    def _print_ChannelTotal(self, expr, reduce="sum"):
        # a channel's k features over every sample: the same numbers however M is held, so M is printed as code
        # holds it (a row per sample) and the result is 1-D, one number per channel, as a bias is
        saved, self._transposed = self._transposed, True
        try:
            text = self._print(expr.mat)
        finally:
            self._transposed = saved
        if not isinstance(expr.mat, MatrixSymbol):
            text = "({})".format(text)
        return "{}.reshape(-1, {}, {}).{}(axis=(0, 2))".format(text, self._print(expr.shape[0]), expr.k, reduce)

    def _print_ChannelMean(self, expr):
        return self._print_ChannelTotal(expr, "mean")

    def _print_ChannelRepeat(self, expr):
        # one number per channel, repeated over its k features: a 1-D row NumPy broadcasts over the samples
        text = "np.repeat({}, {})".format(self._print(expr.mat), expr.k)
        return text if self._transposed else "{}[:, None]".format(text)
