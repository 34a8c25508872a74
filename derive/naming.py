"""How quantities are named: key (the SymPy symbol's and the generated code's name), LaTeX, text, meaning.

The per-sample form writes vectors in lower case (``x``, ``z1``, ``δ1``); the batch form, whose
samples are the columns of a matrix, in upper case (``X``, ``Z1``, ``Δ1``). Parameters are named
the same in both forms.
"""
from dataclasses import dataclass

from .steps import formula


@dataclass(frozen=True)
class Names:
    """The names of one quantity."""
    key: str
    latex: str
    text: str
    meaning: str

    @classmethod
    def plain(cls, key: str, meaning: str = "") -> "Names":
        return cls(key, key, key, meaning)


def letter(lower: str, batched: bool) -> str:
    """A vector's letter: upper case when its samples are the columns of a matrix."""
    return lower.upper() if batched else lower


def indexed(symbol: str, layer: int, meaning: str) -> Names:
    """``z1``: a letter with its layer as subscript."""
    return Names(f"{symbol}{layer}", f"{symbol}_{{{layer}}}", f"{symbol}{layer}", meaning)


def network_output(batched: bool) -> Names:
    y = letter("y", batched)
    return Names(f"{y}hat", rf"\hat{{{y}}}", "Ŷ" if batched else "ŷ", "network output")


def gradient(of: Names) -> Names:
    """``dL_dW1``: the gradient of the loss with respect to a quantity."""
    return Names(f"dL_d{of.key}", rf"\frac{{\partial L}}{{\partial {of.latex}}}", f"dL/d{of.text}",
                 f"gradient of the loss with respect to " + formula(f"⟦{of.key}⟧"))


def error(z: Names, layer: int, batched: bool) -> Names:
    """``δ1 = dL/dz1``, the error of a layer: the adjoint of its pre-activation."""
    word, greek = ("Delta", "Δ") if batched else ("delta", "δ")
    return Names(f"{word}{layer}", rf"\{word}_{{{layer}}}", f"{greek}{layer}", 
                 formula(f"⟦partial⟧L/⟦partial⟧⟦{z.key}⟧") + f", the error of layer {layer}")


LOSS = Names("L", "L", "L", "loss")
