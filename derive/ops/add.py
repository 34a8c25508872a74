"""The residual add: a layer's output plus its input, so the input's gradient sums both paths."""
import sympy as sp

from ..steps import ref
from .registry import Grad, Op, Out, op


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
