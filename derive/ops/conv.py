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
from dataclasses import dataclass, replace

import sympy as sp
from sympy.core.symbol import Str
from sympy.matrices.expressions import MatrixExpr

from ..errors import ChainruleError, shown
from ..fields import boolean, described, entry, positive_int
from ..naming import Names, error, indexed, letter, network_output
from ..steps import ref
from .activations import Activation, make_activation
from .registry import Grad, LayerKind, Op, Out, Param, layer, op

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
            return type(self)(self.args[0], *(m.doit(**hints) for m in self.mats), *self.args[1 + len(self.mats):])
        return self._expand(*mats)


# -- the nodes ---------------------------------------------------------------------------------------

class Conv(WindowNode):
    """``Conv(window, W, X[, b])``: the convolution's output (O·H'·W', N); W is (O, C·kH·kW), b (O, 1)."""
    saves = True  # its code returns (the output, the im2col columns ConvWeightGrad reads), stored as <name>_saved

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
    """``ConvWeightGrad(window, G, X, out)``: dL/dW (O, C·kH·kW), the input correlated with the output's
    adjoint G; ``out`` names the convolution's output (a ``Str``, no matrix: the emitted code reads the
    im2col columns its forward stored under that name, and nothing here depends on it)."""

    def __new__(cls, window, G, X, out):
        return super().__new__(cls, window, G, X, out if isinstance(out, Str) else Str(out))

    @property
    def mats(self) -> tuple:
        return self.args[1:3]

    @property
    def saved(self) -> str:
        return self.args[3].name

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
    """``stride 2, padding 1`` (one number when the axes agree; dilation when it is not 1)."""
    return f"stride {one(w.stride)}, padding {one(w.padding)}" + (
        f", dilation {one(w.dilation)}" if set(w.dilation) != {1} else "")


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
               f"{'×'.join(map(str, w.kernel))} window at each position ({_geometry(w)}"
               + (f"; {ref(x)} is 0 outside its {spatial_words(w)} positions)" if any(w.padding) else ")"))
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
            1: Grad(ConvWeightGrad(w, g, ins[0], out.name),
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
    return g.value(Names.plain("x"), g.features(math.prod(shape)), "data", layout=layout_of(shape))


def layout_of(shape: tuple) -> tuple:
    """(("channels", C), ("height", H), ("width", W)) for (C, H, W); (("channels", C), ("length", L)) for (C, L)."""
    return tuple(zip(LAYOUT_NAMES[len(shape) - 1], shape))


# -- the layer kinds of the spec ---------------------------------------------------------------------

#: The named sizes a layer acting on one or two spatial axes reads: signals (N, C, L), images (N, C, H, W).
LAYOUT_NAMES = {1: ("channels", "length"), 2: ("channels", "height", "width")}
_WHAT = {1: "1-D signals (channels, length)", 2: "images (channels, height, width)"}


def spatial_input(at, kind: str, dims: int) -> tuple:
    """The (channels, *spatial) sizes of the input at ``at``, or the error naming what the layer takes."""
    names = tuple(n for n, _ in at.shape)
    if names == LAYOUT_NAMES[dims]:
        return tuple(n for _, n in at.shape)
    if names == LAYOUT_NAMES[3 - dims]:
        hint = f"use {kind.replace(str(dims), str(3 - dims))}"
    elif at.path == (1,):
        hint = ("give the network such an input, like inputs = { channels = 1, height = 8, width = 8 }" if dims == 2
                else "give the network such an input, like inputs = { channels = 1, length = 16 }")
    else:
        hint = "put it before the flatten"
    raise ChainruleError(f"{at.where} ({kind}) takes {_WHAT[dims]}, but its input is {described(at.shape)}; {hint}")


def sizes(raw: dict, key: str, default, dims: int, where: str, low: int) -> tuple:
    """A size per spatial axis: one whole number for all, or a list of ``dims`` (kernel_size = [3, 2])."""
    value = raw.get(key, default)
    if value is None:
        raise ChainruleError(f"{where} needs {key}, like {key} = 3")
    whole = lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= MAX_SIZE  # noqa: E731
    values = [value] * dims if whole(value) else value if isinstance(value, list) and len(value) == dims else None
    if values is None or not all(whole(v) for v in values):
        pair = f" or a list of {dims} (like {key} = [3, 3])" if dims > 1 else ""
        raise ChainruleError(f"{where} {key} must be a whole number from {low} to {MAX_SIZE}{pair}, not {shown(value)}")
    return tuple(values)


#: The largest kernel size, stride, padding or dilation (a kernel larger than its input is refused anyway).
MAX_SIZE = 4096


def one(values: tuple) -> str:
    """``2`` when every axis agrees, else ``2×1``."""
    return str(values[0]) if len(set(values)) == 1 else "×".join(map(str, values))


def fitted(w: Window, where: str) -> Window:
    """``w``, or the error when its kernel does not fit the padded input."""
    padded = tuple(n + 2 * p for n, p in zip(w.spatial, w.padding))
    if any(e > q for e, q in zip(w.extent, padded)):
        pad = f" ({'×'.join(map(str, padded))} with padding {one(w.padding)})" if any(w.padding) else ""
        span = f" (spanning {'×'.join(map(str, w.extent))} with dilation {one(w.dilation)})" if w.extent != w.kernel else ""
        raise ChainruleError(f"{where}: its input is {'×'.join(map(str, w.shape))}{pad}, smaller than the "
                             f"{'×'.join(map(str, w.kernel))} kernel{span}; use a smaller kernel_size or more padding")
    return w


def _sized(values: tuple) -> str:
    """``3`` when every axis agrees, else ``[3, 2]``, as the spec writes it."""
    return str(values[0]) if len(set(values)) == 1 else f"[{', '.join(map(str, values))}]"


def inline_window(w: Window, defaults: dict) -> list:
    """``kernel_size=3``, ``stride=2``, ...: the window's settings that differ from ``defaults``."""
    return [f"{key}={_sized(getattr(w, attr))}" for key, attr in (("kernel_size", "kernel"), ("stride", "stride"),
                                                                    ("padding", "padding"), ("dilation", "dilation"))
            if key in defaults and getattr(w, attr) != defaults[key]]


class _ConvLayer(LayerKind):
    """``{ type = "conv2d", out_channels = 8, kernel_size = 3, stride = 1, padding = 0, dilation = 1,
    bias = true, activation = "relu" }``, as torch.nn.Conv2d (Conv1d) followed by the activation."""
    dims = 2
    keys = ("type", "out_channels", "kernel_size", "stride", "padding", "dilation", "bias", "activation")

    @property
    def activations(self) -> tuple:
        return (self.activation,)

    @property
    def units(self) -> int:
        return self.out_channels * self.window.positions

    @property
    def shape(self) -> tuple:
        return layout_of((self.out_channels,) + self.window.out)

    @classmethod
    def parse(cls, raw, at):
        where = f"{at.where} ({cls.kind})"
        shape = spatial_input(at, cls.kind, cls.dims)
        out_channels = positive_int(raw.get("out_channels"), f"{where} out_channels")
        kernel = sizes(raw, "kernel_size", None, cls.dims, where, 1)
        w = fitted(Window(shape, kernel, sizes(raw, "stride", 1, cls.dims, where, 1),
                          sizes(raw, "padding", 0, cls.dims, where, 0), sizes(raw, "dilation", 1, cls.dims, where, 1)),
                   where)
        act = make_activation(entry(raw.get("activation"), f"{where}: activation"), where)
        if not act.elementwise:
            raise ChainruleError(f"{where}: {act.name} would act on all {out_channels * w.positions} features of the "
                                 f"convolution's output at once; end with flatten and a dense layer with it instead")
        return cls(w, out_channels, act, boolean(raw, "bias", True, where))

    def parameters(self, shape) -> int:
        return self.out_channels * (self.window.channels * self.window.size + self.bias)

    def expand(self, g, l, a, last):
        """conv -> activation: one Step for z, one for the layer's output (none for the identity inside)."""
        w = replace(self.window, shape=tuple(n for _, n in a.layout))  # the proof narrows the channels
        z = g.add("conv", [a], l, window=w, out_channels=self.out_channels, bias=self.bias)
        f = self.activation
        if not last and f.is_identity:
            return g.add("elementwise", [z], l, out=g.value(z.names, z.axes, "forward", l, named=False, layout=z.layout),
                         act=f, silent=True)
        names = network_output(g.batched) if last else indexed(letter("a", g.batched), l, f"activation of layer {l}")
        return g.add("elementwise", [z], l, out=g.value(names, z.axes, "forward", l, layout=z.layout), act=f, output=last)

    def capped(self, cap: int):
        return replace(self, out_channels=min(self.out_channels, cap))

    def inline(self, dense, user=str) -> str:
        ones, zeros = (1,) * self.dims, (0,) * self.dims
        parts = [f"out_channels={self.out_channels}"] + inline_window(
            self.window, {"kernel_size": None, "stride": ones, "padding": zeros, "dilation": ones})
        if not self.bias:
            parts.append("bias=false")
        f = self.activation
        if not f.is_identity:
            parts.append("activation=" + user(f.name) + (f"({', '.join(f'{k}={v}' for k, v in f.params)})" if f.params else ""))
        return f"{self.kind}({', '.join(parts)})"


@layer("conv2d")
@dataclass(frozen=True)
class Conv2dLayer(_ConvLayer):
    """A 2-D convolution on images (N, C, H, W), as torch.nn.Conv2d, then its activation."""
    window: Window
    out_channels: int
    activation: Activation
    bias: bool = True
    dims = 2


@layer("conv1d")
@dataclass(frozen=True)
class Conv1dLayer(_ConvLayer):
    """``{ type = "conv1d", ... }``: the keys of conv2d on a 1-D signal (N, C, L), as torch.nn.Conv1d."""
    window: Window
    out_channels: int
    activation: Activation
    bias: bool = True
    dims = 1
