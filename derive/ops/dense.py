"""The dense (affine) op, ``z = W a + b 1ᵀ`` (weights times the input plus the bias in every column),
and the dense layer of the spec, ``{ units = 8, activation = "relu" }``: dense -> activation
(-> dropout) (-> add, when ``residual = true``)."""
from dataclasses import dataclass, replace

import sympy as sp

from ..errors import ChainruleError, shown
from ..fields import described, entry, positive_int, sequence_length
from ..naming import error, indexed, letter, network_output
from ..steps import formula, ref
from ..sequence import StepAffine, StepMatMul, StepOuter, StepTotal
from .activations import Activation, make_activation
from .registry import Grad, LayerKind, Op, Out, Param, layer, op


@op("dense")
class Dense(Op):
    """``(in, N) -> (units, N)``; parameters W (units, in) and b (units, 1), torch.nn.Linear's weight and bias."""
    params = (Param("W", "weight", "weights", penalized=True), Param("b", "bias", "bias"))

    def build(self, g, inputs, layer, units, length=0):
        (a,) = inputs
        width = a.shape[0] // (length or 1)  # on a sequence, W reads one step's features
        # the bias is one column, broadcast over the batch (and the steps)
        axes = ((("out_features", units), ("in_features", width)), (("out_features", units), ("batch", 1)))
        W, b = (g.param(p, layer, p_axes) for p, p_axes in zip(self.params, axes))
        names = indexed(letter("z", g.batched), layer, f"pre-activation of layer {layer}")
        if length:
            return (a, W, b), g.features(units * length), names, (("length", length), ("features", units))
        return (a, W, b), g.features(units), names

    def forward(self, node, ins):
        a, W, b = ins
        length = node.attrs.get("length")
        if length:
            return Out(StepAffine(W, a, b, length),
                       f"layer {node.layer} is affine at every step t of the sequence, with the same weights and bias "
                       f"for all T = {length} steps: {formula('z_t = W a_t + b')}, the weights times the step's "
                       f"features plus the bias" + (", for every sample" if node.batched else ""))
        bias = b * sp.OneMatrix(1, node.batch) if node.batched else b
        why = (f"layer {node.layer} is affine: weights times the layer's input plus the bias"
               + (", added to every column (a row of N ones)" if node.batched else ""))
        return Out(sp.MatAdd(W * a, bias), why)

    def vjp(self, node, g, ins, out):
        a, W, _ = ins
        x, Wv, bv = node.inputs
        z = node.output
        length = node.attrs.get("length")
        if length:
            return self._step_vjp(node, g, a, W, length)
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

    def _step_vjp(self, node, g, a, W, length):
        """The VJPs of z_t = W a_t + b at every step: W and b are shared by the T steps, so theirs sum over t."""
        x, Wv, bv = node.inputs
        batch = " and over the batch" if node.batched else ""
        return {0: Grad(StepMatMul(W.T, g, length),
                        f"chain rule back through {ref(Wv)} at each step: the transposed weights times step t's error "
                        f"of layer {node.layer}, {Wv.shape[1]} by {'N' if node.batched else 1} per step as step t of "
                        f"{ref(x)} is"),
                1: Grad(StepOuter(g, a, length),
                        f"the same weights act at every step, so their gradient is a sum over t of each step's error "
                        f"times its input, transposed{batch} ({Wv.shape[0]} by {Wv.shape[1]}, as {ref(Wv)} is)"),
                2: Grad(StepTotal(g, length),
                        f"the bias is added at every step, so its gradient sums the error over t{batch} "
                        f"({bv.shape[0]} by 1, as {ref(bv)} is)")}

    def adjoint_names(self, node):
        return error(node.output.names, node.layer, node.batched)

    def examples(self):
        return [("3 to 2 units", lambda g: g.add("dense", [g.leaf("x", 3)], 1, units=2)),
                ("a sequence of T = 3 steps, 2 to 2 units", lambda g: g.add("dense", [g.leaf("x", 6)], 1, units=2,
                                                                             length=3))]


@layer("dense")
@dataclass(frozen=True)
class DenseLayer(LayerKind):
    """A dense layer ``z = W a + b``, ``a' = f(z)`` (times a dropout mask, plus ``a`` when ``residual``)."""
    units: int
    activation: Activation
    residual: bool = False
    dropout: float = 0.0
    length: int = 0  # on a sequence (length, features): T, the steps it acts at (0 on vectors)
    keys = ("units", "activation", "residual", "dropout", "type")
    takes = ("sequences", "tokens")  # at every step of a sequence; tokens: its parse says to put an embedding first

    @property
    def activations(self) -> tuple:
        return (self.activation,)

    @classmethod
    def parse(cls, raw, at):
        where, width = at.where, at.width
        units = positive_int(raw.get("units"), f"{where} units")
        names = tuple(name for name, _ in at.shape)
        if names == ("length", "vocab"):
            raise ChainruleError(f"{where} (dense) takes features but its input is token ids; put "
                                 f'{{ type = "embedding", embedding_dim = 16 }} before it')
        length = sequence_length(at.shape)
        if length and (raw.get("residual") or raw.get("dropout")):
            raise ChainruleError(f"{where} (dense) acts at every step of a sequence and cannot be residual or have "
                                 f"dropout yet; remove residual and dropout from it")
        if not length and at.shape[0][0] != "features":
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
        return cls(units, act, residual, float(dropout), length)

    @property
    def shape(self) -> tuple:
        if self.length:
            return (("length", self.length), ("features", self.units))
        return (("features", self.units),)

    def parameters(self, shape) -> int:
        return (shape[-1][1] + 1) * self.units  # W and b; a dense layer acts on the last axis

    def capped(self, cap: int):
        return replace(self, units=min(self.units, cap), length=min(self.length, cap))

    def expand(self, g, l, a, last):
        """dense -> activation (-> dropout) (-> add): one Step for z, one for the layer's output."""
        z = g.add("dense", [a], l, units=self.units, **({"length": self.length} if self.length else {}))
        f = self.activation
        kind = "elementwise" if f.elementwise else "softmax"
        if not last and f.is_identity and not self.dropout and not self.residual:
            # the layer's output is its pre-activation: the identity's node is folded away under z's names
            return g.add(kind, [z], l, out=g.value(z.names, z.axes, "forward", l, named=False, layout=z.layout),
                         act=f, silent=True)
        names = network_output(g.batched) if last else indexed(letter("a", g.batched), l, f"activation of layer {l}")
        out = g.value(names, z.axes, "forward", l, layout=z.layout)
        h = g.add(kind, [z], l, out=None if self.dropout or self.residual else out, act=f,
                  output=last and not self.residual)
        if self.dropout:
            h = g.add("dropout", [h], l, out=None if self.residual else out, p=self.dropout)
        if self.residual:
            h = g.add("add", [h, a], l, out=out)
        return h

    def inline(self, dense, user=str) -> str:
        return dense(self)
