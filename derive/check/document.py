"""Reading a derivation as people write it: LaTeX, Markdown or plain text, into equations to check.

Math is found where the document puts it (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``, the
``equation``/``align``/``eqnarray``/``gather``/``multline`` environments, Markdown code fences);
a document with none of these is read line by line. Rows of ``align``, ``aligned``, ``split`` and
``eqnarray`` end at ``\\\\``; a row that starts with ``&=`` continues the left side above it, and a chain
``A = B = C`` gives ``A = B`` and ``A = C``. ``=``, ``:=``, ``\\equiv`` and ``\\leftarrow`` relate; ``\\quad``
separates two equations on one line. The file's macros (``\\newcommand``, ``\\renewcommand``,
``\\def``, ``\\DeclareMathOperator``) are expanded, at most limits.MACROS of them and
limits.MACRO_EXPANSIONS expansions. An equation chainrule cannot check (a forward step, the loss's
definition, a Jacobian entry, an update, an optimizer's rule, the sizes the notes print beside a step) is
``Skipped`` with the reason; nothing is run.
"""
import bisect
import re
from dataclasses import dataclass

from .. import limits
from ..errors import ChainruleError
from .parse import MAX_LENGTH, NotAGradient, Node, parse_equation, read_tree, rewrite
from .sequence import step_text


@dataclass
class Equation:
    """``lhs = rhs`` at ``line`` (1-based) of the document."""
    line: int
    lhs: str
    rhs: str


@dataclass
class Skipped:
    """An equation at ``line`` that is not a gradient chainrule checks, and why."""
    line: int
    text: str
    reason: str


_BRACE = re.compile(r"\\.|[{}]", re.S)  # an escaped character (\{) is not a brace
MACRO_BODY = MAX_LENGTH  # characters of one macro's definition
MAX_PIECE = 20 * MAX_LENGTH  # characters of one piece of math (a display block of many rows)
_DEFINITION = re.compile(r"\\(?:re)?newcommand\*?\s*\{?\s*\\(?P<name>[A-Za-z]+)\s*\}?\s*(?:\[(?P<count>\d)\])?\s*"
                         r"|\\def\s*\\(?P<dname>[A-Za-z]+)\s*(?P<params>(?:#\d)*)\s*"
                         r"|\\DeclareMathOperator\*?\s*\{\s*\\(?P<oname>[A-Za-z]+)\s*\}\s*")
# Where math starts; ``_Lines.closing`` finds where it ends.
_OPENER = re.compile(r"""
    ^[ \t]*```[ \t]*(?P<lang>[A-Za-z]*)[^\n]*\n
  | \$\$ | \\\[ | \\\(
  | \\begin\{(?P<env>equation|align|alignat|eqnarray|gather|multline|flalign|math|displaymath)(?P<star>\*?)\}
  | (?<![\\$])\$(?!\$)
""", re.M | re.X)
_CLOSERS = {"$$": "$$", "\\[": "\\]", "\\(": "\\)"}
_INLINE = re.compile(r"(?<![\\$])\$([^$\n]+?)\$")
_MATRIX = re.compile(r"\\begin\{(?:[pbvBV]?matrix|smallmatrix|array|cases)\}")
_ENVIRONMENT = re.compile(r"\\(?:begin|end)\s*\{[A-Za-z*]+\}(?:\{[^{}]*\})?")
_RELATION = re.compile(r":=|\\coloneqq|\\equiv|\\leftarrow|\\gets|≡|←|(?<![<>!=:])=(?!=)")
# Words of \text{...} (unwrapped by then): a condition ends the equation; 'and', 'where' separate two.
_CONDITION = re.compile(r"(?<![\\A-Za-z.])(?:for|if|with|when)(?=\s)|\\forall(?![A-Za-z])")
_SEPARATOR = re.compile(r"\\q?quad(?![A-Za-z])|(?<![\\A-Za-z.])(?:and|where)(?=\s)")
_THIN_SPACE = re.compile(r"\\;")  # separates two equations, or is a space (Goodfellow's g \; h^{(k-1)\top})
# A line outside math delimiters that is LaTeX math all through: a command, and no word of prose.
_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{3,}|[^\x00-\x7f]")
_TRAILING = re.compile(r"(?:\s|[,.;]|\\[,;:!]|\\q?quad(?![A-Za-z]))+$")
_OPERATOR = re.compile(r"\s*(?:[-+*/@]|\\(?:odot|circ|cdot|times|oslash)(?![A-Za-z]))")
_RUNNING = re.compile(r"g|G|\\bar\s*\{?\s*g\s*\}?")
_LABEL = re.compile(r"[A-Za-z]{3,}\s*:")
_FORWARD = ("z", "a", "h", "yhat", "x", "o", "q", "k", "v", "s", "p", "y",  # q .. y: attention's (Y its output)
            "mu", "sigma", "xhat")  # layer norm's
_GRADIENT_TEXT = re.compile(r"\\(?:partial|delta|Delta|nabla)(?![A-Za-z])|'")
# A shape after the expression, as attention's notes give it: dV = P^T dO \in \mathbb{R}^{N \times d}.
_SHAPE = re.compile(r"\\in\s*\\mathbb\s*\{?\s*R\s*\}?\s*(?:\^\s*(?:\{[^{}]*\}|\S))?\s*$")
_LOSSES = ("l", "c", "j", "e")
# \left( ... \right), \Bigl( ... \Bigr): a row of an aligned block does not end inside them
_OPEN_SIZED = re.compile(r"\\(?:left|[bB]igg?l)(?![A-Za-z])")
_CLOSE_SIZED = re.compile(r"\\(?:right|[bB]igg?r)(?![A-Za-z])")
# TeX's layout parameters set in the text (the notes' \postdisplaypenalty=10000, \parfillskip=0pt) and labels:
# not math (and a row after \label{eq:z1} starts on the line below it)
_TEX_PARAMETER = re.compile(r"\\label[ \t]*\{[^{}\n]*\}|\\(?:(?:post|pre)?displaypenalty|(?:club|widow|inter)?penalty|parfillskip|parskip|parindent"
                            r"|emergencystretch|tolerance)(?![A-Za-z])[ \t]*=?[ \t]*-?[\d.]*[ \t]*(?:pt|em|ex|mm|cm|in|bp|sp)?"
                            r"(?:\\(?:linewidth|textwidth|hsize)(?![A-Za-z]))?")
_UPDATE = re.compile(r"\\leftarrow|\\gets|←")
# The dimensions the notes print beside a step: (2 \times 2)(2 \times 1) = 2 \times 1, 2 \times N, (2 \times 1)(1 \times N)
_DIMENSIONS = re.compile(r"(?:\s*,?\s*\(?\s*(?:\d+|[A-Za-z])\s*\\times\s*(?:\d+|[A-Za-z])\s*\)?)+\s*")
# One element's loss term and its derivative, as the notes define them: \ell(\hat{y}, y) = ..., \partial \ell / ...
_LOSS_TERM = re.compile(r"\s*(?:\\ell|[lLJCE])\s*(?:\\left\s*)?\(")
_TERM_DERIVATIVE = re.compile(r"\\partial\s*\\ell(?![A-Za-z])")
# softmax(z)_i = e^{z_i} / \sum_k e^{z_k}: a function's definition entry by entry
_FUNCTION_ENTRY = re.compile(r"\s*(?:\\operatorname\s*\{\s*)?[A-Za-z]+\s*\}?\s*(?:\\left\s*)?\([^()]*\)\s*_")
# The softmax's Jacobian, ∂ŷ/∂z = diag(ŷ) − ŷŷᵀ, in the chain rule the notes derive the fused step with
_JACOBIAN = re.compile(r"\\partial\s*\\hat\s*\{?\s*[yY]\s*\}?(?:\s*_\s*\{?\s*\w*\s*\}?)?\s*/"
                       r"|diag\s*\}?\s*(?:\\left\s*)?\(\s*\\hat")
# An optimizer's rule: the parameter θ_t, its gradient ∇_θ, Adam's moments m_t, v_t (m_0, the bias-corrected \hat m_t)
_OPTIMIZER = re.compile(r"\\theta\s*_\s*\{?\s*t|\\nabla\s*_\s*\{?\s*\\theta"
                        r"|^\s*(?:\\hat\s*\{?\s*)?[mv]\s*\}?\s*_\s*\{?\s*[t0]\s*\}?\s*$")
# \Phi(z) = ...: a function of one variable defined on its own (one the parser may not know by name)
_FUNCTION_OF = re.compile(r"\s*\\?[A-Za-z]+\s*(?:\\left\s*)?\(\s*[a-z]\s*(?:\\right\s*)?\)\s*")
# T = 16, d = E/H: a size (a letter sizes are named with, perhaps with a letter below), a number or from sizes
_SIZE = re.compile(r"\s*[TEHNDVKMFd]\s*(?:_\s*\{?\s*[a-z]\s*\}?)?\s*")
_SIZES = re.compile(r"\s*\d+\s*|\s*[A-Z]\s*(?:/|\*|\\cdot(?![A-Za-z]))\s*[A-Z]\s*|\s*\\frac\s*\{\s*[A-Z]\s*\}\s*\{\s*[A-Z]\s*\}\s*")
# W_{in} = [W_Q; W_K; W_V]: matrices stacked, a parameter's layout
_STACK = re.compile(r"\s*\[[^\[\]]*;[^\[\]]*\]\s*")
# (\delta S_h)_{ij}: an entry of a bracketed expression
_ENTRY_OF = re.compile(r"\s*\((?:[^()]|\([^()]*\))*\)\s*_\s*(?:\{\s*[a-z]\s*,?\s*[a-z]\s*\}|[a-z])\s*")
# ... \text{ (likewise K, V)}: a remark in words after the expression (the text unwrapped by then); a word that
# starts one, not a name (yhat in W (yhat - y))
_REMARK = re.compile(r"\s+\(\s*(?:likewise|similarly|the same|same|see|cf\.|note|i\.e\.|e\.g\.)(?![A-Za-z])[^()]*\)\s*$",
                     re.I)
_SCALED = re.compile(r"\s*([1-9]\d*)\s+([\\A-Za-z].*)", re.S)  # 20 \delta_{3}: a whole number times a quantity
_EXPRESSION = re.compile(r"[-+/()^]|\\(?:sum|cdot|odot|times)(?![A-Za-z])")  # a left side that is a computation
_STEPS = re.compile(r"\s*t\s*")  # t = 1, \ldots, T: the range of the steps
_LAYERS = re.compile(r"\s*[lLk](?:\s*[-+]\s*\d+)?\s*|\s*\d+\s*")  # l + 1 = L: layer numbers


def read_document(text: str) -> list:
    """The document's equations and skipped equations (``Equation``, ``Skipped``), in order."""
    macros, text = _definitions(text)
    text = _TEX_PARAMETER.sub("", text)
    budget = [0, 0]  # macro expansions, and their nesting
    out, sides = [], {}  # sides: the left side an '&= ...' line continues, kept from line to line of plain text
    for line, math, plain in _segments(text):
        if len(math) > MAX_PIECE:
            out.append(Skipped(line, _short(math), f"this piece is longer than {MAX_PIECE} characters; split it"))
            continue
        if plain is None:
            out.append(Skipped(line, _short(math), "text outside math; put an equation between $...$ (or in an "
                                                   "align environment) to have it checked"))
            continue
        sides = sides if plain else {}
        try:
            math = rewrite(math, macros, budget)
        except ChainruleError as err:
            if "MACRO_EXPANSIONS" in str(err):
                raise
            out.append(Skipped(line, math.strip(), f"cannot be read as LaTeX: {err}"))
            continue
        if _MATRIX.search(math) and _UPDATE.search(math):
            out.append(Skipped(line + _leading_lines(math), _short(math),
                               "an update to numbers (\\leftarrow and a matrix of values, a worked example's optimizer "
                               "step): a value, not a gradient; chainrule check reads gradients"))
            continue
        if _MATRIX.search(math) and "=" in math:
            out.append(Skipped(line + _leading_lines(math), _short(math),
                               "writes a matrix out entry by entry, which chainrule does not read; write the matrix "
                               "expression"))
            continue
        out += _equations(math, line, plain, sides)
    return out


def checked(checker, items):
    """(item, verdict) for each item of ``read_document``: a Skipped with None; an Equation with the checker's
    result, or the ChainruleError it raised. An equation the checker finds is not about a gradient (a recurrent
    network's forward step, which only its checker knows) becomes a Skipped, as the reader's own are."""
    for item in items:
        if isinstance(item, Skipped):
            yield item, None
            continue
        try:
            result = checker.check(item.lhs, item.rhs)
        except NotAGradient as err:
            yield Skipped(item.line, f"{item.lhs} = {item.rhs}", str(err)), None
        except ChainruleError as err:
            yield item, err
        else:
            yield item, result


def _leading_lines(math: str) -> int:
    """How many lines down ``math`` its first character is (a display block opens on the line above)."""
    return math[:len(math) - len(math.lstrip())].count("\n")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 70 else text[:67] + "..."


def _definitions(text: str):
    """The macros ``text`` defines ({name: (argument count, body)}) and ``text`` without the definitions
    (their newlines kept, so line numbers stay right)."""
    macros, pieces, pos, pairs = {}, [], 0, None
    for m in _DEFINITION.finditer(text):
        if m.start() < pos:
            continue
        body_start = m.end()
        if body_start >= len(text) or text[body_start] != "{":
            continue
        pairs = _brace_pairs(text) if pairs is None else pairs
        body_end = pairs.get(body_start)
        if body_end is None or body_end - body_start > MACRO_BODY:
            continue
        body = text[body_start + 1:body_end]
        if m["name"]:
            name, count = m["name"], int(m["count"] or 0)
        elif m["dname"]:
            name, count = m["dname"], len(m["params"]) // 2
        else:
            name, count, body = m["oname"], 0, rf"\operatorname{{{body}}}"
        macros[name] = (count, body)
        if len(macros) > limits.MACROS:
            raise ChainruleError(f"the file defines more than {limits.MACROS} macros (MACROS); define fewer")
        pieces += [text[pos:m.start()], "\n" * text.count("\n", m.start(), body_end + 1)]
        pos = body_end + 1
    return macros, "".join(pieces) + text[pos:]


def _brace_pairs(text: str) -> dict:
    """{position of '{': position of its '}'} for the whole text, in one pass (\\{ is no brace)."""
    pairs, stack = {}, []
    for m in _BRACE.finditer(text):
        if m.group() == "{":
            stack.append(m.start())
        elif m.group() == "}" and stack:
            pairs[stack.pop()] = m.start()
    return pairs


def _segments(text: str):
    """(line, math, plain) for each piece of math, in order; ``plain`` when it is a line of plain math (a file
    without LaTeX delimiters, or a code fence), where '#' starts a comment; None for a line of prose
    outside math that holds an '=' (listed as skipped). One pass: each closing delimiter is found by
    bisection in the sorted positions of its kind, so a file of unclosed openers stays linear."""
    lines = _Lines(text)
    found, pos = [], 0
    while True:
        m = _OPENER.search(text, pos)
        if m is None:
            break
        close = lines.closing(m)
        if close is None:  # an opener without its closer is text
            pos = m.end()
            continue
        body_end, after = close
        found.append((m.start(), after, m.end(), body_end, m["lang"]))
        pos = after
    if not found:
        for number, line in enumerate(text.splitlines(), start=1):
            yield number, line, True
        return
    pos = 0
    for start, after, body_start, body_end, lang in found + [(len(text), len(text), 0, 0, None)]:
        first = lines.number(pos)
        for offset, row in enumerate(text[pos:start].split("\n")):
            if "=" in row and row.strip():
                math = _COMMAND.search(row) and not _WORD.search(_COMMAND.sub(" ", row))
                yield first + offset, row, False if math else None
        if start == len(text):
            return
        pos = after
        line, body = lines.number(body_start), text[body_start:body_end]
        if lang is not None and lang != "math":  # a code fence: plain math, or an algorithm's \STATE $...$
            for offset, row in enumerate(body.splitlines()):
                inline = _INLINE.findall(row)
                yield from ((line + offset, piece, False) for piece in inline) if inline else \
                    [(line + offset, row, True)]
        else:
            yield line, body, False


class _Lines:
    """Line numbers and closing delimiters of a text, by bisection in sorted positions."""

    def __init__(self, text: str):
        self.text = text
        self.newlines = [i for i, char in enumerate(text) if char == "\n"]
        self.positions = {}

    def number(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def _next(self, pattern: str, start: int):
        if pattern not in self.positions:
            self.positions[pattern] = [(m.start(), m.end()) for m in re.finditer(pattern, self.text, re.M)]
        spans = self.positions[pattern]
        i = bisect.bisect_left(spans, (start, -1))
        return spans[i] if i < len(spans) else None

    def closing(self, m):
        """(end of the body, end of the closer) for the opener ``m``, or None when it is not closed."""
        if m["lang"] is not None:
            span = self._next(r"^[ \t]*```", m.end())
        elif m["env"]:
            span = self._next(re.escape(rf"\end{{{m['env']}{m['star']}}}"), m.end())
        elif m.group() == "$":  # inline math ends on its own line
            span = self._next(r"(?<!\\)\$", m.end())
            i = bisect.bisect_left(self.newlines, m.end())
            line_end = self.newlines[i] if i < len(self.newlines) else len(self.text)
            if span is None or span[0] >= line_end or span[0] == m.end():
                return None
        else:
            span = self._next(re.escape(_CLOSERS[m.group()]), m.end())
        return span


def _equations(math: str, line: int, plain: bool, state: dict) -> list:
    """The equations of one piece of math, row by row; ``state`` carries the left side between pieces."""
    out = []
    lhs, pending = state.get("lhs"), state.get("pending")
    for number, row in _rows(math, line):
        if plain:
            row = re.sub(r"(^|\s)#.*$", "", row)  # a comment, as in Python
        # a \\ left inside \Bigl( ... \Bigr) by _rows breaks the line, not the equation
        row = _ENVIRONMENT.sub(" ", row).replace("&", " ").replace("\\\\", " ")
        for piece in _pieces(row):
            sides = [s.strip() for s in _split(piece, _RELATION)]
            if len(sides) < 2 and out and isinstance(out[-1], Equation) and _OPERATOR.match(piece):
                last = out.pop()  # multline, split: '+ b' or '\odot f'(z)' continues the line above
                sides = [last.lhs, last.rhs + " " + piece.strip()]
                number = last.line
            elif len(sides) < 2:
                pending = piece.strip() or pending  # a left side whose '&= ...' is on the next line
                continue
            if len(sides) > 2 and _RUNNING.fullmatch(sides[0]):
                sides = sides[1:]  # Goodfellow's g <- \nabla_{W} J = ...: the gradient is the left side
            if sides[0]:
                lhs = sides[0]
            elif pending:
                lhs = pending
            elif lhs is None:
                out.append(Skipped(number, _short(piece), "continues an equation whose left side is not there"))
                continue
            for rhs in sides[1:]:
                rhs = _TRAILING.sub("", _SHAPE.sub("", _REMARK.sub("", _TRAILING.sub("", rhs))))
                if not rhs:
                    continue
                pending = None
                reason = _not_a_gradient(*_unscaled(lhs, rhs))
                out.append(Skipped(number, _short(f"{lhs} = {rhs}"), reason) if reason else
                           Equation(number, *_unscaled(lhs, rhs)))
    state.update(lhs=lhs, pending=pending)
    return out


def _unscaled(lhs: str, rhs: str):
    """``k Q = R`` as ``Q = R / k``: the notes' fused step for a loss that divides by k (20 δ3 = ŷ - y)."""
    m = _SCALED.fullmatch(lhs)
    if m is None:
        return lhs, rhs
    try:
        kind = read_tree(m[2]).kind
    except ChainruleError:
        return lhs, rhs
    return (m[2], rf"\frac{{{rhs}}}{{{m[1]}}}") if kind in ("name", "grad") else (lhs, rhs)


def _rows(math: str, line: int):
    """(line, row) at each top-level \\\\ (and newline, for the rows of plain text)."""
    start, depth = 0, 0
    rows = []
    i = 0
    while i < len(math):
        char = math[i]
        if char in "{" or _OPEN_SIZED.match(math, i):
            depth += 1
        elif char == "}" or _CLOSE_SIZED.match(math, i):
            depth -= 1
        elif char == "\\" and math.startswith("\\\\", i) and depth <= 0:
            rows.append((start, math[start:i]))
            start = i + 2
            i += 2
            continue
        elif re.match(r"\\cr(?![A-Za-z])", math[i:]) and depth <= 0:  # plain TeX's row end, as \\
            rows.append((start, math[start:i]))
            start = i = i + 3
            continue
        i += 1
    rows.append((start, math[start:]))
    for begin, row in rows:
        lead = len(row) - len(row.lstrip())
        yield line + math.count("\n", 0, begin + lead), row


def _pieces(row: str) -> list:
    """A row cut at top-level \\quad, \\; or 'and': the pieces that hold an equation; a remark after
    \\quad ('\\quad (BP1)') and a condition ('\\text{for } l = 1, ..., L', '\\forall l') are dropped."""
    row = _split(row, _CONDITION)[0]
    parts = _split(row, _THIN_SPACE)
    row = parts[0] + "".join((r" \quad " if _RELATION.search(part) else " ") + part for part in parts[1:])
    # after a separator only an equation counts: '..., where * is element-wise' is prose
    pieces = [p for i, p in enumerate(_split(row, _SEPARATOR)) if _RELATION.search(p) or not i and _OPERATOR.match(p)]
    return pieces or [row]


def _split(text: str, pattern) -> list:
    """``text`` cut at each match of ``pattern`` outside braces, brackets and parentheses."""
    cuts, depth = [], 0
    for i, char in enumerate(text):
        if char in "{([":
            depth += 1
        elif char in "})]":
            depth -= 1
        elif depth <= 0:
            m = pattern.match(text, i)
            if m and (not cuts or i >= cuts[-1][1]):
                cuts.append((i, m.end()))
    parts, pos = [], 0
    for begin, end in cuts:
        parts.append(text[pos:begin])
        pos = end
    return parts + [text[pos:]]


def _not_a_gradient(lhs: str, rhs: str):
    """Why ``lhs = rhs`` is not a gradient equation chainrule checks, or None (then the checker reads it,
    and says what it cannot read)."""
    if _LABEL.match(lhs.strip()):
        return f"'{_short(lhs)}' labels the line; it is not a quantity"
    if _DIMENSIONS.fullmatch(lhs) and _DIMENSIONS.fullmatch(rhs):
        return "a shape annotation (the sizes of a step's factors), not a quantity"
    if _OPTIMIZER.search(lhs) or _OPTIMIZER.search(rhs):
        return "an optimizer's update rule; chainrule check reads gradients"
    if _SIZE.fullmatch(lhs) and _SIZES.fullmatch(rhs):
        return f"it gives a size ({_short(lhs)} = {_short(rhs)}), not a quantity"
    if _LOSS_TERM.match(lhs) or _TERM_DERIVATIVE.search(lhs):
        return f"it defines one element's loss term ℓ or its derivative ({_short(lhs)}); chainrule takes the loss " \
               f"from the spec"
    if _FUNCTION_ENTRY.match(lhs):
        return f"it defines the function {_short(lhs)} entry by entry; chainrule knows each activation"
    if _FUNCTION_OF.fullmatch(lhs):
        return f"it defines the function '{_short(lhs)}' on its own; chainrule knows each activation and its derivative"
    if _ENTRY_OF.fullmatch(lhs):
        return f"it writes one entry, {_short(lhs)}, which chainrule reads only in the whole matrix; write the " \
               f"matrix expression"
    if r"\infty" in rhs:
        return f"it sets {_short(lhs)} to an infinity (a mask's entry), not to a gradient"
    if _STACK.fullmatch(rhs) and not _GRADIENT_TEXT.search(lhs):
        return f"it stacks matrices ({_short(lhs)} = {_short(rhs)}), a parameter's layout, which chainrule takes " \
               f"from the spec; check a gradient"
    if _RUNNING.fullmatch(lhs.strip()) and _gradient(rhs):
        return f"it names the gradient {_short(rhs)} ({lhs.strip()}), which the steps after it use; check those steps"
    if _STEPS.fullmatch(lhs):
        return f"it ranges the steps (t = {_short(rhs)}), it is not a quantity"
    if _JACOBIAN.search(lhs) or _JACOBIAN.search(rhs):
        return "it writes the softmax's Jacobian (∂ŷ/∂z, diag(ŷ) − ŷŷᵀ), which chainrule does not read; write what " \
               "the product equals"
    if _LAYERS.fullmatch(lhs) and _LAYERS.fullmatch(rhs):
        return f"it relates layer numbers ({_short(lhs)} = {_short(rhs)}), not quantities"
    try:
        left = read_tree(lhs)
    except NotAGradient as err:
        return str(err)
    except ChainruleError:
        return None
    inner = left.args[0] if left.kind == "entry" else left
    if inner.kind == "act":
        return f"it defines the function {'the derivative ' if inner.args[1] else ''}'{_short(lhs)}' on its own; " \
               f"chainrule knows each activation and its derivative"
    if left.kind not in ("name", "grad", "entry") and _EXPRESSION.search(re.sub(r"_\s*\{[^{}]*\}", "", lhs)):
        # (\delta h_{T+1} is one name, dh_{T+1}, read by the recurrent checker)
        return f"an identity between two expressions ({_short(lhs)} is not one quantity); chainrule checks a " \
               f"gradient's equation"
    base = re.sub(r"(\d+(?:[.,_]\d+)*|\[[^\]]*\])$", "", inner.args[0]) if inner.kind == "name" else None  # a_{4.2}
    if base in _LOSSES and not (base == "e" and inner.args[0] != "e"):  # e_1, e_t: an embedding's output
        return f"it defines the loss {_short(lhs)}; chainrule takes the loss from the spec"
    forward = f"a forward-pass equation (it defines {_short(lhs)}); chainrule derives the forward pass from the " \
              f"spec and checks gradients"
    try:
        _, right = parse_equation(lhs, step_text(rhs))  # a sequence's steps: [W a_t + b]_{t=1}^{T}
    except NotAGradient as err:
        return str(err)
    except ChainruleError:  # layer norm's σ = sqrt(mean(...) + 10^{-5}): still a forward step
        return forward if base in _FORWARD and not _GRADIENT_TEXT.search(rhs) else None
    if right.kind == "num" or right.kind == "neg" and right.args[0].kind == "num":
        return f"it sets {_short(lhs)} to a number (an initialisation), not to a gradient"
    if right != inner and _contains(right, inner):
        return f"an update or accumulation: {_short(lhs)} appears on both sides"
    if (base in _FORWARD or base == "e" and inner.args[0] != "e") and not _mentions_gradient(right):
        return forward  # (e_1: an embedding's output)
    if base in ("w", "b") and not _mentions_gradient(right) and _mentions(right, "z"):
        return f"the forward pass solved for the parameter {_short(lhs)} (it is in terms of z, with no gradient); " \
               f"chainrule checks gradients"
    return None


def _gradient(text: str) -> bool:
    """True when ``text`` is one gradient, ∂L/∂Y (∇_y J)."""
    try:
        return read_tree(text).kind == "grad"
    except ChainruleError:
        return False


def _mentions(tree: Node, stem: str) -> bool:
    """True when the tree names ``stem`` at some layer (z, z1, z[l])."""
    if tree.kind == "name" and re.fullmatch(rf"{stem}(\d+|\[[^\]]*\])?", tree.args[0]):
        return True
    return any(_mentions(a, stem) for a in tree.args if isinstance(a, Node))


def _contains(tree: Node, part: Node) -> bool:
    return tree == part or any(_contains(a, part) for a in tree.args if isinstance(a, Node))


def _mentions_gradient(tree: Node) -> bool:
    if tree.kind in ("grad", "ind", "where") or tree.kind == "act" and tree.args[1]:
        return True
    if tree.kind == "name" and re.match(r"delta|d(z|a|w|b|x|h|y|l)", tree.args[0]):
        return True
    return any(_mentions_gradient(a) for a in tree.args if isinstance(a, Node))
