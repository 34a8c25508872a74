"""Checking a derivation through a self-attention layer: its names, their values, and its usual mistakes.

A person writes attention one sample at a time with the positions as rows, as courses, papers and
``derive/ops/attention.py`` do: X (T × E) the layer's input, Q = X W_Qᵀ + 1 b_Qᵀ, K, V (T × E), per head
S_h = Q_h K_hᵀ/√d (+ M), A_h (P_h) = softmax of each row, O_h = A_h V_h, O = [O_1 ⋯ O_H], Y = O W_Oᵀ + 1 b_Oᵀ
and G = dL/dY; W_Q, W_K, W_V are the rows of torch's in_proj_weight, W_O its out_proj.weight (the notes'
orientation; the ``vaswani`` convention reads them as the paper's, E × d_k with Q = X W_Q). The checker reads
these names in those two conventions (one sample), for a network with one attention layer (inside a residual
block or not; ``sequence.narrowed`` keeps its T·E within limits.CHECK_ATTENTION): each is a ``Part``, the
quantity the op's own forward and backward steps (``_sample_forward``, ``sample_backward``) compute from the
layer's input, parameters and G at the checking points, so δO, δA_h (δP_h), δS_h, δQ, δK, δV, δW_Q, ... are gradients ``--wrt`` may name. With one head the
head's names have no subscript (S, A, P, dS); with several, S_h, P_h, Q_h, dQ_h for h = 1..H (A_h would be
layer h's activation a_h, but in a rule in h, δV_h = A_h^⊤ δO_h checked at every head, it is head h's weights).

A usual mistake is a ``slip``: the backward steps with that mistake made (the 1/√d_k missing in δQ or δK, or
taken over the model's width; δK without its transpose; softmax's Jacobian read element-wise; the causal
mask left out of the backward pass's softmax; a head's share of δO taken from another head's columns). An
expression equal to a Part computed with a slip has that mistake; one with one head's d columns where the
gradient has all E has the heads not merged.
"""
import re

import numpy as np
import sympy as sp

from ..errors import ChainruleError
from ..ops.attention import (AttentionGrad, AttentionSpec, _row_softmax, _sample_forward, _samples, head_backward,
                             head_columns, sample_backward)
from .bind import Ones
from .compare import is_matrix
from .parse import WIDTH, NotAGradient
from .results import RuleResult, _LayerVerdict
from .sequence import attention_layers


# The slips of one head's backward steps (``head_backward``'s, or its columns of δO), each with one mistake made.
def _unscaled(which):
    def head(h, dOh, scale):
        steps = head_backward(h, dOh, scale)
        return {**steps, **{k: steps[k] / scale for k in which}}
    return head


def _width(E):
    return lambda h, dOh, scale: head_backward(h, dOh, 1 / sp.sqrt(E))


def _transposed_k(h, dOh, scale):
    steps = head_backward(h, dOh, scale)
    return {**steps, "dK": scale * steps["dS"] * h[0]}


def _elementwise(h, dOh, scale):
    steps = head_backward(h, dOh, scale)
    A = h[3]
    dS = sp.Matrix(A.rows, A.cols, lambda i, j: A[i, j] * (1 - A[i, j]) * steps["dA"][i, j])
    return {**steps, "dS": dS, "dQ": scale * dS * h[1], "dK": scale * dS.T * h[0]}


def _unmasked(h, dOh, scale):
    Qh, Kh, Vh, _, Oh = h
    return head_backward((Qh, Kh, Vh, _row_softmax(scale * Qh * Kh.T, False), Oh), dOh, scale)


def _swapped(h, d, heads):
    return head_columns((h + 1) % heads, d, heads)


def _slips(spec: AttentionSpec, E: int) -> dict:
    """{slip: (sample_backward's keyword arguments, message)} for the mistakes this layer can show."""
    d = E // spec.heads
    rule = "S = Q Kᵀ/√d_k, so δQ = δS K/√d_k and δK = δSᵀ Q/√d_k"
    slips = {
        "unscaled_q": ({"head": _unscaled(("dQ",))}, f"the 1/√d_k factor missing in δQ: {rule} (d_k = {d})"),
        "unscaled_k": ({"head": _unscaled(("dK",))}, f"the 1/√d_k factor missing in δK: {rule} (d_k = {d})"),
        "unscaled": ({"head": _unscaled(("dQ", "dK"))}, f"the 1/√d_k factor missing in δQ and δK: {rule} (d_k = {d})"),
        "transposed_k": ({"head": _transposed_k}, "a transpose missing in δK: the keys are the columns of S = Q Kᵀ/√d_k, "
                                                  "so δK = δSᵀ Q/√d_k, not δS Q/√d_k"),
        "elementwise": ({"head": _elementwise}, "softmax treated as element-wise: A ⊙ (1 − A) ⊙ δA is only the diagonal "
                                                "of each row's Jacobian diag(a) − a aᵀ; δS = A ⊙ (δA − rowsum(δA ⊙ A) 1ᵀ)"),
    }
    if spec.heads > 1:
        slips["width"] = ({"head": _width(E)}, f"1/√E where the head's width belongs: d_k = E/H = {d}, not the model's "
                                               f"width E = {E}")
        slips["swapped"] = ({"columns": _swapped}, f"heads not split the same way backwards: head h's share δO_h is "
                                                   f"columns (h−1)d+1..hd of δO (d = {d}), the columns its O_h fills")
    if spec.causal:
        slips["unmasked"] = ({"head": _unmasked}, "the causal mask not applied to the gradient: the softmax of the "
                                                  "backward pass puts weight on the masked positions j > i, where A is "
                                                  "0 and δS must be 0 (S + M, with M = −∞ there)")
    return slips


def sample_parts(spec: AttentionSpec, slip_args: dict, G, X, W_in, b_in, W_out, b_out, f=None) -> dict:
    """Every named quantity of one sample's attention (explicit matrices in, explicit matrices out), the
    backward steps made with ``slip_args`` (``sample_backward``'s keywords); ``f``, the forward pass if known."""
    Xn, Gn = _samples(X, spec.length)[0], _samples(G, spec.length)[0]
    E = W_out.rows
    f = f or _sample_forward(spec, Xn, W_in, b_in, W_out, b_out)
    b = sample_backward(spec, f, Gn, W_out, **slip_args)
    T, ones = Xn.rows, sp.ones(Xn.rows, 1)
    parts = {"x": Xn, "g": Gn, "q": f["Q"], "k": f["K"], "v": f["V"], "o": f["O"], "wo": W_out, "bo": b_out.T,
             "dx": b["dP"] * W_in, "dqkv": b["dP"], "do": b["dO"], "dwo": Gn.T * f["O"], "dbo": ones.T * Gn,
             "mask": sp.Matrix(T, T, lambda i, j: -sp.oo if spec.causal and j > i else 0)}
    for k, name in enumerate("qkv"):
        rows = slice(k * E, (k + 1) * E)
        parts[f"w{name}"], parts[f"b{name}"] = W_in[rows, :], b_in[rows, :].T
        parts[f"d{name}"] = b[f"d{name.upper()}"]
        parts[f"dw{name}"], parts[f"db{name}"] = b[f"d{name.upper()}"].T * Xn, ones.T * b[f"d{name.upper()}"]
    d = E // spec.heads
    for h, ((Qh, Kh, Vh, A, Oh), steps) in enumerate(zip(f["heads"], b["heads"]), start=1):
        cols = head_columns(h - 1, d, spec.heads)
        parts.update({f"q{h}": Qh, f"k{h}": Kh, f"v{h}": Vh, f"p{h}": A, f"o{h}": Oh,
                      f"s{h}": f["scale"] * Qh * Kh.T + parts["mask"], f"do{h}": b["dO"][:, cols]})
        parts.update({f"d{k[1:].lower()}{h}": steps[k] for k in ("dQ", "dK", "dV", "dS")})
        parts[f"dp{h}"] = steps["dA"]
    return parts


class Part(sp.MatrixExpr):
    """One named quantity of a sample's attention (``sample_parts``' key), at the points: computed from the
    layer's input, parameters and G (the derivation's column forms) by the op's own steps, with a slip."""

    def __new__(cls, key, slip, spec, shape, *mats):
        key, slip = (sp.Symbol(v) if isinstance(v, str) else v for v in (key, slip or "none"))  # SymPy rebuilds from Symbols
        return sp.MatrixExpr.__new__(cls, key, slip, AttentionSpec.basic(spec), sp.Tuple(*shape), *mats)

    @property
    def shape(self):
        return tuple(self.args[3])

    @property
    def key(self):
        return self.args[0].name

    def numeric(self, value):
        spec, slip = AttentionSpec.of(self.args[2]), self.args[1].name
        mats = tuple(np.asarray(value(m), dtype=float) for m in self.args[4:])
        inputs = (spec, tuple(m.tobytes() for m in mats[1:]))  # X and the parameters: the forward pass's
        kept = (slip, mats[0].tobytes(), inputs)
        if kept not in _COMPUTED:
            if len(_COMPUTED) >= 256:
                _COMPUTED.clear()
                _FORWARDS.clear()
            args = {} if slip == "none" else _slips(spec, mats[4].shape[0])[slip][0]
            explicit = [sp.Matrix(m) for m in mats]
            if inputs not in _FORWARDS:  # each slip's backward steps start from the same forward pass
                _FORWARDS[inputs] = _sample_forward(spec, _samples(explicit[1], spec.length)[0], *explicit[2:])
            parts = sample_parts(spec, args, *explicit, f=_FORWARDS[inputs])
            _COMPUTED[kept] = {k: np.array(v.tolist(), dtype=float) for k, v in parts.items()}
        return _COMPUTED[kept][self.key]

    def _sympystr(self, printer):
        return self.key

    _latex = _sympystr


_COMPUTED = {}  # (slip, G's bytes, (spec, the inputs' bytes)) -> every part's value at that point
_FORWARDS = {}  # (spec, the inputs' bytes) -> the forward pass there (``_sample_forward``'s)


class RowSoftmax(sp.MatrixExpr):
    """softmax(S) of a person's expression in attention: each row normalized by exp (a −∞ score weighs 0)."""

    def __new__(cls, arg):
        return sp.MatrixExpr.__new__(cls, arg)

    @property
    def shape(self):
        return self.args[0].shape

    def numeric(self, value):
        S = np.asarray(value(self.args[0]), dtype=float)
        with np.errstate(all="ignore"):
            e = np.exp(S - np.max(S, axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)


# -- the binding, mixed into the Checker -----------------------------------------------------------------

_HEAD = re.compile(r"_\s*(?:\{\s*h\s*\}|h(?![A-Za-z0-9]))")  # Q_h, S_{h}: head h of a rule in h
_GRADIENT = re.compile(r"\s*(?:\\left\s*)?\(?\s*(?:\\delta|δ|d(?![_\s])|\\frac\s*\{\s*\\partial|\\partial|∂|G_|dL)")

_SHOWN = {"q": "Q", "k": "K", "v": "V", "o": "O", "g": "G", "x": "X", "p": "A", "s": "S", "mask": "M",
          "wq": "W_Q", "wk": "W_K", "wv": "W_V", "wo": "W_O", "bq": "b_Q", "bk": "b_K", "bv": "b_V", "bo": "b_O"}


class AttentionBinder:
    """The names of a network's attention layer in the sample convention (``Binder``'s hooks call these)."""

    attention = None  # (layer, spec, E, the op's inputs and G) when the sample convention reads one

    def _attention_names(self, l):
        """The layer's output a_l (h_l) in every convention; in the sample convention, attention's own names. ``l``
        is its layer number, or its path inside a residual block (3_2: layer 3.2)."""
        a = self.q["Yhat" if self.batch else "yhat"] if l == self.layers else self.q[f"{self.key('a')}{l}"]
        self.table[f"a{l}"] = self.table[f"h{l}"] = self.view(a)
        shown = str(l).replace("_", ".")
        self.shown.append(f"{'A' if self.batch else 'a'}_{{{shown}}} (the attention layer's output, a column)")
        if self.batch or len(attention_layers(self.net.layers)) > 1:
            return
        forward = next(s for s in self.sweep.steps if s.target.key == a.key)
        grad = next(s.rhs for s in self.sweep.steps if isinstance(s.rhs, AttentionGrad) and s.rhs.has(a.symbol))
        layer = attention_layers(self.net.layers)[0]
        spec = AttentionSpec(layer.length, layer.num_heads, layer.causal, layer.bias)
        X, W_in, *rest = forward.rhs.mats
        E = W_in.cols
        b_in, W_out, b_out = rest if spec.bias else (sp.ZeroMatrix(3 * E, 1), rest[0], sp.ZeroMatrix(E, 1))
        self.attention = (l, spec, E, (grad.mats[0], X, W_in, b_in, W_out, b_out))
        self._attention_table(l, spec, E, X)

    def _embedding_names(self, l: int):
        """An embedding's table W_l (nn.Embedding's, V × E) and its output e_l (a_l, h_l); dL/dW_l."""
        self._sequence_names(l, "W", "e", "the embedding's table (V × E, a row per token id) and e_{l}, the "
                                          "embedded tokens (a_{l})")

    def _positional_names(self, l: int):
        """A position table P_l (T × E, row t added at position t) and the layer's output a_l (h_l); dL/dP_l."""
        self._sequence_names(l, "P", "a", "the position table (T × E, row t added at position t) and a_{l}")

    def _sequence_names(self, l, param, out, meaning):
        q = self.q
        self.table[f"{param.lower()}{l}"] = self.view(q[f"{param}{l}"])
        self.grads[f"{param.lower()}{l}"] = (self.view(q[f"dL_d{param}{l}"]), q[f"dL_d{param}{l}"])
        key = out.upper() if self.batch else out
        a = q["Yhat" if self.batch else "yhat"] if l == self.layers else q[f"{key}{l}"]
        self.table[f"{out}{l}"] = self.table[f"a{l}"] = self.table[f"h{l}"] = self.view(a)
        self.shown.append(f"{param}_{l}, {key}_{l} ({meaning.replace('{l}', str(l))})")

    def _mean_names(self, l: int):
        """The mean over a sequence: its output a_l (h_l)."""
        a = self.q["Yhat" if self.batch else "yhat"] if l == self.layers else self.q[f"{self.key('a')}{l}"]
        self.table[f"a{l}"] = self.table[f"h{l}"] = self.view(a)
        self.shown.append(f"{'A' if self.batch else 'a'}_{l} (the mean over the positions)")

    def part(self, key, slip=""):
        l, spec, E, mats = self.attention
        return Part(key, slip, spec, self._part_shape(key, spec, E), *mats)

    @staticmethod
    def _part_shape(key, spec, E):
        T, d = spec.length, E // spec.heads
        base = key[1:] if key.startswith("d") else key
        if base in ("mask",) or base.rstrip("0123456789") in ("s", "p"):
            return (T, T)
        if base in ("wq", "wk", "wv", "wo"):
            return (E, E)
        if base == "qkv":  # [δQ δK δV], a row per position
            return (T, 3 * E)
        if base in ("bq", "bk", "bv", "bo"):
            return (1, E)
        return (T, d) if base[-1:].isdigit() else (T, E)

    def _attention_table(self, l, spec, E, X):
        H, d = spec.heads, E // spec.heads
        shown = str(l).replace("_", ".")
        names = ["q", "k", "v", "o", "g", "wq", "wk", "wv", "wo"] + (["bq", "bk", "bv", "bo"] if spec.bias else [])
        names += ["mask"] if spec.causal else []
        heads = [f"{n}{h}" for h in range(1, H + 1) for n in ("q", "k", "v", "o", "s", "p")]
        flip = (lambda key, value: sp.Transpose(value) if key in ("wq", "wk", "wv", "wo") else value) if \
            self.convention == "vaswani" else (lambda key, value: value)  # W_Q (E × d_k): Q = X W_Q
        for key in names:
            self.table[key] = flip(key, self.part(key))
        for key in heads:  # a layer's own name comes first: P_2 is a position table at layer 2
            self.table.setdefault(key, self.part(key))
        grads = ["q", "k", "v", "o", "wq", "wk", "wv", "wo"] + (["bq", "bk", "bv", "bo"] if spec.bias else [])
        for key in grads:
            self.grads[key] = (flip(key, self.part("d" + key)), None, self.part("d" + key))
        for key in heads:
            self.grads.setdefault(key, (self.part("d" + key), None, self.part("d" + key)))
        path = str(l)
        for key in ("W_in", "b_in", "W_out", "b_out"):  # torch's stacked parameters, as the derivation has them
            if f"{key}{l}" in self.q:
                stem = key.lower().replace("_", "")
                for norm in {stem, stem + path, stem + path.replace("_", "."), f"{stem},{path.replace('_', '.')}"}:
                    self.table[norm] = self.view(self.q[f"{key}{l}"])
                    self.grads[norm] = (self.view(self.q[f"dL_d{key}{l}"]), self.q[f"dL_d{key}{l}"])
        # X by positions: the layer's input (the network's when it is layer 1; else a_0 = h_0 stays the input)
        self.table["x"] = self.part("x")
        self.grads["x"] = (self.part("dx"), None, self.part("dx"))
        if X == self.q[self.key("x")].symbol:
            self.table["a0"] = self.table["h0"] = self.table["x"]
        if H == 1:  # one head's names without its number, and A for P (a without a layer number names none)
            for n in ("q", "k", "v", "o", "s", "p"):
                self.table.setdefault(n, self.table[f"{n}1"])
                self.grads.setdefault(n, self.grads[f"{n}1"])
            self.table.setdefault("a", self.table["p1"])
            self.grads.setdefault("a", self.grads["p1"])
        for key in [k for k in self.grads if k in _SHOWN or k[:-1] in _SHOWN and k[-1:].isdigit()]:
            self.table.setdefault(f"g{key}", self.grads[key][0])  # G_S, G_O: the gradient of S, O (G alone is dL/dY)
        if spec.causal:
            self.table["m"] = self.table["mask"]
        for width in ("d", f"{WIDTH}k", f"{WIDTH}head", f"{WIDTH}v", f"{WIDTH}h"):
            self.table[width] = sp.Integer(d)
        self.table[f"{WIDTH}model"] = sp.Integer(E)
        sub = "" if H == 1 else "_h"
        self.shown += [
            f"attention (layer {shown}), one sample with the positions as rows: X (T × E = {spec.length} × {E}, the "
            f"layer's input{', = x' if X == self.q[self.key('x')].symbol else ''}), Q, K, V, O (T × E), G = dL/dY, "
            f"W_Q, W_K, W_V (torch's in_proj_weight rows: Q = X W_Qᵀ + 1 b_Qᵀ), W_O"
            + (", b_Q, b_K, b_V, b_O" if spec.bias else ""),
            (f"per head h = 1..{H}: Q_h, K_h, V_h, O_h (T × {d}), S_h, P_h (T × T, the weights; A_1 alone is layer "
             f"1's a_1, and a layer's P_l comes first), or a rule in h (δV_h = A_h^⊤ δO_h, A_h the weights)"
             if H > 1 else "S (T × T, the scores), A or P (the weights)")
            + (", M (the causal mask, −∞ above the diagonal)" if spec.causal else ""),
            f"d, d_k (= {d}, the head's width), d_{{model}} (= {E}), \\sqrt{{d_k}}, softmax(S{sub}) row by row, "
            f"rowsum(...), \\mathbf{{1}}",
            f"W_in, b_in, W_out, b_out (torch's in_proj_weight, in_proj_bias, out_proj), as W_{{in,{shown}}} or "
            f"W_in{shown}",
            f"dO, dV{sub}, dP{sub} (dA{sub}), dS{sub}, dQ{sub}, dK{sub}, dW_Q, db_Q, ..., dX (also δQ, "
            f"\\frac{{\\partial L}}{{\\partial Q}}): the gradients of the above"]

    def _step_value(self, base: str):
        """Step t of attention's own names as a column: δp_t (row t of [δQ δK δV]); in attention's own gradients
        x_t is row t of its input X (elsewhere, of the network's input)."""
        if self.attention is None or base == "g" and self._norm is not None:  # g_t of a layer norm comes first
            return super()._step_value(base)
        if base == "dqkv" or base == "x" and isinstance(self._target.rhs, Part):
            return sp.Transpose(self.part("dqkv" if base == "dqkv" else "x"))
        if base == "x":
            return super()._step_value(base)
        grad = self._gradient_name(base) if base not in self.table else None
        value = self.grads[grad][0] if grad else self.table.get(base)
        if isinstance(value, Part):  # o_t, δq_t: row t of O, of δQ (T × E, a row per position), whatever E is
            return sp.Transpose(value)
        return super()._step_value(base)

    def check_heads(self, wrt: str, text: str, diagnose: bool):
        """A rule in the head h (δV_h = A_h^⊤ δO_h) checked at h = 1..H, A_h and P_h head h's weights there (with
        one head, the names without a number); an equation for a head's forward value is not a gradient."""
        if not _GRADIENT.match(wrt):
            raise NotAGradient(f"'{wrt.strip()}' is a head's forward value: an equation for it is the forward pass, "
                               f"which chainrule derives from the spec; check a gradient such as \\delta V_h")
        heads = self.attention[1].heads
        verdicts = []
        for h in range(1, heads + 1):
            number = "" if heads == 1 else f"_{{{h}}}"
            keys = (f"a{h}", f"p{h}")
            kept = ({k: self.table.get(k) for k in keys}, {k: self.grads.get(k) for k in keys})
            for key in keys:
                self.table[key], self.grads[key] = self.part(f"p{h}"), (self.part(f"dp{h}"), None, self.part(f"dp{h}"))
            try:
                verdicts.append(_LayerVerdict(h, self.check(_HEAD.sub(number, wrt), _HEAD.sub(number, text), diagnose)))
            finally:
                for names, old in zip((self.table, self.grads), kept):
                    for key, value in old.items():
                        names.pop(key) if value is None else names.__setitem__(key, value)
        return RuleResult(wrt, text, verdicts, letter="h")

    # -- operators attention adds -------------------------------------------------------------------
    def _bind_sqrt(self, node):
        value = self.bind(node.args[0])
        if is_matrix(value) or isinstance(value, Ones):
            raise ChainruleError(f"'{node.text}' is the square root of a matrix; \\sqrt takes a number, like \\sqrt{{d_k}}")
        return sp.sqrt(value)

    def _bind_rowsum(self, node):
        value = self.bind(node.args[0])
        if not is_matrix(value):
            raise ChainruleError(f"'{node.text}' sums the rows of a matrix, like rowsum(dP \\odot P)")
        return sp.MatMul(value, sp.OneMatrix(value.shape[1], 1))

    def _bind_mul(self, node):
        left, right = node.args[:2]
        if left.kind == "rowsum" and right.kind == "T" and right.args[0].kind == "ones":
            # rowsum(δA ⊙ A) 1ᵀ: the ones as long as the rows summed
            inner = self.bind(left.args[0])
            return sp.MatMul(self.bind(left), sp.OneMatrix(1, inner.shape[1]))
        return super()._bind_mul(node)

    def _bind_act(self, node):
        name, prime, arg_node = node.args
        if name == "softmax" and not prime and self.attention is not None and self._layer_of(arg_node) is None:
            arg = self.bind(arg_node)
            if is_matrix(arg) and arg.shape[0] == arg.shape[1] == self.attention[1].length:
                return RowSoftmax(arg)
        return super()._bind_act(node)

    # -- targets, printing, mistakes ---------------------------------------------------------------------
    def target(self, wrt):
        from .bind import _Target
        from .parse import parse
        node = parse(wrt) if isinstance(wrt, str) else wrt
        if self.attention is not None and node.kind in ("name", "grad"):
            norm = node.args[0] if node.kind == "grad" else self._gradient_name(node.args[0])
            entry = self.grads.get(norm) if norm else None
            if entry is not None and isinstance(entry[-1], Part):
                return _Target(entry[0], f"dL/d{self._shown_name(norm)}", entry[2], flip=entry[0] is not entry[2])
        try:
            found = super().target(wrt)
        except ChainruleError as err:
            raise ChainruleError(f"{err}; {self._unread(node)}" if self._unread(node) else str(err)) from None
        stacked = re.fullmatch(r"dL/d([Wb])(in|out),?([\d._]*)", found.label)
        if stacked:  # torch's stacked parameters, as the notes name them: dL/dW_in1, dL/dW_in3.2
            found.label = f"dL/d{stacked[1]}_{stacked[2]}{stacked[3].replace('_', '.')}"
        return found

    def _unread(self, node) -> str:
        """Why attention's own name ``node`` (dQ, S_1, ...) names nothing here, else ""."""
        name = node.args[0] if node.kind in ("name", "grad") else ""
        base = re.sub(r"^(dld|d|g)|\d+$", "", name)
        layers = attention_layers(self.net.layers)
        if not layers or base not in _SHOWN or base in ("x", "g"):
            return ""
        if self.batch:
            return "attention's own names (Q, K, V, S_h, dQ, ...) are read one sample at a time: use --convention sample"
        if len(layers) > 1:
            return (f"attention's own names (Q, K, V, S_h, dQ, ...) are read in a network of one attention layer, and "
                    f"this one has {len(layers)}: check one layer's steps on a network with only it")
        return f"attention here has {self.attention[1].heads} heads (h = 1..{self.attention[1].heads})"

    def _shown_name(self, norm: str) -> str:
        if norm[:-1] == "a" and norm[-1:].isdigit():  # A_h of a rule in h: head h's weights
            norm = "p" + norm[-1]
        if norm == "x" or norm[:-1] in _SHOWN and norm[-1:].isdigit() or norm in _SHOWN:
            base, h = (norm, "") if norm in _SHOWN else (norm[:-1], norm[-1])
            return _SHOWN[base] + (f"_{h}" if h and self.attention[1].heads > 1 else "")
        return norm

    def printed(self, target):
        if not isinstance(target.rhs, Part):
            return super().printed(target)
        return _stated(target.rhs.key, self.attention[1], self.convention == "vaswani")

    def oriented(self, mine, expected):
        """``mine``, a column where the gradient of one of attention's biases is the row 1ᵀ G: a bias is one
        vector, which the notes' Σ_t g_t sums as a column."""
        if isinstance(expected, Part) and expected.key in ("dbq", "dbk", "dbv", "dbo") and is_matrix(mine) and \
                mine.shape == expected.shape[::-1]:
            return sp.Transpose(mine)
        return mine

    def exactly_equal(self, a, b):
        """Not tried through attention (SymPy's proof of its row softmax with a symbol per entry takes minutes), nor
        step by step (a sequence's layer norms and embeddings have no symbolic form here)."""
        if self.attention is not None or self.length:
            return None
        return super().exactly_equal(a, b)

    def attention_mistake(self, mine, expected) -> str:
        """The usual attention mistake whose backward steps give ``mine``, else ""."""
        part = expected.arg if isinstance(expected, sp.Transpose) else expected
        if self.attention is None or not isinstance(part, Part):
            return ""
        l, spec, E, _ = self.attention
        if not is_matrix(mine):
            return ""
        if mine.shape != expected.shape:
            d = E // spec.heads
            one = [i for i in (0, 1) if mine.shape[i] != expected.shape[i]]
            if spec.heads > 1 and all(mine.shape[i] == d and expected.shape[i] == E for i in one):
                return (f"heads not merged the same way backwards: yours has one head's d = {d} features where the "
                        f"gradient has all {spec.heads} heads' E = {E}; δQ = [δQ_1 ⋯ δQ_{spec.heads}] side by side "
                        f"(likewise δK, δV, δO), as the heads were split")
            return ""
        for slip, (_, message) in _slips(spec, E).items():
            wrong = self.part(part.key, slip)
            wrong = wrong.T if part is not expected else wrong
            if not self.same(wrong, expected) and self.same(mine, wrong):
                return message
        return ""


def _stated(key: str, spec: AttentionSpec, vaswani=False) -> tuple:
    """The op's stated step for the gradient ``key`` (dq, ds1, dwq, ...) as (text, LaTeX); ``vaswani``: with
    W_Q (E × d_k), the transpose of torch's."""
    one = spec.heads == 1
    m = key[-1] if key[-1].isdigit() else ""
    h = "" if one or not m else m
    sub = (lambda name: name) if not h else (lambda name: f"{name}_{h}")
    tex_sub = (lambda name: name) if not h else (lambda name: f"{name}_{{{h}}}")
    base = key[:-1] if m else key
    forms = {
        "do": ("G W_O", r"G W_O"),
        "dv": (f"{sub('A')}ᵀ {sub('δO')}", rf"{tex_sub('A')}^{{\top}} \delta {tex_sub('O')}"),
        "dp": (f"{sub('δO')} {sub('V')}ᵀ", rf"\delta {tex_sub('O')} {tex_sub('V')}^{{\top}}"),
        "ds": (f"{sub('A')} ⊙ ({sub('δA')} − rowsum({sub('δA')} ⊙ {sub('A')}) 1ᵀ)",
               rf"{tex_sub('A')} \odot (\delta {tex_sub('A')} - \operatorname{{rowsum}}(\delta {tex_sub('A')} \odot "
               rf"{tex_sub('A')}) \mathbf{{1}}^{{\top}})"),
        "dq": (f"{sub('δS')} {sub('K')} / √d", rf"\delta {tex_sub('S')} {tex_sub('K')} / \sqrt{{d}}"),
        "dk": (f"{sub('δS')}ᵀ {sub('Q')} / √d", rf"\delta {tex_sub('S')}^{{\top}} {tex_sub('Q')} / \sqrt{{d}}"),
        "dwo": ("Gᵀ O", r"G^{\top} O"), "dbo": ("1ᵀ G", r"\mathbf{1}^{\top} G"),
        "dx": ("δQ W_Q + δK W_K + δV W_V", r"\delta Q W_Q + \delta K W_K + \delta V W_V"),
    }
    if vaswani:
        forms.update({"do": ("G W_Oᵀ", r"G W_O^{\top}"), "dwo": ("Oᵀ G", r"O^{\top} G"),
                      "dx": ("δQ W_Qᵀ + δK W_Kᵀ + δV W_Vᵀ", r"\delta Q W_Q^{\top} + \delta K W_K^{\top} + \delta V W_V^{\top}")})
    for n in "qkv":
        N = n.upper()
        forms[f"dw{n}"] = (f"Xᵀ δ{N}", rf"X^{{\top}} \delta {N}") if vaswani else (f"δ{N}ᵀ X", rf"\delta {N}^{{\top}} X")
        forms[f"db{n}"] = (f"1ᵀ δ{N}", rf"\mathbf{{1}}^{{\top}} \delta {N}")
    if not m and not one and base in ("dq", "dk", "dv", "do"):
        N = base[1].upper()
        return (f"[δ{N}_1 ⋯ δ{N}_{spec.heads}] (the heads' side by side)",
                rf"[\delta {N}_{{1}} \cdots \delta {N}_{{{spec.heads}}}]")
    if base == "do" and m:
        return (f"columns of δO = G W_O that head {m} takes", rf"(G W_O)_{{:, \mathrm{{head}}\ {m}}}")
    return forms[base]
