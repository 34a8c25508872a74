"""The weight penalties: ``l1`` adds λ Σ|W|, ``l2`` adds (λ/2) Σ W², over every weight matrix given."""
import sympy as sp

from ..nodes import ElementSum, Pointwise
from .activations import Z
from .registry import Grad, Op, Out, op, times


class Penalty(Op):
    """``W1, W2, ... -> scalar``; attr ``weight``, the λ of the spec's l1 or l2 key."""
    term = coefficient = None  # the per-entry term in z and its factor: λ·coefficient·Σ term(w)
    shown = ""

    def build(self, g, inputs, layer, weight):
        return inputs, (), None

    def lam(self, node):
        return sp.nsimplify(node.attrs["weight"], rational=True)

    def forward(self, node, ins):
        terms = [self.lam(node) * self.coefficient * ElementSum(sp.Lambda(Z, self.term), W) for W in ins]
        return Out(sp.Add(*terms, evaluate=False) if len(terms) > 1 else terms[0],
                   f"plus the {self.shown} penalty on the weights")

    def examples(self):
        def build(g):
            weights = [g.leaf("W1", 2, 3), g.leaf("W2", 3, 2)]
            return g.add(self.name, weights, 1, weight=0.25)
        return [("two weight matrices", build)]


@op("l1")
class L1(Penalty):
    term, coefficient, shown = sp.Abs(Z), 1, "L1"

    def vjp(self, node, g, ins, out):
        return {i: Grad(times(g, self.lam(node) * Pointwise(sp.Lambda(Z, sp.sign(Z)), r"\operatorname{sign}", W)),
                        "the L1 penalty adds l1 times the sign of the weights") for i, W in enumerate(ins)}


@op("l2")
class L2(Penalty):
    term, coefficient, shown = Z ** 2, sp.Rational(1, 2), "L2"

    def vjp(self, node, g, ins, out):
        return {i: Grad(times(g, self.lam(node) * W), "the L2 penalty adds l2 times the weights")
                for i, W in enumerate(ins)}
