"""The SymPy expression nodes the derivation needs beyond MatMul, MatAdd, HadamardProduct.

``Pointwise(fn, *mats)`` applies a scalar ``Lambda`` element by element (an activation, its
derivative, a loss's derivative); ``ElementSum(fn, *mats)`` sums such a map over all elements
(a loss, a penalty). Both carry the formula itself, so ``doit()`` on explicit matrices gives
the element-wise expansion that ``derive.verify`` differentiates, and the printers can show
either a short label (``\\sigma'(z_1)``) or the formula. ``ColumnNormalize`` divides each
column by its sum (softmax) and ``ColumnSums`` (``1 1ᵀ M``) gives each entry its column's sum
(softmax's backward step). ``FeatureMean`` gives each column's mean (layer norm's μ)
and ``Broadcast`` copies a row or a column to a matrix's shape; ``BatchMean`` gives each row's
mean over the batch (batch norm's μ), ``ChannelTotal`` and ``ChannelMean`` each channel's sum and mean
over the batch and the image, and ``ChannelRepeat`` copies one number per channel to its rows (batch
norm after a convolution).
Each node's ``numeric`` gives its value with NumPy from its arguments' values, so the checker
evaluates a derivation at random points without interpreting the nodes itself (the checker reads
no batch-norm or convolution network, whose nodes have none).
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
        return _numpy_broadcast(numpy_function(_bound(self.fn, value))(*mats), mats[0].shape)


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
        return float(_numpy_broadcast(numpy_function(_bound(self.fn, value))(*mats), mats[0].shape).sum())


class OfOneMatrix(MatrixExpr):
    """A node of one matrix argument, ``mat`` (and any integers its kind needs, such as a length), evaluated
    entry by entry once ``mat`` is explicit (``entries(mat)``); until then ``doit`` keeps the node around the
    evaluated argument."""

    def __new__(cls, mat, *counts):
        return sp.Basic.__new__(cls, mat, *(sp.sympify(n) for n in counts))

    @property
    def mat(self):
        return self.args[0]

    def doit(self, **hints):
        mat = self.mat.doit(**hints)
        return self.entries(mat) if isinstance(mat, sp.MatrixBase) else type(self)(mat, *self.args[1:])


class ColumnNormalize(OfOneMatrix):
    """Each column divided by its sum: softmax(Z) is ColumnNormalize(exp applied element-wise to Z)."""

    @property
    def shape(self):
        return self.mat.shape

    def entries(self, mat):
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


class FeatureMean(OfOneMatrix):
    """The mean of each column of M, a row (1, columns): one mean over the features per sample."""

    @property
    def shape(self):
        return sp.Integer(1), self.mat.shape[1]

    def entries(self, mat):
        return sp.ImmutableMatrix(1, mat.cols, lambda _, j: sum(mat[:, j]) / mat.rows)

    def numeric(self, value):
        return value(self.mat).mean(axis=0, keepdims=True)


class BatchMean(MatMul):
    """``(1/N) M 1_N``: the mean of each row of M over the batch, a column (batch norm's statistics).

    Like :class:`ColumnSums` it is the product it names (1/N, M and the column of ones), so whatever
    evaluates or prints a MatMul handles it; the code printer takes each row's mean instead.
    ``BatchMean(M)`` builds it; SymPy rebuilds it from all three args.
    """

    def __new__(cls, *args):
        if len(args) == 1:
            cols = args[0].shape[1]
            args = (1 / sp.sympify(cols), args[0], sp.OneMatrix(cols, 1))
        return MatMul.__new__(cls, *args)

    @property
    def mat(self):
        return self.args[1]

    def doit(self, **hints):
        scale, mat, ones = (a.doit(**hints) for a in self.args)
        if isinstance(mat, sp.MatrixBase) and isinstance(ones, sp.MatrixBase):
            return scale * (mat * ones)
        return BatchMean(scale, mat, ones)


class ChannelTotal(OfOneMatrix):
    """The sum of each channel of M over the batch and the image: M is (C·k, n), its rows in blocks of
    ``k`` (a channel's H·W positions, PyTorch's row-major order), and the result a column (C, 1). Batch
    norm after a convolution takes its statistics and its sums this way; with k = 1 it is ``M 1_N``."""

    @property
    def k(self) -> int:
        return int(self.args[1])

    @property
    def shape(self):
        return self.mat.shape[0] / self.args[1], sp.Integer(1)

    def entries(self, mat):
        k = self.k
        return sp.ImmutableMatrix(mat.rows // k, 1, lambda c, _: sum(mat[c * k:(c + 1) * k, :]))


class ChannelMean(ChannelTotal):
    """The mean of each channel of M over the batch and the image: its :class:`ChannelTotal` over the count."""

    def doit(self, **hints):
        total = ChannelTotal(self.mat, self.k).doit(**hints)
        if not isinstance(total, sp.MatrixBase):
            return ChannelMean(total.mat, self.k)
        return total / (self.k * self.mat.shape[1])


class ChannelRepeat(MatrixExpr):
    """A column of one number per channel (C, 1) copied to each of the channel's ``k`` rows and across ``cols``
    columns, (C·k, cols): ``x - μ`` with one mean per channel. It prints as the column it copies, as
    :class:`Broadcast` does."""

    def __new__(cls, mat, k, cols):
        return sp.Basic.__new__(cls, mat, sp.sympify(k), sp.sympify(cols))

    @property
    def mat(self):
        return self.args[0]

    @property
    def k(self) -> int:
        return int(self.args[1])

    @property
    def shape(self):
        return self.mat.shape[0] * self.args[1], self.args[2]

    def doit(self, **hints):
        mat = self.mat.doit(**hints)
        cols = self.args[2]
        if not isinstance(mat, sp.MatrixBase) or not cols.is_Integer:
            return ChannelRepeat(mat, self.k, cols)
        return sp.ImmutableMatrix(mat.rows * self.k, int(cols), lambda i, _: mat[i // self.k, 0])


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


def _bound(fn: sp.Lambda, value):
    """``fn`` with any other symbol in its body (batch norm's N in 1/(N σ)) given its number by ``value``."""
    extra = fn.expr.free_symbols - set(fn.variables)
    return sp.Lambda(fn.variables, fn.expr.xreplace({s: value(s) for s in extra})) if extra else fn


def _numpy_broadcast(values, shape):
    """A formula's values as a float array of ``shape`` (a constant formula gives one number)."""
    import numpy as np
    return np.broadcast_to(np.asarray(values, dtype=float), shape).copy()


def explicit(*mats) -> bool:
    """Whether every matrix is explicit, so a node can unroll on them."""
    return all(isinstance(m, sp.MatrixBase) for m in mats)


def held(printer, m) -> str:
    """``m`` in NumPy as the emitted code holds it: a parameter by its name, a batch value (N, features)."""
    if isinstance(m, sp.MatrixSymbol):
        return printer._name(m.name)
    saved, printer._transposed = printer._transposed, True
    try:
        return printer._print(m)
    finally:
        printer._transposed = saved


def shared_backward(printer, call: str, out, which: int) -> str:
    """Input ``which``'s gradient from ``call``, a backward pass that gives every input's: the call is made once
    per node (named after its output ``out``) and indexed by each Step."""
    if call not in printer.kernels:
        printer.kernels[call] = f"{printer._name(out.name)}_grads"
        printer.preamble.append((printer.kernels[call], call))
    return f"{printer.kernels[call]}[{which}]"


def same(matrix):
    """The ``hold`` of an :class:`OfSpec` node outside the proof: each intermediate matrix as it is."""
    return matrix


class OfSpec(MatrixExpr):
    """A layer's node: ``Spec.basic(spec)`` (its frozen dataclass as the Tuple SymPy rebuilds it from), then its
    matrices; ``doit`` unrolls it by ``unrolled(*mats)`` once they are explicit. ``_label(printer, latex)``
    prints it.

    ``unrolled(*mats, hold=same)`` passes each intermediate matrix it computes (a time step's state, attention's
    scores) through ``hold`` and goes on with what it returns: ``derive.verify`` gives back a matrix of fresh
    symbols defined by it, so the expanded network is a graph of one intermediate's size, not a copy of the whole
    node in every entry. :class:`OfSpecGrad`'s ``gradients`` takes the same ``hold`` and recomputes the forward
    intermediates through it, reading the symbols the forward pass held."""
    Spec: type

    def __new__(cls, spec, *mats):
        return sp.Basic.__new__(cls, cls.Spec.basic(spec), *mats)

    @property
    def spec(self):
        return self.Spec.of(self.args[0])

    @property
    def mats(self) -> tuple:
        return self.args[1:]

    def doit(self, **hints):
        mats = [m.doit(**hints) for m in self.mats]
        if not explicit(*mats):
            return type(self)(self.spec, *mats)
        return self.unrolled(*mats)

    def _latex(self, printer):
        return self._label(printer, True)

    def _sympystr(self, printer):
        return self._label(printer, False)


class OfSpecGrad(OfSpec):
    """dL/d(input ``which``) of an :class:`OfSpec` node, given G = dL/d(its output): ``spec``, ``which``, G, ``out``
    (the node's output: the emitted code reads what its forward pass stored under that name), then the node's
    inputs; ``gradients(G, *inputs, hold=same)`` gives every input's once they are explicit."""

    def __new__(cls, spec, which: int, G, out, *mats):
        return sp.Basic.__new__(cls, cls.Spec.basic(spec), sp.sympify(which), G, out, *mats)

    @property
    def which(self) -> int:
        return int(self.args[1])

    @property
    def mats(self) -> tuple:
        return self.args[2:]

    def doit(self, **hints):
        G, out, *ins = (m.doit(**hints) for m in self.mats)
        if not explicit(G, *ins):
            return type(self)(self.spec, self.which, G, out, *ins)
        return self.gradients(G, *ins)[self.which]
