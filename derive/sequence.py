"""Expression nodes for an op that acts on the last axis of a sequence at every step.

A sequence is a value of T·F features in (t, f) order, so step t of a column is rows t·F .. (t+1)·F
(``layout`` (("length", T), ("features", F))). A dense layer on it applies the same W and b at every
step, ``z_t = W a_t + b`` (``StepAffine``); its VJPs are ``[Wᵀ δz_t]`` stacked (``StepMatMul``),
``Σ_t δz_t a_tᵀ`` (``StepOuter``) and ``Σ_t δz_t 1_N`` (``StepTotal``). A softmax normalises each step's
block of every column (``StepNormalize``), and its VJP reads each block's column sums (``StepSums``).

Each node unrolls at explicit sizes (``doit``), so ``tests/test_ops.py`` proves the VJPs against
``sympy.diff``; each prints in NumPy as code holds a batch, (N, T·F), viewed as (N·T, F) rows: one GEMM
over every step of every sample, no loop over t.
"""
import re

import sympy as sp
from sympy.matrices.expressions import MatrixExpr

from .nodes import Broadcast, explicit

# a name the printer gives a matrix, with at most one superscript and one subscript: x, \delta, \hat{x}, a_{5},
# \Delta_{4.3}, z^{3} (Nielsen's), dZ^{[3]} (Ng's)
_LATEX_NAME = re.compile(r"(\\?[A-Za-z]+|\\[A-Za-z]+\{\\?[A-Za-z]+\})(\^\{[^{}]*\})?(?:_\{([^{}]*)\})?")
_TEXT_NAME = re.compile(r"[^\s()\[\]/⊙·+-]+")  # x, a5, δ4.3, x̂: no operator a subscript could bind to


def at_step(printer, m, latex: bool, factor: bool = True) -> str:
    """Step t of the sequence ``m``: ``x_t``, ``a_{5,t}`` (a name's subscript gains t), the body f(t) of a
    stacked [f(t)]_{t=1}^T (the node's ``step_form``: (f(t), whether it is a sum or product)), else ``(m)_t``.
    ``factor``: a body that is a sum or product goes in parentheses (it is multiplied or transposed)."""
    if isinstance(m, Broadcast):  # prints as what it copies
        return at_step(printer, m.mat, latex, factor)
    form = _step_form(printer, m, latex)
    if form is None and isinstance(m, sp.MatMul) and len(m.args) == 2 and isinstance(m.args[1], sp.OneMatrix):
        inner = _step_form(printer, m.args[0], latex)  # a stack summed over the batch: f(t) 1_N
        if inner is not None:
            form = f"{inner[0]} {printer._print(m.args[1])}", True
    if form is not None:
        body, compound = form
        if not (factor and compound):
            return body
        return rf"\left({body}\right)" if latex else f"({body})"
    text = printer._print(m)
    if latex:
        name = _LATEX_NAME.fullmatch(text)
        if name is None:
            return rf"\left({text}\right)_{{t}}"
        base, sup, sub = name.groups()
        base += sup or ""
        return f"{base}_{{{sub},t}}" if sub else f"{base}_{{t}}"
    return f"{text}_t" if _TEXT_NAME.fullmatch(text) else f"({text})_t"


def _step_form(printer, m, latex: bool):
    """(f(t), compound) of a node that stacks its steps, else None."""
    return m.step_form(printer, latex) if hasattr(m, "step_form") else None


def stacked(body: str, latex: bool) -> str:
    """The steps f(t) stacked over t = 1..T, from f(t) printed: ``[f(t)]_(t=1..T)`` in text, which stays one
    operand inside a product or a sum (``[W δ_t]_(t=1..T) ⊙ gelu'(z)``)."""
    return rf"\left[{body}\right]_{{t=1}}^{{T}}" if latex else f"[{body}]_(t=1..T)"


def _blocks(M, length):
    """The T row blocks of an explicit M (T·F, n): step t's rows."""
    F = M.rows // length
    return [M[t * F:(t + 1) * F, :] for t in range(length)]


def _held(printer, m) -> str:
    """``m`` printed as the emitted code holds it (a batch value (N, features), a parameter as it is)."""
    saved, printer._transposed = printer._transposed, printer.stored_transposed(m)
    try:
        text = printer._print(m)
    finally:
        printer._transposed = saved
    return text if isinstance(m, sp.MatrixSymbol) else f"({text})"


def _step_rows(printer, m, width) -> str:
    """A batch value as code holds it, (N, T·width), viewed as N·T rows of ``width``."""
    return f"{_held(printer, m)}.reshape(-1, {width})"


class _Steps(MatrixExpr):
    """A node of matrices (each class's docstring says which, in order) and last T, the number of steps; one
    that stacks its steps prints ``[f(t)]_{t=1}^T`` from its ``step_form``, f(t)."""

    def __new__(cls, *args):
        *mats, length = args
        return sp.Basic.__new__(cls, *mats, sp.sympify(length))

    @property
    def length(self) -> int:
        return int(self.args[-1])

    @property
    def mats(self) -> tuple:
        return self.args[:-1]

    def doit(self, **hints):
        mats = [m.doit(**hints) for m in self.mats]
        if not explicit(*mats):
            return type(self)(*mats, self.length)
        return self.unrolled(*mats).as_immutable()

    def _latex(self, printer):
        return stacked(self.step_form(printer, True)[0], True)

    def _sympystr(self, printer):
        return stacked(self.step_form(printer, False)[0], False)


class StepAffine(_Steps):
    """[W a_t + b 1ᵀ] stacked over t = 1..T: (T·K, N) from W (K, F), A (T·F, N), b (K, 1)."""

    @property
    def shape(self):
        return self.args[0].shape[0] * self.length, self.args[1].shape[1]

    def unrolled(self, W, A, b):
        ones = sp.ImmutableMatrix.ones(1, A.cols)
        return sp.ImmutableMatrix.vstack(*(W * a + b * ones for a in _blocks(A, self.length)))

    def step_form(self, printer, latex):
        W, A, b = self.mats
        return f"{printer._print(W)} {at_step(printer, A, latex)} + {printer._print(b)}", True

    def _numpycode(self, printer):
        W, A, b = self.mats
        rows = _step_rows(printer, A, W.shape[1])
        bias = printer._name(b.name) if isinstance(b, sp.MatrixSymbol) else _held(printer, b)
        return f"({rows} @ {printer._name(W.name)}.T + {bias}).reshape({_held(printer, A)}.shape[0], -1)"


class StepMatMul(_Steps):
    """[M g_t] stacked over t = 1..T: (T·F, N) from M (F, K) and G (T·K, N) (a dense layer's δa_t = Wᵀ δz_t)."""

    @property
    def shape(self):
        return self.args[0].shape[0] * self.length, self.args[1].shape[1]

    def unrolled(self, M, G):
        return sp.ImmutableMatrix.vstack(*(M * g for g in _blocks(G, self.length)))

    def step_form(self, printer, latex):
        M, G = self.mats
        return f"{printer._print(M)} {at_step(printer, G, latex)}", True

    def _numpycode(self, printer):
        M, G = self.mats
        saved, printer._transposed = printer._transposed, True  # rows g_tᵀ times Mᵀ
        try:
            right = printer._print(M)
        finally:
            printer._transposed = saved
        return f"({_step_rows(printer, G, M.shape[1])} @ {right}).reshape({_held(printer, G)}.shape[0], -1)"


class StepOuter(_Steps):
    """Σ_t g_t a_tᵀ (K, F) from G (T·K, N) and A (T·F, N): a weight shared by every step sums their shares."""

    @property
    def shape(self):
        return self.args[0].shape[0] // self.length, self.args[1].shape[0] // self.length

    def unrolled(self, G, A):
        total = sp.zeros(*self.shape)
        for g, a in zip(_blocks(G, self.length), _blocks(A, self.length)):
            total += g * a.T
        return total

    def _latex(self, printer):
        G, A = (at_step(printer, m, True) for m in self.mats)
        return rf"\sum_{{t=1}}^{{T}} {G} {A}^{{\top}}"

    def _sympystr(self, printer):
        G, A = (at_step(printer, m, False) for m in self.mats)
        return f"Σ_t {G} {A}ᵀ"

    def _numpycode(self, printer):
        G, A = self.mats
        K, F = self.shape
        return f"{_step_rows(printer, G, K)}.T @ {_step_rows(printer, A, F)}"


class StepTotal(_Steps):
    """Σ_t g_t 1_N (K, 1) from G (T·K, N): a bias added at every step of every sample sums their errors."""

    @property
    def shape(self):
        return self.args[0].shape[0] // self.length, sp.Integer(1)

    def unrolled(self, G):
        total = sp.zeros(G.rows // self.length, 1)
        for g in _blocks(G, self.length):
            total += g * sp.ones(G.cols, 1)
        return total

    def _latex(self, printer):
        batch = r" \mathbf{1}_{N}" if self.mats[0].shape[1] != 1 else ""
        return rf"\sum_{{t=1}}^{{T}} {at_step(printer, self.mats[0], True, factor=bool(batch))}{batch}"

    def _sympystr(self, printer):
        batch = " 1_N" if self.mats[0].shape[1] != 1 else ""
        return f"Σ_t {at_step(printer, self.mats[0], False, factor=bool(batch))}{batch}"

    def _numpycode(self, printer):
        rows = _step_rows(printer, self.mats[0], self.shape[0])   # 1-D, as a bias is held
        if not isinstance(self.mats[0], sp.MatrixSymbol):
            return f"{rows}.sum(axis=0)"
        # one product with ones sums the rows (N·T, or a truncated BPTT chunk's) 3x as fast as .sum(axis=0)
        return f"np.ones({_held(printer, self.mats[0])}.size // {self.shape[0]}, real) @ {rows}"


class StepNormalize(_Steps):
    """Each step's block of each column divided by its sum: softmax at every step is StepNormalize(exp(Z))."""

    @property
    def shape(self):
        return self.args[0].shape

    def unrolled(self, M):
        blocks = []
        for block in _blocks(M, self.length):
            sums = [sum(block[:, j]) for j in range(block.cols)]
            blocks.append(sp.ImmutableMatrix(block.rows, block.cols, lambda i, j: block[i, j] / sums[j]))
        return sp.ImmutableMatrix.vstack(*blocks)

    def step_form(self, printer, latex):
        inner = self.mats[0]
        arg = at_step(printer, inner.mats[0] if hasattr(inner, "mats") else inner, latex, factor=False)
        return (rf"\operatorname{{softmax}}\left({arg}\right)" if latex else f"softmax({arg})"), False

    def _numpycode(self, printer):
        inner = self.mats[0]
        K = inner.shape[0] // self.length
        if hasattr(inner, "fn") and inner.fn.expr == sp.exp(inner.fn.variables[0]) \
                and isinstance(inner.mats[0], sp.MatrixSymbol):
            printer.helpers.add("_step_softmax")
            return f"_step_softmax({_held(printer, inner.mats[0])}, {K})"
        e = _held(printer, inner)
        return f"({e}.reshape(-1, {K}) / {e}.reshape(-1, {K}).sum(axis=1, keepdims=True)).reshape({e}.shape)"


class StepSums(_Steps):
    """Every entry of M replaced by the sum of its step's block of its column (M's shape): ``1 1ᵀ m_t`` per step."""

    @property
    def shape(self):
        return self.args[0].shape

    def unrolled(self, M):
        blocks = _blocks(M, self.length)
        return sp.ImmutableMatrix.vstack(*(sp.ones(b.rows, b.rows) * b for b in blocks))

    def step_form(self, printer, latex):
        ones = r"\mathbf{1} \mathbf{1}^{\top}" if latex else "1 1ᵀ"
        return f"{ones} {at_step(printer, self.mats[0], latex)}", True

    def _numpycode(self, printer):
        M = self.mats[0]
        K = M.shape[0] // self.length
        e = _held(printer, M)
        return f"np.repeat({e}.reshape(-1, {self.length}, {K}).sum(axis=2), {K}, axis=1)"
