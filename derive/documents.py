"""The three documents printed from one derivation: LaTeX, Markdown (KaTeX/MathJax) and text.

``outline`` walks the steps once and yields blocks (headings, paragraphs, a table of symbols,
numbered equations); each document only lays those blocks out.

The optimizer's and the schedule's update rules are written once, in LaTeX, in ``derive.optim``;
the text notes print them through ``latex_to_text``.
"""
import re
import textwrap
import unicodedata
from dataclasses import dataclass
from typing import Callable

import sympy as sp

from .escape import latex_text, markdown_text, terminal_text
from .fused import fused_labels, fused_outline
from .picture import mermaid, text_picture, tikz
from .recursion import recursion_outline
from .worked import worked_outline
from .naming import LOSS
from .nodes import ColumnSums, ElementSum, Pointwise
from .functions import Named
from .ops.activations import Z
from .optim import OPTIMIZERS, SCHEDULES, WARMUP_EQUATION, validate
from .steps import explain
from .notation import EXTRA_NAMES, notation as notation_named
from .printing import MathLatex, NotesText, _positive_first, activation_definitions, loss_definition
from .spec import inline, inline_inputs



def describe(network, user=str) -> str:
    """``2 -> 2 relu -> 1 ; mse`` for a network; ``user`` wraps each name and formula it quotes."""
    loss = network.loss
    loss_name = f"[{user(loss.formula)}]" if loss.formula else (
        user(loss.name) + (f"({', '.join(f'{k}={v}' for k, v in loss.params)})" if loss.params else ""))
    tail = "".join(f" ; {k}={v}" for k, v in (("l1", network.l1), ("l2", network.l2)) if v)
    return architecture(network, user) + f" ; {loss_name}" + tail


def shape_text(shape, latex: bool) -> str:
    rows, cols = shape
    times = r" \times " if latex else " × "
    return f"{sp.latex(rows) if latex else rows}{times}{sp.latex(cols) if latex else cols}"


def label(step) -> str:
    """The stable LaTeX label of a step: ``eq:delta2``, ``eq:dW1``; the batch form's ``eq:batch-dW1``."""
    key = step.target.key.replace("dL_d", "d")
    return f"eq:{'batch-' if step.form == 'batch' else ''}{key[0].lower() + key[1:]}"


def outline(derivation, latex: bool, accepted=None, form: str = "both", notation="chainrule", worked=None):
    """Blocks: ('title' | 'heading' | 'subheading' | 'para', text) | ('table', header, rows) |
    ('display', lines) | ('eq', n, label, lhs, rhs, reason, dimension check) | ('rule', n, label, formula).
    ``accepted``: the names ``chainrule check`` reads (``derive.check.accepted_names``; the checker is
    not imported here): given, the notes point to the checker (``chainrule check --names`` lists them).
    ``form``: 'sample', 'batch' or 'both' (see ``FORMS``); every equation ('eq' and 'rule': the steps, the
    fused step's derivation, the update rules, the worked example) is numbered from 1 in the order
    printed. A right-hand side too wide for a line holds its lines joined by newlines, each
    after the first starting with its sign (``_broken``); a reason cites an equation, earlier or later, by
    a marker holding its label (``cite``), which each layout writes in its own way. ``notation``: a name in
    ``derive.notation.NOTATIONS`` (or a Notation), whose symbols, scaling and layout print the steps. ``worked``:
    the worked example's numbers (a ``derive.worked.Example``, which ``codegen.worked`` computes with the
    generated code), or None; printed in chainrule's own notation only."""
    number = 0
    for kind, *args in _blocks(derivation, latex, accepted, form, notation, worked):
        if kind in ("eq", "rule"):
            number += 1
            args[0] = number
        yield (kind, *args)


def cite(label: str) -> str:
    """A citation of the equation labelled ``label`` (``eq:delta2``), in a reason or a paragraph."""
    return f"\ue002{label}\ue003"


def _blocks(derivation, latex, accepted, form, notation, worked):
    """``outline``'s blocks, the equations not yet numbered."""
    notation = notation_named(notation)
    views = notation.views(derivation, form)
    forms = tuple(views)
    net = derivation.network
    math = (lambda s: f"${s}$") if latex else (lambda s: s)
    yield "title", f"Gradients of the network {architecture(net, _user, short=True)}"
    yield "para", (f"Network: {architecture(net, _user)}, trained on the {net.loss.title}"
                   + "".join(f", {k} = {v}" for k, v in (("l1", net.l1), ("l2", net.l2)) if v) + ".")
    if net.description:
        yield "para", _user(net.description)
    if views[forms[0]].about(net, latex):
        yield "para", views[forms[0]].about(net, latex)
    checkable = accepted is not None or all(layer.kind == "dense" for layer in net.layers)
    yield "para", ("Every derivative below comes from SymPy applied to the definitions; each step is checked "
                   "against SymPy's element-wise derivative of the expanded network by chainrule's verifier."
                   + (" To compare a derivation of your own with these steps, run chainrule check (chainrule check "
                      "--names lists the names it reads)." if checkable else ""))
    yield "heading", "The network as a graph"
    # batch norm couples the samples, so its network has only the batch form to draw
    # in the notation's symbols: the first form it prints (batch norm's network: the batch form only)
    drawn = next(v for v in views.values() if v.sweep is not None)
    yield "para", PICTURE_CAPTION[latex].replace("for one sample",
                                                 "for one sample" if drawn.form == "sample" else "for a batch")
    yield "picture", drawn.sweep, None if drawn.default else dict(zip(drawn.quantities, zip(
        (drawn.names(True)[k] for k in drawn.quantities), (drawn.names(False)[k] for k in drawn.quantities))))
    yield "heading", "Notation"
    blocks = [(l, layer) for l, layer in enumerate(net.layers, start=1) if getattr(layer, "layers", None)]
    for l, block in blocks:  # a block's own layers are numbered within it
        n = len(block.layers)
        inner = f"{l}.1" if n == 1 else f"{l}.1 and {l}.2" if n == 2 else f"{l}.1 to {l}.{n}"
        yield "para", (f"Layer{'s' if n > 1 else ''} {inner} {'are' if n > 1 else 'is'} the "
                       f"{'layers' if n > 1 else 'layer'} inside layer {l}, a {block.kind} block.")
    for view in views.values():
        if view.sweep is None:  # batch norm: no per-sample form, said where its steps would stand
            continue
        names, printer = view.names(latex), view.printer(latex)
        rows = [(math(printer.doprint(q.symbol)), math(shape_text(q.shape, latex)) if q.shape else "scalar",
                 explain(q.meaning, names, math)) for q in view.quantities.values()]
        yield "table", (view.title, "symbol", "shape", "meaning"), rows
    yield "heading", "Definitions"
    activations = _distinct_activations(net)
    for fz, dfz in activation_definitions(activations, latex):
        yield "display", [fz, dfz]
    where = named_functions([f.derivative_display() for f in activations if f.elementwise], latex)
    if where:
        yield "para", f"Here {where}."
    for note in [f.undefined for f in activations] + [net.loss.undefined]:
        if note:
            yield "para", _user(note)
    for l, layer in enumerate(net.layers, start=1):  # a layer's own definitions (a recurrent layer's step t)
        if hasattr(layer, "notes"):
            yield from layer.notes(l, latex)
    term, deriv = loss_definition(net.loss, latex)
    ell = r"\ell(\hat{y}, y)" if latex else "ℓ(ŷ, y)"
    dell = r"\frac{\partial \ell}{\partial \hat{y}}" if latex else "∂ℓ/∂ŷ"
    yield "para", f"Loss: {net.loss.title}. One element's term and its derivative:"
    yield "display", [f"{ell} = {term}", f"{dell} = {deriv}"]
    if net.loss.reduction == "mean" and net.outputs > 1:
        yield "para", (f"The mean is over the K = {net.outputs} outputs of a sample (and over the N samples of a "
                       f"batch), so the factor 1/{net.outputs} in the one-sample loss is 1/K.")
    if any(not f.elementwise for f in net.activations):
        where = f"each {'row' if notation.rows else 'column'}"
        if getattr(net.layers[-1], "length", 0):  # a dense layer at every step of a sequence
            where = f"the K = {net.layers[-1].units} outputs of each step of {where}"
        yield "para", (f"softmax acts on {where}: " + math(r"\operatorname{softmax}(z)_i = e^{z_i} / \sum_k e^{z_k}"
                                                            if latex else "softmax(z)_i = exp(z_i) / Σ_k exp(z_k)") + ".")
    # the fused step's derivation follows the steps (so each step's number is its Step's, which the
    # emitted code's comments cite) and cites those of the first form printed
    fused = fused_labels(derivation)
    derived = f"{cite(fused[0])}–{cite(fused[-1])}" if len(fused) > 1 else cite(fused[0]) if fused else ""
    cited = {}  # form -> {key: the label of its step}
    # a network with a block (a residual block, a transformer's) prints each layer's steps under its own
    # heading within a phase, so one layer's forward or backward pass can be cited or pasted alone
    parted = any(layer.layers for layer in net.layers)
    for view in views.values():
        yield "heading", view.title
        if view.sweep is None:
            yield "para", ("None: batch norm normalizes each feature with the mean and the variance of the whole "
                           "batch, so a sample's output depends on the other samples and the derivation has the "
                           "batch form only.")
            continue
        names, printer = view.names(latex), view.printer(latex)
        phase, part, printed = None, None, cited.setdefault(view.form, {})
        for step in view.steps:
            if step.phase != phase:
                phase, part = step.phase, None
                yield "subheading", {"forward": "Forward pass", "loss": "Loss", "backward": "Backward pass"}[phase]
            top = _top_layer(step.layer)
            if parted and phase != "loss" and top != part and 1 <= top <= len(net.layers):
                part = top
                yield "part", f"Layer {top}: {shown_layer(net.layers[top - 1], _user, short=True)}"
            reason = _cited(step.reason, printed)
            if fused:
                reason = reason.replace(FUSED_WHERE, f"derived in {derived}")
            printed[step.target.key] = label(step)
            rhs = _broken(printer, step.rhs) if latex else printer.doprint(step.rhs)
            yield ("eq", None, label(step), view.lhs(step, printer, latex), rhs,
                   explain(reason, names, math), dimensions(step.rhs, latex))
        if view.form == "sample" and view.default:
            yield from recursion_outline(derivation, latex, lambda key: cite(printed[key]), derived)
    if fused:
        # in the one-sample symbols where the notes print them, else in z and the notation's cost
        yield from fused_outline(derivation, latex, cited[drawn.form], fused, cite, drawn.sweep,
                                 drawn.default and drawn.form == "sample", drawn.names(latex).get(LOSS.key, "L"))
    yield from training_outline(derivation, latex, "batch" in forms, views[forms[-1]].names(latex),
                                notation.estimate, notation.moments)
    if "batch" in forms and notation.name == "chainrule":
        yield from worked_outline(derivation, worked, latex, names, cited["batch"], cite)


#: The fused step's reason (``derive.ops.loss``) says where it is derived; the notes then cite where.
FUSED_WHERE = "derived under Definitions"


PICTURE_CAPTION = {
    True: ("The graph the derivation walks, for one sample: each value is computed from the values whose arrows point "
           "to it, the parameters above the chain and the target below; the dashed arrows carry the gradient of the "
           "loss back, each labelled with the gradient it adds to where that has a symbol (a value two arrows reach "
           "sums them)."),
    False: ("The graph the derivation walks, for one sample: each value is computed from the one before it and from "
            "those listed as also going into it; the gradient of the loss flows back along the dashed arrows (⇢), "
            "each with the gradient it adds to where that has a symbol (a value two arrows reach sums them):")}


#: A reason's citation of an equation: its label between two private-use characters (user text cannot
#: hold them: it is escaped first), which each layout writes as it cites (by the equation's number,
#: which ``render`` reads off the outline first, or LaTeX's \eqref of the label).
_CITE = re.compile("\ue002" r"([^\ue003]+)" "\ue003")


def _cited(reason: str, printed: dict) -> str:
    """``reason`` with each formula that restates an earlier equation (``z2 = W2 a1 + b2``) followed
    by a citation of it; ``printed``: key -> label of the equations printed so far."""
    def restated(m):
        return m[0] + (" " + cite(printed[m[1]]) if m[1] in printed else "")
    return re.sub(r"⟨⟦(\w+)⟧ = [^⟩]*⟩", restated, reason)


#: How wide (in ``_width``'s units, about a digit's width) a line of a display may be: a host
#: document's narrow text (345 pt, LaTeX's default) with room for the equation's number.
LINE_WIDTH = 50


def _width(tex: str) -> float:
    """About how wide ``tex`` prints, in digits: scripts at 0.7, a fraction as its wider part, each
    macro (``\\sum``, ``\\odot``) as one character, spacing and grouping as nothing."""
    tex = re.sub(r"\\(left|right|mathbf|hat|quad)\b|\\operatorname\{([^{}]*)\}|\\[,;!]", r"\2", tex)
    while (frac := re.search(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", tex)) is not None:
        tex = tex[:frac.start()] + max(frac[1], frac[2], key=len) + tex[frac.end():]
    scripts = re.findall(r"[_^]\{([^{}]*)\}", tex)
    tex = re.sub(r"[_^]\{[^{}]*\}", "", tex)
    tex = re.sub(r"\\[A-Za-z]+", "x", tex).replace("{", "").replace("}", "").replace(" ", "")
    return len(tex) + len(re.findall(r"[=+-]", tex)) + 0.7 * sum(len(re.sub(r"\\[A-Za-z]+", "x", s)) for s in scripts)


def _broken(printer, rhs) -> str:
    """``rhs`` printed; wider than ``LINE_WIDTH``, a sum (or the one sum among the factors of an
    element-wise product, its brackets then \\Bigl( and \\Bigr)) as lines of whole terms, each line
    after the first starting with its sign, joined by newlines (each layout aligns them)."""
    text = printer.doprint(rhs)
    if _width(text) <= LINE_WIDTH:
        return text
    head, tail, total = "", "", rhs
    if isinstance(rhs, sp.HadamardProduct) and sum(isinstance(a, sp.MatAdd) for a in rhs.args) == 1:
        at = next(i for i, a in enumerate(rhs.args) if isinstance(a, sp.MatAdd))
        head = "".join(printer._paren(a) + r" \odot " for a in rhs.args[:at]) + r"\Bigl("
        tail = r"\Bigr)" + "".join(r" \odot " + printer._paren(a) for a in rhs.args[at + 1:])
        total = rhs.args[at]
    if not isinstance(total, (sp.Add, sp.MatAdd)):
        return text
    terms = [printer._print(t) for t in (printer._as_ordered_terms(total) if isinstance(total, sp.Add)
                                           else _positive_first(total.args))]
    signed = [terms[0]] + [f"- {t[1:].lstrip()}" if t.startswith("-") else f"+ {t}" for t in terms[1:]]
    lines = [head + signed[0]]
    for term in signed[1:]:
        if _width(lines[-1] + term) > LINE_WIDTH:
            lines.append(term)
        else:
            lines[-1] += " " + term
    lines[-1] += tail
    as_one = "".join(lines).replace(r"\Bigl(", r"\left(").replace(r"\Bigr)", r"\right)")
    if as_one.replace(" ", "") != text.replace(" ", ""):
        return text  # the terms do not print as the whole does (a bracketed term): left whole
    return "\n".join(lines)


def dimensions(rhs, latex: bool) -> str:
    """The dimension check of each matrix product in ``rhs``, ``(1×1)(1×2) = 1×2`` ('' if none; the
    text's shapes unspaced, as compact as its own line allows); a product inside another is its factor."""
    checks, seen = [], set()
    for product in sp.preorder_traversal(rhs):
        if isinstance(product, (Pointwise, ElementSum)) or product in seen:
            continue
        if isinstance(product, sp.MatMul) and not isinstance(product, ColumnSums):
            seen.update(product.args)
            _, factors = product.as_coeff_matrices()
            if len(factors) > 1:
                shape = (lambda m: shape_text(m.shape, True)) if latex else (lambda m: "{}×{}".format(*m.shape))
                checks.append("".join(f"({shape(f)})" for f in factors) + " = " + shape(product))
    return ", ".join(dict.fromkeys(checks))


def _top_layer(layer) -> int:
    """The spec's position of the layer a step belongs to (a block's, for a layer inside it)."""
    return layer[0] if isinstance(layer, tuple) else layer


def shown_layer(layer, user=str, short: bool = False) -> str:
    """A layer as the inline grammar writes it (``8 relu``, ``conv2d(out_channels=8, ...)``); ``short``: a
    layer whose spec has settings as its kind and activation alone, a block as its inner layers so."""
    def dense(layer):
        act = layer.activation
        name = user(act.name) + (f"({', '.join(f'{k}={v}' for k, v in act.params)})" if act.params else "")
        return f"{layer.units}" + ("" if act.is_identity else f" {name}") + (" residual" if layer.residual else "")

    if short and layer.layers:
        return f"{layer.kind}({' -> '.join(shown_layer(inner, user, short) for inner in layer.layers)})"
    text = inline(layer, dense, user)
    if not short or "=" not in text:
        return text
    act = getattr(layer, "activation", None)
    return layer.kind + ("" if act is None or act.is_identity else f" {user(act.name)}")


def architecture(network, user=str, short: bool = False) -> str:
    """``2 -> 2 relu -> 1``: the layers, without the loss (``describe`` adds it); ``short``: each layer as
    ``shown_layer`` shortens it, for a title."""
    return " -> ".join([inline_inputs(network)] + [shown_layer(layer, user, short) for layer in network.layers])


def named_functions(exprs, latex: bool) -> str:
    """``σ(z) = 1/(1 + exp(-z)), the logistic sigmoid``: each Named function in ``exprs`` ('' if none)."""
    named = sorted({type(f) for e in exprs for f in e.atoms(Named)}, key=lambda kind: kind.__name__)
    printer = MathLatex({}) if latex else NotesText({})
    math = (lambda s: f"${s}$") if latex else str
    return "; ".join(f"{math(f'{printer.doprint(kind(Z))} = {printer.doprint(kind.define(Z))}')}, {kind.meaning}"
                     for kind in named)


#: θ, and ∂L/∂θ with the cost's letter (``{cost}``: L, or a notation's C or J)
THETA, GRADIENT_OF_THETA = r"\theta", r"\partial{{}}{cost}/\partial\theta"
RATE, RATE_E, RATE_0 = r"\eta", r"\eta_e", r"\eta_0"


def training_outline(derivation, latex: bool, batch_shown: bool = True, names=None, estimate="g", moments=()):
    """The optimizer's and the schedule's update rules, when the spec chooses them: only the rules its
    settings use (numbered by ``outline``), each symbol tied to
    its setting and θ to the parameters; ``batch_shown``: the notes print the batch form; ``names``:
    each parameter's printed name (its own, else: the notation's), and the cost's (Nielsen's C, J);
    ``estimate``: the letter of the gradient on the batch (``Notation.estimate``); ``moments``: letters
    of the rules renamed (``Notation.moments``)."""
    net = derivation.network
    cost = names.get(LOSS.key, "L") if names else "L"
    gradient = GRADIENT_OF_THETA.format(cost=cost)
    if not net.tables:
        return
    math = (lambda s: f"${s}$") if latex else latex_to_text
    settings = validate(net.tables)
    opt = settings["optimizer"]
    kind = OPTIMIZERS[opt["type"]]
    rules = kind.rules(opt)
    yield "heading", "Training"
    params = derivation.batch.quantities
    theta = ", ".join(math(names[name] if names else params[name].latex if latex else params[name].text)
                      for name in net.param_names)
    yield "para", (f"Optimizer: {kind.torch_name}, as torch.optim.{kind.torch_name} updates each parameter. "
                   f"Here {math(THETA)} stands for each of {theta} in turn, and {math(estimate + '_t')} for its gradient "
                   f"{math(gradient)} on the batch of step t"
                   + (" (the batch form above)" if batch_shown else "") + "; "
                   + _settings(kind.symbols, opt, rules, math) + ":")
    for i, rule in enumerate(rules, start=1):
        rule = rule.replace(r"\nabla_\theta L(", rf"\nabla_\theta {cost}(")  # optim.GRADIENT in the notation's cost
        rule = re.sub(r"(?<![\\A-Za-z])(?<!\\bar )g_t", lambda m: estimate + "_t", rule)  # not RMSprop's mean ḡ
        for old, new in moments:  # a letter with its subscript or superscript: m_t, v^{\max}_t
            rule = re.sub(rf"(?<![\\A-Za-z]){old}(?=[_^])", new, rule)
        yield "rule", None, f"eq:{kind.name}-{i}", rule if latex else latex_to_text(rule)
    schedule = settings["schedule"]
    if schedule:
        skind = SCHEDULES[schedule["type"]]
        warmup = schedule.get("warmup_epochs")
        equations = skind.equations + ((WARMUP_EQUATION,) if warmup else ())
        symbols = {**skind.symbols, **({"warmup_epochs": "k"} if warmup else {})}
        yield "para", (f"Learning-rate schedule: {skind.torch_name}, stepped once per epoch e, so "
                       f"{math(RATE_E)} replaces {math(RATE)} in epoch e, starting from "
                       f"{math(RATE_0)} = lr"
                       + (" after a linear warm-up over the first k epochs (the schedule's e then counts from "
                          "the end of the warm-up)" if warmup else "")
                       + "; " + _settings(symbols, schedule, equations, math) + ":")
        for i, rule in enumerate(equations, start=1):
            yield "rule", None, f"eq:{skind.name}-{i}", rule if latex else latex_to_text(rule)
    train = settings["training"]
    shown = ", ".join(f"{k} = {v}" for k, v in train.items() if v is not None)
    yield "para", f"Training: {shown}."
    if train.get("bptt"):
        k = train["bptt"]
        yield "para", (f"Truncated backpropagation through time (bptt = {k}): each batch's sequences are cut into "
                       f"chunks of {k} steps and the optimizer steps after each chunk. A chunk's recurrence starts "
                       f"from the state the previous chunk ended in (its {math('h_0')}, and an LSTM's {math('c_0')}; zero for "
                       f"the first chunk), a constant: no gradient flows back into it, so the steps above hold with "
                       f"T = {k} (fewer in a last, shorter chunk) and the loss the mean over the chunk's steps.")


def _settings(symbols: dict, settings: dict, rules, math) -> str:
    """``γ = lr = 0.01, μ = momentum = 0.9``: each setting whose symbol the printed rules use."""
    used = " ".join(rules)

    def in_rules(symbol):  # (\beta_1, \beta_2) is used where \beta_1 is
        first = re.escape(re.sub(r"[(),]", " ", symbol).split()[0])
        return re.search(r"(?<![A-Za-z\\])" + first + r"(?![A-Za-z])", used)
    shown = [f"{math(symbol)} = {key} = {_value(settings[key], math)}" for key, symbol in symbols.items()
             if settings.get(key) is not None and in_rules(symbol)]
    other = [f"{key} = {_value(v, math)}" for key, v in settings.items()
             if key not in ("type", "warmup_epochs") and key not in symbols and v is not None and v is not False]
    return ", ".join(shown + other)


def _value(v, math) -> str:
    """A setting as the notes print it: ``(0.9, 0.999)``, ``0.01``, and a power of ten such as eps's
    ``1e-08`` as math (``10⁻⁸``)."""
    if isinstance(v, tuple):
        return f"({', '.join(f'{b:g}' for b in v)})"
    if isinstance(v, float) and re.fullmatch(r"1e[-+]\d+", f"{v:g}"):
        return math(f"10^{{{int(f'{v:g}'[2:])}}}")
    return f"{v:g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------------------------
# LaTeX -> terminal text, for the update rules of derive.optim. It knows exactly the macros those
# tables use and raises on any other, so a new table entry cannot print raw LaTeX.
# ---------------------------------------------------------------------------------------------

QUAD = "\t"  # a \quad until the spacing is tidied, then three spaces
TEXT_MACROS = {
    r"\alpha": "α", r"\beta": "β", r"\epsilon": "ε", r"\eta": "η", r"\kappa": "κ",
    r"\lambda": "λ", r"\mu": "μ", r"\pi": "π", r"\psi": "ψ", r"\rho": "ρ", r"\tau": "τ", r"\theta": "θ",
    r"\nabla": "∇", r"\partial": "∂", r"\prod": "∏", r"\le": "≤", r"\in": "∈", r"\leftarrow": "←",
    r"\uparrow": "↑", r"\downarrow": "↓", r"\lfloor": "⌊", r"\rfloor": "⌋", r"\{": "{", r"\}": "}",
    r"\_": "_", r"\max": "max", r"\min": "min", r"\cos": "cos", r"\left": "", r"\right": "",
    r"\,": " ", r"\quad": QUAD,
}
ACCENTS = {r"\hat": "\u0302", r"\tilde": "\u0303", r"\bar": "\u0304"}  # combining marks
FRACTIONS = {("1", "2"): "½"}
SUBSCRIPTS = dict(zip("0123456789+-=()aehijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ"))
SUPERSCRIPTS = dict(zip("0123456789+-=()abcdefghijklmnoprstuvwxyz", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻ"))
_LATEX_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\s+|.")


def latex_to_text(tex: str) -> str:
    """``\\theta_t = \\theta_{t-1} - \\gamma g_t`` -> ``θₜ = θₜ₋₁ - γ gₜ``; ValueError on a macro it does not know.

    A script prints in Unicode when every character has a sub/superscript form, else as ``_x`` or
    ``^(x y)``; a fraction as ``a/(b + c)``; ``cases`` as ``(a if c1 else b if c2)``.
    """
    text = _LatexReader(tex).sequence()[0]
    text = re.sub(r"(?<=[(⌊]) +| +(?=[)⌋])", "", re.sub(r" +", " ", text)).strip()
    return re.sub(r" ?\t ?", "   ", text)


def _grouped(text: str) -> str:
    """``text`` as an operand: bracketed unless it is one symbol."""
    return text if re.fullmatch(r"[^\s+\-*/]+", text) else f"({text})"


def _script(text: str, mark: str) -> str:
    table = SUPERSCRIPTS if mark == "^" else SUBSCRIPTS
    text = text.strip()
    if text and all(c in table for c in text):
        return "".join(table[c] for c in text)
    return mark + _grouped(text)


class _LatexReader:
    """Reads one equation token by token; each method returns the text of what it consumed."""

    def __init__(self, tex: str):
        self.tex, self.tokens, self.at = tex, _LATEX_TOKEN.findall(tex), 0

    def sequence(self, stops=()) -> tuple[str, str | None]:
        """The text up to one of ``stops`` (consumed, and returned second) or, without stops, the end."""
        out = []
        while self.at < len(self.tokens):
            token = self._next()
            if token in stops:
                return "".join(out), token
            out.append(self._token(token))
        if stops:
            raise ValueError(f"{self.tex!r} ends before {' or '.join(stops)}")
        return "".join(out), None

    def _next(self) -> str:
        if self.at == len(self.tokens):
            raise ValueError(f"{self.tex!r} ends where an argument should be")
        self.at += 1
        return self.tokens[self.at - 1]

    def _argument(self) -> str:
        """A macro's or a script's argument: a {group} or the next token, spaces before it skipped."""
        token = self._next()
        while token.isspace():
            token = self._next()
        return self.sequence(("}",))[0] if token == "{" else self._token(token)

    def _token(self, token: str) -> str:
        if token == "{":
            return self.sequence(("}",))[0]
        if token in ("^", "_"):
            return _script(self._argument(), token)
        if token.isspace():
            return " "
        if token in TEXT_MACROS:
            return TEXT_MACROS[token]
        if token in ACCENTS:
            base = self._argument()
            return unicodedata.normalize("NFC", base[:1] + ACCENTS[token] + base[1:])
        if token in (r"\frac", r"\tfrac"):
            num, den = self._argument(), self._argument()
            return FRACTIONS.get((num, den)) or f"{_grouped(num)}/{_grouped(den)}"
        if token == r"\sqrt":
            return "√" + _grouped(self._argument())
        if token == r"\text":
            return self._argument()
        if token == r"\begin":
            return self._cases()
        if token.startswith("\\") or token in ("}", "&"):
            raise ValueError(f"no text form for {token} in {self.tex!r}; teach derive.documents.latex_to_text it")
        return token

    def _cases(self) -> str:
        """``\\begin{cases} a & c_1 \\\\ b & c_2 \\end{cases}`` -> ``(a if c₁ else b if c₂)``."""
        if (env := self._argument()) != "cases":
            raise ValueError(f"no text form for the {env} environment in {self.tex!r}")
        rows, stop = [], None
        while stop != r"\end":
            value, _ = self.sequence(("&",))
            condition, stop = self.sequence((r"\\", r"\end"))
            rows.append(f"{value.strip()} if {condition.strip()}")
        self._argument()  # the {cases} that \end closes
        return "(" + " else ".join(rows) + ")"


def _distinct_activations(net):
    seen, out = set(), []
    for f in net.activations:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out


def _latex_escape(text: str) -> str:
    """The outline's own words for LaTeX text mode (``--names`` as two hyphens, not an en dash)."""
    for a, b in (("\\", r"\textbackslash{}"), ("--", "-{}-"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"),
                 ("^", r"\^{}"), ("->", r"$\to$"), ("<", r"$<$"), (">", r"$>$")):
        text = text.replace(a, b)
    return text


def _latex_text(text: str) -> str:
    """Escape prose but keep the $...$ math the outline put in it."""
    parts = text.split("$")
    return "$".join(part if i % 2 else _latex_escape(part) for i, part in enumerate(parts))


#: The outline wraps every piece of user text (a name, a formula) in its prose between these two
#: private-use characters; each layout escapes that piece for its format (``derive.escape``) and
#: prints its own words, and their $...$ math, as they are.
_USER_TEXT = re.compile("\ue000(.*?)\ue001", re.DOTALL)


def _user(text) -> str:
    """``text`` marked as user text (a marker inside it shows as its escape, as any hidden character)."""
    return "\ue000" + str(text).replace("\ue000", r"\ue000").replace("\ue001", r"\ue001") + "\ue001"


def _prose(own: Callable[[str], str], user: Callable[[str], str]) -> Callable[[str], str]:
    """The prose function of a layout: ``own`` for the outline's words, ``user`` for user text."""
    def prose(text: str) -> str:
        return "".join(user(part) if i % 2 else own(part) for i, part in enumerate(_USER_TEXT.split(text)))
    return prose


@dataclass(frozen=True)
class Layout:
    """How one document lays out the outline's blocks, as ``str.format`` templates.

    ``prose`` prepares every piece of prose: the outline's words (LaTeX escapes them, keeping their
    ``$...$`` math) and the user text marked in them (escaped for the format, ``_prose``).
    ``table`` is the caption line, the header line (None: none), a row's line and the closing
    line (None: none); a row may use ``wa`` and ``wb``, the widths of the widest symbol and shape,
    and ``held``, ``*`` on the first and the last but one row (LaTeX's ``\\*``: no page break after
    it, so no page holds one row alone).
    A display's lines each go through ``display_line``, joined by ``display_join``, into
    ``display``. A heading may use ``width``, its length: ``{rule:=<{width}}`` is a rule under it.
    ``eq`` (a step) and ``rule`` (an update rule) may use ``number`` and ``label`` (``eq:delta2``); a
    step's ``dims``, its dimension check laid out by ``dims`` (nothing when it has no product).
    ``wrap``: the width to wrap lines at (0: none). ``broken``: (before, between, after) the lines
    of a right-hand side too wide for one (the equation's ``lhs`` then ends in its alignment ``&``);
    empty: the lines run on as one. ``cite``: a reason's citation of an earlier equation (its
    ``number`` and ``label``). ``keep``: what offers a page break before an equation or a paragraph
    (LaTeX's ``\\filbreak``: the page ends there rather than inside the block that follows; headings
    and tables break pages themselves); never after a heading, a sentence that ends in a colon or an
    unnumbered display, each of which stays with what follows, nor between two paragraphs.
    ``run_in``: a display continues the paragraph before it (LaTeX: no blank line between them, so
    no page break either). ``body_note``: the first line of the body alone (``--body-only``), in
    place of ``head``.
    """
    latex: bool
    prose: Callable[[str], str]
    title: str
    heading: str
    subheading: str
    part: str  # a layer's steps within a phase, where the network has blocks (``_parted``)
    para: str
    table: tuple
    display: str
    display_line: str
    display_join: str
    eq: tuple
    dims: str
    rule: str
    cite: str
    broken: tuple = ()
    keep: str = ""
    run_in: bool = False
    head: tuple = ()
    tail: tuple = ()
    body_note: str = ""
    end: str = ""
    wrap: int = 0
    picture: Callable = None  # (a sweep, its names or None) -> its picture (derive.picture: TikZ, Mermaid, text)


#: The symbol table's header: its caption (repeated, continued, on each page) over its columns' names.
_LATEX_CAPTION = r"\multicolumn{{3}}{{@{{}}l}}{{\textbf{{{caption}}}{more}}} \\"
_LATEX_HEADER = r"\textbf{{{a}}} & \textbf{{{b}}} & \textbf{{{c}}} \\ \hline"

LATEX = Layout(
    latex=True, prose=_prose(_latex_text, latex_text),
    title=r"\section{{{text}}}", heading=r"\subsection{{{text}}}", subheading=r"\subsubsection{{{text}}}",
    part=r"\paragraph{{{text}}}", para="{text}\n",
    # a longtable breaks across pages, and its meaning column wraps in a host document's narrow text
    table=(r"{{\renewcommand{{\arraystretch}}{{1.5}}\setlength{{\LTleft}}{{0pt}}"
           r"\begin{{longtable}}{{@{{}}llp{{0.5\linewidth}}@{{}}}}" + "\n" + _LATEX_CAPTION.replace("{more}", ""),
           _LATEX_HEADER + "\n" + r"\endfirsthead" + "\n" + _LATEX_CAPTION.replace("{more}", " (continued)") + "\n"
           + _LATEX_HEADER + "\n" + r"\endhead", r"{a} & {b} & {c} \\{held}",
           r"\end{{longtable}}}}" + "\n"),
    display="\\begin{{gather*}}\n{body}\n\\end{{gather*}}", display_line="{line}", display_join=" \\\\\n",
    # a reason is set ragged right (its paragraph ends in its group), so a long word such as
    # torch.nn.LayerNorm cannot stick out of narrow text; its dimension check ends the reason's last
    # line at the right, or the next line's when it does not fit (the TeXbook's signature, p. 106)
    # no page break between an equation and its reason (TeX reads \postdisplaypenalty as the display ends)
    eq=("\\begin{{equation}}\\label{{{label}}}\\postdisplaypenalty=10000\n{lhs} = {rhs}\n\\end{{equation}}",
        r"{{\small\raggedright {reason}{dims}\par}}" + "\n"),
    dims=r" \nobreak\hfill\penalty50\hskip1em\null\nobreak\hfill ${}$\parfillskip=0pt",
    cite=r"\eqref{{{label}}}", broken=("\\begin{split}\n", " \\\\\n&\\quad ", "\n\\end{split}"),
    rule="\\begin{{equation}}\\label{{{label}}}\n{formula}\n\\end{{equation}}", keep=r"\filbreak", run_in=True,
    head=(r"\documentclass[11pt]{article}", r"\usepackage{amsmath,amssymb,longtable}",
          r"\usepackage[margin=2cm]{geometry}",
          # Greek letters a spec's own text (its description, a name) may hold
          *(rf"\DeclareUnicodeCharacter{{{ord(c):04X}}}{{\ensuremath{{\{name}}}}}" for c, name in
            (("β", "beta"), ("γ", "gamma"), ("μ", "mu"), ("σ", "sigma"))),
          r"\usepackage{tikz}",  # the picture of the network (a host without it gets a sentence instead)
          # long unbreakable words (a convolution's kernel\_size=3 in the title) stretch a line, not overflow it
          r"\emergencystretch=0.5\linewidth",
          r"\setcounter{secnumdepth}{4}",  # a layer's part of a phase (\paragraph) is numbered, to cite or paste
          r"\begin{document}"),
    tail=(r"\end{document}",),
    body_note=(r"% chainrule's notes without a preamble, for \input: the document loads amsmath, amssymb and longtable "
               r"(and tikz for the picture of the network)"),
    end="\n", picture=tikz)

MARKDOWN = Layout(
    latex=True, prose=_prose(str, markdown_text),
    title="# {text}\n", heading="## {text}\n", subheading="**{text}**\n", part="*{text}*\n", para="{text}\n",
    table=("*{caption}*\n", "| {a} | {b} | {c} |\n|---|---|---|", "| {a} | {b} | {c} |", ""),
    display="{body}", display_line="$$\n{line}\n$$\n", display_join="\n",
    eq=("$$\n{lhs} = {rhs} \\tag{{{number}}}\n$$\n", "({number}) {reason}.{dims}\n"), dims=" Dimensions: ${}$.",
    cite="({number})", broken=("\\begin{aligned}\n", " \\\\\n&\\quad ", "\n\\end{aligned}"),
    rule="$$\n{formula} \\tag{{{number}}}\n$$\n", picture=lambda sweep, names: mermaid(sweep, names) + "\n")

TEXT = Layout(
    latex=False, prose=_prose(str, terminal_text),
    title="{text}\n{rule:=<{width}}", heading="\n{text}\n{rule:-<{width}}", subheading="  {text}:",
    part="  · {text}", para="{text}",
    table=("  {caption}:", None, "    {a:<{wa}}  {b:<{wb}}  {c}", None),
    display="{body}", display_line="    {line}", display_join="\n",
    eq=("  ({number:>2})  {lhs} = {rhs}", "        {reason}{dims}"), dims="\n        dimensions: {}",
    cite="({number})", rule="  ({number:>2})  {formula}", end="\n", wrap=100, picture=text_picture)


def render(derivation, layout: Layout, names=None, form: str = "both", body_only: bool = False,
           notation="chainrule", worked=None) -> str:
    """The document: the outline's blocks, each laid out by ``layout``; ``body_only``: without the
    head and tail (LaTeX's preamble), for a larger document to ``\\input``; ``notation``: see ``outline``."""
    blocks = list(outline(derivation, layout.latex, names, form, notation, worked))
    # each equation's label -> its number, for the citations of it (a later one's too)
    numbers = {args[1]: args[0] for kind, *args in blocks if kind in ("eq", "rule")}
    labels = {n: name for name, n in numbers.items()}

    def prose(text):  # a label as its number while the prose is escaped (a label's _ is no LaTeX text)
        text = layout.prose(_CITE.sub(lambda m: f"\ue002{numbers[m[1]]}\ue003", text))
        return _CITE.sub(lambda m: layout.cite.format(number=m[1], label=labels[int(m[1])]), text)
    out = [layout.body_note] if body_only else list(layout.head)
    previous = ("title", "")
    for kind, *args in blocks:
        if layout.keep and kind in ("para", "eq", "rule") and not (
                previous[0] in ("title", "heading", "subheading", "part", "display")
                or previous[0] == "para" and (kind == "para" or previous[1].endswith(":"))):
            out.append(layout.keep)
        if layout.run_in and kind in ("display", "eq", "rule") and previous[0] == "para":
            out[-1] = out[-1].rstrip("\n")
        previous = (kind, args[0] if kind == "para" else "")
        if kind == "table":
            (caption, *header), rows = args
            caption_line, header_line, row_line, close = layout.table
            caption = prose(caption)
            widths = {"wa": max(len(a) for a, _, _ in rows), "wb": max(len(b) for _, b, _ in rows)}
            out.append(caption_line.format(caption=caption))
            lines = [(header_line, header, "")] + [(row_line, row, "*" if i in (0, len(rows) - 2) else "")
                                                   for i, row in enumerate(rows)]
            out.extend(line.format(a=a, b=b, c=prose(c), caption=caption, held=held, **widths)
                       for line, (a, b, c), held in lines if line is not None)
            out.extend([close.format()] if close is not None else [])
        elif kind == "display":
            lines = layout.display_join.join(layout.display_line.format(line=line) for line in args[0])
            out.append(layout.display.format(body=lines))
        elif kind == "eq":
            number, name, lhs, rhs, reason, dims = args
            dims = layout.dims.format(dims) if dims else ""
            if "\n" in rhs and layout.broken:
                before, between, after = layout.broken
                lhs, rhs = f"{before}{lhs} &", between.join(rhs.split("\n")) + after
            elif "\n" in rhs:
                rhs = rhs.replace("\n", " ")
            out.extend(t.format(number=number, label=name, lhs=lhs, rhs=rhs, reason=prose(reason), dims=dims)
                       for t in layout.eq)
        elif kind == "picture":
            out.append(layout.picture(*args))
        elif kind == "rule":
            number, name, formula = args
            out.append(layout.rule.format(number=number, label=name, formula=formula))
        else:
            text = prose(args[0])
            # a heading's rule is as long as the heading, or as the lines it wraps into
            out.append(getattr(layout, kind).format(text=text, rule="", width=min(len(text), layout.wrap or len(text))))
    out.extend(() if body_only else layout.tail)
    return "\n".join(_wrapped(block, layout.wrap) for block in out) + layout.end


def _wrapped(block: str, width: int) -> str:
    """Each line of ``block`` over ``width`` characters broken at spaces, its continuation lines
    indented two more than the line (an equation's under its right-hand side's start)."""
    if not width:
        return block
    lines = []
    for line in block.split("\n"):
        indent = len(line) - len(line.lstrip(" "))
        hang = re.match(r" *\(\s*\d+\)  [^=]*= ", line)  # an equation continues under its right-hand side
        lines.append(textwrap.fill(line, width, subsequent_indent=" " * (len(hang[0]) if hang and len(hang[0]) < 40
                                                                        else indent + 2),
                                   break_long_words=False, break_on_hyphens=False) if len(line) > width else line)
    return "\n".join(lines)


def latex_steps(derivation) -> str:
    r"""``$$\begin{aligned} z_{1} &= W_{1} x + b_{1} && (1) \\ ...\end{aligned}$$``: each step, no prose."""
    rows = []
    for _, sweep in derivation.forms:
        printer = MathLatex({**{q.key: q.latex for q in sweep.quantities.values()}, **EXTRA_NAMES[True]})
        rows += [rf"{printer.doprint(s.target.symbol)} &= {printer.doprint(s.rhs)} && ({s.number})" for s in sweep.steps]
    return "$$\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}$$"


def latex_document(derivation, names=None, form: str = "both", body_only: bool = False, notation="chainrule",
                   worked=None) -> str:
    return render(derivation, LATEX, names, form, body_only, notation, worked)


def markdown_document(derivation, names=None, form: str = "both", notation="chainrule", worked=None) -> str:
    return render(derivation, MARKDOWN, names, form, notation=notation, worked=worked)


def text_document(derivation, names=None, form: str = "both", notation="chainrule", worked=None) -> str:
    return render(derivation, TEXT, names, form, notation=notation, worked=worked)
