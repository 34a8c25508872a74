"""What a derivation is made of: Quantities (named matrices) and Steps (one equation each).

Every printer, the code generator, ``derive.verify`` and the checker walk the same Steps, so the
notes and the code cannot disagree. A Step's reason holds ``ref`` placeholders, not names: each
printer names the quantities in its own notation.
"""
import re
from dataclasses import dataclass

import sympy as sp

#: The batch size: the number of columns of every batch-form quantity.
N = sp.Symbol("N", integer=True, positive=True)


@dataclass(frozen=True)
class Quantity:
    """A named matrix of the derivation: its SymPy symbol and how each printer names it."""
    key: str
    symbol: sp.Basic
    latex: str
    text: str
    meaning: str
    role: str
    layer: int = 0

    @property
    def shape(self):
        return getattr(self.symbol, "shape", ())


def symbol(key: str, shape: tuple) -> sp.Basic:
    """The SymPy symbol of a quantity: a matrix symbol, or a scalar one for shape ()."""
    return sp.MatrixSymbol(key, *shape) if shape else sp.Symbol(key)


def formula(text: str) -> str:
    """A formula in a reason (``formula(f"{ref(z)} = {ref(W)} {ref(a)}")``): each document prints it
    as one piece of math, not as names joined by words' ``=`` and ``+``."""
    return f"⟨{text}⟩"


def ref(q) -> str:
    """A placeholder for a quantity's name in a reason; each printer fills in its own notation.

    ``q`` is anything with a ``key`` (a Quantity, a graph Value) or a quantity's matrix symbol.
    """
    return f"⟦{getattr(q, 'key', None) or q.name}⟧"


@dataclass(frozen=True)
class Step:
    """One equation: ``target = rhs``, with its shape, its reason in words and its number."""
    number: int
    target: Quantity
    rhs: sp.Basic
    reason: str
    phase: str
    layer: int
    form: str

    @property
    def shape(self):
        return self.target.shape

    def explain(self, names: dict, math=str) -> str:
        """The reason in words, quantities named as ``names`` names them (see ``explain``)."""
        return explain(self.reason, names, math)


def explain(text: str, names: dict, math=str) -> str:
    """``text`` with each ``ref`` named as ``names`` (key -> printed name) names it, and each
    ``formula`` and each name outside one wrapped by ``math`` (``$...$`` in LaTeX)."""
    def name(m):
        return names[m[1]]
    parts = re.split(r"⟨(.*?)⟩", text)
    return "".join(math(re.sub(r"⟦(\w+)⟧", name, part)) if i % 2 else
                   re.sub(r"⟦(\w+)⟧", lambda m: math(name(m)), part) for i, part in enumerate(parts))
