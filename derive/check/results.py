"""The verdicts ``check`` returns: one expression's (CheckResult) and a rule's over the layers it applies at
(RuleResult), apart from the Checker so the recurrent checker builds the same ones without importing it."""
from dataclasses import dataclass


@dataclass
class CheckResult:
    """The verdict on one expression. ``equal`` is True when it is the derived gradient."""
    wrt: str
    expression: str
    equal: bool
    diagnosis: str
    correct: str
    correct_latex: str
    counterexample: str = ""
    proof: str = ""
    undecided: str = ""  # why the random points could not decide (``equal`` is False then)
    fits: bool = False  # whether it has the gradient's shape
    note: str = ""  # the convention it was read in, and where else it is right

    def report(self) -> str:
        if self.equal:
            lines = [f"{self.wrt}: correct ({self.proof})"]
        elif self.undecided:
            lines = [f"{self.wrt}: could not decide: {self.undecided}", f"  yours:    {self.expression}",
                     f"  correct:  {self.wrt} = {self.correct}", f"  LaTeX:    {self.correct_latex}"]
        else:
            lines = [f"{self.wrt}: different", f"  yours:    {self.expression}", f"  mistake:  {self.diagnosis}",
                     f"  correct:  {self.wrt} = {self.correct}", f"  LaTeX:    {self.correct_latex}"]
            if self.counterexample:
                lines.append(f"  counterexample: {self.counterexample}")
        if self.note:
            lines.append(f"  convention: {self.note}")
        return "\n".join(lines) + "\n"


@dataclass
class _LayerVerdict:
    layer: int
    result: "CheckResult | None"  # None: the rule names a quantity this layer does not have
    note: str = ""


@dataclass
class RuleResult:
    """The verdict on a rule in the layer l: one CheckResult per layer it applies at."""
    wrt: str
    expression: str
    layers: list
    note: str = ""
    letter: str = "l"  # the index the rule is in: l (layers), or h (attention's heads)

    @property
    def fits(self) -> bool:
        return any(v.result.fits for v in self.layers if v.result is not None)

    @property
    def equal(self) -> bool:
        return all(v.result.equal for v in self.layers if v.result is not None)

    def report(self) -> str:
        checked = [str(v.layer) for v in self.layers if v.result is not None]
        wrong = [str(v.layer) for v in self.layers if v.result is not None and not v.result.equal]
        verdict = f"wrong at {self.letter} = {', '.join(wrong)}" if wrong else "correct wherever it applies"
        k = self.letter
        lines = [f"{self.wrt} = {self.expression}: a rule in {k}, checked at {k} = {', '.join(checked)}: {verdict}"]
        for v in self.layers:
            if v.result is None:
                lines.append(f"  {k} = {v.layer}: {v.note}")
                continue
            first, *rest = v.result.report().rstrip("\n").split("\n")
            lines.append(f"  {k} = {v.layer}: {first}")
            lines += [f"  {line}" for line in rest]
        if self.note:
            lines.append(f"  convention: {self.note}")
        return "\n".join(lines) + "\n"
