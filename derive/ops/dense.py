"""The dense (affine) op: ``z = W a + b 1ᵀ``, weights times the input plus the bias in every column."""
import sympy as sp

from ..naming import error, indexed, letter
from ..steps import formula, ref
from .registry import Grad, Op, Out, Param, op


@op("dense")
class Dense(Op):
    """``(in, N) -> (units, N)``; parameters W (units, in) and b (units, 1), torch.nn.Linear's weight and bias."""
    params = (Param("W", "weight", "weights", penalized=True), Param("b", "bias", "bias"))

    def build(self, g, inputs, layer, units):
        (a,) = inputs
        # the bias is one column, broadcast over the batch
        axes = ((("out_features", units), ("in_features", a.shape[0])), (("out_features", units), ("batch", 1)))
        W, b = (g.param(p, layer, p_axes) for p, p_axes in zip(self.params, axes))
        return (a, W, b), g.features(units), indexed(letter("z", g.batched), layer, f"pre-activation of layer {layer}")

    def forward(self, node, ins):
        a, W, b = ins
        bias = b * sp.OneMatrix(1, node.batch) if node.batched else b
        why = (f"layer {node.layer} is affine: weights times the layer's input plus the bias"
               + (", added to every column (a row of N ones)" if node.batched else ""))
        return Out(sp.MatAdd(W * a, bias), why)

    def vjp(self, node, g, ins, out):
        a, W, _ = ins
        x, Wv, bv = node.inputs
        z = node.output
        ones = " ⟦ones_row⟧" if node.batched else ""
        why = (f"chain rule through {formula(f'{ref(z)} = {ref(Wv)} {ref(x)} + {ref(bv)}{ones}')}: the error times "
               "the input, transposed" + (", which sums the samples' contributions" if node.batched else ""))
        if node.batched:
            bias = Grad(g * sp.OneMatrix(node.batch, 1), "the bias reaches every column, so its gradient sums the "
                                                         "error over the batch (times a column of N ones)")
        else:
            bias = Grad(g, f"{formula(f'⟦partial⟧{ref(z)}/⟦partial⟧{ref(bv)}')} is the identity")
        return {0: Grad(W.T * g, f"chain rule back through {ref(Wv)}: its transpose times the error of layer {node.layer}"),
                1: Grad(g * a.T, why), 2: bias}

    def adjoint_names(self, node):
        return error(node.output.names, node.layer, node.batched)

    def examples(self):
        return [("3 to 2 units", lambda g: g.add("dense", [g.leaf("x", 3)], 1, units=2))]
