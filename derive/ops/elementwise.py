"""The element-wise activation op: ``a = f(z)`` entry by entry, for every element-wise activation.

The activations themselves (``f`` and ``f'``, one SymPy formula each) are the catalogue in
``activations.py``; this op applies one of them to a matrix. An activation may stand as a layer of
its own, ``{ type = "activation", activation = "relu" }`` (:class:`ActivationLayer`).
"""
from dataclasses import dataclass

import sympy as sp

from ..errors import ChainruleError
from ..fields import entry
from ..naming import gradient, indexed, letter, network_output
from ..nodes import Pointwise
from ..steps import formula, ref
from .activations import CATALOGUE, Activation, Z, make_activation
from .registry import Grad, LayerKind, Op, Out, hadamard, layer, op


def apply(f, z, prime: bool = False):
    """f (or f') applied element-wise to the matrix ``z``, printed by its label (``\\sigma'(z_1)``)."""
    body = f.derivative if prime else f.definition
    return Pointwise(sp.Lambda(Z, body), f.latex + ("'" if prime else ""), z)


@op("elementwise")
class Elementwise(Op):
    """``(n, N) -> (n, N)``; attrs ``act`` (an element-wise Activation), ``output`` (it makes the network's
    output) and ``silent`` (the identity of a hidden layer whose output is its pre-activation: the
    forward has nothing to say, the backward still that the gradient passes unchanged)."""

    def build(self, g, inputs, layer, act, output=False, silent=False):
        return inputs, inputs[0].axes, None

    def forward(self, node, ins):
        f = node.attrs["act"]
        if f.is_identity:
            return Out(ins[0], "" if node.attrs.get("silent") else "the identity activation")
        return Out(apply(f, ins[0]), f"{f.name} applied element-wise")

    def vjp(self, node, g, ins, out):
        f, z = node.attrs["act"], node.inputs[0]
        if not f.is_identity:
            return {0: Grad(hadamard(g, apply(f, ins[0], prime=True)),
                            f"chain rule through {f.name}: element-wise product with its derivative at {ref(z)}")}
        if node.attrs.get("output"):
            return {0: Grad(g, f"the output activation is the identity, so this is also {formula(f'⟦partial⟧L/⟦partial⟧{ref(z)}')}")}
        return {0: Grad(g, "the identity activation passes the gradient unchanged")}

    def adjoint_names(self, node):
        """dL/dŷ, the first backward equation of the textbook, unless the identity makes it δ_L itself."""
        if node.attrs.get("output") and not node.attrs["act"].is_identity:
            return gradient(node.output.names)
        return None

    def examples(self):
        def example(name):
            return lambda g: g.add("elementwise", [g.leaf("z", 3)], 1, act=make_activation(name, "example"))
        return [(name, example(name)) for name, kind in CATALOGUE.items() if kind.elementwise]


@layer("activation")
@dataclass(frozen=True)
class ActivationLayer(LayerKind):
    """An activation standing as a layer of its own, ``a' = f(a)``: no parameters."""
    units: int
    activation: Activation
    keys = ("type", "activation")

    @property
    def activations(self) -> tuple:
        return (self.activation,)

    @classmethod
    def parse(cls, raw, at):
        if "activation" not in raw:
            raise ChainruleError(f"{at.where} is an activation layer without an activation; "
                                 f"write {{ type = \"activation\", activation = \"relu\" }}")
        return cls(at.width, make_activation(entry(raw["activation"], f"{at.where}: activation"), at.where))

    def expand(self, g, l, a, last):
        f = self.activation
        names = network_output(g.batched) if last else indexed(letter("a", g.batched), l, f"activation of layer {l}")
        return g.add("elementwise" if f.elementwise else "softmax", [a], l,
                     out=g.value(names, a.axes, "forward", l, layout=a.layout),
                     act=f, output=last)

    def inline(self, dense, user=str) -> str:
        f = self.activation
        return user(f.name) + (f"({', '.join(f'{k}={v}' for k, v in f.params)})" if f.params else "")
