"""Standalone NumPy code printed from a derivation's steps: ``codegen.generate(derivation)``.

``generate`` is imported on first use (PEP 562), so the command line's ``--help`` does not load
SymPy, and it lives in ``codegen.emit`` so that no submodule shadows the function's name.
"""


def __getattr__(name):
    if name == "generate":
        from .emit import generate
        return generate
    raise AttributeError(f"module 'codegen' has no attribute '{name}'")
