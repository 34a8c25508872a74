"""Checking a derivation of backpropagation through time: a network whose first layer is ``rnn``, ``lstm`` or
``gru`` (after an ``embedding`` of token ids, or not), then at most one dense layer.

The recurrence is one node of the derivation graph, so the names people give its steps (x_t, h_t,
h_{t-1}, a_t, δ_t, dh_t, c_t, the LSTM's gates i_t, f_t, g_t (\\tilde c_t), o_t) stand for per-step
values the checker builds itself: the network is shrunk as ``derive.verify`` shrinks it (T = 3,
widths 2), and at each random point the derivation's own steps give the recurrent layer's input,
weights and upstream gradient, the cell's ``step`` unrolls the forward pass and its ``back`` runs the
backward loop from t = T down to 1, keeping every step's dh_t, δ_t (and dc_t). A person's expression
is compared with the quantity at those points (as ``compare`` does), never proved symbolically; the
verdict names the sizes.

Names: Goodfellow's U, W, V, b, c (W_ih, W_hh, the output weights and biases), PyTorch's W_ih, W_hh,
b_ih, b_hh, Karpathy's Wxh, Whh, Why, bh, by, dhraw (δ_t), dhnext (the share of step t + 1 in dh_t),
``hs[t]``, ``xs[t]``, ``ps[t]``, cs231n's Wx, Wh (stored in × out, batch-first), prev_h, next_h, dnext_h
(dh_t), dprev_h (the share step t passes to h_{t-1}) and dtanh (δ_t). A time index is t, t ± 1, T,
T + 1 or a number (``^{(t)}`` and ``^{<t>}`` too); h_0 = c_0 = 0 and every backward quantity at T + 1
is 0. ``\\sum_t`` and ``\\sum_{t=1}^{T}`` sum the product after them over the steps, and ``dW += ...``
(Karpathy's accumulation) is a sum over t. An equation in t (``\\delta_t = ... \\delta_{t+1} ...``) is a
rule checked at every t = 1, ..., T. The usual mistakes are named: the sum over t missing, the path
from step t + 1 into dh_t dropped, W_hh untransposed on it, f' taken at h_t or h_{t-1} instead of the
pre-activation, f' left out, h_t for h_{t-1} in dW_hh, the forget-gate path of dc_t missing (LSTM), and
a constant factor (the loss is the mean over the T steps).

After an embedding, E (W_e, W_emb) is nn.Embedding's (V, D) table, e_t or x_t the embedded step and
onehot(x_t) the token's one-hot column; dL/dE = Σ_t onehot(x_t) dx_tᵀ, and the loop's dE[x_t] += dx_t
scatters each step's share into its token's row (dE[x_t] = dx_t, which overwrites a repeated token's row,
is named). A GRU is read in torch's equations: r_t, z_t, n_t (\\tilde h_t), their δs, the gate blocks
W_ir .. b_hn, b_ih and b_hh apart, δ^h_t = [δ^r_t; δ^z_t; r_t ⊙ δ^n_t] what W_hh h_(t-1) + b_hh gets;
its usual mistakes are check-code's (``diagnose.BoundCell`` makes them at each step). The notes' own
spellings read too: δh_t, δc_t, (∂L/∂h_t)_out, δ^x_t, and a stacked [A; B; C] as the whole right side.
"""
import random
import re
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..chain import Derivation
from ..errors import ChainruleError, did_you_mean
from ..ops.activations import make_activation
from ..ops.recurrent import BPTT, _Affine, unroll
from ..printing import MathLatex, MathText
from ..steps import N
from ..verify import shrink, sizes
from .bind import Binder, Ones, ShapeMismatch, resized
from .diagnose import BoundCell
from .compare import BATCH, Point, _agreement, numeric_value
from .parse import MAX_LENGTH, Node, NotAGradient, parse_equation
from .results import CheckResult, RuleResult, _LayerVerdict

CELLS = ("rnn", "lstm", "gru")
# the GRU step's usual mistakes, as check-code names them (diagnose.BoundCell makes them)
GRU_WORLDS = {"swapped": {"swapped": True}, "bias_outside": {"bias_outside": True}, "z_path": {"z_path": True},
              "gru_at_h": {"gru_prime": "output"}, "gru_at_pre": {"gru_prime": "pre"}}
GRU_BLOCKS = ("r", "z", "n")  # torch's order of the stacked gates
POINTS = 4
ONE_SAMPLE = ("sample", "goodfellow")
READ_IN = ("sample", "goodfellow", "columns", "rows")


def recurrent(network) -> bool:
    """Whether the network has a recurrent layer (``RecurrentChecker`` reads it, or says why not)."""
    return any(layer.kind in ("rnn", "lstm", "gru") for layer in network.layers)


# -- the text: time indices as names the parser keeps apart ----------------------------------------------
_SUM_T = re.compile(r"\\sum\s*(?:_\s*(?:\{\s*t\s*(?:=\s*[01]\s*)?\}|t(?![A-Za-z]))\s*(?:\^\s*(?:\{\s*(?:T|\\tau)\s*\}|T|\\tau))?)"
                    r"|∑_t|Σ_t|Σ_\{t\}")
_SUPER_T = re.compile(r"\^\s*\{\s*(?:\(\s*|<\s*|\\langle\s*)(t|T|\\tau)\s*([+-]\s*1)?\s*(?:\)|>|\\rangle)\s*"
                      r"(\\top|T|')?\s*\}")
_LAST = re.compile(r"_\s*(?:\{\s*T\s*([+-]\s*1)?\s*\}|T(?![A-Za-z0-9]))")
_SQUARE = re.compile(r"(_\s*(?:\{\s*(?:t|last)(?:\s*[+-]\s*1)?\s*\}|t(?![A-Za-z0-9])))\s*\^\s*(?:\{\s*2\s*\}|2)")
_LIST = re.compile(r"\b(hs|xs|ps|ys|cs)\[\s*(t\s*[+-]\s*1|t)\s*\]")
_LISTED = {"hs": "h", "xs": "x", "ps": "yhat", "ys": "o", "cs": "c"}
_GATE = re.compile(r"\\delta\s*\^\s*\{?\s*([ifgocrznxh])\s*\}?")
# The step functions' dh_next, h_prev (the gradient into step t, the state before it) as cs231n spells them,
# dnext_h, prev_h: Karpathy's dhnext, written as one word, is step t + 1's share instead.
_STEP_FUNCTION = re.compile(r"\b(d?)(h)_(next|prev)\b")
# A step's forward value as the notes and courses name it (a_t, i_t, \tilde c_t, a^{i}_t, h_{t-1}, c_T): an
# equation defining one is the forward pass, which the spec gives; it is skipped, not checked.
_FORWARD_STEP = re.compile(r"\s*(?:\\tilde\s*\{?\s*)?[xhazcifgonreXHAZE]\s*\}?(?:\^\{?\s*[a-z]\s*\}?)?"
                           r"_\{?\s*(?:t|T|\d+)(?:\s*[-+]\s*1)?\s*\}?\s*|\s*\\hat\s*\{?\s*[yY]\s*\}?\s*")
# The notes' stack of one expression per step, [W_3^T δ_{3,t}]_{t=1}^{T}: read as the expression at step t
_STACK_T = re.compile(r"\\left\s*\[(.*?)\\right\s*\]\s*_\s*\{\s*t\s*=\s*1\s*\}\s*\^\s*(?:\{\s*T\s*\}|T)", re.S)
# The notes' names carry the layer's number: W_{ih,2}, δ_{3,t} (layer 3 at step t), h_2 (layer 2, every step)
_LAYER_PARAM = re.compile(r"([a-z]+),(\d+)")
_LAYER_STEP = re.compile(r"([a-z]+?)(\d+)(?:,(.+))?")
# dE[x_t] += dx_t, dW_emb[ids] = dX: a step's share scattered into its token's row of the table
_ROW_OF = re.compile(r"(d\s*[A-Za-z][\w{}\\]*)\s*\[(?:[^\[\]]|\[[^\]]*\])*\]\s*(\+)?")
# onehot(x_t), \text{one\_hot}(x_t): the token at step t as a one-hot column, one name the parser reads
_ONEHOT = re.compile(r"(?:\\(?:text|operatorname|mathrm)\s*\{\s*)?one[_-]?hot\s*\}?\s*(?:\\left\s*)?\(\s*x\s*"
                     r"(_\s*(?:\{[^{}()]*\}|[A-Za-z0-9]+))\s*(?:\\right\s*)?\)", re.IGNORECASE)
_TILDE = re.compile(r"\\(?:tilde|widetilde)\s*\{?\s*[cC]\s*\}?")
# the notes' δh_t, δc_t (dh_t, dc_t) and (∂L/∂h_t)_out, the output's share of dh_t
_DELTA_STATE = re.compile(r"\\delta\s*([hc])\s*_")
_OUT_SHARE = re.compile(r"(?:\\left\s*)?\(\s*\\frac\s*\{\s*\\partial\s*L\s*\}\s*\{\s*\\partial\s*h\s*(_\s*(?:\{[^{}]*\}|\w))\s*\}"
                        r"\s*(?:\\right\s*)?\)\s*_\s*\{?\s*(?:\\mathrm\s*\{\s*out\s*\}|out)\s*\}?")
_TILDE_H = re.compile(r"\\(?:tilde|widetilde)\s*\{?\s*h\s*\}?")  # the GRU's candidate h̃_t, torch's n_t


def rewrite_time(text: str) -> str:
    """The text with time sums as ``\\sumtime`` and time indices the parser keeps apart (T as ``last``)."""
    if len(text) > MAX_LENGTH:  # before the rewriting, as the tokenizer would (diag(...) is read recursively)
        raise ChainruleError(f"the expression is longer than {MAX_LENGTH} characters; shorten it")
    text = text.replace(r"\_", "_")  # Markdown's escaped subscripts
    text = re.sub(r"\bd_([ifgo])_pre\b", r"d\1pre", text)  # d_i_pre: i is a gate, not an entry index
    text = _STEP_FUNCTION.sub(lambda m: f"{m[1]}{m[3]}_{m[2]}", text)
    text = _OUT_SHARE.sub(r"gout\1", text)
    text = _DELTA_STATE.sub(r"d\1_", text)
    text = _SUM_T.sub(r" \\sumtime ", text)
    text = _STACK_T.sub(r"(\1)", text)
    text = _SUPER_T.sub(lambda m: "_{" + ("t" if m[1] == "t" else "last") + (m[2] or "").replace(" ", "") + "}"
                        + ("^T" if m[3] else ""), text)
    text = _LIST.sub(lambda m: f"{_LISTED[m[1]]}_{{{m[2].replace(' ', '')}}}", text)
    text = _LAST.sub(lambda m: "_{last" + (m[1] or "").replace(" ", "") + "}", text)
    text = _SQUARE.sub(r"\1**2", text)
    text = _ONEHOT.sub(r"onehot\1", text)
    text = _GATE.sub(lambda m: f"\\delta_{{gate{m[1]}}}", text)
    text = _TILDE.sub("g", text)
    text = _TILDE_H.sub("n", text)
    text = re.sub(r"(?<!\bnp)\.dot\(", " @ (", text)  # x.T.dot(d), not np.dot(x, d)
    return _diagonals(text)


def _diagonals(text: str) -> str:
    """Goodfellow's diag(v) M as v ⊙ (M): diag(v) scales the rows of the rest of its product."""
    m = re.search(r"(?:\\(?:text|operatorname|mathrm)\s*\{\s*diag\s*\}|\bdiag)\s*(?:\\left\s*)?\(", text)
    if not m:
        return text
    inner_end = _closing(text, m.end())
    rest_end = _term_end(text, inner_end + 1)
    inner = text[m.end():inner_end].replace(r"\right", "")
    if not text[inner_end + 1:rest_end].strip():  # nothing after it (W^T δ diag(v)): read as ⊙ v, literally
        return _diagonals(text[:m.start()]) + f" \\odot ({inner})" + _diagonals(text[rest_end:])
    return (text[:m.start()] + f"(({inner}) \\odot ({_diagonals(text[inner_end + 1:rest_end])}))"
            + _diagonals(text[rest_end:]))


def _stacked(text: str):
    """The blocks of ``[A; B; C]`` when that is the whole text, or None."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    depth, cuts = 0, []
    for k, c in enumerate(text[1:-1], 1):
        depth += (c in "([{") - (c in ")]}")
        if depth < 0:
            return None  # [a] b [c]: the first bracket closes before the end
        if c == ";" and depth == 0:
            cuts.append(k)
    if not cuts:
        return None
    bounds = [0] + cuts + [len(text) - 1]
    return [text[a + 1:b].strip() for a, b in zip(bounds, bounds[1:])]


def _closing(text: str, start: int) -> int:
    depth = 1
    for k in range(start, len(text)):
        depth += (text[k] in "({") - (text[k] in ")}")
        if depth == 0:
            return k
    raise ChainruleError(f"unbalanced parentheses after diag in '{text}'")


def _term_end(text: str, start: int) -> int:
    """Where the product starting at ``start`` ends: a + or - (or a closing bracket) outside brackets."""
    depth = 0
    for k in range(start, len(text)):
        c = text[k]
        if c in "({[":
            depth += 1
        elif c in ")}]":
            if depth == 0:
                return k
            depth -= 1
        elif c in "+-=" and depth == 0 and text[k - 1:k + 1] != "**":
            return k
    return len(text)


# -- the names -------------------------------------------------------------------------------------------
# A person's stems for per-step quantities -> the checker's; ``\\delta^{i}_t`` is deltagatei.
_STEP_STEMS = {
    "x": "x", "e": "x", "onehot": "onehot", "h": "h", "a": "a", "z": "a", "c": "c", "i": "i", "f": "f", "g": "g",
    "delta": "delta", "dhraw": "delta", "dtanh": "delta", "yhat": "yhat", "y": "y", "o": "o",
    "deltagatei": "deltai", "deltagatef": "deltaf", "deltagateg": "deltag", "deltagateo": "deltao",
    "deltagatec": "dc", "r": "r", "n": "n",
    "deltagater": "deltar", "deltagatez": "deltaz", "deltagaten": "deltan", "gout": "gout",
    # the notes' δ^x_t, δ^h_t: what W_ih x_t + b_ih and W_hh h_(t-1) + b_hh get (one δ_t but for a GRU)
    "deltagatex": "delta", "deltagateh": "deltah", "nexth": "h", "prevh": "hprev", "dnexth": "dh", "dprevh": "carry", "dhnext": "next",
    "dy": "dy", "dscores": "dy", "dt": "delta", "hnext": "h", "hprev": "hprev", "dhprev": "carry",
    # an LSTM's loop body: c_prev, dc_next (step t + 1's share of dc_t), dc_prev, d_i_pre (δ^i_t), ...
    "cprev": "cprev", "dcnext": "cnext", "dcprev": "ccarry",
    "dipre": "deltai", "dfpre": "deltaf", "dgpre": "deltag", "dopre": "deltao",
}
# Stems that stand at step t without an index (Karpathy's and cs231n's loop bodies).
_IMPLICIT = ("x", "h", "dhraw", "dtanh", "dt", "nexth", "prevh", "hnext", "hprev", "dnexth", "dprevh", "dhnext",
             "dhprev", "dy", "dscores", "c", "i", "f", "g", "o", "cprev", "dcnext", "dcprev", "dipre", "dfpre", "dgpre",
             "dopre")
# A step quantity -> the checker's name for its gradient.
_GRADIENT_OF = {"h": "dh", "x": "dx", "a": "delta", "c": "dc", "out": "dy", "i": "di", "f": "df", "g": "dg",
                "o": "do", "r": "dr", "z": "dz", "n": "dn"}
_LSTM_ONLY = ("c", "i", "f", "g", "o", "cprev", "dcnext", "dcprev", "dipre", "dfpre", "dgpre", "dopre")
_TIME = re.compile(r"(?P<t>t|last)(?P<off>[+-]1)?|(?P<n>\d)")


@dataclass
class _Quantity:
    text: str      # the correct right-hand side, columns form
    latex: str


class RecurrentChecker(Binder):
    """One recurrent derivation in one convention: per-step names, values at points, verdicts."""

    def __init__(self, derivation, convention="sample"):
        net = derivation.network
        self.embedded = net.layers[0].kind == "embedding"  # token ids, embedded, then the recurrent layer
        body = net.layers[1:] if self.embedded else net.layers
        layer = body[0] if body else net.layers[0]
        if layer.kind not in CELLS:
            raise ChainruleError(f"chainrule check reads a recurrent network whose first layer is rnn, lstm or gru, and this "
                                 f"one's is {layer.kind} (an embedding may come before it); check the derivation with "
                                 f"derive.verify")
        if len(body) > 2 or (len(body) == 2 and body[1].kind != "dense"):
            raise ChainruleError("chainrule check reads a recurrent layer followed by at most one dense layer; check "
                                 "the same steps on that network (deeper ones with derive.verify)")
        if net.input_shape[0][0] != "length":
            raise ChainruleError("chainrule check reads a recurrent layer over a sequence of features or of token ids; "
                                 "check this network with derive.verify")
        if convention not in READ_IN:
            raise ChainruleError(f"chainrule check reads a recurrent network in the {', '.join(READ_IN)} conventions, "
                                 f"not {convention}")
        self.derivation, self.convention = derivation, convention
        small = shrink(net)
        self.small = derivation if small == net else Derivation(small)
        self.net = self.small.network
        self.l = 2 if self.embedded else 1  # the recurrent layer's number in the derivation's names (W_ih2, ...)
        self.cell_layer = self.net.layers[self.l - 1]
        self.batch = convention not in ONE_SAMPLE
        self.rows, self.ng = convention == "rows", False  # Binder's operators read them
        self.sweep = self.small.batch if self.batch else self.small.sample
        self.q = self.sweep.quantities
        self.kind, self.f = self.cell_layer.kind, self.cell_layer.nonlinearity
        self.T = self.cell_layer.length
        self.sequences = self.cell_layer.return_sequences
        self.layers = len(self.net.layers) - self.embedded  # the recurrent layer and the output layer, if any
        self.columns = BATCH if self.batch else 1
        self.flags, self._bound, self.shared, self.drawn = [], {}, {}, {}
        self.node = next(a for s in self.sweep.steps for a in s.rhs.atoms(BPTT))
        # The spec's own sizes, which the notes print (1/20 for T = 20, \mathbf{1}_{30}), read as the shrunk
        # network's: the steps' count in a denominator, and a ones vector's length
        self.spec_steps = net.layers[self.l - 1].length
        self.resized = resized(derivation, self.small)
        self._symbols()
        self._points = None

    # -- per-step symbols and the names that stand for them ---------------------------------------------
    def _symbols(self):
        layer, l = self.cell_layer, self.l
        H, F = layer.hidden_size, self.q[f"W_ih{l}"].symbol.shape[1]
        gates = {"rnn": 1, "lstm": 4, "gru": 3}[self.kind] * H
        K = self.net.layers[l].units if self.layers == 2 else H
        shapes = {"x": F, "h": H, "a": gates, "delta": gates, "deltah": gates, "dh": H, "carry": H, "dx": F, "gout": H}
        if self.embedded:  # the token at step t, a one-hot column of V entries
            shapes["onehot"] = self.q["W1"].symbol.shape[0]
        if self.kind == "lstm":
            shapes.update({k: H for k in ("c", "dc", "i", "f", "g", "o", "deltai", "deltaf", "deltag", "deltao",
                                          "di", "df", "dg", "do", "ccarry")})
        if self.kind == "gru":
            shapes.update({k: H for k in ("r", "z", "n", "deltar", "deltaz", "deltan", "dr", "dz", "dn")})
        if self.layers == 2:
            shapes.update({"yhat": K, "y": K, "out": K, "dy": K})
        else:
            shapes.update({"y": H})
        self.shapes = shapes
        self.sym = {(stem, t): sp.MatrixSymbol(f"{stem}_{t}", rows, self.columns)
                    for stem, rows in shapes.items() for t in range(1, self.T + 1)}
        q = self.q
        p = {name: q[f"{name}{l}"].symbol for name in ("W_ih", "W_hh", "b_ih", "b_hh")}
        ones = sp.OneMatrix(1, self.columns)
        bias = sp.MatAdd(p["b_ih"], p["b_hh"])
        self.params = {"wih": p["W_ih"], "whh": p["W_hh"], "bih": p["b_ih"] * ones, "bhh": p["b_hh"] * ones,
                       "b": bias * ones}
        self.param_grads = {"wih": q[f"dL_dW_ih{l}"].symbol, "whh": q[f"dL_dW_hh{l}"].symbol,
                            "bih": q[f"dL_db_ih{l}"].symbol, "bhh": q[f"dL_db_hh{l}"].symbol,
                            "b": q[f"dL_db_ih{l}"].symbol}
        if self.layers == 2:
            self.params.update({"wy": q[f"W{l + 1}"].symbol, "by": q[f"b{l + 1}"].symbol * ones})
            self.param_grads.update({"wy": q[f"dL_dW{l + 1}"].symbol, "by": q[f"dL_db{l + 1}"].symbol})
        # a GRU's gate blocks of the stacked weights and biases (W_ir, W_iz, W_in, ..., b_hn) and their gradients
        self.blocks = {}
        if self.kind == "gru":
            for part, (w, b) in (("i", (p["W_ih"], p["b_ih"])), ("h", (p["W_hh"], p["b_hh"]))):
                for k, gate in enumerate(GRU_BLOCKS):
                    for kind, whole in (("w", w), ("b", b)):
                        key = f"{kind}{part}{gate}"
                        block = sp.MatrixSymbol(f"{kind.upper()}_{part}{gate}", H, whole.shape[1])
                        self.blocks[key] = (block, whole, k, H)
                        self.params[key] = block if kind == "w" else block * ones
                        self.param_grads[key] = sp.MatrixSymbol(f"dL_d{kind.upper()}_{part}{gate}", H, whole.shape[1])
        if self.embedded:  # nn.Embedding's table, (V, D) in every convention
            self.params["wemb"], self.param_grads["wemb"] = q["W1"].symbol, q["dL_dW1"].symbol
        self.acts = {1: make_activation(self.f, "rnn")}
        if self.layers == 2:
            self.acts[2] = self.net.layers[l].activation
        self.preactivations = {}
        # every person's spelling of a weight or bias -> the checker's key
        self.aliases = {"wih": "wih", "wxh": "wih", "u": "wih", "wax": "wih", "w1": "wih",
                        "whh": "whh", "w": "whh", "waa": "whh",
                        "bih": "bih", "bhh": "bhh", "b": "b", "bh": "b", "ba": "b", "b1": "b",
                        "why": "wy", "v": "wy", "wy": "wy", "wya": "wy", "who": "wy", "w2": "wy", "whq": "wy",
                        "by": "by", "b2": "by", "bq": "by"}
        if self.embedded:  # W1 is the table, the dense layer's weights are W3, b3
            for name in ("w1", "b1", "w2", "b2"):
                del self.aliases[name]
            self.aliases.update({"w3": "wy", "b3": "by", "e": "wemb", "we": "wemb", "wemb": "wemb", "wembed": "wemb",
                                 "emb": "wemb", "embedding": "wemb", "w1": "wemb"})
        if self.kind == "gru":  # two bias vectors that differ in their n block: no summed b
            for name in ("b", "bh", "ba", "b1"):
                self.aliases.pop(name, None)
            self.aliases.update({key: key for key in self.blocks})
            self.aliases.update({"bh": "bhh", "bx": "bih"})
        if self.kind == "rnn":
            self.aliases["c"] = "by"  # Goodfellow's output bias (an LSTM's c_t is its cell state)
        self.cs231n = {"wx": "wih", "wh": "whh"}  # stored in × out (x @ Wx), as cs231n's rnn_step_forward
        self.shown = self._shown()

    def _shown(self) -> list:
        lstm = self.kind == "lstm"
        gru = self.kind == "gru"
        names = ["x_t, h_t, h_{t-1} (h_0 = 0), " + ("a_t" if gru else "a_t or z_t") + " (the pre-activation W_ih x_t + b_ih + W_hh h_{t-1} + b_hh"
                 + (", the four gates stacked" if lstm else ", the three gates stacked" if gru else "") + "); t, t ± 1, T, T + 1 or a step number; "
                 "Goodfellow's h^{(t)}, Karpathy's hs[t], xs[t]",
                 "W_ih (W_xh, Wxh, U), W_hh (Whh, W), b_ih, b_hh" + ("" if gru else ", b (bh: b_ih + b_hh)")
                 + "; cs231n's Wx, Wh stored in × out",
                 "dh_t (δh_t, dL/dh_t, \\nabla_{h^{(t)}} L, dnext_h): through the output, "
                 "(\\partial L/\\partial h_t)_{out}, and step t + 1",
                 "δ_t (δ^x_t, dhraw, dtanh, dL/da_t): the pre-activation's gradient, δ_{T+1} = 0"
                 + ("; δ^h_t = [δ^r_t; δ^z_t; r_t ⊙ δ^n_t], what W_hh h_{t-1} + b_hh gets" if gru else
                    "; [A; B; ...] stacks the gates' blocks"),
                 "dhnext (Karpathy: step t + 1's share of dh_t), dprev_h (cs231n: the share step t passes to h_{t-1})",
                 "dL/dW_ih, dL/dW_hh, dL/db_ih, dL/db_hh" + ("" if gru else ", dL/db (dWxh, dWhh, dbh)") + ", dL/dx_t",
                 "\\sum_t, \\sum_{t=1}^{T} (over the steps); dW += ... (a sum over t); a rule in t checked at every t"]
        if lstm:
            names.append("c_t (c_0 = 0), i_t, f_t, g_t (\\tilde c_t), o_t; dc_t (dL/dc_t), \\delta^i_t, \\delta^f_t, "
                         "\\delta^g_t, \\delta^o_t (the gates' pre-activation gradients)")
        if self.kind == "gru":
            names.append("r_t, z_t, n_t (\\tilde h_t: torch's n = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn)), "
                         "h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}); \\delta^r_t, \\delta^z_t, \\delta^n_t (the gates' "
                         "pre-activation gradients), dr_t, dz_t, dn_t (after their σ or tanh)")
            names.append("the gate blocks W_ir, W_iz, W_in, W_hr, W_hz, W_hn, b_ir, b_iz, b_in, b_hr, b_hz, b_hn and "
                         "their dL/dW_hn, ...; b_ih (bx) and b_hh (bh) apart (their n blocks' gradients differ)")
        if self.layers == 2:
            out = "o_t" if not lstm else "the output's pre-activation"
            w, b = ("W3", "b3") if self.embedded else ("W2", "b2")
            names.append(f"W_hy (Why, V, W_y, {w}), b_y (by, {'c, ' if self.kind == 'rnn' else ''}{b}); y_t, ŷ_t (ps[t]), "
                         f"{out}; dy_t (dscores, dL/do_t: the output's pre-activation gradient); dL/dW_hy, dL/db_y")
        if self.embedded:
            names.append("the embedding: E (W_e, W_emb, W1: nn.Embedding's table, V × D), e_t or x_t (the embedded step, "
                         "E's row for the token at step t), onehot(x_t) (the token as a one-hot column); dL/dE (dE, "
                         "dW_e) = Σ_t onehot(x_t) dx_tᵀ, or the loop's dE[x_t] += dx_t (dE[x_t] = dx_t overwrites)")
        l, out = self.l, self.l + 1
        names.append(f"the notes' names, by layer: W_{{ih,{l}}}, W_{{hh,{l}}}, b_{{ih,{l}}}, b_{{hh,{l}}}, h_{{{l},t}}"
                     + (f", δ_{{{out},t}} (dy_t), W_{out}, b_{out}" if self.layers == 2 else "")
                     + (", e_{1,t} (x_t then the token's one-hot column)" if self.embedded else "")
                     + f"; h_{l}" + (f", δ_{out}, ŷ, y" if self.layers == 2 else "")
                     + f" for every step (a rule in t{'' if self.sequences else '; step T, the only output'}), "
                     f"dL/dh_{l} the output's share; [ ... ]_{{t=1}}^{{T}} stacks the steps; the spec's sizes "
                     f"(T = {self.spec_steps} in 1/{self.spec_steps}, \\mathbf{{1}}_K) read at the checked ones")
        if self.batch:
            names.append("N or m (batch size)")
        return names

    def accepted(self) -> list:
        return self.shown + [f"checked at {self._sizes()}"]

    def _sizes(self) -> str:
        return sizes(self.net) + (f", N = {self.columns}" if self.batch else ", one sample")

    # -- the notes' layer numbers ---------------------------------------------------------------------------
    def _numbered(self, tree: Node) -> bool:
        """Whether the equation names things as the notes do, by their layer: W_{ih,2}, δ_{3,t}, W_3, or the
        output ŷ without a step."""
        if tree.kind in ("name", "grad"):
            norm = tree.args[0]
            return bool(_LAYER_PARAM.fullmatch(norm) or "," in norm and _LAYER_STEP.fullmatch(norm)
                        or norm in (f"w{self.l + 1}", f"b{self.l + 1}") or norm in ("yhat", "y") and self.layers == 2)
        return any(self._numbered(a) for a in tree.args if isinstance(a, Node))

    def _renumbered(self, tree: Node) -> Node:
        """The tree with the notes' layer-numbered names as the checker's per-step ones: W_{ih,2} is W_ih, δ_{3,t}
        the output's dy_t, h_{2,t} h_t, e_{1,t} the embedded x_t, x_t the token's one-hot column; h_2, δ_3, ŷ, y
        (the whole sequence) are step t's (step T's when only h_T is output), and dL/dh_2 the output's share."""
        if tree.kind not in ("name", "grad"):
            return Node(tree.kind, tuple(self._renumbered(a) if isinstance(a, Node) else a for a in tree.args),
                        tree.text)
        norm, grad, kind = tree.args[0], tree.kind == "grad", tree.kind
        every = "t" if self.sequences else "last"
        param, step = _LAYER_PARAM.fullmatch(norm), _LAYER_STEP.fullmatch(norm)
        if param and param[1] in self.aliases:
            if int(param[2]) != self.l:
                raise ChainruleError(f"'{tree.text}' is layer {param[2]}'s, but the recurrent layer is layer {self.l}: "
                                     f"W_{{ih,{self.l}}}, W_{{hh,{self.l}}}, b_{{ih,{self.l}}}, b_{{hh,{self.l}}}")
            norm = param[1]
        elif step and self.layers == 2 and step[1] == "delta" and int(step[2]) == self.l + 1:
            norm = "dy" + (step[3] or every)
        elif step and step[1] == "h" and int(step[2]) == self.l:
            norm, kind = ("gout" if grad else "h") + (step[3] or every), "name"
        elif step and self.embedded and step[1] == "e" and int(step[2]) == 1 and step[3]:
            norm = "x" + step[3]
        elif norm in ("yhat", "y") and self.layers == 2:
            norm += every
        elif self.embedded and not grad and re.fullmatch(r"x(?:t|last|\d)(?:[+-]1)?", norm):
            norm = "onehot" + norm[1:]  # the notes' x_t is the token, a one-hot column of x
        return Node(kind, (norm,), tree.text)

    # -- time indices -------------------------------------------------------------------------------------
    def _split(self, norm: str):
        """(the checker's stem, time text or None) of a normalised name, or None when it is no step's."""
        for stem in sorted(_STEP_STEMS, key=len, reverse=True):
            for prefix, grad in (("", False), ("d", True), ("dld", True)):
                if not norm.startswith(prefix + stem):
                    continue
                rest = norm[len(prefix + stem):]
                if rest and not _TIME.fullmatch(rest):
                    continue
                if not rest and (stem not in _IMPLICIT or stem in _LSTM_ONLY and self.kind != "lstm") \
                        and not (grad and stem in "xh"):
                    continue  # an RNN's c is Goodfellow's output bias
                own = _STEP_STEMS[stem]
                if stem == "z" and self.kind == "gru":  # the update gate, not a pre-activation
                    own = "z"
                if own == "o" and self.kind != "lstm":  # Goodfellow's o^(t) (an LSTM's o_t is its output gate)
                    own = "out"
                if grad:
                    own = _GRADIENT_OF.get(own)
                    if own is None:
                        continue
                return own, rest or "t"
        return None

    def _timed(self, node: Node) -> bool:
        if node.kind in ("name", "grad"):
            return self._split(node.args[0]) is not None and self._split(node.args[0])[1] in ("t", "t+1", "t-1")
        return any(self._timed(a) for a in node.args if isinstance(a, Node))

    def _at(self, node: Node, t):
        """``node`` with every step index made a number (t at ``t``; T is the last step)."""
        if node.kind in ("name", "grad"):
            split = self._split(node.args[0])
            if split is None:
                return node
            stem, when = split
            if node.kind == "grad":  # \\nabla_{h^{(t)}} L, \\frac{\\partial L}{\\partial h_t}
                stem = _GRADIENT_OF.get(stem)
                if stem is None:
                    raise ChainruleError(f"'{node.text}' is not a gradient this checker knows; use dL/dh_t, dL/da_t, "
                                         f"dL/dx_t" + (", dL/dc_t" if self.kind == "lstm" else ", dL/do_t"))
            m = _TIME.fullmatch(when)
            if stem in ("yhat", "y", "out", "dy") and not self.sequences and when == "t":
                m = _TIME.fullmatch("last")  # only h_T is output: the output layer's quantities are step T's
            if m["n"]:
                step = int(m["n"])
            else:
                if m["t"] == "t" and t is None:
                    raise _Free()
                step = (t if m["t"] == "t" else self.T) + int(m["off"] or 0)
            return Node("name", (f"{stem}@{step}",), node.text)
        if node.kind == "sum" and node.args[1] == "time":
            return node  # its own t, bound at each step by _bind_sum
        return Node(node.kind, tuple(self._at(a, t) if isinstance(a, Node) else a for a in node.args), node.text)

    # -- binding ------------------------------------------------------------------------------------------
    def view(self, value):
        return sp.Transpose(value) if self.rows and isinstance(value, sp.MatrixExpr) else value

    def _bind_name(self, node):
        norm = node.args[0]
        if "@" in norm:
            return self.view(self._step_value(norm, node))
        if norm in self.cs231n:
            if not self.rows:
                raise ShapeMismatch(f"{node.text} is cs231n's weight, stored in × out for batch-first rows")
            return sp.Transpose(self.params[self.cs231n[norm]])
        if norm in self.aliases:
            key = self.aliases[norm]
            return self.params[key] if key[0] == "w" else self.view(self.params[key])
        if norm[:1] == "d" and norm[1:] in self.aliases:
            return self._param_grad(norm[1:])
        if norm.startswith("dld") and norm[3:] in self.aliases:
            return self._param_grad(norm[3:])
        if norm[:1] == "d" and norm[1:] in self.cs231n:
            return self._param_grad(norm[1:])
        if norm in ("n", "m"):
            if not self.batch:
                raise ChainruleError(f"'{node.text}' is the batch size, which one sample does not have; "
                                     f"use --convention columns or rows")
            return N
        if re.search(r"t[+-]\d", norm):
            raise ChainruleError(f"'{node.text}': a step is written t - 1, t, t + 1, T, T + 1 or a number")
        raise ChainruleError(f"unknown name '{node.text}'{did_you_mean(norm, list(self.aliases) + list(_STEP_STEMS))}; "
                             f"chainrule check SPEC --names lists the names of this network")

    def _bind_div(self, node):
        """1/20 or 1/(20 N) with the spec's T = 20: the mean over the steps, checked at the shrunk T."""
        return super()._bind_div(Node(node.kind, (node.args[0], self._steps_count(node.args[1])), node.text))

    def _steps_count(self, node):
        if node.kind == "num" and node.args[0] == str(self.spec_steps):
            return Node("num", (str(self.T),), node.text)
        if node.kind == "mul":
            return Node("mul", tuple(self._steps_count(a) if isinstance(a, Node) else a for a in node.args), node.text)
        return node

    def _param_grad(self, name):
        if name in self.cs231n:
            if not self.rows:
                raise ShapeMismatch(f"d{name} is the gradient of cs231n's weight, stored in × out for batch-first rows")
            return sp.Transpose(self.param_grads[self.cs231n[name]])
        key = self.aliases[name]
        g = self.param_grads[key]
        return self.view(g) if key[0] == "b" else g

    def _bind_grad(self, node):
        return self._bind_name(Node("name", ("dld" + node.args[0],), node.text))

    def _step_value(self, norm, node):
        stem, step = norm.split("@")
        step = int(step)
        if stem == "next":  # Karpathy's dhnext at step t: what step t + 1 passed back
            stem, step = "carry", step + 1
        if stem in ("hprev", "cprev"):
            stem, step = stem[0], step - 1
        if stem == "cnext":  # dc_next at step t: what step t + 1 passed back to c_t
            stem, step = "ccarry", step + 1
        if stem not in self.shapes:
            raise ChainruleError(f"'{node.text}' names nothing of this network ({self.kind}"
                                 f"{' followed by a dense layer' if self.layers == 2 else ''})")
        rows = self.shapes[stem]
        if step == self.T + 1 and stem not in ("x", "y") or step == 0 and stem in ("h", "c"):
            return sp.ZeroMatrix(rows, self.columns)  # h_0 = c_0 = 0; nothing comes back from step T + 1
        if not 1 <= step <= self.T:
            raise _Absent(node, step)
        if not self.sequences and stem in ("yhat", "y", "out", "dy") and step != self.T:
            raise ChainruleError(f"'{node.text}': only h_T is the layer's output (return_sequences = false), so the "
                                 f"output layer has step T only")
        return self.sym[(stem, step)]

    def _bind_sum(self, node):
        if node.args[1] != "time":
            return super()._bind_sum(node)
        parts = [self.bind(self._at(node.args[0], t)) for t in range(1, self.T + 1)]
        if any(isinstance(p, Ones) for p in parts):
            raise ChainruleError(f"a ones vector alone cannot be summed over t in '{node.text}'")
        return sp.MatAdd(*parts) if all(isinstance(p, sp.MatrixExpr) for p in parts) else sp.Add(*parts)

    def _bind_stack(self, node):
        parts = [self.bind(a) for a in node.args]
        if not all(isinstance(p, sp.MatrixExpr) for p in parts):
            raise ShapeMismatch(f"'{node.text}' stacks something that is not a matrix")
        parts = [sp.Transpose(p) if self.rows else p for p in parts]  # columns form
        if len({p.shape[1] for p in parts}) > 1:
            raise ShapeMismatch(f"the blocks of '{node.text}' have different numbers of columns")
        total, start, placed = sum(p.shape[0] for p in parts), 0, []
        for p in parts:  # block k placed by a constant selection matrix: numeric_value evaluates it
            select = sp.zeros(total, p.shape[0])
            select[start:start + p.shape[0], :] = sp.eye(p.shape[0])
            placed.append(sp.ImmutableMatrix(select) * p)
            start += p.shape[0]
        stacked = sp.MatAdd(*placed)
        return sp.Transpose(stacked) if self.rows else stacked

    def _layer_of(self, node):
        """The layer whose pre-activation ``node`` names: a_t is the recurrent layer's, o_t the output's."""
        if node.kind != "name" or "@" not in node.args[0]:
            return None
        stem = node.args[0].split("@")[0]
        return 1 if stem == "a" and self.kind == "rnn" else 2 if stem == "out" else None

    def _bind_act(self, node):
        name, prime, arg = node.args
        if name == "softmax" and not prime and self.layers == 2 and self._layer_of(arg) == 2:
            return self.view(self.sym[("yhat", int(arg.args[0].split("@")[1]))])  # softmax(o_t) is ŷ_t
        if name == "softmax":
            raise ChainruleError(f"'{node.text}': the softmax is not element-wise; write the output's δ as its rule "
                                 f"(with cross-entropy, ŷ_t − y_t over the loss's mean)")
        return super()._bind_act(node)

    def _flag_wrong_derivative(self, node, layer, own, act):
        where = "the recurrent layer" if layer == 1 else "the output layer"
        self.flags.append(f"wrong activation derivative: {where} uses {own.name}, so '{node.text}' should be "
                          f"{own.name}'({'a_t' if layer == 1 else 'o_t'}), not {act.name}'")

    # -- the values at points -----------------------------------------------------------------------------
    def points(self):
        """Each random point's values (symbol -> array) in the true world and in each mistake's."""
        if self._points is None:
            self._points = [self._point(random.Random(seed)) for seed in range(1, POINTS + 1)]
        return self._points

    def _point(self, rng):
        draw = np.random.default_rng(rng.getrandbits(32))
        leaves = {}
        for q in self.q.values():
            if q.role not in ("data", "param"):
                continue
            rows, cols = (int(sp.sympify(s).subs(N, BATCH)) for s in q.symbol.shape)
            if q.role == "param" and self.embedded and q.layer == 1:  # the table, N(0, 1) as nn.Embedding's
                leaves[q.symbol] = draw.standard_normal((rows, cols))
            elif q.role == "param":
                cell = q.layer == self.l
                bound = 1 / np.sqrt(self.cell_layer.hidden_size) if cell else 1 / np.sqrt(cols)
                leaves[q.symbol] = draw.uniform(-bound, bound, (rows, cols)) * (2 if cell else 1)
            elif self.embedded and q.key.lower() == "x":  # a token id at each step, as its one-hot column
                V = self.shapes["onehot"]
                leaves[q.symbol] = np.vstack([np.eye(V)[:, draw.integers(V, size=cols)] for _ in range(self.T)])
            elif q.key.lower() == "y" and self.net.loss.name == "cross_entropy":
                K = rows // (self.T if self.sequences else 1)
                leaves[q.symbol] = np.vstack([np.eye(K)[:, draw.integers(K, size=cols)]
                                              for _ in range(rows // K)])
            else:
                leaves[q.symbol] = draw.standard_normal((rows, cols))
        rhs = {s.target.symbol: s.rhs for s in self.sweep.steps}
        onehots = []
        if self.embedded:  # the embedding's steps are computed here (its nodes have no numeric form)
            X, table = leaves[self.q["X" if self.batch else "x"].symbol], leaves[self.params["wemb"]]
            V = table.shape[0]
            onehots = [X[t * V:(t + 1) * V] for t in range(self.T)]
            embedded = self.sweep.steps[0].target.symbol
            leaves[embedded] = np.vstack([table.T @ k for k in onehots])
            for symbol in (embedded, self.param_grads["wemb"]):
                del rhs[symbol]
        point = Point(leaves, rhs)
        inputs = [np.asarray(numeric_value(m, point), dtype=float) for m in self.node.mats]
        del inputs[1]  # G, X, W_ih, W_hh, b_ih, b_hh: the BPTT node's output is not read
        true = self._bptt(*inputs, None, False)
        self._scatter(true, onehots, None)
        env = dict(point.items())
        for stem, t in self.sym:
            if stem in ("yhat", "y", "out", "dy", "onehot"):
                continue
            env[self.sym[(stem, t)]] = true[stem][t - 1]
        for t, k in enumerate(onehots, 1):
            env[self.sym[("onehot", t)]] = k
        for key, (block, whole, k, H) in self.blocks.items():
            env[block] = np.asarray(point[whole])[k * H:(k + 1) * H]
            env[self.param_grads[key]] = true["grads"][key]
        if self.embedded:
            env[self.param_grads["wemb"]] = true["grads"]["wemb"]
        if self.layers == 2:
            K, lastonly = self.shapes["yhat"], not self.sequences
            for stem, key in (("yhat", self._key("yhat")), ("y", self._key("y")), ("out", self._key("z2")),
                              ("dy", self._key("delta2"))):
                value = point[self.q[key].symbol]
                for t in range(1, self.T + 1):
                    block = value if lastonly else value[(t - 1) * K:t * K]
                    env[self.sym[(stem, t)]] = block if (not lastonly or t == self.T) else np.zeros_like(block)
        true["env"] = env

        def world(key):  # a mistake's world, computed when the diagnosis first asks for it
            made = self._bptt(*inputs, *key)
            self._scatter(made, onehots, key[0])
            made["env"] = self._world_env(env, made)
            return made
        return _Worlds(world, {(None, False): true})

    def _key(self, name):
        name = name.replace("2", str(self.l + 1))  # the output layer's Z, Δ
        return {"yhat": "Yhat", "y": "Y"}.get(name, name.capitalize()) if self.batch else name

    def _world_env(self, env, world):
        out = dict(env)
        for stem, t in self.sym:
            if stem in world:
                out[self.sym[(stem, t)]] = world[stem][t - 1]
        for key, value in world["grads"].items():
            out[self.param_grads[key]] = value
        return out

    def _worlds(self) -> list:
        """(mistake, local) of every world a point is computed in: each mistake made at every step from the
        true upstream values (local), and carried through the backward loop; the missing sum has one."""
        return [(m, local) for m in self._mistakes()
                for local in ((True, False) if m not in ("last_only", "overwrite") else (False,))]

    def _mistakes(self) -> list:
        both = ["no_path", "last_only"] + (["overwrite"] if self.embedded else [])
        if self.kind == "rnn":
            return both + ["untransposed", "f_at_h", "f_at_prev", "f_missing", "h_for_prev"]
        if self.kind == "gru":  # its own first: at t = 1 (h_0 = 0) several worlds agree, the cell's is the clue
            return list(GRU_WORLDS) + both + ["h_for_prev"]
        return both + ["no_forget", "h_for_prev"]

    def _bptt(self, G, X, W_ih, W_hh, b_ih, b_hh, mistake, local):
        """Every step's forward and backward values, with ``mistake`` made (``local``: made at each step
        from the true upstream values, so a rule that names them is judged by its own step only)."""
        cell, spec = self.node.spec.cell, self.node.spec
        M = [sp.ImmutableMatrix(m) for m in (X, W_ih, W_hh, b_ih, b_hh)]
        P = _Affine(*M[1:])
        hs, saved, xs = unroll(spec, *M)
        H, T, n = W_hh.shape[1], self.T, X.shape[1]
        zero = sp.zeros(H, n)
        Gm = sp.ImmutableMatrix(G)
        rec = {k: [None] * T for k in ("dh", "delta", "deltah", "gout", "carry", "dx", "dc", "deltai", "deltaf", "deltag", "deltao",
                                       "di", "df", "dg", "do", "ccarry", "deltar", "deltaz", "deltan", "dr", "dz",
                                       "dn")}
        true_carry = wrong_carry = (zero,) * cell.states
        grads = {"wih": sp.zeros(*W_ih.shape), "whh": sp.zeros(*W_hh.shape), "bih": sp.zeros(W_hh.shape[0], 1),
                 "bhh": sp.zeros(W_hh.shape[0], 1)}
        for t in reversed(range(T)):
            out = Gm[t * H:(t + 1) * H, :] if spec.sequences else (Gm if t == T - 1 else zero)
            results = []
            for carry, wrong in ((true_carry, False), (wrong_carry, True)):
                made = mistake if wrong else None
                dh = out + (zero if made == "no_path" else carry[0])
                keep = saved[t]
                if made == "f_at_h":
                    keep = hs[t]
                elif made == "f_at_prev":  # f' at a_(t-1): 1 - h_(t-1)² for tanh (a_0 = 0 gives h_0 = 0)
                    keep = saved[t - 1] if t else zero
                extra = None
                if made in GRU_WORLDS:
                    dgi, dgh, direct, extra = BoundCell(cell, None, None, T, GRU_WORLDS[made], {})._gru_back(
                        P, keep, dh, xs[t])
                else:
                    dgi, dgh, direct = cell.back(P, keep, (dh,) + carry[1:])
                if made == "f_missing":
                    dgi = dgh = dh
                if made == "no_forget" and cell.states == 2:
                    direct = (direct[0], zero)
                share = (P.W_hh if made == "untransposed" else P.W_hh.T) * dgh + direct[0]
                results.append((dh, dgi, dgh, share, direct, carry, extra))
            (dh, dgi, dgh, share, direct, carry, _), wrong_result = results
            true_carry = (share,) + direct[1:]
            shown = wrong_result if mistake is not None else results[0]
            if not local and mistake is not None:
                wrong_carry = (wrong_result[3],) + wrong_result[4][1:]
            else:
                wrong_carry = true_carry
            dh_s, dgi_s, dgh_s, share_s, direct_s, carry_s, extra_s = shown
            rec["dh"][t], rec["delta"][t], rec["carry"][t] = dh_s, dgi_s, share_s
            rec["deltah"][t], rec["gout"][t] = dgh_s, out
            rec["dx"][t] = P.W_ih.T * dgi_s
            if cell.states == 2:
                i, f, g, o, c_prev, tc = saved[t]
                one = sp.ones(H, n)
                dc = rec["dc"][t] = carry_s[1] + dh_s.multiply_elementwise(o).multiply_elementwise(
                    one - tc.multiply_elementwise(tc))
                # the gates' own gradients (after their σ or tanh), and the share passed back to c_(t-1)
                rec["di"][t], rec["df"][t], rec["dg"][t] = (dc.multiply_elementwise(v) for v in (g, c_prev, i))
                rec["do"][t], rec["ccarry"][t] = dh_s.multiply_elementwise(tc), direct_s[1]
                for k, name in enumerate(("deltai", "deltaf", "deltag", "deltao")):
                    rec[name][t] = dgi_s[k * H:(k + 1) * H, :]
            if self.kind == "gru":
                r, z, n_t, hn, h_before = saved[t]
                for k, gate in enumerate(GRU_BLOCKS):
                    rec["delta" + gate][t] = dgi_s[k * H:(k + 1) * H, :]
                # the gates' own gradients (after their σ or tanh)
                rec["dn"][t] = dh_s.multiply_elementwise(sp.ones(H, n) - z)
                rec["dz"][t] = dh_s.multiply_elementwise(h_before - n_t)
                rec["dr"][t] = rec["deltan"][t].multiply_elementwise(hn)
            if mistake == "last_only" and t != T - 1:
                continue
            h_prev = (hs[t] if mistake == "h_for_prev" else hs[t - 1] if t else zero)
            grads["wih"] += dgi_s * xs[t].T
            grads["whh"] += dgh_s * h_prev.T
            grads["bih"] += dgi_s * sp.ones(n, 1)
            grads["bhh"] += dgh_s * sp.ones(n, 1)
            if extra_s is not None:  # what b_hn read outside r ⊙ (...) adds to its block of db_hh
                grads["bhh"] += sp.Matrix.vstack(sp.zeros(2 * H, 1), extra_s)
        world = {k: [_array(v) for v in vs] for k, vs in rec.items() if vs[0] is not None}
        world["h"], world["x"] = [_array(h) for h in hs], [_array(x) for x in xs]
        world["a"] = [_array(P.ih(x) + P.hh(hs[t - 1] if t else zero)) for t, x in enumerate(xs)]
        if cell.states == 2:
            for k, name in enumerate(("i", "f", "g", "o")):
                world[name] = [_array(s[k]) for s in saved]
            world["c"] = [_array(s[4]) for s in saved[1:]] + [_array(_c_last(saved[-1]))]
        if self.kind == "gru":
            for k, gate in enumerate(GRU_BLOCKS):
                world[gate] = [_array(s[k]) for s in saved]
        world["grads"] = {key: _array(value) for key, value in grads.items()}
        world["grads"]["b"] = world["grads"]["bih"]
        for key, (block, whole, k, rows) in self.blocks.items():
            whole_key = {"wi": "wih", "wh": "whh", "bi": "bih", "bh": "bhh"}[key[:2]]
            world["grads"][key] = world["grads"][whole_key][k * rows:(k + 1) * rows]
        return world

    def _scatter(self, world, onehots, mistake):
        """The table's gradient from each step's dx_t: Σ_t onehot_t dx_tᵀ, a scatter-add (``overwrite``: each
        occurrence replaces the row, the last step's winning; ``last_only``: step T's share alone)."""
        if not onehots:
            return
        steps = list(zip(onehots, world["dx"]))
        if mistake == "last_only":
            steps = steps[-1:]
        world["grads"]["wemb"] = (_overwritten(steps) if mistake == "overwrite"
                                  else sum(k @ dx.T for k, dx in steps))

    # -- the verdict ----------------------------------------------------------------------------------------
    def check(self, wrt: str, text: str, diagnose: bool = True):
        if _FORWARD_STEP.fullmatch(wrt):
            raise NotAGradient(f"'{wrt.strip()}' is not a gradient: an equation for it is the forward pass, which "
                               f"chainrule derives from the spec; check dh_t, delta_t or a weight's dL/dW")
        self.diagnosing = diagnose
        wrt, written = wrt.strip(), text.strip()
        text = written
        row = _ROW_OF.fullmatch(wrt)
        if row and self.embedded and self.aliases.get(re.sub(r"[\s_{}\\]", "", row[1]).lower()[1:]) == "wemb":
            return self._scatter_check(row[1], bool(row[2]), wrt, written)
        if wrt.endswith("+"):  # Karpathy's dWhh += ...: the steps' shares summed over t
            wrt, text = wrt[:-1].strip(), rf"\sumtime ({written})"
        try:
            wrt_tree, tree = self._read(wrt, text)
        except ChainruleError as err:
            raise _as_written(err, wrt, written) from None
        if self._numbered(wrt_tree) or self._numbered(tree):
            wrt_tree, tree = self._renumbered(wrt_tree), self._renumbered(tree)
        wrt_tree, text = Node(wrt_tree.kind, wrt_tree.args, wrt), written  # the verdicts quote them as written
        if self._timed(wrt_tree):
            verdicts = []
            for t in range(1, self.T + 1):
                try:
                    verdicts.append(_LayerVerdict(t, self._one(self._at(wrt_tree, t), tree, text, t)))
                except _Absent as absent:
                    verdicts.append(_LayerVerdict(t, None, f"does not apply: {absent.node.text} would be step "
                                                           f"{absent.step}, and the steps are 1 to {self.T}"))
            if all(v.result is None for v in verdicts):
                raise ChainruleError(f"the rule '{wrt} = {text}' applies at no step of this network")
            return _rule_in_t()(wrt_tree.text, text, verdicts)
        try:
            return self._one(self._at(wrt_tree, None), tree, text, None)
        except _Free:
            raise ChainruleError(f"'{wrt}' has a free step t; write both sides in t to check a rule at every step")
        except _Absent as absent:
            raise ChainruleError(f"{absent.node.text} would be step {absent.step}, but this network's steps are 1 "
                                 f"to {self.T} (as checked: {self._sizes()})") from None

    def _read(self, wrt, text):
        pieces = _stacked(rewrite_time(text))
        if pieces:  # the notes' [δ^r_t; δ^z_t; δ^n_t]: the gates' blocks stacked
            wrt_tree = parse_equation(rewrite_time(wrt), pieces[0])[0]
            return wrt_tree, Node("stack", tuple(parse_equation(rewrite_time(wrt), p)[1] for p in pieces), text)
        return parse_equation(rewrite_time(wrt), rewrite_time(text))

    def _scatter_check(self, table, adds, wrt, text):
        """dE[x_t] += dx_t (``adds``) or dE[x_t] = dx_t in a loop over t: each step's share scattered into its
        token's row, added or assigned, against the table's gradient."""
        wrt_tree, tree = parse_equation(rewrite_time(table), rewrite_time(text))
        label, getter, quantity = self._target(wrt_tree, None)
        result = CheckResult(wrt, text, False, "", quantity.text, quantity.latex)
        self.flags, self._bound = [], {}
        try:
            shares = [self.bind(self._at(tree, t)) for t in range(1, self.T + 1)]
        except ShapeMismatch as err:
            result.diagnosis = str(err)
            return result
        shares = [sp.Transpose(s) if self.rows else s for s in shares]  # columns form, (D, N)
        if any(_shape(s) != (self.shapes["dx"], self.columns) for s in shares):
            result.diagnosis = (f"each step's share is {_shape_text(_shape(shares[0]))}, but a token's row gets "
                                f"dx_t, {_shape_text((self.shapes['dx'], self.columns))} in columns form")
            return result
        added = sp.MatAdd(*[self.sym[("onehot", t)] * s.T for t, s in enumerate(shares, 1)])
        worlds = self.points()
        expected = [getter(w[(None, False)]) for w in worlds]
        if adds:
            status = self._status(added, expected, worlds)
        else:
            try:
                assigned = [_overwritten([(w[(None, False)]["env"][self.sym[("onehot", t)]],
                                           self._values(s, [w])[0]) for t, s in enumerate(shares, 1)])
                            for w in worlds]
            except (TypeError, ValueError, KeyError, ZeroDivisionError) as err:
                status = f"yours could not be evaluated ({err})"
            else:
                status = "equal" if all(_agreement(a.ravel(), e.ravel()) == "agree"
                                        for a, e in zip(assigned, expected)) else "different"
        if status == "equal":
            result.equal = True
            result.proof = (f"equal at {len(worlds)} random points at {self._sizes()}, within 1e-07 of the "
                            f"gradient's largest entry")
        elif status != "different":
            result.undecided = status
        elif self.diagnosing:
            if not adds and self._agree(added, expected, worlds):
                result.diagnosis = self._messages()["overwrite"]
            else:
                result.diagnosis = self._diagnose(added, getter, expected, worlds, label) or \
                    "no usual mistake of backpropagation through time explains it"
        return result

    def _one(self, wrt_tree, tree, text, t):
        label, getter, quantity = self._target(wrt_tree, t)
        self.flags, self._bound = [], {}
        free = False
        try:
            mine = self.bind(self._at(tree, t))
        except _Free:
            free, mine = True, None
        except ShapeMismatch as err:
            mine, problem = None, str(err)
        result = CheckResult(label, text, False, "", quantity.text, quantity.latex)
        worlds = self.points()
        expected = [getter(w[(None, False)]) for w in worlds]
        if free:  # one step's term where the gradient sums them: bound at every t, it may be the sum's terms
            try:
                summed = sp.MatAdd(*[self.bind(self._at(tree, s)) for s in range(1, self.T + 1)])
            except ShapeMismatch as err:
                result.diagnosis = str(err)
                return result
            result.fits = _shape(summed) == expected[0].shape
            if result.fits and self._agree(summed, expected, worlds):
                result.diagnosis = (f"the sum over t is missing: the weights are shared by the {self.T} steps, so "
                                    f"{label} sums every step's term; yours, at each t, is one step's term")
            else:
                result.diagnosis = "it has a free step t, and summed over t it is not the gradient either"
            return result
        if mine is None:
            result.diagnosis = problem
            return result
        if isinstance(mine, Ones):
            raise ChainruleError(f"'{text}' is only a ones vector")
        result.fits = _shape(mine) == expected[0].shape
        if not result.fits:
            result.diagnosis = (f"yours is {_shape_text(_shape(mine))} but {label} is "
                                f"{_shape_text(expected[0].shape)}")
            return result
        if self.flags:  # a named activation derivative that is not the layer's (tanh' on a relu layer)
            result.diagnosis = self.flags[0]
            return result
        status = self._status(mine, expected, worlds)
        if status == "equal":
            result.equal = True
            result.proof = (f"equal at {len(worlds)} random points at {self._sizes()}, within 1e-07 of the "
                            f"gradient's largest entry")
            return result
        if status != "different":
            result.undecided = status
            return result
        if self.diagnosing:
            result.diagnosis = self._diagnose(mine, getter, expected, worlds, label) or \
                "no usual mistake of backpropagation through time explains it"
        return result

    def _target(self, node, t):
        """(label, world -> the true value, the correct form) of the --wrt quantity."""
        name = node.args[0] if node.kind in ("name", "grad") else None
        if name is None:
            raise ChainruleError(f"--wrt '{node.text}' must be one name, like W_hh, delta_t or dh_t")
        if node.kind == "grad" or "@" not in name:
            norm = name if node.kind == "grad" else (name[3:] if name.startswith("dld") else name[1:]
                                                    if name[:1] == "d" else name)
            key = self.aliases.get(norm) or self.cs231n.get(norm)
            if key is None and node.kind == "grad" and "@" in norm:
                name = {"h": "dh", "x": "dx", "a": "delta", "c": "dc", "out": "dy"}.get(norm.split("@")[0], "?") + \
                    "@" + norm.split("@")[1]
            elif key is None:
                raise ChainruleError(f"cannot check a gradient with respect to '{node.text}'; choose a weight or bias "
                                     f"(W_ih, W_hh, b, W_hy, b_y), or a step's dh_t, delta_t"
                                     + (", dc_t" if self.kind == "lstm" else ""))
            else:
                flip = norm in self.cs231n
                g = self.param_grads[key]
                label = node.text
                quantity = self._form(key)

                def value(world, g=g, key=key, flip=flip):
                    v = world["env"][g] if key in ("wy", "by") else world["grads"][key]
                    return v.T if flip or (self.rows and key in ("bih", "bhh", "b", "by")) else v
                return label, value, quantity
        stem, step = name.split("@")
        step = int(step)
        if stem == "next":  # Karpathy's dhnext = ... at step t: the share step t passes back to h_(t-1)
            stem = "carry"
        if stem not in ("dh", "delta", "carry", "dc", "dx", "dy", "deltai", "deltaf", "deltag", "deltao", "di", "df",
                        "dg", "do", "ccarry", "deltar", "deltaz", "deltan", "dr", "dz", "dn", "deltah", "gout"):
            raise ChainruleError(f"--wrt '{node.text}' is not a gradient; choose dh_t, delta_t, dx_t"
                                 + (", dc_t" if self.kind == "lstm" else "") + " or a weight's dL/dW")
        if not 1 <= step <= self.T:
            raise _Absent(node, step)
        if stem == "dy" and self.layers != 2:
            raise ChainruleError(f"'{node.text}': this network has no output layer after the recurrent one")
        symbol = self.sym[(stem, step)]

        def value(world):
            v = world["env"][symbol]
            return v.T if self.rows else v
        label = node.text + (f" (t = {t})" if t else "")
        return label, value, self._form(stem)

    def _form(self, key) -> _Quantity:
        rnn = self.kind == "rnn"
        df = ("1 − h_t²", "1 - h_t^{2}") if self.f == "tanh" else ("[a_t > 0]", r"\mathbb{1}[a_t > 0]")
        out = ("W_hyᵀ dy_t", r"W_{hy}^\top dy_t") if self.layers == 2 else ("(∂L/∂h_t)_out", r"(\partial L/\partial h_t)_{out}")
        forms = {
            "dh": (f"{out[0]} + W_hhᵀ δ_(t+1)", rf"{out[1]} + W_{{hh}}^\top \delta_{{t+1}}"),
            "delta": ((f"dh_t ⊙ ({df[0]})", rf"dh_t \odot ({df[1]})") if rnn else
                      ("[δ^i_t; δ^f_t; δ^g_t; δ^o_t]", r"[\delta^i_t; \delta^f_t; \delta^g_t; \delta^o_t]")),
            "carry": ("W_hhᵀ δ_t", r"W_{hh}^\top \delta_t"),
            "dx": ("W_ihᵀ δ_t", r"W_{ih}^\top \delta_t"),
            "dc": ("dh_t ⊙ o_t ⊙ (1 − tanh²(c_t)) + dc_(t+1) ⊙ f_(t+1)",
                   r"dh_t \odot o_t \odot (1 - \tanh^2(c_t)) + dc_{t+1} \odot f_{t+1}"),
            "deltai": ("dc_t ⊙ g_t ⊙ i_t ⊙ (1 − i_t)", r"dc_t \odot g_t \odot i_t \odot (1 - i_t)"),
            "deltaf": ("dc_t ⊙ c_(t-1) ⊙ f_t ⊙ (1 − f_t)", r"dc_t \odot c_{t-1} \odot f_t \odot (1 - f_t)"),
            "deltag": ("dc_t ⊙ i_t ⊙ (1 − g_t²)", r"dc_t \odot i_t \odot (1 - g_t^2)"),
            "deltao": ("dh_t ⊙ tanh(c_t) ⊙ o_t ⊙ (1 − o_t)", r"dh_t \odot \tanh(c_t) \odot o_t \odot (1 - o_t)"),
            "di": ("dc_t ⊙ g_t", r"dc_t \odot g_t"), "df": ("dc_t ⊙ c_(t-1)", r"dc_t \odot c_{t-1}"),
            "dg": ("dc_t ⊙ i_t", r"dc_t \odot i_t"), "do": ("dh_t ⊙ tanh(c_t)", r"dh_t \odot \tanh(c_t)"),
            "ccarry": ("dc_t ⊙ f_t", r"dc_t \odot f_t"),
            "gout": out,
            "dy": self._output_delta() if self.layers == 2 else ("", ""),
            "wih": ("Σ_t δ_t x_tᵀ", r"\sum_{t=1}^{T} \delta_t x_t^\top"),
            "whh": ("Σ_t δ_t h_(t-1)ᵀ", r"\sum_{t=1}^{T} \delta_t h_{t-1}^\top"),
            "b": ("Σ_t δ_t" + (" 1_N" if self.batch else ""), r"\sum_{t=1}^{T} \delta_t"),
            "wy": ("Σ_t dy_t h_tᵀ", r"\sum_{t=1}^{T} dy_t h_t^\top") if self.sequences else ("dy h_Tᵀ", r"dy\, h_T^\top"),
            "by": ("Σ_t dy_t", r"\sum_{t=1}^{T} dy_t") if self.sequences else ("dy", "dy"),
            "wemb": ("Σ_t onehot(x_t) dx_tᵀ (dE[x_t] += dx_t)", r"\sum_{t=1}^{T} \operatorname{onehot}(x_t)\, dx_t^\top"),
        }
        forms["bih"] = forms["bhh"] = forms["b"]
        forms["deltah"] = forms["delta"]
        if self.kind == "gru":
            forms.update(self._gru_forms(out))
        text, latex = forms[key]
        if self.rows:
            text += " (columns form; transpose it for rows)"
        return _Quantity(text, latex)

    def _gru_forms(self, out) -> dict:
        """The GRU's own forms: torch's r, z, n; δ^h_t = [δ^r_t; δ^z_t; r_t ⊙ δ^n_t] is what W_hh h + b_hh gets."""
        hh = ("[δ^r_t; δ^z_t; r_t ⊙ δ^n_t]", r"[\delta^r_t; \delta^z_t; r_t \odot \delta^n_t]")
        forms = {
            "dh": (f"{out[0]} + W_hhᵀ δ^h_(t+1) + dh_(t+1) ⊙ z_(t+1), δ^h_t = {hh[0]}",
                   rf"{out[1]} + W_{{hh}}^\top \delta^h_{{t+1}} + dh_{{t+1}} \odot z_{{t+1}}"),
            "delta": ("[δ^r_t; δ^z_t; δ^n_t]", r"[\delta^r_t; \delta^z_t; \delta^n_t]"),
            "deltah": hh,
            "carry": ("W_hhᵀ δ^h_t + dh_t ⊙ z_t", r"W_{hh}^\top \delta^h_t + dh_t \odot z_t"),
            "deltan": ("dh_t ⊙ (1 − z_t) ⊙ (1 − n_t²)", r"dh_t \odot (1 - z_t) \odot (1 - n_t^2)"),
            "deltaz": ("dh_t ⊙ (h_(t-1) − n_t) ⊙ z_t ⊙ (1 − z_t)",
                       r"dh_t \odot (h_{t-1} - n_t) \odot z_t \odot (1 - z_t)"),
            "deltar": ("δ^n_t ⊙ (W_hn h_(t-1) + b_hn) ⊙ r_t ⊙ (1 − r_t)",
                       r"\delta^n_t \odot (W_{hn} h_{t-1} + b_{hn}) \odot r_t \odot (1 - r_t)"),
            "dn": ("dh_t ⊙ (1 − z_t)", r"dh_t \odot (1 - z_t)"),
            "dz": ("dh_t ⊙ (h_(t-1) − n_t)", r"dh_t \odot (h_{t-1} - n_t)"),
            "dr": ("δ^n_t ⊙ (W_hn h_(t-1) + b_hn)", r"\delta^n_t \odot (W_{hn} h_{t-1} + b_{hn})"),
            "whh": (f"Σ_t δ^h_t h_(t-1)ᵀ, δ^h_t = {hh[0]}", r"\sum_{t=1}^{T} \delta^h_t h_{t-1}^\top"),
            "bhh": (f"Σ_t δ^h_t, δ^h_t = {hh[0]}", r"\sum_{t=1}^{T} \delta^h_t"),
        }
        for gate in GRU_BLOCKS:
            d = ("r_t ⊙ δ^n_t", r"r_t \odot \delta^n_t") if gate == "n" else (f"δ^{gate}_t", rf"\delta^{gate}_t")
            forms[f"wi{gate}"] = (f"Σ_t δ^{gate}_t x_tᵀ", rf"\sum_{{t=1}}^{{T}} \delta^{gate}_t x_t^\top")
            forms[f"bi{gate}"] = (f"Σ_t δ^{gate}_t", rf"\sum_{{t=1}}^{{T}} \delta^{gate}_t")
            forms[f"wh{gate}"] = (f"Σ_t {d[0]} h_(t-1)ᵀ", rf"\sum_{{t=1}}^{{T}} ({d[1]}) h_{{t-1}}^\top")
            forms[f"bh{gate}"] = (f"Σ_t {d[0]}", rf"\sum_{{t=1}}^{{T}} {d[1]}")
        return forms

    def _output_delta(self):
        """The output layer's δ as the derivation states it (stacked over the steps), to read at step t."""
        step = next(s for s in self.sweep.steps if s.target.key == self._key("delta2"))
        names = {q.key: q.text for q in self.q.values()}
        latex = {q.key: q.latex for q in self.q.values()}
        return (f"{MathText(names).doprint(step.rhs)}, at step t (the derivation's {step.target.text}, its block t)",
                MathLatex(latex).doprint(step.rhs))

    # -- comparing and naming mistakes ---------------------------------------------------------------------
    def _values(self, mine, worlds, key=(None, False)):
        return [np.atleast_2d(np.asarray(numeric_value(mine, w[key]["env"]), dtype=float)) for w in worlds]

    def _agree(self, mine, expected, worlds, key=(None, False)) -> bool:
        try:
            values = self._values(mine, worlds, key)
        except (TypeError, ValueError, KeyError, ZeroDivisionError):
            return False
        return all(v.shape == e.shape and _agreement(v.ravel(), e.ravel()) == "agree"
                   for v, e in zip(values, expected))

    def _status(self, mine, expected, worlds) -> str:
        try:
            values = self._values(mine, worlds)
        except (TypeError, ValueError, KeyError, ZeroDivisionError) as err:
            return f"yours could not be evaluated ({err})"
        found = [_agreement(v.ravel(), e.ravel()) for v, e in zip(values, expected)]
        if all(f == "agree" for f in found):
            return "equal"
        if found.count("differ") >= 2:
            return "different"
        return f"yours agrees at {found.count('agree')} of {len(found)} random points and differs or is not finite " \
               f"at the others"

    def _diagnose(self, mine, getter, expected, worlds, label) -> str:
        messages = self._messages()
        for mistake, local in self._worlds():
            wrong = [getter(w[(mistake, local)]) for w in worlds]
            if all(np.allclose(a, b) for a, b in zip(wrong, expected)):
                continue  # the mistake does not change this quantity
            if not local and not any(np.any(a) for a in wrong):
                continue  # carried through the loop it leaves this step nothing (no output share before T): no clue
            names_changed = not local and mistake != "last_only"
            key = (mistake, local) if names_changed else (None, False)
            if self._agree(mine, wrong, worlds, key):
                return messages[mistake]
        if self._agree(sp.Transpose(mine), [e.T for e in expected], worlds) and mine.shape[0] == mine.shape[1]:
            return f"transposed: yours is the transpose of {label}"
        if self._agree(-mine, expected, worlds):
            return "the sign: yours is the negative of the gradient"
        values = self._values(mine, worlds)
        ratios = [float(np.sum(v * e) / np.sum(e * e)) for v, e in zip(values, expected) if np.sum(e * e) > 0]
        if ratios and abs(ratios[0]) > 1e-9 and max(ratios) - min(ratios) < 1e-6 * max(1, abs(ratios[0])) and all(
                np.allclose(v, ratios[0] * e) for v, e in zip(values, expected)):
            k = sp.nsimplify(ratios[0], rational=True, tolerance=1e-6)
            mean = f" (the loss is the mean over the T = {self.T} steps" + \
                   (f" and the N = {self.columns} samples" if self.batch else "") + ")"
            return f"a constant factor: yours is {k} times {label}{mean}"
        return ""

    def _messages(self) -> dict:
        out = ("the output's share" if self.layers == 2 else "(∂L/∂h_t)_out")
        f = "tanh'" if self.f == "tanh" else "relu'"
        at = "1 − h_t²" if self.f == "tanh" else "[a_t > 0]"
        h = "h_(t-1)"
        return {
            # the GRU's, as check-code's gru op names them (diagnose._gru_worlds)
            "swapped": (f"(1 − z) and z swapped: h_t = (1 − z_t) ⊙ n_t + z_t ⊙ {h}, so δ^n_t = dh_t ⊙ (1 − z_t) ⊙ "
                        f"(1 − n_t²), δ^z_t = dh_t ⊙ ({h} − n_t) ⊙ z_t(1 − z_t) and {h} gets dh_t ⊙ z_t directly; "
                        "yours is the backward of (1 − z) ⊙ h_(t-1) + z ⊙ n (Chung et al.'s and Olah's convention)"),
            "bias_outside": (f"b_hn read outside r ⊙ (W_hn {h} + b_hn): torch's n = tanh(W_in x + b_in + r ⊙ (W_hn {h} "
                             f"+ b_hn)), so δ^r_t = δ^n_t ⊙ (W_hn {h} + b_hn) ⊙ r_t(1 − r_t) and dL/db_hn = Σ_t r_t ⊙ "
                             f"δ^n_t; yours reads W_hn {h} alone, or δ^n_t for b_hn's share"),
            "z_path": (f"the path from h_t to {h} through z dropped: h_t = (1 − z_t) ⊙ n_t + z_t ⊙ {h}, so dh_(t-1) "
                       f"gets dh_t ⊙ z_t besides the gates' paths through W_hh; yours has the paths through W_hh alone"),
            "gru_at_h": ("tanh' taken at h_t: δ^n_t = dh_t ⊙ (1 − z_t) ⊙ (1 − n_t²), the derivative at the candidate "
                         "n_t = tanh(a_n); yours is 1 − h_t² (an RNN's, whose output is the tanh)"),
            "gru_at_pre": (f"tanh' taken at the pre-activation: δ^n_t = dh_t ⊙ (1 − z_t) ⊙ (1 − n_t²) with n_t = "
                           f"tanh(a_n); yours is 1 − a_n², the formula applied to a_n = W_in x_t + b_in + r_t ⊙ (W_hn "
                           f"{h} + b_hn) itself"),
            "overwrite": ("a token's row is overwritten instead of added to: a token that occurs at several steps (or "
                          "in several samples) gets the sum of their dx_t, dE[x_t] += dx_t (np.add.at(dE, ids, dx), "
                          "not dE[ids] = dx)"),
            "no_path": ("the path through h_t into step t + 1 is missing: h_{t+1} = f(... + W_hh h_t) depends on "
                        f"h_t, so dh_t = {out} + W_hhᵀ δ_(t+1); yours drops W_hhᵀ δ_(t+1)"),
            "untransposed": ("W_hh not transposed on the path from step t + 1: dh_t gets W_hhᵀ δ_(t+1), "
                             "not W_hh δ_(t+1)"),
            "f_at_h": f"{f} taken at h_t instead of at the pre-activation a_t: f'(a_t) = {at}",
            "f_at_prev": (f"{f} at the previous step's h_(t-1): step t's own derivative is {at}"),
            "f_missing": f"the activation's derivative is missing: δ_t = dh_t ⊙ {f}(a_t) = dh_t ⊙ ({at})",
            "h_for_prev": "h_t where h_(t-1) belongs: step t multiplies W_hh by h_(t-1), so dW_hh = Σ_t δ_t h_(t-1)ᵀ",
            "last_only": (f"the sum over t is missing: yours has only the last step's term; the weights are shared by "
                          f"the {self.T} steps, so their gradient is a sum over t = 1..T"),
            "no_forget": ("the forget-gate path of dc_t is missing: c_(t+1) = f_(t+1) ⊙ c_t + ..., so dc_t = "
                          "dh_t ⊙ o_t ⊙ (1 − tanh²(c_t)) + dc_(t+1) ⊙ f_(t+1)"),
        }


# What the reader writes in a person's text (\sum_t as \sumtime, _T as _{last}, δ^x as deltagatex)
_REWRITTEN = re.compile(r"\\sumtime|_\{last|gout|deltagate|onehot")


def _as_written(err, wrt: str, text: str, rewritten=rewrite_time, rewriting=_REWRITTEN.search):
    """``err`` quoting the person's text as written where it quoted the reader's rewriting of it (``rewritten``;
    ``rewriting`` tells a quote of it), and without the rewriting's character positions."""
    message = str(err)
    if rewritten(wrt) == wrt and rewritten(text) == text:
        return err

    def quoted(m):
        if not rewriting(m[1]):
            return m[0]
        return f"'{wrt}'" if m[1].removesuffix("...") in rewritten(wrt) else f"'{text}'"
    message = re.sub(r" at character \d+", "", re.sub(r" at character \d+ (?:of|in) ", " in ", message))
    return type(err)(re.sub(r"'([^']*)'", quoted, message))


def _rule_in_t():

    class TimeRule(RuleResult):
        """A RuleResult whose steps are the time steps t (its report says t where a layer rule says l)."""

        def report(self) -> str:
            text = super().report().replace(": a rule in l, checked at l = ", ": a rule in t, checked at t = ")
            return re.sub(r"(?m)^  l = ", "  t = ", text).replace("wrong at l = ", "wrong at t = ")
    return TimeRule


class _Worlds(dict):
    """A point's worlds by (mistake, local): the true one, (None, False), and each other when first looked up."""

    def __init__(self, make, known):
        super().__init__(known)
        self.make = make

    def __missing__(self, key):
        value = self[key] = self.make(key)
        return value


class _Free(Exception):
    """A step index t where no rule in t gives it a value."""


class _Absent(Exception):
    def __init__(self, node, step):
        super().__init__(node.text)
        self.node, self.step = node, step


def _array(m):
    return np.array(sp.Matrix(m).evalf().tolist(), dtype=float)


def _overwritten(steps):
    """dE[ids] = dx at each step in turn, as a loop that assigns instead of adding: the last occurrence wins."""
    table = np.zeros((steps[0][0].shape[0], steps[0][1].shape[0]))
    for onehot, dx in steps:
        for n, v in enumerate(np.argmax(onehot, axis=0)):
            table[v] = dx[:, n]
    return table


def _c_last(saved):
    """c_T from the last step's saved values: f_T ⊙ c_(T-1) + i_T ⊙ g_T."""
    i, f, g, o, c_prev, tc = saved
    return f.multiply_elementwise(c_prev) + i.multiply_elementwise(g)


def _shape(value):
    if isinstance(value, (sp.MatrixExpr, sp.MatrixBase)):
        return tuple(int(sp.sympify(s).subs(N, BATCH)) for s in value.shape)
    return (1, 1)


def _shape_text(shape) -> str:
    return " × ".join(map(str, shape))
