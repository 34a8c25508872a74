"""The dense (affine) op, ``z = W a + b 1ᵀ`` (weights times the input plus the bias in every column),
and the dense layer of the spec, ``{ units = 8, activation = "relu" }``: dense -> activation
(-> dropout) (-> add, when ``residual = true``)."""
from dataclasses import dataclass

import sympy as sp

from ..errors import ChainruleError, shown
from ..fields import described, entry, positive_int
from ..naming import error, indexed, letter, network_output
from ..steps import formula, ref
from .activations import Activation, make_activation
from .registry import Grad, LayerKind, Op, Out, Param, layer, op


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


@layer("dense")
@dataclass(frozen=True)
class DenseLayer(LayerKind):
    """A dense layer ``z = W a + b``, ``a' = f(z)`` (times a dropout mask, plus ``a`` when ``residual``)."""
    units: int
    activation: Activation
    residual: bool = False
    dropout: float = 0.0
    keys = ("units", "activation", "residual", "dropout", "type")

    @property
    def activations(self) -> tuple:
        return (self.activation,)

    @classmethod
    def parse(cls, raw, at):
        where, width = at.where, at.width
        units = positive_int(raw.get("units"), f"{where} units")
        if at.shape[0][0] != "features":
            raise ChainruleError(f"{where} (dense) takes vectors but its input is {described(at.shape)}; "
                                 f"put a flatten layer before it")
        act = make_activation(entry(raw.get("activation"), f"{where}: activation"), where)
        residual = raw.get("residual", False)
        if not isinstance(residual, bool):
            raise ChainruleError(f"{where} residual must be true or false, not {shown(residual)}")
        if residual and units != width:
            raise ChainruleError(f"{where} is residual but maps {width} to {units} units; "
                                 f"a residual layer needs units = {width}")
        dropout = raw.get("dropout", 0.0)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ChainruleError(f"{where} dropout must be a probability in [0, 1), not {shown(dropout)}")
        if dropout and at.last:
            raise ChainruleError(f"{where} is the output layer and cannot have dropout; put it on a hidden layer")
        return cls(units, act, residual, float(dropout))

    def parameters(self, shape) -> int:
        return (shape[-1][1] + 1) * self.units  # W and b; a dense layer acts on the last axis

    def expand(self, g, l, a, last):
        """dense -> activation (-> dropout) (-> add): one Step for z, one for the layer's output."""
        z = g.add("dense", [a], l, units=self.units)
        f = self.activation
        kind = "elementwise" if f.elementwise else "softmax"
        if not last and f.is_identity and not self.dropout and not self.residual:
            # the layer's output is its pre-activation: the identity's node is folded away under z's names
            return g.add(kind, [z], l, out=g.value(z.names, z.axes, "forward", l, named=False), act=f, silent=True)
        names = network_output(g.batched) if last else indexed(letter("a", g.batched), l, f"activation of layer {l}")
        out = g.value(names, z.axes, "forward", l)
        h = g.add(kind, [z], l, out=None if self.dropout or self.residual else out, act=f,
                  output=last and not self.residual)
        if self.dropout:
            h = g.add("dropout", [h], l, out=None if self.residual else out, p=self.dropout)
        if self.residual:
            h = g.add("add", [h, a], l, out=out)
        return h

    def inline(self, dense, user=str) -> str:
        return dense(self)
