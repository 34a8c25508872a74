"""Checking a derivation over a sequence one step at a time: a transformer block's notes, as ``derive`` prints them.

In a network over a sequence without a recurrent layer (an embedding, a position table, attention, layer norms
and dense layers at every position, residual blocks of them), one sample's value of T·F features is read one
step per column: ``a_{5,t}`` (and ``a_5`` itself) is the F × T matrix whose column t is step t, so the notes'
``[W_6^T \\delta_{6,t}]_{t=1}^{T}`` is W_6ᵀ times it, ``\\sum_{t=1}^{T} \\delta_{6,t} a_{5,t}^T`` the product that
sums the steps, ``\\sum_t \\delta_{6,t}`` its columns summed, and ``[(\\partial L/\\partial a_2)_t^\\top]_{t=1}^{T}``
(a row per step) the T × F table P_2's gradient. Step t of attention's T × E names (o_t, δp_t: row t of O and of
[δQ δK δV]) is its column. The compact layer norm step's σ_t, x̂_t and g_t (γ ⊙ the position's gradient) are those
of the layer norm the gradient goes through: the one reading a_k for dL/da_k, layer k's for dL/dγ_k, dL/dβ_k.

A network whose attention is wider than limits.CHECK_ATTENTION (T·E) is checked at small sizes (``narrowed``):
every width at most WIDTH as verify shrinks it, heads of at least 2 features, and the network's T when T·WIDTH
fits (so the loss's 1/T is the notes'), else T = 3.
"""
import re

import numpy as np
import sympy as sp

from .. import limits
from ..errors import ChainruleError
from ..ops.layernorm import StepLayerNorm, StepLayerNormGrad
from ..steps import N
from .compare import is_matrix
from .parse import NotAGradient, parse, parse_equation, rewrite
from .recurrent import _SUM_T, _as_written, _term_end

WIDTH = 4  # the narrowed widths: E = 4 keeps 2 heads of d = 2, so a missing 1/√d_k shows


def attention_layers(layers) -> list:
    """The attention layers of ``layers`` and of the residual blocks among them, in order."""
    found = []
    for layer in layers:
        found += attention_layers(layer.layers) if getattr(layer, "layers", ()) else [layer] * (layer.kind == "attention")
    return found


def narrowed(network):
    """The network check reads: itself, or when an attention layer's T·E is over CHECK_ATTENTION the same network
    at small sizes (see the module docstring)."""
    from dataclasses import replace

    from ..verify import shrink
    if all(a.length * a.features <= limits.CHECK_ATTENTION for a in attention_layers(network.layers)):
        return network
    length = network.input_shape[0][1]
    small = shrink(network, WIDTH, length if length * WIDTH <= limits.CHECK_ATTENTION else 3)

    def heads(layer):
        if getattr(layer, "layers", ()):
            return replace(layer, layers=tuple(heads(inner) for inner in layer.layers))
        if layer.kind != "attention":
            return layer
        E = layer.features
        return replace(layer, num_heads=max(h for h in range(1, layer.num_heads + 1) if E % h == 0 and (E // h >= 2 or h == 1)))
    return replace(small, layers=tuple(heads(layer) for layer in small.layers))


class Steps(sp.MatrixExpr):
    """A sequence (T·F, 1) of one sample seen one step per column (F × T)."""

    def __new__(cls, m, length):
        return sp.MatrixExpr.__new__(cls, m, sp.Integer(length))

    @property
    def shape(self):
        m, T = self.args
        return (m.shape[0] // T, T)

    def numeric(self, value):
        return np.asarray(value(self.args[0]), dtype=float).reshape(int(self.args[1]), -1).T

    def _sympystr(self, printer):
        return printer._print(self.args[0])

    _latex = _sympystr


class PositionSigma(sp.MatrixExpr):
    """σ_t of a layer norm at every position (1 × T): each step's standard deviation, eps inside the square root."""

    def __new__(cls, x, eps, length):
        return sp.MatrixExpr.__new__(cls, x, sp.Float(eps), sp.Integer(length))

    @property
    def shape(self):
        return (1, self.args[2])

    def numeric(self, value):
        x, eps, T = self.args
        steps = np.asarray(value(x), dtype=float).reshape(int(T), -1)
        return np.sqrt(steps.var(axis=1) + float(eps))[None, :]

    def _sympystr(self, printer):
        return "σ"

    _latex = _sympystr


_STACKED = re.compile(r"\\right\s*\]\s*_\s*\{\s*t\s*=\s*1\s*\}\s*\^\s*(?:\{\s*T\s*\}|T)|\]_\(t=1\.\.T\)")
_STEP_OF = re.compile(r"(\\right\s*\)|\))\s*_\s*(?:\{\s*t\s*\}|t(?![A-Za-z0-9]))")  # (∂L/∂a_5)_t: step t of it
_PROJECTED = re.compile(r"\\delta\s*([pqkvo])\s*_\s*(\{\s*t\s*\}|t(?![A-Za-z0-9]))")  # δq_t; δp_t: [δq_t; δk_t; δv_t]
_STEP_NAME = re.compile(r"(?P<base>.+?),?t")
_APPLIED = re.compile(r"[A-Za-z]\s*(?:_\s*\{[^{}]*\}\s*)?(?:\\left\s*)?\(\s*[^;()]*;")  # LN(x; γ, β), MHA(x; W_in, ...)


def step_text(text: str) -> str:
    """The notes' per-step forms as the parser reads them: [f(t)]_{t=1}^{T} as (f(t)), \\sum_{t=1}^{T} as a sum
    over the steps, \\overline{v} as mean(v), (M)_t as M, δp_t as one name."""
    for m in reversed(list(_SUM_T.finditer(text))):  # the sum takes the rest of its term: Σ_t g_t ⊙ x̂_t
        end = _term_end(text, m.end())
        text = text[:m.start()] + r" \sumtime (" + text[m.end():end] + ")" + text[end:]
    text = _PROJECTED.sub(lambda m: "dqkv_{t}" if m[1] == "p" else f"d{m[1]}_{{t}}", text)
    text = _STEP_OF.sub(r"\1", text)
    for m in reversed(list(_STACKED.finditer(text))):
        opener = _opening(text, m.start())
        if opener is not None:
            start, width = opener
            text = text[:start] + r"\left(" + text[start + width:m.start()] + r"\right)" + text[m.end():]
    while r"\overline" in text:
        start = text.index(r"\overline")
        brace = text.find("{", start)
        end = _closing_brace(text, brace) if brace >= 0 and not text[start + 9:brace].strip() else -1
        if end < 0:
            raise ChainruleError(f"\\overline in '{text}' must be followed by its argument in braces, like \\overline{{g_t}}")
        text = text[:start] + r"\operatorname{mean}(" + text[brace + 1:end] + ")" + text[end + 1:]
    return text


def _opening(text: str, end: int):
    """(where, length) of the bracket ``\\left[`` or ``[`` that the bracket at ``end`` closes, or None."""
    depth = 0
    k = end - 1
    while k >= 0:
        c = text[k]
        if c in ")}]":
            depth += 1
        elif c in "({[":
            if depth == 0:
                if c != "[":
                    return None
                left = text.rfind(r"\left", 0, k)
                return (left, k + 1 - left) if left >= 0 and not text[left + 5:k].strip() else (k, 1)
            depth -= 1
        k -= 1
    return None


def _closing_brace(text: str, start: int) -> int:
    depth = 0
    for k in range(start, len(text)):
        depth += (text[k] == "{") - (text[k] == "}")
        if depth == 0:
            return k
    return -1


class SequenceBinder:
    """The names of one sample's sequence, step by step (``Binder``'s hooks call these; see the module docstring)."""

    length = None  # T when one sample's sequences are read a step per column, else None
    norms = ()  # the layer norms at every position: (their gradients' symbols, x̂, σ, g) per layer norm
    _norm = None  # the layer norm whose σ_t, x̂_t, g_t the current gradient goes through
    summed = None  # T when a batch's sequence summed over its samples (M 1_N) is read a step per column

    def _read_steps(self):
        """Whether this sweep is read step by step, and the layer norms' own quantities when it is (before the
        names, which it views)."""
        layout = self.net.layout
        if not layout or layout[0][0] != "length" or any(layer.kind in ("rnn", "lstm", "gru") for layer in self.net.layers):
            return
        if self.batch:  # (only when the output is a sequence too: then every value is one, none pooled by a mean)
            self.summed = layout[0][1] if self._steps_out() > 1 else None
            return
        self.length = layout[0][1]
        self.inputs = Steps(self.q[self.key("x")].symbol, self.length)
        norms = []
        for step in self.sweep.steps:
            if not isinstance(step.rhs, StepLayerNorm):
                continue
            x, affine = step.rhs.mats[0], step.rhs.mats[1:]
            grad = next(g for s in self.sweep.steps for g in s.rhs.find(StepLayerNormGrad) if g.mats[2] == x)
            T, G = self.length, Steps(grad.mats[0], self.length)
            g = sp.HadamardProduct(affine[0] * sp.OneMatrix(1, T), G) if affine else G
            xhat = Steps(StepLayerNorm(x, step.rhs.eps, T), T)
            owned = {self.q[f"dL_d{x.name}"].symbol} | {self.q[f"dL_d{a.name}"].symbol for a in affine}
            norms.append((owned, xhat, PositionSigma(x, step.rhs.eps, T), g, step.target.key[1:]))
        self.norms = tuple(norms)

    def _steps_shown(self):
        """The step-by-step names in the list ``--names`` prints, and each layer norm's own σ_l, x̂_l by number."""
        for _, xhat, sigma, _, path in self.norms:
            for number in {path, path.replace("_", "."), path.replace("_", ",")}:
                self.table[f"sigma{number}"], self.table[f"xhat{number}"] = sigma, xhat
        if self.length:
            self.shown.append(
                f"one sample step by step (T = {self.length}): a_{{l,t}}, \\delta_{{l,t}}, x_t (a_l, δ_l themselves: "
                f"F × T, column t step t), [f(t)]_{{t=1}}^{{T}}, \\sum_{{t=1}}^{{T}}, (\\frac{{\\partial L}}"
                f"{{\\partial a_l}})_t, o_t, \\delta p_t (row t of attention's O, [δQ δK δV]), and a layer norm's "
                f"\\sigma_t, \\hat{{x}}_t, g_t, \\overline{{v}} (the mean of each step's features) in the gradient "
                f"through it")

    def view(self, q):
        """A sequence of one sample (the input, a forward value or its gradient) a step per column."""
        sym = super().view(q)
        if self.length and q.role in ("data", "forward", "adjoint") and isinstance(sym, sp.MatrixSymbol) and \
                sym.shape[1] == 1 and sym.shape[0] % self.length == 0:
            return Steps(sym, self.length)
        return sym

    def read(self, wrt: str, text: str):
        """The trees of ``wrt = text``, its per-step forms read (``step_text``); a message quotes the text as
        written."""
        if not self.length and not self.summed:
            return parse_equation(wrt, text)
        try:
            return parse_equation(step_text(wrt), step_text(text))
        except NotAGradient:
            raise
        except ChainruleError as err:
            wrt, text = wrt.strip(), text.strip()
            # a quote the parser's reading of the text as written does not hold is one of step_text's rewriting
            written = rewrite(wrt) + "\n" + rewrite(text)
            raise _as_written(err, wrt, text, lambda x: rewrite(step_text(x)),
                              lambda quote: quote.removesuffix("...") not in written) from None

    def _step_value(self, base: str):
        """Step t of ``base`` (a_5 of a_{5,t}) as a column of an F × T matrix, or None."""
        if base in ("sigma", "xhat", "g") and (self._norm is not None or base not in self.table):
            if self._norm is None:
                raise ChainruleError("σ_t, x̂_t and g_t are a layer norm's at position t; check them in the "
                                     "gradient through one: dL/da_k of a layer norm's input a_k, or dL/dγ_k, dL/dβ_k")
            return {"xhat": self._norm[1], "sigma": self._norm[2], "g": self._norm[3]}[base]
        if base == "x":
            return self.inputs
        value = self.table.get(base)
        if value is None and self._gradient_name(base):  # δq_t: row t of attention's δQ
            value = self.grads[self._gradient_name(base)][0]
        if not is_matrix(value):
            return None
        if isinstance(value, Steps) or value.shape[1] == self.length:
            return value
        return sp.Transpose(value) if value.shape[0] == self.length else None  # a row per step: P_2, attention's O

    def layer_applied(self, wrt: str, text: str):
        """Raise NotAGradient for the notes' a_{3.1} = [LN(a_{2,t}; γ, β)]_t, a layer applied to its input and its
        parameters (after a semicolon): the forward pass, which the parser does not read."""
        if not self.length or not _APPLIED.search(text):
            return
        try:
            node = parse(wrt)
        except ChainruleError:
            return
        if node.kind == "name" and not node.args[0].startswith("delta") and not self._gradient_name(node.args[0]):
            raise NotAGradient(f"'{wrt.strip()}' is a layer applied to its input and parameters: the forward pass, "
                               f"which chainrule derives from the spec; check a gradient")

    def forward_step(self, wrt_tree):
        """Raise NotAGradient for an equation defining a step of a forward value (the notes' z_t = W a_t + b)."""
        if self.length and wrt_tree.kind == "name" and wrt_tree.args[0] not in self.grads:
            m = _STEP_NAME.fullmatch(wrt_tree.args[0])
            if m and re.fullmatch(r"[zahe][\d.,]*", m["base"]):  # not Adam's m_t, v_t
                raise NotAGradient(f"'{wrt_tree.text}' is step t of a forward value: an equation for it is the "
                                   f"forward pass, which chainrule derives from the spec; check a gradient")

    def _bind_name(self, node):
        norm = node.args[0]
        if self.length and norm not in self.table and not self._gradient_name(norm):
            m = _STEP_NAME.fullmatch(norm)
            value = m and self._step_value(m["base"])
            if value is not None:
                return value
            if norm in ("sigma", "xhat"):
                return self._step_value(norm)
        return super()._bind_name(node)

    def _bind_mul(self, node):
        """The notes' fused softmax step at every position, ŷ 1ᵀ y: ŷ_t (1ᵀ y_t), each column of ŷ times the sum of
        y's (a product of two F × T sequences, which the matrix product cannot fit)."""
        left = node.args[0]
        if self.length and node.args[2] == "matmul" and left.kind == "mul" and left.args[2] == "matmul" and \
                left.args[1].kind == "T" and left.args[1].args[0].kind == "ones":
            a, b = self.bind(left.args[0]), self.bind(node.args[1])
            if is_matrix(a) and is_matrix(b) and a.shape == b.shape and a.shape[1] == self.length > 1:
                return sp.HadamardProduct(a, sp.OneMatrix(b.shape[0], b.shape[0]) * b)
        product = super()._bind_mul(node)
        if self.summed and node.args[1].kind == "ones" and is_matrix(product) and product.shape[1] == 1 and \
                self.bind(node.args[0]).shape[1] == N and product.shape[0] % self.summed == 0:
            # a batch's sequence summed over the samples, the notes' (∂L/∂A_2 1_N)_t: one sequence, step t column t
            return Steps(product, self.summed)
        return product

    def _bind_sum(self, node):
        """\\sum_{t=1}^{T}: the steps' columns summed, unless a product has already summed them (Σ_t δ_t a_tᵀ)."""
        if node.args[1] != "time" or not self.length:
            return super()._bind_sum(node)
        a = self.bind(node.args[0])
        if is_matrix(a) and a.shape[1] == self.length:
            return sp.MatMul(a, sp.OneMatrix(self.length, 1))
        return a

    def through_norm(self, expected):
        """Point σ_t, x̂_t, g_t at the layer norm the gradient ``expected`` goes through (none: None)."""
        own = expected.args[0] if isinstance(expected, Steps) else expected
        self._norm = next((n for n in self.norms if own in n[0]), None)
