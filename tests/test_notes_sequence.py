"""The notes of sequence networks as a teacher pastes them: step t of a name is ``a_{5,t}`` (``a5_t`` in text),
the parenthesised ``(m)_t`` only for a compound such as ∂L/∂a_5; step t of a stacked [f(t)]_{t=1}^T is f(t)
itself; the position table reads as its rows; the same forms in LaTeX, Markdown and text."""
import re

import pytest
import sympy as sp

from codegen.gallery import ROOT
from derive import derive
from derive.printing import MathLatex, NotesText
from derive.sequence import at_step

SPECS = ROOT / "generated" / "specs"
SLICED_NAME = r"\\left\((\\?[A-Za-z]+(_\{[^{}]*\})?)\\right\)_\{t\}"  # (x)_t, (a_{5})_t, (\delta_{6})_t


@pytest.fixture(scope="module")
def transformer():
    d = derive(str(SPECS / "tiny_transformer.toml"))
    return d.latex(), d.markdown(), d.text()


@pytest.fixture(scope="module")
def lstm():
    d = derive(str(SPECS / "lstm_lm.toml"))
    return d.latex(), d.markdown(), d.text()


def spec_of(layers, inputs, loss):
    return {"name": "seqnotes", "network": {"inputs": inputs, "layers": layers, "loss": loss}}


@pytest.mark.parametrize("tex, printed, latex, text", [
    ("x", "x", r"x_{t}", "x_t"),
    ("a_{5}", "a5", r"a_{5,t}", "a5_t"),
    (r"\delta_{6}", "δ6", r"\delta_{6,t}", "δ6_t"),
    (r"\hat{x}", "x̂", r"\hat{x}_{t}", "x̂_t"),
    ("z^{3}", "z3", r"z^{3}_{t}", "z3_t"),               # Nielsen's superscript layer
    ("dZ^{[3]}", "dZ3", r"dZ^{[3]}_{t}", "dZ3_t"),      # Ng's
    (r"\frac{\partial L}{\partial a_{5}}", "∂L/∂a5", r"\left(\frac{\partial L}{\partial a_{5}}\right)_{t}", "(∂L/∂a5)_t"),
])
def test_a_names_step_gains_t_in_its_subscript_and_a_compound_keeps_its_parentheses(tex, printed, latex, text):
    m = sp.MatrixSymbol("m", 6, 1)
    assert at_step(MathLatex({"m": tex}), m, True) == latex
    assert at_step(NotesText({"m": printed}), m, False) == text


def test_transformer_steps_read_as_subscripts(transformer):
    latex, markdown, _ = transformer
    for notes in (latex, markdown):
        assert r"z_{6} = \left[W_{6} a_{5,t} + b_{6}\right]_{t=1}^{T}" in notes
        assert r"\frac{\partial L}{\partial W_{6}} = \sum_{t=1}^{T} \delta_{6,t} a_{5,t}^{\top}" in notes
        assert r"\frac{\partial L}{\partial W_{6}} = \sum_{t=1}^{T} \Delta_{6,t} A_{5,t}^{\top}" in notes
        assert r"\frac{\partial L}{\partial b_{6}} = \sum_{t=1}^{T} \Delta_{6,t} \mathbf{1}_{N}" in notes
        assert r"\hat{y} = \left[\operatorname{softmax}\left(z_{6,t}\right)\right]_{t=1}^{T}" in notes
        assert r"a_{3.1} = \left[\operatorname{LN}\left(a_{2,t}; \gamma_{3.1}, \beta_{3.1}\right)\right]_{t=1}^{T}" in notes
        assert r"e_{1} = \left[W_{1}^{\top} x_{t}\right]_{t=1}^{T}" in notes
        assert r"\frac{\partial L}{\partial W_{1}} = \sum_{t=1}^{T} x_{t} \left(\frac{\partial L}{\partial a_{2}}\right)_{t}^{\top}" \
            in notes  # a compound keeps its parentheses
        assert not re.search(SLICED_NAME, notes), re.search(SLICED_NAME, notes)


def test_layer_norms_gain_sum_has_no_redundant_parentheses(transformer):
    latex, markdown, text = transformer
    for notes in (latex, markdown):
        assert (r"\frac{\partial L}{\partial \gamma_{5}} = \sum_{t=1}^{T} \left(\frac{\partial L}{\partial a_{5}}\right)_{t}"
                r" \odot \hat{x}_{t}") in notes
        assert r"\sum_{t=1}^{T} \left(\left(\frac{\partial L}{\partial a_{5}}\right)_{t} \odot \hat{x}_{t}\right)" not in notes
        # the batch form keeps them: 1_N multiplies the whole sum's term
        assert (r"\sum_{t=1}^{T} \left(\left(\frac{\partial L}{\partial A_{5}}\right)_{t} \odot \hat{x}_{t}\right) "
                r"\mathbf{1}_{N}") in notes
    assert "∂L/∂γ5 = Σ_t (∂L/∂a5)_t ⊙ x̂_t\n" in text and "∂L/∂γ5 = Σ_t ((∂L/∂A5)_t ⊙ x̂_t) 1_N" in text
    assert "with $g_t$ the gain" in markdown and r"g\_t" not in latex


def test_the_position_table_reads_as_its_rows(transformer):
    latex, markdown, text = transformer
    for notes in (latex, markdown):
        assert r"a_{2} = \left[e_{1,t} + P_{2,t}^{\top}\right]_{t=1}^{T}" in notes
        assert r"A_{2} = \left[E_{1,t} + P_{2,t}^{\top}\right]_{t=1}^{T}" in notes
        assert (r"\frac{\partial L}{\partial P_{2}} = \left[\left(\frac{\partial L}{\partial a_{2}}\right)_{t}^{\top}"
                r"\right]_{t=1}^{T}") in notes
        assert (r"\frac{\partial L}{\partial P_{2}} = \left[\left(\frac{\partial L}{\partial A_{2}} \mathbf{1}_{N}\right)_{t}"
                r"^{\top}\right]_{t=1}^{T}") in notes
        assert r"\operatorname{vec}" not in notes and r"\operatorname{rows}" not in notes
    assert "a2 = [e1_t + P2_tᵀ]_(t=1..T)" in text and "∂L/∂P2 = [(∂L/∂A2 1_N)_tᵀ]_(t=1..T)" in text
    assert "vec(" not in text and "rows_T" not in text
    assert "the identity plus a constant" not in text


def test_a_stack_in_text_stays_one_operand(transformer):
    _, _, text = transformer
    assert "δ4.2 = [W4.3ᵀ δ4.3_t]_(t=1..T) ⊙ gelu'(z4.2)" in text
    assert "for t = 1..T" not in text  # it read as if the range took in the product after it
    assert "∂L/∂W6 = Σ_t δ6_t a5_tᵀ" in text and "a3.1 = [LN(a2_t; γ3.1, β3.1)]_(t=1..T)" in text


def test_the_embeddings_gradient_reads_the_step_of_the_stack_it_is_given(lstm):
    latex, markdown, text = lstm
    for notes in (latex, markdown):
        assert (r"\frac{\partial L}{\partial W_{1}} = \sum_{t=1}^{T} x_{t} \left(W_{ih,2}^{\top} \delta_{t}\right)^{\top}"
                in notes)
        assert r"\frac{\partial L}{\partial W_{ih,2}} = \sum_{t=1}^{T} \delta_{t} e_{1,t}^{\top}" in notes
        assert r"\right]_{t=1}^{T}\right)_{t}" not in notes  # no slice of a stack left anywhere
    assert "∂L/∂W1 = Σ_t x_t (W_ih2ᵀ δ_t)ᵀ" in text and "∂L/∂W1 = Σ_t X_t (W_ih2ᵀ δ_t)ᵀ" in text


def test_a_mean_over_the_positions_spreads_as_a_stack():
    d = derive(spec_of([{"type": "embedding", "embedding_dim": 3}, {"type": "positional"},
                        {"type": "mean", "axis": "length"}, {"units": 2, "activation": "softmax"}],
                       {"length": 3, "vocab": 5}, "cross_entropy"))
    latex, text = d.latex(), d.text()
    assert r"a_{3} = \frac{1}{T} \sum_{t=1}^{T} a_{2,t}" in latex
    assert (r"\frac{\partial L}{\partial P_{2}} = \left[\left(\frac{1}{T} W_{4}^{\top} \delta_{4}\right)^{\top}"
            r"\right]_{t=1}^{T}") in latex
    assert (r"\frac{\partial L}{\partial P_{2}} = \left[\left(\frac{1}{T} W_{4}^{\top} \Delta_{4} \mathbf{1}_{N}\right)"
            r"^{\top}\right]_{t=1}^{T}") in latex
    assert r"\frac{\partial L}{\partial W_{1}} = \sum_{t=1}^{T} x_{t} \left(\frac{1}{T} W_{4}^{\top} \delta_{4}\right)^{\top}" \
        in latex
    assert "∂L/∂P2 = [((1/T) W4ᵀ δ4)ᵀ]_(t=1..T)" in text and "a3 = (1/T) Σ_t a2_t" in text
    assert r"\right]_{t=1}^{T}\right)_{t}" not in latex and "..T))_t" not in text


def test_a_course_notation_takes_step_t_after_its_superscript():
    latex = derive(str(SPECS / "lstm_lm.toml")).latex(notation="ng")
    assert r"dW^{[3]} = \frac{1}{m} \sum_{t=1}^{T} dZ^{[3]}_{t} H_{2,t}^{\top}" in latex
    assert r"\left(dZ^{[3]}\right)_{t}" not in latex and r"\left(Z^{[3]}\right)_{t}" not in latex
