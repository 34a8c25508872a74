"""The loss ops: ``loss``, the data term (a catalogue loss summed over elements and divided as it
says), and ``objective``, the data term plus the penalty terms.

A loss fused with the output activation (softmax with cross-entropy, sigmoid with bce) reads z, the
activation's input, as a third input: its VJP is stated with respect to z (the output minus the
target) and passes nothing to ŷ, so the activation's own VJP is never needed.
"""
import sympy as sp

from ..formula import value_at
from ..naming import Names
from ..nodes import ElementSum, Pointwise
from ..steps import formula, ref
from .activations import make_activation
from .losses import CATALOGUE, Y, YHAT, make_loss
from .registry import Grad, Op, Out, op, scaled, times
from .softmax import steps


def scale(loss, yhat, length=0) -> sp.Expr:
    """What the sum of the loss's per-element terms is divided by, inverted (``yhat`` an (m, N) matrix; on
    a sequence of ``length`` T steps a per-sample loss is per step too, divided by N·T, as PyTorch's
    cross-entropy on the (N·T, K) logits)."""
    rows, cols = yhat.shape
    return sp.Integer(1) / ((rows if loss.reduction == "mean" else length or 1) * cols)


def divided_by(loss, yhat, length=0) -> str:
    """What the loss divides its sum by, in words ('' for nothing): ``K = 2 outputs``, ``N``, ``K N``."""
    rows, cols = yhat.shape
    if length and loss.reduction == "mean":
        return f"T K N (every output of every step: T = {length} steps, K = {rows // length} outputs, N samples)" \
            if cols != 1 else f"T K (T = {length} steps, K = {rows // length} outputs)"
    if length:
        return f"N T (N samples, T = {length} steps)" if cols != 1 else f"T = {length} (the number of steps)"
    outputs = loss.reduction == "mean" and rows > 1
    if outputs:
        return f"K N (K = {rows} outputs, N samples)" if cols != 1 else f"K = {rows} (the number of outputs)"
    return "N (the number of samples)" if cols != 1 else ""


def gradient(loss, yhat, y, length=0):
    """dL/dŷ at the matrix level: a scalar times (ŷ - y) where the derivative is that simple."""
    if _constant_ratio(loss.derivative, YHAT - Y):  # before simplify, which can take minutes
        ratio = sp.simplify(sp.factor(loss.derivative) / (YHAT - Y))
        if ratio.free_symbols.isdisjoint({YHAT, Y}) and ratio != 0:
            return scaled(scale(loss, yhat, length) * ratio, sp.MatAdd(yhat, -y, evaluate=False))
    return scale(loss, yhat, length) * Pointwise(sp.Lambda((YHAT, Y), loss.derivative), "", yhat, y)


def _constant_ratio(a, b) -> bool:
    """Whether a / b (in yhat and y) takes one value at three points: a cheap test before simplify."""
    points = [{YHAT: sp.Rational(3, 10), Y: sp.Rational(-7, 10)}, {YHAT: sp.Rational(17, 10), Y: sp.Rational(1, 5)},
              {YHAT: sp.Rational(-1, 4), Y: sp.Rational(9, 8)}]
    values = [value_at(a / b, p) for p in points]
    return None not in values and all(abs(v - values[0]) < 1e-12 for v in values)


@op("loss")
class Loss(Op):
    """``(m, N), (m, N)[, (m, N)] -> scalar``: inputs ŷ, y (and z when fused); attr ``loss``."""
    role = "loss"

    def build(self, g, inputs, layer, loss):
        return inputs, (), None

    def forward(self, node, ins):
        loss, yhat = node.attrs["loss"], node.inputs[0]
        length = steps(yhat)
        term = scale(loss, yhat, length) * ElementSum(sp.Lambda((YHAT, Y), loss.pointwise), *ins[:2])
        divisor = divided_by(loss, yhat, length)
        why = f"{loss.title} of one sample" if not node.batched else f"{loss.title} of the batch"
        return Out(term, why + (f": the sum divided by {divisor}" if divisor else ""))

    def vjp(self, node, g, ins, out):
        loss, (yhat, y) = node.attrs["loss"], ins[:2]
        length = steps(node.inputs[0])
        divisor = divided_by(loss, node.inputs[0], length)
        divided = f", divided by {divisor}, as the loss is" if divisor else ""
        if len(ins) == 3:
            why = (f"{loss.fused_with} and the {loss.title} differentiated together (their fused form, derived under "
                   f"Definitions): "
                   f"{formula(f'⟦partial⟧L/⟦partial⟧{ref(node.inputs[2])}')} is the output minus the target{divided}")
            return {2: Grad(times(g, scaled(scale(loss, yhat, length), sp.MatAdd(yhat, -y, evaluate=False))), why)}
        return {0: Grad(times(g, gradient(loss, yhat, y, length)),
                        f"derivative of the loss with respect to the output: one element's derivative (see the "
                        f"definitions), applied element-wise{divided}")}

    def constraint(self, node, entries):
        """Cross-entropy's fused rule holds where each target column (each step's block of it, on a sequence)
        sums to 1 (a one-hot target)."""
        if len(node.inputs) < 3 or node.attrs["loss"].fused_with != "softmax":
            return {}
        target = entries[node.inputs[1]]
        length = steps(node.inputs[0]) or 1
        K = target.rows // length
        return {target[(t + 1) * K - 1, j]: 1 - sum(target[t * K:(t + 1) * K - 1, j])
                for t in range(length) for j in range(target.cols)}

    def examples(self):
        def plain(loss):
            return lambda g: g.add("loss", [g.leaf("yhat", 2), g.leaf("y", 2)], 1, loss=loss)

        def fused(loss, rows, length=0):
            def build(g):
                layout = (("length", length), ("features", rows // length)) if length else ()
                z = g.value(Names.plain("z"), g.features(rows), "data", layout=layout)
                yhat = g.add("softmax" if loss.fused_with == "softmax" else "elementwise", [z], 1,
                             act=make_activation(loss.fused_with, "example"))
                return g.add("loss", [yhat, g.leaf("y", rows), z], 1, loss=loss)
            return build

        def sequence(loss):  # ŷ of T = 2 steps of 2 outputs
            def build(g):
                yhat = g.value(Names.plain("yhat"), g.features(4), "data", layout=(("length", 2), ("features", 2)))
                return g.add("loss", [yhat, g.leaf("y", 4)], 1, loss=loss)
            return build
        losses = [make_loss(name) for name in CATALOGUE] + [make_loss({"formula": "(yhat - y)**4 / 4"})]
        return [(loss.name, plain(loss)) for loss in losses] + \
            [(f"{loss.fused_with} + {loss.name}", fused(loss, 3)) for loss in losses if loss.fused_with] + \
            [(f"{name} on T = 2 steps", sequence(make_loss(name))) for name in ("mse", "cross_entropy")] + \
            [("softmax + cross_entropy on T = 2 steps of 3", fused(make_loss("cross_entropy"), 6, 2))]


@op("objective")
class Objective(Op):
    """``scalar, ... -> scalar``: the data term plus the penalty terms, printed as one flat sum."""
    role = "loss"

    def build(self, g, inputs, layer):
        return inputs, (), None

    def forward(self, node, ins):
        # one flat sum, so the data term is printed first and the penalties after it
        return Out(sp.Add(*(term for e in ins for term in sp.Add.make_args(e)), evaluate=False), "")

    def vjp(self, node, g, ins, out):
        return {i: Grad(g) for i in range(len(ins))}

    def examples(self):
        return [("two terms", lambda g: g.add("objective", [g.leaf("s"), g.leaf("t")], 1))]
