"""The spec's field checks, shared by the spec and by every layer kind's ``parse``.

Each check raises the one-line :class:`ChainruleError` naming the field, what it got and what to write.
"""
import math
from dataclasses import dataclass
from typing import Callable

from .errors import ChainruleError, did_you_mean, shown


def check_keys(table: dict, allowed, where: str):
    for key in table:
        if key not in allowed:
            raise ChainruleError(f"{where}: unknown key {shown(key)}{did_you_mean(key, allowed)}; "
                                 f"allowed keys: {', '.join(allowed)}")


def positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ChainruleError(f"{what} must be a positive whole number, not {shown(value)}")
    return value


def boolean(raw: dict, key: str, default: bool, where: str) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ChainruleError(f"{where} {key} must be true or false, not {shown(value)}")
    return value


def number(raw: dict, key: str, default: float, where: str, low: float, high: float, closed=(True, True),
           hint: str = "") -> float:
    """``raw[key]`` (or ``default``) as a float in [low, high] (an end left out of ``closed`` is open)."""
    value = raw.get(key, default)
    real = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not real or not (value >= low if closed[0] else value > low) or not (value <= high if closed[1] else value < high):
        interval = f"{'[' if closed[0] else '('}{low:g}, {high:g}{']' if closed[1] else ')'}"
        raise ChainruleError(f"{where} {key} must be a number in {interval}{hint}, not {shown(value)}")
    return float(value)


def entry(value, where: str):
    """An activation or loss entry checked for shape before the catalogue looks it up."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise ChainruleError(f"{where} must be a name or a table, not {shown(value)}")
    for key in ("type", "formula", "name"):
        if key in value and not isinstance(value[key], str):
            raise ChainruleError(f"{where} {key} must be a string, not {shown(value[key])}")
    return value


def size(shape: tuple) -> int:
    """The number of features of a value of named sizes ``shape`` (C·H·W for an image)."""
    return math.prod(n for _, n in shape)


def shown_shape(shape: tuple) -> str:
    """``shape`` as a reader writes it: ``16×2×2`` for (channels, height, width), ``8`` for features."""
    return "×".join(str(n) for _, n in shape)


def described(shape: tuple) -> str:
    """``a 1×8×8 image``, ``a 2×16 signal``, ``8 features``: a value of named sizes ``shape`` in words."""
    names = tuple(n for n, _ in shape)
    kinds = {("channels", "height", "width"): "image", ("channels", "length"): "signal"}
    if names in kinds:
        return f"a {shown_shape(shape)} {kinds[names]}"
    return f"{shown_shape(shape)} {'features' if names == ('features',) else '(' + ', '.join(names) + ')'}"


@dataclass(frozen=True)
class At:
    """Where a layer table stands: its ``path`` (1-based positions, nested in blocks), whether it makes the
    network's output (``last``), its input's named sizes (``shape``), and ``parse_layers(raw, shape, path,
    last)``, which parses a block's inner list (a residual block's layers), and ``inline_layers(text, path)``,
    which reads a block's inline layers (``4 relu -> 4``) into tables."""
    path: tuple
    last: bool
    shape: tuple
    parse_layers: Callable = None
    inline_layers: Callable = None

    @property
    def label(self) -> str:
        return ".".join(map(str, self.path))

    @property
    def where(self) -> str:
        return f"layer {self.label}"

    @property
    def width(self) -> int:
        return size(self.shape)


def inline_args(args, where: str) -> dict:
    """``k=v, k=v`` of an inline layer or entry as {k: "v"}."""
    out = {}
    for arg in filter(None, (a.strip() for a in (args or "").split(","))):
        key, eq, value = arg.partition("=")
        if not eq:
            raise ChainruleError(f"{where} argument {shown(arg)} is not key=value")
        out[key.strip()] = value.strip()
    return out


def inline_value(text: str):
    """An inline layer setting as the TOML value it stands for: true/false, a whole number, a number, a name."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def sequence_length(shape) -> int:
    """T when named sizes ``shape`` (a layer's input, a value's layout) are a sequence (("length", T),
    ("features", F)), else 0."""
    return shape[0][1] if tuple(name for name, _ in shape) == ("length", "features") else 0


def sequence_input(at, where: str,
                   otherwise=", or put it before the layer that ends the sequence (a mean or return_sequences = false)"):
    """(T, F) of a layer that takes a sequence { length, features }; else the one-line error, whose fix for an
    input of other features ends with ``otherwise``."""
    names = tuple(name for name, _ in at.shape)
    if names == ("length", "vocab"):
        raise ChainruleError(f"{where} takes a sequence of features, but its input is token ids; put "
                             f'{{ type = "embedding", embedding_dim = 16 }} before it')
    if not sequence_length(at.shape):
        raise ChainruleError(f"{where} takes a sequence {{ length, features }}, but its input is "
                             f"{shown_shape(at.shape)} {names[-1]}; give inputs = {{ length = T, features = F }}"
                             f"{otherwise}")
    return at.shape[0][1], at.shape[1][1]
