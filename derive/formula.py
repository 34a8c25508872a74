"""Parse a person's scalar formula (e.g. ``z*tanh(log(1+exp(z)))``) into SymPy without running it.

Python's ``ast`` module only parses; nothing is evaluated. The tree is then walked with a
whitelist of node types, names and functions, and SymPy objects are built directly, so a
formula such as ``__import__('os').system(...)`` can only be rejected.
"""
import ast

import sympy as sp

from .errors import ChainruleError, did_you_mean

FUNCTIONS = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "abs": sp.Abs, "tanh": sp.tanh,
    "sinh": sp.sinh, "cosh": sp.cosh, "sin": sp.sin, "cos": sp.cos, "erf": sp.erf,
    "atan": sp.atan, "sign": sp.sign, "max": sp.Max, "min": sp.Min,
    "sigmoid": lambda u: 1 / (1 + sp.exp(-u)),
}
CONSTANTS = {"pi": sp.pi, "e": sp.E}
_BINARY = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b,
}
_MAX_LENGTH = 500


def parse_formula(text: str, variables: dict, what: str = "formula") -> sp.Expr:
    """The SymPy expression for `text`; `variables` maps the allowed names to SymPy symbols."""
    if not isinstance(text, str) or not text.strip():
        raise ChainruleError(f"the {what} is empty; write it in {_names(variables)}, e.g. 'z*tanh(z)'")
    if len(text) > _MAX_LENGTH:
        raise ChainruleError(f"the {what} is longer than {_MAX_LENGTH} characters; shorten it")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ChainruleError(f"the {what} '{text}' is not a formula; write it like 'z*tanh(log(1+exp(z)))'") from None
    return _Builder(text, variables, what).build(tree.body)


def _names(variables) -> str:
    return ", ".join(f"'{n}'" for n in variables)


class _Builder:
    def __init__(self, text, variables, what):
        self.text, self.variables, self.what = text, variables, what

    def fail(self, problem: str) -> ChainruleError:
        return ChainruleError(f"the {self.what} '{self.text}' {problem}")

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
        raise self.fail(f"uses '{ast.unparse(node)}', which is not arithmetic; use numbers, "
                        f"{_names(self.variables)}, + - * / ** and functions")

    def name(self, name):
        if name in self.variables:
            return self.variables[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        choices = list(self.variables) + list(CONSTANTS)
        raise self.fail(f"uses unknown name '{name}'{did_you_mean(name, choices)}; it may use {_names(self.variables)}")
