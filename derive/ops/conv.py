"""Convolution, as ``torch.nn.Conv2d`` and ``torch.nn.Conv1d``: a cross-correlation of the input with
the kernel, with zero padding, stride and dilation.

Values stay (features, batch) matrices: an image's features are its C·H·W entries in PyTorch's
row-major order (c, h, w), a signal's its C·L entries (c, t), so ``X[n, c, h, w]`` names entry
(c, h, w) of sample n (column n). With stride s, padding p and dilation d on each spatial axis::

    Z[n,o,i,j] = b[o] + Σ_{c,u,v} W[o,c,u,v] X[n, c, s·i + d·u - p, s·j + d·v - p]    (X is 0 outside)

and its VJPs, stated once here and proved equal to ``sympy.diff`` of that definition by
``tests/test_ops.py`` on the ``examples``::

    dL/dW[o,c,u,v] = Σ_{n,i,j} Δ[n,o,i,j] X[n, c, s·i + d·u - p, s·j + d·v - p]   the input correlated with Δ
    dL/db[o]       = Σ_{n,i,j} Δ[n,o,i,j]                                          Δ summed over batch and space
    dL/dX[n,c,h,w] = Σ_{o,u,v} Δ↑s[n, o, h + p - d·u, w + p - d·v] W[o,c,u,v]      the full convolution of Δ
                                                                                    with the kernel

where ``Δ↑s`` is Δ dilated by the stride (its entry at (a, b) is Δ[a/s, b/s] when s divides both,
else 0): a correlation with the flipped kernel. The nodes below carry these definitions: each
expands itself (``doit``, on explicit matrices) and prints itself in index form (``_latex``,
``_sympystr``); the NumPy printer prints them as im2col and one GEMM (``codegen.numpy_printer``).
A :class:`Window` (the input's sizes, the kernel, stride, padding and dilation) is shared by the
pooling ops of ``derive.ops.pool``.
"""
import itertools
import math
from dataclasses import dataclass

import sympy as sp
from sympy.matrices.expressions import MatrixExpr

from ..naming import error, indexed, letter
from ..steps import formula, ref
from .registry import Grad, Op, Out, Param, op

#: The index letters of one and two spatial axes: outputs, kernel offsets, input positions.
OUTPUT_INDEX = {1: ("i",), 2: ("i", "j")}
OFFSET_INDEX = {1: ("u",), 2: ("u", "v")}
INPUT_INDEX = {1: ("t",), 2: ("h", "w")}


@dataclass(frozen=True)
class Window:
    """Where a kernel reads its input: the input's sizes ``shape`` (channels, *spatial), and per
    spatial axis the kernel size, stride, zero padding and dilation."""
    shape: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple

    @classmethod
    def of(cls, node_arg) -> "Window":
        return cls(*(tuple(int(n) for n in part) for part in node_arg))

    def arg(self) -> sp.Tuple:
        """The window as a SymPy argument of a node."""
        return sp.Tuple(*(sp.Tuple(*part) for part in (self.shape, self.kernel, self.stride, self.padding,
                                                         self.dilation)))

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def spatial(self) -> tuple:
        return self.shape[1:]

    @property
    def dims(self) -> int:
        return len(self.spatial)

    @property
    def extent(self) -> tuple:
        """The span of the dilated kernel on each axis: d·(k - 1) + 1."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    @property
    def out(self) -> tuple:
        """The output's spatial sizes, floor((size + 2p - extent) / s) + 1 (torch's floor mode)."""
        return tuple((n + 2 * p - e) // s + 1 for n, p, e, s in zip(self.spatial, self.padding, self.extent, self.stride))

    @property
    def positions(self) -> int:
        return math.prod(self.out)

    @property
    def size(self) -> int:
        """The kernel's entries per channel, kH·kW."""
        return math.prod(self.kernel)

    def source(self, i: tuple, u: tuple):
        """The input position output position ``i`` reads at kernel offset ``u``, or None in the padding."""
        pos = tuple(s * a + d * b - p for a, b, s, d, p in zip(i, u, self.stride, self.dilation, self.padding))
        return pos if all(0 <= q < n for q, n in zip(pos, self.spatial)) else None

    def flat(self, c: int, pos: tuple, spatial: tuple = None) -> int:
        """The feature index of (channel c, position pos) in row-major order over (channels, *spatial)."""
        index = c
        for q, n in zip(pos, spatial or self.spatial):
            index = index * n + q
        return index

    def taps(self):
        """Every (output position, kernel offset, input position) of the window that is not padding."""
        for i in itertools.product(*(range(n) for n in self.out)):
            for u in itertools.product(*(range(k) for k in self.kernel)):
                pos = self.source(i, u)
                if pos is not None:
                    yield i, u, pos


# -- printing in index form ------------------------------------------------------------------------

def _affine(coefficient: int, index: str, offset_coefficient: int, offset: str, constant: int) -> str:
    """``2i+u-1``: an index expression, terms with coefficient 0 or index '' left out."""
    terms = []
    for k, name in ((coefficient, index), (offset_coefficient, offset)):
        if k and name:
            terms.append(("" if k == 1 else "-" if k == -1 else str(k)) + name)
    text = "+".join(terms).replace("+-", "-")
    if constant:
        text += f"{constant:+d}" if text else str(constant)
    return text or "0"


def _entry(printer, mat, indices) -> str:
    """``W_{1}[o,c,u,v]``: an entry of a matrix in index form (a compound in parentheses)."""
    paren = getattr(printer, "_paren", printer._print)
    return f"{paren(mat) if not isinstance(mat, sp.MatrixSymbol) else printer._print(mat)}[{','.join(indices)}]"


def _batched(mat) -> bool:
    return mat.shape[1] != 1


def _sample(mat):
    """The batch index, ``n``, in front of a batched value's indices."""
    return ("n",) if _batched(mat) else ()


def _indexed(printer, body: str, indices, latex: bool) -> str:
    """``[body]_{indices}``: the matrix whose entry at ``indices`` is ``body``."""
    if latex:
        return rf"\left[{body}\right]_{{{','.join(indices)}}}"
    return f"[{body}]_{{{','.join(indices)}}}"


def _sum(indices, latex: bool, condition: str = "") -> str:
    """``\\sum_{c,u,v}`` (``Σ_{c,u,v}``), with a condition on the indices after a colon."""
    sub = ",".join(indices) + (f":\\; {condition}" if latex and condition else f": {condition}" if condition else "")
    return rf"\sum_{{{sub}}} " if latex else f"Σ_{{{sub}}} "


def _is_latex(printer) -> bool:
    return printer.printmethod == "_latex"


def _dilated(printer, mat, stride) -> str:
    """Δ dilated by the stride, ``Δ^{↑2}``, or Δ itself at stride 1."""
    name = printer._print(mat)
    if all(s == 1 for s in stride):
        return name
    shown = ",".join(map(str, sorted(set(stride)))) if len(set(stride)) == 1 else ",".join(map(str, stride))
    return rf"{name}^{{\uparrow {shown}}}" if _is_latex(printer) else f"{name}↑{shown}"


def source_indices(window: Window, outputs, offsets) -> tuple:
    """``2i+u-1``, ``j+v``: the input position each output index reads at each kernel offset."""
    return tuple(_affine(s, i, d, u, -p) for i, u, s, d, p in zip(outputs, offsets, window.stride, window.dilation,
                                                                   window.padding))


class WindowNode(MatrixExpr):
    """A node whose first argument is a :class:`Window`; the rest are its matrices."""

    def __new__(cls, window, *mats):
        return sp.Basic.__new__(cls, window.arg() if isinstance(window, Window) else window, *mats)

    @property
    def window(self) -> Window:
        return Window.of(self.args[0])

    @property
    def mats(self) -> tuple:
        return self.args[1:]

    def _explicit(self, hints):
        """The matrices expanded, or None while one of them is still symbolic."""
        mats = [m.doit(**hints) for m in self.mats]
        return mats if all(isinstance(m, sp.MatrixBase) for m in mats) else None

    def doit(self, **hints):
        mats = self._explicit(hints)
        if mats is None:
            return type(self)(self.args[0], *(m.doit(**hints) for m in self.mats))
        return self._expand(*mats)


# -- the nodes ---------------------------------------------------------------------------------------

class Conv(WindowNode):
    """``Conv(window, W, X[, b])``: the convolution's output (O·H'·W', N); W is (O, C·kH·kW), b (O, 1)."""

    @property
    def shape(self):
        W, X = self.mats[:2]
        return sp.Integer(W.shape[0] * self.window.positions), X.shape[1]

    def _expand(self, W, X, b=None):
        w = self.window
        out = sp.zeros(W.rows * w.positions, X.cols)
        for n in range(X.cols):
            for o in range(W.rows):
                for p, (i, u, pos) in _by_position(w):
                    for c in range(w.channels):
                        out[o * w.positions + p, n] += W[o, w.flat(c, u, w.kernel)] * X[w.flat(c, pos), n]
                if b is not None:
                    for p in range(w.positions):
                        out[o * w.positions + p, n] += b[o, 0]
        return sp.ImmutableMatrix(out)

    def _print_index(self, printer, latex):
        W, X = self.mats[:2]
        w = self.window
        i, u = OUTPUT_INDEX[w.dims], OFFSET_INDEX[w.dims]
        body = _sum(("c",) + u, latex) + _entry(printer, W, ("o", "c") + u) + (r"\, " if latex else " ") + \
            _entry(printer, X, _sample(X) + ("c",) + source_indices(w, i, u))
        if len(self.mats) == 3:
            body = _entry(printer, self.mats[2], ("o",)) + " + " + body
        return _indexed(printer, body, _sample(X) + ("o",) + i, latex)

    def _latex(self, printer):
        return self._print_index(printer, True)

    def _sympystr(self, printer):
        return self._print_index(printer, False)


def _by_position(w: Window):
    """(the output position's flat index, (position, offset, input position)) of every tap."""
    for t in w.taps():
        yield w.flat(0, t[0], w.out), t


class ConvWeightGrad(WindowNode):
    """``ConvWeightGrad(window, G, X)``: dL/dW (O, C·kH·kW), the input correlated with the output's adjoint G."""

    @property
    def shape(self):
        G = self.mats[0]
        return sp.Integer(G.shape[0] // self.window.positions), sp.Integer(self.window.channels * self.window.size)

    def _expand(self, G, X):
        w = self.window
        O = G.rows // w.positions
        out = sp.zeros(O, w.channels * w.size)
        for n in range(X.cols):
            for o in range(O):
                for p, (i, u, pos) in _by_position(w):
                    for c in range(w.channels):
                        out[o, w.flat(c, u, w.kernel)] += G[o * w.positions + p, n] * X[w.flat(c, pos), n]
        return sp.ImmutableMatrix(out)

    def _print_index(self, printer, latex):
        G, X = self.mats
        w = self.window
        i, u = OUTPUT_INDEX[w.dims], OFFSET_INDEX[w.dims]
        body = _sum(_sample(X) + i, latex) + _entry(printer, G, _sample(G) + ("o",) + i) + (r"\, " if latex else " ") + \
            _entry(printer, X, _sample(X) + ("c",) + source_indices(w, i, u))
        return _indexed(printer, body, ("o", "c") + u, latex)

    def _latex(self, printer):
        return self._print_index(printer, True)

    def _sympystr(self, printer):
        return self._print_index(printer, False)


class ChannelSum(WindowNode):
    """``ChannelSum(window, G)``: (O, 1), each output channel's adjoint summed over the batch and the positions."""

    @property
    def shape(self):
        return sp.Integer(self.mats[0].shape[0] // self.window.positions), sp.Integer(1)

    def _expand(self, G):
        P = self.window.positions
        return sp.ImmutableMatrix(G.rows // P, 1, lambda o, _: sum(G[o * P + p, n] for p in range(P)
                                                                    for n in range(G.cols)))

    def _print_index(self, printer, latex):
        G = self.mats[0]
        i = OUTPUT_INDEX[self.window.dims]
        return _indexed(printer, _sum(_sample(G) + i, latex) + _entry(printer, G, _sample(G) + ("o",) + i), ("o",), latex)

    def _latex(self, printer):
        return self._print_index(printer, True)

    def _sympystr(self, printer):
        return self._print_index(printer, False)


class ConvInputGrad(WindowNode):
    """``ConvInputGrad(window, G, W)``: dL/dX (C·H·W, N), the full convolution of G (dilated by the
    stride) with the kernel, the padding cropped."""

    @property
    def shape(self):
        return sp.Integer(math.prod(self.window.shape)), self.mats[0].shape[1]

    def _expand(self, G, W):
        w = self.window
        O = G.rows // w.positions
        out = sp.zeros(math.prod(w.shape), G.cols)
        for n in range(G.cols):
            for o in range(O):
                for p, (i, u, pos) in _by_position(w):
                    for c in range(w.channels):
                        out[w.flat(c, pos), n] += G[o * w.positions + p, n] * W[o, w.flat(c, u, w.kernel)]
        return sp.ImmutableMatrix(out)

    def _print_index(self, printer, latex):
        G, W = self.mats
        w = self.window
        h, u = INPUT_INDEX[w.dims], OFFSET_INDEX[w.dims]
        reads = tuple(_affine(1, a, -d, b, p) for a, b, d, p in zip(h, u, w.dilation, w.padding))
        name = _dilated(printer, G, w.stride)
        entry = f"{name}[{','.join(_sample(G) + ('o',) + reads)}]"
        body = _sum(("o",) + u, latex) + entry + (r"\, " if latex else " ") + _entry(printer, W, ("o", "c") + u)
        return _indexed(printer, body, _sample(G) + ("c",) + h, latex)

    def _latex(self, printer):
        return self._print_index(printer, True)

    def _sympystr(self, printer):
        return self._print_index(printer, False)


# -- the op ------------------------------------------------------------------------------------------

def spatial_words(w: Window) -> str:
    """``8×8`` or ``16``: the spatial sizes as a reader writes them."""
    return "×".join(map(str, w.spatial))


def _geometry(w: Window) -> str:
    """``stride 2, padding 1, dilation 1`` (one number when the axes agree)."""
    def one(values):
        return str(values[0]) if len(set(values)) == 1 else "×".join(map(str, values))
    return f"stride {one(w.stride)}, padding {one(w.padding)}, dilation {one(w.dilation)}"


@op("conv")
class Convolution(Op):
    """``(C·H·W, N) -> (O·H'·W', N)``; parameters W (O, C·kH·kW) in the math, stored (O, C, kH, kW) as
    torch.nn.Conv2d's weight (``layout``), and b (O, 1), its bias. attrs: ``window`` (a :class:`Window`),
    ``out_channels``, ``bias``."""
    params = (Param("W", "weight", "kernel", penalized=True), Param("b", "bias", "bias"))
    reuses_adjoint = True  # Δ is read by the VJPs of W, b and X

    def build(self, g, inputs, layer, window, out_channels, bias=True):
        (x,) = inputs
        w = window
        kernel_names = ("kernel_length",) if w.dims == 1 else ("kernel_height", "kernel_width")
        W = g.value(indexed("W", layer, f"kernel of layer {layer}"),
                    (("out_channels", out_channels), ("in_features", w.channels * w.size)), "param", layer,
                    param=self.params[0],
                    layout=(("out_channels", out_channels), ("in_channels", w.channels)) + tuple(zip(kernel_names, w.kernel)))
        params = (W,)
        if bias:
            params += (g.value(indexed("b", layer, f"bias of layer {layer}"), (("out_channels", out_channels), ("batch", 1)),
                               "param", layer, param=self.params[1]),)
        names = indexed(letter("z", g.batched), layer, f"pre-activation of layer {layer}")
        spatial_names = ("length",) if w.dims == 1 else ("height", "width")
        layout = (("channels", out_channels),) + tuple(zip(spatial_names, w.out))
        return (x,) + params, g.features(out_channels * w.positions), names, layout

    def forward(self, node, ins):
        w = node.attrs["window"]
        x = node.inputs[0]
        why = (f"layer {node.layer} is a convolution, a cross-correlation as torch.nn.Conv{w.dims}d computes it: "
               f"each output channel sums its kernel times the input's {w.channels}-channel "
               f"{'×'.join(map(str, w.kernel))} window at each position ({_geometry(w)}; "
               f"{ref(x)} is 0 outside its {spatial_words(w)} positions)")
        return Out(Conv(w, *ins[1:2], ins[0], *ins[2:]), why)

    def vjp(self, node, g, ins, out):
        w = node.attrs["window"]
        x, W = node.inputs[:2]
        shares = {
            0: Grad(ConvInputGrad(w, g, ins[1]),
                    f"chain rule back through the convolution: the full convolution of the error with the kernel "
                    f"{ref(W)} (a correlation with the flipped kernel)"
                    + ("" if set(w.stride) == {1} else ", the error dilated by the stride (zeros between its entries)")
                    + ("" if not any(w.padding) else ", the padding cropped")),
            1: Grad(ConvWeightGrad(w, g, ins[0]),
                    f"each kernel entry meets the input at every output position: the input {ref(x)} correlated "
                    f"with the error" + (", summed over the batch" if node.batched else "")),
        }
        if len(node.inputs) == 3:
            shares[2] = Grad(ChannelSum(w, g), "each output channel's bias reaches all its positions: the error "
                                               "summed over the positions" + (" and the batch" if node.batched else ""))
        return shares

    def adjoint_names(self, node):
        return error(node.output.names, node.layer, node.batched)

    def examples(self):
        def build(shape, out_channels, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1), bias=True):
            w = Window(shape, kernel, stride, padding, dilation)
            return lambda g: g.add("conv", [image_leaf(g, shape)], 1, window=w, out_channels=out_channels, bias=bias)
        return [("2x4x4 k3 p1", build((2, 4, 4), 2, (3, 3), padding=(1, 1))),
                ("2x4x4 k2 s2", build((2, 4, 4), 2, (2, 2), stride=(2, 2))),
                ("1x4x4 k2x3 s2x1 p1 d1x2 no bias", build((1, 4, 4), 2, (2, 3), (2, 1), (1, 1), (1, 2), bias=False)),
                ("1d 2x5 k3 s2 p1", build((2, 5), 2, (3,), (2,), (1,), (1,)))]


def image_leaf(g, shape: tuple):
    """An input value for an example: a (C·H·W, batch) matrix laid out as channels × spatial ``shape``."""
    from ..naming import Names
    spatial = ("length",) if len(shape) == 2 else ("height", "width")
    return g.value(Names.plain("x"), g.features(math.prod(shape)), "data",
                   layout=(("channels", shape[0]),) + tuple(zip(spatial, shape[1:])))
