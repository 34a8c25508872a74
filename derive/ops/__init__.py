"""The catalogue: activations and losses, each defined once by its SymPy formula."""
import sympy as sp

from ..errors import ChainruleError


def bind_params(what: str, defaults: dict, given: dict, positive: bool = False):
    """The parameter values for a catalogue entry: (exact SymPy values, the ones the spec gave)."""
    extra = given.keys() - defaults.keys()
    if extra:
        allowed = ", ".join(defaults) or "no parameters"
        raise ChainruleError(f"{what} has no parameter '{sorted(extra)[0]}'; it takes {allowed}")
    values = {}
    for key, default in defaults.items():
        value = given.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (positive and value <= 0):
            kind = "a positive number" if positive else "a number"
            raise ChainruleError(f"{what} parameter {key} must be {kind}, not {value!r}")
        values[key] = value
    exact = {k: sp.nsimplify(v, rational=True) for k, v in values.items()}
    return exact, tuple(sorted((k, values[k]) for k in given))
