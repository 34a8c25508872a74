"""Multi-head self-attention, as ``torch.nn.MultiheadAttention(E, heads, batch_first=True)`` called as
``mha(x, x, x, need_weights=False, attn_mask=mask)``; a learned position table; the mean over a sequence.

A sequence is a value of T·E features in (t, e) order (``layout`` (("length", T), ("features", E))).
Within one sample the attention math is written with the positions as rows, as courses and PyTorch
write it (the transpose of the column convention's (E, T) view of a sample): X is (T, E), its row t
the features of position t, and for each head h of d = E/heads features (columns h·d .. (h+1)·d)::

    Q = X W_Qᵀ + 1 b_Qᵀ,  K = X W_Kᵀ + 1 b_Kᵀ,  V = X W_Vᵀ + 1 b_Vᵀ      (T, E); [W_Q; W_K; W_V] is torch's
                                                                      in_proj_weight (3E, E)
    S_h = Q_h K_hᵀ / √d  (+ M)      (T, T): row i holds query i's scores, M_ij = -∞ for j > i when causal
    A_h = softmax of each row of S_h (a masked score gets weight exactly 0)
    O_h = A_h V_h                   (T, d); O = [O_1 ... O_heads] (T, E), the heads side by side
    Y = O W_Oᵀ + 1 b_Oᵀ             (T, E), torch's out_proj

and the backward steps, G = dL/dY (T, E)::

    δO = G W_O,  dL/dW_O = Σ_t g_t o_tᵀ (= Gᵀ O),  dL/db_O = Σ_t g_t
    δV_h = A_hᵀ δO_h,  δA_h = δO_h V_hᵀ
    δS_h = A_h ⊙ (δA_h − rowsum(δA_h ⊙ A_h) 1ᵀ)     the softmax's Jacobian, row by row; 0 where masked
    δQ_h = δS_h K_h / √d,  δK_h = δS_hᵀ Q_h / √d
    dL/dW_Q = δQᵀ X (a sum over positions), dL/db_Q = Σ_t δq_t, likewise K and V
    dL/dX = δQ W_Q + δK W_K + δV W_V

summed over the samples of a batch. The forward node ``Attention`` and the gradient node
``AttentionGrad`` unroll at explicit sizes (``doit``), so ``tests/test_ops.py`` proves the stated
backward against ``sympy.diff`` of the forward definition; the emitted module runs it as batched
matmuls over (N, heads, T, T) (``codegen``'s ``_attention_forward`` and ``_attention_backward``).
"""
import re
from dataclasses import dataclass, replace

import sympy as sp
from mpmath.libmp import prec_to_dps

from ..errors import ChainruleError
from ..fields import boolean, positive_int, sequence_input
from ..naming import Names, indexed, layer_key, letter, network_output
from ..nodes import OfSpec, OfSpecGrad, held, same, shared_backward
from ..sequence import at_step, stacked
from ..steps import ref
from .registry import Grad, LayerKind, Op, Out, Param, layer, op


@dataclass(frozen=True)
class AttentionSpec:
    """What an attention node computes: T, the number of heads, the causal mask, and whether it has biases."""
    length: int
    heads: int
    causal: bool
    bias: bool

    @staticmethod
    def basic(spec) -> sp.Tuple:
        """``spec`` (an AttentionSpec, or the Tuple SymPy rebuilds a node from) as a node's first argument."""
        if isinstance(spec, sp.Tuple):
            return spec
        return sp.Tuple(*(sp.Integer(v) for v in (spec.length, spec.heads, spec.causal, spec.bias)))

    @classmethod
    def of(cls, basic) -> "AttentionSpec":
        length, heads, causal, bias = (int(v) for v in basic.args)
        return cls(length, heads, bool(causal), bool(bias))


#: The inputs of an attention node, in order (the biases only with bias = true).
INPUTS = ("X", "W_in", "b_in", "W_out", "b_out")


def _full(spec: AttentionSpec, mats) -> tuple:
    """(X, W_in, b_in, W_out, b_out) from a node's matrices, zero columns for the biases it has not."""
    if spec.bias:
        return tuple(mats)
    X, W_in, W_out = mats
    return X, W_in, sp.zeros(W_in.rows, 1), W_out, sp.zeros(W_out.rows, 1)


def _row_softmax(S, causal: bool):
    """Each row of S normalized by exp (a masked entry, j > i when causal, is 0 and not in the sum)."""
    T = S.rows
    keep = [[not causal or j <= i for j in range(T)] for i in range(T)]
    E = sp.Matrix(T, T, lambda i, j: sp.exp(S[i, j]) if keep[i][j] else 0)
    return sp.ImmutableMatrix(T, T, lambda i, j: E[i, j] / sum(E[i, :]) if keep[i][j] else 0)


def _sample_forward(spec: AttentionSpec, Xn, W_in, b_in, W_out, b_out, hold=same) -> dict:
    """Every quantity of one sample's forward pass, Xn its (T, E) positions as rows; each head's scores, weights
    and output go through ``hold`` (``OfSpec``'s)."""
    T, E = Xn.shape
    d = E // spec.heads
    ones = sp.ones(T, 1)
    Q, K, V = (Xn * W_in[k * E:(k + 1) * E, :].T + ones * b_in[k * E:(k + 1) * E, :].T for k in range(3))
    scale = _scale(d, Xn, W_in, b_in, W_out, b_out)
    heads = []
    for h in range(spec.heads):
        cols = slice(h * d, (h + 1) * d)
        Qh, Kh, Vh = Q[:, cols], K[:, cols], V[:, cols]
        A = hold(_row_softmax(hold(scale * Qh * Kh.T), spec.causal))
        heads.append((Qh, Kh, Vh, A, hold(A * Vh)))
    O = sp.Matrix.hstack(*(head[4] for head in heads))
    return {"Q": Q, "K": K, "V": V, "heads": heads, "O": O, "Y": O * W_out.T + ones * b_out.T, "scale": scale}


def _scale(d: int, *mats):
    """1/√d, a Float of their precision when every input entry is a Float (a numeric point: SymPy keeps 1/√2
    exact and Float·√2 unevaluated, which makes the arithmetic crawl), else exact."""
    entries = [e for m in mats for e in m]
    if entries and all(isinstance(e, sp.Float) for e in entries):
        return (1 / sp.sqrt(d)).evalf(prec_to_dps(min(e._prec for e in entries)))
    return 1 / sp.sqrt(d)


def _samples(M, T: int) -> list:
    """Each column of M (T·F, N) as the (T, F) matrix of its positions' rows."""
    F = M.rows // T
    return [sp.Matrix(T, F, lambda t, f, n=n: M[t * F + f, n]) for n in range(M.cols)]


def _columns(mats) -> sp.ImmutableMatrix:
    """(T, F) matrices, one per sample, back into one column each (T·F, N), (t, f) order."""
    return sp.ImmutableMatrix.hstack(*(sp.ImmutableMatrix(m.rows * m.cols, 1, list(m)) for m in mats))


def attend(spec: AttentionSpec, X, W_in, b_in, W_out, b_out, hold=same):
    """The layer's output (T·E, N) for explicit matrices: every sample's Y, stacked by position."""
    return _columns([_sample_forward(spec, Xn, W_in, b_in, W_out, b_out, hold)["Y"]
                     for Xn in _samples(X, spec.length)])


def softmax_backward(A, dA):
    """δS from δA through each row's softmax Jacobian diag(a) - a aᵀ: A ⊙ (δA − rowsum(δA ⊙ A) 1ᵀ)."""
    total = sp.Matrix(A.rows, 1, lambda i, _: sum(dA[i, j] * A[i, j] for j in range(A.cols)))
    return sp.Matrix(A.rows, A.cols, lambda i, j: A[i, j] * (dA[i, j] - total[i]))


def head_backward(head, dOh, scale) -> dict:
    """One head's backward steps given its share δO_h of δO: δA_h, δS_h and δQ_h, δK_h, δV_h."""
    Qh, Kh, Vh, A, _ = head
    dA = dOh * Vh.T
    dS = softmax_backward(A, dA)
    return {"dA": dA, "dS": dS, "dQ": scale * dS * Kh, "dK": scale * dS.T * Qh, "dV": A.T * dOh}


def head_columns(h: int, d: int, heads: int) -> list:
    """The columns of Q, K, V (and O) that head h takes: a block of d."""
    return list(range(h * d, (h + 1) * d))


def sample_backward(spec: AttentionSpec, f: dict, Gn, W_out, head=head_backward, columns=head_columns) -> dict:
    """One sample's backward steps given its forward pass ``f`` and G_n = dL/dY (T, E): δO, each head's
    steps (``head``), and δP = [δQ δK δV] (T, 3E), the heads merged back into the columns they were split
    from (``columns``)."""
    E = W_out.rows
    d = E // spec.heads
    dO = Gn * W_out
    heads = [head(f["heads"][h], dO[:, columns(h, d, spec.heads)], f["scale"]) for h in range(spec.heads)]
    merged = {}
    for k in ("dQ", "dK", "dV"):
        m = sp.zeros(dO.rows, E)
        for h, steps in enumerate(heads):
            for c, col in enumerate(columns(h, d, spec.heads)):
                m[:, col] = steps[k][:, c]
        merged[k] = m
    return {"dO": dO, "heads": heads, **merged, "dP": sp.Matrix.hstack(merged["dQ"], merged["dK"], merged["dV"])}


def backprop(spec: AttentionSpec, G, X, W_in, b_in, W_out, b_out, hold=same) -> tuple:
    """(dX, dW_in, db_in, dW_out, db_out) given G = dL/d(output), the backward steps of the module docstring."""
    dW_in, db_in = sp.zeros(*W_in.shape), sp.zeros(*b_in.shape)
    dW_out, db_out = sp.zeros(*W_out.shape), sp.zeros(*b_out.shape)
    dXs = []
    for Xn, Gn in zip(_samples(X, spec.length), _samples(G, spec.length)):
        f = _sample_forward(spec, Xn, W_in, b_in, W_out, b_out, hold)
        dW_out += Gn.T * f["O"]                                 # Σ_t g_t o_tᵀ
        db_out += Gn.T * sp.ones(Gn.rows, 1)
        dP = sample_backward(spec, f, Gn, W_out)["dP"]           # (T, 3E): [δQ δK δV]
        dW_in += dP.T * Xn                                      # a sum over positions
        db_in += dP.T * sp.ones(dP.rows, 1)
        dXs.append(dP * W_in)
    return _columns(dXs), dW_in.as_immutable(), db_in.as_immutable(), dW_out.as_immutable(), db_out.as_immutable()


class Attention(OfSpec):
    """The self-attention layer's output for the sequence X (T·E, N): (T·E, N)."""
    Spec = AttentionSpec

    @property
    def shape(self):
        return self.mats[0].shape

    def unrolled(self, *mats, hold=same):
        return attend(self.spec, *_full(self.spec, mats), hold)

    def _label(self, printer, latex):
        X, *params = (printer._print(m) for m in self.mats)
        name = r"\operatorname{MHA}" if latex else "MHA"
        if self.spec.causal:
            name += r"_{\mathrm{causal}}" if latex else "_causal"
        inner = f"{X}; {', '.join(params)}"
        return rf"{name}\left({inner}\right)" if latex else f"{name}({inner})"

    saves = True  # its code returns (the output, what the backward pass reads), stored as <name>_saved

    def _numpycode(self, printer):
        printer.helpers.add("_attention")
        s = self.spec
        X, W_in, b_in, W_out, b_out = _codes(printer, s, self.mats)
        return f"_attention_forward({X}, {W_in}, {b_in}, {W_out}, {b_out}, {s.length}, {s.heads}, {s.causal})"


class AttentionGrad(OfSpecGrad):
    """dL/d(input ``which``, an index into INPUTS) of an attention node, given G = dL/d(its output)."""
    Spec = AttentionSpec

    @property
    def shape(self):
        G, out, *ins = self.mats
        return dict(zip(_present(self.spec), ins))[self.which].shape

    def gradients(self, G, *ins, hold=same):
        return backprop(self.spec, G, *_full(self.spec, ins), hold)

    def step_form(self, printer, latex):
        """dL/dX at step t, W_inᵀ δp_t, for what reads it step by step; None for a parameter's."""
        if self.which != 0:
            return None
        W_in = printer._print(self.mats[3])
        return (rf"{W_in}^{{\top}} \delta p_{{t}}" if latex else f"{W_in}ᵀ δp_t"), True

    def _label(self, printer, latex):
        """Σ_t δp_t x_tᵀ and its kin: δp_t is position t's [δq_t; δk_t; δv_t], g_t its share of G."""
        if self.which == 0:
            return stacked(self.step_form(printer, latex)[0], latex)
        gt, xt = (at_step(printer, self.mats[k], latex) for k in (0, 2))
        if latex:
            total, dp, o = r"\sum_{t=1}^{T} ", r"\delta p_{t}", r"o_{t}"
            forms = (rf"{total}{dp} {xt}^{{\top}}", total + dp, rf"{total}{gt} {o}^{{\top}}", total + gt)
        else:
            forms = (f"Σ_t δp_t {xt}ᵀ", "Σ_t δp_t", f"Σ_t {gt} o_tᵀ", f"Σ_t {gt}")
        form = forms[self.which - 1]
        if self.which in (2, 4) and self.mats[0].shape[1] != 1:  # a bias: summed over the batch too
            form = rf"{form} \mathbf{{1}}_{{N}}" if latex else f"{form} 1_N"
        return form

    def _numpycode(self, printer):
        """One call of the backward pass gives every input's gradient."""
        G, out, *ins = self.mats
        full = dict(zip(_present(self.spec), ins))
        call = f"_attention_backward({held(printer, G)}, {printer._name(f'{out.name}_saved')}, " \
               f"{held(printer, full[1])}, {held(printer, full[3])}, {self.spec.heads})"
        return shared_backward(printer, call, out, self.which)


def _present(spec: AttentionSpec) -> tuple:
    """The indices into INPUTS of a node's inputs."""
    return (0, 1, 2, 3, 4) if spec.bias else (0, 1, 3)


def _codes(printer, spec, mats) -> tuple:
    """The five arguments of the emitted forward pass, None for an absent bias."""
    full = dict(zip(_present(spec), mats))
    return tuple(held(printer, full[i]) if i in full else "None" for i in range(5))


def _param_names(part: str, letter_: str, layer, meaning: str) -> Names:
    """``W_in1``: printed W_{in,1}, W_in1."""
    return Names(f"{letter_}_{part}{layer_key(layer)}", rf"{letter_}_{{{part},{layer}}}", f"{letter_}_{part}{layer}",
                 f"{meaning} of layer {layer}")


def _output_names(g, layer) -> Names:
    return indexed(letter("a", g.batched), layer, f"self-attention output of layer {layer}")


@op("attention")
class MultiheadAttention(Op):
    """``(T·E, N) -> (T·E, N)``; attrs ``length`` (T), ``heads``, ``causal``, ``bias``. Parameters as torch
    stores them: W_in (3E, E) = [W_Q; W_K; W_V], b_in (3E), W_out (E, E), b_out (E)."""
    reuses_adjoint = True  # G is read by the gradient of every input
    params = (Param("W_in", "in_proj_weight", "query, key and value weights [W_Q; W_K; W_V]", penalized=True),
              Param("b_in", "in_proj_bias", "query, key and value biases", init=0.0),
              Param("W_out", "out_proj.weight", "output projection weights", penalized=True),
              Param("b_out", "out_proj.bias", "output projection bias", init=0.0))

    def build(self, g, inputs, layer, length, heads, causal=False, bias=True):
        (x,) = inputs
        E = x.shape[0] // length
        axes = ((("out_features", 3 * E), ("in_features", E)), (("out_features", 3 * E), ("batch", 1)),
                (("out_features", E), ("in_features", E)), (("out_features", E), ("batch", 1)))
        made = tuple(g.value(_param_names(p.letter[2:], p.letter[0], layer, p.meaning), a, "param", layer, param=p)
                     for i, (p, a) in enumerate(zip(self.params, axes)) if bias or i % 2 == 0)
        return (x,) + made, x.axes, _output_names(g, layer)

    def draws(self, node) -> dict:
        """How the emitted init_params draws the weights, as torch's MultiheadAttention does: in_proj_weight
        Xavier-uniform, U(±sqrt(6 / (E + 3E))); out_proj.weight as nn.Linear's, U(±1/sqrt(E)); biases 0."""
        E = node.output.shape[0] // node.attrs["length"]
        weights = [v for v in node.inputs[1:] if v.param.torch.endswith("weight")]
        return {weights[0]: ("uniform", (6 / (4 * E)) ** 0.5), weights[1]: ("uniform", 1 / E ** 0.5)}

    def _spec(self, node) -> AttentionSpec:
        a = node.attrs
        return AttentionSpec(a["length"], a["heads"], a.get("causal", False), a.get("bias", True))

    def forward(self, node, ins):
        s = self._spec(node)
        E = node.output.shape[0] // s.length
        mask = ("; causal: position i attends to positions 1..i only (the scores above the diagonal are minus "
                "infinity, so their weights are 0)" if s.causal else "")
        return Out(Attention(s, *ins),
                   f"multi-head self-attention over the T = {s.length} positions of {ref(node.inputs[0])}: queries, "
                   f"keys and values projected by the stacked weights, {s.heads} head{'s' * (s.heads > 1)} of "
                   f"d = {E // s.heads} features, each query's scores softmax-normalized over the keys{mask}, the "
                   f"heads' weighted values side by side, then the output projection")

    def vjp(self, node, g, ins, out):
        s = self._spec(node)
        reasons = {0: "back through the value, query and key projections: each position's input gets the stacked "
                      "weights transposed times its query, key and value errors, which come back through the "
                      "weighted sum A V, the softmax's Jacobian row by row and the scores' 1/sqrt(d)",
                   1: "the same projection weights act at every position, so their gradient is a sum over positions "
                      "(and samples) of its query, key and value errors times its input, transposed",
                   2: "the projection biases are added at every position: the query, key and value errors summed over positions"
                      + (" and the batch" if node.batched else ""),
                   3: "the output projection acts at every position: a sum over positions of its error times the "
                      "heads' concatenated output o_t, transposed",
                   4: "the output bias is added at every position: its error summed over positions"
                      + (" and the batch" if node.batched else "")}
        return {k: Grad(AttentionGrad(s, i, g, out, *ins), reasons[i]) for k, i in enumerate(_present(s))}

    def examples(self):
        """Small enough for the generic proof at batch 1 and 2 (sympy.diff of the fully symbolic pairing grows fast:
        T = 2, E = 2 with one head takes half a minute); ``tests/test_attention.py`` proves T = 3, E = 4."""
        def build(length, features, heads, causal=False, bias=True):
            return lambda g: g.add("attention", [g.leaf("x", length * features)], 1, length=length, heads=heads,
                                   causal=causal, bias=bias)
        return [("T=2 E=1 1 head", build(2, 1, 1)), ("T=2 E=2 2 heads causal no bias", build(2, 2, 2, True, False))]


class SequenceOut:
    """``units`` and ``shape`` of a layer kind whose output is a sequence of its fields ``length`` and
    ``features`` (its input's)."""

    @property
    def units(self) -> int:
        return self.length * self.features

    @property
    def shape(self) -> tuple:
        return (("length", self.length), ("features", self.features))


@layer("attention")
@dataclass(frozen=True)
class AttentionLayer(SequenceOut, LayerKind):
    """torch.nn.MultiheadAttention(E, num_heads, bias, batch_first=True) as self-attention on a sequence
    (length, features = E): ``mha(x, x, x, need_weights=False)``, with the upper-triangular -inf mask when causal."""
    num_heads: int
    length: int
    features: int
    causal: bool = False
    bias: bool = True
    keys = ("type", "num_heads", "causal", "bias")
    takes = ("sequences", "tokens")  # tokens: its parse says to put an embedding first

    @classmethod
    def parse(cls, raw, at):
        where = f"{at.where} (attention)"
        T, E = sequence_input(at, where)
        heads = positive_int(raw.get("num_heads"), f"{where} num_heads")
        if E % heads:
            raise ChainruleError(f"{where} num_heads = {heads} does not divide the embedding width {E}; give a "
                                 f"num_heads that divides {E} (each head takes E / num_heads features)")
        return cls(heads, T, E, boolean(raw, "causal", False, where), boolean(raw, "bias", True, where))

    def parameters(self, shape) -> int:
        E = self.features
        return 4 * E * E + (4 * E if self.bias else 0)

    def expand(self, g, l, a, last):
        names = network_output(g.batched) if last else _output_names(g, l)
        out = g.value(names, a.axes, "forward", l, layout=self.shape)
        return g.add("attention", [a], l, out=out, length=self.length, heads=self.num_heads, causal=self.causal,
                     bias=self.bias)

    def capped(self, cap: int):
        """At most ``cap`` positions and features, as the layers around it are capped; the most heads up to
        its own that divide the width it keeps."""
        E = min(self.features, cap)
        heads = max(h for h in range(1, min(self.num_heads, E) + 1) if E % h == 0)
        return replace(self, num_heads=heads, features=E, length=min(self.length, cap))

    def inline(self, dense, user=str) -> str:
        settings = [f"num_heads={self.num_heads}"] + (["causal=true"] if self.causal else []) + \
            (["bias=false"] if not self.bias else [])
        return f"attention({', '.join(settings)})"

    def notes(self, l, latex: bool) -> list:
        """Blocks for the notes' Definitions: the forward equations per head, then the backward steps with
        their shapes and reasons (``derive.documents`` lays them out); math in the prose stands in $...$."""
        E, h, T = self.features, self.num_heads, self.length
        d = E // h
        blocks = [
            ("para", f"Layer {l} is torch.nn.MultiheadAttention({E}, {h}, batch_first=True), self-attention with "
                     f"need_weights=False{', causal' if self.causal else ''}. Within one sample the positions are "
                     f"the rows: $X$ is $T \\times E$ ($T = {T}$, $E = {E}$), row $t$ the features of position $t$, "
                     f"and head $h$ takes columns $(h-1)d+1, \\ldots, hd$ of $Q$, $K$, $V$ ($d = E/H = {d}$, $H = {h}$). "
                     f"$W_{{in}} = [W_Q; W_K; W_V]$ ($3E \\times E$) and $b_{{in}}$ are torch's in_proj_weight and "
                     f"in_proj_bias, $W_O$ and $b_O$ its out_proj:"),
            ("display", _FORWARD + ([_MASK] if self.causal else [])),
            ("para", "Backward, given $G = \\partial L/\\partial Y$ ($T \\times E$), head by head. Each line's "
                     "shape and reason: $\\delta O$ ($T \\times E$) through the output projection; $\\delta V_h$ "
                     "($T \\times d$) and $\\delta A_h$ ($T \\times T$) from $O_h = A_h V_h$; $\\delta S_h$ "
                     "($T \\times T$) through the softmax's Jacobian one row (one query) at a time, "
                     "$\\operatorname{diag}(a) - a a^{\\top}$ applied to the row of $\\delta A_h$, which is the "
                     "row's $a \\odot (\\delta a - (\\delta a \\cdot a))$; $\\delta Q_h$ and $\\delta K_h$ "
                     "($T \\times d$) from $S_h = Q_h K_h^{\\top}/\\sqrt{d}$, with its $1/\\sqrt{d}$:"),
            ("display", _BACKWARD),
            ("para", "The projections act at every position with the same weights, so their gradients are sums over "
                     "the positions $t$ (and the samples of a batch); $\\delta Q$, $\\delta K$, $\\delta V$ are the "
                     "heads' $\\delta Q_h$, $\\delta K_h$, $\\delta V_h$ side by side ($T \\times E$), merged as the "
                     "heads were split:"),
            ("display", _SUMS),
        ]
        if self.causal:
            blocks.append(("para", "The mask carries no gradient: a masked score has $A_{ij} = 0$, so "
                                   "$(\\delta S_h)_{ij} = A_{ij} (\\ldots) = 0$ and nothing flows back to $Q$ or $K$ "
                                   "through it."))
        blocks.append(("para", "The batched form stacks the samples: $Q$, $K$, $V$ are $N \\times H \\times T \\times d$ "
                               "and $S$, $A$ are $N \\times H \\times T \\times T$, the same lines applied to every "
                               "sample and head at once (batched matrix products); the emitted code keeps one "
                               "$T \\times T$ array $A$ per sample and head."))
        if latex:
            return blocks
        return [(kind, [_plain(line) for line in body] if kind == "display" else
                 re.sub(r"\$(.*?)\$", lambda m: _plain(m[1]), body)) for kind, body in blocks]


# -- the notes' equations: LaTeX, printed as text by _plain -----------------------------------------

_FORWARD = [r"Q = X W_Q^{\top} + \mathbf{1} b_Q^{\top}, \quad K = X W_K^{\top} + \mathbf{1} b_K^{\top}, \quad "
            r"V = X W_V^{\top} + \mathbf{1} b_V^{\top}",
            r"S_h = Q_h K_h^{\top} / \sqrt{d} + M, \quad A_h = \operatorname{softmax}(S_h) \text{ row by row}",
            r"O_h = A_h V_h, \quad O = [O_1 \cdots O_H], \quad Y = O W_O^{\top} + \mathbf{1} b_O^{\top}"]
_MASK = r"M_{ij} = -\infty \text{ for } j > i \text{ (causal)}, \quad 0 \text{ otherwise}"
_BACKWARD = [r"\delta O = G W_O",
             r"\delta V_h = A_h^{\top} \delta O_h, \quad \delta A_h = \delta O_h V_h^{\top}",
             r"\delta S_h = A_h \odot (\delta A_h - \operatorname{rowsum}(\delta A_h \odot A_h) \mathbf{1}^{\top})",
             r"\delta Q_h = \delta S_h K_h / \sqrt{d}, \quad \delta K_h = \delta S_h^{\top} Q_h / \sqrt{d}"]
_SUMS = [r"\frac{\partial L}{\partial W_O} = G^{\top} O = \sum_{t=1}^{T} g_t o_t^{\top}, \quad "
         r"\frac{\partial L}{\partial b_O} = \sum_{t=1}^{T} g_t",
         r"\frac{\partial L}{\partial W_Q} = \delta Q^{\top} X = \sum_{t=1}^{T} \delta q_t x_t^{\top}, \quad "
         r"\frac{\partial L}{\partial b_Q} = \sum_{t=1}^{T} \delta q_t \text{ (likewise K, V)}",
         r"\frac{\partial L}{\partial X} = \delta Q W_Q + \delta K W_K + \delta V W_V"]

_PLAIN = [(r"\frac{\partial L}{\partial W_O}", "∂L/∂W_O"), (r"\frac{\partial L}{\partial b_O}", "∂L/∂b_O"),
          (r"\frac{\partial L}{\partial W_Q}", "∂L/∂W_Q"), (r"\frac{\partial L}{\partial b_Q}", "∂L/∂b_Q"),
          (r"\frac{\partial L}{\partial X}", "∂L/∂X"), (r"\partial L/\partial Y", "∂L/∂Y"),
          (r"\sum_{t=1}^{T} ", "Σ_t "), (r"\quad", "  "), (r"\operatorname{softmax}", "softmax"),
          (r"\operatorname{rowsum}", "rowsum"), (r"\operatorname{diag}", "diag"), (r"\mathbf{1}", "1"),
          (r"\text{ ", " "), (r"\text{", ""), ("}", ""), (r"\sqrt{d", "√d"), (r"\odot", "⊙"), (r"\delta ", "δ"),
          (r"\cdots", "..."), (r"\ldots", "..."), (r"\infty", "∞"), (r"\times", "×"), (r"\cdot", "·"),
          ("^{\\top", "ᵀ"), ("{", "")]


def _plain(tex: str) -> str:
    """One of the notes' own LaTeX lines above as terminal text (δS_h = A_h ⊙ ...)."""
    tex = re.sub(r"_\{(\w+)\}", r"_\1", tex)        # W_{in} -> W_in
    for old, new in _PLAIN:
        tex = tex.replace(old, new)
    return tex
