"""The functions the notes write by name (σ, Φ, φ), each defined once: the logistic function is
``sigma.define`` for the sigmoid activation, the formulas' ``sigmoid(u)`` and the emitted code's
stable sigmoid alike."""
import sympy as sp


class Named(sp.Function):
    """A function the notes write by its name (``σ(z)``) instead of its formula.

    Each subclass has a classmethod ``define(*args)``, the formula. A Named function stays
    unevaluated, prints as ``latex_name`` in LaTeX and ``text_name`` in text, and ``expand_named``
    replaces it by its formula wherever a display form is proved.
    """
    latex_name = text_name = meaning = ""

    @classmethod
    def class_key(cls):
        """Sorted as SymPy sorts a symbol, so products print ``σ(z)*(...)`` and ``z*φ(z)``."""
        return sp.Symbol.class_key()[:2] + (cls.__name__,)

    def _print_named(self, printer, name, parens):
        args = ", ".join(printer._print(a) for a in self.args)
        return f"{name}{parens[0]}{args}{parens[1]}"

    def _latex(self, printer, exp=None):
        plain = all(a.is_Symbol for a in self.args)
        text = self._print_named(printer, self.latex_name, "()" if plain else (r"\left(", r"\right)"))
        return text if exp is None else f"{text}^{{{exp}}}"

    def _sympystr(self, printer):
        return self._print_named(printer, self.text_name, "()")


class sigma(Named):
    nargs, latex_name, text_name, meaning = 1, r"\sigma", "σ", "the logistic sigmoid"

    @classmethod
    def define(cls, z):
        return 1 / (1 + sp.exp(-z))


class Phi(Named):
    nargs, latex_name, text_name, meaning = 1, r"\Phi", "Φ", "the standard normal distribution function"

    @classmethod
    def define(cls, z):
        return (1 + sp.erf(z / sp.sqrt(2))) / 2


class phi(Named):
    nargs, latex_name, text_name, meaning = 1, r"\phi", "φ", "the standard normal density"

    @classmethod
    def define(cls, z):
        return sp.exp(-z ** 2 / 2) / sp.sqrt(2 * sp.pi)


def expand_named(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every Named function replaced by its definition."""
    return expr.replace(lambda e: isinstance(e, Named), lambda e: e.define(*e.args))
