"""Check a person's hand-derived gradient against the derivation, and say what is wrong.

``check(derivation, "W2", r"\\delta_2 h_1^\\top")`` parses the expression (``check_parse``, which
runs nothing), binds its names to the derivation's quantities, and compares it with the derived
gradient: shapes first, then exact SymPy equality with a symbol for every entry (the network's
widths, N = 3 for a batch), then three random points (Piecewise and erf defeat ``simplify``).
When it differs, single edits of the usual mistakes (a transpose, a sign, a constant factor, an
activation derivative missing, extra or wrong, a Hadamard for a matrix product and the reverse,
a wrong sum over the batch) are tried until one explains it, then pairs of them (a first mistake
followed by a second, at most PAIR_TRIES candidates, in a fixed order), named together. A softmax
output read as element-wise, δ_L = ŷ ⊙ (1 − ŷ) ⊙ dL/dŷ (the diagonal of its Jacobian only, with any
loss, the fused cross-entropy's dL/dŷ = −y/ŷ too), is such a mistake: the value is compared with the
derivation whose softmax step is that one, and ``softmax'(z_L)``, ``\\sigma'(z_L)`` or ``f'(z_L)`` is
read as that diagonal and named. A matrix divided by a matrix (``y / yhat``, ``y \\oslash \\hat y``) is
divided element by element.

Conventions: ``sample`` (one sample, column vectors: x, z1, delta1), ``columns`` (a batch with
samples as columns: X, Z1, Delta1, the derivation's batch form) and ``rows`` (batch-first as in
generated code: X is N×in, Z1 = X W1ᵀ + b1; every quantity but the weights and their gradients is
the transpose of its ``columns`` form, biases are rows). Names are case-insensitive; layer
numbers may be subscripts or superscripts (``W_2``, ``W2``, ``W^{2}``, ``W^{[2]}``); ``h_l`` and
``a_l`` are layer l's activation (``z_l`` for an identity layer, ``\\hat y`` for the last); ``N`` and
``m`` are the batch size. ``\\sum_n`` and ``sum(..., axis=...)`` sum over the batch (a no-op for one
sample). ``f'(z_l)`` (also ``g``, ``\\phi``) is layer l's own activation derivative; a named one
(``\\sigma'``, ``relu'``, ``tanh'``) that is not layer l's is the diagnosis "wrong activation derivative".
``a_0`` (``h_0``) is the input x, and ``dL/dx`` (W1ᵀ δ1, plus the skip path when layer 1 is residual) is
a gradient like the others.

A rule in the layer letter l (``\\delta^l = ((W^{l+1})^T \\delta^{l+1}) \\odot f'(z^l)``; also ``W_{l+1}``,
``W^{[l+1]}``, ``W^{(l+1)}``, ``\\ell``) is checked at every layer l = 1, ..., L where each name it uses
exists (layer 0 only as a^0 = x): one verdict per layer, and for a layer where it names something
the network lacks (W^{l+1} at the output layer) the reason and that layer's correct expression,
without counting against the rule. L in an index is the last layer (``\\delta^L``).
"""
import math
import random
import re
import time
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .chain import N
from .check_parse import ACTIVATION_ALIASES, GENERIC_ACTIVATIONS, Node, parse
from .errors import ChainruleError, did_you_mean
from .nodes import ColumnNormalize, ElementSum, Pointwise
from .ops.activations import Z, make_activation
from .ops.losses import CATALOGUE as LOSSES
from .printing import MathLatex, MathText

BATCH = 3  # N at the checking points: 3, so a missing 1/N is not mistaken for the 2 of a square
POINTS = 3
SHOWN_ENTRIES = 40  # a counterexample lists every input up to this many numbers
MAX_PROOF_ENTRIES = 150  # beyond this many symbols the exact proof is skipped
PROOF_SECONDS = 1.0  # SymPy's simplify may take long; past this the random points decide
PAIR_TRIES = 1500  # at most this many candidates are tried when looking for two mistakes
CONVENTIONS = ("sample", "columns", "rows")
_YES, _NO = sp.symbols("yes no", real=True)  # np.where's branches, element by element
_INDICATOR = sp.Lambda(Z, sp.Piecewise((1, Z > 0), (0, True)))
_INDICATOR_GE = sp.Lambda(Z, sp.Piecewise((1, Z >= 0), (0, True)))
_TOP, _BOTTOM = sp.symbols("top bottom", real=True)
_DIVIDE = sp.Lambda((_TOP, _BOTTOM), _TOP / _BOTTOM)  # a / b of two matrices (a ⊘ b), element by element


class ShapeMismatch(Exception):
    """The person's expression combines matrices whose shapes do not fit."""


@dataclass
class CheckResult:
    """The verdict on one expression. ``equal`` is True when it is the derived gradient."""
    wrt: str
    expression: str
    equal: bool
    diagnosis: str
    correct: str
    correct_latex: str
    counterexample: str = ""
    proof: str = ""

    def report(self) -> str:
        if self.equal:
            return f"{self.wrt}: correct ({self.proof})\n"
        lines = [f"{self.wrt}: different", f"  yours:    {self.expression}", f"  mistake:  {self.diagnosis}",
                 f"  correct:  {self.wrt} = {self.correct}", f"  LaTeX:    {self.correct_latex}"]
        if self.counterexample:
            lines.append(f"  counterexample: {self.counterexample}")
        return "\n".join(lines) + "\n"


@dataclass
class _LayerVerdict:
    layer: int
    result: "CheckResult | None"  # None: the rule names a quantity this layer does not have
    note: str = ""


@dataclass
class RuleResult:
    """The verdict on a rule in the layer l: one CheckResult per layer it applies at."""
    wrt: str
    expression: str
    layers: list

    @property
    def equal(self) -> bool:
        return all(v.result.equal for v in self.layers if v.result is not None)

    def report(self) -> str:
        checked = [str(v.layer) for v in self.layers if v.result is not None]
        wrong = [str(v.layer) for v in self.layers if v.result is not None and not v.result.equal]
        verdict = f"wrong at l = {', '.join(wrong)}" if wrong else "correct wherever it applies"
        lines = [f"{self.wrt} = {self.expression}: a rule in l, checked at l = {', '.join(checked)}: {verdict}"]
        for v in self.layers:
            if v.result is None:
                lines.append(f"  l = {v.layer}: {v.note}")
                continue
            first, *rest = v.result.report().rstrip("\n").split("\n")
            lines.append(f"  l = {v.layer}: {first}")
            lines += [f"  {line}" for line in rest]
        return "\n".join(lines) + "\n"


class _Absent(Exception):
    """A layer index that names no layer of the network (W^{l+1} at the last layer)."""

    def __init__(self, node, layer):
        super().__init__(node.text)
        self.node, self.layer = node, layer


_INDEXED = re.compile(r"(?P<stem>.*)\[(?P<letter>[lL])(?P<offset>[+-]\d+)?\]")


def _layer_refs(node: Node, letter: str) -> bool:
    """True when a name in the tree has a layer index in ``letter`` (l or L)."""
    if node.kind in ("name", "grad"):
        m = _INDEXED.fullmatch(node.args[0])
        return bool(m) and m["letter"] == letter
    return any(_layer_refs(a, letter) for a in node.args if isinstance(a, Node))


@dataclass
class _Target:
    expr: sp.Basic       # the gradient, in the convention's view of the derivation's symbols
    label: str
    rhs: sp.Basic        # what it equals, for printing


class _Ones:
    """``\\mathbf{1}``: a ones vector whose length the matrix product beside it decides."""

    def __init__(self, row=False):
        self.row = row


class Checker:
    """One derivation in one convention: names, values at points, the comparison and diagnosis."""

    def __init__(self, derivation, convention="sample"):
        if convention not in CONVENTIONS:
            raise ChainruleError(f"unknown convention '{convention}'; choose one of: {', '.join(CONVENTIONS)}")
        self.derivation, self.convention = derivation, convention
        self.net = derivation.network
        other = next((l for l, layer in enumerate(self.net.layers, 1) if layer.kind != "dense"), None)
        if other is not None:
            raise ChainruleError(f"chainrule check reads networks of dense layers only, and layer {other} has "
                                 f"type = \"{self.net.layers[other - 1].kind}\"; check the derivation with derive.verify")
        self.batch = convention != "sample"
        self.rows = convention == "rows"
        self.sweep = derivation.batch if self.batch else derivation.sample
        self.q = self.sweep.quantities
        self.layers = len(self.net.layers)
        self.flags: list = []
        computed = {step.target.key for step in self.sweep.steps}
        # the inputs, targets, parameters and anything else no step computes (dropout masks) get values
        self.leaf_keys = {k for k, q in self.q.items() if k not in computed and isinstance(q.symbol, sp.MatrixSymbol)}
        self._names()
        self._points = None
        self._elementwise = None  # the points of the derivation that reads softmax as element-wise
        self._bound = {}  # id(node) -> (node, (value, error), flags), for one check

    # -- names ----------------------------------------------------------------------------------
    def view(self, q):
        """The matrix a name stands for in this convention (rows: transposed, weights excepted)."""
        sym = q.symbol
        if self.rows and not re.fullmatch(r"(dL_d)?W\d+", q.key) and isinstance(sym, sp.MatrixSymbol):
            return sym.T
        return sym

    def key(self, name: str) -> str:
        return name.upper() if self.batch and name in ("x", "y", "z", "a") else (
            "Delta" if self.batch and name == "delta" else name)

    def _names(self):
        q, L = self.q, self.layers
        self.table, self.grads, self.shown = {}, {}, []
        self.table["x"], self.table["y"] = self.view(q[self.key("x")]), self.view(q[self.key("y")])
        yhat = q["Yhat" if self.batch else "yhat"]
        self.table["yhat"] = self.view(yhat)
        self.shown += ["X", "Y", r"\hat Y (Yhat)"] if self.batch else ["x", "y", r"\hat y (yhat)"]
        for l in range(1, L + 1):
            for p in ("W", "b"):
                self.table[f"{p.lower()}{l}"] = self.view(q[f"{p}{l}"])
                self.grads[f"{p.lower()}{l}"] = (self.view(q[f"dL_d{p}{l}"]), q[f"dL_d{p}{l}"])
            z = q[f"{self.key('z')}{l}"]
            self.table[f"z{l}"] = self.view(z)
            delta = q[f"{self.key('delta')}{l}"]
            self.table[f"delta{l}"] = self.view(delta)
            self.grads[f"z{l}"] = (self.view(delta), delta)
            a = yhat if l == L else q.get(f"{self.key('a')}{l}", z)
            self.table[f"a{l}"] = self.table[f"h{l}"] = self.view(a)
            mask = q.get(f"{'M' if self.batch else 'm'}{l}")
            if mask is not None:
                self.table[f"m{l}"] = self.table[f"mask{l}"] = self.view(mask)
                self.shown.append(f"{'M' if self.batch else 'm'}_{l} (dropout mask)")
            self.shown += [f"W_{l}", f"b_{l}"] + ([f"Z_{l}", f"H_{l} (A_{l})", rf"\Delta_{l} (Delta{l})"] if self.batch
                                                 else [f"z_{l}", f"h_{l} (a_{l})", rf"\delta_{l} (delta{l})"])
        self.table["a0"] = self.table["h0"] = self.table["x"]
        for l in range(0, L + 1):
            a_key = self._a_key(l)
            named = self.q.get(f"dL_d{a_key}")
            if named is not None:
                grad = (self.view(named), named)
            elif l and (a_key == self.q[f"{self.key('z')}{l}"].key or (l == L and self._output_plain())):
                grad = self.grads[f"z{l}"]
            elif l < L:
                # what no step names: the gradient of a layer's input, W^T δ of the layer above (plus the
                # skip connection's share when that layer is residual); for l = 0 this is dL/dx
                W, d = self.q[f"W{l + 1}"].symbol, self.q[f"{self.key('delta')}{l + 1}"].symbol
                rhs = W.T * d
                if self.net.layers[l].residual:
                    rhs = sp.MatAdd(rhs, self.q[f"dL_d{self._a_key(l + 1)}"].symbol)
                grad = (rhs.T if self.rows else rhs, None, rhs)
            else:
                continue
            for base in (f"a{l}", f"h{l}") + (("yhat",) if l == L else ("x",) if l == 0 else ()):
                self.grads[base] = grad
        for l, layer in enumerate(self.net.layers, start=1):
            f = layer.activation
            if f.elementwise and not f.is_identity:
                short = {"sigmoid": r"\sigma", "relu": "relu", "tanh": "tanh"}.get(f.name, f.name)
                self.shown.append(f"{short}'(z_{l}) (or f'(z_{l}))")
                if f.name == "relu":
                    self.shown.append(f"1[z_{l} > 0]")
            elif not f.elementwise:
                self.shown.append(f"softmax(z_{l}) (= \\hat y)")
        self.shown += ["dL/dW_l, dL/db_l, dL/dz_l, dL/dh_l, dL/dx (also \\frac{\\partial L}{\\partial W_l}, dW1, dZ1)",
                       "a_0 = h_0 = x", "a rule in the layer l (W^{l+1}, W_{l+1}, W^{[l+1]}, \\delta^l, a^{l-1}) "
                       "or L, the last layer (z^L)"]
        if self.batch:
            self.shown.append("N or m (batch size); names are case-insensitive")

    def _a_key(self, l: int) -> str:
        """The derivation's key of layer l's activation (the input for 0, the output for the last)."""
        if l == 0:
            return self.key("x")
        if l == self.layers:
            return "Yhat" if self.batch else "yhat"
        return self.q.get(f"{self.key('a')}{l}", self.q[f"{self.key('z')}{l}"]).key

    def _output_plain(self) -> bool:
        last = self.net.layers[-1]
        return last.activation.is_identity and not last.residual

    def accepted(self) -> list:
        return list(self.shown)

    def unknown_name(self, node: Node) -> ChainruleError:
        return ChainruleError(f"unknown name '{node.text}'{did_you_mean(node.args[0], self.table)}; "
                              f"for this network use: {', '.join(self.shown)}")

    def _rows_form(self, rhs, transpose: bool):
        """A columns-form right-hand side written with the rows-form matrices (for printing)."""
        if not self.rows:
            return rhs
        swap = {q.symbol: sp.MatrixSymbol(q.key, q.symbol.shape[1], q.symbol.shape[0]).T for q in self.q.values()
                if isinstance(q.symbol, sp.MatrixSymbol) and not q.key.startswith("W")}
        out = rhs.xreplace(swap)
        return out.T if transpose else out

    # -- the target -----------------------------------------------------------------------------
    def target(self, wrt) -> _Target:
        """What ``wrt`` (text, or its parsed tree) is the gradient of."""
        node = parse(wrt) if isinstance(wrt, str) else wrt
        wrt = node.text
        if node.kind == "name" and re.fullmatch(r"delta\d+", node.args[0]):
            norm = "z" + node.args[0][5:]
        elif node.kind == "grad":
            norm = node.args[0]
        elif node.kind == "name":
            norm = self._gradient_name(node.args[0]) or node.args[0]
        else:
            raise ChainruleError(f"--wrt '{wrt}' must be one name, like W2, b1, delta1 or dL/dz1")
        norm = "x" if norm in ("a0", "h0") else norm
        if norm not in self.grads:
            choices = [c.upper() if c[0] == "w" else c for c in sorted(self.grads)]
            raise ChainruleError(f"cannot check a gradient with respect to '{wrt}'{did_you_mean(norm, choices)}; "
                                 f"choose one of: {', '.join(choices)}")
        entry = self.grads[norm]
        label = {"w": "W", "b": "b", "z": "z", "a": "a", "h": "h", "y": "ŷ", "x": "x"}[norm[0]] + (
            norm[1:] if norm != "yhat" else "")
        if self.batch and norm[0] in "zahx":
            label = label.upper()
        if norm[0] == "z":
            label = ("Δ" if self.batch else "δ") + norm[1:]
        else:
            label = f"dL/d{label}"
        if entry[1] is None:
            return _Target(entry[0], label, entry[2])
        q = entry[1]
        rhs = next(s.rhs for s in self.sweep.steps if s.target.key == q.key)
        return _Target(entry[0], label, rhs)

    def _gradient_name(self, norm: str):
        if norm.startswith("dld") and norm[3:] in self.grads:
            return norm[3:]
        if norm.startswith("d") and norm not in self.table and norm[1:] in self.grads:
            return norm[1:]
        return None

    def printed(self, target: _Target):
        """The correct right-hand side as (text, LaTeX)."""
        rhs = target.rhs
        transpose = self.rows and not re.fullmatch(r"dL/dW\d+", target.label)
        if self.rows:
            rhs = _push_transposes(self._rows_form(rhs, transpose))
        text = MathText({q.key: q.text for q in self.q.values()}).doprint(rhs)
        latex = MathLatex({q.key: q.latex for q in self.q.values()}).doprint(rhs)
        return text, latex

    # -- binding a parsed expression to SymPy ------------------------------------------------------
    def bind(self, node: Node):
        """The SymPy value of a parsed node. Each node's outcome (and the flags it raised) is kept for the
        check, so an edited tree, which shares all but its edited path with the original, binds quickly."""
        kept = self._bound.get(id(node))
        if kept is None or kept[0] is not node:
            start = len(self.flags)
            try:
                outcome = getattr(self, f"_bind_{node.kind}")(node), None
            except (ShapeMismatch, ChainruleError) as err:
                outcome = None, err
            kept = self._bound[id(node)] = (node, outcome, self.flags[start:])
        else:
            self.flags.extend(kept[2])
        value, error = kept[1]
        if error is not None:
            raise error
        return value

    def _bind_num(self, node):
        return sp.Rational(node.args[0])

    def _bind_name(self, node):
        norm = node.args[0]
        if norm in self.table:
            return self.table[norm]
        if norm in ("n", "m"):
            if not self.batch:
                raise ChainruleError(f"'{node.text}' is the batch size, which one sample does not have; "
                                     f"use --convention columns or rows")
            return N
        grad = self._gradient_name(norm)
        if grad:
            return self.grads[grad][0]
        raise self.unknown_name(node)

    def _bind_grad(self, node):
        if node.args[0] not in self.grads:
            raise ChainruleError(f"dL/d{node.args[0]} is not a gradient of this network; "
                                 f"use one of: {', '.join('dL/d' + g for g in sorted(self.grads))}")
        return self.grads[node.args[0]][0]

    def _bind_neg(self, node):
        value = self.bind(node.args[0])
        if isinstance(value, _Ones):
            raise ChainruleError("a negated ones vector is not understood")
        return -value

    def _bind_add(self, node):
        return self._combine(node, subtract=False)

    def _bind_sub(self, node):
        return self._combine(node, subtract=True)

    def _combine(self, node, subtract: bool):
        a, b = (self.bind(x) for x in node.args[:2])
        if _is_matrix(a) or _is_matrix(b):
            a, b = self._broadcast(node, a, b)
        if isinstance(a, _Ones) or isinstance(b, _Ones):
            raise ChainruleError(f"a ones vector must be multiplied, not added, in '{node.text}'")
        if _is_matrix(a):
            return sp.MatAdd(a, -b if subtract else b)
        return a - b if subtract else a + b

    def _broadcast(self, node, a, b, parts=None):
        """NumPy's broadcasting of two operands (scalars and 1-wide sides stretch); ``parts``: their nodes."""
        if isinstance(a, _Ones) or isinstance(b, _Ones):
            raise ChainruleError(f"a ones vector must be multiplied, not added, in '{node.text}'")
        if not _is_matrix(a):
            return a * sp.OneMatrix(*b.shape), b
        if not _is_matrix(b):
            return a, b * sp.OneMatrix(*a.shape)
        if a.shape == b.shape:
            return a, b
        rows = _stretch(a.shape[0], b.shape[0])
        cols = _stretch(a.shape[1], b.shape[1])
        if rows is None or cols is None:
            first, second = parts or node.args[:2]
            raise ShapeMismatch(f"'{first.text}' is {_shape(a)} and '{second.text}' is {_shape(b)}, "
                                f"which do not fit in '{node.text}'")
        return _expand(a, rows, cols), _expand(b, rows, cols)

    def _bind_mul(self, node):
        a, b = (self.bind(x) for x in node.args[:2])
        how = node.args[2]
        if not _is_matrix(a) and not isinstance(a, _Ones) or not _is_matrix(b) and not isinstance(b, _Ones):
            if isinstance(a, _Ones) or isinstance(b, _Ones):
                raise ChainruleError(f"cannot tell the length of the ones vector in '{node.text}'")
            return a * b
        if isinstance(b, _Ones) and not b.row and _is_matrix(a):
            return a * sp.OneMatrix(a.shape[1], 1)
        if isinstance(a, _Ones) and a.row and _is_matrix(b):
            return sp.OneMatrix(1, b.shape[0]) * b
        if isinstance(a, _Ones) or isinstance(b, _Ones):
            raise ChainruleError(f"cannot tell the length of the ones vector in '{node.text}'")
        if how == "star":
            a, b = self._broadcast(node, a, b)
            return sp.HadamardProduct(a, b)
        if a.shape[1] == b.shape[0]:
            return sp.MatMul(a, b)
        if a.shape == (1, 1) or b.shape == (1, 1):  # a 1×1 matrix is a scalar in textbook notation
            a, b = self._broadcast(node, a, b)
            return sp.HadamardProduct(a, b)
        raise ShapeMismatch(f"cannot multiply '{node.args[0].text}' ({_shape(a)}) by '{node.args[1].text}' "
                            f"({_shape(b)}): the inner sizes differ")

    def _bind_had(self, node):
        a, b = (self.bind(x) for x in node.args[:2])
        if not _is_matrix(a) or not _is_matrix(b):
            if isinstance(a, _Ones) or isinstance(b, _Ones):
                raise ChainruleError(f"a ones vector cannot be in an element-wise product in '{node.text}'")
            return a * b
        if a.shape != b.shape:
            raise ShapeMismatch(f"the element-wise product in '{node.text}' needs equal shapes, but "
                                f"'{node.args[0].text}' is {_shape(a)} and '{node.args[1].text}' is {_shape(b)}")
        return sp.HadamardProduct(a, b)

    def _bind_div(self, node):
        a, b = (self.bind(x) for x in node.args)
        if isinstance(b, _Ones) or isinstance(a, _Ones):
            raise ChainruleError(f"a ones vector cannot be divided, nor divide, in '{node.text}'")
        if _is_matrix(b):  # element-wise, as NumPy divides (y / yhat, y \oslash \hat y)
            a, b = self._broadcast(node, a, b)
            return Pointwise(_DIVIDE, "/", a, b)
        if b == 0:
            raise ChainruleError(f"'{node.text}' divides by zero")
        return a * (1 / b) if not _is_matrix(a) else (1 / b) * a

    def _bind_T(self, node):
        a = self.bind(node.args[0])
        if isinstance(a, _Ones):
            return _Ones(not a.row)
        return sp.Transpose(a) if _is_matrix(a) else a  # not a.T, whose simplification is slow

    def _bind_pow(self, node):
        a, k = self.bind(node.args[0]), node.args[1]
        if not _is_matrix(a):
            return a ** k
        if k == 0:
            return sp.OneMatrix(*a.shape)
        return a if k == 1 else sp.HadamardProduct(*([a] * k))

    def _bind_ones(self, node):
        return _Ones()

    def _bind_ind(self, node):
        arg = self.bind(node.args[0])
        if not _is_matrix(arg):
            raise ChainruleError(f"the indicator in '{node.text}' must be applied to a matrix such as z_1")
        return Pointwise(_INDICATOR if node.args[1] == ">" else _INDICATOR_GE, r"\mathbb{1}", arg)

    def _bind_where(self, node):
        cond_node, op, yes_node, no_node = node.args
        cond = self.bind(cond_node)
        if not _is_matrix(cond):
            raise ChainruleError(f"the condition in '{node.text}' must compare a matrix such as z_1 with 0")
        branches = []
        for branch in (yes_node, no_node):
            value = self.bind(branch)
            if isinstance(value, _Ones):
                raise ChainruleError(f"a ones vector cannot be a branch of '{node.text}'")
            cond, value = self._broadcast(node, cond, value, (cond_node, branch))
            branches.append((value, branch))
        yes, no = (self._broadcast(node, cond, b, (cond_node, n))[1] for b, n in branches)  # cond may have widened
        test = Z > 0 if op == ">" else Z >= 0
        return Pointwise(sp.Lambda((Z, _YES, _NO), sp.Piecewise((_YES, test), (_NO, True))), "where", cond, yes, no)

    def _bind_clip(self, node):
        arg, low, high = (self.bind(x) for x in node.args)
        if not _is_matrix(arg):
            raise ChainruleError(f"'{node.text}' must clip a matrix such as yhat - y")
        if low > high:
            raise ChainruleError(f"the lower bound of '{node.text}' is above the upper one")
        return Pointwise(sp.Lambda(Z, sp.Piecewise((low, Z < low), (high, Z > high), (Z, True))), "clip", arg)

    def _bind_sum(self, node):
        a, axis = self.bind(node.args[0]), node.args[1]
        if not _is_matrix(a):
            return a
        if axis == "batch":
            if not self.batch:
                return a
            axis = 0 if self.rows else 1
        if axis == 0:
            return sp.OneMatrix(1, a.shape[0]) * a
        if axis == 1:
            return a * sp.OneMatrix(a.shape[1], 1)
        return sp.OneMatrix(1, a.shape[0]) * a * sp.OneMatrix(a.shape[1], 1)

    def _bind_act(self, node):
        name, prime, arg_node = node.args
        arg = self.bind(arg_node)
        if not _is_matrix(arg):
            raise ChainruleError(f"'{node.text}' must be applied to a matrix such as z_1")
        layer = self._layer_of(arg_node)
        if name == "sign":
            if prime:
                raise ChainruleError(f"'{node.text}': sign' is not understood")
            return Pointwise(sp.Lambda(Z, sp.sign(Z)), r"\operatorname{sign}", arg)
        if name in GENERIC_ACTIVATIONS:
            if layer is None:
                raise ChainruleError(f"{name} in '{node.text}' stands for a layer's activation, so apply it to "
                                     f"that layer's pre-activation, like {name}'(z_1)")
            act = self.net.layers[layer - 1].activation
        elif name not in ACTIVATION_ALIASES:
            custom = {layer.activation.name.lower().replace("_", ""): layer.activation for layer in self.net.layers}
            if name not in custom:
                raise ChainruleError(f"unknown activation '{name}' in '{node.text}'; use sigma, tanh, relu, ..., "
                                     f"f for the layer's own, or one of this network's: {', '.join(sorted(custom))}")
            act = custom[name]
            own = self.net.layers[layer - 1].activation if layer else None
            if own is not None and own is not act and prime:
                self._flag_wrong_derivative(node, layer, own, act)
        else:
            kind = ACTIVATION_ALIASES[name]
            own = self.net.layers[layer - 1].activation if layer else None
            if own is not None and own.name == kind:
                act = own
            else:
                act = make_activation(kind, "check")
                if own is not None and prime:
                    self._flag_wrong_derivative(node, layer, own, act)
        if not act.elementwise:
            if layer == self.layers and act is self.net.layers[-1].activation:
                # softmax(z_L) is the output; softmax'(z_L) read element-wise, the classic mistake, is its
                # Jacobian's diagonal, which the flag names
                if not prime:
                    return self.table[f"a{layer}"]
                self.flags.append(self.softmax_message(node.text))
                return self._softmax_diagonal(self.table[f"a{layer}"])
            raise ChainruleError(f"{act.name} is not element-wise, so '{node.text}' is not understood; write its "
                                 f"rule: dL/dz_L = \\hat y - y with cross-entropy, "
                                 f"\\hat y \\odot (g - 1 \\hat y^T g) with g = dL/d\\hat y otherwise")
        body = act.derivative if prime else act.definition
        return Pointwise(sp.Lambda(Z, body), act.latex + ("'" if prime else ""), arg)

    def _flag_wrong_derivative(self, node, layer, own, act):
        if not own.elementwise:  # σ'(z_L) for a softmax output: softmax read as element-wise
            self.flags.append(self.softmax_message(node.text))
            return
        self.flags.append(f"wrong activation derivative: layer {layer} uses {own.name}, so "
                          f"'{node.text}' should be {own.name}'(z_{layer}), not {act.name}'")

    def _layer_of(self, node):
        if node.kind == "name":
            m = re.fullmatch(r"z(\d+)", node.args[0])
            if m and 1 <= int(m.group(1)) <= self.layers:
                return int(m.group(1))
        return None

    # -- values at points -----------------------------------------------------------------------
    def leaves(self, rng=None):
        """Values for the data and parameters: SymPy symbols (rng None) or NumPy arrays of one-decimal numbers."""
        values = {}
        for q in self.q.values():
            if q.key not in self.leaf_keys:
                continue
            rows, cols = (int(s.subs(N, BATCH)) for s in q.symbol.shape)
            if q.role == "mask" and rng is not None:
                keep = 1 / (1 - self.net.layers[q.layer - 1].dropout)
                values[q.symbol] = np.array([[keep * (rng.random() < 0.6) for _ in range(cols)] for _ in range(rows)])
                continue
            if rng is None:
                values[q.symbol] = sp.ImmutableMatrix(rows, cols, lambda i, j: sp.Symbol(f"{q.key}_{i}{j}", real=True))
                continue
            if q.key.lower() == "y" and self.net.loss.name == "cross_entropy":
                hot = [rng.randrange(rows) for _ in range(cols)]
                values[q.symbol] = np.array([[float(hot[j] == i) for j in range(cols)] for i in range(rows)])
                continue
            low, high = (1, 9) if q.key.lower() == "y" and self.net.loss.name == "bce" else (-15, 15)
            values[q.symbol] = np.array([[_nonzero(rng, low, high) / 10 for _ in range(cols)] for _ in range(rows)])
        return values

    def evaluate_steps(self, leaves, overrides=None):
        """Every step's value from the leaves: SymPy matrices for symbols, NumPy arrays for numbers."""
        env = dict(leaves)
        overrides = overrides or {}
        numeric = any(isinstance(v, np.ndarray) for v in leaves.values())
        evaluate = numeric_value if numeric else explicit
        for step in self.sweep.steps:
            env[step.target.symbol] = evaluate(overrides.get(step.target.key, step.rhs), env)
        return env

    def points(self):
        if self._points is None:
            self._points = self._at_points({})
        return self._points

    def _at_points(self, overrides):
        """The steps' values at the random points, with ``overrides`` in place of steps."""
        return [self.evaluate_steps(self.leaves(random.Random(seed)), overrides) for seed in range(1, POINTS + 1)]

    def numeric(self, expr, env):
        with np.errstate(all="ignore"):  # a person's division by an entry that is 0 gives inf, never equal
            return np.atleast_2d(np.asarray(numeric_value(expr, env), dtype=float)).ravel().tolist()

    # -- softmax read as element-wise, the classic mistake ----------------------------------------------
    def _softmax_diagonal(self, yhat):
        """ŷ ⊙ (1 − ŷ) of the output ``yhat``: the diagonal ∂ŷ_i/∂z_i of softmax's Jacobian, sympy.diff of
        ŷ_i = f(z_i) / (f(z_i) + s) (s the rest of its column's sum) written in ŷ_i."""
        f = self.net.layers[-1].activation.definition
        rest, y = sp.symbols("rest yhat", positive=True)
        diagonal = sp.diff(f / (f + rest), Z).subs(rest, f * (1 - y) / y)
        return Pointwise(sp.Lambda(y, sp.factor(sp.simplify(diagonal))), r"\operatorname{softmax}'", yhat)

    def elementwise_softmax(self) -> dict:
        """Overrides of the sweep's steps that read a softmax output as element-wise: δ_L = ŷ ⊙ (1 − ŷ) ⊙
        dL/dŷ, the diagonal of its Jacobian only (dL/dŷ the loss's own where softmax and loss are fused);
        {} when the output is not softmax."""
        if self.net.layers[-1].activation.elementwise:
            return {}
        yhat, y = self.q[self._a_key(self.layers)], self.q[self.key("y")]
        named = self.q.get(f"dL_d{yhat.key}")
        upstream = named.symbol if named is not None else self.sweep.loss_gradient(yhat, y)
        delta = self.q[f"{self.key('delta')}{self.layers}"]
        return {delta.key: sp.HadamardProduct(self._softmax_diagonal(yhat.symbol), upstream)}

    def _softmax_world(self, mine, expected):
        """The points of the derivation that reads softmax as element-wise, where that mistake can explain
        ``mine``: ``expected`` differs there and nothing ``mine`` names does (δ_L by name holds the right
        step); else None."""
        if self._elementwise is None:
            overrides = self.elementwise_softmax()
            self._elementwise = self._at_points(overrides) if overrides else []
        if not self._elementwise:
            return None
        right, wrong = self.points()[0], self._elementwise[0]

        def changed(expr):
            return self.numeric(expr, right) != self.numeric(expr, wrong)
        if not changed(expected) or any(changed(s) for s in mine.atoms(sp.MatrixSymbol)):
            return None
        return self._elementwise

    def softmax_message(self, written="") -> str:
        """The classic softmax mistake named (``written``: the person's element-wise derivative), with δ_L."""
        target = self.target(f"delta{self.layers}")
        rule = f"{target.label} = {self.printed(target)[0]}"
        if self.net.loss.fused_with:
            rule = (f"the Jacobian times g = dL/dŷ is ŷ ⊙ (g − 1 ŷᵀ g), which with the {self.net.loss.title} "
                    f"is {rule}")
        whose = "each sample's" if self.batch else "its"
        return ("softmax is not element-wise" + (f", so '{written}' is not its derivative" if written else "")
                + f": ŷ ⊙ (1 − ŷ) is only the diagonal of {whose} Jacobian diag(ŷ) − ŷŷᵀ; with the "
                  f"off-diagonal −ŷ_i ŷ_j terms, {rule}")

    def same(self, a, b, envs=None) -> bool:
        """Equal at the random points (both matrices or both scalars, equal shapes)."""
        if _shape_of(a) != _shape_of(b):
            return False
        with np.errstate(all="ignore"):
            for env in envs or self.points():
                try:
                    x, y = self.numeric(a, env), self.numeric(b, env)
                except (TypeError, ValueError, ZeroDivisionError, KeyError):
                    return False
                if not _close(x, y):
                    return False
        return True

    def exactly_equal(self, a, b) -> bool:
        """True when SymPy proves the entries equal with a symbol for every input and parameter."""
        leaves = self.leaves(None)
        if sum(len(v) for v in leaves.values()) > MAX_PROOF_ENTRIES:
            return False
        try:
            env = self.evaluate_steps(leaves)
            x, y = sp.Matrix(sp.Matrix([explicit(a, env)])), sp.Matrix(sp.Matrix([explicit(b, env)]))
        except Exception:  # symbolic evaluation can fail on exotic formulas; the numeric check decides
            return False
        deadline = time.monotonic() + PROOF_SECONDS
        for d in (sp.Matrix(x) - sp.Matrix(y)):
            if d == 0:
                continue
            if time.monotonic() > deadline or d.has(sp.Piecewise, sp.erf) or sp.count_ops(d) > 400:
                return False
            if sp.expand(d) == 0:
                continue
            if sp.count_ops(d) > 80 or time.monotonic() > deadline or sp.simplify(d) != 0:
                return False
        return True

    # -- the verdict ----------------------------------------------------------------------------
    def check(self, wrt: str, text: str):
        """A CheckResult, or a RuleResult (one verdict per layer) when the expression is a rule in l."""
        wrt_tree, tree = parse(wrt), parse(text)
        if _layer_refs(tree, "l") and not _layer_refs(wrt_tree, "l"):
            raise ChainruleError(f"'{text}' is a rule in the layer l but '{wrt}' names one quantity; write the "
                                 f"left side in l too, like \\delta^l or dL/dW^l, to check it at every layer")
        if _layer_refs(wrt_tree, "l"):
            return self.check_rule(wrt_tree, tree, text)
        try:
            return self._check_one(self._at_layer(wrt_tree, None), self._at_layer(tree, None), text)
        except _Absent as absent:
            raise ChainruleError(f"{absent.node.text} would be layer {absent.layer}, but this network's layers are "
                                 f"1 to {self.layers} (L is the last layer)") from None

    def check_rule(self, wrt_tree: Node, tree: Node, text: str) -> "RuleResult":
        """The rule instantiated at l = 1, ..., L; a layer where it names a missing quantity is left out."""
        verdicts = []
        for l in range(1, self.layers + 1):
            try:
                verdicts.append(_LayerVerdict(l, self._check_one(self._at_layer(wrt_tree, l),
                                                                 self._at_layer(tree, l), text)))
            except _Absent as absent:
                verdicts.append(_LayerVerdict(l, None, self._absent_note(absent, wrt_tree, l)))
        if all(v.result is None for v in verdicts):
            raise ChainruleError(f"the rule '{wrt_tree.text} = {text}' applies at no layer of this network: "
                                 + "; ".join(f"at l = {v.layer}, {v.note}" for v in verdicts))
        return RuleResult(wrt_tree.text, text, verdicts)

    def _at_layer(self, node: Node, l):
        """``node`` with every layer index in l (at ``l``) and L (the last layer) replaced by its number."""
        if node.kind in ("name", "grad"):
            m = _INDEXED.fullmatch(node.args[0])
            if not m:
                return node
            layer = (l if m["letter"] == "l" else self.layers) + int(m["offset"] or 0)
            norm = f"{m['stem']}{layer}"
            if not (1 <= layer <= self.layers or layer == 0 and (
                    norm in self.table or norm in self.grads or self._gradient_name(norm))):
                raise _Absent(node, layer)
            return Node(node.kind, (norm,), node.text)
        return Node(node.kind, tuple(self._at_layer(a, l) if isinstance(a, Node) else a for a in node.args), node.text)

    def _absent_note(self, absent, wrt_tree, l) -> str:
        where = "the output layer" if l == self.layers else "a hidden layer"
        why = ("layers start at 1 (only a^0 = h^0 = x is layer 0)" if absent.layer <= 0 else
               f"the network's last layer is {self.layers}")
        note = f"does not apply ({where}): {absent.node.text} would be layer {absent.layer}, and {why}"
        try:
            target = self.target(self._at_layer(wrt_tree, l))
        except _Absent:
            return note
        return note + f"; there {target.label} = {self.printed(target)[0]}"

    def _check_one(self, wrt_tree: Node, tree: Node, text: str) -> CheckResult:
        target = self.target(wrt_tree)
        correct, correct_latex = self.printed(target)
        self.flags, self._bound = [], {}
        problem, mine = "", None
        try:
            mine = self.bind(tree)
            if isinstance(mine, _Ones):
                raise ChainruleError(f"'{text}' is only a ones vector")
        except ShapeMismatch as err:
            problem = str(err)
        flags = list(self.flags)
        expected = target.expr
        result = CheckResult(target.label, text, False, "", correct, correct_latex)
        if mine is not None and _shape_of(mine) == _shape_of(expected) and not flags:
            if self.same(mine, expected):
                result.equal, result.proof = True, f"equal at {POINTS} random points; SymPy did not reduce " \
                                                   f"the difference to 0 in its time budget"
                if self.exactly_equal(mine, expected):
                    result.proof = "SymPy proves it equal entry by entry at the network's sizes" + (
                        f" with N = {BATCH}" if self.batch else "")
                return result
        result.diagnosis = self.diagnose(tree, mine, expected, problem, flags)
        if mine is not None and _shape_of(mine) == _shape_of(expected):
            result.counterexample = self.counterexample(mine, expected, target.label)
        return result

    def diagnose(self, tree, mine, expected, problem, flags) -> str:
        """One usual mistake that explains the difference, else a pair of them, else why none does."""
        single = self._one_mistake(tree, mine, expected)
        if flags:  # a named activation that is not the layer's: the flag says it better than the edit
            return flags[0] if single else (self._two_mistakes(tree, mine, expected) or flags[0])
        if single:
            return single
        pair = self._two_mistakes(tree, mine, expected)
        if pair:
            return pair
        if problem:
            return f"the shapes do not fit: {problem}"
        if mine is not None and _shape_of(mine) != _shape_of(expected):
            return (f"wrong shape: yours is {_shape(mine)} but the gradient is {_shape(expected)}, "
                    f"and no usual mistake or pair of them explains it")
        return ("no usual mistake (transpose, sign, factor, activation derivative, sum) or pair of them explains "
                "the difference")

    def _edited_values(self, tree):
        """(value, message) for each single edit of the tree; value None when it does not bind or is flagged."""
        for edited, message in _edits(tree, self):
            self.flags = []
            try:
                value = self.bind(edited)
            except (ShapeMismatch, ChainruleError):
                value = None
            yield (value if not self.flags and _is_matrix(value) else None), message

    def _one_mistake(self, tree, mine, expected) -> str:
        found = self._global_mistake(mine, expected) if _is_matrix(mine) else ""
        return found or next((message for value, message in self._edited_values(tree)
                              if value is not None and self.same(value, expected)), "")

    def _two_mistakes(self, tree, mine, expected) -> str:
        """Two usual mistakes together: softmax read as element-wise, an edit of the tree or a fix of the
        whole value, followed by a mistake of the whole value, or two edits of the tree; at most PAIR_TRIES
        candidates, always in the same order."""
        firsts = list(self._global_fixes(mine, expected)) if _is_matrix(mine) else []
        world = self._softmax_world(mine, expected) if _is_matrix(mine) else None
        second = world and self._global_mistake(mine, expected, world)
        if second:
            return f"two mistakes: {self.softmax_message()}; and {second}"
        tries = 1 if world else 0
        for value, message in firsts + list(self._edited_values(tree)):
            tries += 1
            second = value is not None and self._global_mistake(value, expected)
            if second:
                return f"two mistakes: {message}; and {second}"
            if tries >= PAIR_TRIES:
                return ""
        for edited, message in _edits(tree, self):  # the first edit alone may not even bind
            for value, second in self._edited_values(edited):
                tries += 1
                if value is not None and self.same(value, expected):
                    return f"two mistakes: {message}; and {second}"
                if tries >= PAIR_TRIES:
                    return ""
        return ""

    def _global_mistake(self, mine, expected, envs=None) -> str:
        """A mistake in the whole value: one of ``_global_fixes``, a constant factor, an extra derivative,
        softmax read as element-wise; ``envs``: the points to compare at (the derivation's by default)."""
        for fixed, message in self._global_fixes(mine, expected):
            if self.same(fixed, expected, envs):
                return message
        if _shape_of(mine) != _shape_of(expected):
            return ""
        ratio = self._ratio(mine, expected, envs)
        if ratio is not None and ratio != 1:
            return _factor_message(ratio, self.net, self.batch)
        for l, f, prime in self._derivatives(_shape_of(expected)):
            if self.same(mine, sp.HadamardProduct(expected, prime), envs):
                return f"extra activation derivative: yours has one {f.name}'(z_{l}) too many"
        world = envs is None and self._softmax_world(mine, expected)
        if world and self.same(mine, expected, world):
            return self.softmax_message()
        return ""

    def _global_fixes(self, mine, expected):
        """(yours corrected, the mistake) for each usual mistake of the whole value that fits its shape."""
        rs, cs = _shape_of(mine), _shape_of(expected)
        if rs == (cs[1], cs[0]) and rs != cs:
            yield mine.T, f"transposed: yours is {_shape(mine)}, the transpose of the {_shape(expected)} gradient"
        if rs == cs and rs[0] == rs[1] and rs != (1, 1):
            yield mine.T, "transposed: yours is the transpose of the gradient"
        if self.batch:
            along = sp.OneMatrix(1, rs[0]) * mine if self.rows else mine * sp.OneMatrix(rs[1], 1)
            if _shape_of(along) == cs and rs != cs:
                axis = 0 if self.rows else 1
                yield along, (f"missing sum over the batch: yours has one {'row' if self.rows else 'column'} per "
                              f"sample; sum it (axis={axis})")
        if rs != cs:
            return
        for l in range(1, self.layers + 1):
            W = self.table[f"w{l}"]
            if _shape_of(W) != cs:
                continue
            for weight, term, name in ((self.net.l2, W, "L2"),
                                       (self.net.l1, Pointwise(sp.Lambda(Z, sp.sign(Z)), "sign", W), "L1")):
                if weight:
                    shown = f"{weight:g}·W{l}" if name == "L2" else f"{weight:g}·sign(W{l})"
                    yield (sp.MatAdd(mine, sp.nsimplify(weight, rational=True) * term),
                           f"missing the {name} penalty's gradient: add {shown}")
        for q in self.q.values():
            if not re.fullmatch(r"dL_d[aA]\d+", q.key) or _shape_of(self.view(q)) != cs:
                continue
            skip = self.view(q)
            message = f"missing the residual path: the gradient also arrives through the skip connection; add {q.text}"
            yield sp.MatAdd(mine, skip), message
            for l, f, prime in self._derivatives(cs):
                yield sp.MatAdd(mine, sp.HadamardProduct(skip, prime)), f"{message} inside the product with {f.name}'(z_{l})"
        for l in range(1, self.layers + 1):
            mask = self.table.get(f"m{l}")
            if mask is not None and _shape_of(mask) == cs:
                yield (sp.HadamardProduct(mine, mask), f"missing dropout mask: multiply element-wise by m_{l} "
                                                       f"(the gradient flows only where a unit was kept)")
        for l, f, prime in self._derivatives(cs):
            z = self.table[f"z{l}"]
            if not any(p.has(z) for p in mine.atoms(Pointwise)):  # with a factor in z_l it is the wrong one
                yield sp.HadamardProduct(mine, prime), f"missing activation derivative: multiply element-wise by {f.name}'(z_{l})"

    def _derivatives(self, shape):
        """(layer, activation, f'(z_l)) for each element-wise, non-identity activation whose z_l has ``shape``."""
        for l, layer in enumerate(self.net.layers, start=1):
            f = layer.activation
            if f.elementwise and not f.is_identity and _shape_of(self.table[f"z{l}"]) == shape:
                yield l, f, Pointwise(sp.Lambda(Z, f.derivative), f.latex + "'", self.table[f"z{l}"])

    def _ratio(self, mine, expected, envs=None):
        env = (envs or self.points())[0]
        x, y = self.numeric(mine, env), self.numeric(expected, env)
        pairs = [(a, b) for a, b in zip(x, y) if abs(b) > 1e-9]
        if not pairs:
            return None
        k = max(pairs, key=lambda p: abs(p[1]))
        k = k[0] / k[1]
        if abs(k) < 1e-12:
            return None
        guess = sp.nsimplify(k, rational=True, tolerance=1e-9)
        return guess if self.same(mine, guess * expected, envs) else None

    def counterexample(self, mine, expected, label) -> str:
        env = self.points()[0]
        inputs = []
        for q in self.q.values():
            if q.key in self.leaf_keys:
                inputs.append(f"{q.text} = {_fmt(self.numeric(self.view(q), env), self.view(q))}")
        x, y = self.numeric(mine, env), self.numeric(expected, env)
        if sum(len(self.numeric(self.view(q), env)) for q in self.q.values() if q.key in self.leaf_keys) \
                <= SHOWN_ENTRIES and len(y) <= SHOWN_ENTRIES:
            return f"at {', '.join(inputs)}: yours = {_fmt(x, mine)}, {label} = {_fmt(y, expected)}"
        worst = max(range(len(y)), key=lambda k: abs(x[k] - y[k]))
        cols = int(_shape_of(expected)[1])
        return (f"at random inputs and parameters (one decimal each, seed 1), entry ({worst // cols + 1}, "
                f"{worst % cols + 1}): yours = {x[worst]:.4g}, {label} = {y[worst]:.4g}")


# -- the usual mistakes as single edits of the tree ---------------------------------------------------
def _edits(tree: Node, checker, limit=400):
    count = 0
    for edited, message in _walk(tree, checker):
        yield edited, message
        count += 1
        if count >= limit:
            return


def _walk(node: Node, checker):
    yield from _local(node, checker)
    for i, child in enumerate(node.args):
        if isinstance(child, Node):
            for edited, message in _walk(child, checker):
                args = list(node.args)
                args[i] = edited
                yield Node(node.kind, tuple(args), node.text), message


def _local(node: Node, checker):
    t = node.text
    kind, args = node.kind, node.args
    if kind == "T":
        yield args[0], f"extra transpose: '{t}' should be '{args[0].text}'"
    elif kind in ("name", "grad", "mul", "had", "act", "sum", "add", "sub") and not (
            kind == "name" and args[0] in ("n", "m")):
        yield Node("T", (node,), t), f"missing transpose: '{t}' should be transposed"
    if kind == "mul" and args[2] == "matmul":
        a, b = args[0].text, args[1].text
        yield Node("had", args[:2], t), (f"a matrix product where an element-wise (Hadamard) product belongs: "
                                         f"'{t}' should be '{a} ⊙ {b}'")
        yield Node("mul", (args[1], args[0], "matmul"), t), f"factors in the wrong order: '{t}' should be '{b} {a}'"
    if kind == "had" or kind == "mul" and args[2] == "star":
        a, b = args[0].text, args[1].text
        yield Node("mul", (args[0], args[1], "matmul"), t), (
            f"an element-wise (Hadamard) product where a matrix product belongs: '{t}' should be '{a} {b}' (a @ b)")
    if kind in ("had", "mul"):
        for keep, drop in ((args[0], args[1]), (args[1], args[0])):
            if drop.kind in ("act", "ind", "where"):
                yield keep, f"extra activation derivative: '{drop.text}' does not belong in '{t}'"
    if kind in ("ind", "where") and checker._layer_of(args[0]) and (kind == "ind" or all(
            branch.kind == "num" or branch.kind == "neg" and branch.args[0].kind == "num" for branch in args[2:])):
        layer = checker._layer_of(args[0])
        yield Node("act", ("f", True, args[0]), t), (
            f"wrong activation derivative: layer {layer} uses {checker.net.layers[layer - 1].activation.name}, "
            f"whose derivative is not '{t}'")
    if kind == "where":
        cond, op, yes, no = args
        yield Node("where", (cond, op, no, yes), t), (
            f"np.where's branches swapped: '{t}' should give '{yes.text}' where {cond.text} {op} 0 fails "
            f"and '{no.text}' where it holds")
    if kind == "clip":
        yield args[0], f"extra clipping: '{t}' should be '{args[0].text}'"
        loss = checker.net.loss
        for key, bound in {**getattr(LOSSES.get(loss.name), "defaults", {}), **dict(loss.params)}.items():
            number = Node("num", (str(bound),), str(bound))
            if isinstance(bound, (int, float)) and bound > 0:
                yield Node("clip", (args[0], Node("neg", (number,), f"-{bound}"), number), t), (
                    f"wrong bounds: the {loss.title} with {key} = {bound:g} clips at ±{bound:g}")
    if kind == "neg":
        yield args[0], f"sign: '{t}' should be '{args[0].text}'"
    if kind == "sub":
        yield Node("add", args, t), f"sign: '{t}' should add '{args[1].text}', not subtract it"
    if kind == "add":
        yield Node("sub", args, t), f"sign: '{t}' should subtract '{args[1].text}'"
    if kind == "act":
        name, prime, arg = args
        layer = checker._layer_of(arg)
        if name == "sign":
            return
        if layer and name not in GENERIC_ACTIVATIONS:
            yield Node("act", ("f", prime, arg), t), (
                f"wrong activation derivative: layer {layer} uses "
                f"{checker.net.layers[layer - 1].activation.name}, not {ACTIVATION_ALIASES.get(name, name)}")
        if not prime:
            yield Node("act", (name, True, arg), t), f"the activation where its derivative belongs: '{t}' should be {name}'(...)"
        if layer:
            for other in range(1, checker.layers + 1):
                if other != layer:
                    moved = Node("name", (f"z{other}",), f"z_{other}")
                    yield Node("act", (name, prime, moved), t), (
                        f"activation derivative at the wrong layer: '{t}' should be at z_{other}")
    if kind == "sum":
        for axis in (0, 1, None):
            if axis != args[1]:
                yield Node("sum", (args[0], axis), t), f"wrong sum over the batch: '{t}' sums over the wrong axis"
        yield args[0], f"extra sum: '{t}' should not be summed"
    if kind == "name" and args[0] == "x":
        for other in range(1, checker.layers):
            yield Node("name", (f"h{other}",), f"h{other}"), f"wrong layer: '{t}' should be h{other}"
    if kind == "name" and re.fullmatch(r"[a-z]+\d+", args[0] or ""):
        stem, layer = re.fullmatch(r"([a-z]+)(\d+)", args[0]).groups()
        for other in range(0, checker.layers + 1):
            norm = f"{stem}{other}" if other else ("x" if stem in ("a", "h") else "")
            if other != int(layer) and norm and norm in checker.table:
                yield Node("name", (norm,), norm), f"wrong layer: '{t}' should be {norm}"


def _factor_message(k, net, batch=True) -> str:
    outputs = net.outputs
    if k == -1:
        return "sign: yours is the negative of the gradient (check ŷ - y against y - ŷ, and every minus)"
    hints = []
    squared = net.loss.pointwise.has(sp.Pow) and any(p.exp == 2 for p in net.loss.pointwise.atoms(sp.Pow))
    if abs(k) in (2, sp.Rational(1, 2)) and squared:
        hints.append("the 2 from differentiating the square: d/dŷ (ŷ - y)² = 2(ŷ - y)")
    if batch and abs(k) in (BATCH, sp.Rational(1, BATCH)):
        hints.append("the 1/N of the mean over the batch")
    if net.loss.reduction == "mean" and outputs > 1 and abs(k) in (outputs, sp.Rational(1, outputs)):
        hints.append(f"the 1/{outputs} of the mean over the outputs")
    if batch and abs(k) in (2 * BATCH, sp.Rational(1, 2 * BATCH)) and squared:
        hints.append("both the 2 of the square and the 1/N of the mean")
    sign = "the negative of " if k < 0 else ""
    text = f"constant factor: yours is {sign}{abs(k)} times the gradient"
    return text + (f" ({'; '.join(hints)})" if hints else "")


def _push_transposes(expr, flip=False):
    """``expr`` (transposed when ``flip``) with transposes moved down to the symbols, for printing."""
    if isinstance(expr, sp.Transpose):
        return _push_transposes(expr.arg, not flip)
    if isinstance(expr, sp.MatMul):
        coeff, mats = expr.as_coeff_matrices()
        mats = [_push_transposes(m, flip) for m in (reversed(mats) if flip else mats)]
        return sp.MatMul(coeff, *mats) if coeff != 1 else sp.MatMul(*mats)
    if isinstance(expr, sp.MatAdd):
        return sp.MatAdd(*(_push_transposes(a, flip) for a in expr.args))
    if isinstance(expr, sp.HadamardProduct):
        return sp.HadamardProduct(*(_push_transposes(a, flip) for a in expr.args))
    if isinstance(expr, Pointwise):
        return Pointwise(expr.fn, expr.label, *(_push_transposes(m, flip) for m in expr.mats))
    if isinstance(expr, sp.OneMatrix) and flip:
        return sp.OneMatrix(expr.shape[1], expr.shape[0])
    return expr.T if flip and isinstance(expr, sp.MatrixExpr) else expr


# -- explicit evaluation of the derivation's matrix expressions --------------------------------------
def explicit(expr, env):
    """``expr`` with every MatrixSymbol replaced by its explicit matrix in ``env``, N by BATCH."""
    if expr in env:
        return env[expr]
    if expr == N:
        return sp.Integer(BATCH)
    if isinstance(expr, sp.MatrixSymbol):
        raise KeyError(f"no value for {expr}")
    if isinstance(expr, sp.OneMatrix):
        rows, cols = (int(sp.sympify(s).subs(N, BATCH)) for s in expr.shape)
        return sp.ImmutableMatrix.ones(rows, cols)
    if isinstance(expr, sp.ZeroMatrix):
        rows, cols = (int(sp.sympify(s).subs(N, BATCH)) for s in expr.shape)
        return sp.ImmutableMatrix.zeros(rows, cols)
    if isinstance(expr, sp.Transpose):
        return explicit(expr.arg, env).T
    if isinstance(expr, sp.MatMul):
        out = sp.Integer(1)
        for arg in expr.args:
            value = explicit(arg, env)
            out = value * out if not isinstance(out, sp.MatrixBase) and isinstance(value, sp.MatrixBase) else out * value
        return out
    if isinstance(expr, sp.MatAdd):
        values = [explicit(arg, env) for arg in expr.args]
        total = values[0]
        for v in values[1:]:
            total = total + v
        return total
    if isinstance(expr, sp.HadamardProduct):
        values = [explicit(arg, env) for arg in expr.args]
        out = values[0]
        for v in values[1:]:
            out = out.multiply_elementwise(v)
        return sp.ImmutableMatrix(out)
    if isinstance(expr, sp.HadamardPower):
        base, power = explicit(expr.base, env), explicit(expr.exp, env)
        return base.applyfunc(lambda v: v ** power)
    if isinstance(expr, Pointwise):
        mats = [explicit(m, env) for m in expr.mats]
        rows, cols = mats[0].shape
        return sp.ImmutableMatrix(rows, cols, lambda i, j: expr.fn(*(m[i, j] for m in mats)))
    if isinstance(expr, ColumnNormalize):
        mat = explicit(expr.mat, env)
        sums = [sum(mat[:, j]) for j in range(mat.cols)]
        return sp.ImmutableMatrix(mat.rows, mat.cols, lambda i, j: mat[i, j] / sums[j])
    if isinstance(expr, ElementSum):
        mats = [explicit(m, env) for m in expr.mats]
        return sp.Add(*(expr.fn(*(m[k] for m in mats)) for k in range(len(mats[0]))))
    if isinstance(expr, (sp.Add, sp.Mul, sp.Pow)) and expr.has(ElementSum, sp.MatrixExpr):
        return expr.func(*(explicit(a, env) for a in expr.args))
    if isinstance(expr, sp.Expr):
        return expr.xreplace({N: sp.Integer(BATCH)})
    raise TypeError(f"cannot evaluate {type(expr).__name__}")


_COMPILED = {}


def _compiled(fn: sp.Lambda):
    """A NumPy function for a scalar Lambda (activations, their derivatives, losses)."""
    if fn not in _COMPILED:
        body = fn.expr
        try:
            f = sp.lambdify(fn.variables, body, modules=["numpy", {"erf": np.vectorize(math.erf)}])
        except Exception:  # a formula NumPy cannot print: evaluate it element by element
            scalar = sp.lambdify(fn.variables, body, modules=["mpmath"])
            f = np.vectorize(lambda *a: float(scalar(*a)))
        _COMPILED[fn] = f
    return _COMPILED[fn]


def _ones_like(shape):
    return np.ones(tuple(int(sp.sympify(s).subs(N, BATCH)) for s in shape))


def numeric_value(expr, env):
    """``expr`` evaluated with NumPy: 2-D arrays for matrices, floats for scalars."""
    if expr in env:
        return env[expr]
    if expr == N:
        return float(BATCH)
    if isinstance(expr, sp.MatrixSymbol):
        raise KeyError(f"no value for {expr}")
    if isinstance(expr, sp.OneMatrix):
        return _ones_like(expr.shape)
    if isinstance(expr, sp.ZeroMatrix):
        return 0 * _ones_like(expr.shape)
    if isinstance(expr, sp.Transpose):
        return numeric_value(expr.arg, env).T
    if isinstance(expr, sp.MatMul):
        out = 1.0
        for arg in expr.args:
            value = numeric_value(arg, env)
            out = out @ value if isinstance(out, np.ndarray) and isinstance(value, np.ndarray) else out * value
        return out
    if isinstance(expr, (sp.MatAdd, sp.Add)):
        return sum((numeric_value(a, env) for a in expr.args[1:]), numeric_value(expr.args[0], env))
    if isinstance(expr, sp.HadamardProduct):
        out = numeric_value(expr.args[0], env)
        for arg in expr.args[1:]:
            out = out * numeric_value(arg, env)
        return out
    if isinstance(expr, sp.HadamardPower):
        return numeric_value(expr.base, env) ** numeric_value(expr.exp, env)
    if isinstance(expr, Pointwise):
        mats = [numeric_value(m, env) for m in expr.mats]
        return np.broadcast_to(np.asarray(_compiled(expr.fn)(*mats), dtype=float), mats[0].shape).copy()
    if isinstance(expr, ColumnNormalize):
        mat = numeric_value(expr.mat, env)
        return mat / mat.sum(axis=0, keepdims=True)
    if isinstance(expr, ElementSum):
        mats = [numeric_value(m, env) for m in expr.mats]
        return float(np.sum(np.broadcast_to(np.asarray(_compiled(expr.fn)(*mats), dtype=float), mats[0].shape)))
    if isinstance(expr, sp.Mul):
        out = 1.0
        for arg in expr.args:
            out = out * numeric_value(arg, env)
        return out
    if isinstance(expr, sp.Pow):
        return numeric_value(expr.base, env) ** numeric_value(expr.exp, env)
    if isinstance(expr, sp.Expr):
        return float(expr.xreplace({N: sp.Integer(BATCH)}))
    raise TypeError(f"cannot evaluate {type(expr).__name__}")


def _close(x, y) -> bool:
    return len(x) == len(y) and all(abs(a - b) <= 1e-8 * (1 + abs(b)) for a, b in zip(x, y))


def _is_matrix(value) -> bool:
    return isinstance(value, (sp.MatrixExpr, sp.MatrixBase))


def _shape_of(value):
    if _is_matrix(value):
        return tuple(sp.sympify(s).subs(N, BATCH) for s in value.shape)
    return (1, 1) if isinstance(value, sp.Expr) else None


def _shape(value) -> str:
    if not _is_matrix(value):
        return "a scalar"
    return " × ".join(str(s) for s in value.shape)


def _stretch(a, b):
    if a == b:
        return a
    if a == 1:
        return b
    if b == 1:
        return a
    return None


def _expand(m, rows, cols):
    r, c = m.shape
    if r != rows:
        m = sp.OneMatrix(rows, 1) * m
    if c != cols:
        m = m * sp.OneMatrix(1, cols)
    return m


def _nonzero(rng, low, high) -> int:
    while True:
        v = rng.randint(low, high)
        if v:
            return v


def _fmt(values, like) -> str:
    def num(v):
        return f"{v:.4g}"
    if not _is_matrix(like):
        return num(values[0])
    rows, cols = (int(sp.sympify(s).subs(N, BATCH)) for s in like.shape)
    grid = [values[i * cols:(i + 1) * cols] for i in range(rows)]
    return "[" + "; ".join(" ".join(num(v) for v in row) for row in grid) + "]"


# -- the public API and the command line --------------------------------------------------------------
def check(derivation, wrt: str, expr: str, convention: str = "sample") -> CheckResult:
    """Compare a person's expression for the gradient ``wrt`` with the derived one."""
    return Checker(derivation, convention).check(wrt, expr)


def accepted_names(derivation, convention: str = "sample") -> list:
    """The names ``check`` binds for this network, as a person may write them."""
    return Checker(derivation, convention).accepted()


_FILE_LINE = re.compile(r"^\s*(?P<lhs>[^=]+?)\s*&?=\s*&?(?P<rhs>.+?)\s*(\\\\)?\s*[,.]?\s*$")


def read_equations(text: str) -> list:
    """(line number, left side, right side) for each 'X = ...' line of a file; LaTeX trimmings dropped."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("%")[0].strip() if not line.lstrip().startswith("#") else ""
        line = line.replace("$", "").replace(r"\[", "").replace(r"\]", "").replace("&", "")
        line = re.sub(r"\\(begin|end)\{[a-z*]+\}", "", line).strip()
        line = re.sub(r"\\(label|tag)\{[^}]*\}", "", line)
        if "=" not in line:
            continue
        m = _FILE_LINE.match(line)
        if m:
            out.append((number, m["lhs"], m["rhs"]))
    return out


def cli_check(args) -> int:
    """``chainrule check``: 0 when every expression is right, 1 when one differs, 2 when not understood."""
    from .chain import derive
    derivation = derive(args.spec)
    checker = Checker(derivation, getattr(args, "convention", "sample") or "sample")
    if getattr(args, "file", None):
        try:
            with open(args.file, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as err:
            raise ChainruleError(f"cannot read '{args.file}': {err}") from None
        equations = read_equations(text)
        if not equations:
            raise ChainruleError(f"'{args.file}' has no lines of the form 'QUANTITY = EXPRESSION'")
        worst = 0
        for number, lhs, rhs in equations:
            try:
                result = checker.check(lhs, rhs)
            except ChainruleError as err:
                print(f"line {number}: not understood: {err}")
                worst = 2
                continue
            print(f"line {number}: " + result.report(), end="")
            worst = max(worst, 0 if result.equal else 1)
        return worst
    if not args.wrt or args.grad is None:
        raise ChainruleError("give --wrt QUANTITY and --grad EXPRESSION, or --file FILE")
    result = checker.check(args.wrt, args.grad)
    print(result.report(), end="")
    return 0 if result.equal else 1


def cli_check_code(args) -> int:
    from .check_code import cli_check_code as run
    return run(args)
