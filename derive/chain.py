"""The derivation: a Network's every gradient, as ordered Steps in two forms.

The network is expanded into a graph of ops (``derive.graph``) twice, with one sample as a
column vector (the textbook form) and with a batch whose samples are the columns of ``X`` (the
form the generated code implements), and the one reverse sweep (``derive.sweep``) turns each
into Steps. Every adjoint gets its own symbol (``delta_l = dL/dz_l``), so each Step is a small
matrix-level expression in earlier symbols and the derivation grows linearly with depth.
"""
from .graph import expand
from .steps import N, Quantity, Step, ref
from .sweep import Sweep

__all__ = ["Derivation", "N", "Quantity", "Step", "derive", "ref"]


class Derivation:
    """Every gradient of a network, as two ordered lists of Steps (one sample, then a batch).

    ``steps`` is the batch form, the one the generated code implements; ``sample_steps`` the
    textbook per-sample form (none, and ``sample`` None, when an op couples the samples: batch norm). ``gradients['W1']`` is the per-sample right-hand side of dL/dW1.
    ``sample`` and ``batch`` are the two sweeps (their ``quantities``, ``steps``, ``z``, ``L``).
    ``latex``, ``markdown`` and ``text`` print the notes: ``names``, the names the checker reads
    (``derive.check.accepted_names(derivation)``), when given, makes them point to the checker;
    ``form`` ('sample', 'batch', 'both') picks the forms; ``body_only``: LaTeX without its preamble;
    ``notation`` (chainrule, nielsen, ng, goodfellow, cs231n: ``derive.notation``) the course's
    symbols, scaling and layout the same steps print in; ``worked``, the numbers of the worked example
    (``codegen.worked.worked_example(derivation)``), are printed after them.
    """

    def __init__(self, network):
        self.network = network
        batch = expand(network, N)
        # an op that couples the samples (batch norm's statistics) has no per-sample form: sample is None
        coupled = any(node.op.couples_samples for node in batch.nodes)
        self.sample = None if coupled else Sweep(expand(network, 1), network, "sample", 1)
        self.batch = Sweep(batch, network, "batch", self.sample.number if self.sample else 1)
        self.sample_steps, self.steps = self.sample.steps if self.sample else [], self.batch.steps

    @property
    def forms(self) -> list:
        """[(form, sweep)] of the forms the derivation has: ("sample", ...) then ("batch", ...)."""
        return [(form, sweep) for form, sweep in (("sample", self.sample), ("batch", self.batch)) if sweep]

    def _gradients(self, sweep) -> dict:
        by_key = {s.target.key: s.rhs for s in sweep.steps}
        return {name: by_key[f"dL_d{name}"] for name in self.network.param_names}

    @property
    def gradients(self) -> dict:
        """The per-sample gradients (the batch form's when the network has no per-sample form)."""
        return self._gradients(self.sample or self.batch)

    @property
    def batch_gradients(self) -> dict:
        return self._gradients(self.batch)

    def quantities(self, form: str = "sample") -> dict:
        return dict(self.sample.quantities if form == "sample" else self.batch.quantities)

    def all_steps(self) -> list:
        return self.sample_steps + self.steps

    def latex(self, names=None, form="both", body_only=False, notation="chainrule", worked=None) -> str:
        from .documents import latex_document
        return latex_document(self, names, form, body_only, notation, worked)

    def markdown(self, names=None, form="both", notation="chainrule", worked=None) -> str:
        from .documents import markdown_document
        return markdown_document(self, names, form, notation, worked)

    def text(self, names=None, form="both", notation="chainrule", worked=None) -> str:
        from .documents import text_document
        return text_document(self, names, form, notation, worked)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def _repr_latex_(self) -> str:
        """Every step as one aligned display, numbered as in the notes (Jupyter renders it with MathJax)."""
        from .documents import latex_steps
        return latex_steps(self)

    def __repr__(self) -> str:
        from .documents import describe
        from .escape import terminal_text
        return (f"<Derivation of {terminal_text(self.network.name)}: {describe(self.network, terminal_text)}, "
                f"{len(self.all_steps())} steps>")


def derive(spec) -> Derivation:
    """Derive every gradient of ``spec``: a Network, a spec dict, a TOML path or an inline string."""
    from .spec import build
    return Derivation(build(spec))
