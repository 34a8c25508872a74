"""The catalogue: activations and losses, each defined once by its SymPy formula."""
import math

import sympy as sp

from ..errors import ChainruleError, shown

#: The largest size of an activation's or a loss's parameter (slope, alpha, delta). Past it the
#: exact rationals SymPy builds, the printed code and init gains (1 + slope**2) stop making sense.
MAX_PARAM = 10 ** 6


def bind_params(what: str, defaults: dict, given: dict, positive: bool = False):
    """The parameter values for a catalogue entry: (exact SymPy values, the ones the spec gave)."""
    extra = [key for key in given if key not in defaults]
    if extra:
        allowed = ", ".join(defaults) or "no parameters"
        raise ChainruleError(f"{what} has no parameter {shown(extra[0])}; it takes {allowed}")
    values = {}
    for key, default in defaults.items():
        value = given.get(key, default)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or abs(value) > MAX_PARAM or not math.isfinite(value) or (positive and value <= 0):
            kind = "a positive number" if positive else "a number"
            raise ChainruleError(f"{what} parameter {key} must be {kind} of size at most {MAX_PARAM}, "
                                 f"not {shown(value)}")
        values[key] = value
    exact = {k: sp.nsimplify(v, rational=True) for k, v in values.items()}
    return exact, tuple(sorted((k, values[k]) for k in given))
