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
"""
import re
from dataclasses import dataclass, field

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
                     "quad", "qquad"}
_GREEK = {"delta": "delta", "Delta": "delta", "sigma": "sigma", "phi": "phi", "varphi": "phi", "partial": "partial",
          "gamma": "gamma", "beta": "beta", "mu": "mu"}  # γ, β, μ (and σ): layer norm's quantities
_UNICODE = {"δ": r" \delta", "Δ": r" \delta", "σ": r" \sigma", "⊙": r" \odot ", "∘": r" \circ ", "·": r" \cdot ",
            "×": r" \times ", "⊘": r" \oslash ", "ᵀ": "^T", "ŷ": " yhat ", "Ŷ": " yhat ", "∂": r" \partial ",
            "Σ": r" \sum ", "′": "'", "−": "-", "φ": r" \phi ", "ℓ": " l ", "γ": r" \gamma", "β": r" \beta",
            "μ": r" \mu", "\u0302": "hat"}  # x̂ (x and a combining hat), as the text notes print it
_ELL = re.compile(r"\\ell(?![A-Za-z])")
# A layer superscript or subscript: a number, or the letter l (any layer a rule is checked at) or L (the
# last layer) with an offset; in brackets or parentheses, perhaps followed by a transpose or a prime.
LAYER_MARK = re.compile(r"[\[(]?(?P<layer>\d+|[lL](?:[+-]\d{1,2})?)[\])]?(?P<mark>T|top|prime|')?")
_FONT = re.compile(r"\\(mathbf|boldsymbol|bm|mathrm|mathit|vec|operatorname|mathsf|text|textrm)\s*\{([A-Za-z0-9]*)\}")
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<num>\d+\.\d*|\.\d+|\d+)
  | (?P<cmd>\\[A-Za-z]+|\\[{}|,;!])
  | (?P<id>[A-Za-z][A-Za-z0-9]*)
  | (?P<op>\*\*|\.T\b|[-+*/@^_'(){}\[\],=<>.])
""", re.VERBOSE)


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
        if kind == "cmd":
            value = value[1:]
            if value in _IGNORED_COMMANDS:
                continue
            if value in "{}":
                kind, value = "op", "(" if value == "{" else ")"
        if kind == "op" and value in "{}":
            value = "(" if value == "{" else ")"
        tokens.append((kind, value, m.start(), m.end()))
    return tokens, text


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def parse(text: str) -> Node:
    """The tree of a person's expression; ChainruleError when it cannot be read."""
    if not isinstance(text, str) or not text.strip():
        raise ChainruleError("the expression is empty; write it like '\\delta_2 h_1^\\top' or 'delta2 @ h1.T'")
    tokens, clean = tokenize(text)
    parser = Parser(tokens, clean)
    node = parser.expr()
    if parser.pos != len(tokens):
        _, value, start, _ = tokens[parser.pos]
        raise ChainruleError(f"unexpected '{value}' at character {start + 1} of '{_short(clean)}'")
    _check_size(node)
    return node


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


def normalise(parts) -> str:
    """``['W', '2']`` -> ``w2``; ``['\\hat', 'y']`` -> ``yhat``."""
    return "".join(parts).lower().replace("_", "")


class Parser:
    """Recursive descent over the tokens. Node kinds:

    num(value) name(norm) grad(norm) neg(a) add(a, b) sub(a, b) mul(a, b, how) had(a, b) div(a, b)
    T(a) pow(a, k) act(name, prime, arg) ind(arg, op) sum(a, axis) mean(a) ones(kind)
    where(cond, op, a, b) (np.where(cond op 0, a, b), op '>' or '>=') clip(a, low, high)
    ``how`` is 'matmul' (@, juxtaposition, \\cdot, \\times) or 'star' (*, element-wise with broadcasting).
    """

    def __init__(self, tokens, text):
        self.tokens, self.text, self.pos, self.depth = tokens, text, 0, 0

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
        """After '^': T, \\top, \\intercal, {T}, {\\top}; consumes it when present."""
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
        """np.clip(A, low, high); the bounds are numbers."""
        self.expect("op", "(")
        arg = self.expr()
        bounds = []
        for key in ("a_min", "a_max"):
            self.expect("op", ",")
            if self.at("id", "a") and self.at("op", "_", 1) and self.at("id", key[2:], 2) and self.at("op", "=", 3):
                self.pos += 4
            bound = self.expr()
            if not (bound.kind == "num" or bound.kind == "neg" and bound.args[0].kind == "num"):
                raise ChainruleError(f"the bounds of np.clip must be numbers, like np.clip(yhat - y, -1, 1), "
                                     f"not '{bound.text}'")
            bounds.append(bound)
        self.expect("op", ")")
        return self.node("clip", (arg, *bounds), start)

    def command(self, start) -> Node:
        value = self.take()[1]
        if value == "frac":
            return self.fraction(start)
        if value in ("sum", "textstyle"):
            self.skip_limits()
            return self.node("sum", (self.postfix(), "batch"), start)
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
                self.braced_word()  # the length, as in \mathbf{1}_N
            return self.node("ones", ("column",), start)
        if value in _GREEK:
            word = _GREEK[value]
            if word == "partial":
                raise ChainruleError("write a partial derivative as \\frac{\\partial L}{\\partial W_2} or dL/dW2")
            return self.identifier(start, word)
        if value in ("tanh", "exp", "log", "sign"):
            return self.identifier(start, value)
        raise ChainruleError(f"the LaTeX command \\{value} is not understood; use \\odot, \\circ, \\oslash, \\cdot, "
                             f"^\\top, \\frac, \\sum, \\delta, \\sigma, \\hat")

    def skip_limits(self):
        for mark in ("_", "^"):
            if self.at("op", mark):
                self.take()
                if self.at("op", "("):
                    depth = 0
                    while True:
                        k, v, _, _ = self.take()
                        depth += (v == "(") - (v == ")") if k == "op" else 0
                        if depth == 0:
                            break
                else:
                    self.take()

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
        if self.gradient_numerator():
            self.expect("op", "(")
            if self.at("cmd", "partial") or (self.at("id") and self.peek()[1] == "d"):
                self.take()
                name = self.single_name()
            elif self.at("id") and self.peek()[1].startswith("d"):
                word = self.take()[1][1:]
                name = self.name_rest([word], self.start())
            else:
                raise ChainruleError("the denominator of dL/d... must be a name such as W_2 or z_1")
            self.expect("op", ")")
            if name.kind != "name":
                raise ChainruleError(f"dL/d{name.text} is not understood; differentiate by a name such as W_2")
            return self.node("grad", (name.args[0],), start)
        self.expect("op", "(")
        top = self.expr()
        self.expect("op", ")")
        self.expect("op", "(")
        bottom = self.expr()
        self.expect("op", ")")
        return self.node("div", (top, bottom), start)

    def gradient_numerator(self) -> bool:
        """True when \\frac's numerator is ∂L, dL or d L; consumes it."""
        for pattern in ((("cmd", "partial"), ("id", "L")), (("id", "dL"),), (("id", "d"), ("id", "L")),
                        (("cmd", "partial"), ("id", "C")), (("id", "dC"),), (("id", "d"), ("id", "C"))):
            if self.at("op", "(") and all(self.at(k, v, i + 1) for i, (k, v) in enumerate(pattern)) \
                    and self.at("op", ")", len(pattern) + 1):
                self.pos += len(pattern) + 2
                return True
        return False

    def identifier(self, start, word=None) -> Node:
        if word is None:
            word = self.take()[1]
        if word in ("np", "numpy") and self.at("op", "."):
            self.take()
            return self.identifier(start)
        if word in ("dL", "dC", "d") and (self.at("op", "/") or word == "d" and self.at("id", "L")):
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

        A superscript may end in a transpose or a prime, as in W^{[l+1]T} and g^{[l]'}(z^{[l]})."""
        index, transposed, prime = "", False, False
        while True:
            numbered = index or re.search(r"\d$", normalise(parts))
            if self.at("op", "^") and self.at("op", "(", 1) and self.at("op", "(", 2) and self.at("id", None, 3) \
                    and self.at("op", ")", 4) and self.at("op", ")", 5) and not self.at("id", "l", 3) \
                    and not self.at("id", "L", 3):
                self.pos += 6  # a sample index such as x^{(n)}
            elif self.at("op", "_"):
                self.take()
                word = self.braced_word()
                m = LAYER_MARK.fullmatch(word)
                if not numbered and m and not m["mark"] and not m["layer"].isdigit():
                    index = m["layer"]
                else:
                    parts.append(word)
            elif self.at("num") and self.peek()[2] == self.tokens[self.pos - 1][3] and self.peek()[1].isdigit() \
                    and not numbered:
                parts.append(self.take()[1])  # δ2, \delta2
            elif self.at("op", "^") and not self.transpose_ahead() and not numbered and self.layer_ahead():
                self.take()
                word = self.braced_word()
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
        if self.at("op", "(") and (norm in ACTIVATION_ALIASES or norm in GENERIC_ACTIVATIONS or norm == "sign"
                                   or (prime and re.fullmatch(r"[a-z]+", norm))):
            self.take()
            arg = self.expr()
            self.expect("op", ")")
            return self.node("act", (norm, prime, arg), start)
        if prime:
            raise ChainruleError(f"{norm}' must be applied to an argument, like {norm}'(z_1)")
        node = self.node("name", (norm,), start)
        return self.node("T", (node,), start) if transposed else node

    def transpose_ahead(self) -> bool:
        return self.at("id", "T", 1) or self.at("cmd", "top", 1) or self.at("cmd", "intercal", 1) or (
            self.at("op", "(", 1) and (self.at("id", "T", 2) or self.at("cmd", "top", 2)))

    def layer_ahead(self) -> bool:
        """A layer superscript: ^2, ^{2}, ^{[2]}, ^{(2)}, or one in l or L: ^l, ^{l+1}, ^{[l-1]}, ^L."""
        def number_or_letter(offset):
            return self.at("num", None, offset) or self.at("id", "l", offset) or self.at("id", "L", offset)
        if number_or_letter(1):
            return True
        if not self.at("op", "(", 1):
            return False
        offset = 2
        if self.at("op", "[", offset) or self.at("op", "(", offset):
            offset += 1
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
