"""Binding: a parsed expression's names and operators to the derivation's SymPy quantities.

The names a person may write (per convention), the gradient ``--wrt`` names, and the SymPy value
of each parsed node, with the shape rules of the notation (a ones vector sized by its neighbour,
a bias broadcast over the batch, a matrix divided element by element).
"""
import re
from dataclasses import dataclass

import sympy as sp

from ..errors import ChainruleError, did_you_mean
from ..naming import GREEK
from ..nodes import FeatureMean, Pointwise, broadcast
from ..ops.activations import Z, make_activation
from ..printing import MathLatex, MathText
from ..steps import N
from .compare import describe_shape, is_matrix
from .parse import ACTIVATION_ALIASES, GENERIC_ACTIVATIONS, Node, parse

_YES, _NO = sp.symbols("yes no", real=True)  # np.where's branches, element by element
_INDICATOR = sp.Lambda(Z, sp.Piecewise((1, Z > 0), (0, True)))
_INDICATOR_GE = sp.Lambda(Z, sp.Piecewise((1, Z >= 0), (0, True)))
_TOP, _BOTTOM = sp.symbols("top bottom", real=True)
_DIVIDE = sp.Lambda((_TOP, _BOTTOM), _TOP / _BOTTOM)  # a / b of two matrices (a ⊘ b), element by element


class ShapeMismatch(Exception):
    """The person's expression combines matrices whose shapes do not fit."""


@dataclass
class _Target:
    expr: sp.Basic       # the gradient, in the convention's view of the derivation's symbols
    label: str
    rhs: sp.Basic        # what it equals, for printing
    flip: bool = False   # the convention writes it transposed (rows, rowgrad)
    unscaled: sp.Basic = None  # Ng's dZ, dA: what the derivation's gradient (1/m of his) equals


class Ones:
    """``\\mathbf{1}``: a ones vector whose length the matrix product beside it decides."""

    def __init__(self, row=False):
        self.row = row


def resized(spec, small) -> dict:
    """{a size of the spec's parameters: the same size in ``small``, the spec's network checked at smaller
    sizes}: what a size the notes print (\\mathbf{1}_{40}) is read as."""
    return {int(a): int(b) for q in small.sample.quantities.values() if q.role == "param"
            for a, b in zip(spec.sample.quantities[q.key].symbol.shape, q.symbol.shape)}


class Binder:
    """The names and binding of a Checker (its ``q``, ``net``, ``layers``, ``batch``, ``rows``, ``flags``)."""

    resized = {}  # {the spec's size: the checked network's} (``resized``), when the spec is checked at smaller sizes

    # -- names ----------------------------------------------------------------------------------
    def view(self, q):
        """The matrix a name stands for in this convention (rows: transposed, weights excepted)."""
        sym = q.symbol
        if self.flipped(q.key) and isinstance(sym, sp.MatrixSymbol):
            return sym.T
        return sym

    def flipped(self, key: str) -> bool:
        """True when the convention writes the derivation's quantity ``key`` transposed: every one but the
        weights in rows, every one in ng_rows (w stored (n_in, n_out)), the weights and the gradients in
        rowgrad (δ a row vector, w stored (n_in, n_out))."""
        return bool(self.transposed and re.fullmatch(self.transposed, key))

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
        self.acts = _activations(self.net.layers)
        for l in range(1, L + 1):
            kind = self.net.layers[l - 1].kind
            if kind != "dense":
                {"layernorm": self._layernorm_names, "activation": self._activation_names,
                 "residual": self._block_names, "attention": self._attention_names, "mean": self._mean_names,
                 "embedding": self._embedding_names, "positional": self._positional_names}[kind](l)
                continue
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
        if self.batch and self.net.layers[-1].kind == "dense":
            # cs231n's names for the output layer's pre-activation and its gradient
            self.table["scores"] = self.table[f"z{L}"]
            self.table["dscores"] = self.table[f"delta{L}"]
            self.shown.append("scores, dscores (cs231n: Z_L, its gradient)")
        for l in range(0, L + 1):
            a_key = self._a_key(l)
            named = self.q.get(f"dL_d{a_key}")
            if named is not None:
                grad = (self.view(named), named)
            elif l and self.net.layers[l - 1].kind == "dense" and (
                    a_key == self.q[f"{self.key('z')}{l}"].key or (l == L and self._output_plain())):
                grad = self.grads[f"z{l}"]
            elif l < L and self.net.layers[l].kind == "dense":
                # what no step names: the gradient of a layer's input, W^T δ of the layer above (plus the
                # skip connection's share when that layer is residual); for l = 0 this is dL/dx
                W, d = self.q[f"W{l + 1}"].symbol, self.q[f"{self.key('delta')}{l + 1}"].symbol
                rhs = W.T * d
                if self.net.layers[l].residual:
                    rhs = sp.MatAdd(rhs, self.q[f"dL_d{self._a_key(l + 1)}"].symbol)
                grad = (rhs.T if self.flipped("dL_dx") else rhs, None, rhs)
            elif l == L:
                # dL/dŷ of a loss fused with the output's activation (cross-entropy after softmax, bce after a
                # sigmoid), which no step names: the loss's own derivative
                rhs = self.sweep.loss_gradient(self.q[a_key], self.q[self.key("y")])
                grad = (rhs.T if self.flipped("dL_dx") else rhs, None, rhs)
            else:
                continue
            for base in (f"a{l}", f"h{l}") + (("yhat",) if l == L else ("x",) if l == 0 else ()):
                self.grads[base] = grad
        for l, layer in enumerate(self.net.layers, start=1):
            if layer.kind != "dense":
                continue
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
        self.preactivations = {f"z{l}": l for l in range(1, L + 1) if f"z{l}" in self.table}
        self.scaled = {}  # Ng's dZ, dA (and dX): the gradients his names hold, where they differ from ours
        if self.ng and self.net.loss.reduction in ("mean", "batch"):
            # they are the gradients of the summed loss, m times chainrule's (whose Δ holds the 1/m); Δ, δ
            # and dL/dZ keep their meaning
            for norm in [n for n in self.grads if re.fullmatch(r"[zah]\d+|x|yhat", n)]:
                self.scaled[norm] = sp.MatMul(N, self.grads[norm][0])
            self.shown.append("dZ^{[l]}, dA^{[l]} without the 1/m: dW^{[l]} = (1/m) dZ^{[l]} A^{[l-1]T}, "
                              "db^{[l]} = (1/m) Σ dZ^{[l]}")
        if self.convention == "goodfellow":
            # Algorithm 6.4 names the pre-activation a^(k) and the activation h^(k)
            for l in range(1, L + 1):
                if f"z{l}" in self.table:
                    self.table[f"a{l}"], self.grads[f"a{l}"] = self.table[f"z{l}"], self.grads[f"z{l}"]
                    self.preactivations[f"a{l}"] = l
            self.shown.append("a^{(k)} the pre-activation, h^{(k)} = f(a^{(k)}), g the gradient of the line before "
                              "(∇_{h^{(k)}} J before ∇_{a^{(k)}} J; ∇_{a^{(k)}} J before ∇_{W^{(k)}} J, ∇_{b^{(k)}} J, "
                              "∇_{h^{(k-1)}} J)")
        if self.convention == "ufldl":
            self._renumber()
        self._aliases()

    def _renumber(self):
        """UFLDL numbers the input as layer 1 (a^{(1)} = x): its z^{(l)}, a^{(l)}, δ^{(l)} are chainrule's
        z_{l-1}, a_{l-1}, δ_{l-1}, and its W^{(l)}, b^{(l)}, which leave layer l, are chainrule's W_l, b_l."""
        def shifted(names):
            out = {}
            for name, value in names.items():
                m = re.fullmatch(r"(z|a|h|delta)(\d+)", name)
                out[f"{m[1]}{int(m[2]) + 1}" if m else name] = value
            return out
        self.table, self.grads = shifted(self.table), shifted(self.grads)
        self.preactivations = {f"z{l + 1}": l for l in self.preactivations.values()}
        self.shown = [re.sub(r"(?<![A-Za-z])(z|h|a|\\delta|delta)_?(\d+)", lambda m: f"{m[1]}_{int(m[2]) + 1}", shown)
                      .replace("a_1 = h_1 = x", "a^{(1)} = x") for shown in self.shown]
        self.shown.append("UFLDL's layers: a^{(1)} = x, z^{(l+1)} = W^{(l)} a^{(l)} + b^{(l)}, δ^{(l)} = ∂J/∂z^{(l)}")

    def _aliases(self):
        """Names some notes use for what the table has: t for the target y (Bishop, Hjorth-Jensen), and in
        a network of one layer (logistic regression) W, b, z, a, δ without a layer number."""
        self.table.setdefault("t", self.table["y"])
        self.shown.append("t (the target, = y)")
        if self.layers == 1:
            for stem in ("w", "b", "z", "a", "h", "delta"):
                for names in (self.table, self.grads):
                    if f"{stem}1" in names:
                        names.setdefault(stem, names[f"{stem}1"])
            self.preactivations.setdefault("z", self.preactivations.get("z1"))
            self.shown.append("W, b, z, a without a layer number (the network's one layer)")

    def _layernorm_names(self, l: int):
        """μ_l, σ_l, x̂_l, γ_l, β_l and the layer's output a_l (h_l); dL/dγ_l, dL/dβ_l, dL/da_l."""
        q = self.q
        for name in ("mu", "sigma", "gamma", "beta"):
            if f"{name}{l}" in q:
                self.table[f"{name}{l}"] = self.view(q[f"{name}{l}"])
        xhat = q.get(f"{self.key('x')}hat{l}")
        if xhat is not None:
            self.table[f"xhat{l}"] = self.view(xhat)
        for name in ("gamma", "beta"):
            if f"dL_d{name}{l}" in q:
                self.grads[f"{name}{l}"] = (self.view(q[f"dL_d{name}{l}"]), q[f"dL_d{name}{l}"])
        a = q["Yhat" if self.batch else "yhat"] if l == self.layers else q[f"{self.key('a')}{l}"]
        self.table[f"a{l}"] = self.table[f"h{l}"] = self.view(a)
        self.shown += [rf"\mu_{l}", rf"\sigma_{l}", rf"\hat{{{self.key('x')}}}_{l}"] + (
            [rf"\gamma_{l}", rf"\beta_{l}"] if "gamma" + str(l) in self.table else []) + [
            f"{'H' if self.batch else 'h'}_{l} ({'A' if self.batch else 'a'}_{l}, layer norm's output)",
            r"\operatorname{mean}(...) (over each sample's features)"]

    def _activation_names(self, l: int):
        """An activation layer's output a_l (h_l); its f'(z) applies to the layer below's z (``acts``)."""
        a = self.q["Yhat" if self.batch else "yhat"] if l == self.layers else self.q[f"{self.key('a')}{l}"]
        self.table[f"a{l}"] = self.table[f"h{l}"] = self.view(a)
        self.shown.append(f"{'A' if self.batch else 'a'}_{l} (the activation layer's output)")

    def _block_names(self, l: int):
        """A residual block's quantities by their keys (W2_1, z2_1, delta2_1, mu2_2, ... for the block at
        layer 2: layer i inside it is 2_i, also written W_{2,1} or W21), its output a_l and their gradients."""
        inner = re.compile(rf"(?P<stem>[A-Za-z]+?)(?P<path>{l}(?:_\d+)+)")
        for q in self.q.values():
            gradient = q.key.startswith("dL_d")
            m = inner.fullmatch(q.key[4:] if gradient else q.key)
            if not m or not isinstance(q.symbol, sp.MatrixSymbol):
                continue
            stem = {"delta": "z"}.get(m["stem"].lower(), m["stem"].lower())
            for path in (m["path"], m["path"].replace("_", ","), m["path"].replace("_", ""), m["path"].replace("_", ".")):
                norm = stem + path
                if m["stem"].lower() == "delta":
                    self.table.setdefault("delta" + path, self.view(q))
                if gradient or m["stem"].lower() == "delta":
                    self.grads.setdefault(norm, (self.view(q), q))
                else:
                    self.table.setdefault(norm, self.view(q))
        for i, layer in enumerate(self.net.layers[l - 1].layers, 1):
            if layer.kind == "attention":
                self._attention_names(f"{l}_{i}")
        a = self.q["Yhat" if self.batch else "yhat"] if l == self.layers else self.q[f"{self.key('a')}{l}"]
        self.table[f"a{l}"] = self.table[f"h{l}"] = self.view(a)
        self.shown.append(f"the residual block {l}'s quantities as the notes name them (W_{{{l},1}}, z_{{{l},1}}, "
                          f"\\delta_{{{l},1}}, ...) and its output {'A' if self.batch else 'a'}_{l}")

    def _a_key(self, l: int) -> str:
        """The derivation's key of layer l's activation (the input for 0, the output for the last)."""
        if l == 0:
            return self.key("x")
        if l == self.layers:
            return "Yhat" if self.batch else "yhat"
        return (self.q.get(f"{self.key('a')}{l}") or self.q.get(f"{self.key('z')}{l}")
                or self.q[f"{'E' if self.batch else 'e'}{l}"]).key  # an embedding's e_l

    def _output_plain(self) -> bool:
        last = self.net.layers[-1]
        return getattr(last, "activation", None) is not None and last.activation.is_identity \
            and not getattr(last, "residual", False)

    def accepted(self) -> list:
        return list(self.shown)

    def unknown_name(self, node: Node) -> ChainruleError:
        return ChainruleError(f"unknown name '{node.text}'{did_you_mean(node.args[0], self.table)}; "
                              f"for this network use: {', '.join(self.shown)}")

    def _rows_form(self, rhs, transpose: bool):
        """A columns-form right-hand side written with the rows-form matrices (for printing)."""
        if not self.transposed:
            return rhs
        swap = {q.symbol: sp.MatrixSymbol(q.key, q.symbol.shape[1], q.symbol.shape[0]).T for q in self.q.values()
                if isinstance(q.symbol, sp.MatrixSymbol) and self.flipped(q.key)}
        out = rhs.xreplace(swap)
        return out.T if transpose else out

    # -- the target -----------------------------------------------------------------------------
    def target(self, wrt) -> _Target:
        """What ``wrt`` (text, or its parsed tree) is the gradient of."""
        node = parse(wrt) if isinstance(wrt, str) else wrt
        wrt = node.text
        ng = None
        if node.kind == "name" and re.fullmatch(r"delta\d+(?:[.,_]\d+)*", node.args[0]):  # δ_2, δ_{4.3}
            norm = "z" + node.args[0][5:]
        elif node.kind == "grad":
            norm = node.args[0]
        elif node.kind == "name":
            norm = self._gradient_name(node.args[0]) or node.args[0]
            ng = self._ng_name(node.args[0])
        else:
            raise ChainruleError(f"--wrt '{wrt}' must be one name, like W2, b1, delta1 or dL/dz1")
        norm = "x" if norm in ("a0", "h0") else norm
        if norm in ("scores", "dscores") and "scores" in self.table:  # cs231n's: the output layer's pre-activation
            norm = f"z{self.layers}"
        if norm not in self.grads:
            choices = [c.upper() if c[0] == "w" else c for c in sorted(self.grads)]
            raise ChainruleError(f"cannot check a gradient with respect to '{wrt}'{did_you_mean(norm, choices)}; "
                                 f"choose one of: {', '.join(choices)}")
        entry = self.grads[norm]
        greek = re.fullmatch(r"(gamma|beta)(\d+(?:[.,_]\d+)*)", norm)  # layer norm's γ_l and β_l (γ_{3.1} in a block)
        label = GREEK[greek[1]] + greek[2] if greek else {
            "w": "W", "b": "b", "z": "z", "a": "a", "h": "h", "y": "ŷ", "x": "x", "p": "P"}[norm[0]] + (
            norm[1:] if norm != "yhat" else "")
        if self.batch and norm[0] in "zahx" and not greek:
            label = label.upper()
        if norm[0] == "z":
            label = ("Δ" if self.batch else "δ") + norm[1:]
        else:
            label = f"dL/d{label}"
        if self.convention == "goodfellow":
            self.table.pop("g", None)
            upstream = self._upstream(norm)
            if upstream is not None:
                self.table["g"] = upstream
        rhs = entry[2] if entry[1] is None else next(s.rhs for s in self.sweep.steps if s.target.key == entry[1].key)
        if ng:
            name = "dZ" + norm[1:] if norm[0] == "z" else "dA" + norm[1:] if norm[0] in "ah" else (
                "dX" if norm == "x" else f"dA{self.layers}")
            return _Target(self.scaled[ng], name, sp.MatMul(N, rhs), self.flipped(entry[1].key if entry[1] else "dL_dx"),
                           rhs)
        return _Target(entry[0], label, rhs, self.flipped(entry[1].key if entry[1] else "dL_dx"))

    def _upstream(self, norm: str):
        """Goodfellow's g for a line that computes the gradient ``norm``: the gradient of the line before."""
        layer = re.fullmatch(r"[a-z]+(\d+)", norm)
        l = int(layer[1]) if layer else 0
        if norm[0] == "z" or norm[0] == "a" and f"z{l}" in self.table and self.table[f"a{l}"] is self.table[f"z{l}"]:
            above = self.grads.get("yhat" if l == self.layers else f"h{l}")
        elif norm == "x" or norm[0] == "h":
            above = self.grads.get(f"z{l + 1}")
        else:  # a parameter of layer l
            above = self.grads.get(f"z{l}")
        return above[0] if above else None

    def _ng_name(self, norm: str):
        """The gradient Ng's dZ1, dA1 or dX names (m times ours), or None."""
        base = norm[1:] if norm.startswith("d") and not norm.startswith("dld") and norm not in self.table else None
        return base if base in self.scaled else None

    def _gradient_name(self, norm: str):
        if norm.startswith("dld") and norm[3:] in self.grads:
            return norm[3:]
        if norm.startswith("d") and norm not in self.table and norm[1:] in self.grads:
            return norm[1:]
        if re.fullmatch(r"g[zahwbx]\w*", norm) and norm not in self.table and norm[1:] in self.grads:
            return norm[1:]  # gz^l, gh^l: the gradient of z^l, h^l (notes after Goodfellow's running g)
        return None

    def printed(self, target: _Target):
        """The correct right-hand side as (text, LaTeX)."""
        rhs, text_names, latex_names = target.rhs, {q.key: q.text for q in self.q.values()}, {
            q.key: q.latex for q in self.q.values()}
        if self.scaled:
            rhs = self._ng_form(target, text_names, latex_names)
        if self.convention == "ufldl":  # its layers count the input: chainrule's z1 is its z^{(2)}
            for q in self.q.values():
                if re.fullmatch(r"(z|a|h|delta)\d+", q.key):
                    layer = int(re.search(r"\d+$", q.key)[0]) + 1
                    text_names[q.key] = re.sub(r"\d+$", str(layer), q.text)
                    latex_names[q.key] = "{" + re.sub(r"_\{\d+\}$", f"^{{({layer})}}", q.latex) + "}"
        if self.transposed:
            rhs = _push_transposes(self._rows_form(rhs, target.flip))
        return MathText(text_names).doprint(rhs), MathLatex(latex_names).doprint(rhs)

    def _ng_form(self, target, text_names, latex_names):
        """The right-hand side as Ng writes it: in dZ^{[l]}, dA^{[l]}, which hold no 1/m (dZ^{[L]} = A^{[L]} − Y),
        and the 1/m in dW = (1/m) dZ A^T and db = (1/m) Σ dZ; ``text_names`` and ``latex_names`` get his names.
        A gradient is linear in the gradients it is computed from, so swapping each Δ for dZ/m moves the m."""
        swap = {}
        for norm in self.scaled:
            q = self.grads[norm][1]
            if q is None or q.symbol in swap:
                continue
            m = re.search(r"\d+$", norm)
            layer = m[0] if m else str(self.layers)
            name = "dZ" if norm[0] == "z" else "dX" if norm == "x" else "dA"
            rows, cols = q.symbol.shape
            own = sp.MatrixSymbol(f"ng_{q.key}", *((cols, rows) if self.flipped(q.key) else (rows, cols)))
            swap[q.symbol] = own.T if self.flipped(q.key) else own  # in ng_rows, the batch-first matrix
            text_names[own.name] = name if name == "dX" else name + layer
            latex_names[own.name] = name if name == "dX" else f"{{{name}^{{[{layer}]}}}}"
        yhat = self.q["Yhat"].key
        text_names[yhat], latex_names[yhat] = f"A{self.layers}", f"{{A^{{[{self.layers}]}}}}"
        text_names["N"] = latex_names["N"] = "m"
        scaled = target.unscaled is not None
        terms = target.unscaled.args if scaled and isinstance(target.unscaled, sp.MatAdd) else (
            target.rhs.args if isinstance(target.rhs, sp.MatAdd) else ((target.unscaled if scaled else target.rhs),))
        out = []
        for term in terms:
            ours = term.xreplace(swap)
            if ours != term:  # in terms of dZ, dA: m Δ = dZ
                out.append(ours if scaled else sp.MatMul(1 / N, ours))
            else:  # the output layer's own (Δ_L = (Ŷ − Y)/m), or a penalty's term
                out.append(_times_batch(term) if scaled else term)
        return out[0] if len(out) == 1 else sp.MatAdd(*out)

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
        if norm == "lambda":
            return self._penalty_weight(node)
        if norm in ("n", "m"):
            if not self.batch:
                raise ChainruleError(f"'{node.text}' is the batch size, which one sample does not have; "
                                     f"use --convention columns, rows or ng")
            return N
        if self._ng_name(norm):
            return self.scaled[self._ng_name(norm)]
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
        if isinstance(value, Ones):
            raise ChainruleError("a negated ones vector is not understood")
        return -value

    def _bind_add(self, node):
        return self._combine(node, subtract=False)

    def _bind_sub(self, node):
        return self._combine(node, subtract=True)

    def _combine(self, node, subtract: bool):
        a, b = (self.bind(x) for x in node.args[:2])
        if is_matrix(a) or is_matrix(b):
            a, b = self._broadcast(node, a, b)
        if isinstance(a, Ones) or isinstance(b, Ones):
            raise ChainruleError(f"a ones vector must be multiplied, not added, in '{node.text}'")
        if is_matrix(a):
            return sp.MatAdd(a, -b if subtract else b)
        return a - b if subtract else a + b

    def _broadcast(self, node, a, b, parts=None):
        """NumPy's broadcasting of two operands (scalars and 1-wide sides stretch); ``parts``: their nodes."""
        if isinstance(a, Ones) or isinstance(b, Ones):
            raise ChainruleError(f"a ones vector must be multiplied, not added, in '{node.text}'")
        if not is_matrix(a):
            return a * sp.OneMatrix(*b.shape), b
        if not is_matrix(b):
            return a, b * sp.OneMatrix(*a.shape)
        if a.shape == b.shape:
            return a, b
        rows = _stretch(a.shape[0], b.shape[0])
        cols = _stretch(a.shape[1], b.shape[1])
        if rows is None or cols is None:
            first, second = parts or node.args[:2]
            raise ShapeMismatch(f"'{first.text}' is {describe_shape(a)} and '{second.text}' is {describe_shape(b)}, "
                                f"which do not fit in '{node.text}'")
        return _expand(a, rows, cols), _expand(b, rows, cols)

    def _bind_mul(self, node):
        a, b = (self.bind(x) for x in node.args[:2])
        how = node.args[2]
        if not is_matrix(a) and not isinstance(a, Ones) or not is_matrix(b) and not isinstance(b, Ones):
            if isinstance(a, Ones) or isinstance(b, Ones):
                raise ChainruleError(f"cannot tell the length of the ones vector in '{node.text}'")
            return a * b
        if isinstance(b, Ones) and not b.row and is_matrix(a):
            return a * sp.OneMatrix(a.shape[1], 1)
        if isinstance(a, Ones) and a.row and is_matrix(b):
            return sp.OneMatrix(1, b.shape[0]) * b
        if isinstance(a, Ones) or isinstance(b, Ones):
            raise ChainruleError(f"cannot tell the length of the ones vector in '{node.text}'")
        if how == "star" and self.ng and a.shape[1] == b.shape[0] and N in a.shape + b.shape and (
                _stretch(a.shape[0], b.shape[0]) is None or _stretch(a.shape[1], b.shape[1]) is None):
            # the * of plain-text notes between matrices that only a matrix product fits (dZ * A^T, W^T * dZ):
            # with m the batch, the element-wise reading cannot fit
            return sp.MatMul(a, b)
        if how == "star" or self.ng and a.shape == b.shape and N in a.shape:
            # Ng's notes write the element-wise product of two n × m (m × n in rows) batch matrices side by side
            # (dZ = dA g'(Z)) or with \times; their matrix product cannot fit, as m is the batch
            a, b = self._broadcast(node, a, b)
            return sp.HadamardProduct(a, b)
        if a.shape[1] == b.shape[0]:
            return sp.MatMul(a, b)
        if a.shape == (1, 1) or b.shape == (1, 1):  # a 1×1 matrix is a scalar in textbook notation
            a, b = self._broadcast(node, a, b)
            return sp.HadamardProduct(a, b)
        raise ShapeMismatch(f"cannot multiply '{node.args[0].text}' ({describe_shape(a)}) by '{node.args[1].text}' "
                            f"({describe_shape(b)}): the inner sizes differ")

    def _bind_mean(self, node):
        """The mean over each sample's features, copied to every feature (as x - μ reads it)."""
        a = self.bind(node.args[0])
        if not is_matrix(a):
            return a
        features = a.T if self.rows else a
        mean = broadcast(FeatureMean(features), features.shape)
        return mean.T if self.rows else mean

    def _bind_had(self, node):
        a, b = (self.bind(x) for x in node.args[:2])
        if not is_matrix(a) or not is_matrix(b):
            if isinstance(a, Ones) or isinstance(b, Ones):
                raise ChainruleError(f"a ones vector cannot be in an element-wise product in '{node.text}'")
            return a * b
        if a.shape != b.shape and None not in (_stretch(a.shape[0], b.shape[0]), _stretch(a.shape[1], b.shape[1])):
            a, b = self._broadcast(node, a, b)  # one per sample or one per feature (layer norm's σ, γ), as NumPy
        if a.shape != b.shape:
            raise ShapeMismatch(f"the element-wise product in '{node.text}' needs equal shapes, but "
                                f"'{node.args[0].text}' is {describe_shape(a)} and '{node.args[1].text}' is {describe_shape(b)}")
        return sp.HadamardProduct(a, b)

    def _bind_div(self, node):
        a, b = (self.bind(x) for x in node.args)
        if isinstance(b, Ones) or isinstance(a, Ones):
            raise ChainruleError(f"a ones vector cannot be divided, nor divide, in '{node.text}'")
        if is_matrix(b):  # element-wise, as NumPy divides (y / yhat, y \oslash \hat y)
            a, b = self._broadcast(node, a, b)
            return Pointwise(_DIVIDE, "/", a, b)
        if b == 0:
            raise ChainruleError(f"'{node.text}' divides by zero")
        return a * (1 / b) if not is_matrix(a) else (1 / b) * a

    def _bind_T(self, node):
        a = self.bind(node.args[0])
        if isinstance(a, Ones):
            return Ones(not a.row)
        return sp.Transpose(a) if is_matrix(a) else a  # not a.T, whose simplification is slow

    def _bind_pow(self, node):
        a, k = self.bind(node.args[0]), node.args[1]
        if not is_matrix(a):
            return a ** k
        if k == 0:
            return sp.OneMatrix(*a.shape)
        return a if k == 1 else sp.HadamardProduct(*([a] * k))

    def _bind_ones(self, node):
        if len(node.args) > 1:  # \mathbf{1}_{10}: its length given, the spec's (read at the checked sizes)
            return sp.OneMatrix(self.resized.get(node.args[1], node.args[1]), 1)
        return Ones()

    def _bind_ind(self, node):
        arg = self.bind(node.args[0])
        if not is_matrix(arg):
            raise ChainruleError(f"the indicator in '{node.text}' must be applied to a matrix such as z_1")
        return Pointwise(_INDICATOR if node.args[1] == ">" else _INDICATOR_GE, r"\mathbb{1}", arg)

    def _bind_where(self, node):
        cond_node, op, yes_node, no_node = node.args
        cond = self.bind(cond_node)
        if not is_matrix(cond):
            raise ChainruleError(f"the condition in '{node.text}' must compare a matrix such as z_1 with 0")
        branches = []
        for branch in (yes_node, no_node):
            value = self.bind(branch)
            if isinstance(value, Ones):
                raise ChainruleError(f"a ones vector cannot be a branch of '{node.text}'")
            cond, value = self._broadcast(node, cond, value, (cond_node, branch))
            branches.append((value, branch))
        yes, no = (self._broadcast(node, cond, b, (cond_node, n))[1] for b, n in branches)  # cond may have widened
        test = Z > 0 if op == ">" else Z >= 0
        return Pointwise(sp.Lambda((Z, _YES, _NO), sp.Piecewise((_YES, test), (_NO, True))), "where", cond, yes, no)

    def _bind_clip(self, node):
        arg, low, high = (self.bind(x) for x in node.args)
        if not is_matrix(arg):
            raise ChainruleError(f"'{node.text}' must clip a matrix such as yhat - y")
        if low > high:
            raise ChainruleError(f"the lower bound of '{node.text}' is above the upper one")
        return Pointwise(sp.Lambda(Z, sp.Piecewise((low, Z < low), (high, Z > high), (Z, True))), "clip", arg)

    def _bind_sum(self, node):
        a, axis = self.bind(node.args[0]), node.args[1]
        if not is_matrix(a):
            return a
        if axis == "batch" or axis is None and self.ng:  # Ng's sum(dZ) is over the examples
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
        if not is_matrix(arg):
            raise ChainruleError(f"'{node.text}' must be applied to a matrix such as z_1")
        layer = self._layer_of(arg_node)
        if name == "diag":  # Nielsen's Σ'(z^l) (chapter 2, problem 1): diag(σ'(z^l)) of one sample
            act = self.acts.get(layer)
            if not prime or act is None or not act.elementwise or arg.shape[1] != 1:
                raise ChainruleError(f"'{node.text}' is Nielsen's Σ'(z), the diagonal matrix of one sample's σ'(z); "
                                     f"write it Σ'(z_l) of a layer's z_l in the sample convention")
            return sp.DiagMatrix(Pointwise(sp.Lambda(Z, act.derivative), act.latex + "'", arg))
        if name == "sign":
            if prime:
                raise ChainruleError(f"'{node.text}': sign' is not understood")
            return Pointwise(sp.Lambda(Z, sp.sign(Z)), r"\operatorname{sign}", arg)
        if name in GENERIC_ACTIVATIONS:
            if layer is None:
                raise ChainruleError(f"{name} in '{node.text}' stands for a layer's activation, so apply it to "
                                     f"that layer's pre-activation, like {name}'(z_1)")
            act = self.acts.get(layer)
            if act is None:
                raise ChainruleError(f"{name} in '{node.text}' stands for a layer's activation, but layer {layer} is a "
                                     f"layer norm, which has none")
        elif name not in ACTIVATION_ALIASES:
            custom = {act.name.lower().replace("_", ""): act for act in self.acts.values()}
            if name not in custom:
                raise ChainruleError(f"unknown activation '{name}' in '{node.text}'; use sigma, tanh, relu, ..., "
                                     f"f for the layer's own, or one of this network's: {', '.join(sorted(custom))}")
            act = custom[name]
            own = self.acts.get(layer)
            if own is not None and own is not act and prime:
                self._flag_wrong_derivative(node, layer, own, act)
        else:
            kind = ACTIVATION_ALIASES[name]
            own = self.acts.get(layer)
            if own is not None and own.name == kind:
                act = own
            else:
                act = make_activation(kind, "check")
                if own is not None and prime:
                    self._flag_wrong_derivative(node, layer, own, act)
        if not act.elementwise:
            if layer == self.layers and act is getattr(self.net.layers[-1], "activation", None):
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

    def _penalty_weight(self, node):
        """λ of J = L + λΩ(θ): the spec's l2 (Ω = ½‖W‖²) or l1 (Ω = ‖W‖₁), whichever it has."""
        weights = [w for w in (self.net.l2, self.net.l1) if w]
        if len(weights) != 1:
            raise ChainruleError(f"'{node.text}' is the weight of the penalty λΩ(θ), but this network has "
                                 f"{'no penalty; add l2=... (or l1=...) to the spec' if not weights else 'both l1 and l2'}")
        return sp.nsimplify(weights[0])

    def _bind_pgrad(self, node):
        """∇_θ Ω(θ) of Goodfellow's weight decay: W for Ω = ½‖W‖² (l2), sign(W) for ‖W‖₁ (l1), 0 for a bias."""
        inner = node.args[0]
        value = self.bind(inner)
        if inner.kind != "name" or not re.fullmatch(r"[wb]\d+", inner.args[0]):
            raise ChainruleError(f"'{node.text}': the penalty Ω(θ) has a gradient by a weight or a bias only")
        self._penalty_weight(node)
        if inner.args[0][0] == "b":  # weight decay leaves the biases alone
            return sp.ZeroMatrix(*value.shape)
        return value if self.net.l2 else Pointwise(sp.Lambda(Z, sp.sign(Z)), r"\operatorname{sign}", value)

    def _flag_wrong_derivative(self, node, layer, own, act):
        if not own.elementwise:  # σ'(z_L) for a softmax output: softmax read as element-wise
            self.flags.append(self.softmax_message(node.text))
            return
        self.flags.append(f"wrong activation derivative: layer {layer} uses {own.name}, so "
                          f"'{node.text}' should be {own.name}'(z_{layer}), not {act.name}'")

    def _layer_of(self, node):
        """The layer whose pre-activation ``node`` names (z_l; a^(k) in Goodfellow's convention), else None."""
        return self.preactivations.get(node.args[0]) if node.kind == "name" else None


def _push_transposes(expr):
    """``expr`` with transposes moved down to the symbols, for printing: each transposed node's own
    ``_eval_transpose`` (SymPy's, and the derivation's nodes')."""
    if isinstance(expr, sp.Transpose):
        inner = expr.arg._eval_transpose()
        return inner if isinstance(inner, sp.Transpose) else _push_transposes(inner)
    if isinstance(expr, sp.MatrixExpr) and not isinstance(expr, sp.MatrixSymbol) and expr.args:
        return expr.func(*(_push_transposes(a) for a in expr.args))
    return expr


def _times_batch(expr):
    """m · ``expr``, with m cancelled into its scalar factor (m · (1/m)(Ŷ − Y) is Ŷ − Y)."""
    coeff, rest = (expr.args[0], expr.args[1:]) if isinstance(expr, sp.MatMul) and not is_matrix(expr.args[0]) \
        else (sp.Integer(1), (expr,))
    factor = sp.simplify(coeff * N)
    body = rest[0] if len(rest) == 1 else sp.MatMul(*rest)
    return body if factor == 1 else sp.MatMul(factor, body)


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


def _activations(layers) -> dict:
    """{l: the activation applied to z_l}: a dense layer's own, or that of the activation layer after an
    identity dense layer."""
    acts = {}
    for l, layer in enumerate(layers, start=1):
        if layer.kind == "dense":
            acts[l] = layer.activation
        elif layer.kind == "activation" and l - 1 in acts and acts[l - 1].is_identity:
            acts[l - 1] = layer.activation
    return acts
