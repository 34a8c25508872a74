"""The course's notation: the same Steps printed in Nielsen's, deeplearning.ai's, Goodfellow's or
cs231n's symbols, scaling and layout.

A notation is one ``Notation`` record in ``TABLE``: the letter of each kind of quantity (the kinds
``derive.naming`` gives every ``Names``), how a layer index is written, how a gradient reads, the
batch size's letter, where the mean's 1/N lives and whether samples are columns or rows. A ``View``
of one form of a derivation is what the notes print: its quantities and Steps (the derivation's own,
or rewritten from them with no second derivation: deeplearning.ai's ``dZ`` moves the 1/N into the
parameter gradients, cs231n's rows transpose every batch value) and the names its printers use.
"""
import re
from dataclasses import dataclass, field, replace

import sympy as sp
from sympy.matrices.expressions import MatrixExpr

from .errors import ChainruleError, shown
from .nodes import BatchMean, Broadcast, ColumnNormalize, ColumnSums, ElementSum, FeatureMean, Pointwise
from .printing import MathLatex, NotesText
from .steps import N, formula, symbol

#: Names a reason or a meaning may use besides the quantities': ∂ and the batch form's row of ones.
EXTRA_NAMES = {True: {"partial": r"\partial ", "ones_row": r"\mathbf{1}_{N}^{\top}"},
               False: {"partial": "∂", "ones_row": "1_Nᵀ"}}

FORM_TITLES = {
    "sample": "One sample (column vectors)",
    "batch": "A batch of N samples (the columns of X)",
}

#: ``--form``: which of the two forms the notes print.
FORMS = ("sample", "batch", "both")

_SUPERSCRIPTS = dict(zip("0123456789()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁽⁾"))


def text_name(q) -> str:
    """A quantity's name in chainrule's text notes: ``∂L/∂W1`` as the equations write it (the
    checker's messages keep the typed ``dL/dW1``)."""
    return "∂L/∂" + q.text[4:] if q.text.startswith("dL/d") else q.text


def _superscript(text: str) -> str:
    """``²``, ``⁽²⁾``; a layer in a block (``3.1``), which has no superscript dot, as ``^(3.1)``."""
    return "".join(_SUPERSCRIPTS[c] for c in text) if all(c in _SUPERSCRIPTS for c in text) else f"^({text})"


@dataclass(frozen=True)
class Notation:
    """One course's way of writing backprop.

    ``letters``: kind -> (LaTeX, text) letter (a kind not listed keeps chainrule's letter);
    ``index``: (LaTeX, text) formats of a letter ``s`` with its layer ``l``; ``gradient``: (LaTeX,
    text) formats of the gradient of ``q`` (a name) of the cost ``J``; ``delta_as_gradient``: the
    error δ is written as the gradient of its pre-activation (``dZ``, ``∇_a J``); ``last``: kind ->
    (LaTeX, text) name in the last layer (cs231n's scores); ``output_layer``: the output is written as
    the last layer's activation (``a^L``); ``batch``: the batch size's letter; ``mean``: 'delta' (the
    mean's 1/N is in the output's error, chainrule's) or 'parameters' (in the parameter gradients
    only, deeplearning.ai's); ``rows``: samples are rows (batch-first); ``activation``: (LaTeX, text)
    formats of layer ``l``'s activation (``g^{[l]}``) or None (its name); ``adjoint_lhs``: (LaTeX,
    text) written before an error's or an adjoint's name (Goodfellow's ``g ←``); ``titles``: form ->
    its heading; ``phrases``: (chainrule's words, this notation's) in reasons and meanings; ``estimate``:
    the LaTeX letter of a parameter's gradient on a batch in the Training section's update rules
    (Goodfellow's ĝ of his algorithm 8.1, since his g is the gradient a backward step propagates;
    deeplearning.ai's dθ, as his dW, since his g is an activation);
    ``moments``: (letter, this notation's) for an update rule's letter that would clash with one of its
    own (deeplearning.ai's m is the batch size: Adam's moments m and v are his V and S); ``about``: the two sentences of the notes' opening (which notation, what it means),
    ``{g}`` there the list of the activations ``g^{[l]}``; ``check``: the ``chainrule check
    --convention`` that reads what it prints, per form.
    """
    name: str
    forms: tuple
    check: dict
    about: str = ""
    letters: dict = field(default_factory=dict)
    index: tuple = ("{s}_{{{l}}}", "{s}{l}")
    gradient: tuple = (r"\frac{{\partial {J}}}{{\partial {q}}}", "∂{J}/∂{q}")
    delta_as_gradient: bool = False
    last: dict = field(default_factory=dict)
    output_layer: bool = False
    batch: str = "N"
    mean: str = "delta"
    rows: bool = False
    activation: tuple = None
    adjoint_lhs: tuple = ("", "")
    titles: dict = field(default_factory=dict)
    phrases: tuple = ()
    estimate: str = "g"
    moments: tuple = ()

    def forms_of(self, form: str) -> tuple:
        """The forms the notes print for ``--form form`` ('both': every form this notation writes)."""
        if form not in FORMS:
            raise ChainruleError(f"the form must be one of {', '.join(FORMS)}, not {shown(form)}")
        if form == "both":
            return self.forms
        if form not in self.forms:
            raise ChainruleError(f"the {self.name} notation writes the {' and the '.join(self.forms)} form, not the "
                                 f"{form} form; give --form {self.forms[0]} or leave --form out")
        return (form,)

    def view(self, derivation, form: str) -> "View":
        return View(self, derivation, form)

    def views(self, derivation, form: str) -> dict:
        """{form: its View} for ``--form form``; a ChainruleError when the network has none of them
        (batch norm's has no per-sample form)."""
        views = {f: self.view(derivation, f) for f in self.forms_of(form)}
        if all(v.sweep is None for v in views.values()):
            raise ChainruleError(f"the {self.name} notation writes one sample, and this network (batch norm) has only "
                                 "the batch form; give --notation chainrule, ng or cs231n")
        return views


TABLE = (
    Notation("chainrule", ("sample", "batch"), {"sample": "sample", "batch": "columns"}),
    Notation("nielsen", ("sample",), {"sample": "sample"},
             about=("The notation is Nielsen's (Neural Networks and Deep Learning, chapter 2): layer l's weights, "
                    "bias, weighted input and activation are $w^l$, $b^l$, $z^l$, $a^l$ with the layer as a "
                    "superscript, the output is $a^L$ and the cost of one example is $C$. "
                    "The error of layer l is $\\delta^l = \\partial C/\\partial z^l$ and $\\nabla_a C$ is the "
                    "gradient of the cost with respect to the output."),
             letters={"w": ("w", "w"), "yhat": ("a", "a"), "loss": ("C", "C")}, index=("{s}^{{{l}}}", "{s}{sup}"),
             gradient=(r"\frac{{\partial {J}}}{{\partial {q}}}", "∂{J}/∂{q}"), output_layer=True,
             last={"gradient-yhat": (r"\nabla_{a} C", "∇ₐC")},
             titles={"sample": "One training example (column vectors)"}),
    Notation("ng", ("batch",), {"batch": "ng"},
             about=("The notation is deeplearning.ai's (Andrew Ng): layer l's quantities carry [l] as a superscript, "
                    "the m examples of a batch are the columns of $X$, $A^{[L]}$ is the output and $J$ the cost. "
                    "$dZ^{[l]}$ stands for m times $\\partial J/\\partial Z^{[l]}$ (and $dA^{[l]}$ likewise), so the "
                    "mean's 1/m appears only in $dW^{[l]}$ and $db^{[l]}$; {g}."),
             letters={"x": ("X", "X"), "y": ("Y", "Y"), "z": ("Z", "Z"), "a": ("A", "A"), "yhat": ("A", "A"),
                      "loss": ("J", "J")},
             index=("{s}^{{[{l}]}}", "{s}[{l}]"), gradient=("d{q}", "d{q}"), delta_as_gradient=True,
             output_layer=True, batch="m", mean="parameters", activation=("g^{{[{l}]{prime}}}", "g[{l}]{prime}"),
             moments=(("m", "V"), ("v", "S")), estimate=r"d\theta",
             titles={"batch": "A batch of m examples (the columns of X)"}),
    Notation("goodfellow", ("sample",), {"sample": "goodfellow"},
             about=("The notation is Goodfellow, Bengio and Courville's (Deep Learning, algorithms 6.3 and 6.4): layer "
                    "k computes the pre-activation $a^{(k)} = b^{(k)} + W^{(k)} h^{(k-1)}$ and its output $h^{(k)}$, "
                    "and $J$ is the cost. Each backward step $g \\leftarrow \\nabla_{a^{(k)}} J = \\dots$ sets the "
                    "gradient g that the next step propagates, as algorithm 6.4 does."),
             letters={"z": ("a", "a"), "a": ("h", "h"), "loss": ("J", "J")},
             index=("{s}^{{({l})}}", "{s}{paren}"),
             gradient=(r"\nabla_{{{q}}} {J}\,", "∇_{q} {J}"),  # \, : J h^{(1)\top}, not Jh
             delta_as_gradient=True, adjoint_lhs=(r"g \leftarrow ", "g ← "), estimate=r"\hat{g}",
             titles={"sample": "One example (column vectors)"}),
    Notation("cs231n", ("batch",), {"batch": "rows"},
             about=("The notation is cs231n's (Stanford): a batch is batch-first, its N examples the rows of $X$, "
                    "each layer computes $X W^{\\top} + b$ with PyTorch's weight layout (out $\\times$ in), the last "
                    "layer's are the scores and $dQ$ is the gradient of the loss $L$ with respect to $Q$. "
                    "A bias is a row, added to every row of its layer ($\\mathbf{1}_N b$), and its gradient sums the rows "
                    "of the error ($\\mathbf{1}_N^{\\top} dZ$, np.sum(dZ, axis=0))."),
             letters={"a": ("H", "H")}, gradient=("d{q}", "d{q}"), delta_as_gradient=True,
             last={"z": (r"\mathrm{scores}", "scores"), "delta": (r"\mathrm{dscores}", "dscores")}, rows=True,
             titles={"batch": "A batch of N examples (the rows of X)"},
             phrases=(("added to every column (a row of ⟦N⟧ ones)", "added to every row (a column of ⟦N⟧ ones)"),
                      ("the error times the input, transposed", "the error, transposed, times the input"),
                      ("the bias reaches every column", "the bias reaches every row"),
                      ("(times a column of ⟦N⟧ ones)", "(a row of ⟦N⟧ ones times it)"),
                      ("one sample per column", "one sample per row"),
                      ("over each column", "over each row"),
                      ("each column (sample)", "each row (sample)"),
                      (re.compile(r"its transpose times the error of layer (\S+)"), r"the error of layer \1 times it"),
                      # a restated affine layer, batch-first
                      (re.compile(r"⟨⟦(\w+)⟧ = ⟦(\w+)⟧ ⟦(\w+)⟧ \+ ⟦(\w+)⟧ ⟦ones_row⟧⟩"),
                       r"⟨⟦\1⟧ = ⟦\3⟧ ⟦\2⟧⟦top⟧ + ⟦ones⟧ ⟦\4⟧⟩"))),
)
NOTATIONS = {n.name: n for n in TABLE}


def notation(name) -> Notation:
    """The notation called ``name`` (a Notation passes through)."""
    if isinstance(name, Notation):
        return name
    if name not in NOTATIONS:
        raise ChainruleError(f"the notation must be one of {', '.join(NOTATIONS)}, not {shown(name)}")
    return NOTATIONS[name]


class View:
    """One form of a derivation as a notation prints it: ``quantities`` and ``steps`` (the sweep's
    own for chainrule, else rewritten from them), ``names(latex)`` and ``printer(latex)``."""

    def __init__(self, notation: Notation, derivation, form: str):
        self.notation, self.form = notation, form
        self.sweep = derivation.sample if form == "sample" else derivation.batch
        self.last = len(derivation.network.layers)
        self.title = notation.titles.get(form, FORM_TITLES[form])
        self.default = notation.name == "chainrule"
        if self.sweep is None:  # batch norm's per-sample form: none
            self.quantities, self.steps = {}, []
            return
        if self.default:
            self.quantities, self.steps = dict(self.sweep.quantities), list(self.sweep.steps)
            return
        steps = [replace(s, reason=self._own(s.reason)) for s in self.sweep.steps]
        quantities = {k: replace(q, meaning=self._own(q.meaning)) for k, q in self.sweep.quantities.items()}
        if notation.mean == "parameters" and form == "batch":
            quantities, steps = _mean_in_parameters(quantities, steps, self.sweep.names)
        if notation.rows and form == "batch":
            quantities, steps = _batch_first(quantities, steps, self.sweep.names)
        self.quantities, self.steps = quantities, [replace(s, target=quantities[s.target.key]) for s in steps]

    def names(self, latex: bool) -> dict:
        """key -> printed name, for the printers and for the reasons' ``ref`` placeholders."""
        if self.default:
            return {**{q.key: (q.latex if latex else text_name(q)) for q in self.quantities.values()},
                    **EXTRA_NAMES[latex]}
        batch = self.notation.batch
        names = {key: self._name(self.sweep.names[key], latex) for key in self.quantities}
        extra = {"partial": r"\partial " if latex else "∂", "N": batch, "top": r"^{\top}" if latex else "ᵀ",
                 "ones_row": rf"\mathbf{{1}}_{{{batch}}}^{{\top}}" if latex else f"1_{batch}ᵀ",
                 "ones": rf"\mathbf{{1}}_{{{batch}}}" if latex else f"1_{batch}"}
        return {**names, **extra}

    def printer(self, latex: bool):
        names = self.names(latex)
        if self.default:
            return MathLatex(names) if latex else NotesText(names)
        printer = (_Latex if latex else _Text)(names)
        n = self.notation
        printer.activation = n.activation and n.activation[0 if latex else 1]
        printer.layers = {key: names_.layer for key, names_ in self.sweep.names.items() if names_.kind == "z"}
        return printer

    def lhs(self, step, printer, latex: bool) -> str:
        """The left-hand side: the target's name, after ``adjoint_lhs`` for an error or an adjoint."""
        prefix = self.notation.adjoint_lhs[0 if latex else 1] if step.target.role == "adjoint" else ""
        return prefix + printer.doprint(step.target.symbol)

    def about(self, network, latex: bool) -> str:
        """The notes' opening sentences on the notation ('' for chainrule's own)."""
        text = self.notation.about
        if "{g}" in text:
            acts = [(l, layer.activation) for l, layer in enumerate(network.layers, start=1)
                    if getattr(layer, "activation", None) is not None and not layer.activation.is_identity]
            listed = ", ".join(f"$g^{{[{l}]}}$ = {f.name}" for l, f in acts)
            text = text.replace("{g}", "$g^{[l]}$ is layer l's activation" + (f" ({listed})" if listed else ""))
        return text if latex else _plain(text)

    def _name(self, n, latex: bool) -> str:
        i, nt = (0 if latex else 1), self.notation
        if n.kind == "gradient":
            special = nt.last.get(f"gradient-{n.of.kind}")
            if special:
                return special[i]
            return nt.gradient[i].format(q=self._name(n.of, latex), J=self._letter("loss", LOSS_DEFAULT, i))
        if n.kind == "delta" and nt.delta_as_gradient and not (n.layer == self.last and "delta" in nt.last):
            return nt.gradient[i].format(q=self._name(n.of, latex), J=self._letter("loss", LOSS_DEFAULT, i))
        layer = self.last if n.kind == "yhat" and nt.output_layer else n.layer
        if layer == self.last and n.kind in nt.last:
            return nt.last[n.kind][i]
        if layer is None:
            return self._letter(n.kind, (n.latex, n.text), i)
        own = (n.latex[:-len(f"_{{{n.layer}}}")], n.text[:-len(str(n.layer))]) if n.layer is not None else (n.latex, n.text)
        s, l = self._letter(n.kind, own, i), str(layer)
        return nt.index[i].format(s=s, l=l, sup=_superscript(l), paren=_superscript(f"({l})"))

    def _letter(self, kind, own, i) -> str:
        """A kind's letter: the notation's, else chainrule's (``own``), upper case in the batch form."""
        letter = self.notation.letters.get(kind, own)[i]
        return letter


    def _own(self, text: str) -> str:
        """A reason or meaning of chainrule's own words made ready for this notation: the loss in
        ``∂L/∂`` and the batch size's ``N`` as the notation's names (``⟦L⟧``, ``⟦N⟧``), then its
        ``phrases``; user text (between its markers) left alone."""
        def own(part):
            part = re.sub(r"(?<![\w⟦\\])N(?![\w⟧])", "⟦N⟧", part.replace("⟦partial⟧L/", "⟦partial⟧⟦L⟧/"))
            for old, new in self.notation.phrases:
                part = old.sub(new, part) if isinstance(old, re.Pattern) else part.replace(old, new)
            return part
        parts = re.split("(\ue000.*?\ue001)", text, flags=re.DOTALL)
        return "".join(part if i % 2 else own(part) for i, part in enumerate(parts))


LOSS_DEFAULT = ("L", "L")


def _plain(text: str) -> str:
    """An opening sentence's ``$...$`` math for the text notes (the LaTeX macros it uses in Unicode)."""
    for tex, uni in ((r"\partial ", "∂"), (r"\partial", "∂"), (r"\nabla_{a^{(k)}}", "∇_a⁽ᵏ⁾"), (r"\nabla_a", "∇ₐ"), (r"\times", "×"),
                     (r"\delta", "δ"), (r"\leftarrow", "←"), (r"\dots", "…"), (r"\mathbf{1}_N", "1_N"),
                     (r"^{\top}", "ᵀ"), (r"\,", " "), ("^{(k-1)}", "⁽ᵏ⁻¹⁾"), ("^{(k)}", "⁽ᵏ⁾"), ("^{[l]}", "[l]"),
                     ("^{[L]}", "[L]"), ("^l", "ˡ"), ("^L", "ᴸ")):
        text = text.replace(tex, uni)
    text = re.sub(r"\^\{\[(\d+)\]\}", r"[\1]", text)
    return text.replace("$", "")


# -- deeplearning.ai's scaling: dZ = m ∂J/∂Z ----------------------------------------------------

def _scaled(expr, c):
    """``c * expr`` with ``c`` merged into a coefficient expr already has (``m (1/m)(A - Y)`` is
    ``A - Y``): into each term of a sum, the first factor of an element-wise product."""
    if isinstance(expr, sp.MatAdd):
        return sp.MatAdd(*(_scaled(t, c) for t in expr.args), evaluate=False)
    if isinstance(expr, sp.HadamardProduct):
        return sp.HadamardProduct(_scaled(expr.args[0], c), *expr.args[1:])
    if isinstance(expr, sp.MatMul):
        coeff, factors = expr.as_coeff_matrices()
        coeff, inner = c * coeff, sp.MatMul(*factors) if len(factors) > 1 else factors[0]
        return inner if coeff == 1 else sp.MatMul(coeff, *factors, evaluate=False)
    return expr if c == 1 else sp.MatMul(c, expr, evaluate=False)


def _mean_in_parameters(quantities, steps, names):
    """deeplearning.ai's batch form, rewritten from chainrule's: every error and adjoint Q of a batch
    value is m times chainrule's (``dZ = m Δ``), so the output's error loses the mean's 1/m, an
    error computed from others is the same expression (a VJP is linear in the adjoint it carries),
    and each parameter gradient's terms in an adjoint gain 1/m."""
    m = sp.Symbol("m", integer=True, positive=True)
    adjoints = {q.symbol for q in quantities.values() if q.role == "adjoint"}
    quantities = {k: replace(q, symbol=q.symbol.xreplace({N: m}),
                             meaning=_ng_meaning(names[k]) if q.role == "adjoint" else q.meaning)
                  for k, q in quantities.items()}
    out = []
    for s in steps:
        rhs, reason = s.rhs, s.reason
        if s.target.role == "adjoint" and not rhs.has(*adjoints):
            rhs = _scaled(rhs, N)
            reason = (formula("⟦N⟧") + " times the gradient of the cost, which is " + reason + "; so "
                      + formula(f"⟦{s.target.key}⟧") + " leaves out the mean's " + formula("1/⟦N⟧")
                      + ", which the parameter gradients carry")
        elif s.target.role == "gradient":
            terms = rhs.args if isinstance(rhs, sp.MatAdd) else (rhs,)
            rhs = sp.MatAdd(*(_scaled(t, 1 / N) if t.has(*adjoints) else t for t in terms), evaluate=False) \
                if len(terms) > 1 else _scaled(rhs, 1 / N)
            reason += "; times " + formula("1/⟦N⟧") + ", the mean's factor that dZ leaves out"
        out.append(replace(s, rhs=rhs.xreplace({N: m}), reason=reason))
    return quantities, out


def _ng_meaning(names) -> str:
    """An adjoint's meaning in deeplearning.ai's scaling (``names``: its Names, a gradient's or an error's)."""
    return (formula("⟦N⟧") + " times " + formula(f"⟦partial⟧⟦L⟧/⟦partial⟧⟦{names.of.key}⟧")
            + ", the gradient of the cost summed over the batch" + (f", layer {names.layer}'s error" if names.kind == "delta" else ""))


# -- cs231n's batch-first layout: every batch value transposed -----------------------------------

class RowNormalize(MatrixExpr):
    """Each row divided by its sum: softmax over each sample when samples are rows."""

    def __new__(cls, mat):
        return sp.Basic.__new__(cls, mat)

    @property
    def mat(self):
        return self.args[0]

    @property
    def shape(self):
        return self.mat.shape

    def doit(self, **hints):
        return ColumnNormalize(self.mat.T).doit(**hints).T


def _batch_first(quantities, steps, names):
    """cs231n's batch form, rewritten from chainrule's: each batch value Q (features × N) is the
    matrix of its rows, Qᵀ (N × features), a per-feature column (a bias, a norm's gain, shift and batch
    norm's statistics) and its gradient rows too (``1_N b`` adds it to every row), and each equation is
    transposed to match; the weights and their gradients keep PyTorch's layout (out × in)."""
    def flipped(q):
        kind = names[q.key].of.kind if names[q.key].kind == "gradient" else names[q.key].kind
        return isinstance(q.symbol, sp.MatrixSymbol) and (q.symbol.shape[1] in (N, 1) and kind != "w")
    rows = {q.symbol: symbol(q.key, tuple(reversed(q.shape))) for q in quantities.values() if flipped(q)}
    quantities = {k: replace(q, symbol=rows.get(q.symbol, q.symbol)) for k, q in quantities.items()}
    return quantities, [replace(s, rhs=(_transposed if s.target.symbol in rows else _upright)(s.rhs, rows))
                        for s in steps]


def _transposed(e, rows):
    """``eᵀ`` written in the row matrices: transposes pushed down to the leaves."""
    if e in rows:
        return rows[e]
    if isinstance(e, sp.Transpose):
        return _upright(e.arg, rows)
    if isinstance(e, (sp.MatrixSymbol, sp.OneMatrix)):
        return e.T
    if isinstance(e, ColumnSums):
        return sp.MatMul(_transposed(e.mat, rows), sp.OneMatrix(e.shape[0], e.shape[0]))
    if isinstance(e, Broadcast):  # a row copied down is its transpose copied across
        return Broadcast(_transposed(e.mat, rows), e.shape[1], e.shape[0])
    if isinstance(e, FeatureMean):  # each column's mean over the features: each row's, (1/F) Q 1_F
        return BatchMean(_transposed(e.mat, rows))
    if isinstance(e, sp.MatMul):
        coeff, factors = e.as_coeff_matrices()
        factors = [_transposed(f, rows) for f in reversed(factors)]
        return sp.MatMul(*factors) if coeff == 1 else sp.MatMul(coeff, *factors, evaluate=False)
    if isinstance(e, sp.MatAdd):
        return sp.MatAdd(*(_transposed(a, rows) for a in e.args), evaluate=False)
    if isinstance(e, sp.HadamardProduct):
        return sp.HadamardProduct(*(_transposed(a, rows) for a in e.args))
    if isinstance(e, Pointwise):
        return Pointwise(e.fn, e.label, *(_transposed(m, rows) for m in e.mats))
    if isinstance(e, ColumnNormalize):
        return RowNormalize(_transposed(e.mat, rows))
    raise ChainruleError(f"the cs231n notation cannot write {type(e).__name__} batch-first yet; "
                         "give --notation chainrule for this network")


def _upright(e, rows):
    """``e`` written in the row matrices (each batch value Q as its rows' transpose)."""
    if e in rows:
        return rows[e].T
    if isinstance(e, sp.Transpose):
        return _transposed(e.arg, rows)
    if isinstance(e, (sp.MatrixSymbol, sp.OneMatrix)) or not isinstance(e, (sp.MatrixExpr, sp.Expr)) \
            or not e.free_symbols & set(rows):
        return e
    if isinstance(e, ElementSum):  # a sum over every element is the same over the transposes
        return ElementSum(e.fn, *(_transposed(m, rows) for m in e.mats))
    if isinstance(e, sp.MatMul):
        coeff, factors = e.as_coeff_matrices()
        factors = [_upright(f, rows) for f in factors]
        return sp.MatMul(*factors) if coeff == 1 else sp.MatMul(coeff, *factors, evaluate=False)
    if isinstance(e, (sp.Add, sp.Mul)):
        return e.func(*(_upright(a, rows) for a in e.args), evaluate=False)
    return _transposed(e, rows).T


# -- printers ------------------------------------------------------------------------------------

class _Relabel:
    """A printer that writes layer l's activation as the notation's ``g^{[l]}`` (``activation``, a
    format of ``l`` and ``prime``; None: its own name), brackets a transposed name that has a
    superscript (``a^{1\top}``, ``(a¹)ᵀ``) and prints a RowNormalize as the softmax it is."""
    activation = None
    layers = {}
    prime = ""

    def _print_Transpose(self, expr):
        printed = super()._print_Transpose(expr)
        head = printed[:-len(self.transposed)]
        if isinstance(expr.arg, sp.MatrixSymbol) and re.search(r"\^|[⁰-⁹⁽⁾¹²³]", head):
            return self.superscripted(head)
        return printed

    def _print_Pointwise(self, expr):
        layer = self.layers.get(getattr(expr.mats[0], "name", None)) if expr.label else None
        if self.activation and layer is not None:
            prime = expr.label.endswith("'")
            label = self.activation.format(l=layer, prime=self.prime if prime else "")
            expr = Pointwise(expr.fn, label, *expr.mats)
        return super()._print_Pointwise(expr)

    def _print_RowNormalize(self, expr):
        return self._print(expr.mat)


class _Latex(_Relabel, MathLatex):
    prime, transposed = r"\prime", r"^{\top}"

    @staticmethod
    def superscripted(head):
        """``h^{(1)\top}``, as Goodfellow and Ng write it (``h^{(1)}^{\top}`` is a double superscript)."""
        return head[:-1] + r"\top}" if head.endswith("}") and "^{" in head else "{" + head + "}^{\top}"


class _Text(_Relabel, NotesText):
    prime, transposed = "'", "ᵀ"

    @staticmethod
    def superscripted(head):
        return f"({head})ᵀ"
