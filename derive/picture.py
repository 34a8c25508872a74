"""A picture of the network: the graph the derivation walks (``derive.graph``), drawn as TikZ for the
LaTeX notes and as a Mermaid flowchart for the Markdown.

The picture is the one-sample graph: the chain x → z₁ → a₁ → … → ŷ → L left to right, each op's
parameters (W, b) above the value it makes, the target y below the loss, a residual path or a fused
loss's z → L as an arc below the chain, and the adjoint flowing back as dashed arrows: one for each
input an op's VJP gives a share (so a fused loss sends it straight to z), labelled with the adjoint's
symbol where it has one (δ₁). A value an op passes on unchanged (a hidden layer's identity) is drawn
once. Past ``ALL_COLUMNS`` columns the middle layers are drawn as one ellipsis node (the picture
then ``MAX_COLUMNS`` wide at most), so a deep
network stays as wide as a shallow one.
"""
import re
import unicodedata
from dataclasses import dataclass

import sympy as sp

#: The most columns of a picture whose middle layers are elided (the notes' page holds 10 at full size).
MAX_COLUMNS = 10
#: The most columns drawn whole: a network this wide is drawn smaller rather than cut (a layer norm
#: takes four columns, so the gallery's pre-norm block is 18).
ALL_COLUMNS = 20
#: The share of the text's width the TikZ picture may take.
FILL = 0.97
ELLIPSIS = "ellipsis"
SUBSCRIPT_DIGITS = dict(zip("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


@dataclass(frozen=True)
class Box:
    """A drawn node: ``key`` (a graph value's key, or ``ELLIPSIS``), its labels, its column and row
    (0 the chain, 1 above it, -1 below it) and its offset within the column (for W beside b)."""
    key: str
    latex: str
    text: str
    column: float
    row: int = 0
    offset: float = 0.0
    kind: str = "value"  # value, param, data, op (a value without a name of its own), ellipsis


@dataclass(frozen=True)
class Arrow:
    """An arrow from box ``source`` to box ``target`` (keys); ``adjoint``: the dashed backward one,
    ``label`` its adjoint's symbol (LaTeX, text) or None."""
    source: str
    target: str
    adjoint: bool = False
    label: tuple = None


def layer_of(value) -> int:
    """The top-level layer of a value (a residual block's inner layer is its block's)."""
    return value.layer[0] if isinstance(value.layer, tuple) else value.layer


def drawn_values(graph) -> list:
    """The graph's values as the picture draws them: every value except the output of an op that
    passes its input on unchanged (its consumers read the input) and a running statistic (batch
    norm's buffers, which the gradient never reads)."""
    return [v for v in graph.values if not _passed_on(graph, v) and v.role != "buffer"]


def _passed_on(graph, v) -> bool:
    node = graph.producer.get(v)
    return node is not None and passes_on(node)


def passes_on(node) -> bool:
    """An op whose output is its input, drawn once: a hidden layer's identity, a flatten (a reshape
    that keeps the quantity's name)."""
    return node.attrs.get("silent", False) or node.output.key == node.inputs[0].key


def diagram(sweep, max_columns: int = MAX_COLUMNS, names=None):
    """(boxes, arrows) of ``sweep``'s graph (the one-sample form), middle layers elided past ``max_columns``;
    ``names``: (LaTeX, text) names by key, a notation's (default: the sweep's own)."""
    names = names or {q.key: (q.latex, q.text) for q in sweep.quantities.values()}
    graph = sweep.graph
    alias = {}
    for node in graph.nodes:
        if passes_on(node):
            alias[node.output] = alias.get(node.inputs[0], node.inputs[0])
    real = lambda v: alias.get(v, v)  # noqa: E731
    side = {v for v in graph.values if _from_params_alone(graph, v)}
    target = next(n for n in graph.nodes if n.op.name == "loss").inputs[1]
    order = {v: graph.producer[v].index if v in graph.producer else -1 for v in graph.values}
    chain = sorted((v for v in drawn_values(graph) if v.role not in ("param", "mask") and v not in side
                    and v is not target), key=order.get)
    hidden = _hidden_layers(chain, max_columns)
    boxes, column = {}, 0
    for v in chain:
        if layer_of(v) in hidden:
            if ELLIPSIS not in boxes:
                first, last = min(hidden), max(hidden)
                boxes[ELLIPSIS] = Box(ELLIPSIS, rf"\cdots\ \text{{layers {first}--{last}}}\ \cdots",
                                      f"… layers {first}–{last} …", column + 0.5, kind=ELLIPSIS)
                column += 2  # its label is two columns wide
            continue
        boxes[v.key] = Box(v.key, *_labels(graph, v, names), column, kind="value" if v.named else "op")
        column += 1
    shown = lambda v: ELLIPSIS if layer_of(v) in hidden and v.role != "data" else v.key  # noqa: E731
    arrows, receives = [], _receives(sweep)
    for node in graph.nodes:
        if passes_on(node):
            continue
        out = shown(node.output)
        leaves = [v for v in node.inputs if v.role in ("param", "mask") or v is target]
        if node.output in side:  # a penalty: the row above the parameters, over the loss it joins
            column_of = next(boxes[shown(c.output)].column for c in graph.consumers[node.output])
            place = sum(1 for b in boxes.values() if b.row == 2)
            boxes[out] = Box(out, *_labels(graph, node.output, names), column_of, 2, place - 0.5, kind="op")
        for i, v in enumerate(leaves):
            if v.key in boxes or out == ELLIPSIS:
                continue
            row = -1 if v.role == "data" else 1
            spread = (i - (len(leaves) - 1) / 2) * 0.9 if row == 1 else 0.0
            boxes[v.key] = Box(v.key, *_labels(graph, v, names), boxes[out].column, row, spread,
                               kind="data" if v.role == "data" else "param")
        shares = _shares(sweep, node) if node.output in receives else set()
        for i, v in enumerate(node.inputs):
            source = shown(real(v))
            if source == out or source not in boxes:
                continue
            arrows.append(Arrow(source, out))
            if i in shares and v in receives:
                key = sweep.adjoint_key(real(v))
                q = names.get(key) if v.role != "param" else None
                label = (q[0], _unicode(q[1])) if q is not None else None
                arrows.append(Arrow(out, source, adjoint=True, label=label))
    return list(boxes.values()), list(dict.fromkeys(arrows))


def _from_params_alone(graph, v) -> bool:
    """A value computed from parameters alone (a penalty term): drawn above the chain, not on it."""
    node = graph.producer.get(v)
    return node is not None and all(u.role == "param" for u in node.inputs)


def _hidden_layers(chain, max_columns) -> set:
    """The layers drawn as the ellipsis: none when the chain fits, else the middle ones (the first
    layers that fit and the last layer stay)."""
    layers = sorted({layer_of(v) for v in chain if v.role != "data"})
    columns = {l: sum(1 for v in chain if layer_of(v) == l and v.role != "data") for l in layers}
    if sum(columns.values()) + 1 <= max(max_columns, ALL_COLUMNS) or len(layers) < 3:
        return set()
    last = layers[-1]
    budget = max_columns - 2 - columns[last]  # x, the ellipsis, the last layer (its output and the loss)
    kept = []
    for l in layers[:-1]:
        if columns[l] > budget and kept:
            break
        kept.append(l)
        budget -= columns[l]
    hidden = set(layers[len(kept):-1])
    return hidden if len(hidden) > 1 else set()


def _receives(sweep) -> set:
    """The values the adjoint reaches: from the loss back through each share an op's VJP gives an
    input the loss depends on through a parameter (as ``derive.sweep`` sums them)."""
    needs, reached = sweep._needs_adjoint(), {sweep.loss}
    for node in reversed(sweep.graph.nodes):
        if node.output in reached:
            reached.update(v for i, v in enumerate(node.inputs) if i in _shares(sweep, node) and v in needs)
    return reached


def _shares(sweep, node) -> set:
    """The inputs (by index) the op's VJP gives a share of the output's adjoint."""
    out = node.output
    g = sp.MatrixSymbol("g", *out.shape) if out.shape else sp.Symbol("g")
    ins = [sweep.expr[v] for v in node.inputs]
    return set(node.op.vjp(node, g, ins, sweep.expr[out]))


def _labels(graph, v, names) -> tuple:
    """(LaTeX, text) labels of a value: its symbol, or for a value without a name, its op's."""
    if v.named:
        latex, text = names[v.key]
        return latex, _unicode(text)
    node = graph.producer[v]
    act = node.attrs.get("act")
    if act is not None:
        return act.latex, act.name
    return rf"\text{{{node.op.name}}}", node.op.name


def _unicode(text: str) -> str:
    """``z1`` -> ``z₁``, ``W3.1`` -> ``W₃.₁``, ``dL/da1`` -> ``∂L/∂a₁``: a trailing layer index as
    subscript digits."""
    text = re.sub(r"^dL/d", "∂L/∂", text)
    return re.sub(r"(\d+(?:\.\d+)*)$", lambda m: "".join(SUBSCRIPT_DIGITS.get(c, c) for c in m[1]), text)


# -- TikZ ------------------------------------------------------------------------------------------

#: The TikZ layout, in cm at full size: the gap between two values on the chain (wider where an
#: adjoint's label sits in it), between two boxes side by side, and the rows' heights.
GAP_CM, SIDE_CM, LABEL_PAD_CM = 0.45, 0.12, 0.22
ROW_CM = {2: 2.75, 1: 1.5, 0: 0.0, -1: -1.5}


def _chars(text: str) -> tuple:
    """(letters, scripts) of a label's text: subscript digits and dots after one count as scripts."""
    text = "".join(c for c in text if not unicodedata.combining(c))
    scripts = sum(1 for c in text if c in SUBSCRIPT_DIGITS.values() or c == "." and text.index(c) > 0)
    return len(text) - scripts, scripts


def box_width(b) -> float:
    """About how wide ``b`` prints at full size, in cm (letters of \\small, scripts smaller, its frame)."""
    letters, scripts = _chars(b.text)
    if b.kind in ("op", "ellipsis"):  # \scriptsize
        return 0.15 * letters + 0.11 * scripts + (0.2 if b.kind == "op" else 0.0)
    return 0.18 * letters + 0.13 * scripts + 0.25


def label_width(text: str) -> float:
    """About how wide an adjoint's \\scriptsize label prints: a fraction as its denominator."""
    letters, scripts = _chars(text.split("/")[-1])
    return 0.16 * letters + 0.12 * scripts


def _side_by_side(boxes) -> float:
    """The width of ``boxes`` in a row, ``SIDE_CM`` apart (0 for none)."""
    return sum(box_width(b) for b in boxes) + SIDE_CM * max(len(boxes) - 1, 0)


def layout(boxes, arrows) -> tuple:
    """({key: (x, y)} in cm at full size, {key of a chain value: the middle of the gap after it}): the
    chain left to right, each value given the width of the boxes above it (its parameters side by
    side, centred over it) so no box, arrow or label meets another: the parameters' arrows stay over
    their value, and a gap that holds an adjoint's label is wider than the label."""
    chain = sorted((b for b in boxes if b.row == 0), key=lambda b: b.column)
    over = {}
    for b in boxes:
        if b.row == 1:
            host = min(chain, key=lambda c: abs(c.column - b.column))
            over.setdefault(host.key, []).append(b)
    slot = {c.key: max(box_width(c), _side_by_side(over.get(c.key, ()))) for c in chain}
    labelled = {}
    for a in arrows:
        ends = {a.source, a.target}
        for left, right in zip(chain, chain[1:]):
            if a.adjoint and a.label and ends == {left.key, right.key}:
                labelled[left.key] = label_width(a.label[1]) + LABEL_PAD_CM
    at, gaps, x = {}, {}, 0.0
    for i, c in enumerate(chain):
        if i:
            previous = chain[i - 1]
            gap = max(GAP_CM, labelled.get(previous.key, 0.0))
            gaps[previous.key] = x + slot[previous.key] / 2 + gap / 2
            x += slot[previous.key] / 2 + gap + slot[c.key] / 2
        at[c.key] = (x, ROW_CM[0])
        params = over.get(c.key, ())
        left = x - _side_by_side(params) / 2
        for p in sorted(params, key=lambda p: p.offset):
            at[p.key] = (left + box_width(p) / 2, ROW_CM[1])
            left += box_width(p) + SIDE_CM
    nearest = lambda b: at[min(chain, key=lambda c: abs(c.column - b.column)).key][0]  # noqa: E731
    for b in boxes:
        if b.row == -1:
            at[b.key] = (nearest(b), ROW_CM[-1])
    high = sorted((b for b in boxes if b.row == 2), key=lambda b: b.offset)
    if high:  # the penalties, side by side over the loss they join
        left = nearest(high[0]) - _side_by_side(high) / 2
        for b in high:
            at[b.key] = (left + box_width(b) / 2, ROW_CM[2])
            left += box_width(b) + SIDE_CM
    return at, gaps


def tikz(sweep, names=None) -> str:
    """The picture as a ``tikzpicture`` (TikZ alone, no library), scaled down to the text width of
    whatever document holds it where that is narrower; where TikZ is not loaded (a host document's
    preamble without it), a sentence saying so instead."""
    boxes, arrows = diagram(sweep, names=names)
    by_key = {b.key: b for b in boxes}
    at, gaps = layout(boxes, arrows)
    lefts = [at[b.key][0] - box_width(b) / 2 for b in boxes]
    rights = [at[b.key][0] + box_width(b) / 2 for b in boxes]
    natural = (max(rights) - min(lefts)) * 72.27 / 2.54  # pt
    lines = [r"\ifdefined\tikzpicture", r"\begin{center}",
             # drawn smaller, text and all, where the text is narrower than the picture
             rf"\pgfmathsetmacro\chainrulescale{{min(1, {FILL}*\linewidth/{natural:.1f})}}",
             r"\begin{tikzpicture}[x=1cm, y=1cm, scale=\chainrulescale, transform shape, >=stealth, "
             r"font=\small,",
             r"  value/.style={draw, rounded corners, minimum height=6mm, inner sep=2pt},",
             r"  param/.style={draw, fill=black!6, minimum height=5mm, inner sep=2pt},",
             r"  op/.style={draw, circle, inner sep=1pt, font=\scriptsize},",
             r"  ellipsis/.style={font=\scriptsize},",
             r"  adjoint/.style={->, dashed, red!70!black}]"]
    names = {b.key: f"n{i}" for i, b in enumerate(boxes)}
    for b in boxes:
        style = {"value": "value", "data": "value", "ellipsis": "ellipsis", "param": "param", "op": "op"}[b.kind]
        x, y = at[b.key]
        lines.append(rf"\node[{style}] ({names[b.key]}) at ({x:.2f},{y:.2f}) {{${b.latex}$}};")
    for a in arrows:
        s, t = by_key[a.source], by_key[a.target]
        span = abs(s.column - t.column)
        if not a.adjoint:
            bend = " to[bend right=40]" if s.row == t.row == 0 and span > 1.5 else " --"
            lines.append(rf"\draw[->] ({names[a.source]}){bend} ({names[a.target]});")
            continue
        if s.row == t.row == 0 and span <= 1.5:
            # to the value before: a low arc over the forward arrow, as high wherever the values stand,
            # under the parameters' arrows, its label in the gap that ``layout`` made for it
            pos = (at[a.source][0] - gaps[a.target]) / (at[a.source][0] - at[a.target][0])
            label = rf" node[pos={pos:.2f}, above, font=\scriptsize] {{${a.label[0]}$}}" if a.label else ""
            lines.append(rf"\draw[adjoint] ({names[a.source]}.north west) .. controls +(-0.15,0.3) and +(0.15,0.3) .."
                         rf"{label} ({names[a.target]}.north east);")
            continue
        if s.row == t.row == 0:
            bend, where = "bend left=60", "below"  # a skip: below, under its forward arc
        else:
            bend, where = "bend right=25", "left"
        label = rf" node[{where}, font=\scriptsize] {{${a.label[0]}$}}" if a.label else ""
        lines.append(rf"\draw[adjoint] ({names[a.source]}) to[{bend}]{label} ({names[a.target]});")
    lines += [r"\end{tikzpicture}", r"\end{center}", r"\else",
              r"\noindent(The picture of the network needs the tikz package.)", r"\fi"]
    return "\n".join(lines)


# -- Mermaid ---------------------------------------------------------------------------------------

def mermaid(sweep, names=None) -> str:
    """The picture as a Mermaid flowchart (a fenced ``mermaid`` block, which GitHub renders)."""
    boxes, arrows = diagram(sweep, names=names)
    names = {b.key: f"n{i}" for i, b in enumerate(boxes)}
    shape = {"value": '["{}"]', "data": '["{}"]', "param": '[/"{}"/]', "op": '(("{}"))', "ellipsis": '["{}"]'}
    lines = ["```mermaid", "flowchart LR"]
    lines += [f"    {names[b.key]}{shape[b.kind].format(b.text)}" for b in boxes]
    # the forward arrows first, so the layout ranks the values by them and the dashed ones run back
    ordered = [a for a in arrows if not a.adjoint] + [a for a in arrows if a.adjoint]
    for a in ordered:
        label = f'|"{a.label[1]}"|' if a.label else ""
        lines.append(f"    {names[a.source]} {'-.->' if a.adjoint else '-->'}{label} {names[a.target]}")
    dashed = [str(i) for i, a in enumerate(ordered) if a.adjoint]
    params = [names[b.key] for b in boxes if b.kind == "param"]
    if params:
        lines += ["    classDef param fill:#eee,stroke:#888", f"    class {','.join(params)} param"]
    if dashed:
        lines.append(f"    linkStyle {','.join(dashed)} stroke:#b22,color:#b22")
    lines.append("```")
    return "\n".join(lines)


# -- text ------------------------------------------------------------------------------------------

def text_picture(sweep, names=None) -> str:
    """The picture for a terminal: the chain on one line, then what joins it and the adjoint's path back."""
    boxes, arrows = diagram(sweep, names=names)
    by_key = {b.key: b for b in boxes}
    chain = sorted((b for b in boxes if b.row == 0), key=lambda b: b.column)
    lines = ["    " + " → ".join(b.text for b in chain)]
    joins = {}
    for a in arrows:
        source, target = by_key[a.source], by_key[a.target]
        if not a.adjoint and (source.row != 0 or abs(source.column - target.column) > 1.5):
            joins.setdefault(target.text, []).append(source.text)
    if joins:
        lines.append("    also into " + "; ".join(f"{t}: {', '.join(s)}" for t, s in joins.items()))
    back = [f"{by_key[a.source].text} ⇢ {by_key[a.target].text}" + (f" ({a.label[1]})" if a.label else "")
            for a in sorted((a for a in arrows if a.adjoint), key=lambda a: -by_key[a.source].column)]
    lines.append("    back: " + ", ".join(back))
    return "\n".join(lines)
