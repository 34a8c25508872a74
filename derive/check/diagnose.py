"""The usual-mistake search: which mistake, or pair of them, turns the right gradient into yours.

Single edits of the parsed tree (a transpose, a sign, a product, an activation derivative, a sum, a
layer), fixes of the whole value (transposed, a missing batch sum, penalty, skip path, dropout mask
or derivative), a constant factor, and softmax read as element-wise; then pairs of them, at most
PAIR_TRIES candidates, in a fixed order.
"""
import re

import sympy as sp

from ..errors import ChainruleError
from ..nodes import Pointwise
from ..ops.activations import Z
from ..ops.losses import CATALOGUE as LOSSES
from .bind import ShapeMismatch
from .compare import BATCH, describe_shape, is_matrix, shape_of
from .parse import ACTIVATION_ALIASES, GENERIC_ACTIVATIONS, Node

PAIR_TRIES = 1500  # at most this many candidates are tried when looking for two mistakes


class Diagnoser:
    """The mistake search of a Checker (its binding, its comparisons, ``net``, ``table``, ``q``)."""

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
        if mine is not None and shape_of(mine) != shape_of(expected):
            return (f"wrong shape: yours is {describe_shape(mine)} but the gradient is {describe_shape(expected)}, "
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
            yield (value if not self.flags and is_matrix(value) else None), message

    def _one_mistake(self, tree, mine, expected) -> str:
        found = self._global_mistake(mine, expected) if is_matrix(mine) else ""
        return found or next((message for value, message in self._edited_values(tree)
                              if value is not None and self.same(value, expected)), "")

    def _two_mistakes(self, tree, mine, expected) -> str:
        """Two usual mistakes together: softmax read as element-wise, an edit of the tree or a fix of the
        whole value, followed by a mistake of the whole value, or two edits of the tree; at most PAIR_TRIES
        candidates, always in the same order."""
        firsts = list(self._global_fixes(mine, expected)) if is_matrix(mine) else []
        world = self._softmax_world(mine, expected) if is_matrix(mine) else None
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
        if shape_of(mine) != shape_of(expected):
            return ""
        ratio = self._ratio(mine, expected, envs)
        if ratio is not None and ratio != 1:
            return factor_message(ratio, self.net, self.batch)
        for l, f, prime in self._derivatives(shape_of(expected)):
            if self.same(mine, sp.HadamardProduct(expected, prime), envs):
                return f"extra activation derivative: yours has one {f.name}'(z_{l}) too many"
        world = envs is None and self._softmax_world(mine, expected)
        if world and self.same(mine, expected, world):
            return self.softmax_message()
        return ""

    def _global_fixes(self, mine, expected):
        """(yours corrected, the mistake) for each usual mistake of the whole value that fits its shape."""
        rs, cs = shape_of(mine), shape_of(expected)
        if rs == (cs[1], cs[0]) and rs != cs:
            yield mine.T, f"transposed: yours is {describe_shape(mine)}, the transpose of the {describe_shape(expected)} gradient"
        if rs == cs and rs[0] == rs[1] and rs != (1, 1):
            yield mine.T, "transposed: yours is the transpose of the gradient"
        if self.batch:
            along = sp.OneMatrix(1, rs[0]) * mine if self.rows else mine * sp.OneMatrix(rs[1], 1)
            if shape_of(along) == cs and rs != cs:
                axis = 0 if self.rows else 1
                yield along, (f"missing sum over the batch: yours has one {'row' if self.rows else 'column'} per "
                              f"sample; sum it (axis={axis})")
        if rs != cs:
            return
        for l in range(1, self.layers + 1):
            W = self.table.get(f"w{l}")  # none for a layer norm
            if W is None or shape_of(W) != cs:
                continue
            for weight, term, name in ((self.net.l2, W, "L2"),
                                       (self.net.l1, Pointwise(sp.Lambda(Z, sp.sign(Z)), "sign", W), "L1")):
                if weight:
                    shown = f"{weight:g}·W{l}" if name == "L2" else f"{weight:g}·sign(W{l})"
                    yield (sp.MatAdd(mine, sp.nsimplify(weight, rational=True) * term),
                           f"missing the {name} penalty's gradient: add {shown}")
        for q in self.q.values():
            if not re.fullmatch(r"dL_d[aA]\d+", q.key) or shape_of(self.view(q)) != cs:
                continue
            skip = self.view(q)
            message = f"missing the residual path: the gradient also arrives through the skip connection; add {q.text}"
            yield sp.MatAdd(mine, skip), message
            for l, f, prime in self._derivatives(cs):
                yield sp.MatAdd(mine, sp.HadamardProduct(skip, prime)), f"{message} inside the product with {f.name}'(z_{l})"
        for l in range(1, self.layers + 1):
            mask = self.table.get(f"m{l}")
            if mask is not None and shape_of(mask) == cs:
                yield (sp.HadamardProduct(mine, mask), f"missing dropout mask: multiply element-wise by m_{l} "
                                                       f"(the gradient flows only where a unit was kept)")
        for l, f, prime in self._derivatives(cs):
            z = self.table[f"z{l}"]
            if not any(p.has(z) for p in mine.atoms(Pointwise)):  # with a factor in z_l it is the wrong one
                yield sp.HadamardProduct(mine, prime), f"missing activation derivative: multiply element-wise by {f.name}'(z_{l})"

    def _derivatives(self, shape):
        """(layer, activation, f'(z_l)) for each element-wise, non-identity activation whose z_l has ``shape``."""
        for l, f in sorted(self.acts.items()):  # an activation layer's f applies to the z below it
            if f.elementwise and not f.is_identity and shape_of(self.table[f"z{l}"]) == shape:
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


def factor_message(k, net, batch=True) -> str:
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
