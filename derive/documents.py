"""The three documents printed from one derivation: LaTeX, Markdown (KaTeX/MathJax) and text.

``outline`` walks the steps once and yields blocks (headings, paragraphs, a table of symbols,
numbered equations); each document only lays those blocks out.
"""
import sympy as sp

from .checking import accepted_names
from .optim import OPTIMIZERS, SCHEDULES, validate
from .printing import MathLatex, MathText, activation_definitions, loss_definition

FORM_TITLES = {
    "sample": "One sample (column vectors)",
    "batch": "A batch of N samples (the columns of X)",
}


def describe(network) -> str:
    """``2 -> 2 relu -> 1 ; mse`` for a network."""
    layers = []
    for layer in network.layers:
        act = layer.activation
        name = act.name if not act.params else f"{act.name}({', '.join(f'{k}={v}' for k, v in act.params)})"
        layers.append(f"{layer.units}" + ("" if act.is_identity else f" {name}") + (" residual" if layer.residual else ""))
    loss = network.loss
    loss_name = f"[{loss.formula}]" if loss.formula else (
        loss.name if not loss.params else f"{loss.name}({', '.join(f'{k}={v}' for k, v in loss.params)})")
    tail = "".join(f" ; {k}={v}" for k, v in (("l1", network.l1), ("l2", network.l2)) if v)
    return " -> ".join([str(network.inputs)] + layers) + f" ; {loss_name}" + tail


def shape_text(shape, latex: bool) -> str:
    rows, cols = shape
    times = r" \times " if latex else " × "
    return f"{sp.latex(rows) if latex else rows}{times}{sp.latex(cols) if latex else cols}"


def outline(derivation, latex: bool):
    """Blocks: ('heading', text) | ('para', text) | ('table', header, rows) | ('eq', n, lhs, rhs, reason)."""
    net = derivation.network
    math = (lambda s: f"${s}$") if latex else (lambda s: s)
    yield "title", f"Gradients of {net.name}"
    yield "para", (f"Network: {describe(net)}. Every derivative below comes from SymPy applied to the "
                   "definitions; each step is checked against SymPy's element-wise derivative of the "
                   "expanded network by chainrule's verifier.")
    yield "heading", "Notation"
    for form in ("sample", "batch"):
        sweep = derivation.sample if form == "sample" else derivation.batch
        printer = MathLatex({q.key: q.latex for q in sweep.quantities.values()}) if latex else \
            MathText({q.key: q.text for q in sweep.quantities.values()})
        rows = [(math(printer.doprint(q.symbol)), math(shape_text(q.shape, latex)) if q.shape else "scalar", q.meaning)
                for q in sweep.quantities.values()]
        yield "table", (FORM_TITLES[form], "symbol", "shape", "meaning"), rows
    yield "heading", "Definitions"
    for fz, dfz in activation_definitions(_distinct_activations(net), latex):
        yield "display", [fz, dfz]
    term, deriv = loss_definition(net.loss, latex)
    ell = r"\ell(\hat{y}, y)" if latex else "ℓ(ŷ, y)"
    dell = r"\frac{\partial \ell}{\partial \hat{y}}" if latex else "∂ℓ/∂ŷ"
    yield "para", f"Loss: {net.loss.title}. One element's term and its derivative:"
    yield "display", [f"{ell} = {term}", f"{dell} = {deriv}"]
    if any(not layer.activation.elementwise for layer in net.layers):
        yield "para", ("softmax acts on each column: " + math(r"\operatorname{softmax}(z)_i = e^{z_i} / \sum_k e^{z_k}"
                                                            if latex else "softmax(z)_i = exp(z_i) / Σ_k exp(z_k)") + ".")
    for form, sweep in (("sample", derivation.sample), ("batch", derivation.batch)):
        yield "heading", FORM_TITLES[form]
        names = {q.key: (q.latex if latex else q.text) for q in sweep.quantities.values()}
        printer = MathLatex(names) if latex else MathText(names)
        phase = None
        for step in sweep.steps:
            if step.phase != phase:
                phase = step.phase
                yield "subheading", {"forward": "Forward pass", "loss": "Loss", "backward": "Backward pass"}[phase]
            reason = step.explain({k: math(v) for k, v in names.items()})
            yield "eq", step.number, printer.doprint(step.target.symbol), printer.doprint(step.rhs), reason
    yield "heading", "Checking your own derivation"
    yield "para", ("chainrule check SPEC --wrt W2 --grad 'YOUR EXPRESSION' compares a hand-derived gradient "
                   "with these steps; in the per-sample convention it reads these names: "
                   + "; ".join(accepted_names(derivation, "sample")) + ".")
    yield from training_outline(net, latex)


def training_outline(net, latex: bool):
    """The optimizer's and the schedule's update rules, when the spec chooses them."""
    if not net.tables:
        return
    settings = validate(net.tables)
    opt = settings["optimizer"]
    kind = OPTIMIZERS[opt["type"]]
    yield "heading", "Training"
    values = ", ".join(f"{k} = {v}" for k, v in opt.items() if k != "type")
    yield "para", f"Optimizer: {kind.torch_name} ({values}), as torch.optim.{kind.torch_name} updates each parameter:"
    if latex:
        yield "display", list(kind.equations)
    schedule = settings["schedule"]
    if schedule:
        skind = SCHEDULES[schedule["type"]]
        values = ", ".join(f"{k} = {v}" for k, v in schedule.items() if k != "type")
        yield "para", (f"Learning-rate schedule: {skind.torch_name} ({values}), stepped once per epoch e"
                       + (", after a linear warm-up that trains epoch e < k at rate r0 (e + 1) / (k + 1)"
                          if schedule.get("warmup_epochs") else "") + ":")
        if latex:
            yield "display", list(skind.equations)
    train = settings["training"]
    shown = ", ".join(f"{k} = {v}" for k, v in train.items() if v is not None)
    yield "para", f"Training: {shown}."


def _distinct_activations(net):
    seen, out = set(), []
    for layer in net.layers:
        if layer.activation not in seen:
            seen.add(layer.activation)
            out.append(layer.activation)
    return out


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"),
                 ("^", r"\^{}"), ("->", r"$\to$"), ("<", r"$<$"), (">", r"$>$")):
        text = text.replace(a, b)
    return text


def _latex_text(text: str) -> str:
    """Escape prose but keep the $...$ math the outline put in it."""
    parts = text.split("$")
    return "$".join(part if i % 2 else _latex_escape(part) for i, part in enumerate(parts))


def latex_document(derivation) -> str:
    out = [r"\documentclass[11pt]{article}", r"\usepackage{amsmath,amssymb}", r"\usepackage[margin=2cm]{geometry}",
           r"\allowdisplaybreaks", r"\begin{document}"]
    for block in outline(derivation, latex=True):
        kind = block[0]
        if kind == "title":
            out.append(rf"\section*{{{_latex_escape(block[1])}}}")
        elif kind == "heading":
            out.append(rf"\subsection*{{{_latex_escape(block[1])}}}")
        elif kind == "subheading":
            out.append(rf"\paragraph{{{block[1]}}}")
        elif kind == "para":
            out.append(_latex_text(block[1]) + "\n")
        elif kind == "table":
            header, rows = block[1], block[2]
            out.append(rf"\noindent\textbf{{{header[0]}}}" + "\n\n" + r"{\renewcommand{\arraystretch}{1.5}\begin{tabular}{lll}" + "\n"
                       + " & ".join(rf"\textbf{{{h}}}" for h in header[1:]) + r" \\ \hline")
            out.extend(f"{a} & {b} & {_latex_escape(c)} " + r"\\" for a, b, c in rows)
            out.append(r"\end{tabular}}" + "\n")
        elif kind == "display":
            out.append(r"\begin{gather*}" + "\n" + " \\\\\n".join(block[1]) + "\n" + r"\end{gather*}")
        elif kind == "eq":
            number, lhs, rhs, reason = block[1:]
            out.append(r"\begin{equation}" + f"\n{lhs} = {rhs} \\tag{{{number}}}\n" + r"\end{equation}")
            out.append(r"{\small " + _latex_text(reason) + "}\n")
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def markdown_document(derivation) -> str:
    out = []
    for block in outline(derivation, latex=True):
        kind = block[0]
        if kind == "title":
            out.append(f"# {block[1]}\n")
        elif kind == "heading":
            out.append(f"## {block[1]}\n")
        elif kind == "subheading":
            out.append(f"**{block[1]}**\n")
        elif kind == "para":
            out.append(block[1] + "\n")
        elif kind == "table":
            header, rows = block[1], block[2]
            out.append(f"*{header[0]}*\n")
            out.append("| " + " | ".join(header[1:]) + " |\n|---|---|---|")
            out.extend(f"| {a} | {b} | {c} |" for a, b, c in rows)
            out.append("")
        elif kind == "display":
            out.extend(f"$$\n{line}\n$$\n" for line in block[1])
        elif kind == "eq":
            number, lhs, rhs, reason = block[1:]
            out.append(f"$$\n{lhs} = {rhs} \\tag{{{number}}}\n$$\n")
            out.append(f"({number}) {reason}.\n")
    return "\n".join(out)


def text_document(derivation) -> str:
    out = []
    for block in outline(derivation, latex=False):
        kind = block[0]
        if kind == "title":
            out.append(f"{block[1]}\n{'=' * len(block[1])}")
        elif kind == "heading":
            out.append(f"\n{block[1]}\n{'-' * len(block[1])}")
        elif kind == "subheading":
            out.append(f"  {block[1]}:")
        elif kind == "para":
            out.append(block[1])
        elif kind == "table":
            header, rows = block[1], block[2]
            out.append(f"  {header[0]}:")
            width = max(len(a) for a, _, _ in rows)
            swidth = max(len(b) for _, b, _ in rows)
            out.extend(f"    {a:<{width}}  {b:<{swidth}}  {c}" for a, b, c in rows)
        elif kind == "display":
            out.extend(f"    {line}" for line in block[1])
        elif kind == "eq":
            number, lhs, rhs, reason = block[1:]
            out.append(f"  ({number:>2})  {lhs} = {rhs}")
            out.append(f"        {reason}")
    return "\n".join(out) + "\n"
