"""The residual add, a layer's output plus its input, so the input's gradient sums both paths; and the
residual block of the spec, ``{ type = "residual", layers = [...] }``, its layers then the add."""
from dataclasses import dataclass, replace

import sympy as sp

from ..errors import ChainruleError
from ..naming import Path, indexed, letter, network_output
from ..steps import ref
from .registry import Grad, LayerKind, Op, Out, layer, op


@op("add")
class Add(Op):
    """``(n, N), (n, N) -> (n, N)``: inputs (the layer's own output, the layer's input)."""
    reuses_adjoint = True

    def build(self, g, inputs, layer):
        return inputs, inputs[0].axes, None

    def forward(self, node, ins):
        return Out(sp.MatAdd(*ins), "plus the layer's input (residual connection)")

    def vjp(self, node, g, ins, out):
        skip = node.inputs[1]
        return {0: Grad(g), 1: Grad(g, f"plus the gradient that reaches {ref(skip)} through the residual connection "
                                       "(both paths summed)", joint=", ")}

    def examples(self):
        return [("3 units", lambda g: g.add("add", [g.leaf("h", 3), g.leaf("a", 3)], 1))]


@layer("residual")
@dataclass(frozen=True)
class Residual(LayerKind):
    """A residual block: its inner layers applied in order, plus the block's input."""
    layers: tuple
    keys = ("type", "layers")
    takes = ("sequences",)  # as the first layer: its inner layers' parse says what they take

    @property
    def units(self) -> int:
        return self.layers[-1].units

    @property
    def shape(self) -> tuple:
        return self.layers[-1].shape

    @property
    def activations(self) -> tuple:
        return tuple(f for inner in self.layers for f in inner.activations)

    @classmethod
    def parse(cls, raw, at):
        inner = raw.get("layers")
        if not isinstance(inner, list) or not inner:
            raise ChainruleError(f"{at.where} (residual) needs a non-empty list of layers, like "
                                 f"layers = [{{ units = {at.width}, activation = \"relu\" }}]")
        block = cls(at.parse_layers(inner, at.shape, at.path, False))
        if block.shape != at.shape:
            raise ChainruleError(f"{at.where} (residual block) maps {at.width} to {block.units} features; "
                                 f"its last layer must give {at.width}, the block's input width, to add the input")
        return block

    @classmethod
    def inline_table(cls, args, at) -> dict:
        if args is None:
            raise ChainruleError(f"inline {at.where} 'residual' needs its layers, like residual(4 relu -> 4)")
        return {"type": "residual", "layers": at.inline_layers(args, at.path)}

    def parameters(self, shape) -> int:
        count = 0
        for inner in self.layers:
            count += inner.parameters(shape)
            shape = inner.shape
        return count

    def expand(self, g, l, a, last):
        h = a
        for j, inner in enumerate(self.layers, start=1):
            h = inner.expand(g, Path(tuple(l) + (j,) if isinstance(l, tuple) else (l, j)), h, False)
        names = network_output(g.batched) if last else indexed(letter("a", g.batched), l, f"output of layer {l}")
        return g.add("add", [h, a], l, out=g.value(names, a.axes, "forward", l, layout=a.layout))

    def capped(self, cap: int):
        return replace(self, layers=tuple(inner.capped(cap) for inner in self.layers))

    def notes(self, l, latex: bool) -> list:
        """The notes' Definitions of its inner layers (an attention layer's equations), numbered as their Steps."""
        return [block for j, inner in enumerate(self.layers, start=1) if hasattr(inner, "notes")
                for block in inner.notes(Path(tuple(l) + (j,) if isinstance(l, tuple) else (l, j)), latex)]

    def inline(self, dense, user=str) -> str:
        return f"residual({' -> '.join(inner.inline(dense, user) for inner in self.layers)})"
