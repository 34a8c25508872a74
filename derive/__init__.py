"""chainrule's derivation engine: specs in, chain-rule Steps out, printed as LaTeX, Markdown or text.

Names are imported on first use (PEP 562), so ``import derive.check.options`` for the command
line's ``--help`` does not pay for SymPy.
"""
import importlib

_EXPORTS = {
    "ChainruleError": "errors", "Derivation": "chain", "Step": "chain", "derive": "chain",
    "Layer": "spec", "Network": "spec", "build": "spec", "from_dict": "spec", "load": "spec",
    "parse_inline": "spec", "check": "check",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'derive' has no attribute '{name}'")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
