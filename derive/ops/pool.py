"""Pooling, as ``torch.nn.MaxPool2d``/``AvgPool2d`` (and their 1-D forms), global average pooling,
and ``flatten``.

With kernel k, stride s (torch's default: k) and padding p on each spatial axis (a :class:`Window`
of ``derive.ops.conv``; dilation 1)::

    max:  Y[n,c,i,j] = max_{u,v} X[n, c, s·i + u - p, s·j + v - p]   (the padding never wins: it is -inf)
    avg:  Y[n,c,i,j] = (1/k²) Σ_{u,v} X[n, c, s·i + u - p, s·j + v - p]   (the padding counts as 0, as torch's
                                                                       count_include_pad)

and their VJPs, stated here and proved equal to ``sympy.diff`` of the definitions by
``tests/test_ops.py``: max pooling routes each output's adjoint to the input that is its window's
first maximum in row-major order (where PyTorch sends it); average pooling spreads it, 1/k² to each
input of the window. Global average pooling is average pooling whose window is the whole image.
``flatten`` is the identity on the values, which are already (features, batch) matrices in
PyTorch's order: it only changes the layout that the next layer reads.
"""
import math
from dataclasses import dataclass, replace

import sympy as sp

from ..errors import ChainruleError
from ..fields import shown_shape, size
from ..naming import gradient, indexed, letter, network_output
from ..steps import ref
from .conv import (INPUT_INDEX, LAYOUT_NAMES, OFFSET_INDEX, OUTPUT_INDEX, Window, WindowNode, _entry, _indexed,
                   _sample, _sum, fitted, image_leaf, inline_window, layout_of, one, sizes, source_indices,
                   spatial_input, spatial_words)
from .registry import Grad, LayerKind, Op, Out, layer, op


def _global(w: Window) -> bool:
    """A window that is the whole input: one output per channel."""
    return w.kernel == w.spatial and not any(w.padding)


def _outputs(w: Window) -> tuple:
    return () if _global(w) else OUTPUT_INDEX[w.dims]


def _reads(w: Window) -> tuple:
    """The input indices a window entry reads: ``2i+u-1`` (``u`` alone for a global window)."""
    return OFFSET_INDEX[w.dims] if _global(w) else source_indices(w, OUTPUT_INDEX[w.dims], OFFSET_INDEX[w.dims])


def _windows(w: Window, X, n: int, c: int):
    """[(output position's flat index, [(input feature index, ...)])] of channel c: the entries of each window."""
    taps = {}
    for i, _, pos in w.taps():
        taps.setdefault(w.flat(0, i, w.out), []).append(w.flat(c, pos))
    return sorted(taps.items())


def _scatter(printer, w: Window, latex: bool) -> str:
    """``\\sum_{i,j,u,v:\\; 2i+u=h, 2j+v=w}``: the windows an input position (h, w) lies in."""
    if _global(w):
        return ""
    h = INPUT_INDEX[w.dims]
    condition = (r",\, " if latex else ", ").join(f"{r}={a}" for r, a in zip(_reads(w), h))
    return _sum(OUTPUT_INDEX[w.dims] + OFFSET_INDEX[w.dims], latex, condition)


def _fraction(k: int, latex: bool) -> str:
    return rf"\frac{{1}}{{{k}}} " if latex else f"(1/{k}) "


class MaxPool(WindowNode):
    """``MaxPool(window, X)``: (C·H'·W', N), the maximum of each window."""

    @property
    def shape(self):
        return sp.Integer(self.window.channels * self.window.positions), self.mats[0].shape[1]

    def _expand(self, X):
        w = self.window
        out = sp.zeros(w.channels * w.positions, X.cols)
        for n in range(X.cols):
            for c in range(w.channels):
                for p, entries in _windows(w, X, n, c):
                    out[c * w.positions + p, n] = sp.Max(*(X[k, n] for k in entries))
        return sp.ImmutableMatrix(out)

    def _print_index(self, printer, latex):
        X = self.mats[0]
        w = self.window
        u = OFFSET_INDEX[w.dims]
        top = rf"\max_{{{','.join(u)}}} " if latex else f"max_{{{','.join(u)}}} "
        return _indexed(printer, top + _entry(printer, X, _sample(X) + ("c",) + _reads(w)),
                        _sample(X) + ("c",) + _outputs(w), latex)

    def _latex(self, printer):
        return self._print_index(printer, True)

    def _sympystr(self, printer):
        return self._print_index(printer, False)


class MaxPoolGrad(WindowNode):
    """``MaxPoolGrad(window, G, X, Y)``: (C·H·W, N), each output's adjoint G routed to the first entry of
    its window (row-major order) that equals the window's maximum, the pooling's output Y (which the
    code has at hand, so it need not take the maximum again)."""

    @property
    def shape(self):
        return sp.Integer(math.prod(self.window.shape)), self.mats[0].shape[1]

    def _expand(self, G, X, Y):
        w = self.window
        out = sp.zeros(math.prod(w.shape), X.cols)
        for n in range(X.cols):
            for c in range(w.channels):
                for p, entries in _windows(w, X, n, c):
                    top = Y[c * w.positions + p, n]
                    for m, k in enumerate(entries):
                        # the first maximum: it reaches the maximum, and no earlier entry does
                        first = sp.And(X[k, n] >= top, *(X[j, n] < top for j in entries[:m]))
                        out[k, n] += G[c * w.positions + p, n] * sp.Piecewise((1, first), (0, True))
        return sp.ImmutableMatrix(out)

    def _print_index(self, printer, latex):
        G, X = self.mats[:2]
        w = self.window
        h = INPUT_INDEX[w.dims]
        where = ",".join(h)
        window = ",".join(_reads(w))
        mask = (rf"\mathbb{{I}}\left[({where}) = \operatorname{{argmax}}_{{({window})}} "
                + _entry(printer, X, _sample(X) + ("c",) + _reads(w)) + r"\right]") if latex else \
            f"1[({where}) = argmax_({window}) " + _entry(printer, X, _sample(X) + ("c",) + _reads(w)) + "]"
        body = _sum(OUTPUT_INDEX[w.dims], latex) + _entry(printer, G, _sample(G) + ("c",) + _outputs(w)) \
            + (r"\, " if latex else " ") + mask
        return _indexed(printer, body, _sample(G) + ("c",) + h, latex)

    def _latex(self, printer):
        return self._print_index(printer, True)

    def _sympystr(self, printer):
        return self._print_index(printer, False)


class AvgPool(WindowNode):
    """``AvgPool(window, X)``: (C·H'·W', N), the mean of each window (padding counted as zeros)."""

    @property
    def shape(self):
        return sp.Integer(self.window.channels * self.window.positions), self.mats[0].shape[1]

    def _expand(self, X):
        w = self.window
        out = sp.zeros(w.channels * w.positions, X.cols)
        for n in range(X.cols):
            for c in range(w.channels):
                for p, entries in _windows(w, X, n, c):
                    out[c * w.positions + p, n] = sp.Add(*(X[k, n] for k in entries)) / w.size
        return sp.ImmutableMatrix(out)

    def _print_index(self, printer, latex):
        X = self.mats[0]
        w = self.window
        body = _fraction(w.size, latex) + _sum(OFFSET_INDEX[w.dims], latex) \
            + _entry(printer, X, _sample(X) + ("c",) + _reads(w))
        return _indexed(printer, body, _sample(X) + ("c",) + _outputs(w), latex)

    def _latex(self, printer):
        return self._print_index(printer, True)

    def _sympystr(self, printer):
        return self._print_index(printer, False)


class AvgPoolGrad(WindowNode):
    """``AvgPoolGrad(window, G)``: (C·H·W, N), each output's adjoint G spread over its window, 1/k² to each entry."""

    @property
    def shape(self):
        return sp.Integer(math.prod(self.window.shape)), self.mats[0].shape[1]

    def _expand(self, G):
        w = self.window
        out = sp.zeros(math.prod(w.shape), G.cols)
        for n in range(G.cols):
            for c in range(w.channels):
                for p, entries in _windows(w, None, n, c):
                    for k in entries:
                        out[k, n] += G[c * w.positions + p, n] / w.size
        return sp.ImmutableMatrix(out)

    def _print_index(self, printer, latex):
        G = self.mats[0]
        w = self.window
        body = _fraction(w.size, latex) + _scatter(printer, w, latex) + _entry(printer, G, _sample(G) + ("c",) + _outputs(w))
        return _indexed(printer, body, _sample(G) + ("c",) + INPUT_INDEX[w.dims], latex)

    def _latex(self, printer):
        return self._print_index(printer, True)

    def _sympystr(self, printer):
        return self._print_index(printer, False)


# -- the ops -----------------------------------------------------------------------------------------

def _pooled_layout(w: Window) -> tuple:
    return layout_of((w.channels,) + w.out)


class _Pool(Op):
    """``(C·H·W, N) -> (C·H'·W', N)``: attrs ``window`` and ``flat`` (the output is plain features, as
    global average pooling's). The output's adjoint gets a symbol of its own, so the index form of the
    VJP reads a name, not an expression."""

    def build(self, g, inputs, layer, window, flat=False):
        names = indexed(letter("a", g.batched), layer, f"output of layer {layer}")
        return inputs, g.features(window.channels * window.positions), names, () if flat else _pooled_layout(window)

    def adjoint_names(self, node):
        return gradient(node.output.names)


def _pool_words(w: Window) -> str:
    if _global(w):
        return f"each channel's {spatial_words(w)} positions"
    one = lambda values: str(values[0]) if len(set(values)) == 1 else "×".join(map(str, values))  # noqa: E731
    return (f"each {'×'.join(map(str, w.kernel))} window (stride {one(w.stride)}, padding {one(w.padding)}) "
            f"of each channel")


@op("maxpool")
class MaxPooling(_Pool):
    def forward(self, node, ins):
        w = node.attrs["window"]
        return Out(MaxPool(w, ins[0]), f"layer {node.layer} is a max pooling: the largest entry of {_pool_words(w)}"
                                       + (" (the padding never wins)" if any(w.padding) else ""))

    def vjp(self, node, g, ins, out):
        w = node.attrs["window"]
        return {0: Grad(MaxPoolGrad(w, g, ins[0], out),
                        f"chain rule back through the max: each output's gradient goes to the entry of "
                        f"{ref(node.inputs[0])} that is its window's maximum (the first in row-major order at a tie, "
                        f"as PyTorch), nothing to the others")}

    def examples(self):
        return _pool_examples("maxpool")


@op("avgpool")
class AvgPooling(_Pool):
    def forward(self, node, ins):
        w = node.attrs["window"]
        kind = "a global average pooling" if _global(w) else "an average pooling"
        return Out(AvgPool(w, ins[0]), f"layer {node.layer} is {kind}: the mean of {_pool_words(w)}"
                                       + (" (the padding counts as zeros)" if any(w.padding) else ""))

    def vjp(self, node, g, ins, out):
        w = node.attrs["window"]
        return {0: Grad(AvgPoolGrad(w, g),
                        f"chain rule back through the mean: each output's gradient is spread evenly over its "
                        f"window, 1/{w.size} to each entry of {ref(node.inputs[0])} in it")}

    def examples(self):
        return _pool_examples("avgpool") + [
            ("global 2x3x3", lambda g: g.add("avgpool", [image_leaf(g, (2, 3, 3))], 1, window=global_window((2, 3, 3)),
                                             flat=True))]


def global_window(shape: tuple) -> Window:
    """The window of global average pooling: the whole of each channel."""
    spatial = shape[1:]
    return Window(shape, spatial, spatial, (0,) * len(spatial), (1,) * len(spatial))


def _pool_examples(kind: str) -> list:
    def build(shape, kernel, stride, padding):
        w = Window(shape, kernel, stride, padding, (1,) * len(kernel))
        return lambda g: g.add(kind, [image_leaf(g, shape)], 1, window=w)
    return [("2x4x4 k2", build((2, 4, 4), (2, 2), (2, 2), (0, 0))),
            ("1x4x4 k3 s1 p1", build((1, 4, 4), (3, 3), (1, 1), (1, 1))),
            ("1d 2x5 k3 s2 p1", build((2, 5), (3,), (2,), (1,)))]


@op("flatten")
class Flatten(Op):
    """``(C·H·W, N) -> (C·H·W, N)``, the identity: the values are already flat, in PyTorch's order;
    the output's layout is (("features", C·H·W),), so a dense layer may read it."""

    def build(self, g, inputs, layer):
        (x,) = inputs
        return inputs, x.axes, None, ()

    def forward(self, node, ins):
        layout = shown_shape(node.inputs[0].layout)
        return Out(ins[0], f"{ref(node.inputs[0])} flattened from {layout} to {node.inputs[0].shape[0]} features "
                           f"(a reshape: the values are held in PyTorch's order already)")

    def vjp(self, node, g, ins, out):
        return {0: Grad(g, "flatten is a reshape: the gradient passes back unchanged")}

    def examples(self):
        return [("2x2x2", lambda g: g.add("flatten", [image_leaf(g, (2, 2, 2))], 1))]


# -- the layer kinds of the spec ---------------------------------------------------------------------

class _PoolLayer(LayerKind):
    """``{ type = "maxpool2d", kernel_size = 2, stride = 2, padding = 0 }`` (stride defaults to kernel_size),
    as torch.nn.MaxPool2d; avgpool2d as torch.nn.AvgPool2d, and their 1-D forms on signals."""
    keys = ("type", "kernel_size", "stride", "padding")
    dims = 2
    op = "maxpool"

    @property
    def units(self) -> int:
        return self.window.channels * self.window.positions

    @property
    def shape(self) -> tuple:
        return _pooled_layout(self.window)

    @classmethod
    def parse(cls, raw, at):
        where = f"{at.where} ({cls.kind})"
        shape = spatial_input(at, cls.kind, cls.dims)
        kernel = sizes(raw, "kernel_size", None, cls.dims, where, 1)
        padding = sizes(raw, "padding", 0, cls.dims, where, 0)
        if any(2 * p > k for p, k in zip(padding, kernel)):
            raise ChainruleError(f"{where} padding {one(padding)} is more than half the {'×'.join(map(str, kernel))} "
                                 f"kernel; PyTorch refuses it (a window could hold only padding): use padding at most "
                                 f"{one(tuple(k // 2 for k in kernel))}")
        stride = sizes(raw, "stride", list(kernel), cls.dims, where, 1)  # torch's default: the kernel size
        return cls(fitted(Window(shape, kernel, stride, padding, (1,) * cls.dims), where))

    def expand(self, g, l, a, last):
        w = replace(self.window, shape=tuple(n for _, n in a.layout))
        out = g.value(network_output(g.batched), g.features(w.channels * w.positions), "forward", l,
                      layout=_pooled_layout(w)) if last else None
        return g.add(self.op, [a], l, out=out, window=w)

    def capped(self, cap: int):
        return self

    def inline(self, dense, user=str) -> str:
        w = self.window
        settings = inline_window(w, {"kernel_size": None, "stride": w.kernel, "padding": (0,) * self.dims})
        return f"{self.kind}({', '.join(settings)})"


@layer("maxpool2d")
@dataclass(frozen=True)
class MaxPool2dLayer(_PoolLayer):
    """Max pooling on images, as torch.nn.MaxPool2d (dilation 1, floor mode)."""
    window: Window


@layer("avgpool2d")
@dataclass(frozen=True)
class AvgPool2dLayer(_PoolLayer):
    """Average pooling on images, as torch.nn.AvgPool2d (the padding counted, floor mode)."""
    window: Window
    op = "avgpool"


@layer("maxpool1d")
@dataclass(frozen=True)
class MaxPool1dLayer(_PoolLayer):
    """Max pooling on 1-D signals, as torch.nn.MaxPool1d."""
    window: Window
    dims = 1


@layer("avgpool1d")
@dataclass(frozen=True)
class AvgPool1dLayer(_PoolLayer):
    """Average pooling on 1-D signals, as torch.nn.AvgPool1d."""
    window: Window
    dims = 1
    op = "avgpool"


@layer("global_avgpool")
@dataclass(frozen=True)
class GlobalAvgPoolLayer(LayerKind):
    """``{ type = "global_avgpool" }``: each channel's mean over its positions, (N, C, H, W) -> (N, C)
    (torch's x.mean(dim=(2, 3)); nn.AdaptiveAvgPool2d(1) then nn.Flatten), for all-convolutional nets."""
    window: Window
    keys = ("type",)

    @property
    def units(self) -> int:
        return self.window.channels

    @classmethod
    def parse(cls, raw, at):
        names = tuple(n for n, _ in at.shape)
        if names not in (LAYOUT_NAMES[1], LAYOUT_NAMES[2]):
            spatial_input(at, cls.kind, 2)  # the error: it takes images (or signals)
        return cls(global_window(tuple(n for _, n in at.shape)))

    def expand(self, g, l, a, last):
        w = global_window(tuple(n for _, n in a.layout))
        out = g.value(network_output(g.batched), g.features(w.channels), "forward", l) if last else None
        return g.add("avgpool", [a], l, out=out, window=w, flat=True)

    def capped(self, cap: int):
        return self

    def inline(self, dense, user=str) -> str:
        return self.kind


@layer("flatten")
@dataclass(frozen=True)
class FlattenLayer(LayerKind):
    """``{ type = "flatten" }``: an image (N, C, H, W) or a signal (N, C, L) as (N, C·H·W) features, in
    PyTorch's order, as torch.nn.Flatten; no parameters and no Step (the values are flat already)."""
    units: int
    keys = ("type",)

    @classmethod
    def parse(cls, raw, at):
        return cls(size(at.shape))

    def expand(self, g, l, a, last):
        # folded away under its input's names: the next layer's Step reads A3 as the flat matrix it is
        out = g.value(network_output(g.batched), a.axes, "forward", l) if last else \
            g.value(a.names, a.axes, "forward", l, named=False)
        return g.add("flatten", [a], l, out=out)

    def capped(self, cap: int):
        return self

    def inline(self, dense, user=str) -> str:
        return self.kind
