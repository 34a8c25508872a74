"""The dropout op: inverted dropout, the input times a mask of 0 (dropped) or 1/(1-p) (kept) per entry."""
import sympy as sp

from ..naming import indexed, letter
from ..steps import ref
from .registry import Grad, Op, Out, hadamard, op

MASK_MEANING = "0 or 1/(1-p) per entry, fixed for the step (all ones in evaluation)"


@op("dropout")
class Dropout(Op):
    """``(n, N) -> (n, N)``; attr ``p``, the probability of dropping a unit. The mask is a constant of the step."""

    def build(self, g, inputs, layer, p):
        (h,) = inputs
        mask = g.value(indexed(letter("m", g.batched), layer, f"dropout mask of layer {layer}: {MASK_MEANING}"),
                       h.axes, "mask", layer)
        return (h, mask), h.axes, None

    def forward(self, node, ins):
        h, m = ins
        return Out(sp.HadamardProduct(h, m),
                   f"times the dropout mask {ref(node.inputs[1])} (inverted dropout, p = {node.attrs['p']:g})")

    def vjp(self, node, g, ins, out):
        return {0: Grad(hadamard(g, ins[1]),
                        f"the dropout mask {ref(node.inputs[1])} passes the gradient only where a unit was kept")}

    def examples(self):
        return [("p = 0.5", lambda g: g.add("dropout", [g.leaf("h", 3)], 1, p=0.5))]
