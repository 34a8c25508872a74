"""The softmax op: each column of z exponentiated and divided by its sum; it couples a column's outputs."""
import sympy as sp

from ..fields import sequence_length
from ..naming import Names
from ..nodes import ColumnNormalize, ColumnSums
from ..sequence import StepNormalize, StepSums
from ..steps import ref
from .activations import make_activation
from .elementwise import apply
from .registry import Grad, Op, Out, op, scaled


@op("softmax")
class Softmax(Op):
    """``(n, N) -> (n, N)``; attr ``act``, the softmax Activation (its definition is exp, normalised here)."""
    reuses_adjoint = True

    def build(self, g, inputs, layer, act, output=False):
        return inputs, inputs[0].axes, None

    def forward(self, node, ins):
        f, length = node.attrs["act"], steps(node.inputs[0])
        if length:
            return Out(StepNormalize(apply(f, ins[0]), length),
                       f"{f.name} at every step: over the features of each step t of each column, not over all T steps")
        return Out(ColumnNormalize(apply(f, ins[0])), f"{f.name} over each column")

    def vjp(self, node, g, ins, out):
        """δ = (diag(ŷ) - ŷ ŷᵀ) g: softmax's Jacobian (symmetric) times g = dL/dŷ.

        Written without the n × n Jacobian: ŷ ⊙ (g - 1 ŷᵀ g) for one sample, and for a batch, where
        each column has its own ŷᵀ g, Ŷ ⊙ (G - 1 1ᵀ (Ŷ ⊙ G)) (``ColumnSums``).
        """
        yhat, z = node.output, node.inputs[0]
        length = steps(z)
        if length:
            weighted = StepSums(sp.HadamardProduct(out, g), length)
            why = (f"each step t of a sample is a softmax of its own: its Jacobian diag(ŷ_t) minus ŷ_t times its "
                   f"transpose, applied to step t's gradient, gives each output's gradient minus the ŷ_t-weighted "
                   f"average of that step's gradients, times the output. The averages are the sums over each "
                   f"step's features of {ref(yhat)} times {ref(g)} element-wise, copied to every feature of the step")
        elif node.batched:
            weighted = ColumnSums(sp.HadamardProduct(out, g))
            why = (f"every output of a sample depends on every entry of that sample's column of {ref(z)}, so each "
                   f"column ŷ of {ref(yhat)} follows the one-sample rule: its Jacobian diag(ŷ) minus ŷ times its "
                   f"transpose, applied to the column's gradient, gives each output's gradient minus the ŷ-weighted "
                   f"average of the column's gradients, times the output. The averages are the column sums of "
                   f"{ref(yhat)} times {ref(g)} element-wise; the matrix of ones (1 times 1 transposed) copies "
                   f"each to every row of its column")
        else:
            weighted = sp.MatMul(sp.OneMatrix(out.shape[0], 1), out.T, g)
            why = (f"every output depends on every entry of {ref(z)}, so the Jacobian is diag({ref(yhat)}) minus "
                   f"{ref(yhat)} times its transpose; applied to {ref(g)} it gives each output's gradient minus "
                   f"the {ref(yhat)}-weighted average of the gradients ({ref(yhat)} transposed times {ref(g)}, "
                   f"copied down a column of ones), times the output")
        rhs = sp.HadamardProduct(out, sp.MatAdd(g, scaled(-1, weighted)))
        return {0: Grad(rhs, "chain rule through softmax, which couples the outputs of a column: " + why)}

    def examples(self):
        act = make_activation("softmax", "example")

        def sequence(g):
            z = g.value(Names.plain("z"), g.features(6), "data", layout=(("length", 3), ("features", 2)))
            return g.add("softmax", [z], 1, act=act)
        return [("3 outputs", lambda g: g.add("softmax", [g.leaf("z", 3)], 1, act=act)),
                ("T = 3 steps of 2 outputs", sequence)]


def steps(value) -> int:
    """T when ``value`` is a sequence (layout (("length", T), ("features", K))), else 0."""
    return sequence_length(value.layout)
