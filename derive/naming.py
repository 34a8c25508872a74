"""How quantities are named: key (the SymPy symbol's and the generated code's name), LaTeX, text, meaning.

The per-sample form writes vectors in lower case (``x``, ``z1``, ``δ1``); the batch form, whose
samples are the columns of a matrix, in upper case (``X``, ``Z1``, ``Δ1``). Parameters are named
the same in both forms.

A layer is its position in the spec, 1-based; a layer inside a residual block is a :class:`Path`,
the block's position then the position inside it: W_{3.1} printed, ``W3_1`` in code, and in a
PyTorch state_dict the nested ModuleList's ``"2.0.weight"`` (``torch_key``).
"""
from dataclasses import dataclass

from .steps import formula


@dataclass(frozen=True)
class Names:
    """The names of one quantity; ``kind`` (its letter in lower case: ``z``, ``w``, ``delta``,
    ``gradient``, ``yhat``, ``loss``), ``layer`` and ``of`` (what a gradient is of) let a notation
    (``derive.notation``) name it its own way."""
    key: str
    latex: str
    text: str
    meaning: str
    kind: str = ""
    layer: object = None
    of: "Names" = None

    @classmethod
    def plain(cls, key: str, meaning: str = "") -> "Names":
        return cls(key, key, key, meaning, key.lower())


class Path(tuple):
    """A layer inside residual blocks: (block's position, position inside, ...), printed ``3.1``."""

    def __str__(self) -> str:
        return ".".join(map(str, self))


def _positions(layer) -> tuple:
    return tuple(layer) if isinstance(layer, tuple) else (layer,)


def layer_key(layer) -> str:
    """A layer's part of a code name: ``3`` for layer 3, ``3_1`` for Path((3, 1))."""
    return "_".join(map(str, _positions(layer)))


def torch_key(layer, attribute: str) -> str:
    """The state_dict key of a parameter of ``layer`` in ``torch.nn.ModuleList`` (module i is spec
    layer i + 1; a residual block is a nested ModuleList): ``"0.weight"``, ``"2.0.weight"``."""
    return ".".join([str(i - 1) for i in _positions(layer)] + [attribute])


def letter(lower: str, batched: bool) -> str:
    """A vector's letter: upper case when its samples are the columns of a matrix."""
    return lower.upper() if batched else lower


def indexed(symbol: str, layer: int, meaning: str) -> Names:
    """``z1``: a letter with its layer as subscript (``z3_1``, printed z_{3.1}, inside a block)."""
    return Names(f"{symbol}{layer_key(layer)}", f"{symbol}_{{{layer}}}", f"{symbol}{layer}", meaning, symbol.lower(), layer)


def network_output(batched: bool) -> Names:
    y = letter("y", batched)
    return Names(f"{y}hat", rf"\hat{{{y}}}", "Ŷ" if batched else "ŷ", "network output", "yhat")


def gradient(of: Names) -> Names:
    """``dL_dW1``: the gradient of the loss with respect to a quantity."""
    return Names(f"dL_d{of.key}", rf"\frac{{\partial L}}{{\partial {of.latex}}}", f"dL/d{of.text}",
                 "gradient of the loss with respect to " + formula(f"⟦{of.key}⟧"), "gradient", of.layer, of)


def error(z: Names, layer: int, batched: bool) -> Names:
    """``δ1 = dL/dz1``, the error of a layer: the adjoint of its pre-activation."""
    word, greek = ("Delta", "Δ") if batched else ("delta", "δ")
    return Names(f"{word}{layer_key(layer)}", rf"\{word}_{{{layer}}}", f"{greek}{layer}",
                 formula(f"⟦partial⟧L/⟦partial⟧⟦{z.key}⟧") + f", the error of layer {layer}", "delta", layer, z)


LOSS = Names("L", "L", "L", "loss", "loss")


GREEK = {"mu": "μ", "sigma": "σ", "gamma": "γ", "beta": "β"}


def greek(name: str, layer, meaning: str) -> Names:
    """``gamma2``: a Greek letter (a key of GREEK) with its layer as subscript, ``\\gamma_{2}``, ``γ2``."""
    return Names(f"{name}{layer_key(layer)}", rf"\{name}_{{{layer}}}", f"{GREEK[name]}{layer}", meaning, name, layer)


def normalized(batched: bool, layer, meaning: str) -> Names:
    """``xhat2``: the normalized input of a layer norm, ``\\hat{x}_{2}``, ``x̂2`` (``X`` in the batch form)."""
    x = letter("x", batched)
    return Names(f"{x}hat{layer_key(layer)}", rf"\hat{{{x}}}_{{{layer}}}", f"{x}\u0302{layer}", meaning, "xhat", layer)


def buffer_names(buffer, layer) -> Names:
    """``running_mean2``: an op's buffer (a registry ``Buffer``) in layer ``layer``, as its code names it."""
    latex = buffer.name.replace("_", r"\_")
    return Names(f"{buffer.name}{layer_key(layer)}", rf"\mathrm{{{latex}}}_{{{layer}}}", f"{buffer.name}{layer}",
                 f"{buffer.meaning} of layer {layer}", buffer.name, layer)
