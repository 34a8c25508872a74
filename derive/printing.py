"""Printers of a derivation's steps: LaTeX and terminal text, and the documents built from them.

One printer class per notation dispatches on SymPy's classes (``_print_<Class>``), so the
LaTeX document, the Markdown and the terminal text all print the same Step objects.
"""
import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from .nodes import Broadcast, ElementSum, Pointwise
from .ops.activations import Z
from .ops.losses import Y, YHAT, clip, clip_form, oriented
from .ops.sequence import Stacked
from .sequence import at_step, stacked

SUPERSCRIPT_DIGITS = dict(zip("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


class _Named:
    """What both notations share: the derivation's names for its matrices and the order of sums."""

    def __init__(self, names: dict, settings=None):
        super().__init__(settings or {})
        self.names = names

    def _print_MatrixSymbol(self, expr):
        return self.names.get(expr.name, expr.name)

    def _as_ordered_terms(self, expr, order=None):
        return _ordered(expr, super()._as_ordered_terms(expr, order))

    def _print_MatAdd(self, expr):
        terms = _positive_first(expr.args)
        if any(isinstance(t.mat if isinstance(t, Broadcast) else t, Stacked) for t in terms):
            latex = isinstance(self, LatexPrinter)  # a sequence plus a table's rows: [x_t + P_tᵀ], step by step
            return stacked(" + ".join(at_step(self, t, latex, factor=False) for t in terms), latex)
        text = self._print(terms[0])
        for term in terms[1:]:
            printed = self._print(term)
            text += (" - " + printed[1:]) if printed.startswith("-") else (" + " + printed)
        return text

    def _print_Mul(self, expr):
        r"""``\frac{1}{N} \sum ...`` (``(1/N)·Σ ...``) rather than one fraction over the whole sum."""
        sums = [f for f in expr.args if isinstance(f, ElementSum)]
        if not sums:
            return super()._print_Mul(expr)
        factor = sp.Mul(*(f for f in expr.args if not isinstance(f, ElementSum)))
        # -(1/N) Σ y log ŷ, not (1/N) Σ -y log ŷ
        sign = "-" if len(sums) == 1 and _negative_sum(sums[0]) and factor.is_positive else ""
        text = " ".join(self._print_ElementSum(f, signed=not sign) for f in sums)
        return sign + (text if factor == 1 else self.scale_format.format(self._print(factor), text))

    def _print_Abs(self, expr):
        """``|ŷ - y|``, the order the loss writes, rather than SymPy's canonical ``|y - ŷ|``."""
        return self.abs_format.format(self._print(oriented(expr.args[0])))

    def _pointwise_formula(self, expr):
        """An unlabelled element-wise formula in the printer's names for its matrices; Huber's
        derivative as ``clip(ŷ - y, -δ, δ)`` (``clip_form``, the same formula)."""
        body = expr.fn.expr
        form = clip_form(body)
        if form is not None:
            k, u, d = form
            body = sp.Mul(k, clip(u, -d, d), evaluate=False) if k != 1 else clip(u, -d, d)
        return body.xreplace(self.placeholders(expr))

    def _matmul_parts(self, expr):
        """(coefficient, the matrix factors printed, sums and products in parentheses)."""
        coeff, factors = expr.as_coeff_matrices()
        grouped = (sp.MatAdd, sp.HadamardProduct)
        return coeff, " ".join(self._paren(f) if isinstance(f, grouped) or _loose(f) else self._print(f)
                               for f in factors)


def _negative_sum(expr) -> bool:
    """An ElementSum of a formula that starts with a minus (cross-entropy's -y log ŷ)."""
    return isinstance(expr, ElementSum) and expr.fn.expr.could_extract_minus_sign()


def _compound(expr) -> bool:
    """A sum or product, which needs parentheses where a formula uses it as one variable ((x - μ)²)."""
    return isinstance(expr, (sp.MatAdd, sp.MatMul, sp.HadamardProduct))


def _loose(expr) -> bool:
    """An unlabelled element-wise formula that prints as a sum or as cases: a factor needs parentheses."""
    return (isinstance(expr, Pointwise) and not expr.label and clip_form(expr.fn.expr) is None
            and (isinstance(expr.fn.expr, (sp.Add, sp.Piecewise)) or expr.fn.expr.could_extract_minus_sign()))


class MathLatex(_Named, LatexPrinter):
    """LaTeX with the derivation's own names for its matrices, ``\\odot`` and ``^\\top``."""
    scale_format = "{} {}"
    abs_format = r"\left|{{{}}}\right|"

    def __init__(self, names: dict):
        super().__init__(names, {"mul_symbol": None})

    def _print_Symbol(self, expr, style="plain"):
        return self.names.get(expr.name) or super()._print_Symbol(expr)

    def _print_Transpose(self, expr):
        return self._paren(expr.arg) + r"^{\top}"

    def _paren(self, expr):
        text = self._print(expr)
        if isinstance(expr, (sp.MatAdd, sp.MatMul, sp.HadamardProduct)) or _loose(expr) or (
                isinstance(expr, sp.MatrixExpr) and expr.could_extract_minus_sign()):
            return rf"\left({text}\right)"
        return text

    def _print_HadamardProduct(self, expr):
        return r" \odot ".join(self._paren(a) for a in expr.args)

    def _print_MatMul(self, expr):
        coeff, body = self._matmul_parts(expr)
        if coeff == 1:
            return body
        return ("-" if coeff == -1 else self._print(coeff) + " ") + body

    def _print_OneMatrix(self, expr):
        """``\\mathbf{1}_{N}`` (a column), ``\\mathbf{1}_{N}^{\\top}`` (a row), ``\\mathbf{1}_{3} \\mathbf{1}_{3}^{\\top}``."""
        rows, cols = (self._print(n) for n in expr.shape)
        if expr.shape[0] == 1:
            return rf"\mathbf{{1}}_{{{cols}}}^{{\top}}"
        return rf"\mathbf{{1}}_{{{rows}}}" + ("" if expr.shape[1] == 1 else rf" \mathbf{{1}}_{{{cols}}}^{{\top}}")

    def _print_Pointwise(self, expr):
        args = ", ".join(self._print(m) for m in expr.mats)
        if expr.label:
            return rf"{expr.label}\left({args}\right)"
        return self._print(self._pointwise_formula(expr))

    def placeholders(self, expr):
        return _placeholders(expr, self)

    def _print_ColumnNormalize(self, expr):
        return self._print(expr.mat)

    def _print_Broadcast(self, expr):
        return self._paren(expr.mat)

    def _print_FeatureMean(self, expr):
        return rf"\operatorname{{mean}}\left({self._print(expr.mat)}\right)"

    def _print_ChannelTotal(self, expr):
        return rf"\Sigma_{{c}}\left({self._print(expr.mat)}\right)"

    def _print_ChannelMean(self, expr):
        return rf"\operatorname{{mean}}_{{c}}\left({self._print(expr.mat)}\right)"

    def _print_ChannelRepeat(self, expr):
        return self._paren(expr.mat)

    def _print_DiagMatrix(self, expr):
        return rf"\operatorname{{diag}}\left({self._print(expr.args[0])}\right)"

    def _print_Float(self, expr):
        """``10^{-5}`` for a power of ten such as layer norm's eps, else SymPy's ``2.5 \\cdot 10^{-5}``."""
        mantissa, _, exponent = f"{float(expr):e}".partition("e")
        if float(mantissa) == 1:
            return f"10^{{{int(exponent)}}}"
        return super()._print_Float(expr)

    def _print_ElementSum(self, expr, signed=True):
        r"""``\sum_{i} ...``; ``signed``: a formula's leading minus goes in front (else the caller's)."""
        negated = _negative_sum(expr)
        inner = (-expr.fn.expr if negated else expr.fn.expr).xreplace(
            _placeholders(expr, self, "_{%s}" % _element_index(expr.mats[0])))
        body = self._print(inner)
        if isinstance(inner, sp.Add):
            body = rf"\left({body}\right)"
        return ("-" if negated and signed else "") + r"\sum_{%s} " % ",".join(_element_index(expr.mats[0])) + body


def _placeholders(expr, printer, suffix=""):
    """Symbols standing for the node's matrices, named as the printer names those matrices."""
    out = {}
    for var, mat in zip(expr.fn.variables, expr.mats):
        name = printer._print(mat)
        if suffix:
            name = rf"\left({name}\right){suffix}" if "_" in name or not isinstance(mat, sp.MatrixSymbol) else name + suffix
        elif _compound(mat):
            name = printer._paren(mat)
        out[var] = sp.Symbol(name)
    return out


class MathText(_Named, StrPrinter):
    """Terminal text: ``δ2 = (W3ᵀ δ3) ⊙ relu'(z2)``, as the checker's messages print it."""
    scale_format = "({})·{}"
    abs_format = "|{}|"

    def _print_Symbol(self, expr):
        return self.names.get(expr.name) or expr.name

    def _print_Piecewise(self, expr):
        cases = [f"{self._print(e)} if {self._print(c)}" for e, c in expr.args[:-1]]
        return " else ".join(cases + [self._print(expr.args[-1][0])])

    def _paren(self, expr):
        text = self._print(expr)
        return f"({text})" if isinstance(expr, (sp.MatAdd, sp.MatMul, sp.HadamardProduct)) or _loose(expr) else text

    def _print_Transpose(self, expr):
        return self._paren(expr.arg) + "ᵀ"

    def _print_HadamardProduct(self, expr):
        return " ⊙ ".join(self._paren(a) for a in expr.args)

    def _print_MatMul(self, expr):
        coeff, body = self._matmul_parts(expr)
        if coeff == 1:
            return body
        if coeff == -1:
            return "-" + body
        return f"{self._print(coeff)}·{body}" if coeff.is_Rational else f"({self._print(coeff)})·{body}"

    def _print_OneMatrix(self, expr):
        if expr.shape[0] == 1:
            return "1ᵀ"
        return "1" if expr.shape[1] == 1 else "1 1ᵀ"

    def _print_Pointwise(self, expr):
        args = ", ".join(self._print(m) for m in expr.mats)
        if expr.label:
            return f"{_plain_label(expr.label)}({args})"
        return self._print(self._pointwise_formula(expr))

    def placeholders(self, expr):
        return {v: sp.Symbol(self._paren(m) if _compound(m) else self._print(m)) for v, m in zip(expr.fn.variables, expr.mats)}

    def _print_ColumnNormalize(self, expr):
        return self._print(expr.mat)

    def _print_Broadcast(self, expr):
        return self._paren(expr.mat)

    def _print_FeatureMean(self, expr):
        return f"mean({self._print(expr.mat)})"

    def _print_ChannelTotal(self, expr):
        return f"Σ_c({self._print(expr.mat)})"

    def _print_ChannelMean(self, expr):
        return f"mean_c({self._print(expr.mat)})"

    def _print_ChannelRepeat(self, expr):
        return self._paren(expr.mat)

    def _print_DiagMatrix(self, expr):
        return f"diag({self._print(expr.args[0])})"

    def _print_Float(self, expr):
        return f"{float(expr):g}"

    def _print_ElementSum(self, expr, signed=True):
        index = {"i": "ᵢ", "ij": "ᵢⱼ"}[_element_index(expr.mats[0])]
        negated = _negative_sum(expr)
        inner = (-expr.fn.expr if negated else expr.fn.expr).xreplace(
            {v: sp.Symbol(self._print(m) + index) for v, m in zip(expr.fn.variables, expr.mats)})
        body = self._print(inner)
        return ("-" if negated and signed else "") + (
            f"Σ{index} ({body})" if isinstance(inner, (sp.Add, sp.Piecewise)) else f"Σ{index} {body}")


class NotesText(MathText):
    """The text notes' math: ``2 (ŷ - y)``, ``tanh(z)²``, ``z ≤ 0``, ``Δ2 1_N``; no Python ``*``, ``**``
    or ``<=`` among the Unicode, and a row of ones that cannot read as a subscript."""
    scale_format = "({}) {}"

    def _print_MatMul(self, expr):
        """``2 (ŷ - y)``, ``(1/N) (Ŷ - Y)``: a number before a matrix, bracketed unless whole."""
        coeff, body = self._matmul_parts(expr)
        if coeff in (1, -1):
            return ("-" if coeff == -1 else "") + body
        return f"{self._print(coeff)} {body}" if coeff.is_Integer or coeff.is_Symbol else f"({self._print(coeff)}) {body}"

    def _print_Mul(self, expr):
        """Factors side by side (``2 (ŷ - y)``, ``z tanh(z)``), never Python's ``*``."""
        return super()._print_Mul(expr).replace("*", " ")

    def _print_Pow(self, expr, rational=False):
        """``tanh(z)²``, ``1/(|z| + 1)²``; other powers as ``x^(1/3)``, never Python's ``**``."""
        if expr.exp.is_Integer and expr.exp > 1:
            base = self.parenthesize(expr.base, sp.printing.precedence.precedence(expr), strict=False)
            return base + "".join(SUPERSCRIPT_DIGITS[c] for c in str(expr.exp))
        if expr.exp.is_Integer and expr.exp < -1:
            return "1/" + self._print_Pow(sp.Pow(expr.base, -expr.exp))
        return super()._print_Pow(expr, rational).replace("**", "^")

    def _print_Relational(self, expr):
        ops = {"<=": "≤", ">=": "≥", "<": "<", ">": ">", "==": "=", "!=": "≠"}
        return f"{self._print(expr.lhs)} {ops[expr.rel_op]} {self._print(expr.rhs)}"

    def _print_Equality(self, expr):
        return self._print_Relational(expr)

    def _print_OneMatrix(self, expr):
        """``1_N`` (a column of N ones), ``1_Nᵀ`` (a row), so ``Δ2 1_N`` cannot read as Δ₂₁."""
        rows, cols = (self._print(n) for n in expr.shape)
        if expr.shape[0] == 1:
            return f"1_{cols}ᵀ"
        return f"1_{rows}" + ("" if expr.shape[1] == 1 else f" 1_{cols}ᵀ")


def _positive_first(terms):
    """Print ``yhat - y`` rather than SymPy's canonical ``-y + yhat``."""
    return sorted(terms, key=lambda term: term.could_extract_minus_sign())


def _ordered(expr, terms):
    """A loss keeps the order it was built in (data term, then penalties); other sums go positive first."""
    return list(expr.args) if expr.has(ElementSum) else _positive_first(terms)


def _element_index(mat) -> str:
    return "i" if mat.shape[1] == 1 else "ij"


def _plain_label(label: str) -> str:
    """``\\operatorname{relu}'`` -> ``relu'``, ``\\sigma`` -> ``σ``."""
    greek = {r"\sigma": "σ", r"\tanh": "tanh"}
    for tex, plain in greek.items():
        label = label.replace(tex, plain)
    return label.replace(r"\operatorname{", "").replace("}", "").replace("{", "")


def scalar_latex(expr, names: dict) -> str:
    return MathLatex(names).doprint(expr)


def activation_definitions(activations, latex: bool):
    """For each distinct activation: (f(z) printed, f'(z) printed), both from SymPy."""
    rows = []
    for f in activations:
        if f.is_identity or not f.elementwise:
            continue
        fz = sp.Symbol(f"{f.latex}(z)" if latex else f"{_plain_label(f.latex)}(z)")
        dfz = sp.Symbol(f"{f.latex}'(z)" if latex else f"{_plain_label(f.latex)}'(z)")
        shown = f.derivative_display().subs(sp.Function(f.name)(Z), fz)
        printer = MathLatex({}).doprint if latex else NotesText({}).doprint
        definition = f.definition
        if printer(definition) == printer(sp.Function(f.name)(Z)) or printer(definition) == str(fz):
            definition = definition.rewrite(sp.exp)  # tanh(z) in exponentials, not "tanh(z) = tanh(z)"
        rows.append((f"{fz} = {printer(definition)}", f"{dfz} = {printer(shown)}"))
    return rows


def factored(expr):
    """``2 (ŷ - y)``: a number times a sum kept as a product (SymPy would distribute it)."""
    coeff, rest = sp.factor_terms(expr).as_coeff_Mul()
    if coeff not in (1, -1) and isinstance(rest, sp.Add):
        return sp.Mul(coeff, rest, evaluate=False)
    return expr


def loss_definition(loss, latex: bool):
    """(the per-element loss term, its derivative in yhat: the textbook form where it is proved
    equal to SymPy's), printed from SymPy."""
    yhat = sp.Symbol(r"\hat{y}" if latex else "ŷ")
    y = sp.Symbol("y")
    term = loss.pointwise.xreplace({YHAT: yhat, Y: y})
    deriv = factored(loss.derivative_display().xreplace({YHAT: yhat, Y: y}))
    printer = MathLatex({}).doprint if latex else NotesText({}).doprint
    return printer(term), printer(deriv)
