"""The usual-mistake search: which mistake, or pair of them, turns the right gradient into yours.

Single edits of the parsed tree (a transpose, a sign, a product, an activation derivative, a sum, a
layer), fixes of the whole value (transposed, a missing batch sum, penalty, skip path, dropout mask
or derivative), a constant factor, and softmax read as element-wise; then pairs of them, at most
PAIR_TRIES candidates, in a fixed order.

``Diagnoser.worlds`` holds the mistakes made inside the backward sweep (a derivative left out or
another activation's, a dropout mask left out, the transpose of a square weight, softmax read as
element-wise) as derivations with one step changed: ``check`` compares a value with them, and
``check-code`` finds in them the mistake a person's gradient inherits, named once at its source.
``cnn_worlds`` holds the usual mistakes of convolutions, pooling and batch norm the same way, and
``OpJudge`` judges a CNN op's or a whole CNN's gradients with them.
"""
import itertools
import math
import re
from dataclasses import dataclass, replace

import numpy as np
import sympy as sp

from ..errors import ChainruleError
from ..nodes import FeatureMean, Pointwise
from ..ops.conv import ConvInputGrad, ConvWeightGrad, Window, WindowNode, one
from ..ops.pool import AvgPool, AvgPoolGrad, MaxPool, MaxPoolGrad
from ..ops.recurrent import _had as had
from ..ops.activations import A, CATALOGUE as ACTIVATIONS, Z, derivative_of_output, make_activation
from ..ops.losses import CATALOGUE as LOSSES
from .bind import ShapeMismatch
from .compare import BATCH, describe_shape, is_matrix, numeric_value, shape_of
from .parse import ACTIVATION_ALIASES, GENERIC_ACTIVATIONS, Node

PAIR_TRIES = 1500  # at most this many candidates are tried when looking for two mistakes
USUAL_ACTIVATIONS = ("sigmoid", "tanh", "relu")  # whose derivative a person may write in another's layer


@dataclass(frozen=True)
class World:
    """A mistake inside the sweep: the steps it changes (``overrides``), its message and its short name."""
    message: str
    short: str
    overrides: dict
    layer: int


def _shown_formula(expr) -> str:
    """A derivative in a, as a person reads it: a(1 - a), 1 - a²."""
    return str(expr).replace("**2", "²").replace("*(", "(").replace("*", "·")


class Diagnoser:
    """The mistake search of a Checker (its binding, its comparisons, ``net``, ``table``, ``q``)."""

    # -- mistakes inside the sweep, as changed derivations -------------------------------------------
    def worlds(self, layer, shown=None) -> list:
        """The Worlds of the mistakes made in layer ``layer``'s step of the sweep, in a fixed order;
        ``shown``: the Checker whose convention the softmax message prints its rule in (this one's by default)."""
        out = []
        f = self.net.layers[layer - 1].activation if self.net.layers[layer - 1].kind == "dense" else None
        key = f"{self.key('delta')}{layer}"
        step = next((s for s in self.sweep.steps if s.target.key == key), None)
        if f is not None and step is not None and isinstance(step.rhs, sp.HadamardProduct):
            prime = next((a for a in step.rhs.args if isinstance(a, Pointwise) and a.label.endswith("'")), None)
            mask = next((a for a in step.rhs.args if isinstance(a, sp.MatrixSymbol) and a.name == f"M{layer}"), None)
            for dropped, message, short in (
                    (mask, f"missing dropout mask: Δ{layer} needs ⊙ M{layer}", f"missing dropout mask in Δ{layer}"),
                    (prime, f"missing activation derivative: Δ{layer} needs ⊙ {f.name}'(Z{layer})",
                     f"missing activation derivative in Δ{layer}")):
                if dropped is not None:
                    kept = [a for a in step.rhs.args if a is not dropped]
                    out.append(World(message, short, {key: kept[0] if len(kept) == 1 else sp.HadamardProduct(*kept)},
                                     layer))
            if prime is not None:
                out += self._other_derivatives(layer, f, step, prime)
                upstream = [a for a in step.rhs.args if a is not prime and a is not mask]
                if len(upstream) == 1:
                    out.append(World(f"{f.name}'s derivative taken at the upstream gradient: Δ{layer} = dL/dA{layer} ⊙ "
                                     f"{f.name}'(Z{layer}), not {f.name}'(dL/dA{layer})",
                                     f"derivative at the upstream gradient in Δ{layer}",
                                     {key: Pointwise(prime.fn, prime.label, upstream[0])}, layer))
        out += self._square_transpose(layer)
        out += self._layernorm_without_statistics(layer)
        if layer == self.layers:
            softmax = self.elementwise_softmax()
            if softmax:
                out.append(World((shown or self).softmax_message(), f"softmax read as element-wise in Δ{layer}", softmax, layer))
        return out

    def _other_derivatives(self, layer, f, step, prime):
        """Another activation's derivative in layer ``layer``: at Z_l (sigmoid'(Z1)), or its formula in the
        layer's output (a(1 - a) with a = tanh(z))."""
        mine = derivative_of_output(f)
        whose = f", whose derivative is {_shown_formula(mine)}," if mine is not None and not mine.has(sp.Piecewise) else ""
        others = [name for name in USUAL_ACTIVATIONS + tuple(l.activation.name for l in self.net.layers
                                                             if l.kind == "dense")
                  if name != f.name and name in ACTIVATIONS and ACTIVATIONS[name].elementwise]
        z = prime.mats[0]
        if mine is not None and not mine.has(sp.Piecewise) and mine.subs(A, Z) != f.derivative:
            yield World(f"wrong activation derivative: {_shown_formula(mine)} is {f.name}'s derivative in its output "
                        f"a = {f.name}(z), and yours applies it to z itself", f"wrong activation derivative in Δ{layer}",
                        {step.target.key: sp.HadamardProduct(*[Pointwise(sp.Lambda(Z, mine.subs(A, Z)), f.latex + "'", z)
                                                              if a is prime else a for a in step.rhs.args])}, layer)
        for name in dict.fromkeys(others):
            g = make_activation(name, "another activation")
            forms = [(sp.Lambda(Z, g.derivative), f"wrong activation derivative: layer {layer} uses {f.name}, not {name}")]
            theirs = derivative_of_output(g)
            if theirs is not None and not theirs.has(sp.Piecewise):
                forms.append((sp.Lambda(Z, theirs.subs(A, f.definition)),
                              f"wrong activation derivative: layer {layer} uses {f.name}{whose} and yours is {name}'s, "
                              f"{_shown_formula(theirs)} of the layer's output"))
            for fn, message in forms:
                rhs = sp.HadamardProduct(*[Pointwise(fn, g.latex + "'", z) if a is prime else a for a in step.rhs.args])
                yield World(message, f"wrong activation derivative in Δ{layer}", {step.target.key: rhs}, layer)

    def _layernorm_without_statistics(self, layer):
        """The layer norm above ``layer`` differentiated as if μ and σ were constants: γ ⊙ g / σ alone."""
        if layer >= self.layers or self.net.layers[layer].kind != "layernorm":
            return []
        step = next((s for s in self.sweep.steps if s.target.key in (f"dL_dA{layer}", f"dL_dZ{layer}")), None)
        if step is None or not isinstance(step.rhs, sp.HadamardProduct):
            return []
        key, rhs = step.target.key, step.rhs
        inverse, total = rhs.args
        kept = [t for t in getattr(total, "args", ()) if isinstance(t, sp.HadamardProduct) and not t.has(FeatureMean)]
        if len(kept) != 1:
            return []
        norm = layer + 1
        below = f"dL/dA{layer}"
        return [World(f"layer norm {norm}'s backward without the paths through μ{norm} and σ{norm}: {below} = "
                      f"(g - mean(g) - X̂{norm} ⊙ mean(g ⊙ X̂{norm})) / σ{norm} with g = γ{norm} ⊙ dL/dA{norm}, means over "
                      f"each sample's features, not g / σ{norm} alone", f"layer norm {norm}'s backward in {below}",
                      {key: sp.HadamardProduct(inverse, kept[0])}, layer)]

    def _square_transpose(self, layer):
        """W_{l+1} transposed where it belongs as it is (a square weight, so the code runs)."""
        W = self.q.get(f"W{layer + 1}")
        if W is None or W.symbol.rows != W.symbol.cols:
            return []
        for key in (f"{self.key('delta')}{layer}", f"dL_dA{layer}"):
            step = next((s for s in self.sweep.steps if s.target.key == key), None)
            if step is not None and step.rhs.has(W.symbol.T):
                return [World(f"W{layer + 1} transposed where W{layer + 1} belongs: batch-first, dL/dA{layer} = "
                              f"Δ{layer + 1} W{layer + 1} (d @ W{layer + 1}, not d @ W{layer + 1}.T; it is square, "
                              f"so both run)", f"W{layer + 1} transposed in Δ{layer}",
                              {key: step.rhs.xreplace({W.symbol.T: W.symbol})}, layer)]
        return []

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
        last = getattr(self.net.layers[-1], "activation", None)  # a block, a layer norm or a mean has none
        if last is None or last.elementwise:
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
        sweep = self.sweep_mistake(mine, expected)  # the Worlds check-code finds too (checker.Checker's)
        if sweep:
            return sweep
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
        def over(axis):
            return "every entry" if axis is None else f"axis={axis}"
        for axis in (0, 1, None):
            if axis != args[1]:
                yield Node("sum", (args[0], axis), t), (f"wrong sum over the batch: '{t}' sums over {over(args[1])}; "
                                                        f"the gradient sums over {over(axis)}")
        yield args[0], f"extra sum: '{t}' should not be summed"
    if kind == "name" and args[0] == "x":
        for other in range(1, checker.layers):
            yield Node("name", (f"h{other}",), f"h{other}"), f"wrong layer: '{t}' should be h{other}"
    if kind == "name" and re.fullmatch(r"[a-z]+\d+", args[0] or ""):
        stem, layer = re.fullmatch(r"([a-z]+)(\d+)", args[0]).groups()
        for other in range(0, checker.layers + 2):  # UFLDL's layers run to L + 1
            norm = f"{stem}{other}" if other else ("x" if stem in ("a", "h") else "")
            if other != int(layer) and norm and norm in checker.table:
                yield Node("name", (norm,), norm), f"wrong layer: '{t}' should be {norm}"


def factor_message(k, net, batch=True, part="") -> str:
    """The constant factor k named, with the usual reasons for it; ``part``: of which part of the gradient."""
    outputs = net.outputs
    if k == -1:
        return "sign: yours is the negative of the gradient (check ŷ - y against y - ŷ, and every minus)"
    hints = []
    squared = net.loss.pointwise.has(sp.Pow) and any(p.exp == 2 for p in net.loss.pointwise.atoms(sp.Pow))
    if abs(k) in (2, sp.Rational(1, 2)) and squared:
        hints.append("the 2 from differentiating the square: d/dŷ (ŷ - y)² = 2(ŷ - y)")
    if batch and abs(k) in (BATCH, sp.Rational(1, BATCH)):
        hints.append(f"the 1/N of the mean over the batch, N = {BATCH} at the check's points")
    if net.loss.reduction == "mean" and outputs > 1 and abs(k) in (outputs, sp.Rational(1, outputs)):
        hints.append(f"the 1/{outputs} of the mean over the outputs")
    if batch and abs(k) in (2 * BATCH, sp.Rational(1, 2 * BATCH)) and squared:
        hints.append("both the 2 of the square and the 1/N of the mean")
    sign = "the negative of " if k < 0 else ""
    text = f"constant factor{' in ' + part if part else ''}: yours is {sign}{abs(k)} times {'it' if part else 'the gradient'}"
    return text + (f" ({'; '.join(hints)})" if hints else "")


# -- the mistakes in a backward pass's numbers (check-code) -------------------------------------------
RELATIVE = 1e-4  # a gradient is right within this fraction of its largest entry: code that adds 1e-8 to a
#                  denominator passes, and no usual mistake comes that close
LOCAL_FACTORS = (1e-6, 1e6)  # no usual mistake is a factor outside these


def close(a, b) -> bool:
    """Equal within RELATIVE of ``b``'s scale (its largest entry), same shape."""
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= RELATIVE * np.max(np.abs(b), initial=0.0) + 1e-10))


def _fit(gots, ones, twos):
    """k with got = one + (k - 1)(two - one) at every point (the targets when a step is scaled by k), else None."""
    d = twos[0] - ones[0]
    size = float(np.sum(d * d))
    if size <= 1e-24 * max(1.0, float(np.sum(ones[0] * ones[0]))):
        return None
    k = 1 + float(np.sum((gots[0] - ones[0]) * d)) / size
    if not (math.isfinite(k) and LOCAL_FACTORS[0] <= abs(k) <= LOCAL_FACTORS[1]):
        return None
    k = sp.nsimplify(k, rational=True, tolerance=1e-5 * abs(k))
    if all(close(g, o + float(k - 1) * (t - o)) for g, o, t in zip(gots, ones, twos)):
        return k
    return None


def _local_factor(gots, wants):
    """k != 1 when every ``got`` is k times its ``want``, else None."""
    k = _fit(gots, wants, [2 * w for w in wants])
    return None if k is None or k == 1 else k


@dataclass(frozen=True)
class _Hypothesis:
    """What a person's sweep computes at one layer: a World (or none) and a factor on the layer's Δ."""
    world: World | None
    factor: object
    overrides: dict


class BackwardJudge:
    """The verdicts on a backward pass's gradients, layer by layer from the output.

    At each layer a hypothesis of what the person's Δ is (the right one, a World of that layer, times a
    constant) is chosen to explain the layer's gradients with the fewest mistakes, each gradient allowed
    a view of its own (transposed, not summed over the batch, summed over the wrong axis, a factor).
    The hypothesis is kept for the layers below, so a mistake is named once, where it is made, and a
    gradient it reaches says it follows from it.
    """

    def __init__(self, checker, shown, leaves, transposed=()):
        """``leaves``: the leaves' values at each point; ``transposed``: gradients compared in the transposed layout."""
        self.checker, self.shown, self.leaves, self.net = checker, shown, leaves, checker.net
        self.transposed = set(transposed)
        self._cache = {}
        self.sums = {}  # a bias-like parameter: the step whose sum over the batch is its gradient
        for name in self.net.param_names:
            rhs = next(s.rhs for s in checker.sweep.steps if s.target.key == f"dL_d{name}")
            if isinstance(rhs, sp.MatMul) and isinstance(rhs.args[-1], sp.OneMatrix):
                self.sums[name] = rhs.args[0] if len(rhs.args) == 2 else sp.MatMul(*rhs.args[:-1])

    # -- the targets of a derivation ------------------------------------------------------------
    def targets(self, overrides):
        """Per point: {name: gradient (batch-first)}, with 'b1|axis=1' and 'b1|all' the wrong sums of a bias."""
        key = tuple(sorted(((k, sp.srepr(v)) for k, v in overrides.items())))
        if key not in self._cache:
            out = []
            for leaves in self.leaves:
                env = self.checker.evaluate_steps(dict(leaves), overrides)
                found = {}
                for name in self.net.param_names:
                    value = np.array(numeric_value(self.checker.q[f"dL_d{name}"].symbol, env), dtype=float)
                    found[name] = value.ravel() if name in self.sums else value.T if name in self.transposed else value
                    penalty = self._penalty(name, env)
                    if penalty is not None:
                        found[f"{name}|penalty"] = penalty.T if name in self.transposed else penalty
                    if name in self.sums:
                        rows = np.array(numeric_value(self.sums[name], env), dtype=float).T
                        found[f"{name}|axis=1"], found[f"{name}|all"] = rows.sum(axis=1), rows.sum().reshape(1)
                found["X"] = np.asarray(numeric_value(self.checker.grads["x"][2], env), dtype=float).T
                out.append(found)
            self._cache[key] = out
        return self._cache[key]

    def _penalty(self, name, env):
        """The weight penalties' share of ``name``'s gradient at a point (λ W, λ sign(W)), None without one."""
        if not re.fullmatch(r"W\d+", name) or not (self.net.l1 or self.net.l2):
            return None
        W = np.array(numeric_value(self.checker.q[name].symbol, env), dtype=float)
        return self.net.l2 * W + self.net.l1 * np.sign(W)

    def _delta_key(self, layer):
        keys = {s.target.key for s in self.checker.sweep.steps}
        return next((k for k in (f"{self.checker.key('delta')}{layer}", f"dL_dA{layer}") if k in keys), None)

    def _scaled(self, overrides, layer, k):
        key = self._delta_key(layer)
        rhs = overrides.get(key, next(s.rhs for s in self.checker.sweep.steps if s.target.key == key))
        return {**overrides, key: sp.sympify(k) * rhs}

    # -- one gradient under a hypothesis ----------------------------------------------------------
    def views(self, name, gots, want, penalties=None):
        """(mistake or '', yours as compared, the target's key) for each way of reading ``gots``;
        ``penalties``: the penalties' share of the gradient at each point, when it has one."""
        got = gots[0]
        out = [("", gots, name)]
        if penalties is not None and all(g.shape == p.shape for g, p in zip(gots, penalties)):
            kinds = " and ".join(k for k, w in (("L2", self.net.l2), ("L1", self.net.l1)) if w)
            shown = " + ".join(t for t, w in ((f"{self.net.l2:g}·{name}", self.net.l2),
                                              (f"{self.net.l1:g}·sign({name})", self.net.l1)) if w)
            out.append((f"missing the {kinds} penalty's gradient: add {shown}", [g + p for g, p in zip(gots, penalties)], name))
            out.append((f"the {kinds} penalty's gradient twice: it is {shown}, once", [g - p for g, p in zip(gots, penalties)],
                        name))
        if want.ndim == 2 and got.ndim == 2 and got.shape == want.T.shape:
            message = (f"transposed: yours is the transpose of dL/d{name} (it is square, so the shapes agree)"
                       if got.shape == want.shape else f"transposed: yours is {got.shape}, the transpose of dL/d{name}")
            out.append((message, [g.T for g in gots], name))
        if name in self.sums:
            per = f"Δ{name[1:]}" if re.fullmatch(r"b\d+", name) else "its per-sample terms"
            if got.ndim == 2 and got.shape[0] == BATCH and got.size == BATCH * want.size:
                out.append(("missing sum over the batch: yours has one row per sample; sum it with axis=0",
                            [g.sum(axis=0) for g in gots], name))
            if got.size == BATCH:
                out.append((f"summed over the wrong axis: yours sums {per} over axis=1 (each sample's features); "
                            f"the bias gradient sums it over the batch, axis=0", [g.ravel() for g in gots], f"{name}|axis=1"))
            if got.size == 1:
                out.append((f"summed over both axes: yours is the sum of every entry of {per}; the bias gradient "
                            f"sums it over the batch only, axis=0", [g.ravel() for g in gots], f"{name}|all"))
        return out

    def explain(self, name, gots, wants):
        """(the local mistakes, in order) that turn the targets ``wants`` ({key: per point}) into yours, or None."""
        best = None
        for view, mine, key in self.views(name, gots, wants[name][0], wants.get(f"{name}|penalty")):
            target = wants[key]
            if any(m.shape != t.shape for m, t in zip(mine, target)):
                continue
            labels = [view] if view else []
            if all(close(m, t) for m, t in zip(mine, target)):
                found = labels
            else:
                k = _local_factor(mine, target)
                if k is None:
                    continue
                found = labels + [factor_message(k, self.net)]
            if best is None or len(found) < len(best):
                best = found
        return best

    # -- the layers ----------------------------------------------------------------------------
    def hypotheses(self, layer, adopted, names, gots, pending=()):
        """The hypotheses for ``layer`` given the ones above (``adopted``): each World or none, by a factor;
        ``pending``: the layers above whose gradients were not given, whose mistakes show here first."""
        worlds = [None] + [w for l in (layer, *pending) for w in self.checker.worlds(l, self.shown)]
        for world in worlds:
            overrides = {**adopted, **(world.overrides if world else {})}
            yield _Hypothesis(world, 1, overrides)
            if not layer or self._delta_key(layer) is None:
                continue
            ones, twos = self.targets(overrides), self.targets(self._scaled(overrides, layer, 2))
            ks = []
            for name in names:
                if gots.get(name) is None:
                    continue
                for _, mine, key in self.views(name, gots[name], ones[0][name]):
                    if all(m.shape == o[key].shape for m, o in zip(mine, ones)):
                        k = _fit(mine, [o[key] for o in ones], [t[key] for t in twos])
                        if k is not None and k != 1 and k not in ks:
                            ks.append(k)
            for k in ks:
                yield _Hypothesis(world, k, self._scaled(overrides, layer, k))

    def verdicts(self, gots):
        """{name: '' when right, else the diagnosis}; ``gots`` {name: yours at each point, or None}."""
        groups = {}
        for name in self.order(True):
            groups.setdefault(_layer(name), []).append(name)
        right = self.targets({})
        adopted, sources, unknown, out, pending = {}, [], [], {}, []
        for layer, names in groups.items():
            if all(gots.get(n) is None for n in names):
                pending.append(layer)
                continue
            best, tried = None, []
            for h in self.hypotheses(layer, adopted, names, gots, pending):
                wants = self.targets(h.overrides)
                found = {n: self.explain(n, gots[n], {k: [w[k] for w in wants] for k in wants[0]})
                         for n in names if gots.get(n) is not None}
                unexplained = sum(f is None for f in found.values())
                cost = (unexplained, (h.world is not None) + (h.factor != 1) + sum(len(f) for f in found.values() if f),
                        h.factor != 1)
                tried.append((cost, h, found))
                if best is None or cost < best[0]:
                    best = (cost, h, found)
                if cost == (0, 0, False):  # the layer is right as it is: nothing explains it better
                    break
            if best is None:
                continue
            (unexplained, _, _), h, found = best
            others = sorted(tried, key=lambda t: t[0])
            if found and unexplained == len(found):
                unknown.append((layer, names[0]))
                h = _Hypothesis(None, 1, adopted)
            named = False  # the layer's own mistake is named at its first gradient that shows it
            short = h.world.short if h.world else (f"constant factor in Δ{layer}" if h.factor != 1 else "")
            wants = self.targets(h.overrides)
            for name in names:
                if gots.get(name) is None:
                    continue
                mistakes = found[name]
                if mistakes is None:  # computed from another Δ than the layer's other gradients
                    out[name] = next((_composed(self._mistakes_of(o, name) + f[name], None)
                                      for _, o, f in others if f.get(name) is not None), None) \
                        or self._unexplained(name, gots[name], right, unknown, layer)
                    continue
                changed = not all(close(w[name], r[name]) for w, r in zip(wants, right))
                inherited = next((src for src in reversed(sources) if src[0] != name), None) if changed else None
                own = mistakes
                if short and changed and not named:
                    views = [m for m in mistakes if not m.startswith("constant factor")]
                    own = views + self._mistakes_of(h, name) + mistakes[len(views):]
                    sources.append((name, short))
                    named = True
                out[name] = _composed(own, inherited)
            adopted, pending = h.overrides, []
        return out

    def _mistakes_of(self, h, name) -> list:
        """A hypothesis's mistakes as named at the gradient ``name``."""
        return ([h.world.message] if h.world else []) + ([self._factor_text(h.factor, name)] if h.factor != 1 else [])

    def order(self, with_x=False) -> list:
        """The parameters from the output layer to the first, each layer's weight first, then dL/dX."""
        names = sorted(self.net.param_names, key=lambda n: -_layer(n))
        return names + (["X"] if with_x else [])

    def _factor_text(self, k, name):
        """The hypothesis's factor named at ``name``: of the loss's part when the gradient has a penalty's too."""
        penalty = [(self.net.l2, "L2", f"{self.net.l2:g}·{name}"), (self.net.l1, "L1", f"{self.net.l1:g}·sign({name})")]
        penalty = [(kind, shown) for weight, kind, shown in penalty if weight] if re.fullmatch(r"W\d+", name) else []
        if not penalty:
            return factor_message(k, self.net)
        return (factor_message(k, self.net, part="the loss's part") + "; "
                + "; ".join(f"the {kind} penalty's {shown} is right" for kind, shown in penalty))

    def _unexplained(self, name, gots, right, unknown, layer):
        got, want = gots[0], right[0][name]
        text = (f"wrong shape: yours is {got.shape}, dL/d{name} is {want.shape}" if got.shape != want.shape else
                "zero: yours is 0 everywhere; was it never computed, or never stored?" if not np.any(gots[0]) else
                "no usual mistake (transpose, sign, factor, activation derivative, sum) or pair of them explains "
                "the difference")
        above = [first for l, first in unknown if l > layer]
        if above and got.shape == want.shape:
            text += f"\n    (dL/d{above[-1]} is already wrong; fix the layers nearer the output first)"
        return text


def _layer(name) -> int:
    """The layer of a parameter's name (W2: 2), 0 for the input X."""
    found = re.search(r"\d+$", name)
    return int(found.group()) if found else 0


def _gradient_label(name) -> str:
    """How a message names the gradient ``name``: dL/dW1 for a network's parameter W1 (none starts with d),
    an op's output dx or dWh as it is."""
    return name if name.startswith("d") else f"dL/d{name}"


def _composed(own, inherited) -> str:
    """The diagnosis from a gradient's own mistakes and the one above it that it inherits."""
    source = f"{_gradient_label(inherited[0])}'s mistake ({inherited[1]})" if inherited else ""
    if not own:
        return f"follows from {source}" if source else ""
    text = own[0] if len(own) == 1 else (f"two mistakes: {own[0]}; and {own[1]}" if len(own) == 2 else
                                         f"{len(own)} mistakes: " + "; ".join(own[:-1]) + f"; and {own[-1]}")
    return text + (f", besides {source}" if source else "")


# -- the usual mistakes of the CNN ops (check-code --op conv2d, maxpool2d, avgpool2d, batchnorm) -------
# Each is the derivation with one step changed (a World), or, for the padding, a view of the person's
# array; the person's gradients are compared with them by ``OpJudge``.

class FlippedKernel(WindowNode):
    """``FlippedKernel(window, W)``: W (O, C·kH·kW) with each kernel turned by 180°, ``w[:, :, ::-1, ::-1]``."""

    @property
    def shape(self):
        return self.mats[0].shape

    def _expand(self, W):
        w = self.window
        flip = {w.flat(c, u, w.kernel): w.flat(c, tuple(k - 1 - a for a, k in zip(u, w.kernel)), w.kernel)
                for c in range(w.channels) for u in itertools.product(*(range(k) for k in w.kernel))}
        return sp.ImmutableMatrix(W.rows, W.cols, lambda o, j: W[o, flip[j]])


def _unstrided_taps(w: Window):
    """(output position's flat index, kernel offset, input position) of the window read at stride 1:
    output (i, j) reads input i + d·u - p, as code does that writes ``x[i:i+HH]`` for ``x[i*s:i*s+HH]``."""
    still = replace(w, stride=(1,) * w.dims)
    for i in itertools.product(*(range(n) for n in w.out)):
        for u in itertools.product(*(range(k) for k in w.kernel)):
            pos = still.source(i, u)
            if pos is not None:
                yield w.flat(0, i, w.out), u, pos


class UnstridedInputGrad(WindowNode):
    """``UnstridedInputGrad(window, G, W)``: dL/dX as ConvInputGrad computes it with the stride left out."""

    @property
    def shape(self):
        return sp.Integer(math.prod(self.window.shape)), self.mats[0].shape[1]

    def _expand(self, G, W):
        w = self.window
        out = sp.zeros(math.prod(w.shape), G.cols)
        for n, o, c in itertools.product(range(G.cols), range(G.rows // w.positions), range(w.channels)):
            for p, u, pos in _unstrided_taps(w):
                out[w.flat(c, pos), n] += G[o * w.positions + p, n] * W[o, w.flat(c, u, w.kernel)]
        return sp.ImmutableMatrix(out)


class UnstridedWeightGrad(WindowNode):
    """``UnstridedWeightGrad(window, G, X)``: dL/dW as ConvWeightGrad computes it with the stride left out."""

    @property
    def shape(self):
        return sp.Integer(self.mats[0].shape[0] // self.window.positions), sp.Integer(self.window.channels * self.window.size)

    def _expand(self, G, X):
        w = self.window
        O = G.rows // w.positions
        out = sp.zeros(O, w.channels * w.size)
        for n, o, c in itertools.product(range(X.cols), range(O), range(w.channels)):
            for p, u, pos in _unstrided_taps(w):
                out[o, w.flat(c, u, w.kernel)] += G[o * w.positions + p, n] * X[w.flat(c, pos), n]
        return sp.ImmutableMatrix(out)


def _replaced(step, node, by, message, short, layer) -> World:
    """The World whose step ``step`` computes ``by`` where the derivation has ``node``."""
    return World(message, short, {step.target.key: step.rhs.xreplace({node: by})}, layer)


def _conv_mistakes(step, node, layer) -> list:
    """A convolution's input gradient (ConvInputGrad) or kernel gradient (ConvWeightGrad) with a usual mistake."""
    window = node.window
    s = one(window.stride)
    if isinstance(node, ConvInputGrad):
        G, W = node.mats
        out = [_replaced(step, node, ConvInputGrad(window, G, FlippedKernel(window, W)),
                         "kernel not flipped: dx is the full convolution of dout (dilated by the stride) with the "
                         "kernel, a correlation with the kernel turned by 180° (w[:, :, ::-1, ::-1]); yours "
                         "correlates with w as it is", f"kernel not flipped in layer {layer}'s dx", layer)]
        if set(window.stride) != {1}:
            out.append(_replaced(step, node, UnstridedInputGrad(window, G, W),
                                 f"stride ignored in dx: output (i, j) reads the input at (i·{s}, j·{s}), so its dout "
                                 f"goes back to dx_pad[:, :, i*{s}:i*{s}+HH, j*{s}:j*{s}+WW]; yours adds it at "
                                 f"[i:i+HH, j:j+WW]", f"stride ignored in layer {layer}'s dx", layer))
        return out
    if set(window.stride) == {1}:
        return []
    return [_replaced(step, node, UnstridedWeightGrad(window, *node.mats),
                      f"stride ignored in dw: dw correlates dout with the input windows x_pad[:, :, i*{s}:i*{s}+HH, "
                      f"j*{s}:j*{s}+WW]; yours reads them at [i:i+HH, j:j+WW]", f"stride ignored in layer {layer}'s dw",
                      layer)]


def _pool_mistakes(step, node, layer, inputs) -> list:
    """A pooling's input gradient (MaxPoolGrad or AvgPoolGrad) with a usual mistake; ``inputs``: each
    average pooling's input by its window's argument (the routing to the maximum reads it)."""
    window, G = node.window, node.mats[0]
    k = window.size
    spread = sp.Integer(k) * AvgPoolGrad(window, G)
    if isinstance(node, MaxPoolGrad):
        return [_replaced(step, node, spread, f"max pool's gradient spread to the whole window: all of dout goes to the "
                                              f"window's maximum (the first, in row-major order), and nothing to its "
                                              f"other {k - 1} entries; yours gives dout to each entry",
                          f"max pool {layer}'s gradient spread over the window", layer),
                _replaced(step, node, AvgPoolGrad(window, G),
                          f"max pool's gradient averaged over the window: all of dout goes to the window's maximum, not "
                          f"dout/{k} to each of its {k} entries (that is average pooling's)",
                          f"max pool {layer}'s gradient averaged", layer)]
    out = [_replaced(step, node, spread, f"average pooling's 1/{k} left out: each of a window's {k} entries gets "
                                         f"dout/{k}, not dout", f"1/k missing in average pool {layer}'s gradient", layer)]
    X = inputs.get(node.args[0])
    if X is not None:
        out.insert(0, _replaced(step, node, MaxPoolGrad(window, G, X, MaxPool(window, X)),
                                f"average pooling's gradient routed to the maximum: every entry of a window gets "
                                f"dout/{k}, not only the window's maximum (that is max pooling's)",
                                f"average pool {layer}'s gradient routed to the maximum", layer))
    return out


def _batchnorm_mistakes(step, xhat, layer) -> list:
    """Batch norm's input gradient in its compact form 1/(Nσ) ⊙ (N·g − Σ g − x̂ ⊙ Σ(g ⊙ x̂)), g = γ ⊙ dout
    (the sums over the batch and positions, N their count), with a usual mistake."""
    rhs = step.rhs
    if not isinstance(rhs, sp.HadamardProduct):
        return []
    total = next((a for a in rhs.args if isinstance(a, sp.MatAdd) and len(a.args) == 3 and a.has(xhat)), None)
    if total is None:
        return []
    own = [t for t in total.args if isinstance(t, sp.MatMul) and not t.args[0].is_negative]
    with_x = [t for t in total.args if t not in own and t.has(xhat)]
    mean = [t for t in total.args if t not in own and t not in with_x]
    if not (len(own) == len(with_x) == len(mean) == 1):
        return []
    count, g = own[0].as_coeff_mmul()
    own, with_x, mean = own[0], with_x[0], mean[0]

    def world(message, short, *kept):
        return _replaced(step, total, sp.MatAdd(*kept), message, f"{short} (batch norm {layer})", layer)
    return [world("batch norm's path through the mean left out: μ depends on every x, which gives the − Σg term",
                  "mean path missing", own, with_x),
            world("batch norm's path through the variance left out: σ depends on every x, which gives the "
                  "− x̂ ⊙ Σ(g ⊙ x̂) term", "variance path missing", own, mean),
            world("batch norm's paths through the mean and the variance left out: μ and σ depend on every x; "
                  "yours is g / σ alone", "mean and variance paths missing", own),
            world("batch norm's 1/N left out of the mean and variance paths: they are means, "
                  "(g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) / σ, and yours sums where it should average",
                  "1/N missing in the statistics' paths", own, count * mean, count * with_x),
            world("batch norm's 1/N on every term: only the mean and variance paths are averaged, g / σ is not",
                  "1/N on g / σ too", g, mean, with_x)]


def cnn_worlds(sweep, net) -> list:
    """The usual mistakes of every convolution, pooling and batch norm in a batch sweep, as Worlds: the
    derivation with the node of one backward step changed, in the order of the sweep."""
    out = []
    inputs = {node.args[0]: node.mats[0] for step in sweep.steps for node in step.rhs.atoms(AvgPool)}
    for step in sweep.steps:
        for node in sorted(step.rhs.atoms(ConvInputGrad, ConvWeightGrad, MaxPoolGrad, AvgPoolGrad), key=sp.srepr):
            # an input gradient is the step of the layer below the op's
            layer = step.target.layer + (not isinstance(node, ConvWeightGrad))
            if isinstance(node, (ConvInputGrad, ConvWeightGrad)):
                out += _conv_mistakes(step, node, layer)
            else:
                out += _pool_mistakes(step, node, layer, inputs)
        for l, layer in enumerate(net.layers, 1):
            xhat = sweep.quantities.get(f"Xhat{l}")
            if layer.kind == "batchnorm" and xhat is not None:
                out += _batchnorm_mistakes(step, xhat.symbol, l)
    return out


def padding_not_cropped(window: Window, shape: tuple) -> str:
    """The mistake of returning the padded input's gradient (shape ``shape``): dx_pad for dx."""
    crop = ", ".join(f"{a}:-{a}" for a in window.padding)
    return (f"padding not cropped: yours is {shape}, the gradient of the padded input; the padding is not the "
            f"input, so dx = dx_pad[:, :, {crop}]")


def cropped(window: Window, array):
    """``array`` with the padding of ``window`` cut off its spatial axes, or None when its shape is not padded."""
    padded = tuple(n + 2 * p for n, p in zip(window.spatial, window.padding))
    if not any(window.padding) or array.ndim != 2 + window.dims or array.shape[2:] != padded:
        return None
    return array[(slice(None), slice(None)) + tuple(slice(p, p + n) for p, n in zip(window.padding, window.spatial))]


class OpJudge:
    """The verdicts on an op's or a CNN's gradients, in the order given (the output's layer first): each
    compared with the derivation's at every point, else explained by a view (the padding cropped), a World
    and a constant factor, the fewest mistakes first. A World that explains a gradient is kept for the
    ones after it, so a mistake is named once, where it shows first, and what it reaches follows from it."""

    def __init__(self, targets, worlds, net, views=()):
        """``targets(overrides)``: per point {output: gradient}; ``worlds``: the Worlds; ``views``:
        (output, function(array) -> array or None, function(array) -> message) ways to read an array."""
        self.targets, self.worlds, self.net, self.views = targets, worlds, net, views

    def verdicts(self, gots) -> dict:
        """{name: '' when right, else the diagnosis} for ``gots`` {name: one array per point}, in its order."""
        adopted, sources, out = {}, [], {}
        for name, mine in gots.items():
            text, world = self._explain(name, mine, adopted, sources)
            if world is not None:
                adopted = {**adopted, **world.overrides}
                sources.append(((name, world.short), adopted))
            out[name] = text
        return out

    def _explain(self, name, gots, adopted, sources):
        """(the diagnosis, the World it names or None) of one gradient, the Worlds ``adopted`` already in place;
        ``sources``: (where a World was named, the Worlds adopted with it) in order, the first that changes
        this gradient is the mistake it inherits."""
        right, base = self.targets({}), self.targets(adopted)
        source = next((where for where, upto in sources
                       if not all(close(b[name], r[name]) for b, r in zip(self.targets(upto), right))), None)
        readings = [("", gots)] + [(message(gots[0]), [view(g) for g in gots]) for out, view, message in self.views
                                   if out == name and view(gots[0]) is not None]
        best = None
        for view, mine in readings:
            for world in [None] + self.worlds:
                wants = base if world is None else self.targets({**adopted, **world.overrides})
                target = [w[name] for w in wants]
                if any(m.shape != t.shape for m, t in zip(mine, target)):
                    continue
                if world is not None and all(close(t, b[name]) for t, b in zip(target, base)):
                    continue  # this mistake does not change this gradient
                found = [m for m in (view, world and world.message) if m]
                factor = not all(close(m, t) for m, t in zip(mine, target))
                if factor:
                    k = _local_factor(mine, target)
                    if k is None:
                        continue
                    found.append(factor_message(k, self.net, batch=False))
                if best is None or (len(found), factor) < best[0]:  # a named mistake before a bare factor
                    best = ((len(found), factor), found, world)
        if best is None:
            got, want = gots[0], right[0][name]
            return (f"wrong shape: yours is {got.shape}, {name} is {want.shape}" if got.shape != want.shape else
                    "zero: yours is 0 everywhere; was it never computed, or never stored?" if not np.any(got) else
                    "no usual mistake of this op (see check-code --help) or constant factor explains the difference"
                    ), None
        _, found, world = best
        return _composed(found, source), world


# -- the usual mistakes of backpropagation through time (check-code --op rnn_step, rnn, lstm_step, lstm, gru_step, gru) --
# The reference is the recurrent op's own BPTT, ``recurrent.backprop``, run with a ``BoundCell``: its
# step 0 sets the given initial state (prev_h, h0, prev_c) and its backward step 0 keeps the gradient that
# reaches it (dprev_h, dh0, dprev_c). Each mistake changes what one backward step computes, so the loop,
# its sums over t and its paths stay the op's. The keys of a World's overrides are read by ``BoundCell``
# (the step's mistakes) and by ``code.recurrent_targets`` ("sum dWx": a shared weight's sum over t missing;
# "clip": the parameters' gradients clipped, "convention": the GRU written with z and 1 − z swapped throughout).
GRU_MISTAKES = ("swapped", "bias_outside", "z_path", "gru_prime")  # the GRU step's, read by BoundCell._gru_back


class BoundCell:
    """A recurrent op's Cell started from a given state, with ``mistakes`` in its backward step; ``kept``
    receives the gradient of the initial state (and "db_hh", what a mistake adds to the hidden bias's gradient
    beside the share the op's loop sums). ``dc``: the upstream gradient of the last cell state."""

    def __init__(self, inner, state, dc, steps, mistakes, kept):
        self.inner, self.state, self.dc, self.steps, self.mistakes, self.kept = inner, state, dc, steps, mistakes, kept
        self.gates, self.states, self.title = inner.gates, inner.states, inner.title
        self.t = 0  # unroll calls step once per time step, in order: step 0 is the initial state

    def step(self, P, x, state):
        t, self.t = self.t, self.t + 1
        if t == 0:
            return self.state, None
        new, saved = self.inner.step(P, x, state)
        return new, (t, saved, state[0], x)

    def back(self, P, saved, dstate):
        m = self.mistakes
        dh = dstate[0]
        zero = sp.zeros(*dh.shape)
        if saved is None:
            self.kept["initial"] = dstate
            nothing = sp.zeros(self.gates * dh.rows, dh.cols)
            return nothing, nothing, tuple(zero for _ in range(self.states))
        t, inner, h_prev, x = saved
        if self.states == 2:
            dc = dstate[1] + (self.dc if t == self.steps else zero)
            dstate = (dh, zero if m.get("cell_path") else dc)
        extra = None
        if self.gates == 3 and any(m.get(k) for k in GRU_MISTAKES):
            da_x, da_h, direct, extra = self._gru_back(P, inner, dh, x)
        else:
            da_x, da_h, direct = self.inner.back(P, inner, dstate)
        if m.get("prime"):  # tanh' written in another value than this step's output h_t = tanh(a_t)
            v = h_prev if m["prime"] == "prev" else inner
            da_x = da_h = dh.multiply_elementwise(sp.ones(*dh.shape) - v.multiply_elementwise(v))
        if m.get("forget"):  # dprev_c without the forget gate: the backward step with f = 1
            i, f, g, o, c_prev, tc = inner
            direct = (direct[0], self.inner.back(P, (i, sp.ones(*f.shape), g, o, c_prev, tc), dstate)[2][1])
        if m.get("hidden_path") and t > 1:  # dprev_h never reaches t - 1: through Wh (cancelled here) nor directly
            direct = (zero - P.W_hh.T * da_h,) + direct[1:]
        if m.get("transpose"):  # the carry through Wh, not its transpose (cs231n's da @ Wh for da @ Wh.T)
            direct = (direct[0] + (P.W_hh - P.W_hh.T) * da_h,) + direct[1:]
        if (m.get("zeroed") == "first" and t == 1) or (m.get("zeroed") == "before_last" and t < self.steps):
            # a step's share of the shared weights taken out: only dWx, dWh, db are read from such a run
            da_x = da_h = sp.zeros(*da_x.shape)
        elif extra is not None:
            self.kept["db_hh"] = self.kept["db_hh"] + extra if "db_hh" in self.kept else extra
        return da_x, da_h, direct

    def _gru_back(self, P, saved, dh, x):
        """The GRU's backward step with its usual mistakes (``GRU_MISTAKES``), as ``GRUCell.back`` returns it, and
        the batch-summed share a mistake adds to db_hh alone (None when there is none)."""
        m = self.mistakes
        r, z, n, hn, h_prev = saved
        one = sp.ones(*dh.shape)
        into_n, direct = (z, one - z) if m.get("swapped") else (one - z, z)  # n's share and h_(t-1)'s
        H = dh.rows
        bias = P.b_hh[2 * H:, :] * sp.ones(1, dh.cols)
        v = {"output": had(one - z, n) + had(z, h_prev),
             "pre": P.ih(x)[2 * H:, :] + had(r, hn)}.get(m.get("gru_prime"), n)
        dn = had(dh, into_n, one - had(v, v))
        inside = hn - bias if m.get("bias_outside") else hn   # what r multiplies, as the backward reads it
        dr = had(dn, inside, r, one - r)
        dz = had(dh, n - h_prev if m.get("swapped") else h_prev - n, z, one - z)
        extra = (dn - had(dn, r)) * sp.ones(dh.cols, 1) if m.get("bias_outside") else None  # db_hn = dn, not r ⊙ dn
        return (sp.ImmutableMatrix.vstack(dr, dz, dn), sp.ImmutableMatrix.vstack(dr, dz, had(dn, r)),
                (sp.zeros(*dh.shape) if m.get("z_path") else had(dh, direct),), extra)


def recurrent_worlds(cell: str, steps: int, square: bool) -> list:
    """The usual BPTT mistakes of cs231n-style rnn_step/rnn/lstm_step/lstm/gru_step/gru backward functions, as
    Worlds, in a fixed order; ``steps``: T (1 for a step op), ``square``: Wh is square (the RNN's, so a
    transposed Wh runs). Clipping comes last: it explains a difference only where nothing else does."""
    h_t, h_prev = ("next_h", "prev_h") if steps == 1 else ("h_t", "h_(t-1)")
    dnext = "dnext_h" if steps == 1 else "dh_t"
    out = []
    if cell == "rnn":
        out += [World(f"tanh's derivative taken at {h_prev}: da = {dnext} ⊙ (1 − {h_t}²), the derivative at this "
                      f"step's own output {h_t} = tanh(a), not 1 − {h_prev}²", f"tanh' at {h_prev}", {"prime": "prev"}, 1),
                World(f"tanh's derivative taken at the pre-activation: da = {dnext} ⊙ (1 − {h_t}²) with {h_t} = "
                      f"tanh(a); yours is 1 − a², the formula in the output applied to a = x Wx + {h_prev} Wh + b itself",
                      "tanh' at a", {"prime": "pre"}, 1)]
    if square:
        out.append(World("Wh transposed in dprev_h: dprev_h = da @ Wh.T (Wh is square, so da @ Wh runs too)",
                         "Wh transposed in dprev_h", {"transpose": True}, 1))
    if cell == "lstm":
        out += [World("the forget gate left out of dprev_c: c_t = f ⊙ c_(t-1) + i ⊙ g, so dprev_c = dc ⊙ f, not dc",
                      "f missing in dprev_c", {"forget": True}, 1),
                World("dnext_c not added: the cell state's gradient is dc = dnext_c + dnext_h ⊙ o ⊙ (1 − tanh²(next_c)); "
                      "yours has the path through next_h alone" if steps == 1 else
                      "the cell-state path dropped: step t's dnext_c is the dprev_c of step t + 1 (dc = dnext_c + "
                      "dh_t ⊙ o ⊙ (1 − tanh²(c_t))); yours passes no dnext_c between the steps",
                      "dnext_c missing" if steps == 1 else "the cell-state path missing", {"cell_path": True}, 1)]
    if cell == "gru":
        out += _gru_worlds(h_t, h_prev, dnext, steps)
    if steps > 1:
        out.append(World("the path through h_(t-1) dropped: step t's upstream gradient is dh[:, t] + dprev_h, the "
                         "output's share plus what step t + 1 sends back; yours passes dh[:, t] alone",
                         "the path through h_(t-1) missing", {"hidden_path": True}, 1))
        shared = (("dWx", "Wx"), ("dWh", "Wh")) + ((("dbx", "bx"), ("dbh", "bh")) if cell == "gru" else (("db", "b"),))
        for name, weight in shared:
            for which, step in (("first", "step 1's (the last one the backward loop reaches)"),
                                ("last", f"step T = {steps}'s")):
                out.append(World(f"the sum over time missing in {name}: {weight} is shared by the {steps} steps, so "
                                 f"{name} = Σ_t (step t's {name}), accumulated with +=; yours is {step} alone",
                                 f"the sum over t missing in {name}", {f"sum {name}": which}, 1))
    return out + clip_worlds()


def _gru_worlds(h_t, h_prev, dnext, steps) -> list:
    """The usual mistakes of a GRU's backward in torch's equations: r = σ(..), z = σ(..),
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h_t = (1 − z) ⊙ n + z ⊙ h_(t-1). One step cannot tell
    z and 1 − z swapped in the backward alone from swapped throughout (its n, r and z are the same either
    way), so a step op has the one World, a sequence both."""
    dn = f"dn = {dnext} ⊙ (1 − z) ⊙ (1 − n²)"
    chung = f"(1 − z) ⊙ {h_prev} + z ⊙ n (Chung et al.'s and Olah's convention)"
    return [
        World("(1 − z) and z swapped" + (" in the backward pass" if steps > 1 else "") + f": {h_t} = (1 − z) ⊙ n + "
              f"z ⊙ {h_prev}, so {dn}, dz = {dnext} ⊙ ({h_prev} − n) ⊙ z(1 − z) and {h_prev} gets {dnext} ⊙ z "
              f"directly; yours has z into n and 1 − z into {h_prev}, the backward of {chung}",
              "(1 − z) and z swapped", {"swapped": True}, 1)] + ([
        World(f"z and 1 − z swapped throughout: torch's GRU is {h_t} = (1 − z) ⊙ n + z ⊙ {h_prev}; yours computes "
              f"{chung}, forward and backward: the GRU whose z gate has the opposite sign",
              "z and 1 − z swapped throughout", {"convention": True}, 1)] if steps > 1 else []) + [
        World(f"b_hn read outside r ⊙ (W_hn {h_prev} + b_hn): torch's n = tanh(W_in x + b_in + r ⊙ (W_hn {h_prev} + "
              f"b_hn)), so dr = dn ⊙ (W_hn {h_prev} + b_hn) ⊙ r(1 − r) and dbh's n block is Σ r ⊙ dn; yours reads "
              f"W_hn {h_prev} alone in dr and dn in dbh, as for tanh(... + r ⊙ (W_hn {h_prev}) + b_hn)",
              "b_hn outside r ⊙ (...)", {"bias_outside": True}, 1),
        World(f"the path from {h_t} to {h_prev} through z dropped: {h_t} = (1 − z) ⊙ n + z ⊙ {h_prev}, so dprev_h "
              f"= {dnext} ⊙ z + the gates' paths through Wh; yours has the paths through Wh alone",
              f"z ⊙ {h_prev}'s path missing", {"z_path": True}, 1),
        World(f"tanh's derivative taken at {h_t}: {dn}, the derivative at the candidate n = tanh(a_n); yours is "
              f"1 − {h_t}² (an RNN's, whose output is the tanh)", f"tanh' at {h_t}", {"gru_prime": "output"}, 1),
        World(f"tanh's derivative taken at the pre-activation: {dn} with n = tanh(a_n); yours is 1 − a_n², the "
              f"formula in the output applied to a_n = x W_n + b_in + r ⊙ (W_hn {h_prev} + b_hn) itself",
              "tanh' at a_n", {"gru_prime": "pre"}, 1)]


CLIP_BOUNDS = (1, 5, 10)  # the bounds people clip gradients to (min-char-rnn's 5)


def clip_worlds() -> list:
    """Gradient clipping inside the backward pass, as Worlds: np.clip(dparam, -c, c) on the shared weights' and
    biases' gradients, of the batch ("clip": (c, False)) or of each sequence before the batch's are summed
    ((c, True): min-char-rnn's lossFun sees one sequence). It changes the gradient wherever an entry is beyond c."""
    out = []
    for bound in CLIP_BOUNDS:
        for each in (False, True):
            whose = " on each sequence's gradient, before the batch's are summed," if each else ""
            out.append(World(f"clipped to [-{bound}, {bound}]: np.clip(dparam, -{bound}, {bound}){whose} in the backward "
                             f"pass (as min-char-rnn does against exploding gradients) cuts every entry beyond ±{bound}, "
                             "so the gradient is no longer the derivative; return it unclipped and clip in the update "
                             "step ([training] clip_norm clips by the norm)", f"clipped to [-{bound}, {bound}]",
                             {"clip": (bound, each)}, 1))
    return out


# -- the usual mistakes of scaled dot-product attention's backward (check-code --op attention) ---------
# The reference is the attention op's own backward (``code.attention_reference``); a World's overrides are
# read by ``code.attention_mistaken``: "scale dq"/"scale dk" (the 1/√d left out), "elementwise" (softmax's
# Jacobian read as its diagonal), "transpose" (dK from dS, not dSᵀ), "unmasked" (the backward's A without
# the mask: the op's own backward with causal = false), and by ``code.propagated``: "merge" (mha's heads).

def mistaken_scores(A, dA, mistakes):
    """dL/dS (N, H, T, T) from the weights A and dA = dout vᵀ as a mistaken backward has it: the softmax's
    diagonal alone A ⊙ (1 − A) ⊙ dA when "elementwise", else its Jacobian row by row (the op never returns
    dS, so a mistake made after it is rebuilt from it here)."""
    if mistakes.get("elementwise"):
        return A * (1 - A) * dA
    return A * (dA - (dA * A).sum(axis=-1, keepdims=True))


def attention_worlds(layer=False) -> list:
    """The usual mistakes of an attention backward, as Worlds, in a fixed order (one before the mistakes it may
    be mistaken for: the scale before the rest, the softmax's diagonal before the transposed dS); ``layer``: the
    mha layer's too (the heads merged back without the transpose their split had)."""
    scale = "the 1/√d_k of the scores S = q kᵀ/√d_k left out of {0}: {0} = {1} / √d_k (d_k = 4 here, so yours is 2 times it)"
    return [World(scale.format("dq", "dS k"), "1/√d_k missing in dq", {"scale dq": True}, 1),
            World(scale.format("dk", "dSᵀ q"), "1/√d_k missing in dk", {"scale dk": True}, 1),
            World("softmax treated as element-wise: dS = A ⊙ (1 − A) ⊙ dA is the Jacobian's diagonal alone; each row "
                  "of A is a softmax of the whole row of S, so dS = A ⊙ (dA − rowsum(dA ⊙ A))",
                  "softmax read as element-wise", {"elementwise": True}, 1),
            World("dS not transposed in dk: S = q kᵀ, so dk = dSᵀ q / √d_k (key j collects column j of dS); yours is "
                  "dS q / √d_k", "dS not transposed in dk", {"transpose": True}, 1),
            World("the mask not applied in the backward pass: masked scores (True in mask, a key after the query) get "
                  "weight 0 and carry no gradient; yours is the gradient of attention without the mask (A recomputed "
                  "without it?)", "the mask missing", {"unmasked": True}, 1)] + ([
            World("the heads not merged back as they were split: the forward splits (N, T, E) into (N, H, T, d) with a "
                  "reshape and a transpose, so dq, dk, dv (N, H, T, d) go back with the transpose first, "
                  "d.transpose(0, 2, 1, 3).reshape(N, T, E); yours reshapes without it", "the heads merged wrongly",
                  {"merge": True}, 1)] if layer else [])
