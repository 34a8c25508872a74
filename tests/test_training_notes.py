"""The Training section of the notes: every optimizer's and schedule's update rule, in every format.

The rules are written once, as LaTeX, in ``derive.optim``; the LaTeX and Markdown notes print
them as they are and the terminal text through ``derive.documents.latex_to_text``.
"""
import re

import pytest

import derive
from derive.documents import ACCENTS, GRADIENT_OF_THETA, RATE, RATE_0, RATE_E, TEXT_MACROS, THETA, latex_to_text
from derive.optim import OPTIMIZERS, SCHEDULES, WARMUP_EQUATION, validate_optimizer

NETWORK = {"inputs": 2, "layers": [{"units": 3, "activation": "tanh"}, {"units": 1}], "loss": "mse"}
ENTRIES = [("optimizer", name) for name in OPTIMIZERS] + [("schedule", name) for name in SCHEDULES]


def _rules(table, name, settings=None):
    """The rules the notes print for the entry: an optimizer's under ``settings`` (its defaults)."""
    if table == "schedule":
        return SCHEDULES[name].equations
    return OPTIMIZERS[name].rules(validate_optimizer({"type": name, **(settings or {})}))


# every rule under every example's settings (between them every option is on), the symbols and the
# prose's own math
ALL_EQUATIONS = ([eq for name, kind in OPTIMIZERS.items() for example in kind.examples
                  for eq in _rules("optimizer", name, example)]
                 + [eq for name in SCHEDULES for eq in _rules("schedule", name)] + [WARMUP_EQUATION]
                 + [sym for kind in (*OPTIMIZERS.values(), *SCHEDULES.values()) for sym in kind.symbols.values()]
                 + [GRADIENT_OF_THETA.format(cost=cost) for cost in "LCJ"] + [RATE, RATE_0, RATE_E, THETA])
MACRO = re.compile(r"\\(?:[A-Za-z]+|.)")


def _kind(table, name):
    return (OPTIMIZERS if table == "optimizer" else SCHEDULES)[name]


def _derivation(table, name):
    """A small network trained with the entry: the optimizer alone, or Adam with the schedule."""
    spec = {"name": f"notes_{name}", "network": NETWORK}
    if table == "optimizer":
        spec["optimizer"] = {"type": name}
    else:
        spec["optimizer"] = {"type": "adam"}
        spec["schedule"] = {"type": name, **SCHEDULES[name].examples[0]}
    return derive.derive(spec)


def _training_section(text: str) -> str:
    """The Training section, each wrapped line joined to the one it continues."""
    _, training = text.split("\nTraining\n--------\n")
    return re.sub(r"\n(?!  \(\s*\d+\)) +", " ", training)


@pytest.mark.parametrize("table, name", ENTRIES)
def test_every_rule_converts_to_plain_text(table, name):
    examples = _kind(table, name).examples if table == "optimizer" else [{}]
    for eq in [eq for example in examples for eq in _rules(table, name, example)]:
        text = latex_to_text(eq)
        assert "\\" not in text, (eq, text)
        # the only braces left are the set braces \{ \} ask for (multistep's {m ∈ M : m ≤ e})
        assert text.count("{") == eq.count(r"\{") and text.count("}") == eq.count(r"\}"), (eq, text)
        assert "\t" not in text and set(re.findall(r" {2,}", text)) <= {"   "}, (eq, text)  # only \quad's three spaces


@pytest.mark.parametrize("table, name", ENTRIES)
def test_text_notes_show_the_rules_of_the_spec(table, name):
    kind = _kind(table, name)
    d = _derivation(table, name)
    training = _training_section(d.text())
    rules = _rules(table, name)
    first = len(d.all_steps()) + (1 if table == "optimizer" else 1 + len(_rules("optimizer", "adam")))
    shown = "\n".join(f"  ({n:>2})  " + latex_to_text(eq) for n, eq in enumerate(rules, start=first))
    assert shown in training, training
    lead = (f"Optimizer: {kind.torch_name}, as torch.optim.{kind.torch_name} updates each parameter." if table == "optimizer"
            else f"Learning-rate schedule: {kind.torch_name}, stepped once per epoch")
    para = training.partition(shown)[0].splitlines()[-1]              # the paragraph just above the rules
    assert lead in para and para.endswith(":"), para
    assert "\\" not in training
    # the LaTeX notes and the Markdown keep the same rules as LaTeX, numbered after the steps
    for n, eq in enumerate(rules, start=first):
        assert f"\\label{{eq:{name}-{n - first + 1}}}\n{eq}\n" in d.latex()
        assert f"$$\n{eq} \\tag{{{n}}}\n$$" in d.markdown()


def test_adam_reads_as_in_a_textbook():
    assert [latex_to_text(eq) for eq in _rules("optimizer", "adam", {"weight_decay": 0.1, "amsgrad": True})] == [
        "gₜ = ∇_θ L(θₜ₋₁) + λ θₜ₋₁",
        "m₀ = v₀ = 0",
        "mₜ = β₁ mₜ₋₁ + (1 - β₁) gₜ",
        "vₜ = β₂ vₜ₋₁ + (1 - β₂) gₜ²",
        "m̂ₜ = mₜ / (1 - β₁ᵗ)",
        "vᵐᵃˣ₀ = 0,   vᵐᵃˣₜ = max(vᵐᵃˣₜ₋₁, vₜ),   v̂ₜ = vᵐᵃˣₜ / (1 - β₂ᵗ)",
        "θₜ = θₜ₋₁ - η m̂ₜ / (√v̂ₜ + ε)",
    ]


def test_cosine_schedule_reads_as_in_a_textbook():
    assert [latex_to_text(eq) for eq in SCHEDULES["cosine"].equations] == [
        "ηₑ = ηₘᵢₙ + (η₀ - ηₘᵢₙ) ½ (1 + cos(π e / Tₘₐₓ))",
    ]


def test_warm_up_shows_its_rule_only_when_the_schedule_has_one():
    spec = {"name": "warm", "network": NETWORK, "schedule": {"type": "cosine", "T_max": 5, "warmup_epochs": 2}}
    warm = derive.derive(spec)
    assert "  ηₑ = η₀ (e + 1)/(k + 1)   (e < k)\nTraining:" in _training_section(warm.text())
    assert WARMUP_EQUATION in warm.latex() and WARMUP_EQUATION in warm.markdown()
    del spec["schedule"]["warmup_epochs"]
    assert WARMUP_EQUATION not in derive.derive(spec).latex()


def test_digits_text_notes_end_with_adams_rules():
    text = derive.derive("generated/specs/digits.toml").text()
    assert text.endswith("b2 in turn, and gₜ for its gradient ∂L/∂θ on the batch of step t (the batch form above); η = lr =\n"
                         "  0.001, (β₁, β₂) = betas = (0.9, 0.999), ε = eps = 10⁻⁸:\n"
                         "  (26)  gₜ = ∇_θ L(θₜ₋₁)\n"
                         "  (27)  m₀ = v₀ = 0\n"
                         "  (28)  mₜ = β₁ mₜ₋₁ + (1 - β₁) gₜ\n"
                         "  (29)  vₜ = β₂ vₜ₋₁ + (1 - β₂) gₜ²\n"
                         "  (30)  m̂ₜ = mₜ / (1 - β₁ᵗ)\n"
                         "  (31)  v̂ₜ = vₜ / (1 - β₂ᵗ)\n"
                         "  (32)  θₜ = θₜ₋₁ - η m̂ₜ / (√v̂ₜ + ε)\n"
                         "Training: epochs = 20, batch_size = 32, seed = 0.\n"), text[-900:]


@pytest.mark.parametrize("tex, text", [
    (r"x_{t-1}^2 + y_\theta + z^{a b} + w_{\max}", "xₜ₋₁² + y_θ + z^(a b) + wₘₐₓ"),   # Unicode when it has the script
    (r"\frac{a}{b + c} + \frac{a + b}{c} + \tfrac12 \sqrt{x} + \sqrt{x + 1}", "a/(b + c) + (a + b)/c + ½ √x + √(x + 1)"),
    (r"\hat m \tilde\eta \bar g", "m̂ η̃ ḡ"),
    (r"a, \quad \lfloor b \rfloor \, \left( c \right)", "a,   ⌊b⌋ (c)"),
    (r"y = \begin{cases} 1 & \text{up} \\ 0 & \text{down\_hill} \end{cases}", "y = (1 if up else 0 if down_hill)"),
])
def test_converter_forms(tex, text):
    assert latex_to_text(tex) == text


@pytest.mark.parametrize("tex, bad", [
    (r"\theta_t = \mathbf{x}_t", r"\mathbf"),
    (r"\sigma(z)", r"\sigma"),                                   # a Greek letter no table uses yet
    (r"\begin{matrix} 1 & 0 \end{matrix}", "matrix"),
    (r"a & b", "&"),
    (r"a } b", "}"),
])
def test_converter_rejects_what_it_does_not_know(tex, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        latex_to_text(tex)


@pytest.mark.parametrize("tex", [r"\frac{a}", r"x^", r"\sqrt{x", r"\begin{cases} 1 & a"])
def test_converter_rejects_unfinished_latex(tex):
    with pytest.raises(ValueError, match="ends"):
        latex_to_text(tex)


def test_converter_knows_exactly_the_macros_the_tables_use():
    used = {m for eq in ALL_EQUATIONS for m in MACRO.findall(eq)}
    assert set(TEXT_MACROS) | set(ACCENTS) <= used, "a converter entry no table uses"
    structure = used - set(TEXT_MACROS) - set(ACCENTS)
    assert structure == {r"\frac", r"\tfrac", r"\sqrt", r"\text", r"\begin", r"\end", "\\\\"}
