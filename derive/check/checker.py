"""Check a person's hand-derived gradient against the derivation, and say what is wrong.

``check(derivation, "W2", r"\\delta_2 h_1^\\top")`` parses the expression (``parse``, which
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
the transpose of its ``columns`` form, biases are rows); ``ng``, ``goodfellow``, and, tried by ``auto`` only
where their marks appear (``options.TABLE``), ``ng_rows`` (Ng's names batch-first, W stored n_in × n_out),
``ufldl`` (layers counted from the input, W^{(l)} leaving layer l) and ``rowgrad`` (δ a row vector, w
stored n_in × n_out). Under ng and ng_rows two batch matrices of one shape side by side are multiplied
element by element (their matrix product cannot fit), and the correct form is printed as Ng writes it
(dZ = A − Y, dW = (1/m) dZ Aᵀ). ``t`` is the target y, a hat over a name with no hatted quantity
(``\\hat{z}^L``) marks a vector, ``gz^l`` (g and a name) is that name's gradient, and in a network of one
layer W, b, z, a need no layer number. Names are case-insensitive; layer
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

A network whose first layer is rnn, lstm or gru (an embedding may come first) is read by
``recurrent.RecurrentChecker`` (``Checker`` gives one): per-step names (x_t, h_t, δ_t, dh_t, c_t), sums and rules in t, the usual BPTT mistakes.

A network with one attention layer (``attention``) is read one sample at a time with the positions as rows:
Q, K, V, O, G = dL/dY, S_h, P_h (A with one head), M, W_Q, ..., d_k, and their gradients (dQ, δS_h,
\\frac{\\partial L}{\\partial V}) are bound to the op's own steps; ``\\sqrt{d_k}``, ``rowsum``, ``softmax(S)`` row
by row and ``\\mathbf{1}^\\top`` read as attention's notes write them, and its usual mistakes (the 1/√d_k, a
transpose in δK, softmax read element-wise, the mask, the heads) are named; W_Q is torch's (Q = X W_Qᵀ)
in ``sample`` and the paper's (Q = X W_Q) in ``vaswani`` (``attention``). The layer may be inside a residual
block, after an embedding and a position table (the pre-norm transformer); one sample's sequences are then
read a step per column, as the notes write them (``sequence``: [W a_t + b]_{t=1}^{T}, Σ_t, a layer norm's
σ_t), and a network whose attention is wider than limits.CHECK_ATTENTION is checked narrow (``narrowed``),
the note saying at which sizes.

The work is split by concern: ``parse`` reads the text, ``bind`` gives its names and operators
their SymPy values, ``compare`` evaluates and compares, ``diagnose`` searches the usual mistakes;
``Checker`` joins them for one derivation in one convention.
"""
import re
import time

import numpy as np
import sympy as sp

from .. import limits
from ..chain import Derivation
from ..errors import ChainruleError
from ..nodes import FeatureMean, Pointwise, broadcast
from ..ops.activations import Z
from ..verify import sizes
from .attention import _HEAD, AttentionBinder
from .bind import Binder, Ones, ShapeMismatch, resized
from .compare import AGREE, BATCH, BUDGETED, PROOF_SECONDS, SEARCH_SECONDS, Comparer, OutOfTime, is_matrix, shape_of
from .diagnose import Diagnoser, factor_message
from .options import BY_NAME, CHOICES, CONVENTIONS, ranked
from .parse import Node, NotAGradient
from .recurrent import RecurrentChecker, recurrent
from .results import CheckResult, RuleResult, _LayerVerdict
from .sequence import SequenceBinder, attention_layers, narrowed


class _Absent(Exception):
    """A layer index that names no layer of the network (W^{l+1} at the last layer)."""

    def __init__(self, node, layer):
        super().__init__(node.text)
        self.node, self.layer = node, layer


_INDEXED = re.compile(r"(?P<stem>.*)\[(?P<letter>[lL])(?P<offset>[+-]\d+)?\]")
# A hat over a name that has no hatted quantity marks a vector (Hjorth-Jensen's \hat{z}^L, \hat{\delta}^L);
# ŷ is the prediction and a layer norm's x̂ its normalised input.
_HATTED = re.compile(r"(?P<stem>z|a|h|delta|w|b)hat(?P<rest>\d*|\[.*\])")
ONE_SAMPLE = ("sample", "goodfellow", "ufldl", "rowgrad", "vaswani")  # the conventions of one sample (column vectors)
# The derivation's quantities each convention writes transposed (``Binder.flipped``).
TRANSPOSED = {"rows": r"(?!(dL_d)?W\d).*", "ng_rows": r".*", "rowgrad": r"W\d.*|delta.*|dL_d.*"}


def _layer_refs(node: Node, letter: str) -> bool:
    """True when a name in the tree has a layer index in ``letter`` (l or L)."""
    if node.kind in ("name", "grad"):
        m = _INDEXED.fullmatch(node.args[0])
        return bool(m) and m["letter"] == letter
    return any(_layer_refs(a, letter) for a in node.args if isinstance(a, Node))


class Checker(AttentionBinder, SequenceBinder, Binder, Comparer, Diagnoser):
    """One derivation in one convention: names, values at points, the comparison and diagnosis."""

    def __new__(cls, derivation, convention="sample"):
        if cls is Checker and recurrent(derivation.network):  # backpropagation through time: its own names
            return RecurrentChecker(derivation, convention)
        return super().__new__(cls)

    def __init__(self, derivation, convention="sample"):
        if convention not in CONVENTIONS:
            raise ChainruleError(f"unknown convention '{convention}'; choose one of: {', '.join(CONVENTIONS)}")
        self.derivation, self.convention = derivation, convention
        self.net = derivation.network
        other = unreadable(self.net)
        if other is not None:
            raise ChainruleError(f"chainrule check reads networks of dense, layernorm, activation and attention layers "
                                 f"and residual blocks of them (after an embedding and a position table, or not), and "
                                 f"layer {other} has type = \"{self.net.layers[other - 1].kind}\" (the mean over a "
                                 f"sequence is read outside blocks); check the derivation with derive.verify")
        size = sum(q.symbol.rows * q.symbol.cols for q in derivation.sample.quantities.values() if q.role == "param")
        if size > limits.CHECK_PARAMETERS:
            raise ChainruleError(f"the network has {size} weights and biases; check and check-code read networks of "
                                 f"at most {limits.CHECK_PARAMETERS} (CHECK_PARAMETERS), as they evaluate every "
                                 f"entry; check the same rule on a narrower network (the steps are the same)")
        self._size = size
        self.batch = convention not in ONE_SAMPLE
        self.rows = convention in ("rows", "ng_rows")
        self.ng = convention in ("ng", "ng_rows")
        self.transposed = TRANSPOSED.get(convention)
        self.sweep = derivation.batch if self.batch else derivation.sample
        self.q = self.sweep.quantities
        self.layers = len(self.net.layers)
        self.flags: list = []
        computed = {step.target.key for step in self.sweep.steps}
        # the inputs, targets, parameters and anything else no step computes (dropout masks) get values
        self.leaf_keys = {k for k, q in self.q.items() if k not in computed and isinstance(q.symbol, sp.MatrixSymbol)}
        if convention == "vaswani" and len(attention_layers(self.net.layers)) != 1:
            raise ChainruleError("the vaswani convention reads the names of an attention layer, and this network has "
                                 "none (or more than one); use sample or auto")
        self._read_steps()
        self._names()
        self._steps_shown()
        self.shared = {}  # the random points (compare.Comparer.seeds), shared by checkers of one sweep
        self.drawn = {}  # the random leaves, shared by checkers of one derivation
        self.diagnosing = True
        self._elementwise = None  # the points of the derivation that reads softmax as element-wise
        self._bound = {}  # id(node) -> (node, (value, error), flags), for one check

    # -- the verdict ----------------------------------------------------------------------------
    def check(self, wrt: str, text: str, diagnose: bool = True):
        """A CheckResult, or a RuleResult (one verdict per layer) when the expression is a rule in l;
        without ``diagnose``, the verdict alone (no mistake search)."""
        if self.attention is not None and _HEAD.search(wrt):
            return self.check_heads(wrt, text, diagnose)
        self.diagnosing = diagnose
        self.layer_applied(wrt, text)
        wrt_tree, tree = self.read(wrt, text)
        self.forward_step(wrt_tree)
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
            hat = _HATTED.fullmatch(node.args[0])
            if hat and not self._known(node.args[0]):
                node = Node(node.kind, (hat["stem"] + hat["rest"],), node.text)
            m = _INDEXED.fullmatch(node.args[0])
            if not m:
                return node
            layer = (l if m["letter"] == "l" else self.layers) + int(m["offset"] or 0)
            norm = f"{m['stem']}{layer}"
            # a layer out of 1..L, or one where a name known at other layers is missing (UFLDL's z^{(1)}), is
            # absent; layer 0 (a^0 = x) and UFLDL's a^{(L+1)} exist
            if not self._known(norm) and (not 1 <= layer <= self.layers or any(
                    self._known(f"{m['stem']}{k}") for k in range(self.layers + 2))):
                raise _Absent(node, layer)
            return Node(node.kind, (norm,), node.text)
        return Node(node.kind, tuple(self._at_layer(a, l) if isinstance(a, Node) else a for a in node.args), node.text)

    def _known(self, norm: str) -> bool:
        return norm in self.table or norm in self.grads or bool(self._gradient_name(norm) or self._ng_name(norm))

    def _absent_note(self, absent, wrt_tree, l) -> str:
        where = "the output layer" if l == self.layers else "a hidden layer"
        why = ("layers start at 1 (only a^0 = h^0 = x is layer 0)" if absent.layer <= 0 else
               f"the network's last layer is {self.layers}" if absent.layer > self.layers else
               "in the ufldl convention layer 1 is the input, a^{(1)} = x" if self.convention == "ufldl" else
               f"layer {absent.layer} has none")
        note = f"does not apply ({where}): {absent.node.text} would be layer {absent.layer}, and {why}"
        try:
            target = self.target(self._at_layer(wrt_tree, l))
        except _Absent:
            return note
        return note + f"; there {target.label} = {self.printed(target)[0]}"

    def _check_one(self, wrt_tree: Node, tree: Node, text: str) -> CheckResult:
        target = self._target = self.target(wrt_tree)
        self.through_norm(target.expr)
        correct, correct_latex = self.printed(target)
        self.flags, self._bound = [], {}
        problem, mine = "", None
        try:
            mine = self.bind(tree)
            if isinstance(mine, Ones):
                raise ChainruleError(f"'{text}' is only a ones vector")
            mine = self.oriented(mine, target.expr)
        except ShapeMismatch as err:
            problem = str(err)
        flags = list(self.flags)
        expected = target.expr
        result = CheckResult(target.label, text, False, "", correct, correct_latex)
        verdict = None
        if mine is not None and shape_of(mine) == shape_of(expected) and not flags:
            verdict = self.verdict(mine, expected)
            if verdict.status == "equal":
                proved = self.exactly_equal(mine, expected)
                result.equal, result.proof = True, f"equal at {len(self.seeds())} random points, within " \
                                                   f"{AGREE:g} of the gradient's largest entry; " + (
                    "the exact proof is tried only on small networks without kinks (relu, np.where), erf or attention"
                    if proved is None else f"SymPy did not finish the exact proof in its {PROOF_SECONDS:g} s budget")
                if proved:
                    result.proof = "SymPy proves it equal entry by entry at the network's sizes" + (
                        f" with N = {BATCH}" if self.batch else "")
                result.fits = True
                return result
            if verdict.status == "undecided":
                result.undecided, result.fits = verdict.reason, True
                return result
        result.fits = mine is not None and shape_of(mine) == shape_of(expected)
        if not self.diagnosing:
            return result
        # a big network's search has a time budget (a small one's is bounded by its candidates, deterministically)
        self.deadline = time.monotonic() + SEARCH_SECONDS if self._size > BUDGETED else None
        try:
            result.diagnosis = (result.fits and not flags and self._layernorm_mistake(mine, expected)) or \
                (not flags and self.attention_mistake(mine, expected)) or \
                self.diagnose(tree, mine, expected, problem, flags)
        except OutOfTime:
            result.diagnosis = (f"no usual mistake found within the search's {SEARCH_SECONDS:g} s "
                                f"(transpose, sign, factor, activation derivative, sum, and pairs of them)")
        finally:
            self.deadline = None
        if mine is not None and shape_of(mine) == shape_of(expected):
            verdict = verdict or self.verdict(mine, expected)
            if verdict.status == "different":
                result.counterexample = self.counterexample(mine, expected, target.label, verdict.point)
        return result


    # -- the mistakes check-code names ---------------------------------------------------------------
    def sweep_mistake(self, mine, expected) -> str:
        """A mistake the shared diagnosis names for check-code too, made in a step ``mine`` goes through: a
        World of ``Diagnoser.worlds`` (another activation's derivative, or its formula in z; the derivative at
        the upstream gradient; a derivative or dropout mask left out, which reaches every layer below, named
        at its source; a square weight transposed), or a penalty's share wrong (twice, or the loss's part
        scaled); else "". A World explains ``mine`` only when nothing ``mine`` names changes in it (δ1 by
        name holds the right step)."""
        if not is_matrix(mine) or shape_of(mine) != shape_of(expected):
            return ""
        right = self.points()
        for layer in range(self.layers, 0, -1):
            for world in self.worlds(layer):
                self.in_time()  # a world's points cost a whole forward and backward pass: not past the budget
                envs = self._at_points(world.overrides)
                if any(not np.array_equal(self.flat(s, right[0]), self.flat(s, envs[0]))
                       for s in mine.atoms(sp.MatrixSymbol)):
                    continue
                if self.same(mine, expected, envs):
                    return world.message
        return self._penalty_mistake(mine, expected)

    def _penalty_mistake(self, mine, expected) -> str:
        """The penalty's gradient added twice, or the loss's part of a penalised weight's gradient scaled
        (the 1/N forgotten beside λW), as check-code names them."""
        m = re.fullmatch(r"dL/dW(\d+)", self._target.label)
        W = m and self.table.get(f"w{m[1]}")
        if W is None or not (self.net.l1 or self.net.l2):
            return ""
        sign = Pointwise(sp.Lambda(Z, sp.sign(Z)), "sign", W)
        parts = [(w, t, kind, shown) for w, t, kind, shown in (
            (self.net.l2, W, "L2", f"{self.net.l2:g}·W{m[1]}"), (self.net.l1, sign, "L1", f"{self.net.l1:g}·sign(W{m[1]})"))
            if w]
        term = sp.MatAdd(*[sp.nsimplify(w, rational=True) * t for w, t, _, _ in parts])
        kinds, shown = " and ".join(p[2] for p in parts), " + ".join(p[3] for p in parts)
        if self.same(sp.MatAdd(mine, -term), expected):
            return f"the {kinds} penalty's gradient twice: it is {shown}, once"
        k = self._ratio(sp.MatAdd(mine, -term), sp.MatAdd(expected, -term))
        if k is not None and k != 1:
            return (factor_message(k, self.net, self.batch, part="the loss's part") + "; "
                    + "; ".join(f"the {p[2]} penalty's {p[3]} is right" for p in parts))
        return ""

    # -- layer norm's usual mistakes ------------------------------------------------------------------
    def _layernorm_mistake(self, mine, expected) -> str:
        """The usual mistake in a layer norm's backward step that explains ``mine``, else "": the step
        rewritten with it, and ``mine`` equal to the gradient there while nothing it names changes."""
        for message, overrides in self._layernorm_worlds():
            world = self._at_points(overrides)
            right = self.points()
            if any(not np.array_equal(self.flat(s, right[0]), self.flat(s, world[0])) for s in mine.atoms(sp.MatrixSymbol)):
                continue
            if self.same(mine, expected, world):
                return message
        return ""

    def _layernorm_worlds(self):
        """(the mistake, the override of the backward step that makes it) for each layer norm and its
        usual mistakes: the mean path (-mean(g)) or the variance path (-x̂ ⊙ mean(g ⊙ x̂)) left out,
        sums where the means' 1/F belongs, γ left out of g, only the direct path g/σ."""
        worlds = []
        for q in self.q.values():
            m = re.fullmatch(r"sigma(\S+)", q.key)
            step = m and next((s for s in self.sweep.steps if s.target.role == "adjoint" and s.rhs.has(q.symbol)), None)
            if step is None:
                continue
            xhat, gamma = self.q[f"{self.key('x')}hat{m[1]}"].symbol, self.q.get(f"gamma{m[1]}")
            upstream = next(a for a in step.rhs.atoms(sp.MatrixSymbol) if a.name.startswith("dL_d"))
            shape = upstream.shape
            inv = broadcast(Pointwise(sp.Lambda(Z, 1 / Z), "", q.symbol), shape)

            def backward(g, scale=1, mean=True, variance=True):
                terms = [g]
                if mean:
                    terms.append(-scale * broadcast(FeatureMean(g), shape))
                if variance:
                    terms.append(-scale * sp.HadamardProduct(xhat, broadcast(FeatureMean(sp.HadamardProduct(g, xhat)), shape)))
                return sp.HadamardProduct(inv, sp.MatAdd(*terms) if len(terms) > 1 else g)
            g = sp.HadamardProduct(broadcast(gamma.symbol, shape), upstream) if gamma else upstream
            where = f"layer norm {m[1]}'s backward step"
            form = "dL/dx = (1/σ) ⊙ (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) with g = γ ⊙ dL/dy"
            for text, rhs in (
                    (f"missing the mean path in {where}: the −mean(g) term, from μ depending on x", backward(g, mean=False)),
                    (f"missing the variance path in {where}: the −x̂ ⊙ mean(g ⊙ x̂) term, from σ depending on x",
                     backward(g, variance=False)),
                    (f"missing the 1/F of the means in {where}: sums over the {shape[0]} features where means belong",
                     backward(g, scale=shape[0])),
                    (f"only the direct path in {where}: g/σ, without the mean and variance paths",
                     backward(g, mean=False, variance=False))) + (
                    ((f"γ missing in {where}: g = γ ⊙ dL/dy", backward(upstream)),) if gamma else ()):
                worlds.append((f"{text}; {form}", {step.target.key: rhs}))
        return worlds


OTHERS_SECONDS = 2.5  # past this much of a check, no further convention is tried


class Conventions:
    """Checks in one convention, or in ``auto``: the first convention (``options.ranked``) whose marks the
    text has and in which it has the gradient's shape. An expression that is wrong in that convention but
    right in another is never reported wrong: under ``auto`` it is correct in the other, and the note says
    so and what it would be in the one its names suggest; under a chosen convention the verdict stands and
    the note says where it is right."""

    def __init__(self, derivation, convention="auto"):
        if convention not in CHOICES:
            raise ChainruleError(f"unknown convention '{convention}'; choose one of: {', '.join(CHOICES)}")
        spec, (derivation, self.sizes) = derivation, _narrowed(derivation)
        self.derivation, self.convention, self._checkers, self._shared, self._drawn = derivation, convention, {}, {}, {}
        # the spec's sizes, which its notes print (\mathbf{1}_{40}), as the narrowed network's
        self.resized = resized(spec, derivation) if self.sizes else {}
        self.checker(CONVENTIONS[0] if convention == "auto" else convention)  # an unreadable network fails here

    def checker(self, name) -> Checker:
        if name not in self._checkers:
            checker = self._checkers[name] = Checker(self.derivation, name)
            checker.shared = self._shared.setdefault(id(checker.sweep), {})
            checker.drawn = self._drawn
            if self.resized:  # (a recurrent checker narrows by itself, and keeps its own)
                checker.resized = self.resized
        return self._checkers[name]

    def accepted(self) -> list:
        if self.convention != "auto":
            return self.checker(self.convention).accepted()
        sample = self.checker("sample")
        if isinstance(sample, RecurrentChecker):
            others = "columns, rows or goodfellow convention"  # the conventions it reads a recurrent network in
        else:
            others = "columns, rows, ng or goodfellow convention" + (
                ", vaswani (W_Q as E × d_k: Q = X W_Q)" if sample.attention else "")
        return sample.accepted() + [f"or the names of the {others} (auto picks the one your names use; see check --help)"] \
            + ([self.sizes] if self.sizes else [])

    def check(self, wrt: str, text: str):
        try:
            result = self._check(wrt, text)
        except NotAGradient:
            raise
        except ChainruleError as err:  # a name of the spec's sizes may be missing at these (a head h > 2)
            raise ChainruleError(f"{err} ({self.sizes})" if self.sizes else str(err)) from None
        if self.sizes:
            result.note = f"{result.note}; {self.sizes}" if result.note else self.sizes
        return result

    def _check(self, wrt: str, text: str):
        self._started = time.monotonic()
        if self.convention != "auto":
            result = self.checker(self.convention).check(wrt, text)
            if not result.equal:
                other = self._right_elsewhere(wrt, text, self.convention)
                if other:
                    result.note = f"it is right in the {other} convention ({_where_mean(other)})"
            return result
        picked, fallback, first_error = None, None, None
        for rank, (name, why) in enumerate(ranked((wrt, text))):
            try:
                found = self.checker(name).check(wrt, text, diagnose=False)
            except NotAGradient:  # a forward step in one convention is one in all
                raise
            except ChainruleError as err:
                first_error = first_error or (rank, err)
                continue
            if found.fits:
                picked = (name, why, found)
                break
            fallback = fallback or (name, why, found)
        if picked is None:  # no convention gives it the gradient's shape: the one its names suggest says why
            if first_error is not None and (fallback is None or first_error[0] == 0):
                raise first_error[1]
            picked = fallback
        name, why, result = picked
        if not result.equal:
            other = self._right_elsewhere(wrt, text, name)
            wrong = self.checker(name).check(wrt, text)
            if other:
                right = self.checker(other).check(wrt, text, diagnose=False)
                right.note = (f"right in the {other} convention ({_where_mean(other)}); in the {name} convention "
                              f"({why}) it is not: {wrong.diagnosis or wrong.undecided}")
                return right
            result = wrong
        result.note = f"read in the {name} convention ({why}); --convention chooses another"
        return result

    def _right_elsewhere(self, wrt, text, tried):
        """The first other convention (those its names suggest first) in which the expression is the
        gradient, or None."""
        for name, _ in ranked((wrt, text)):
            if name == tried:
                continue
            if time.monotonic() - self._started > OTHERS_SECONDS:  # a verdict within seconds comes first
                return None
            try:
                if self.checker(name).check(wrt, text, diagnose=False).equal:
                    return name
            except ChainruleError:
                continue
        return None


def _narrowed(derivation):
    """(the derivation check reads, and when its sizes are not the spec's, the sentence that says them, else "")."""
    small = narrowed(derivation.network)
    if small is derivation.network:
        return derivation, ""
    heads = [(a.num_heads, a.features // a.num_heads) for a in (attention_layers(n.layers)[0] for n in
                                                                 (small, derivation.network))]
    return Derivation(small), (f"checked at {sizes(small)} with {heads[0][0]} head{'s' * (heads[0][0] > 1)} of "
                               f"d = {heads[0][1]}, the same network made narrow (the spec has "
                               f"{sizes(derivation.network)} with {heads[1][0]} of d = {heads[1][1]}; attention is read "
                               f"at T·E of at most {limits.CHECK_ATTENTION}, CHECK_ATTENTION): the steps are the same "
                               f"at every size")


def _where_mean(name) -> str:
    mean = BY_NAME[name].mean
    return "one sample, no 1/N" if mean.startswith("nowhere") else f"the 1/N {mean}"


# -- the public API --------------------------------------------------------------
def check(derivation, wrt: str, expr: str, convention: str = "sample"):
    """Compare a person's expression for the gradient ``wrt`` with the derived one, in ``convention``
    (``auto``, the command line's default: the one whose names it uses)."""
    return Conventions(derivation, convention).check(wrt, expr)


_READ = ("dense", "layernorm", "activation", "residual", "attention")
_READ_OUTSIDE_BLOCKS = ("mean", "embedding", "positional")


def unreadable(network):
    """The position of the first layer ``check`` cannot read (a kind outside _READ, or inside a residual
    block), or None."""
    def readable(layer, top=False):
        return (layer.kind in _READ or top and layer.kind in _READ_OUTSIDE_BLOCKS) and all(
            readable(inner) for inner in getattr(layer, "layers", ()))
    return next((l for l, layer in enumerate(network.layers, 1) if not readable(layer, top=True)), None)


def accepted_names(derivation, convention: str = "sample"):
    """The names ``check`` binds for this network, as a person may write them; None when it cannot read
    the network (``unreadable``), whose notes then have no section on checking."""
    if recurrent(derivation.network):
        try:
            return Checker(derivation, convention).accepted()
        except ChainruleError:  # a recurrent network the checker does not read (a layer before it, a deeper stack)
            return None
    if unreadable(derivation.network) is not None:
        return None
    derivation, narrow = _narrowed(derivation)
    return Checker(derivation, convention).accepted() + ([narrow] if narrow else [])


def read_equations(text: str) -> list:
    """(line number, left side, right side) for each equation of a file (``document.read_document``)."""
    from .document import Equation, read_document
    return [(e.line, e.lhs, e.rhs) for e in read_document(text) if isinstance(e, Equation)]
