"""Read a person's gradient expression, LaTeX or plain math, into a small tree. Nothing is run.

A hand-written tokenizer and recursive-descent parser; the tree holds only names, numbers and
operators, so hostile text (``__import__('os')...``) can only be rejected. Names are kept as
written and normalised (``W_{2}``, ``W2``, ``W^{2}``, ``W^{[2]}`` -> ``w2``; ``\\delta_1``,
``delta1``, ``δ1`` -> ``delta1``; ``\\hat{y}``, ``yhat``, ``ŷ`` -> ``yhat``); ``derive.check``
binds them to the derivation's quantities. A layer index in the letter l (``W^{l+1}``, ``W_{l+1}``,
``W^{[l+1]}``, ``\\delta^{(l)}``, ``a^{\\ell-1}``) or L, the last layer (``z^L``), is kept apart as a
suffix: ``w[l+1]``, ``a[l-1]``, ``z[L]``; ``derive.check`` instantiates it.

Precedence, loosest first: ``+ -``; ``\\odot \\circ ⊙`` (element-wise) and ``\\oslash ⊘`` (element-wise
division); ``* / @ \\cdot \\times`` and juxtaposition (left to right, as in Python); unary minus; postfix
``^T ^\\top .T ᵀ ' **k``.

Before the tokenizer, pylatexenc reads the LaTeX (``rewrite``): typographic wrappers (``\\boldsymbol``,
``\\mathbf``, ``\\LARGE``), colours, tags and comments go, a file's own macros are expanded. Costs
may be named C, J, L, ``\\mathcal{L}``, E, with subscripts and arguments (``C_0``, ``J(W,b;x,y)``);
``\\nabla_a C`` is the output activation's gradient. Component form (``w^l_{jk}``, ``\\delta^l_j``,
``\\sum_k``) is lowered to the matrix it is entry by entry (``lower``), so the tree keeps the kinds below.
A sum up to the sample count (``\\sum_{i=1}^n h_i δ_i``, also ^m, ^N) is over the samples, its letter a
sample's mark. Goodfellow's ``\\lambda \\nabla_{W} \\Omega(\\theta)`` is the penalty's share, Nielsen's
``\\Sigma'(z)`` the diagonal matrix of σ'(z), ``dG^l(Z^l)`` (d and an activation's letter) its derivative;
``\\ldots`` in a product leaves factors out (``NotAGradient``).
"""
import functools
import re
from dataclasses import dataclass, field

from pylatexenc import latexwalker as lw
from pylatexenc.macrospec import MacroSpec

from .. import limits
from ..errors import ChainruleError

MAX_LENGTH = 2000
MAX_DEPTH = 60
MAX_NODES = 300

# Activation names a person may apply (or differentiate, with a prime) to an expression.
ACTIVATION_ALIASES = {
    "sigma": "sigmoid", "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "leakyrelu": "leaky_relu",
    "lrelu": "leaky_relu", "elu": "elu", "softplus": "softplus", "gelu": "gelu", "silu": "silu",
    "swish": "silu", "softmax": "softmax", "id": "identity", "identity": "identity",
}
# Letters that stand for "the activation of the layer this is applied to".
GENERIC_ACTIVATIONS = ("f", "g", "phi", "varphi", "act")
_IGNORED_COMMANDS = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "displaystyle",
                     "mathbf", "boldsymbol", "bm", "mathrm", "mathit", "vec", "operatorname", "mathsf", ",", ";", "!",
                     "quad", "qquad", "textstyle", "scriptstyle", "limits", "nolimits", "nonumber", "notag",
                     "LARGE", "Large", "large", "small", "huge", "Huge", "normalsize", "tiny", "cal", ":", " ", "space"}
_GREEK = {"delta": "delta", "Delta": "delta", "sigma": "sigma", "phi": "phi", "varphi": "phi", "partial": "partial",
          "gamma": "gamma", "beta": "beta", "mu": "mu",  # γ, β, μ (and σ): layer norm's quantities
          "lambda": "lambda",  # a penalty's weight (Goodfellow's J = L + λΩ(θ))
          "Sigma": "diag"}  # Nielsen's Σ'(z): the diagonal matrix of σ'(z)
_UNICODE = {"\\bigodot": r" \odot ", "δ": r" \delta", "Δ": r" \delta", "σ": r" \sigma", "⊙": r" \odot ",
            "∘": r" \circ ", "·": r" \cdot ", "×": r" \times ", "⊘": r" \oslash ", "ᵀ": "^T", "ŷ": " yhat ", "Ŷ": " yhat ", "∂": r" \partial ",
            "Σ": r" \sum ", "′": "'", "−": "-", "φ": r" \phi ", "ℓ": " l ", "γ": r" \gamma", "β": r" \beta",
            "μ": r" \mu", "\u0302": "hat", "∇": r" \nabla ", "∑": r" \sum ", "λ": r" \lambda ", "’": "'",
            "Ω": r" \Omega "}  # x̂: x and a combining hat
# The ways a prime is written, all read as "'": \sigma^{\prime}, \sigma^\prime, f^{'}.
_PRIMES = re.compile(r"\^\s*\{\s*(?:\\prime|')\s*\}|\^\s*\\prime(?![A-Za-z])")
# A cost's name in a calligraphic or script font (\mathcal{L}, {\cal C}) is the plain letter.
_CALLIGRAPHIC = re.compile(r"\\(?:mathcal|mathscr)\s*\{\s*([A-Za-z])\s*\}|\\cal\s+([A-Za-z])")
# Words a superscript may be written with in plain math (z^hat); any other unbraced superscript is one
# character, as in LaTeX (\delta_j^La_k is \delta_j^L a_k). Subscripts keep words (A_prev, a_min).
_SCRIPT_WORDS = {"prime", "hat", "top", "in", "out"}
_ELL = re.compile(r"\\ell(?![A-Za-z])")
# A layer superscript or subscript: a number, or the letter l (any layer a rule is checked at) or L (the
# last layer) with an offset; in brackets or parentheses, perhaps followed by a transpose or a prime.
LAYER_MARK = re.compile(r"[\[(]?(?P<layer>\d+|[lL](?:[+-]\d{1,2})?)[\])]?(?P<mark>T|top|prime|')?")
# The names of attention's quantities whose gradient δQ, \delta S_h, \mathrm{d}{V} name (dQ, dS_h, dV).
ATTENTION_DELTA = r"[QKVSAPO]"
WIDTH = "width"  # d_k is read as the name widthk, which dK (dk) cannot be
# Letters that index the entries of a vector or matrix (w^l_{jk}, \delta^l_j); l and L are layers.
INDEX_LETTERS = "ijkpqrs"
_COMPONENTS = re.compile(rf"[{INDEX_LETTERS}](?:,?[{INDEX_LETTERS}])?")
# The upper limits of a sum over the samples (\sum_{i=1}^n, \sum_{i=1}^m): the batch sizes' names.
SAMPLE_COUNTS = ("n", "m", "N")
# A loss's names: C (Nielsen), J (Ng, UFLDL, Goodfellow), L and \mathcal{L}, E (error), l (\ell).
COSTS = ("C", "J", "L", "E", "l")

_FONT = re.compile(r"\\(mathbf|boldsymbol|bm|mathrm|mathit|vec|operatorname|mathsf|text|textrm)\s*\{([A-Za-z0-9]*)\}")
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<num>\d+\.\d*|\.\d+|\d+)
  | (?P<cmd>\\[A-Za-z]+|\\[{}|,;!: ])
  | (?P<id>[A-Za-z][A-Za-z0-9]*)
  | (?P<op>\*\*|\.T\b|[-+*/@^_'(){}\[\],;:=<>.])
""", re.VERBOSE)


class NotAGradient(ChainruleError):
    """An equation that is not about a gradient of the loss (a Jacobian entry, an operator); the reader
    skips it and says why."""


@dataclass
class Node:
    """One node of the tree: ``kind`` and ``args`` (see ``Parser``), ``text`` as the person wrote it."""
    kind: str
    args: tuple
    text: str = field(default="", compare=False)

    def __repr__(self):
        return f"{self.kind}{self.args!r}"


def tokenize(text: str) -> list:
    """(kind, value, start, end) tuples; kinds: num, id, cmd, op."""
    if len(text) > MAX_LENGTH:
        raise ChainruleError(f"the expression is longer than {MAX_LENGTH} characters; shorten it")
    for char, replacement in _UNICODE.items():
        text = text.replace(char, replacement)
    text = _ELL.sub(" l ", text)
    text = _PRIMES.sub("'", text).replace(r"\_", "_").replace(r"\*", "*")
    text = _CALLIGRAPHIC.sub(lambda m: f" {m.group(1) or m.group(2)} ", text)
    text = text.replace(r"\mathbf{1}", r"\mathbb{1}").replace(r"\mathbf 1", r"\mathbb{1}")
    text = _FONT.sub(lambda m: f" {m.group(2)} ", text)
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ChainruleError(f"cannot read '{text[pos:pos + 10]}' in '{_short(text)}'; use names like W_2, "
                                 f"\\delta_1, h_1, operators + - * @ \\odot ^T .T and parentheses")
        pos = m.end()
        kind = m.lastgroup
        if kind == "space":
            continue
        value = m.group()
        if kind == "id" and len(value) > 1 and tokens and tokens[-1][:2] == ("op", "^") \
                and tokens[-1][3] == m.start() and value not in _SCRIPT_WORDS:
            value, pos = value[0], m.start() + 1
        if kind == "cmd":
            value = value[1:]
            if value in _IGNORED_COMMANDS:
                continue
            if value in "{}":
                kind, value = "op", "(" if value == "{" else ")"
        if kind == "op" and value in "{}":
            value = "(" if value == "{" else ")"
        tokens.append((kind, value, m.start(), pos))
    return tokens, text


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def parse(text: str) -> Node:
    """The tree of a person's expression; ChainruleError when it cannot be read. Entries written in
    index form are read with their free indices in alphabetical order (rows first)."""
    return lower(read_tree(text), None)


def parse_equation(lhs: str, rhs: str):
    """The trees of both sides of ``lhs = rhs``; an index-form right side is oriented by the left's
    indices (\\frac{\\partial C}{\\partial w^l_{jk}} = a^{l-1}_k \\delta^l_j: j the rows, k the columns)."""
    left, right = read_tree(lhs), read_tree(rhs)
    layout = None
    if left.kind == "entry":
        layout = left.args[1] + (None,) * (2 - len(left.args[1]))
        left = left.args[0]
    return lower(left, None), lower(right, layout)


def read_tree(text: str) -> Node:
    """The tree of one side as written, entries in index form not yet lowered."""
    if not isinstance(text, str) or not text.strip():
        raise ChainruleError("the expression is empty; write it like '\\delta_2 h_1^\\top' or 'delta2 @ h1.T'")
    tokens, clean = tokenize(rewrite(text))
    parser = Parser(tokens, clean)
    node = parser.expr()
    if parser.pos != len(tokens):
        _, value, start, _ = tokens[parser.pos]
        raise ChainruleError(f"unexpected '{value}' at character {start + 1} of '{_short(clean)}'")
    _check_size(node)
    return node


# -- LaTeX through pylatexenc: wrappers, sizes, colours and a file's own macros ---------------------
# Typographic wrappers whose argument is the thing itself (\boldsymbol{\delta} is \delta).
_WRAPPERS = {"boldsymbol", "bm", "mathbf", "mathrm", "mathit", "mathsf", "mathbfit", "pmb", "vec", "textbf", "text",
             "textrm", "textit", "mathnormal", "operatorname", "mathcal", "mathscr", "overrightarrow", "underline",
             "displaylines"}
# Commands dropped with their arguments: colours, labels, equation tags.
_DROPPED = {"color", "label", "tag", "eqref", "nonumber", "notag", "hspace", "vspace", "phantom"}
_EXTRA_SPECS = [("boldsymbol", "{"), ("bm", "{"), ("pmb", "{"), ("operatorname", "*{"), ("mathscr", "{"),
                ("mathbfit", "{"), ("tag", "*{"), ("eqref", "{"), ("overrightarrow", "{"), ("phantom", "{"),
                ("displaylines", "{")]
MAX_BRACES = 40  # nesting of {...} and \begin...\end; pylatexenc recurses on it
_NESTING = re.compile(r"(?<!\\)[{}]|\\begin|\\end(?![A-Za-z])")


@functools.lru_cache(maxsize=8)
def _context(arities: tuple):
    """pylatexenc's LaTeX context with the wrappers above and the file's macros ((name, count), ...)."""
    db = lw.get_default_latex_context_db()
    specs = [MacroSpec(name, args) for name, args in _EXTRA_SPECS]
    specs += [MacroSpec(name, "{" * count) for name, count in arities]
    db.add_context_category("chainrule", macros=specs, prepend=True)
    return db


def rewrite(text: str, macros=None, budget=None) -> str:
    """``text`` with typographic wrappers unwrapped, colours, tags and comments dropped, and ``macros``
    ({name: (argument count, body)}, from \\newcommand or \\def) expanded; ``budget`` ([expansions, nesting],
    shared by a document's pieces) is held to limits.MACRO_EXPANSIONS and MACRO_NESTING. pylatexenc
    tokenizes; nothing is run."""
    depth = 0
    for m in _NESTING.finditer(text):
        depth += 1 if m.group() in ("{", "\\begin") else -1
        if depth > MAX_BRACES:
            raise ChainruleError(f"the expression nests braces or environments more than {MAX_BRACES} deep; "
                                 f"simplify it")
    if "\\" not in text and "%" not in text:
        return text
    budget = budget if budget is not None else [0, 0]
    arities = tuple(sorted((name, count) for name, (count, _) in (macros or {}).items()))
    try:
        nodes = lw.LatexWalker(text, latex_context=_context(arities), tolerant_parsing=True).get_latex_nodes()[0]
    except RecursionError:  # a nesting the count above does not see (pylatexenc recurses on it)
        raise ChainruleError(f"'{_short(text)}' nests too deeply to read; simplify it") from None
    return "".join(_emit(node, macros or {}, budget) for node in nodes)


def _emit(node, macros, budget) -> str:
    if node is None:
        return ""
    if isinstance(node, lw.LatexCharsNode):
        return node.chars
    if isinstance(node, lw.LatexCommentNode):
        return node.comment_post_space if "\n" in node.comment_post_space else " "
    if isinstance(node, lw.LatexSpecialsNode):
        return node.specials_chars
    if isinstance(node, (lw.LatexGroupNode, lw.LatexMathNode)):
        inner = "".join(_emit(n, macros, budget) for n in node.nodelist)
        return node.delimiters[0] + inner + node.delimiters[1]
    if isinstance(node, lw.LatexEnvironmentNode):
        inner = "".join(_emit(n, macros, budget) for n in node.nodelist)
        return f"\\begin{{{node.environmentname}}}{inner}\\end{{{node.environmentname}}}"
    if not isinstance(node, lw.LatexMacroNode):
        return node.latex_verbatim()
    name = node.macroname
    args = [a for a in (node.nodeargd.argnlist if node.nodeargd else []) if a is not None]
    if name in macros:
        return _expand(name, args, macros, budget) + node.macro_post_space
    if name in _DROPPED:
        return " "
    if name == "textcolor" and args:
        return " " + _argument(args[-1], macros, budget) + " "
    if name in _WRAPPERS and args:
        inner = _argument(args[-1], macros, budget)
        if inner.strip() == "1" and name in ("mathbf", "boldsymbol", "bm"):
            return r"\mathbb{1}"
        if name in ("mathcal", "mathscr"):
            return " " + inner + " "
        simple = re.fullmatch(r"\s*(\\?[A-Za-z]+|\d+)\s*", inner)
        return f" {inner.strip()} " if simple or name.startswith("text") else "{" + inner + "}"
    out = "\\" + name + node.macro_post_space
    for arg in args:
        text = _emit(arg, macros, budget)
        out += text if isinstance(arg, lw.LatexGroupNode) else "{" + text + "}"
    return out


def _argument(node, macros, budget) -> str:
    if isinstance(node, lw.LatexGroupNode):
        return "".join(_emit(n, macros, budget) for n in node.nodelist)
    return _emit(node, macros, budget)


def _expand(name, args, macros, budget) -> str:
    budget[0] += 1
    if budget[1] >= limits.MACRO_NESTING:
        raise ChainruleError(f"the macro \\{name} expands inside itself more than {limits.MACRO_NESTING} deep "
                             f"(MACRO_NESTING); a macro cannot use itself")
    if budget[0] > limits.MACRO_EXPANSIONS:
        raise ChainruleError(f"the file's macros expand more than {limits.MACRO_EXPANSIONS} times "
                             f"(MACRO_EXPANSIONS); define fewer or simpler macros")
    count, body = macros[name]
    values = [_argument(a, macros, budget) for a in args[:count]]
    body = re.sub(r"#([1-9])", lambda m: values[int(m.group(1)) - 1] if int(m.group(1)) <= len(values) else "",
                  body)
    if len(body) > limits.FORMULA_CHARS * 4:
        raise ChainruleError(f"the macro \\{name} expands to more than {limits.FORMULA_CHARS * 4} characters")
    budget[1] += 1
    try:
        return " " + rewrite(body, macros, budget) + " "
    finally:
        budget[1] -= 1


# -- index (component) form, lowered to matrices -----------------------------------------------------
class _Lowered:
    """A lowered subtree and the index letters of its rows and columns (None: no index there)."""

    def __init__(self, node, rows=None, cols=None):
        self.node, self.rows, self.cols = node, rows, cols

    @property
    def free(self) -> set:
        return {i for i in (self.rows, self.cols) if i}

    def oriented(self, rows, cols) -> Node:
        if (self.rows, self.cols) == (rows, cols):
            return self.node
        if (self.cols, self.rows) == (rows, cols):
            return Node("T", (self.node,), self.node.text)
        raise ChainruleError(f"'{self.node.text}' has the indices {_indices(self)}, not {_indices(_Lowered(None, rows, cols))}")


def _indices(part) -> str:
    return ", ".join(sorted(part.free)) or "none"


def _has_entries(node) -> bool:
    return node.kind in ("entry", "isum") or any(_has_entries(a) for a in node.args if isinstance(a, Node))


def lower(tree: Node, layout) -> Node:
    """``tree`` with every entry in index form (w^l_{jk}, \\sum_k) rewritten as the matrix it is entry by
    entry; ``layout`` is the (rows, columns) index letters of the left side, None for alphabetical order."""
    if not _has_entries(tree):
        return tree
    part = _lower(tree)
    want = tuple(layout) if layout else tuple((sorted(part.free) + [None, None])[:2])
    if part.free != {i for i in want if i}:
        raise ChainruleError(f"the free indices of '{tree.text}' ({_indices(part)}) are not those of its left side "
                             f"({_indices(_Lowered(None, *want))})")
    if want[1] is None and part.rows is None and part.cols == want[0]:
        return Node("T", (part.node,), tree.text)
    return part.oriented(*want)


def _lower(node: Node) -> _Lowered:
    kind = node.kind
    if not _has_entries(node):
        return _Lowered(node)
    if kind == "entry":
        inner, letters = node.args
        return _Lowered(inner, letters[0], letters[1] if len(letters) > 1 else None)
    if kind == "isum":
        return _lower_sum(node)
    if kind in ("neg", "T", "pow"):
        part = _lower(node.args[0])
        if kind == "T":
            return _Lowered(part.node, part.cols, part.rows)
        return _Lowered(Node(kind, (part.node,) + node.args[1:], node.text), part.rows, part.cols)
    if kind == "act":
        part = _lower(node.args[2])
        return _Lowered(Node("act", node.args[:2] + (part.node,), node.text), part.rows, part.cols)
    if kind in ("add", "sub"):
        a, b = (_lower(x) for x in node.args)
        if a.free and b.free and a.free != b.free:
            raise ChainruleError(f"the terms of '{node.text}' have different free indices ({_indices(a)}; {_indices(b)})")
        shape = a if a.free else b
        parts = [x.oriented(shape.rows, shape.cols) if x.free else x.node for x in (a, b)]
        return _Lowered(Node(kind, tuple(parts), node.text), shape.rows, shape.cols)
    if kind in ("mul", "had", "div"):
        return _product(_lower(node.args[0]), _lower(node.args[1]), node)
    raise ChainruleError(f"'{node.text}' mixes index form with an operation that has no index form")


def _product(a: _Lowered, b: _Lowered, node: Node) -> _Lowered:
    """Entry by entry, a product of two indexed factors: element-wise when they share their indices, an
    outer product when they share none, a broadcast when one's indices are among the other's."""
    kind = node.kind
    how = node.args[2] if kind == "mul" else None
    if not a.free or not b.free:
        args = (a.node, b.node) + ((how,) if kind == "mul" else ())
        shape = a if a.free else b
        return _Lowered(Node(kind, args, node.text), shape.rows, shape.cols)
    if kind == "div" and a.free != b.free:
        raise ChainruleError(f"'{node.text}' divides entries with different indices")
    if a.free == b.free:
        op = "div" if kind == "div" else "had"
        return _Lowered(Node(op, (a.node, b.oriented(a.rows, a.cols)), node.text), a.rows, a.cols)
    if not a.free & b.free and len(a.free) == len(b.free) == 1:
        (i,), (j,) = a.free, b.free
        outer = Node("mul", (a.oriented(i, None), Node("T", (b.oriented(j, None),), node.text), "matmul"), node.text)
        return _Lowered(outer, i, j)
    small, big = (a, b) if len(a.free) < len(b.free) else (b, a)
    if len(small.free) == 1 and small.free < big.free:
        (i,) = small.free
        other = next(iter(big.free - small.free))
        return _Lowered(Node("mul", (small.oriented(i, None), big.oriented(i, other), "star"), node.text), i, other)
    raise ChainruleError(f"'{node.text}' has more than two free indices; write the sum over the repeated one")


def _factors(node: Node) -> list:
    if node.kind in ("mul", "had") and (node.kind == "had" or node.args[2] in ("matmul", "star")):
        return _factors(node.args[0]) + _factors(node.args[1])
    return [node]


def _lower_sum(node: Node) -> _Lowered:
    """\\sum_k of a product: the two factors indexed by k contract into a matrix product; one factor is
    summed along k; an index no factor carries sums over the batch."""
    letter, body = node.args
    parts = [_lower(f) for f in _factors(body)]
    carrying = [p for p in parts if letter in p.free]
    rest = [p for p in parts if letter not in p.free]
    if not carrying:
        whole = _lower(body)
        return _Lowered(Node("sum", (whole.node, "batch"), node.text), whole.rows, whole.cols)
    if len(carrying) > 2:
        raise ChainruleError(f"in '{node.text}' the index {letter} appears in more than two factors")
    if len(carrying) == 2:
        x, y = carrying
        p = next(iter(x.free - {letter}), None)
        q = next(iter(y.free - {letter}), None)
        if p and p == q:
            raise ChainruleError(f"'{node.text}' repeats the index {p} outside the sum")
        left = x.oriented(p, letter) if p else x.oriented(None, letter) if x.cols == letter else \
            Node("T", (x.oriented(letter, None),), node.text)
        right = y.oriented(letter, q) if q else y.oriented(letter, None) if y.rows == letter else \
            Node("T", (y.oriented(None, letter),), node.text)
        result = _Lowered(Node("mul", (left, right, "matmul"), node.text), p, q)
    else:
        (x,) = carrying
        other = next(iter(x.free - {letter}), None)
        summed = Node("sum", (x.oriented(letter, other), 0), node.text)
        result = _Lowered(summed, None, other)
    for part in rest:
        result = _product(result, part, Node("had", (result.node, part.node), node.text))
    return result


def _check_size(tree: Node):
    """Reject trees too deep or too big to bind (long chains like 'W @ W @ ... @ x' nest deeply)."""
    stack, count = [(tree, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise ChainruleError(f"the expression is nested more than {MAX_DEPTH} operations deep; simplify it")
        if count > MAX_NODES:
            raise ChainruleError(f"the expression has more than {MAX_NODES} parts; simplify it")
        stack.extend((child, depth + 1) for child in node.args if isinstance(child, Node))


def _constant(node: Node) -> bool:
    """A number, its negation, or a fraction of them (a clip's bound, - \\frac{1}{2})."""
    return node.kind == "num" or node.kind in ("neg", "div") and all(_constant(a) for a in node.args)


def normalise(parts) -> str:
    """``['W', '2']`` -> ``w2``; ``['\\hat', 'y']`` -> ``yhat``."""
    return "".join(parts).lower().replace("_", "")


class Parser:
    """Recursive descent over the tokens. Node kinds:

    num(value) name(norm) grad(norm) neg(a) add(a, b) sub(a, b) mul(a, b, how) had(a, b) div(a, b)
    T(a) pow(a, k) act(name, prime, arg) ind(arg, op) sum(a, axis) mean(a) ones(kind)
    where(cond, op, a, b) (np.where(cond op 0, a, b), op '>' or '>=') clip(a, low, high)
    pgrad(a) (∇_a Ω(θ), the gradient of the penalty Ω by the name a)
    ``how`` is 'matmul' (@, juxtaposition, \\cdot, \\times) or 'star' (*, element-wise with broadcasting).
    Two kinds live only until ``lower``: entry(a, letters) (one entry, a^l_j) and isum(letter, a) (\\sum_k).
    """

    def __init__(self, tokens, text):
        self.tokens, self.text, self.pos, self.depth = tokens, text, 0, 0
        self.samples = set()  # the letters of the sums over samples being read (\sum_{i=1}^n h_i δ_i)

    # -- helpers --------------------------------------------------------------------------------
    def peek(self, offset=0):
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else (None, None, len(self.text), len(self.text))

    def at(self, kind, value=None, offset=0) -> bool:
        k, v, _, _ = self.peek(offset)
        return k == kind and (value is None or v == value)

    def take(self):
        token = self.peek()
        if token[0] is None:
            raise ChainruleError(f"'{_short(self.text)}' ends too early")
        self.pos += 1
        return token

    def expect(self, kind, value):
        if not self.at(kind, value):
            k, v, start, _ = self.peek()
            found = f"'{v}' at character {start + 1}" if k else "the end"
            raise ChainruleError(f"expected '{value}' but found {found} in '{_short(self.text)}'")
        return self.take()

    def start(self) -> int:
        return self.peek()[2]

    def node(self, kind, args, start) -> Node:
        end = self.tokens[self.pos - 1][3] if self.pos else start
        return Node(kind, args, self.text[start:end].strip())

    def enter(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ChainruleError(f"the expression is nested more than {MAX_DEPTH} levels deep; simplify it")

    # -- grammar --------------------------------------------------------------------------------
    def expr(self) -> Node:
        self.enter()
        start = self.start()
        node = self.hadamard()
        while self.at("op", "+") or self.at("op", "-"):
            op = self.take()[1]
            right = self.hadamard()
            node = self.node("add" if op == "+" else "sub", (node, right), start)
        self.depth -= 1
        return node

    def hadamard(self) -> Node:
        start = self.start()
        node = self.product()
        while self.at("cmd", "odot") or self.at("cmd", "circ") or self.at("cmd", "oslash"):
            kind = "div" if self.take()[1] == "oslash" else "had"
            node = self.node(kind, (node, self.product()), start)
        return node

    def product(self) -> Node:
        start = self.start()
        node = self.unary()
        while True:
            if self.at("op", "*") or self.at("op", "@") or self.at("cmd", "cdot") or self.at("cmd", "times"):
                op = self.take()[1]
                how = "star" if op == "*" else "matmul"
                node = self.node("mul", (node, self.unary(), how), start)
            elif self.at("op", "/"):
                self.take()
                node = self.node("div", (node, self.unary()), start)
            elif self.starts_factor():
                node = self.node("mul", (node, self.postfix(), "matmul"), start)
            elif self.at("op", ".") and self.peek()[2] > self.tokens[self.pos - 1][3] and (
                    self.at("id", None, 1) or self.at("op", "(", 1) or self.at("cmd", None, 1)):
                self.take()  # a forum's W[2]T . dZ[2]: a dot between spaces is a product, as \cdot
                node = self.node("mul", (node, self.unary(), "matmul"), start)
            else:
                return node

    def starts_factor(self) -> bool:
        kind, value, _, _ = self.peek()
        if kind in ("id", "num"):
            return True
        if kind == "op":
            return value == "("
        return kind == "cmd" and value not in ("odot", "circ", "oslash", "cdot", "times", "top", "prime", "intercal")

    def unary(self) -> Node:
        start = self.start()
        negative = False
        while self.at("op", "-") or self.at("op", "+"):
            negative ^= self.take()[1] == "-"
        operand = self.postfix()
        return self.node("neg", (operand,), start) if negative else operand

    def postfix(self) -> Node:
        self.enter()
        start = self.start()
        node = self.primary()
        while True:
            if self.at("op", ".T"):
                self.take()
                node = self.node("T", (node,), start)
            elif self.at("op", "^"):
                self.take()
                if self.transpose_mark():
                    node = self.node("T", (node,), start)
                else:
                    node = self.node("pow", (node, self.exponent()), start)
            elif self.at("op", "**"):
                self.take()
                node = self.node("pow", (node, self.exponent()), start)
            elif self.at("op", "'") and not self.at("op", "(", 1):
                self.take()  # MATLAB's A', as course notes print dW = dZ A'
                node = self.node("T", (node,), start)
            elif self.at("op", ".") and self.at("id", "sum", 1):
                self.take(), self.take()
                node = self.node("sum", (node, self.sum_arguments(method=True)), start)
            elif self.at("op", ".") and self.at("id", "astype", 1):
                self.take(), self.take()
                self.expect("op", "("), self.take(), self.expect("op", ")")
            else:
                self.depth -= 1
                return node

    def transpose_mark(self) -> bool:
        """After '^': T, \\top, \\intercal, {T}, {\\top}, a forum's {[T]}; consumes it when present."""
        if self.at("op", "(") and self.at("op", "[", 1) and self.at("id", "T", 2) and self.at("op", "]", 3) \
                and self.at("op", ")", 4):
            self.pos += 5
            return True
        for offset, closing in ((0, False), (1, True)):
            if closing and not self.at("op", "("):
                return False
            if self.at("id", "T", offset) or self.at("cmd", "top", offset) or self.at("cmd", "intercal", offset):
                if closing and not self.at("op", ")", 2):
                    return False
                self.pos += 3 if closing else 1
                return True
        return False

    def exponent(self) -> int:
        braced = self.at("op", "(")
        if braced:
            self.take()
        negative = self.at("op", "-") and bool(self.take())
        kind, value, start, _ = self.take()
        if kind != "num" or not value.isdigit() or int(value) > 8:
            raise ChainruleError(f"only small whole powers like ^2 or **2 are understood, not '{value}' "
                                 f"at character {start + 1}")
        if braced:
            self.expect("op", ")")
        if negative:
            raise ChainruleError("negative powers are not understood; divide instead")
        return int(value)

    def primary(self) -> Node:
        start = self.start()
        kind, value, pos, _ = self.peek()
        if kind == "num":
            self.take()
            if value == "1" and (self.at("op", "[") or (self.at("op", "(") and self.is_condition_ahead())):
                return self.indicator(start)
            if value == "1" and self.at("op", "_") and (self.at("id", "N", 1) or self.at("id", "n", 1)):
                self.pos += 2
                return self.node("ones", ("column",), start)
            return self.node("num", (value,), start)
        if kind == "op" and value == "(":
            self.take()
            inner = self.expr()
            if self.at("op", ">") or self.at("op", "<"):
                return self.comparison(inner, start, ")")
            self.expect("op", ")")
            if inner.kind == "name" and self.at("op", "'") and self.at("op", "(", 1):
                return self.name_rest([inner.args[0]], start)  # {\sigma}'(z), (f^{l})'(z^l)
            return inner
        if kind == "op" and value == "[":
            self.take()
            inner = self.expr()
            self.expect("op", "]")
            return inner
        if kind == "cmd":
            return self.command(start)
        if kind == "id":
            return self.identifier(start)
        raise ChainruleError(f"unexpected '{value}' at character {pos + 1} of '{_short(self.text)}'"
                             if kind else f"'{_short(self.text)}' ends too early")

    def is_condition_ahead(self) -> bool:
        depth = 0
        for offset in range(1, 40):
            k, v, _, _ = self.peek(offset)
            if k is None:
                return False
            if k == "op" and v == "(":
                depth += 1
            elif k == "op" and v == ")":
                if depth == 0:
                    return False
                depth -= 1
            elif k == "op" and v in "<>" and depth == 0:
                return True
        return False

    def indicator(self, start) -> Node:
        closing = "]" if self.at("op", "[") else ")"
        self.take()
        inner = self.expr()
        return self.comparison(inner, start, closing)

    def comparison(self, left, start, closing) -> Node:
        op = self.relation()
        self.expect("op", closing)
        if op.startswith("<"):
            raise ChainruleError("write the indicator as 1[z > 0]; '<' comparisons are not understood")
        return self.node("ind", (left, op), start)

    def relation(self) -> str:
        """After the left side of a comparison: the operator (> >= < <=), with 0 on its right."""
        kind, op, start, _ = self.take()
        if kind != "op" or op not in "<>":
            raise ChainruleError(f"expected a comparison with 0 such as 'z_1 > 0' but found '{op}' "
                                 f"at character {start + 1}")
        if self.at("op", "="):
            self.take()
            op += "="
        right = self.expr()
        if right.kind != "num" or float(right.args[0]) != 0:
            raise ChainruleError(f"only comparisons with 0 are understood, like 1[z_1 > 0], not '{right.text}'")
        return op

    def where(self, start) -> Node:
        """np.where(Z > 0, A, B), the condition turned to '>' or '>=' (z <= 0 swaps the branches of z > 0)."""
        self.expect("op", "(")
        left = self.expr()
        op = self.relation()
        self.expect("op", ",")
        yes = self.expr()
        self.expect("op", ",")
        no = self.expr()
        self.expect("op", ")")
        if op.startswith("<"):
            op, yes, no = {"<": ">=", "<=": ">"}[op], no, yes
        return self.node("where", (left, op, yes, no), start)

    def clip(self, start) -> Node:
        """np.clip(A, low, high); the bounds are numbers (-1, \\frac{1}{2})."""
        self.expect("op", "(")
        arg = self.expr()
        bounds = []
        for key in ("a_min", "a_max"):
            self.expect("op", ",")
            if self.at("id", "a") and self.at("op", "_", 1) and self.at("id", key[2:], 2) and self.at("op", "=", 3):
                self.pos += 4
            bound = self.expr()
            if not _constant(bound):
                raise ChainruleError(f"the bounds of np.clip must be numbers, like np.clip(yhat - y, -1, 1), "
                                     f"not '{bound.text}'")
            bounds.append(bound)
        self.expect("op", ")")
        return self.node("clip", (arg, *bounds), start)

    def command(self, start) -> Node:
        value = self.take()[1]
        if value == "frac":
            return self.fraction(start)
        if value == "sumtime":  # \sum_t over the steps of a recurrent layer (check.recurrent.rewrite_time)
            return self.node("sum", (self.product(), "time"), start)
        if value == "sum":
            letter, upper = self.skip_limits()
            if letter and upper in SAMPLE_COUNTS:  # \sum_{i=1}^n: i runs over the samples, h_i is sample i's h
                self.samples.add(letter)
                body = self.product()
                self.samples.discard(letter)
                return self.node("sum", (body, "batch"), start)
            if letter:  # \sum_k over a component index: the product after it, contracted when lowered
                return self.node("isum", (letter, self.product()), start)
            return self.node("sum", (self.postfix(), "batch"), start)
        if value == "nabla":
            return self.nabla(start)
        if value in ("ldots", "cdots", "dots"):
            raise NotAGradient(f"'{_short(self.text)}' leaves factors out with \\{value}; chainrule checks an "
                               f"expression written out, such as one step of it")
        if value == "partial":
            name = self.inline_partial()
            if name is not None:
                return self.gradient(name, start)
        if value in ("hat", "widehat"):
            base = self.braced_word()
            return self.name_rest([base, "hat"], start)
        if value == "mathbb":
            word = self.braced_word()
            if word != "1":
                raise ChainruleError(f"\\mathbb{{{word}}} is not understood; the indicator is \\mathbb{{1}}[z > 0]")
            if self.at("op", "[") or self.at("op", "("):
                return self.indicator(start)
            if self.at("op", "_"):
                self.take()
                if self.at("op", "(") and self.is_condition_ahead():
                    self.take()
                    inner = self.expr()
                    return self.comparison(inner, start, ")")
                length = self.braced_word()  # the length, as in \mathbf{1}_N or the notes' \mathbf{1}_{10}
                if re.fullmatch(r"[1-9]\d{0,3}", length):
                    return self.node("ones", ("column", int(length)), start)
            return self.node("ones", ("column",), start)
        if value == "delta" and self.at("id") and re.fullmatch(ATTENTION_DELTA, self.peek()[1]):
            return self.name_rest(["d" + self.take()[1]], start)  # \delta Q_h: attention's dL/dQ_h
        if value in _GREEK:
            word = _GREEK[value]
            if word == "partial":
                raise ChainruleError("write a partial derivative as \\frac{\\partial L}{\\partial W_2} or dL/dW2")
            return self.identifier(start, word)
        if value in ("tanh", "exp", "log", "sign"):
            return self.identifier(start, value)
        if value == "sqrt":  # \sqrt{d_k} of attention's scores
            self.expect("op", "(")
            arg = self.expr()
            self.expect("op", ")")
            return self.node("sqrt", (arg,), start)
        if re.fullmatch(r"delta[QKVSAPO]", value):  # δQ, written without a space: attention's δQ = dL/dQ
            return self.name_rest(["d" + value[5:]], start)
        raise ChainruleError(f"the LaTeX command \\{value} is not understood; use \\odot, \\circ, \\oslash, \\cdot, "
                             f"^\\top, \\frac, \\sum, \\delta, \\sigma, \\hat")

    def skip_limits(self):
        """Skip a sum's limits; (the component index it runs over (\\sum_k, \\sum_{j=1}^{s}) or None, its upper limit)."""
        letter, upper = None, ""
        for mark in ("_", "^"):
            if self.at("op", mark):
                self.take()
                first = self.pos
                if self.at("op", "("):
                    depth = 0
                    while True:
                        k, v, _, _ = self.take()
                        depth += (v == "(") - (v == ")") if k == "op" else 0
                        if depth == 0:
                            break
                else:
                    self.take()
                inside = [v for _, v, _, _ in self.tokens[first:self.pos] if v not in "()"]
                if mark == "_" and inside and inside[0] in INDEX_LETTERS and (len(inside) == 1 or inside[1] == "="):
                    letter = inside[0]
                if mark == "^":
                    upper = "".join(inside)
        return letter, upper

    def braced_word(self) -> str:
        if self.at("op", "("):
            self.take()
            parts, depth = [], 0
            while depth or not self.at("op", ")"):
                k, v, _, _ = self.take()
                if k == "cmd" and v in _GREEK:
                    v = _GREEK[v]
                depth += (v == "(") - (v == ")") if k == "op" else 0
                parts.append(v)
            self.take()
            return "".join(parts)
        return self.take()[1]

    def fraction(self, start) -> Node:
        numerator = self.gradient_numerator()
        if numerator:
            self.expect("op", "(")
            if self.at("cmd", "partial") or (self.at("id") and self.peek()[1] == "d"):
                self.take()
                name = self.bracketed_name()
            elif self.at("id") and self.peek()[1].startswith("d"):
                word = self.take()[1][1:]
                name = self.name_rest([word], self.start())
            else:
                raise ChainruleError("the denominator of dL/d... must be a name such as W_2 or z_1")
            self.expect("op", ")")
            if numerator == "operator" and not self.cost():  # \frac{\partial}{\partial z} J, else an operator
                raise NotAGradient(f"'{_short(self.text[start:self.start()])}' differentiates what follows it, "
                                   f"not the loss")
            return self.gradient(name, start)
        self.expect("op", "(")
        top = self.expr()
        self.expect("op", ")")
        self.expect("op", "(")
        bottom = self.expr()
        self.expect("op", ")")
        return self.node("div", (top, bottom), start)

    def gradient_numerator(self):
        """'cost' when \\frac's numerator is a cost's differential (∂L, dC, \\partial J(W,b;x,y), ∂{\\cal C}),
        'operator' for a bare ∂ or d (\\frac{\\partial}{\\partial W} J), consumed; False for a plain fraction.
        Any other differential (∂a/∂z, a Jacobian entry) is NotAGradient."""
        if not self.at("op", "("):
            return False
        begin = self.pos
        self.take()
        kind, value, _, _ = self.peek()
        if (kind, value) in (("cmd", "partial"), ("id", "d")):
            self.take()
            if self.at("op", ")"):
                self.take()
                return "operator"
            if self.cost() and self.at("op", ")"):
                self.take()
                return "cost"
        elif kind == "id" and value[0] == "d" and value[1:] in COSTS:
            self.take()
            if self.cost(named=False) and self.at("op", ")"):
                self.take()
                return "cost"
        elif not (kind == "id" and len(value) > 1 and value[0] == "d" and self.leibniz_below(begin)):
            self.pos = begin
            return False
            self.pos = begin
            return False
        self.pos = begin
        end = self.group_end(begin)
        below = next((i for i in range(begin, len(self.tokens)) if self.tokens[i][2] >= end), None)
        end = self.group_end(below) if below is not None else end
        raise NotAGradient(f"'{_short(self.text[self.tokens[begin - 1][2]:end])}' is a Jacobian entry (a derivative "
                           f"of something other than the loss), which chainrule does not read; write what it "
                           f"equals, such as \\sigma'(z)")

    def leibniz_below(self, begin) -> bool:
        """True when the denominator after the group at ``begin`` is a differential (dz^{[l]}, ∂z): da/dz."""
        end = self.group_end(begin)
        i = next((i for i in range(begin, len(self.tokens)) if self.tokens[i][2] >= end), len(self.tokens))
        if i + 1 >= len(self.tokens) or self.tokens[i][1] != "(":
            return False
        kind, value = self.tokens[i + 1][:2]
        return (kind, value) == ("cmd", "partial") or kind == "id" and value[0] == "d"

    def group_end(self, begin) -> int:
        """The character after the group that opens at token ``begin``."""
        depth = 0
        for kind, value, _, end in self.tokens[begin:]:
            if kind == "op" and value in "()":
                depth += 1 if value == "(" else -1
                if depth == 0:
                    return end
        return len(self.text)

    def cost(self, named=True) -> bool:
        """Consume a cost: C, J, L (\\mathcal{L}), E, optionally braced, with a subscript (C_0, C_x) and an argument
        list (J(W,b;x,y), {\\cal C}(\\hat{W^L})); ``named`` False when the name was read already (dC)."""
        begin = self.pos
        if named:
            braced = self.at("op", "(") and self.at("id", None, 1) and self.peek(1)[1] in COSTS and self.at("op", ")", 2)
            if braced:
                self.pos += 3
            elif self.at("id") and self.peek()[1] in COSTS:
                self.take()
            else:
                return False
        if self.at("op", "_"):
            self.take()
            self.braced_word()
        if self.at("op", "(") and not self.at("op", ")", 1):
            end = self.group_end(self.pos)
            while self.pos < len(self.tokens) and self.tokens[self.pos][2] < end:
                self.pos += 1
        return self.pos > begin or not named

    def gradient(self, name: Node, start) -> Node:
        """The gradient of the loss by ``name`` (a name, or one entry of it)."""
        inner = name.args[0] if name.kind == "entry" else name
        if inner.kind != "name":
            raise ChainruleError(f"dL/d{name.text} is not understood; differentiate by a name such as W_2")
        grad = self.node("grad", (inner.args[0],), start)
        return self.node("entry", (grad, name.args[1]), start) if name.kind == "entry" else grad

    def bracketed_name(self) -> Node:
        """A name, perhaps in parentheses or braces: \\partial (a_j^L), \\partial {W}."""
        if self.at("op", "("):
            self.take()
            name = self.bracketed_name()
            self.expect("op", ")")
            return name
        return self.single_name()

    def nabla(self, start) -> Node:
        """∇_a C (Nielsen: the output activation's gradient), ∇_{W^{(k)}} J, ∇_{\\hat y} L."""
        if not self.at("op", "_"):
            raise ChainruleError("write the gradient with its variable, like \\nabla_a C or \\nabla_{W^{[2]}} J")
        self.take()
        name = self.bracketed_name()
        if self.at("cmd", "Omega"):  # ∇_W Ω(θ): the gradient of the penalty of J = L + λΩ(θ)
            self.take()
            if self.at("op", "("):
                end = self.group_end(self.pos)
                while self.pos < len(self.tokens) and self.tokens[self.pos][2] < end:
                    self.pos += 1
            return self.node("pgrad", (name,), start)
        self.cost()
        if name.kind == "name" and name.args[0] in ("a", "h"):
            name = Node("name", (name.args[0] + "[L]",), name.text)
        return self.gradient(name, start)

    def inline_partial(self):
        """After ∂: 'C / ∂ w^l_{jk}' (∂C/∂w written inline) gives the name; else None, nothing consumed."""
        begin = self.pos
        if self.cost() and self.at("op", "/") and self.at("cmd", "partial", 1):
            self.pos += 2
            return self.bracketed_name()
        self.pos = begin
        return None

    def identifier(self, start, word=None) -> Node:
        if word is None:
            word = self.take()[1]
        if word in ("np", "numpy") and self.at("op", "."):
            self.take()
            return self.identifier(start)
        if word in ("dL", "dC", "dJ", "d") and (self.at("op", "/") or word == "d" and self.at("id", "L")):
            if word == "d":
                self.take()
            self.expect("op", "/")
            if self.at("cmd", "partial"):
                self.take()
                name = self.single_name()
            else:
                k, v, _, _ = self.take()
                if k != "id" or not v.startswith("d"):
                    raise ChainruleError("dL/ must be followed by d and a name, like dL/dW2")
                name = self.name_rest([v[1:]], self.start()) if len(v) > 1 else self.identifier(self.start())
            if name.kind != "name":
                raise ChainruleError("dL/d must be followed by a name, like dL/dW2")
            return self.node("grad", (name.args[0],), start)
        if word == "partial":
            raise ChainruleError("write a partial derivative as \\frac{\\partial L}{\\partial W_2} or dL/dW2")
        if word == "where":
            return self.where(start)
        if word == "clip":
            return self.clip(start)
        if word in ("rowsum", "sqrt") and self.at("op", "("):  # rowsum(dA \odot A), sqrt(d_k): attention's
            self.expect("op", "(")
            arg = self.expr()
            self.expect("op", ")")
            return self.node(word, (arg,), start)
        if word == "d" and self.at("op", "(") and self.text[self.peek()[2]] == "{" and self.at("id", None, 1) \
                and re.fullmatch(ATTENTION_DELTA, self.peek(1)[1]) and self.at("op", ")", 2):
            self.take()  # \mathrm{d}{V} (FlashAttention's dV): d and a braced name
            word = "d" + self.take()[1]
            self.take()
            return self.name_rest([word], start)
        if word == "mean":  # \operatorname{mean}(g): over the features of each sample (layer norm)
            self.expect("op", "(")
            arg = self.expr()
            self.expect("op", ")")
            return self.node("mean", (arg,), start)
        if word in ("sum",):
            self.expect("op", "(")
            arg = self.expr()
            return self.node("sum", (arg, self.sum_arguments(method=False)), start)
        if word in ("ones", "ones_like"):
            raise ChainruleError("np.ones is not understood; sum with sum(..., axis=...) instead")
        if word in ("transpose",):
            self.expect("op", "(")
            arg = self.expr()
            self.expect("op", ")")
            return self.node("T", (arg,), start)
        if word in ("dot", "matmul", "multiply", "outer"):
            self.expect("op", "(")
            left = self.expr()
            self.expect("op", ",")
            right = self.expr()
            self.expect("op", ")")
            if word == "outer":
                return self.node("mul", (left, self.node("T", (right,), start), "matmul"), start)
            return self.node("mul", (left, right, "star" if word == "multiply" else "matmul"), start)
        return self.name_rest([word], start)

    def single_name(self) -> Node:
        start = self.start()
        return self.command(start) if self.at("cmd") else self.identifier(start)

    def name_rest(self, parts, start) -> Node:
        """Subscripts and layer superscripts after a name; a prime and '(' make it a function.

        A superscript may end in a transpose or a prime, as in W^{[l+1]T}, W^{[l]^T} and g^{[l]'}(z^{[l]});
        forum style writes the layer in brackets (W^[2], dZ[l-1]). A subscript of index letters (w^l_{jk},
        \\delta^l_j) names one entry: an ``entry`` node, which ``lower`` turns into the matrix form."""
        index, transposed, prime, entries, power = "", False, False, (), 0
        while True:
            numbered = index or re.search(r"\d$", normalise(parts))
            if self.at("op", "^") and self.at("op", "(", 1) and self.at("op", "(", 2) and self.at("id", None, 3) \
                    and self.at("op", ")", 4) and self.at("op", ")", 5) and self.peek(3)[1] not in "lLk":
                self.pos += 6  # a sample index such as x^{(n)}
            elif self.at("op", "_"):
                self.take()
                word = self.braced_word()
                m = LAYER_MARK.fullmatch(word)
                if word in self.samples:
                    continue  # the sample a sum over samples is at: h_i in \sum_{i=1}^n h_i δ_i
                if normalise(parts) == "d":  # d_k, d_{model}: attention's widths, not dK nor an entry of d
                    parts = [WIDTH + word]
                elif not entries and _COMPONENTS.fullmatch(word):
                    entries = tuple(word.replace(",", ""))
                elif not numbered and m and not m["mark"] and not m["layer"].isdigit():
                    index = m["layer"]
                else:
                    parts.append(word)
            elif self.at("num") and self.peek()[2] == self.tokens[self.pos - 1][3] and self.peek()[1].isdigit() \
                    and not numbered:
                parts.append(self.take()[1])  # δ2, \\delta2
            elif self.at("op", "[") and self.peek()[2] == self.tokens[self.pos - 1][3] and not numbered \
                    and self.bracket_layer():
                m = LAYER_MARK.fullmatch(self.bracket_layer(consume=True))  # dZ[l-1], W[2]
                if m["layer"].isdigit():
                    parts.append(m["layer"])
                else:
                    index = m["layer"]
                if self.at("id", "T") and self.peek()[2] == self.tokens[self.pos - 1][3]:
                    self.take()
                    transposed = True  # a forum's W[2]T
            elif self.at("op", "^") and self.at("num", None, 1) and self.at("op", "(", 2) and not numbered \
                    and normalise(parts) in ACTIVATION_ALIASES:
                self.pos += 2
                power = int(self.tokens[self.pos - 1][1])  # \\tanh^2(z), \\sigma^2(z): a power, not a layer
            elif self.at("op", "^") and self.at("op", "(", 1) and self.at("num", None, 2) and self.at("op", ")", 3) \
                    and self.at("op", "(", 4) and not numbered and normalise(parts) in ACTIVATION_ALIASES:
                self.pos += 4  # \\tanh^{2}(z) (its braces are read as parentheses): a power too, not layer 2's tanh
                power = int(self.tokens[self.pos - 2][1])
            elif self.at("op", "^") and normalise(parts) == "w" and self._projection_ahead():
                self.take()  # Vaswani's W^Q, W^{K}: attention's projections, as W_Q
                parts.append(self.braced_word())
            elif self.at("op", "^") and not self.transpose_ahead() and not numbered and self.layer_ahead():
                self.take()
                word = self.bracket_layer(consume=True) if self.at("op", "[") else self.braced_word()
                word = re.sub(r"\^(T|top)$", "T", word)  # W^{[l]^T}
                word = re.sub(r"^\(k(?=[-+)])", "(l", word)  # Goodfellow's layer k: h^{(k-1)}
                m = LAYER_MARK.fullmatch(word)
                if not m:
                    parts.append(word.strip("[]()"))
                    continue
                if m["layer"].isdigit():
                    parts.append(m["layer"])
                else:
                    index = m["layer"]
                transposed, prime = m["mark"] in ("T", "top"), m["mark"] in ("prime", "'")
            else:
                break
        norm = normalise(parts) + (f"[{index}]" if index else "")
        if self.at("op", "'"):
            self.take()
            prime = True
            if self.at("op", "^") and self.layer_ahead():
                self.take()  # g'^{[l]}(z^{[l]}): the layer is the argument's
                self.bracket_layer(consume=True) if self.at("op", "[") else self.braced_word()
            elif self.at("op", "[") and self.bracket_layer():
                self.bracket_layer(consume=True)  # a forum's g'[1](Z[1]), as g'^{[1]}
        elif self.at("op", "^") and self.at("cmd", "prime", 1):
            self.pos += 2
            prime = True
        elif self.at("op", "_") and self.at("id", "prime", 1):
            self.pos += 2
            prime = True
        if norm.endswith("prime") and norm[:-5] in ACTIVATION_ALIASES:
            norm, prime = norm[:-5], True
        base = re.sub(r"(\d+|\[[lL]([+-]\d+)?\])$", "", norm)
        if base != norm and (base in ACTIVATION_ALIASES or base in GENERIC_ACTIVATIONS) and (prime or self.at("op", "(")):
            norm = base  # g^{[l]}'(z^{[l]}), f_2'(z_2): the layer is the argument's
        if base[:1] == "d" and (base[1:] in ACTIVATION_ALIASES or base[1:] in GENERIC_ACTIVATIONS) and not prime \
                and self.at("op", "("):
            norm, prime = base[1:], True  # dG^l(Z^l), dg(z): the activation's derivative, as some notes name it
        if self.at("op", "(") and (norm in ACTIVATION_ALIASES or norm in GENERIC_ACTIVATIONS or norm == "sign"
                                   or (prime and re.fullmatch(r"[a-z]+", norm))):
            self.take()
            arg = self.expr()
            self.expect("op", ")")
            node = self.node("act", (norm, prime, arg), start)
            return self.node("pow", (node, power), start) if power else node
        if prime and (norm in ACTIVATION_ALIASES or norm in GENERIC_ACTIVATIONS):
            raise ChainruleError(f"{norm}' must be applied to an argument, like {norm}'(z_1)")
        node = self.node("name", (norm,), start)
        if transposed or prime:  # a prime on a quantity is MATLAB's transpose: A^{[l-1]}'
            node = self.node("T", (node,), start)
        return self.node("entry", (node, entries), start) if entries else node

    def _projection_ahead(self) -> bool:
        """After ^: Q, K, V or O, alone or braced (W^Q, W^{V})."""
        braced = self.at("op", "(", 1) and self.at("op", ")", 3)
        return bool(self.peek(2 if braced else 1)[0] == "id" and re.fullmatch("[QKVO]", self.peek(2 if braced else 1)[1]))

    def bracket_layer(self, consume=False):
        """At '[': the text of a layer in brackets ('[2]', '[l-1]') when one follows, consumed if asked."""
        for length in range(2, 6):
            if self.at("op", "]", length):
                words = [self.peek(i)[1] for i in range(length + 1)]
                if any(w is None for w in words) or not LAYER_MARK.fullmatch("".join(words)):
                    return None
                if consume:
                    self.pos += length + 1
                return "".join(words)
        return None

    def transpose_ahead(self) -> bool:
        return self.at("id", "T", 1) or self.at("cmd", "top", 1) or self.at("cmd", "intercal", 1) or (
            self.at("op", "(", 1) and (self.at("id", "T", 2) or self.at("cmd", "top", 2)))

    def layer_ahead(self) -> bool:
        """A layer superscript: ^2, ^{2}, ^{[2]}, ^{(2)}, or one in l or L: ^l, ^{l+1}, ^{[l-1]}, ^L."""
        def number_or_letter(offset):
            return self.at("num", None, offset) or self.at("id", "l", offset) or self.at("id", "L", offset)
        if number_or_letter(1):
            return True
        if self.at("op", "[", 1):
            self.pos += 1
            found = self.bracket_layer() is not None  # W^[2], forum style
            self.pos -= 1
            return found
        if not self.at("op", "(", 1):
            return False
        offset = 2
        if self.at("op", "[", offset) or self.at("op", "(", offset):
            offset += 1
            if self.at("op", "(", offset - 1) and self.at("id", "k", offset):
                return True  # Goodfellow's layer k: W^{(k)}
        return number_or_letter(offset)

    def sum_arguments(self, method: bool):
        """After sum( ARG: the rest of ', axis=k, keepdims=True)'; the axis or None."""
        if method:
            self.expect("op", "(")
        axis = None
        first = True
        while not self.at("op", ")"):
            if not (method and first):
                self.expect("op", ",")
            first = False
            key = self.take()[1]
            self.expect("op", "=")
            kind, value, _, _ = self.take()
            if key == "axis":
                negative = value == "-" and bool(self.take())
                value = self.tokens[self.pos - 1][1]
                if not value.isdigit() or int(value) > 1:
                    raise ChainruleError(f"sum over axis {value} is not understood; use axis=0 or axis=1")
                axis = 2 - int(value) if negative else int(value)
            elif key != "keepdims":
                raise ChainruleError(f"sum(..., {key}=...) is not understood; use axis= and keepdims=")
        self.take()
        return axis
