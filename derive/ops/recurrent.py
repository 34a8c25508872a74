"""Recurrent layers, as ``torch.nn.RNN``, ``torch.nn.LSTM`` and ``torch.nn.GRU`` (one layer, batch first).

A sequence is a value of T·F features in (t, f) order, so x_t is rows t·F .. (t+1)·F of a column
(``layout`` (("length", T), ("features", F))). Each layer is one op whose forward definition is the
recurrence from h_0 = 0 (``Recurrence``), with PyTorch's equations, two bias vectors and gate order::

    rnn   h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)                       f = tanh or relu
    lstm  [i; f; g; o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh                (4H rows, stacked so)
          i, f, o = σ(...), g = tanh(...),  c_t = f ⊙ c_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(c_t)
    gru   [r; z; n]: r = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr),  z likewise,
          n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn)),  h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

The output is every h_t stacked (T·H features) or, without ``return_sequences``, h_T alone. Its VJPs
are backpropagation through time, stated once per cell in ``Cell.back`` and read by one ``BPTT``
node per input: from t = T down to 1, δh_t = G_t + (the share of step t + 1), each gate's δ from it
(and, in the LSTM, the cell-state path δc_t = δh_t ⊙ o ⊙ tanh'(c_t) + δc_{t+1} ⊙ f_{t+1}), and the
shared weights' gradients summed over t. Both nodes unroll at explicit sizes (``doit``), so
``tests/test_ops.py`` proves the stated BPTT against ``sympy.diff`` of the recurrence for every cell.
The emitted module runs the same loops in NumPy (``codegen``'s ``_recurrent_forward`` and
``_recurrent_backward``), one GEMM for all gates of a step; under ``[training] bptt`` its train starts
each chunk from the state the chunk before left (a constant: h_0 = 0, or that carried state).
"""
import re
from dataclasses import dataclass, replace

import sympy as sp
from sympy.core.symbol import Str

from ..errors import ChainruleError, did_you_mean, shown
from ..fields import boolean, positive_int, sequence_input
from ..functions import sigma
from ..naming import Names, layer_key, network_output
from ..nodes import OfSpec, OfSpecGrad, held, same, shared_backward
from ..sequence import at_step, stacked
from ..steps import formula, ref
from .activations import Z, make_activation
from .registry import Grad, LayerKind, Op, Out, Param, layer, op


_sigmoid = sigma.define  # the logistic function, defined once

def _map(fn, M):
    return M.applyfunc(fn)


def _at(expr, u):
    """A formula in z at u; a Piecewise (relu) is built as it stands: folding its conditions over a
    nested u (relu of relu of ...) would take SymPy minutes at T = 3."""
    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*[(v.xreplace({Z: u}), c.xreplace({Z: u})) for v, c in expr.args], evaluate=False)
    return expr.xreplace({Z: u})


def _had(*mats):
    out = mats[0]
    for m in mats[1:]:
        out = out.multiply_elementwise(m)
    return out


def _ones_like(M):
    return sp.ImmutableMatrix.ones(*M.shape)


class Cell:
    """One cell's step and its backward step on explicit matrices (columns are samples).

    ``step(P, x, state)`` -> (the new state, what the backward step reads); ``back(P, saved, dstate)``
    -> (δ of W_ih x + b_ih, δ of W_hh h + b_hh, the state's direct shares back to step t - 1),
    where dstate is the adjoint of the step's state (δh_t, and δc_t for the LSTM).
    """
    gates = 1
    states = 1
    title = ""


class RNNCell(Cell):
    title = "Elman RNN"

    def __init__(self, nonlinearity):
        self.f = make_activation(nonlinearity, "rnn")

    def step(self, P, x, state):
        (h,) = state
        a = P.ih(x) + P.hh(h)
        return (_map(lambda u: _at(self.f.definition, u), a),), a

    def back(self, P, saved, dstate):
        (dh,) = dstate
        da = _had(dh, _map(lambda u: _at(self.f.derivative, u), saved))  # f' at the pre-activation a_t
        return da, da, (sp.ZeroMatrix(*dh.shape).as_explicit(),)


class LSTMCell(Cell):
    gates, states, title = 4, 2, "LSTM"

    def step(self, P, x, state):
        h, c = state
        a = P.ih(x) + P.hh(h)
        H = h.rows
        i, f, o = (_map(_sigmoid, a[k * H:(k + 1) * H, :]) for k in (0, 1, 3))
        g = _map(sp.tanh, a[2 * H:3 * H, :])
        c_new = _had(f, c) + _had(i, g)
        tc = _map(sp.tanh, c_new)
        return (_had(o, tc), c_new), (i, f, g, o, c, tc)

    def back(self, P, saved, dstate):
        i, f, g, o, c_prev, tc = saved
        dh, dc_next = dstate
        one = _ones_like(dh)
        dc = dc_next + _had(dh, o, one - _had(tc, tc))     # the cell-state path: through h_t, and from t + 1
        gates = [_had(dc, g, i, one - i),                    # δ of i's pre-activation
                 _had(dc, c_prev, f, one - f),               # f
                 _had(dc, i, one - _had(g, g)),              # g
                 _had(dh, tc, o, one - o)]                   # o
        da = sp.ImmutableMatrix.vstack(*gates)
        return da, da, (sp.ZeroMatrix(*dh.shape).as_explicit(), _had(dc, f))


class GRUCell(Cell):
    gates, title = 3, "GRU"

    def step(self, P, x, state):
        (h,) = state
        gi, gh = P.ih(x), P.hh(h)
        H = h.rows
        r = _map(_sigmoid, gi[:H, :] + gh[:H, :])
        z = _map(_sigmoid, gi[H:2 * H, :] + gh[H:2 * H, :])
        hn = gh[2 * H:, :]
        n = _map(sp.tanh, gi[2 * H:, :] + _had(r, hn))
        return (_had(_ones_like(z) - z, n) + _had(z, h),), (r, z, n, hn, h)

    def back(self, P, saved, dstate):
        r, z, n, hn, h_prev = saved
        (dh,) = dstate
        one = _ones_like(dh)
        dn = _had(dh, one - z, one - _had(n, n))            # δ of n's pre-activation
        dr = _had(dn, hn, r, one - r)
        dz = _had(dh, h_prev - n, z, one - z)
        return (sp.ImmutableMatrix.vstack(dr, dz, dn), sp.ImmutableMatrix.vstack(dr, dz, _had(dn, r)),
                (_had(dh, z),))


def cell(kind: str, nonlinearity: str = "tanh") -> Cell:
    return RNNCell(nonlinearity) if kind == "rnn" else LSTMCell() if kind == "lstm" else GRUCell()


class _Affine:
    """The two affine maps of a step on explicit matrices: W_ih x + b_ih and W_hh h + b_hh (biases broadcast)."""

    def __init__(self, W_ih, W_hh, b_ih, b_hh):
        self.W_ih, self.W_hh, self.b_ih, self.b_hh = W_ih, W_hh, b_ih, b_hh

    def ih(self, x):
        return self.W_ih * x + self.b_ih * sp.ImmutableMatrix.ones(1, x.cols)

    def hh(self, h):
        return self.W_hh * h + self.b_hh * sp.ImmutableMatrix.ones(1, h.cols)


def unroll(spec: "RecurrentSpec", X, W_ih, W_hh, b_ih, b_hh, hold=same):
    """(hidden states h_1..h_T, saved values of each step, the inputs x_t) of the recurrence from zero.

    Each matrix of a step's state goes through ``hold`` (``OfSpec``'s) before step t + 1 reads it."""
    c = spec.cell
    H, F, T = W_hh.cols, W_ih.cols, spec.length
    P = _Affine(W_ih, W_hh, b_ih, b_hh)
    state = tuple(sp.ZeroMatrix(H, X.cols).as_explicit() for _ in range(c.states))
    hs, saved, xs = [], [], []
    for t in range(T):
        x = X[t * F:(t + 1) * F, :]
        state, keep = c.step(P, x, state)
        state = tuple(hold(m) for m in state)
        hs.append(state[0])
        saved.append(keep)
        xs.append(x)
    return hs, saved, xs


def backprop(spec: "RecurrentSpec", G, X, W_ih, W_hh, b_ih, b_hh, hold=same) -> tuple:
    """(dX, dW_ih, dW_hh, db_ih, db_hh): backpropagation through time, from t = T down to 1 (``hold`` as unroll's)."""
    c = spec.cell
    hs, saved, xs = unroll(spec, X, W_ih, W_hh, b_ih, b_hh, hold)
    H, T = W_hh.cols, spec.length
    P = _Affine(W_ih, W_hh, b_ih, b_hh)
    zero = sp.ZeroMatrix(H, X.cols).as_explicit()
    carry = tuple(zero for _ in range(c.states))  # the shares of step t + 1 (none after T)
    dW_ih, dW_hh = sp.zeros(*W_ih.shape), sp.zeros(*W_hh.shape)
    db_ih, db_hh = sp.zeros(*b_ih.shape), sp.zeros(*b_hh.shape)
    dxs = [None] * T
    ones = sp.ImmutableMatrix.ones(X.cols, 1)
    for t in reversed(range(T)):
        out = G[t * H:(t + 1) * H, :] if spec.sequences else (G if t == T - 1 else zero)
        dh = out + carry[0]                                     # δh_t: the output's share and step t + 1's
        dgi, dgh, direct = c.back(P, saved[t], (dh,) + carry[1:])
        h_prev = hs[t - 1] if t else zero
        dW_ih += dgi * xs[t].T                                  # the shared weights: a sum over t
        dW_hh += dgh * h_prev.T
        db_ih += dgi * ones
        db_hh += dgh * ones
        dxs[t] = W_ih.T * dgi
        carry = (W_hh.T * dgh + direct[0],) + direct[1:]        # to step t - 1: through W_hh, and directly
    return (sp.ImmutableMatrix.vstack(*dxs), dW_ih.as_immutable(), dW_hh.as_immutable(),
            db_ih.as_immutable(), db_hh.as_immutable())


@dataclass(frozen=True)
class RecurrentSpec:
    """What a recurrent node computes: the cell, its nonlinearity (rnn), T, and whether every h_t is output."""
    kind: str
    nonlinearity: str
    length: int
    sequences: bool

    @property
    def cell(self) -> Cell:
        return cell(self.kind, self.nonlinearity)

    @property
    def title(self) -> str:
        return "RNN" if self.kind == "rnn" else self.kind.upper()

    @staticmethod
    def basic(spec) -> sp.Tuple:
        """``spec`` (a RecurrentSpec, or the Tuple SymPy rebuilds a node from) as a node's first argument."""
        if isinstance(spec, sp.Tuple):
            return spec
        return sp.Tuple(Str(spec.kind), Str(spec.nonlinearity), sp.Integer(spec.length), sp.Integer(spec.sequences))

    @classmethod
    def of(cls, basic) -> "RecurrentSpec":
        kind, nonlinearity, length, sequences = basic.args
        return cls(kind.name, nonlinearity.name, int(length), bool(sequences))


class Recurrence(OfSpec):
    """The recurrent layer's output for the sequence X (T·F, N): every h_t stacked (T·H, N) or h_T (H, N);
    its matrices X, W_ih, W_hh, b_ih, b_hh."""
    Spec = RecurrentSpec

    @property
    def shape(self):
        hidden = self.args[3].shape[1]
        return (hidden * self.spec.length if self.spec.sequences else hidden), self.args[1].shape[1]

    def unrolled(self, *mats, hold=same):
        hs, _, _ = unroll(self.spec, *mats, hold=hold)
        return sp.ImmutableMatrix.vstack(*hs) if self.spec.sequences else hs[-1]

    def _label(self, printer, latex):
        s = self.spec
        name = rf"\operatorname{{{s.title}}}" if latex else s.title
        if not s.sequences:
            name += "_{T}" if latex else "_T"
        X, *params = (printer._print(m) for m in self.mats)
        inner = f"{X}; {', '.join(params)}"
        return rf"{name}\left({inner}\right)" if latex else f"{name}({inner})"

    saves = True  # its code returns (the output, what the backward loop reads), stored as <name>_saved

    def _numpycode(self, printer):
        printer.helpers.add("_recurrent")
        return f"_recurrent_forward({_kernel_args(printer, self.spec, self.mats)})"


#: The inputs of a recurrent node, in order, and the BPTT form of each one's gradient (text, LaTeX);
#: δ_t is the step's gate pre-activations' error (δ^x_t and δ^h_t apart in the GRU, whose n gate
#: splits them), x_t the input's rows of step t and h_{t-1} the previous hidden state.
INPUTS = ("X", "W_ih", "W_hh", "b_ih", "b_hh")


class BPTT(OfSpecGrad):
    """dL/d(input ``which``) of a recurrent node, given G = dL/d(its output): backpropagation through time."""
    Spec = RecurrentSpec

    @property
    def shape(self):
        return self.args[4 + self.which].shape

    def gradients(self, G, *ins, hold=same):
        return backprop(self.spec, G, *ins, hold=hold)

    def _deltas(self, latex):
        """(the input weights' δ_t, the hidden ones'): one δ_t, or the GRU's δ^x_t and δ^h_t."""
        if self.spec.kind == "gru":
            return (r"\delta^{x}_{t}", r"\delta^{h}_{t}") if latex else ("δ^x_t", "δ^h_t")
        return (r"\delta_{t}",) * 2 if latex else ("δ_t",) * 2

    def step_form(self, printer, latex):
        """dL/dX at step t, W_ihᵀ δ_t, for what reads it step by step (an embedding's gradient); None for a weight's."""
        if self.which != 0:
            return None
        W = printer._print(self.mats[3]) + (r"^{\top}" if latex else "ᵀ")
        return f"{W} {self._deltas(latex)[0]}", True

    def _label(self, printer, latex):
        """Σ_t δ_t x_tᵀ and its kin, with the input's and the hidden state's names from the printer."""
        if self.which == 0:
            return stacked(self.step_form(printer, latex)[0], latex)
        (dx, dh), xt = self._deltas(latex), at_step(printer, self.mats[2], latex)
        if latex:
            total = r"\sum_{t=1}^{T} "
            forms = (rf"{total}{dx} {xt}^{{\top}}", rf"{total}{dh} h_{{t-1}}^{{\top}}", total + dx, total + dh)
        else:
            forms = (f"Σ_t {dx} {xt}ᵀ", f"Σ_t {dh} h_(t-1)ᵀ", f"Σ_t {dx}", f"Σ_t {dh}")
        form = forms[self.which - 1]
        batch = self.mats[0].shape[1]
        if self.which >= 3 and batch != 1:  # a bias: its error summed over the batch too
            form = rf"{form} \mathbf{{1}}_{{N}}" if latex else f"{form} 1_N"
        return form

    def _numpycode(self, printer):
        """One call of the backward loop gives every input's gradient."""
        G, out, X, W_ih, W_hh = self.mats[:5]
        call = f"_recurrent_backward({_kernel_args(printer, self.spec, (G, f'{out.name}_saved', W_ih, W_hh))})"
        return shared_backward(printer, call, out, self.which)


def _kernel_args(printer, spec, mats) -> str:
    """The arguments of the emitted loops: the cell, the arrays as code holds them, sequences and relu (T is
    read from the arrays, so the same code runs on truncated BPTT's shorter chunks)."""
    def code(m):
        return printer._name(m) if isinstance(m, str) else held(printer, m)
    relu = ", relu=True" if spec.kind == "rnn" and spec.nonlinearity == "relu" else ""
    return f'"{spec.kind}", {", ".join(code(m) for m in mats)}, {spec.sequences}{relu}'


def _state_names(g, layer, sequences: bool) -> Names:
    """``H1``: the hidden states of a recurrent layer (``h1`` for one sample)."""
    h = "H" if g.batched else "h"
    return Names(f"{h}{layer_key(layer)}", f"{h}_{{{layer}}}", f"{h}{layer}",
                 f"hidden states of layer {layer}" + (", every step's stacked" if sequences else " at the last step"))


def _param_names(letter: str, part: str, layer, meaning: str) -> Names:
    """``W_ih1``: printed W_{ih,1}, W_ih1."""
    return Names(f"{letter}_{part}{layer_key(layer)}", rf"{letter}_{{{part},{layer}}}", f"{letter}_{part}{layer}",
                 f"{meaning} of layer {layer}")


@op("recurrent")
class Recurrent(Op):
    """``(T·F, N) -> (T·H, N)`` or ``(H, N)``; attrs ``cell_kind`` (rnn, lstm, gru), ``hidden``, ``length``,
    ``sequences``, ``nonlinearity``. Parameters as torch stores them, the gates stacked in its order."""
    reuses_adjoint = True  # G is read by the BPTT of every input
    params = (Param("W_ih", "weight_ih_l0", "input-to-hidden weights", penalized=True),
              Param("W_hh", "weight_hh_l0", "hidden-to-hidden weights", penalized=True),
              Param("b_ih", "bias_ih_l0", "input-to-hidden bias"),
              Param("b_hh", "bias_hh_l0", "hidden-to-hidden bias"))

    def build(self, g, inputs, layer, cell_kind, hidden, length, sequences=True, nonlinearity="tanh"):
        (x,) = inputs
        rows = cell(cell_kind, nonlinearity).gates * hidden
        features = x.shape[0] // length
        axes = [(("out_features", rows), ("in_features", features)), (("out_features", rows), ("in_features", hidden)),
                (("out_features", rows), ("batch", 1)), (("out_features", rows), ("batch", 1))]
        params = tuple(g.value(_param_names(p.letter[0], p.letter[2:], layer, p.meaning), a, "param", layer, param=p)
                       for p, a in zip(self.params, axes))
        return (x,) + params, g.features(hidden * length if sequences else hidden), _state_names(g, layer, sequences)

    def draws(self, node) -> dict:
        """How the emitted init_params draws each parameter, as torch does: U(-1/sqrt(H), 1/sqrt(H)) for all four."""
        return {v: ("uniform", 1 / node.attrs["hidden"] ** 0.5) for v in node.inputs[1:]}

    def _spec(self, node) -> RecurrentSpec:
        a = node.attrs
        return RecurrentSpec(a["cell_kind"], a.get("nonlinearity", "tanh"), a["length"], a.get("sequences", True))

    def forward(self, node, ins):
        s = self._spec(node)
        what = f"every hidden state {formula('h_1, ..., h_T')} stacked" if s.sequences else \
            f"the last hidden state {formula('h_T')}"
        return Out(Recurrence(s, *ins), f"the {s.cell.title} recurrence from {formula('h_0 = 0')} over the T = {s.length} steps "
                                        f"of {ref(node.inputs[0])}, with the same weights at every step: {what}")

    def vjp(self, node, g, ins, out):
        s = self._spec(node)
        reasons = ("backpropagation through time: each step's input gets the transposed input weights times "
                   "that step's gate errors",
                   "the same input weights act at every step, so their gradient is a sum over t of the step's gate "
                   "errors times its input, transposed",
                   "the same hidden-to-hidden weights act at every step: a sum over t of the gate errors times the "
                   f"previous hidden state, transposed ({formula('h_0 = 0')} adds nothing)",
                   "the input bias is added at every step: the gate errors summed over t"
                   + (" and the batch" if node.batched else ""),
                   "the hidden bias likewise" + (" (the GRU's n gate reads it multiplied by the reset gate r, so its error "
                                                "there is the n gate's times r)" if s.kind == "gru" else ""))
        return {i: Grad(BPTT(s, i, g, out, *ins), reasons[i]) for i in range(5)}

    def examples(self):
        """Small enough for the generic proof (sympy.diff of the expanded pairing grows fast with T: an LSTM
        at T = 3 takes minutes); ``tests/test_recurrent.py`` proves every cell at T = 3, widths 2-3."""
        def build(kind, sequences, nonlinearity="tanh", length=2, hidden=1, features=1):
            return lambda g: g.add("recurrent", [g.leaf("x", length * features)], 1, cell_kind=kind, hidden=hidden,
                                   length=length, sequences=sequences, nonlinearity=nonlinearity)
        return [("rnn tanh sequences T=3", build("rnn", True, length=3, hidden=2, features=2)),
                ("rnn relu last", build("rnn", False, "relu", hidden=2)),
                ("lstm sequences", build("lstm", True)), ("lstm last", build("lstm", False)),
                ("gru sequences", build("gru", True)), ("gru last", build("gru", False))]


# -- the layer kinds ---------------------------------------------------------------------------------

NONLINEARITIES = ("tanh", "relu")


@dataclass(frozen=True)
class RecurrentLayer(LayerKind):
    """One recurrent layer over a sequence (length, features): torch.nn.RNN, LSTM or GRU with
    batch_first=True, num_layers=1, bias=True, h_0 = 0; ``return_sequences`` keeps every h_t, else h_T."""
    hidden_size: int
    length: int
    return_sequences: bool = True
    nonlinearity: str = "tanh"
    keys = ("type", "hidden_size", "bias", "return_sequences")
    takes = ("sequences", "tokens")  # tokens: its parse says to put an embedding first

    @property
    def units(self) -> int:
        """The output's features: T·H when every step is kept, else H."""
        return self.hidden_size * (self.length if self.return_sequences else 1)

    @property
    def shape(self) -> tuple:
        if self.return_sequences:
            return (("length", self.length), ("features", self.hidden_size))
        return (("features", self.hidden_size),)

    @classmethod
    def parse(cls, raw, at):
        where = f"{at.where} ({cls.kind})"
        length, _ = sequence_input(at, where, " or keep return_sequences = true on the recurrent layer before it")
        hidden = positive_int(raw.get("hidden_size"), f"{where} hidden_size")
        if not boolean(raw, "bias", True, where):
            raise ChainruleError(f"{where} bias = false is not supported; remove it (torch's default is true)")
        nonlinearity = raw.get("nonlinearity", "tanh")
        if nonlinearity not in NONLINEARITIES:
            raise ChainruleError(f"{where} nonlinearity must be one of {', '.join(NONLINEARITIES)}, not "
                                 f"{shown(nonlinearity)}{did_you_mean(str(nonlinearity), NONLINEARITIES)}")
        return cls(hidden, length, boolean(raw, "return_sequences", True, where), nonlinearity)

    def parameters(self, shape) -> int:
        gates = cell(self.kind, self.nonlinearity).gates * self.hidden_size
        return gates * (shape[-1][1] + self.hidden_size + 2)  # W_ih, W_hh, b_ih, b_hh

    def expand(self, g, l, a, last):
        names = network_output(g.batched) if last else _state_names(g, l, self.return_sequences)
        out = g.value(names, g.features(self.units), "forward", l, layout=self.shape if self.return_sequences else ())
        return g.add("recurrent", [a], l, out=out, cell_kind=self.kind, hidden=self.hidden_size, length=self.length,
                     sequences=self.return_sequences, nonlinearity=self.nonlinearity)

    def capped(self, cap: int):
        return replace(self, hidden_size=min(self.hidden_size, cap))  # the steps: derive.verify.shrink's length

    def inline(self, dense, user=str) -> str:
        settings = [f"hidden_size={self.hidden_size}"] + (["return_sequences=false"] if not self.return_sequences else [])
        if self.nonlinearity != "tanh":
            settings.append(f"nonlinearity={self.nonlinearity}")
        return f"{self.kind}({', '.join(settings)})"


    def notes(self, l, latex: bool) -> list:
        """Blocks for the notes' Definitions: the step at time t, BPTT step by step, and why gradients
        vanish or explode (``derive.documents`` lays them out); math in the prose stands in $...$."""
        forward, backward, why = _NOTES[self.kind](self)
        module = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[self.kind]
        state = "$h_0 = c_0 = 0$" if self.kind == "lstm" else "$h_0 = 0$"
        kept = "every $h_t$ is the output" if self.return_sequences else "$h_T$ alone is the output"
        blocks = [("para", f"Layer {l} is torch.nn.{module} (batch first): the same weights at every step "
                           f"$t = 1, \\ldots, T$ with $T = {self.length}$, from {state}; {kept}. Step $t$, with $x_t$ "
                           f"the input's features of step $t$:"),
                  ("display", forward),
                  ("para", "Backpropagation through time, from $t = T$ down to 1, with $\\delta h_{T+1} = 0$"
                           + (" and $\\delta c_{T+1} = 0$" if self.kind == "lstm" else "") + f", and ${_OUT}$ "
                           "the share of the output (zero for $t < T$ when only $h_T$ is output). The weights "
                           "are shared by the steps, so their gradients are sums over $t$:"),
                  ("display", backward + _SUMS[self.kind]),
                  ("para", why)]
        if latex:
            return blocks
        return [(kind, [_plain(line) for line in body] if kind == "display" else
                 re.sub(r"\$(.*?)\$", lambda m: _plain(m[1]), body)) for kind, body in blocks]


@layer("rnn")
@dataclass(frozen=True)
class RNNLayer(RecurrentLayer):
    """torch.nn.RNN: h_t = tanh or relu of W_ih x_t + b_ih + W_hh h_(t-1) + b_hh."""
    keys = RecurrentLayer.keys + ("nonlinearity",)


@layer("lstm")
@dataclass(frozen=True)
class LSTMLayer(RecurrentLayer):
    """torch.nn.LSTM: gates i, f, g, o and the cell state c_t."""


@layer("gru")
@dataclass(frozen=True)
class GRULayer(RecurrentLayer):
    """torch.nn.GRU: gates r, z and the candidate n."""



# -- the notes' equations: LaTeX, printed as text by _plain -----------------------------------------

_OUT = r"\left(\frac{\partial L}{\partial h_t}\right)_{\mathrm{out}}"


def _rnn_notes(layer):
    f, df = (r"\tanh", r"1 - h_t^{2}") if layer.nonlinearity == "tanh" else (r"\operatorname{relu}", r"[a_t > 0]")
    forward = [r"a_t = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}", rf"h_t = {f}(a_t)"]
    backward = [rf"\delta h_t = {_OUT} + W_{{hh}}^{{\top}} \delta_{{t+1}}", rf"\delta_t = \delta h_t \odot ({df})"]
    bound = ("$1 - h_t^{2}$ is at most 1, and near 0 where a unit saturates, so with $\\|W_{hh}\\| < 1$ the error "
             "shrinks geometrically with the distance $k$ (it vanishes) and with $\\|W_{hh}\\| > 1$ it can grow (it "
             "explodes)" if layer.nonlinearity == "tanh" else
             "relu' is 0 or 1: a unit that is off cuts its path, and one that is on passes the full gain of $W_{hh}$, "
             "so with $\\|W_{hh}\\| > 1$ the error can grow geometrically (explode) and with $\\|W_{hh}\\| < 1$ it vanishes")
    why = ("Why gradients vanish or explode: $\\delta h_t$ reaches step $t - k$ through the product of $k$ Jacobians "
           "$\\prod_{s=t-k+1}^{t} W_{hh}^{\\top} \\operatorname{diag}(f'(a_s))$, whose norm is at most "
           "$\\prod_{s} \\|W_{hh}\\| \\, \\|f'(a_s)\\|$, where $f'$ is the derivative of the layer's "
           f"{layer.nonlinearity}. Here {bound}; [training] clip_norm bounds the step an exploding gradient takes.")
    return forward, backward, why


def _lstm_notes(layer):
    forward = [r"a_t = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh} = [a^{i}_t; a^{f}_t; a^{g}_t; a^{o}_t]",
               r"i_t = \sigma(a^{i}_t), \quad f_t = \sigma(a^{f}_t), \quad g_t = \tanh(a^{g}_t), \quad o_t = \sigma(a^{o}_t)",
               r"c_t = f_t \odot c_{t-1} + i_t \odot g_t, \quad h_t = o_t \odot \tanh(c_t)"]
    backward = [rf"\delta h_t = {_OUT} + W_{{hh}}^{{\top}} \delta_{{t+1}}",
                r"\delta c_t = \delta h_t \odot o_t \odot (1 - \tanh^{2}(c_t)) + \delta c_{t+1} \odot f_{t+1}",
                r"\delta^{i}_t = \delta c_t \odot g_t \odot i_t \odot (1 - i_t), \quad "
                r"\delta^{f}_t = \delta c_t \odot c_{t-1} \odot f_t \odot (1 - f_t)",
                r"\delta^{g}_t = \delta c_t \odot i_t \odot (1 - g_t^{2}), \quad "
                r"\delta^{o}_t = \delta h_t \odot \tanh(c_t) \odot o_t \odot (1 - o_t)",
                r"\delta_t = [\delta^{i}_t; \delta^{f}_t; \delta^{g}_t; \delta^{o}_t]"]
    why = ("Why gradients vanish or explode, and why the LSTM helps: through $h$ the error reaching step $t - k$ is "
           "a product of $k$ Jacobians, each with $W_{hh}^{\\top}$ and the gates' derivatives (its norm is at most "
           "the product of $\\|W_{hh}\\|$ times their bounds, so it vanishes or explodes as a plain RNN's does), "
           "but the cell-state path $\\delta c_{t-1} = \\delta c_t \\odot f_t + \\ldots$ multiplies by the forget "
           "gate alone, element-wise, with no $W_{hh}$: where $f_t$ stays near 1 the error survives many steps.")
    return forward, backward, why


def _gru_notes(layer):
    forward = [r"r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}), \quad "
               r"z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz})",
               r"n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))",
               r"h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}"]
    backward = [rf"\delta h_t = {_OUT} + W_{{hh}}^{{\top}} \delta^{{h}}_{{t+1}} + \delta h_{{t+1}} \odot z_{{t+1}}",
                r"\delta^{n}_t = \delta h_t \odot (1 - z_t) \odot (1 - n_t^{2})",
                r"\delta^{r}_t = \delta^{n}_t \odot (W_{hn} h_{t-1} + b_{hn}) \odot r_t \odot (1 - r_t)",
                r"\delta^{z}_t = \delta h_t \odot (h_{t-1} - n_t) \odot z_t \odot (1 - z_t)",
                r"\delta^{x}_t = [\delta^{r}_t; \delta^{z}_t; \delta^{n}_t], \quad "
                r"\delta^{h}_t = [\delta^{r}_t; \delta^{z}_t; r_t \odot \delta^{n}_t]"]
    why = ("Why gradients vanish or explode, and why the GRU helps: through $W_{hh}$ the error reaching step $t - k$ "
           "is a product of $k$ Jacobians, each with $W_{hh}^{\\top}$ and the gates' derivatives (its norm is at most "
           "the product of $\\|W_{hh}\\|$ times their bounds, so it vanishes or explodes as a plain RNN's does), but "
           "the path $\\delta h_{t-1} = \\delta h_t \\odot z_t + \\ldots$ multiplies by the update gate alone, "
           "element-wise: where $z_t$ stays near 1 the error survives many steps.")
    return forward, backward, why


_NOTES = {"rnn": _rnn_notes, "lstm": _lstm_notes, "gru": _gru_notes}
_GATES = {"rnn": (r"\delta_t", r"\delta_t"), "lstm": (r"\delta_t", r"\delta_t"), "gru": (r"\delta^{x}_t", r"\delta^{h}_t")}
_SUMS = {kind: [rf"\frac{{\partial L}}{{\partial W_{{ih}}}} = \sum_{{t=1}}^{{T}} {dx} x_t^{{\top}}, \quad "
                rf"\frac{{\partial L}}{{\partial b_{{ih}}}} = \sum_{{t=1}}^{{T}} {dx}, \quad "
                rf"\frac{{\partial L}}{{\partial x_t}} = W_{{ih}}^{{\top}} {dx}",
                rf"\frac{{\partial L}}{{\partial W_{{hh}}}} = \sum_{{t=1}}^{{T}} {dh} h_{{t-1}}^{{\top}}, \quad "
                rf"\frac{{\partial L}}{{\partial b_{{hh}}}} = \sum_{{t=1}}^{{T}} {dh}"]
         for kind, (dx, dh) in _GATES.items()}

_PLAIN = [(r"\left(\frac{\partial L}{\partial h_t}\right)_{\mathrm{out}}", "(∂L/∂h_t)_out"),
          (r"\frac{\partial L}{\partial W_{ih}}", "∂L/∂W_ih"), (r"\frac{\partial L}{\partial W_{hh}}", "∂L/∂W_hh"),
          (r"\frac{\partial L}{\partial b_{ih}}", "∂L/∂b_ih"), (r"\frac{\partial L}{\partial b_{hh}}", "∂L/∂b_hh"),
          (r"\frac{\partial L}{\partial x_t}", "∂L/∂x_t"), (r"\sum_{t=1}^{T} ", "Σ_t "), (r"\quad", "  "),
          (r"\operatorname{relu}", "relu"), (r"\tanh^{2}", "tanh²"), (r"\tanh", "tanh"), (r"\sigma", "σ"),
          (r"\odot", "⊙"), (r"\delta h", "δh"), (r"\delta c", "δc"), (r"\delta", "δ"), ("^{\\top}", "ᵀ"), ("^{2}", "²"), ("_{t-1}", "_(t-1)"),
          ("_{t+1}", "_(t+1)"), ("_{T+1}", "_(T+1)"), ("_{t-k+1}", "_(t-k+1)"), ("_{ih}", "_ih"), ("_{hh}", "_hh"),
          (r"\prod_{s=t-k+1}^{t}", "Π_(s=t-k+1..t)"), (r"\prod_{s}", "Π_s"), (r"\prod", "Π"), (r"\operatorname{diag}", "diag"), (r"\|", "‖"), (r" \, ", " "), (r"\ldots", "..."),
          (r"\top", "ᵀ")]


def _plain(tex: str) -> str:
    """One of the notes' own LaTeX lines above as terminal text (δh_t = ... ⊙ ...)."""
    for old, new in _PLAIN:
        tex = tex.replace(old, new)
    tex = re.sub(r"\^\{(\w)\}", r"^\1", tex)       # δ^{i}_t -> δ^i_t
    return re.sub(r"_\{(\w+)\}", r"_\1", tex)       # W_{in} -> W_in
