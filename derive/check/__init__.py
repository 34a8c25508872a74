"""The checker: a person's derivation (``check``) or backward-pass code (``check_code``) against the derivation.

``parse`` reads the text (nothing in it is run), ``bind`` gives its names their SymPy values,
``compare`` evaluates and compares, ``diagnose`` names the usual mistakes, ``checker`` joins them,
``code`` runs a person's NumPy backward pass in a contained child, ``options`` holds the command
line's options. Names are imported on first use (PEP 562), so ``derive.check.options`` does not
pay for SymPy. The package itself is callable, ``derive.check(derivation, "W2", "...")``, because
importing it replaces the function ``derive.check`` on the parent package with this module.
"""
import importlib
import sys
import types

_EXPORTS = {
    "CheckResult": "results", "Checker": "checker", "Conventions": "checker", "RuleResult": "results", "accepted_names": "checker",
    "check": "checker", "read_equations": "checker", "check_code": "code",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'derive.check' has no attribute '{name}'")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


class _Callable(types.ModuleType):
    def __call__(self, derivation, wrt: str, expr: str, convention: str = "sample"):
        """Compare a person's expression for the gradient ``wrt`` with the derived one (``checker.check``)."""
        return self.check(derivation, wrt, expr, convention)


sys.modules[__name__].__class__ = _Callable
