"""Parse a person's scalar formula (e.g. ``z*tanh(log(1+exp(z)))``) into SymPy without running it.

The text is first held to the grammar: only letters, digits, spaces, ``. + - * / ( ) ,`` (no
comment, string, backslash or line break), decimal numbers and the operators of arithmetic.
Python's ``ast`` module then only parses; nothing is evaluated. The tree is bounded
(``derive.limits``: nodes, depth, ``**`` exponents, numbers, polynomial degree) before SymPy sees
it, and walked with a whitelist of node types, names and functions, so a formula such as
``__import__('os').system(...)`` can only be rejected. A formula whose constants fold to an
infinity or a complex number (``z/0``, ``log(0)``, ``sqrt(-1)``) is refused.

``max``/``min`` with a number become ``Piecewise`` with the number's branch first, so at a tie the
derivative is the number's, 0, as in ``torch.relu``, ``relu6`` and ``hardtanh`` (``torch.clamp``
takes 1 there and ``torch.maximum`` 1/2); a clamp ``min(max(u, lo), hi)`` is one three-branch
Piecewise. ``sign`` has derivative 0, as in PyTorch (SymPy's would be a Dirac delta).
"""
import ast
import io
import re
import tokenize

import sympy as sp

from . import limits
from .errors import ChainruleError, did_you_mean
from .functions import sigma


class sign(sp.sign):
    """SymPy's sign with the derivative PyTorch gives it: 0 (everywhere but at 0, where it has none)."""

    def _eval_derivative(self, x):
        return sp.S.Zero


def _clamp(u, lo, hi):
    """u limited to [lo, hi] (either may be None): the bound's branch first, so its derivative wins at a tie."""
    branches = ([(lo, u <= lo)] if lo is not None else []) + ([(hi, u >= hi)] if hi is not None else [])
    return sp.Piecewise(*branches, (u, True)) if branches else u


def clamp_bounds(expr):
    """(u, lo, hi) when ``expr`` is a clamp of u to [lo, hi] (lo < hi; either may be None), as _clamp
    writes it, else (expr, None, None)."""
    if isinstance(expr, sp.Piecewise) and expr.args[-1][1] == sp.true and 2 <= len(expr.args) <= 3:
        u, lo, hi = expr.args[-1][0], None, None
        for value, cond in expr.args[:-1]:
            if isinstance(cond, sp.LessThan) and cond.lhs == u and cond.rhs == value and value.is_number and lo is None:
                lo = value
            elif isinstance(cond, sp.GreaterThan) and cond.lhs == u and cond.rhs == value and value.is_number and hi is None:
                hi = value
            else:
                return expr, None, None
        if lo is None or hi is None or lo < hi:
            return u, lo, hi
    return expr, None, None


def _extreme(a, b, larger: bool):
    """max(a, b) (``larger``) or min(a, b) as a Piecewise."""
    # a constant such as 1/2 - sigmoid(1) as the float it is: SymPy's comparisons and
    # simplifications of such constants inside Piecewise conditions can run for minutes
    a, b = (_real_number(x) if x.is_number and not x.is_Rational else x for x in (a, b))
    if a.is_number and b.is_number:
        return sp.Max(a, b) if larger else sp.Min(a, b)
    if a.is_number:
        a, b = b, a
    if not b.is_number:  # two formulas: the second's branch where they tie
        gap = a - b
        if gap.has(sp.Piecewise):
            raise _Nested()
        try:
            tie = (gap <= 0) if larger else (gap >= 0)
        except TypeError:  # SymPy knows gap is not real (it has sqrt(-1) or 1/0 in it)
            raise _NotReal(gap) from None
        if gap.is_polynomial() and sp.count_ops(gap) <= limits.SIMPLIFY_OPS:
            tie = tie.simplify()  # z - z/10 <= 0 as z <= 0: a kink the printer knows
        return sp.Piecewise((b, tie), (a, True))
    u, lo, hi = clamp_bounds(a)
    if u.has(sp.Piecewise):
        raise _Nested()
    if larger:
        if hi is not None and b >= hi:
            return b
        return _clamp(u, b if lo is None else sp.Max(lo, b), hi)
    if lo is not None and b <= lo:
        return b
    return _clamp(u, lo, b if hi is None else sp.Min(hi, b))


def _real_number(value):
    """A constant as a Float, or _NotReal when it is not a finite real number."""
    value = sp.N(value, 15)
    if not (value.is_real and value.is_finite):
        raise _NotReal(value)
    return value


class _NotReal(Exception):
    """A max or min of something that is not a finite real number (sqrt(-1), 1/0)."""


class _Nested(Exception):
    """A max or min compares a formula that has a max or min inside (other than a clamp's bounds):
    its kinks would be conditions on conditions, which neither the notes nor the code print."""


def _fold(larger):
    def extreme(*args):
        if not args:
            raise TypeError("no arguments")
        out = args[0]
        for arg in args[1:]:
            out = _extreme(out, arg, larger)
        return out
    return extreme


FUNCTIONS = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "abs": sp.Abs, "tanh": sp.tanh,
    "sinh": sp.sinh, "cosh": sp.cosh, "sin": sp.sin, "cos": sp.cos, "erf": sp.erf,
    "atan": sp.atan, "sign": sign, "max": _fold(True), "min": _fold(False),
    "sigmoid": sigma.define,
}
CONSTANTS = {"pi": sp.pi, "e": sp.E}
_BINARY = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b,
}
_CHARACTERS = re.compile(r"[A-Za-z0-9_.+\-*/(), ]*")
_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_OPERATORS = {"+", "-", "*", "/", "**", "(", ")", ","}
_GRAMMAR = "write it like 'z*tanh(log(1+exp(z)))'"


def parse_formula(text: str, variables: dict, what: str = "formula") -> sp.Expr:
    """The SymPy expression for `text`; `variables` maps the allowed names to SymPy symbols."""
    if not isinstance(text, str) or not text.strip():
        raise ChainruleError(f"the {what} is empty; write it in {_names(variables)}, e.g. 'z*tanh(z)'")
    if len(text) > limits.FORMULA_CHARS:
        raise ChainruleError(f"the {what} is longer than the limit of {limits.FORMULA_CHARS} characters "
                             f"(FORMULA_CHARS); shorten it")
    bad = _CHARACTERS.match(text).end()
    if bad < len(text):
        raise ChainruleError(f"the {what} uses {text[bad]!r}, which is not part of a formula (no comments, strings, "
                             f"backslashes or line breaks); {_GRAMMAR}")
    _check_tokens(text, what)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        raise ChainruleError(f"the {what} '{text}' is not a formula; {_GRAMMAR}") from None
    builder = _Builder(text, variables, what)
    builder.bound(tree.body)
    return builder.checked(builder.build(tree.body))


def _check_tokens(text: str, what: str):
    """Only numbers, names and the operators of the grammar; numbers decimal and short."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        raise ChainruleError(f"the {what} '{text}' is not a formula; {_GRAMMAR}") from None
    for tok in tokens:
        if tok.type == tokenize.NUMBER:
            if not _NUMBER.fullmatch(tok.string):
                raise ChainruleError(f"the {what} has the number '{tok.string}'; write numbers in decimal like 0.5 or 1e-3")
            if len(tok.string) > limits.NUMBER_CHARS:
                raise ChainruleError(f"the {what} has a number longer than the limit of {limits.NUMBER_CHARS} "
                                     f"characters (NUMBER_CHARS)")
            if float(tok.string) > limits.NUMBER_SIZE:
                raise ChainruleError(f"the {what} has the number {tok.string}, above the limit of "
                                     f"{limits.NUMBER_SIZE:g} (NUMBER_SIZE)")
        elif tok.type == tokenize.OP and tok.string not in _OPERATORS:
            raise ChainruleError(f"the {what} uses '{tok.string}', which is not part of a formula; {_GRAMMAR}")
        elif tok.type not in (tokenize.NAME, tokenize.OP, tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
            raise ChainruleError(f"the {what} '{text}' is not a formula; {_GRAMMAR}")


def _group(node):
    """'+' for + and -, '*' for * and /, else None: the operators a chain may repeat."""
    if isinstance(node, ast.BinOp):
        return "+" if isinstance(node.op, (ast.Add, ast.Sub)) else "*" if isinstance(node.op, (ast.Mult, ast.Div)) else None
    return None


def _literal(node):
    """The number a literal is (``2``, ``-0.5``, ``1/2``), else None."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        top, bottom = _literal(node.left), _literal(node.right)
        return top / bottom if top is not None and bottom else None
    factor = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        factor, node = (-factor if isinstance(node.op, ast.USub) else factor), node.operand
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return factor * node.value
    return None


def _names(variables) -> str:
    return ", ".join(f"'{n}'" for n in variables)


class _Builder:
    def __init__(self, text, variables, what):
        self.text, self.variables, self.what = text, variables, what

    def fail(self, problem: str) -> ChainruleError:
        return ChainruleError(f"the {self.what} '{self.text}' {problem}")

    def bound(self, root):
        """The limits on the tree: nodes, depth and powers (walked without recursion), then degree."""
        count, stack = 0, [(root, 1)]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, (ast.expr_context, ast.operator, ast.unaryop)):
                continue
            count += 1
            if count > limits.FORMULA_NODES:
                raise self.fail(f"has more than the limit of {limits.FORMULA_NODES} parts (FORMULA_NODES); shorten it")
            if depth > limits.FORMULA_DEPTH:
                raise self.fail(f"nests deeper than the limit of {limits.FORMULA_DEPTH} levels (FORMULA_DEPTH)")
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
                self.power(node)
            # a chain of one operator (a + b - c + ..., a * b / c) is one level, however long
            stack.extend((child, depth + (_group(child) is None or _group(child) != _group(node)))
                         for child in ast.iter_child_nodes(node))
        if self.degree(root) > limits.POWER_EXPONENT ** 2:
            raise self.fail(f"has powers of powers above degree {limits.POWER_EXPONENT ** 2} (POWER_EXPONENT squared)")

    def degree(self, node) -> int:
        """A bound on the polynomial degree the formula reaches (what expanding it would cost)."""
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            n = _literal(node.right)
            return self.degree(node.left) * (abs(n) if n is not None else 1)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
            return self.degree(node.left) + self.degree(node.right)
        if isinstance(node, ast.Constant):
            return 0
        return max([1] + [self.degree(child) for child in ast.iter_child_nodes(node)])

    def checked(self, expr):
        """``expr``, once every constant in it folds to a finite real number of sensible size."""
        if expr.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
            raise self.fail("divides by zero or takes log(0) (a constant part is infinite or undefined); "
                            "rewrite it so every part is finite")
        # innermost first: a part is evaluated only once its own parts are known to be small, so
        # exp(exp(exp(13))) is refused at exp(exp(13)) instead of evaluated (which never ends)
        for part in sp.postorder_traversal(expr):
            if part.is_number:
                value = sp.N(part, 20)
                if not value.is_real or not value.is_finite:
                    raise self.fail(f"has the constant part {part}, which is not a finite real number")
                if abs(value) > limits.FOLDED_SIZE:
                    raise self.fail(f"has a constant part of about {sp.N(value, 3)}, above the limit of "
                                    f"{limits.FOLDED_SIZE:g} (FOLDED_SIZE)")
        return expr

    def build(self, node):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return sp.nsimplify(node.value, rational=True) if isinstance(node.value, float) else sp.Integer(node.value)
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](self.build(node.left), self.build(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.build(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            if node.func.id not in FUNCTIONS:
                raise self.fail(f"calls unknown function '{node.func.id}'{did_you_mean(node.func.id, FUNCTIONS)};"
                                f" use one of: {', '.join(sorted(FUNCTIONS))}")
            args = [self.build(a) for a in node.args]
            try:
                return FUNCTIONS[node.func.id](*args)
            except TypeError:
                raise self.fail(f"gives {node.func.id} the wrong number of arguments") from None
            except _Nested:
                raise self.fail(f"compares, in {node.func.id}, a part that has max or min inside (only a clamp "
                                f"min(max(u, lo), hi) may nest); write the cases apart") from None
            except _NotReal as err:
                raise self.fail(f"takes {node.func.id} of {err.args[0]}, which is not a finite real number") from None
        raise self.fail(f"uses '{ast.unparse(node)}', which is not arithmetic; use numbers, "
                        f"{_names(self.variables)}, + - * / ** and functions")

    def power(self, node):
        """``u ** n`` with a number n of at most POWER_EXPONENT, or ``c ** u`` with a number c and no
        power in u: no tower such as ``2**2**2**2**2`` and no huge power such as ``z**999999999``."""
        n = _literal(node.right)
        if n is not None:
            if abs(n) > limits.POWER_EXPONENT:
                raise self.fail(f"raises to the power {n}, above the limit of {limits.POWER_EXPONENT} (POWER_EXPONENT)")
            return
        base_is_number = _literal(node.left) is not None or (isinstance(node.left, ast.Name) and node.left.id in CONSTANTS)
        if not base_is_number or any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in ast.walk(node.right)):
            raise self.fail(f"has the power '{ast.unparse(node)}'; a power needs a number exponent (at most "
                            f"{limits.POWER_EXPONENT}) or a number base and an exponent without '**'")

    def name(self, name):
        if name in self.variables:
            return self.variables[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        choices = list(self.variables) + list(CONSTANTS)
        raise self.fail(f"uses unknown name '{name}'{did_you_mean(name, choices)}; it may use {_names(self.variables)}")


def undefined_where(expr, variables) -> list:
    """The conditions under which ``expr`` or its derivative in ``variables[0]`` is undefined or
    infinite (a denominator 0, log of a number <= 0, a root of a negative number), as text such as
    'z = 0' or 'yhat <= 0'; those SymPy proves never hold (1 + |z| = 0) are left out."""
    var = variables[0]
    conditions = []
    for e in (expr, sp.diff(expr, var)):
        for part in sp.preorder_traversal(e):
            if isinstance(part, sp.log):
                conditions.append((part.args[0], "<="))
            elif isinstance(part, sp.Pow) and part.exp.is_number and part.exp.is_negative:
                conditions.append((part.base, "="))
            if isinstance(part, sp.Pow) and part.exp.is_number and not part.exp.is_integer:
                conditions.append((part.base, "<"))
    where, other = sp.S.EmptySet, []
    for base, op in conditions:
        if base.is_positive or (op == "<" and base.is_nonnegative) or (op == "=" and base.is_zero is False):
            continue
        relation = {"=": sp.Eq, "<=": sp.Le, "<": sp.Lt}[op](base, 0)
        if base.free_symbols == {var} and base.is_polynomial(var) and sp.degree(base, var) <= 2:
            where = where | sp.solveset(relation, var, sp.S.Reals)  # z <= 0 and z = 0 as one z <= 0
        elif relation not in other:
            other.append(relation)
    return [_text(r) for r in ([] if where is sp.S.EmptySet else [where.as_relational(var)]) + other]


def _text(relation) -> str:
    """'z = 0', 'z <= 0 or z >= 1': a condition as the notes and comments print it."""
    if isinstance(relation, sp.Or):
        return " or ".join(_text(a) for a in relation.args)
    if isinstance(relation, sp.And):
        return " and ".join(_text(a) for a in relation.args)
    if isinstance(relation, sp.Eq):
        return f"{sp.sstr(relation.lhs)} = {sp.sstr(relation.rhs)}"
    return sp.sstr(relation)


def value_at(expr, point: dict):
    """``expr`` at ``point`` as a SymPy Float, or None where it is not a finite real number (1/z at
    0, log(z) below 0, and a Piecewise condition SymPy cannot compare there)."""
    try:
        value = sp.N(expr.subs(point))
    except (TypeError, ValueError):
        return None
    return value if value.is_real and value.is_finite else None
