"""The reverse sweep: a Network becomes an ordered list of Steps, forward then backward.

Every adjoint gets its own symbol (``delta_l = dL/dz_l``), so each Step is a small matrix-level
expression in earlier symbols and the derivation grows linearly with depth. The sweep is done
twice: for one sample as a column vector (the textbook form) and for a batch whose samples are
the columns of ``X`` (the form the generated code implements).
"""
import re
from dataclasses import dataclass

import sympy as sp

from .formula import value_at
from .nodes import ColumnNormalize, ColumnSums, ElementSum, Pointwise
from .ops.activations import Z
from .ops.losses import Y as Y_SCALAR, YHAT

N = sp.Symbol("N", integer=True, positive=True)
FORMS = ("sample", "batch")


@dataclass(frozen=True)
class Quantity:
    """A named matrix of the derivation: its SymPy symbol and how each printer names it."""
    key: str
    symbol: sp.Basic
    latex: str
    text: str
    meaning: str
    role: str
    layer: int = 0

    @property
    def shape(self):
        return getattr(self.symbol, "shape", ())


def _scaled(coefficient, matrix):
    """``coefficient * matrix`` kept as a product, so ``2 (yhat - y)`` is not distributed."""
    return matrix if coefficient == 1 else sp.MatMul(coefficient, matrix, evaluate=False)


def ref(q: Quantity) -> str:
    """A placeholder for a quantity's name in a reason; each printer fills in its own notation."""
    return f"⟦{q.key}⟧"


@dataclass(frozen=True)
class Step:
    """One equation: ``target = rhs``, with its shape, its reason in words and its number."""
    number: int
    target: Quantity
    rhs: sp.Basic
    reason: str
    phase: str
    layer: int
    form: str

    @property
    def shape(self):
        return self.target.shape

    def explain(self, names: dict) -> str:
        """The reason, with each quantity named as `names` (key -> printed name) names it."""
        return re.sub(r"⟦(\w+)⟧", lambda m: names[m[1]], self.reason)


class _Sweep:
    """Builds the quantities and steps of one form ('sample' or 'batch') of a network."""

    def __init__(self, network, form: str, first_number: int):
        self.net, self.form, self.number = network, form, first_number
        self.batch = form == "batch"
        self.cols = N if self.batch else 1
        self.quantities: dict[str, Quantity] = {}
        self.steps: list[Step] = []

    # -- naming -------------------------------------------------------------------------------
    def quantity(self, key, rows, cols, latex, text, meaning, role, layer=0) -> Quantity:
        symbol = sp.MatrixSymbol(key, rows, cols) if rows else sp.Symbol(key)
        q = Quantity(key, symbol, latex, text, meaning, role, layer)
        self.quantities[key] = q
        return q

    def letter(self, lower: str) -> str:
        return lower.upper() if self.batch else lower

    def step(self, target: Quantity, rhs, reason: str, phase: str, layer: int):
        self.steps.append(Step(self.number, target, rhs, reason, phase, layer, self.form))
        self.number += 1

    # -- the sweep ----------------------------------------------------------------------------
    def run(self):
        net, L, cols = self.net, len(self.net.layers), self.cols
        widths = net.widths
        x, y = self.letter("x"), self.letter("y")
        act_in = self.quantity(x, widths[0], cols, x, x, "input" + (", one sample per column" if self.batch else ""), "data")
        target = self.quantity(y, widths[-1], cols, y, y, "target", "data")
        ones_row = sp.OneMatrix(1, N)
        self.params = {}
        a = {0: act_in}
        z = {}
        for l, layer in enumerate(net.layers, start=1):
            W = self.quantity(f"W{l}", widths[l], widths[l - 1], f"W_{{{l}}}", f"W{l}", f"weights of layer {l}", "param", l)
            b = self.quantity(f"b{l}", widths[l], 1, f"b_{{{l}}}", f"b{l}", f"bias of layer {l}", "param", l)
            self.params[l] = (W, b)
            zl = self.letter("z")
            z[l] = self.quantity(f"{zl}{l}", widths[l], cols, f"{zl}_{{{l}}}", f"{zl}{l}",
                                 f"pre-activation of layer {l}", "forward", l)
            affine = W.symbol * a[l - 1].symbol
            bias = b.symbol * ones_row if self.batch else b.symbol
            why = (f"layer {l} is affine: weights times the layer's input plus the bias"
                   + (", added to every column (a row of N ones)" if self.batch else ""))
            self.step(z[l], sp.MatAdd(affine, bias), why, "forward", l)
            f = layer.activation
            out = l == L
            if f.is_identity and not layer.residual and not layer.dropout and not out:
                a[l] = z[l]
                continue
            if out:
                a[l] = self.quantity(f"{y}hat", widths[l], cols, rf"\hat{{{y}}}", "Ŷ" if self.batch else "ŷ", "network output", "forward", l)
            else:
                al = self.letter("a")
                a[l] = self.quantity(f"{al}{l}", widths[l], cols, f"{al}_{{{l}}}", f"{al}{l}",
                                     f"activation of layer {l}", "forward", l)
            rhs = self.apply(f, z[l]) if not f.is_identity else z[l].symbol
            why = (f"{f.name} applied element-wise" if f.elementwise else f"{f.name} over each column")
            if f.is_identity:
                why = "the identity activation"
            if layer.dropout:
                mask = self.mask(l, layer.dropout)
                rhs = sp.HadamardProduct(rhs, mask.symbol)
                why += f", times the dropout mask {ref(mask)} (inverted dropout, p = {layer.dropout:g})"
            if layer.residual:
                rhs = sp.MatAdd(rhs, a[l - 1].symbol)
                why += ", plus the layer's input (residual connection)"
            self.step(a[l], rhs, why, "forward", l)
        self.a, self.z = a, z
        self.loss_step(a[L], target)
        self.backward(a, z, target)

    def mask(self, l: int, p: float) -> Quantity:
        """Inverted dropout's mask: each entry 0 (dropped, probability p) or 1/(1-p); a constant here."""
        m = self.letter("m")
        return self.quantity(f"{m}{l}", self.net.widths[l], self.cols, f"{m}_{{{l}}}", f"{m}{l}",
                             f"dropout mask of layer {l}: 0 or 1/(1-p) per entry, fixed for the step "
                             f"(all ones in evaluation)", "mask", l)

    def apply(self, f, q: Quantity, prime=False):
        body = f.derivative if prime else f.definition
        label = f.latex + ("'" if prime else "")
        mapped = Pointwise(sp.Lambda(Z, body), label, q.symbol)
        return mapped if f.elementwise else ColumnNormalize(mapped)

    def scale(self) -> sp.Expr:
        """What the sum of the loss's per-element terms is divided by, inverted."""
        count = self.net.outputs if self.net.loss.reduction == "mean" else 1
        return sp.Integer(1) / (count * (N if self.batch else 1))

    def loss_step(self, yhat: Quantity, target: Quantity):
        net = self.net
        loss = net.loss
        self.L = self.quantity("L", 0, 0, "L", "L", "loss", "loss")
        fn = sp.Lambda((YHAT, Y_SCALAR), loss.pointwise)
        terms = [self.scale() * ElementSum(fn, yhat.symbol, target.symbol)]
        over = {"mean": "every element", "batch": "the batch"}[loss.reduction]
        why = f"{loss.title}, averaged over {over}" if self.batch else f"{loss.title} of one sample"
        if loss.reduction == "mean" and net.outputs > 1:
            why = f"{loss.title}, averaged over " + ("every element" if self.batch else "the outputs")
        for weight, fn_w, coefficient, shown in ((net.l1, sp.Lambda(Z, sp.Abs(Z)), 1, "L1"),
                                                  (net.l2, sp.Lambda(Z, Z ** 2), sp.Rational(1, 2), "L2")):
            if weight:
                lam = sp.nsimplify(weight, rational=True) * coefficient
                terms.extend(lam * ElementSum(fn_w, W.symbol) for W, _ in self.params.values())
                why += f", plus the {shown} penalty on the weights"
        # unevaluated, so the data term is printed first and the penalties after it
        rhs = sp.Add(*terms, evaluate=False) if len(terms) > 1 else terms[0]
        self.step(self.L, rhs, why, "loss", len(net.layers))

    def backward(self, a, z, target):
        net, L = self.net, len(self.net.layers)
        layers = net.layers
        d = self.letter("delta") if not self.batch else "Delta"
        dl = r"\Delta" if self.batch else r"\delta"
        delta, grad_a = {}, {}

        def named(l):
            return layers[l - 1].residual or (l < L and layers[l].residual)

        def adjoint_of_a(l, rhs, why):
            q = a[l] if l < L else a[L]
            key = f"dL_d{q.key}"
            grad_a[l] = self.quantity(key, *q.shape, rf"\frac{{\partial L}}{{\partial {q.latex}}}",
                                      f"dL/d{q.text}", f"gradient of the loss with respect to {q.text}", "adjoint", l)
            self.step(grad_a[l], rhs, why, "backward", l)

        def delta_q(l):
            delta[l] = self.quantity(f"{d}{l}", *z[l].shape, f"{dl}_{{{l}}}", f"{'Δ' if self.batch else 'δ'}{l}",
                                     f"dL/d{z[l].text}, the error of layer {l}", "adjoint", l)
            return delta[l]

        out = layers[-1].activation
        loss = net.loss
        if loss.fused_with:
            rhs = _scaled(self.scale(), sp.MatAdd(a[L].symbol, -target.symbol, evaluate=False))
            why = (f"{out.name} and {loss.name} differentiated together (their fused form): "
                   f"dL/d{ref(z[L])} is the output minus the target, divided as the loss is")
            self.step(delta_q(L), rhs, why, "backward", L)
        else:
            upstream = self.loss_gradient(a[L], target)
            why = f"derivative of the {loss.title} with respect to the output: the derivative of one element's term (see the definitions), divided as the loss is"
            if out.is_identity and not layers[-1].residual:
                self.step(delta_q(L), upstream, why + f"; the output activation is the identity, so this is also dL/d{ref(z[L])}",
                          "backward", L)
            else:
                adjoint_of_a(L, upstream, why)
                self.delta_step(L, grad_a[L].symbol, delta_q(L))
        for l in range(L, 0, -1):
            W, b = self.params[l]
            prev = a[l - 1]
            rhs = delta[l].symbol * prev.symbol.T
            why = f"chain rule through {ref(z[l])} = {ref(W)} {ref(prev)} + {ref(b)}: the error times the input, transposed"
            extras = []
            if net.l2:
                rhs = sp.MatAdd(rhs, sp.nsimplify(net.l2, rational=True) * W.symbol)
                extras.append("the L2 penalty adds l2 times the weights")
            if net.l1:
                sign = Pointwise(sp.Lambda(Z, sp.sign(Z)), r"\operatorname{sign}", W.symbol)
                rhs = sp.MatAdd(rhs, sp.nsimplify(net.l1, rational=True) * sign)
                extras.append("the L1 penalty adds l1 times the sign of the weights")
            if self.batch:
                why += ", which sums the samples' contributions"
            gW = self.quantity(f"dL_dW{l}", *W.shape, rf"\frac{{\partial L}}{{\partial W_{{{l}}}}}", f"dL/dW{l}",
                               f"gradient of the loss with respect to W{l}", "gradient", l)
            self.step(gW, rhs, "; ".join([why] + extras), "backward", l)
            gb = self.quantity(f"dL_db{l}", *b.shape, rf"\frac{{\partial L}}{{\partial b_{{{l}}}}}", f"dL/db{l}",
                               f"gradient of the loss with respect to b{l}", "gradient", l)
            if self.batch:
                self.step(gb, delta[l].symbol * sp.OneMatrix(N, 1),
                          "the bias reaches every column, so its gradient sums the error over the batch", "backward", l)
            else:
                self.step(gb, delta[l].symbol, f"d{ref(z[l])}/d{ref(b)} is the identity", "backward", l)
            if l == 1:
                break
            upstream = W.symbol.T * delta[l].symbol
            why = f"chain rule back through {ref(W)}: its transpose times the error of layer {l}"
            if layers[l - 1].residual:
                upstream = sp.MatAdd(upstream, grad_a[l].symbol)
                why += f", plus the gradient that reaches {ref(a[l - 1])} through the residual connection (both paths summed)"
            if named(l - 1):
                adjoint_of_a(l - 1, upstream, why)
                self.delta_step(l - 1, grad_a[l - 1].symbol, delta_q(l - 1))
            else:
                self.delta_step(l - 1, upstream, delta_q(l - 1), why)
        self.delta, self.grad_a = delta, grad_a

    def delta_step(self, l, upstream, target: Quantity, why: str = ""):
        layer = self.net.layers[l - 1]
        f, z = layer.activation, self.z[l]
        if not f.elementwise:
            self.step(target, *self.softmax_backward(l, upstream), "backward", l)
            return
        factors, reasons = [upstream], []
        if layer.dropout:
            mask = self.quantities[f"{self.letter('m')}{l}"]
            factors.append(mask.symbol)
            reasons.append(f"the dropout mask {ref(mask)} passes the gradient only where a unit was kept")
        if f.is_identity:
            reasons.append("the identity activation passes the gradient unchanged")
        else:
            factors.append(self.apply(f, z, prime=True))
            reasons.append(f"chain rule through {f.name}: element-wise product with its derivative at {ref(z)}")
        rhs = sp.HadamardProduct(*factors) if len(factors) > 1 else upstream
        self.step(target, rhs, "; ".join(([why] if why else []) + reasons), "backward", l)

    def softmax_backward(self, l, upstream):
        """(rhs, reason) of δ = (diag(ŷ) - ŷ ŷᵀ) g: softmax's Jacobian (symmetric) times g = dL/dŷ.

        Written without the C × C Jacobian: ŷ ⊙ (g - 1 ŷᵀ g) for one sample, and for a batch, where
        each column has its own ŷᵀ g, Ŷ ⊙ (G - 1 1ᵀ (Ŷ ⊙ G)) (``ColumnSums``).
        """
        yhat, grad, z = self.a[l], self.quantities[upstream.name], self.z[l]
        if self.batch:
            weighted = ColumnSums(sp.HadamardProduct(yhat.symbol, upstream))
            why = (f"every output of a sample depends on every entry of that sample's column of {ref(z)}, so each "
                   f"column ŷ of {ref(yhat)} follows the one-sample rule: its Jacobian diag(ŷ) minus ŷ times its "
                   f"transpose, applied to the column's gradient, gives each output's gradient minus the ŷ-weighted "
                   f"average of the column's gradients, times the output. The averages are the column sums of "
                   f"{ref(yhat)} times {ref(grad)} element-wise; the matrix of ones (1 times 1 transposed) copies "
                   f"each to every row of its column")
        else:
            weighted = sp.MatMul(sp.OneMatrix(yhat.shape[0], 1), yhat.symbol.T, upstream)
            why = (f"every output depends on every entry of {ref(z)}, so the Jacobian is diag({ref(yhat)}) minus "
                   f"{ref(yhat)} times its transpose; applied to {ref(grad)} it gives each output's gradient minus "
                   f"the {ref(yhat)}-weighted average of the gradients ({ref(yhat)} transposed times {ref(grad)}, "
                   f"copied down a column of ones), times the output")
        rhs = sp.HadamardProduct(yhat.symbol, sp.MatAdd(upstream, _scaled(-1, weighted)))
        return rhs, "chain rule through softmax, which couples the outputs of a column: " + why

    def loss_gradient(self, yhat: Quantity, target: Quantity):
        """dL/dyhat at the matrix level: a scalar times (yhat - y) where the derivative is that simple."""
        if _constant_ratio(self.net.loss.derivative, YHAT - Y_SCALAR):  # before simplify, which can take minutes
            ratio = sp.simplify(sp.factor(self.net.loss.derivative) / (YHAT - Y_SCALAR))
            if ratio.free_symbols.isdisjoint({YHAT, Y_SCALAR}) and ratio != 0:
                return _scaled(self.scale() * ratio, sp.MatAdd(yhat.symbol, -target.symbol, evaluate=False))
        fn = sp.Lambda((YHAT, Y_SCALAR), self.net.loss.derivative)
        return self.scale() * Pointwise(fn, "", yhat.symbol, target.symbol)


def _constant_ratio(a, b) -> bool:
    """Whether a / b (in yhat and y) takes one value at three points: a cheap test before simplify."""
    points = [{YHAT: sp.Rational(3, 10), Y_SCALAR: sp.Rational(-7, 10)}, {YHAT: sp.Rational(17, 10), Y_SCALAR: sp.Rational(1, 5)},
              {YHAT: sp.Rational(-1, 4), Y_SCALAR: sp.Rational(9, 8)}]
    values = [value_at(a / b, p) for p in points]
    return None not in values and all(abs(v - values[0]) < 1e-12 for v in values)


class Derivation:
    """Every gradient of a network, as two ordered lists of Steps (one sample, then a batch).

    ``steps`` is the batch form, the one the generated code implements; ``sample_steps`` the
    textbook per-sample form. ``gradients['W1']`` is the per-sample right-hand side of dL/dW1.
    """

    def __init__(self, network):
        self.network = network
        sample = _Sweep(network, "sample", 1)
        sample.run()
        batch = _Sweep(network, "batch", sample.number)
        batch.run()
        self.sample, self.batch = sample, batch
        self.sample_steps, self.steps = sample.steps, batch.steps

    def _gradients(self, sweep) -> dict:
        by_key = {s.target.key: s.rhs for s in sweep.steps}
        return {name: by_key[f"dL_d{name}"] for name in self.network.param_names}

    @property
    def gradients(self) -> dict:
        return self._gradients(self.sample)

    @property
    def batch_gradients(self) -> dict:
        return self._gradients(self.batch)

    def quantities(self, form: str = "sample") -> dict:
        return dict(self.sample.quantities if form == "sample" else self.batch.quantities)

    def all_steps(self) -> list:
        return self.sample_steps + self.steps

    def latex(self) -> str:
        from .documents import latex_document
        return latex_document(self)

    def markdown(self) -> str:
        from .documents import markdown_document
        return markdown_document(self)

    def text(self) -> str:
        from .documents import text_document
        return text_document(self)

    def _repr_markdown_(self) -> str:
        return self.markdown()


def derive(spec) -> Derivation:
    """Derive every gradient of ``spec``: a Network, a spec dict, a TOML path or an inline string."""
    from .spec import build
    return Derivation(build(spec))
