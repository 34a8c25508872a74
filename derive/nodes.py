"""The SymPy expression nodes the derivation needs beyond MatMul, MatAdd, HadamardProduct.

``Pointwise(fn, *mats)`` applies a scalar ``Lambda`` element by element (an activation, its
derivative, a loss's derivative); ``ElementSum(fn, *mats)`` sums such a map over all elements
(a loss, a penalty). Both carry the formula itself, so ``doit()`` on explicit matrices gives
the element-wise expansion that ``derive.verify`` differentiates, and the printers can show
either a short label (``\\sigma'(z_1)``) or the formula. ``ColumnNormalize`` divides each
column by its sum (softmax) and ``ColumnSums`` (``1 1ᵀ M``) gives each entry its column's sum
(softmax's backward step). ``FeatureMean`` gives each column's mean (layer norm's μ)
and ``Broadcast`` copies a row or a column to a matrix's shape.
Each node's ``numeric`` gives its value with NumPy from its arguments' values, so the checker
evaluates a derivation at random points without interpreting the nodes itself.
"""
import sympy as sp
from sympy.core.symbol import Str
from sympy.matrices.expressions import MatMul, MatrixExpr


class Pointwise(MatrixExpr):
    """``fn`` applied element-wise to equally shaped matrices; ``label`` names it when printed."""

    def __new__(cls, fn: sp.Lambda, label, *mats):
        return sp.Basic.__new__(cls, fn, label if isinstance(label, Str) else Str(label), *mats)

    @property
    def fn(self) -> sp.Lambda:
        return self.args[0]

    @property
    def label(self) -> str:
        return self.args[1].name

    @property
    def mats(self) -> tuple:
        return self.args[2:]

    @property
    def shape(self):
        return self.mats[0].shape

    def doit(self, **hints):
        mats = [m.doit(**hints) for m in self.mats]
        if not all(isinstance(m, sp.MatrixBase) for m in mats):
            return Pointwise(self.fn, self.label, *mats)
        rows, cols = mats[0].shape
        return sp.ImmutableMatrix(rows, cols, lambda i, j: self.fn(*(m[i, j] for m in mats)))

    def _eval_transpose(self):
        # element-wise, so its transpose is the map of the transposed matrices (SymPy's hook)
        return Pointwise(self.fn, self.label, *(m.T for m in self.mats))

    def numeric(self, value):
        """Its value with NumPy, ``value`` giving each matrix argument's array."""
        mats = [value(m) for m in self.mats]
        return _numpy_broadcast(numpy_function(self.fn)(*mats), mats[0].shape)


class ElementSum(sp.Expr):
    """The scalar sum over all elements of ``fn`` applied element-wise."""

    def __new__(cls, fn: sp.Lambda, *mats):
        return sp.Expr.__new__(cls, fn, *mats)

    @property
    def fn(self) -> sp.Lambda:
        return self.args[0]

    @property
    def mats(self) -> tuple:
        return self.args[1:]

    def doit(self, **hints):
        mats = [m.doit(**hints) for m in self.mats]
        if not all(isinstance(m, sp.MatrixBase) for m in mats):
            return ElementSum(self.fn, *mats)
        return sp.Add(*(self.fn(*(m[k] for m in mats)) for k in range(len(mats[0]))))

    def numeric(self, value):
        mats = [value(m) for m in self.mats]
        return float(_numpy_broadcast(numpy_function(self.fn)(*mats), mats[0].shape).sum())


class ColumnNormalize(MatrixExpr):
    """Each column divided by its sum: softmax(Z) is ColumnNormalize(exp applied element-wise to Z)."""

    def __new__(cls, mat):
        return sp.Basic.__new__(cls, mat)

    @property
    def mat(self):
        return self.args[0]

    @property
    def shape(self):
        return self.mat.shape

    def doit(self, **hints):
        mat = self.mat.doit(**hints)
        if not isinstance(mat, sp.MatrixBase):
            return ColumnNormalize(mat)
        sums = [sum(mat[:, j]) for j in range(mat.cols)]
        return sp.ImmutableMatrix(mat.rows, mat.cols, lambda i, j: mat[i, j] / sums[j])

    def numeric(self, value):
        mat = value(self.mat)
        return mat / mat.sum(axis=0, keepdims=True)


class ColumnSums(MatMul):
    """``1 1ᵀ M``: every entry of M replaced by the sum of its column (so M's shape).

    It is the matrix product it names (its args are the square matrix of ones and M), so
    whatever evaluates or prints a MatMul handles it; its own class lets the code printer sum
    each column of M instead of multiplying by a matrix of ones. ``ColumnSums(M)`` builds it;
    SymPy rebuilds it from both args.
    """

    def __new__(cls, *args):
        if len(args) == 1:
            rows = args[0].shape[0]
            args = (sp.OneMatrix(rows, rows), args[0])
        return MatMul.__new__(cls, *args)

    @property
    def mat(self):
        return self.args[-1]

    def doit(self, **hints):
        ones, mat = (a.doit(**hints) for a in self.args)
        if isinstance(ones, sp.MatrixBase) and isinstance(mat, sp.MatrixBase):
            return ones * mat
        return ColumnSums(ones, mat)


class Broadcast(MatrixExpr):
    """A row (1, n) copied down ``rows`` rows, or a column (m, 1) copied across ``cols`` columns:
    ``x - μ`` with one mean per column, ``γ ⊙ x̂`` with one gain per row. It prints as the matrix
    it copies (the reader's broadcasting, NumPy's too). ``broadcast(M, shape)`` builds it."""

    def __new__(cls, mat, rows, cols):
        return sp.Basic.__new__(cls, mat, sp.sympify(rows), sp.sympify(cols))

    @property
    def mat(self):
        return self.args[0]

    @property
    def shape(self):
        return self.args[1], self.args[2]

    def doit(self, **hints):
        mat = self.mat.doit(**hints)
        rows, cols = self.shape
        if not isinstance(mat, sp.MatrixBase) or not (rows.is_Integer and cols.is_Integer):
            return Broadcast(mat, rows, cols)
        return sp.ImmutableMatrix(int(rows), int(cols),
                                  lambda i, j: mat[0 if mat.rows == 1 else i, 0 if mat.cols == 1 else j])

    def numeric(self, value):
        import numpy as np
        return np.broadcast_to(value(self.mat), tuple(int(value(s)) for s in self.shape)).copy()


def broadcast(mat, shape):
    """``mat`` as a matrix of ``shape``: itself when it has that shape, else its Broadcast."""
    return mat if tuple(mat.shape) == tuple(shape) else Broadcast(mat, *shape)


class FeatureMean(MatrixExpr):
    """The mean of each column of M, a row (1, columns): one mean over the features per sample."""

    def __new__(cls, mat):
        return sp.Basic.__new__(cls, mat)

    @property
    def mat(self):
        return self.args[0]

    @property
    def shape(self):
        return sp.Integer(1), self.mat.shape[1]

    def doit(self, **hints):
        mat = self.mat.doit(**hints)
        if not isinstance(mat, sp.MatrixBase):
            return FeatureMean(mat)
        return sp.ImmutableMatrix(1, mat.cols, lambda _, j: sum(mat[:, j]) / mat.rows)

    def numeric(self, value):
        return value(self.mat).mean(axis=0, keepdims=True)


_FUNCTIONS = {}


def numpy_function(fn: sp.Lambda):
    """A NumPy function of arrays for a scalar Lambda (an activation, a derivative, a loss): SymPy's
    lambdify, with erf element by element (NumPy has none) and mpmath for what NumPy cannot print."""
    if fn not in _FUNCTIONS:
        import math

        import numpy as np
        try:
            f = sp.lambdify(fn.variables, fn.expr, modules=["numpy", {"erf": np.vectorize(math.erf)}])
        except Exception:  # a formula NumPy cannot print: evaluate it element by element
            scalar = sp.lambdify(fn.variables, fn.expr, modules=["mpmath"])
            f = np.vectorize(lambda *a: float(scalar(*a)))
        _FUNCTIONS[fn] = f
    return _FUNCTIONS[fn]


def _numpy_broadcast(values, shape):
    """A formula's values as a float array of ``shape`` (a constant formula gives one number)."""
    import numpy as np
    return np.broadcast_to(np.asarray(values, dtype=float), shape).copy()
