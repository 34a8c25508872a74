"""Prove a derivation: every adjoint and gradient Step equals SymPy's derivative of the expanded loss.

The network is shrunk to small widths (at most ``cap`` units a layer, keeping residual layers
square) and every matrix becomes a matrix of scalar symbols, one per entry. The forward and loss
Steps, evaluated element-wise, define each entry of each forward quantity as a scalar SymPy
expression in the entries it is computed from: the expanded network, kept as a graph whose
intermediate entries are symbols, so a shared subexpression is written once instead of being
copied into the loss wherever it is used. The reference dL/dv for every entry v is the chain
rule over that graph: the sum, over the entries computed from v, of their own dL/d times
``sympy.diff`` of their expression with respect to v, which is ``sympy.diff`` of the fully
expanded loss. Only the forward and loss Steps build it, never the derivation's backward ones. A
layer's node (``OfSpec``: a recurrent layer, attention) is expanded through its own ``hold``: each
intermediate matrix it computes (a time step's state; a head's scores, softmax weights and output)
becomes a matrix of symbols defined by it, one more level of the graph, so no entry holds the whole
sequence. Its gradient nodes recompute those intermediates and read the same symbols (their true
values), so they are proved against the definitions, never against each other. A network over a
sequence is proved at T = 3 and width 2 (``shrink``).

Each backward Step's right-hand side, evaluated element-wise with the true values of the
quantities it names, must equal the reference dL/d(its quantity) at two random points to 30
digits (both evaluated with mpmath). By induction over the Steps the derived values are then the
true ones, and a wrong Step is the only one reported. With ``exact=True`` the difference must
also cancel to zero symbolically: first with the intermediate entries as free symbols (which
suffices), then, where that is not enough (softmax's output against its logits), with their
definitions substituted, the latest Step's first, down to the fully expanded network. Piecewise
and erf resist cancellation, so a difference that keeps them stays numeric; a network with an LSTM,
a GRU or attention is refused (SymPy would not finish in minutes).
"""
import math
import random
from collections import defaultdict
from dataclasses import dataclass, replace

import mpmath
import sympy as sp

from .chain import N, Derivation
from .errors import ChainruleError
from .nodes import OfSpec, OfSpecGrad
from .ops.layernorm import StepLayerNormLayer

_DIGITS = 30
_TOLERANCE = 1e-20
_TRIES = 20  # random points tried to find two where every formula is real
_INPUT_ROLES = ("data", "param", "mask")


@dataclass(frozen=True)
class Proof:
    """The verdict on one Step."""
    number: int
    target: str
    form: str
    method: str  # "exact", "numeric" or "shape" (the right-hand side has the wrong shape)
    ok: bool
    error: float


@dataclass(frozen=True)
class Report:
    proofs: tuple
    network: object = None  # the network proved: the derivation's, or a smaller one (``shrink``)

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.proofs)

    def failures(self) -> list:
        return [p for p in self.proofs if not p.ok]

    def text(self) -> str:
        lines = [f"({p.number}) {p.target} [{p.form}]: {'proved' if p.ok else 'WRONG'} ({p.method}"
                 + (f", error {p.error:.2e})" if p.method == "numeric" else ")") for p in self.proofs]
        return "\n".join(lines) + "\n"


#: The proof's sizes: widths at most CAP, or SEQUENCE_CAP in a network over a sequence or token ids (a
#: gated cell's expansion grows fast: an LSTM 3 wide at T = 3 takes a minute, 2 wide a few seconds), and
#: at most LENGTH time steps (3: the middle step has a step before it and one after).
CAP, SEQUENCE_CAP, LENGTH = 3, 2, 3


def sequential(network) -> bool:
    """Whether the network reads a sequence or token ids (its input's first axis is time)."""
    return network.input_shape[0][0] == "length"


def shrink(network, cap: int = None, length: int = LENGTH):
    """The same network with every width at most `cap` (softmax keeps at least 2 outputs; by default CAP,
    or SEQUENCE_CAP over a sequence) and at most `length` time steps; an image or a signal keeps its
    spatial sizes (kernels and pooling must still fit) with at most `cap` channels."""
    cap = cap or (SEQUENCE_CAP if sequential(network) else CAP)
    layers = tuple(_steps(layer, layer.capped(cap), length) for layer in network.layers)
    if sequential(network):
        (axis, steps), (name, width) = network.layout
        layout = ((axis, min(steps, length)), (name, min(width, cap)))
    elif network.layout:
        (name, channels), *spatial = network.layout
        layout = ((name, min(channels, cap)), *spatial)
    else:
        return replace(network, inputs=min(network.inputs, cap), layers=layers)
    return replace(network, inputs=math.prod(n for _, n in layout), layout=layout, layers=layers)


def sizes(network) -> str:
    """The network's sizes as ``chainrule verify`` says them: ``the widths 3 -> 3 -> 2``, or over a sequence
    ``T = 3 and the widths 2 -> 2 -> 2 per step`` (a layer that keeps only the last step: its width)."""
    if not sequential(network):
        return f"the widths {' -> '.join(map(str, network.widths))}"
    widths = [network.input_shape[-1][1]] + [layer.shape[-1][1] for layer in network.layers]
    return f"T = {network.input_shape[0][1]} and the widths {' -> '.join(map(str, widths))} per step"


def _steps(layer, small, length: int):
    """`small` (`layer` capped) with at most `length` of `layer`'s time steps, if it works on a sequence
    (a block: its inner layers)."""
    if layer.layers:
        return replace(small, layers=tuple(_steps(*pair, length) for pair in zip(layer.layers, small.layers)))
    if not getattr(layer, "length", 0):
        return small
    steps = min(layer.length, length)
    if isinstance(small, StepLayerNormLayer):  # its units count every position's features: keep those per position
        return replace(small, units=steps * small.features, length=steps)
    return replace(small, length=steps)


def verify(derivation: Derivation, cap: int = None, batch: int = 2, seed: int = 0, exact: bool = False,
           length: int = LENGTH) -> Report:
    """Prove every backward Step of both forms of `derivation` at small sizes (``shrink``'s).

    A larger network is derived again at those sizes (the Report's ``network``), so a Step edited in
    place is proved as written only when the network is already that small.
    """
    nodes = derivation.batch.graph.nodes
    gated = sorted({node.attrs["cell_kind"] for node in nodes if node.op.name == "recurrent"} - {"rnn"})
    slow = [f"the {' and '.join(k.upper() for k in gated)}'s backpropagation through time"] if gated else []
    if any(node.op.name == "attention" for node in nodes):
        # SymPy's expansion of its softmax ratios runs for many minutes even at T = 2, E = 2, one head
        slow.append("attention's softmax over the positions")
    if exact and slow:
        raise ChainruleError(f"the exact proof cannot cancel {' and '.join(slow)} in minutes; drop --exact (the "
                             f"proof checks every step to {_DIGITS} digits at two random points)")
    small = shrink(derivation.network, cap, length)
    small = derivation if small == derivation.network else Derivation(small)
    proofs = []
    for form, sweep in small.forms:
        columns = 1 if form == "sample" else batch
        proofs.extend(Expansion(sweep, columns).prove(random.Random(seed), exact))
    return Report(tuple(proofs), small.network)


def _explicit(q, columns: int):
    rows, cols = q.shape or (1, 1)
    cols = columns if cols == N else cols
    return sp.ImmutableMatrix(rows, cols, lambda i, j: sp.Symbol(f"{q.key}_{i}_{j}", real=True))


def _evaluate(expr, values: dict, columns: int):
    expr = expr.xreplace({N: columns, **values})
    value = expr.replace(sp.OneMatrix, lambda rows, cols: sp.ImmutableMatrix.ones(rows, cols)).doit()
    return value if isinstance(value, sp.MatrixBase) else sp.ImmutableMatrix([[value]])


class Expansion:
    """One sweep of a derivation expanded at `columns` samples into a graph of scalar expressions.

    ``entries`` maps each quantity's matrix symbol to its matrix of entry symbols; ``inputs``
    lists the entries of the data, parameters and masks; ``levels`` holds, for each forward and
    loss Step, its entries' expressions; ``definitions`` lists (entry, expression) for every
    such entry in the order they are computed; ``loss`` is the entry of L; ``edges`` lists
    (entry, argument, d entry/d argument) for every argument of every expression, latest first.
    """

    def __init__(self, sweep, columns: int):
        self.sweep = sweep
        quantities = sweep.quantities.values()
        self.entries = {q.symbol: _explicit(q, columns) for q in quantities}
        self.held = {}       # each matrix a node held (``OfSpec``) -> the symbols that stand for it
        self.gradients = {}  # a gradient node with `which` 0 -> every input's gradient
        self.inputs = [s for q in quantities if q.role in _INPUT_ROLES for s in self.entries[q.symbol]]
        self.levels = [level for step in sweep.steps if step.phase in ("forward", "loss")
                       for level in self._expand(step, columns)]
        self.definitions = [item for level in self.levels for item in level.items()]
        self.loss = self.entries[sweep.L.symbol][0]
        self.edges = [(node, arg, sp.diff(expr, arg)) for node, expr in reversed(self.definitions)
                      for arg in sorted(expr.free_symbols, key=str)]
        self.backward = [(step, self._backward(step, columns)) for step in sweep.steps if step.phase == "backward"]
        self.constraint = self._one_hot_constraint()

    def _expand(self, step, columns: int) -> list:
        """The levels of a forward or loss Step: what a layer's node holds first, each a matrix of symbols
        (so an entry's expression is one intermediate's, not the whole node's), then the Step's own entries."""
        levels, values = [], dict(self.entries)

        def hold(matrix):
            matrix = sp.ImmutableMatrix(matrix)
            if matrix not in self.held:  # the same matrix held twice is one set of symbols
                name = f"{step.target.key}_h{len(self.held)}"
                # a number (a masked weight, a zero) stays one: nothing to define
                self.held[matrix] = sp.ImmutableMatrix(*matrix.shape, lambda i, j: matrix[i, j] if matrix[i, j].is_number
                                                       else sp.Symbol(f"{name}_{i}_{j}", real=True))
                level = {e: v for e, v in zip(self.held[matrix], matrix) if e != v}
                levels.extend([level] if level else [])
            return self.held[matrix]

        for node in sorted(step.rhs.atoms(OfSpec), key=str):
            values[node] = node.unrolled(*(_evaluate(m, self.entries, columns) for m in node.mats), hold=hold)
        return levels + [dict(zip(self.entries[step.target.symbol], _evaluate(step.rhs, values, columns)))]

    def _backward(self, step, columns: int):
        """A backward Step's entries. A gradient node's backward pass runs once per node, recomputing its
        forward intermediates through ``hold``, which gives back the symbols they were held as (their true
        values); its gradients stand in the Step as symbols while the rest is evaluated."""
        values, grads = dict(self.entries), {}
        for node in step.rhs.atoms(OfSpecGrad):
            key = node.func(node.args[0], 0, *node.args[2:])  # every input's gradient: the node but `which`
            if key not in self.gradients:
                G, _, *ins = (_evaluate(m, self.entries, columns) for m in node.mats)
                self.gradients[key] = node.gradients(G, *ins, hold=lambda m: self.held[sp.ImmutableMatrix(m)])
            grad = self.gradients[key][node.which]
            values[node] = sp.ImmutableMatrix(*grad.shape, lambda i, j: sp.Dummy())
            grads.update(zip(values[node], grad))
        return _evaluate(step.rhs, values, columns).xreplace(grads)

    def adjoints(self, partials) -> dict:
        """dL/d(entry) for every entry and input, given the value of each edge's partial derivative."""
        adjoint = defaultdict(int, {self.loss: 1})
        for (node, arg, _), partial in zip(self.edges, partials):
            adjoint[arg] += adjoint[node] * partial  # every entry computed from arg comes earlier in edges
        return adjoint

    def truth(self, adjoint) -> dict:
        """Each backward Step's target entries -> the true dL/d of the entries it is the gradient of."""
        return {entry: adjoint[of] for step, _ in self.backward
                for entry, of in zip(self.entries[step.target.symbol], self.entries[self._of(step).symbol])}

    def _of(self, step):
        """The quantity an adjoint Step is the gradient of (delta_l -> z_l, dL_dA1 -> A1, dL_dW1 -> W1)."""
        key = step.target.key
        quantities = self.sweep.quantities
        if key.startswith("dL_d"):
            return quantities[key[4:]]
        return next(q for q in quantities.values() if q.role == "forward" and q.layer == step.target.layer
                    and q.key.lower().startswith("z"))

    def _one_hot_constraint(self) -> dict:
        """Cross-entropy's fused rule holds where each target column (each step's block of it, when the output
        is a sequence) sums to 1: impose it."""
        if self.sweep.net.loss.fused_with != "softmax":
            return {}
        target = next(q for q in self.sweep.quantities.values() if q.role == "data" and q.key.lower() == "y")
        Y = self.entries[target.symbol]
        steps = dict(self.sweep.net.layers[-1].shape).get("length", 1)
        K = Y.rows // steps
        return {Y[(t + 1) * K - 1, j]: 1 - sum(Y[t * K + i, j] for i in range(K - 1))
                for t in range(steps) for j in range(Y.cols)}

    def prove(self, rng: random.Random, exact: bool) -> list:
        """A Proof for every backward Step."""
        errors = self._numeric_errors(rng)
        symbolic = _Symbolic(self) if exact else None
        proofs = []
        for (step, matrix), error in zip(self.backward, errors):
            if matrix.shape != self.entries[step.target.symbol].shape:
                method = "shape"
            elif error < _TOLERANCE and symbolic and symbolic.cancels(step, matrix):
                method, error = "exact", 0.0
            else:
                method = "numeric"
            proofs.append(Proof(step.number, step.target.text, step.form, method, error < _TOLERANCE, error))
        return proofs

    def _numeric_errors(self, rng: random.Random) -> list:
        """The largest |derived - true| of each backward Step over two random points (inf: wrong shape)."""
        nodes = [node for node, _ in self.definitions]
        # one function runs the forward pass (the entries are its local variables) and every partial; no
        # implemented functions (use_imps), whose search would walk every expression as a tree
        forward = sp.lambdify(self.inputs, nodes + [partial for *_, partial in self.edges], modules="mpmath",
                              use_imps=False, cse=lambda exprs: (self.definitions, exprs))
        named = [entry for step, _ in self.backward for entry in self.entries[step.target.symbol]]
        derived = sp.lambdify(self.inputs + nodes + named, [value for _, matrix in self.backward for value in matrix],
                              modules="mpmath", use_imps=False, cse=True)
        constrain = sp.lambdify(self.inputs, list(self.constraint.values()), modules="mpmath", use_imps=False)
        worst = [0.0] * len(self.backward)
        with mpmath.workdps(_DIGITS):
            points = 0
            for _ in range(_TRIES):
                point = {s: mpmath.mpf(rng.uniform(-1.5, 1.5)) for s in self.inputs}
                point.update(zip(self.constraint, constrain(*point.values())))
                try:
                    computed = forward(*point.values())
                    truth = self.truth(self.adjoints(computed[len(nodes):]))
                    results = iter(derived(*point.values(), *computed[:len(nodes)], *(truth[s] for s in named)))
                except TypeError:  # a max or min of a formula that is complex at this point: take another
                    continue
                points += 1
                for k, (step, matrix) in enumerate(self.backward):
                    values, target = [next(results) for _ in matrix], self.entries[step.target.symbol]
                    worst[k] = max([worst[k]] + ([float(abs(v - truth[e])) for v, e in zip(values, target)]
                                                 if matrix.shape == target.shape else [float("inf")]))
                if points == 2:
                    return worst
        raise ChainruleError(f"cannot prove the steps: the network's formulas are not real at {_TRIES} random "
                             f"points in [-1.5, 1.5] (a max or min compares complex values); use formulas "
                             f"that are real there")


class _Symbolic:
    """The exact check: the true dL/d(entry) as expressions in the inputs and intermediate entries."""

    def __init__(self, expansion: Expansion):
        self.expansion = expansion
        self.inputs = set(expansion.inputs)
        self.truth = expansion.truth(expansion.adjoints([partial for *_, partial in expansion.edges]))

    def cancels(self, step, matrix) -> bool:
        """Whether the Step's entries `matrix` minus the true ones cancel to zero."""
        expansion = self.expansion
        differences = [value.xreplace(self.truth) - self.truth[entry]
                       for value, entry in zip(matrix, expansion.entries[step.target.symbol])]
        for level in [{}] + expansion.levels[::-1]:
            if level and not any(d.free_symbols & level.keys() for d in differences):
                continue
            differences = [d.xreplace(level).xreplace(expansion.constraint) for d in differences]
            if any(d.has(sp.Piecewise, sp.erf) for d in differences):
                return False
            differences = [d for d in differences if not self._zero(d)]
            if not differences:
                return True
        return False

    def _zero(self, difference) -> bool:
        """Its numerator over a common denominator expands to 0, or, once it is in the inputs alone
        (nothing left to substitute), SymPy cancels it to 0 (slower)."""
        return (sp.expand(sp.numer(sp.together(difference))) == 0
                or difference.free_symbols <= self.inputs and sp.cancel(sp.expand(difference)) == 0)
