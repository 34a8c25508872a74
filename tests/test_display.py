"""The forms in which the notes print derivatives: each proved equal to SymPy's derivative, and shown.

A display form (``textbook`` in the catalogue) is only ever printed; the derivation, the proof
and the generated code use ``sympy.diff`` of the definition. Smooth forms are proved by
``simplify(form - diff) == 0``; piecewise ones (sign, clip) by exact equality at rational
points that include every kink and points just either side of it.
"""
import shutil
import subprocess

import pytest
import sympy as sp

import derive
from derive.catalogue import catalogue_text
from derive.functions import Named, expand_named, sigma
from derive.ops.activations import CATALOGUE as ACTIVATIONS, Activation, Z, make_activation
from derive.ops.losses import CATALOGUE as LOSSES, Y, YHAT, agrees, clip, make_loss

WITH_TEXTBOOK_ACTIVATIONS = sorted(name for name, kind in ACTIVATIONS.items() if kind.textbook)
WITH_TEXTBOOK_LOSSES = sorted(name for name, kind in LOSSES.items() if kind.textbook)
SMOOTH_NETWORK = "2 -> 2 silu -> 2 gelu -> 2 softplus -> 1 ; mse"


def test_the_forms_the_task_names_are_in_the_catalogue():
    assert {"silu", "gelu", "softplus"} <= set(WITH_TEXTBOOK_ACTIVATIONS)
    assert {"mae", "huber", "bce"} <= set(WITH_TEXTBOOK_LOSSES)


# -- the proofs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", WITH_TEXTBOOK_ACTIVATIONS)
def test_activation_textbook_form_is_sympys_derivative(name):
    act = make_activation(name, "test")
    form = expand_named(act.textbook)
    assert sp.simplify(form - sp.diff(act.definition, Z)) == 0
    for point in (-4, -1, sp.Rational(-1, 3), 0, sp.Rational(1, 7), 1, 5):
        assert abs(sp.N(form.subs(Z, point) - sp.diff(act.definition, Z).subs(Z, point), 30)) < 1e-25
    assert act.derivative_display() == act.textbook       # the runtime proof accepted it too


def test_a_textbook_form_that_is_not_the_derivative_is_not_printed():
    silu = make_activation("silu", "test")
    wrong = Activation(silu.name, silu.latex, silu.definition, textbook=sigma(Z) * (1 + Z * sigma(Z)))
    shown = wrong.derivative_display()
    assert shown != wrong.textbook and not shown.atoms(sigma)                # SymPy's own simplified form instead
    for point in (-2, 0, sp.Rational(1, 3), 3):
        assert abs(sp.N(shown.subs(Z, point) - silu.derivative.subs(Z, point), 30)) < 1e-25


def _gaps(delta):
    """ŷ - y at every multiple of delta/8 in [-3 delta, 3 delta] and 1e-9 either side of 0 and of ±delta."""
    tiny = sp.Rational(1, 10 ** 9)
    grid = {delta * k / 8 for k in range(-24, 25)}
    return grid | {k + s * tiny for k in (0, delta, -delta) for s in (1, -1)}


KINK_CASES = [(name, params) for name in WITH_TEXTBOOK_LOSSES for params in ({}, {"delta": 0.5}, {"delta": 2.5})
              if not params or "delta" in LOSSES[name].defaults]


@pytest.mark.parametrize("name, params", KINK_CASES, ids=[f"{n}-{p or 'default'}" for n, p in KINK_CASES])
def test_loss_textbook_form_is_sympys_derivative_on_both_sides_of_every_kink(name, params):
    loss = make_loss({"type": name, **params})
    derivative = sp.diff(loss.pointwise, YHAT)
    form = expand_named(loss.textbook)
    delta = sp.nsimplify(params.get("delta", LOSSES[name].defaults.get("delta", 1)))
    for y in (sp.Rational(-7, 10), sp.Rational(3, 10), sp.Rational(21, 10)):   # ŷ never 0 or 1 (bce's poles)
        for gap in _gaps(delta):
            point = {YHAT: y + gap, Y: y}
            assert form.subs(point) == derivative.subs(point), (name, params, point)
    assert loss.derivative_display() == loss.textbook


def test_smooth_loss_forms_are_also_proved_symbolically():
    for name in ("mae", "bce"):
        loss = make_loss(name)
        assert sp.simplify(expand_named(loss.textbook) - loss.derivative) == 0, name


def test_agrees_rejects_forms_that_differ_only_at_or_near_a_kink():
    mae, huber = make_loss("mae"), make_loss("huber")
    r = YHAT - Y
    assert agrees(sp.sign(r), mae.derivative)
    assert not agrees(sp.Piecewise((-1, r < 0), (1, True)), mae.derivative)        # differs at ŷ = y only
    assert not agrees(-sp.sign(r), mae.derivative)
    assert agrees(expand_named(clip(r, -1, 1)), huber.derivative)
    assert not agrees(expand_named(clip(r, -sp.Rational(999, 1000), sp.Rational(999, 1000))), huber.derivative)
    assert not agrees(r, huber.derivative)


def test_a_loss_without_a_textbook_form_prints_sympys_factored_derivative():
    for spec in ("mse", "cross_entropy", {"formula": "(yhat - y)**4 / 4"}):
        loss = make_loss(spec)
        assert loss.textbook is None
        assert loss.derivative_display() == sp.factor(loss.derivative)


def test_generated_code_still_uses_sympys_derivative():
    """The display forms never reach the derivation: its steps hold sympy.diff of the definitions."""
    d = derive.derive("2 -> 2 silu -> 2 gelu -> 1 ; mae")
    bodies = {lam.expr for step in d.all_steps() for lam in step.rhs.atoms(sp.Lambda)}
    assert not any(body.atoms(Named) for body in bodies)
    assert make_activation("silu", "t").derivative in bodies
    assert make_activation("gelu", "t").derivative in bodies
    assert make_loss("mae").derivative in bodies


# -- the documents show them ------------------------------------------------------------------

def test_text_notes_show_the_activation_forms_and_name_their_functions():
    text = derive.derive(SMOOTH_NETWORK).text().replace("\n  ", " ")  # wrapped lines joined
    assert "silu'(z) = σ(z) (z (1 - σ(z)) + 1)" in text
    assert "gelu'(z) = Φ(z) + z φ(z)" in text
    assert "softplus'(z) = σ(z)\n" in text
    assert ("Here Φ(z) = erf(sqrt(2) z/2)/2 + 1/2, the standard normal distribution function; "
            "φ(z) = sqrt(2) exp(-z²/2)/(2 sqrt(pi)), the standard normal density; "
            "σ(z) = 1/(1 + exp(-z)), the logistic sigmoid.") in text


def test_latex_and_markdown_notes_show_the_activation_forms():
    d = derive.derive(SMOOTH_NETWORK)
    for doc in (d.latex(), d.markdown()):
        assert r"\operatorname{silu}'(z) = \sigma(z) \left(z \left(1 - \sigma(z)\right) + 1\right)" in doc
        assert r"\operatorname{gelu}'(z) = \Phi(z) + z \phi(z)" in doc
        assert r"\operatorname{softplus}'(z) = \sigma(z)" in doc
        assert r"$\sigma(z) = \frac{1}{1 + e^{- z}}$, the logistic sigmoid" in doc


def test_notes_without_named_functions_have_no_here_line():
    d = derive.derive("2 -> 2 tanh -> 1 sigmoid ; bce")
    assert "Here " not in d.text() and "Here " not in d.markdown()


def test_catalogue_lists_the_activation_forms():
    text = catalogue_text()
    assert "silu'(z) = σ(z) (z (1 - σ(z)) + 1)  (σ(z) = 1/(1 + exp(-z)), the logistic sigmoid)" in text
    assert "gelu'(z) = Φ(z) + z φ(z)  (Φ(z) = " in text
    assert "softplus'(z) = σ(z)  (σ(z) = " in text


def test_notes_show_the_loss_forms():
    d = derive.derive("2 -> 2 tanh -> 1 ; mae")
    assert "∂ℓ/∂ŷ = sign(ŷ - y)\n" in d.text()
    assert r"\frac{\partial \ell}{\partial \hat{y}} = \operatorname{sign}{\left(\hat{y} - y \right)}" in d.latex()
    d = derive.derive("2 -> 2 tanh -> 1 ; huber(delta=0.5)")
    assert "∂ℓ/∂ŷ = clip(ŷ - y, -1/2, 1/2)\n" in d.text()
    clipped = r"\operatorname{clip}\left(\hat{y} - y, - \frac{1}{2}, \frac{1}{2}\right)"
    assert r"\frac{\partial \ell}{\partial \hat{y}} = " + clipped in d.markdown()


def test_catalogue_lists_the_loss_forms():
    text = catalogue_text()
    assert "∂ℓ/∂ŷ = sign(ŷ - y)  [mean" in text
    assert "∂ℓ/∂ŷ = clip(ŷ - y, -1, 1)  [mean" in text
    assert "∂ℓ/∂ŷ = (ŷ - y)/(ŷ (1 - ŷ))  [mean" in text


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is installed by .ci/run")
def test_notes_with_the_named_functions_compile(tmp_path):
    tex = tmp_path / "notes.tex"
    tex.write_text(derive.derive("2 -> 2 silu -> 2 gelu -> 2 softplus -> 1 ; huber(delta=0.5)").latex())
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", tex.name],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:]
