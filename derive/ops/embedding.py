"""The embedding op, as ``torch.nn.Embedding(vocab, embedding_dim)``: each token id's row of the table W.

In the math a token is a one-hot column x_t of V entries, so a sequence is T·V features in (t, v) order
and its embedding e_t = Wᵀ x_t (W is (V, D), torch's weight), stacked into T·D features. The emitted
code holds the ids themselves, (N, T) integers, and gathers rows (``W[X]``). The gradient of W is
Σ_t x_t g_tᵀ: each id's row gathers the gradients of every position it occurs at, a scatter-add
(``np.add.at``), and the ids get none (they are data, not differentiable).
"""
from dataclasses import dataclass, replace

import sympy as sp
from sympy.matrices.expressions import MatrixExpr

from ..errors import ChainruleError
from ..fields import positive_int, shown_shape
from ..naming import Names, layer_key
from ..sequence import at_step, stacked
from ..steps import ref
from .registry import Grad, LayerKind, Op, Out, Param, layer, op


def _steps(X, W, length):
    """The one-hot columns x_t of each step (rows t·V .. (t+1)·V of X)."""
    V = W.shape[0]
    return [X[t * V:(t + 1) * V, :] for t in range(length)]


class Embed(MatrixExpr):
    """[Wᵀ x_t] stacked over t = 1..T: (T·D, N) from the one-hot sequence X (T·V, N)."""

    def __new__(cls, X, W, length):
        return sp.Basic.__new__(cls, X, W, sp.sympify(length))

    @property
    def length(self) -> int:
        return int(self.args[2])

    @property
    def shape(self):
        return self.args[1].shape[1] * self.length, self.args[0].shape[1]

    def doit(self, **hints):
        X, W = (m.doit(**hints) for m in self.args[:2])
        if not (isinstance(X, sp.MatrixBase) and isinstance(W, sp.MatrixBase)):
            return Embed(X, W, self.length)
        return sp.ImmutableMatrix.vstack(*(W.T * x for x in _steps(X, W, self.length)))

    def step_form(self, printer, latex):
        X, W = self.args[:2]
        transposed = printer._print(W) + (r"^{\top}" if latex else "ᵀ")
        return f"{transposed} {at_step(printer, X, latex)}", True

    def _latex(self, printer):
        return stacked(self.step_form(printer, True)[0], True)

    def _sympystr(self, printer):
        return stacked(self.step_form(printer, False)[0], False)

    def _numpycode(self, printer):
        X, W = (printer._name(m.name) for m in self.args[:2])  # the ids (N, T) and the table, as code holds them
        return f"{W}[{X}].reshape({X}.shape[0], -1)"  # the ids' rows, (N, T, D) read as (N, T·D)


class EmbedGrad(MatrixExpr):
    """dL/dW = Σ_t x_t g_tᵀ (V, D), G = dL/dE: a scatter-add of each step's gradient into its id's row."""

    def __new__(cls, G, X, W, length):
        return sp.Basic.__new__(cls, G, X, W, sp.sympify(length))

    @property
    def length(self) -> int:
        return int(self.args[3])

    @property
    def shape(self):
        return self.args[2].shape

    def doit(self, **hints):
        G, X, W = (m.doit(**hints) for m in self.args[:3])
        if not all(isinstance(m, sp.MatrixBase) for m in (G, X, W)):
            return EmbedGrad(G, X, W, self.length)
        D = W.shape[1]
        total = sp.zeros(*W.shape)
        for t, x in enumerate(_steps(X, W, self.length)):
            total += x * G[t * D:(t + 1) * D, :].T
        return total.as_immutable()

    def _latex(self, printer):
        G, X = (at_step(printer, m, True) for m in self.args[:2])
        return rf"\sum_{{t=1}}^{{T}} {X} {G}^{{\top}}"

    def _sympystr(self, printer):
        G, X = (at_step(printer, m, False) for m in self.args[:2])
        return f"Σ_t {X} {G}ᵀ"

    def _numpycode(self, printer):
        printer.helpers.add("_embedding_grad")
        saved, printer._transposed = printer._transposed, True  # G as code holds it, (N, T·D)
        try:
            G = printer._print(self.args[0])
        finally:
            printer._transposed = saved
        X = printer._name(self.args[1].name)
        return f"_embedding_grad({X}, {G}, {self.args[2].shape[0]})"


def _embedded_names(g, layer) -> Names:
    e = "E" if g.batched else "e"
    return Names(f"{e}{layer_key(layer)}", f"{e}_{{{layer}}}", f"{e}{layer}", f"embedded tokens of layer {layer}")


@op("embedding")
class Embedding(Op):
    """``(T·V, N) -> (T·D, N)``; attrs ``dim`` (D) and ``length`` (T). Parameter W (V, D), torch's weight."""
    params = (Param("W", "weight", "embedding table", penalized=True),)

    def build(self, g, inputs, layer, dim, length):
        (x,) = inputs
        vocab = x.shape[0] // length
        W = g.value(Names(f"W{layer_key(layer)}", f"W_{{{layer}}}", f"W{layer}", f"embedding table of layer {layer} "
                          f"(a row of {dim} numbers per token id)"),
                    (("num_embeddings", vocab), ("embedding_dim", dim)), "param", layer, param=self.params[0])
        return (x, W), g.features(dim * length), _embedded_names(g, layer)

    def draws(self, node) -> dict:
        """How the emitted init_params draws W, as torch.nn.Embedding does: N(0, 1)."""
        return {node.inputs[1]: ("normal", 1.0)}

    def forward(self, node, ins):
        return Out(Embed(*ins, node.attrs["length"]),
                   f"each token, a one-hot column of {ref(node.inputs[0])}, picks its row of {ref(node.inputs[1])}: "
                   f"the table transposed times the one-hot column, at every step")

    def vjp(self, node, g, ins, out):
        return {1: Grad(EmbedGrad(g, *ins, node.attrs["length"]),
                        "each token id's row gathers the gradient of every step (and sample) where the id occurs: "
                        "the one-hot column times the step's gradient, transposed, summed over t (a scatter-add)")}

    def examples(self):
        return [("vocab 3, dim 2, T = 2", lambda g: g.add("embedding", [g.leaf("x", 6)], 1, dim=2, length=2))]


@layer("embedding")
@dataclass(frozen=True)
class EmbeddingLayer(LayerKind):
    """torch.nn.Embedding(vocab, embedding_dim) on token ids (length, vocab): a sequence (length, embedding_dim)."""
    embedding_dim: int
    length: int
    vocab: int
    keys = ("type", "embedding_dim")
    takes = ("tokens", "sequences")  # sequences: its parse says it takes token ids

    @property
    def units(self) -> int:
        return self.embedding_dim * self.length

    @property
    def shape(self) -> tuple:
        return (("length", self.length), ("features", self.embedding_dim))

    @classmethod
    def parse(cls, raw, at):
        where = f"{at.where} (embedding)"
        if tuple(name for name, _ in at.shape) != ("length", "vocab"):
            raise ChainruleError(f"{where} takes token ids, inputs = {{ length = T, vocab = V }}, but its input is "
                                 f"{shown_shape(at.shape)} float {at.shape[-1][0]}; remove the embedding or give "
                                 f"token inputs")
        dim = positive_int(raw.get("embedding_dim"), f"{where} embedding_dim")
        return cls(dim, at.shape[0][1], at.shape[1][1])

    def parameters(self, shape) -> int:
        return self.vocab * self.embedding_dim

    def expand(self, g, l, a, last):
        out = g.value(_embedded_names(g, l), g.features(self.units), "forward", l, layout=self.shape)
        return g.add("embedding", [a], l, out=out, dim=self.embedding_dim, length=self.length)

    def capped(self, cap: int):
        return replace(self, embedding_dim=min(self.embedding_dim, cap), vocab=min(self.vocab, cap))

    def inline(self, dense, user=str) -> str:
        return f"embedding(embedding_dim={self.embedding_dim})"
