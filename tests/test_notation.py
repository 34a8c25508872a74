"""The course's notation (issue 16): ``derive --notation chainrule|nielsen|ng|goodfellow|cs231n``
prints the same Steps in each convention's symbols, scaling and layout.

deeplearning.ai's dZ = m Δ and cs231n's batch-first rows are rewrites of the batch form's Steps; the
tests here prove each rewritten equation equal to the one it was rewritten from, entry by entry."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sympy as sp

import derive
from codegen.cli import main
from codegen.gallery import render as gallery
from derive.check import accepted_names
from derive.errors import ChainruleError
from derive.notation import NOTATIONS, TABLE, notation
from derive.steps import N as N_BATCH

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "generated/specs"
SIMPLE, DIGITS = SPECS / "simple_nn.toml", SPECS / "digits.toml"
OTHERS = [n.name for n in TABLE if n.name != "chainrule"]
pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex")


@pytest.fixture(scope="module")
def simple():
    return derive.derive(SIMPLE)


def _explicit(expr, size=2):
    """``expr`` with the batch size ``size`` and every matrix symbol as its matrix of entries, evaluated."""
    m = sp.Symbol("m", integer=True, positive=True)
    expr = expr.xreplace({N_BATCH: size, m: size})
    return expr.xreplace({s: s.as_explicit() for s in expr.atoms(sp.MatrixSymbol)}).doit()


def _closed(steps, keep):
    """{key: its right-hand side with every quantity not in ``keep`` replaced by its own, recursively}."""
    closed = {}
    for s in steps:
        rhs = s.rhs.xreplace({sp.MatrixSymbol(k, *v.shape) if v.shape else sp.Symbol(k): v
                              for k, v in closed.items() if k not in keep})
        closed[s.target.key] = rhs
    return {s.target.key: (s.target, closed[s.target.key]) for s in steps}


def _equal(a, b) -> bool:
    difference = sp.Matrix(a) - sp.Matrix(b) if hasattr(a, "shape") else sp.Matrix([a - b])
    return all(sp.expand(e) == 0 or sp.simplify(e) == 0 for e in difference)


# -- the same Steps, renamed ------------------------------------------------------------------------

def test_chainrule_is_the_default_and_the_gallery_is_what_it_was(simple):
    names = accepted_names(simple)
    assert simple.latex(names, notation="chainrule") == simple.latex(names)
    assert simple.markdown(names, notation="chainrule") == simple.markdown(names)
    assert simple.text(names, notation="chainrule") == simple.text(names)
    notes = {p: t for p, t in gallery().items() if not p.endswith(".py")}  # the committed gallery is from before
    assert notes == {p: (ROOT / p).read_text(encoding="utf-8") for p in notes}
    assert "The notation is" not in simple.text()


def test_every_notation_prints_the_same_steps_it_was_given(simple):
    for name in OTHERS:
        nt = notation(name)
        for form in nt.forms:
            view = nt.view(simple, form)
            sweep = simple.sample if form == "sample" else simple.batch
            assert [(s.number, s.target.key, s.phase) for s in view.steps] == \
                   [(s.number, s.target.key, s.phase) for s in sweep.steps]
            if not nt.rows and nt.mean == "delta":  # renamed only: the very same right-hand sides
                assert [s.rhs for s in view.steps] == [s.rhs for s in sweep.steps]


def test_the_names_are_each_courses(simple):
    text = {n: simple.text(notation=n) for n in OTHERS}
    latex = {n: simple.latex(notation=n) for n in OTHERS}
    assert "δ¹ = ((w²)ᵀ δ²) ⊙ relu'(z¹)" in text["nielsen"] and "∂C/∂w² = δ² (a¹)ᵀ" in text["nielsen"]
    assert r"\frac{\partial C}{\partial w^{2}} = \delta^{2} a^{1\top}" in latex["nielsen"]
    assert "C = Σᵢ (a²ᵢ - yᵢ)²" in text["nielsen"]
    assert "dZ[2] = 2 (A[2] - Y)" in text["ng"] and "dW[2] = (1/m) dZ[2] A[1]ᵀ" in text["ng"]
    assert "dZ[1] = (W[2]ᵀ dZ[2]) ⊙ g[1]'(Z[1])" in text["ng"] and "A[1] = g[1](Z[1])" in text["ng"]
    assert r"db^{[1]} = \frac{1}{m} dZ^{[1]} \mathbf{1}_{m}" in latex["ng"] and "g^{[1]\\prime}" in latex["ng"]
    assert "J = (1/m) Σᵢⱼ (A[2]ᵢⱼ - Yᵢⱼ)²" in text["ng"] and "Z[1]   2 × m" in text["ng"]
    assert "g ← ∇_a⁽¹⁾ J = ((W⁽²⁾)ᵀ ∇_a⁽²⁾ J) ⊙ relu'(a⁽¹⁾)" in text["goodfellow"]
    assert "h⁽¹⁾ = relu(a⁽¹⁾)" in text["goodfellow"] and "∇_W⁽²⁾ J = ∇_a⁽²⁾ J (h⁽¹⁾)ᵀ" in text["goodfellow"]
    assert r"g \leftarrow \nabla_{a^{(2)}} J\, = 2 \left(\hat{y} - y\right)" in latex["goodfellow"]
    assert r"\nabla_{W^{(2)}} J\, = \nabla_{a^{(2)}} J\, h^{(1)\top}" in latex["goodfellow"]
    assert "Z1 = X W1ᵀ + 1_N b1" in text["cs231n"] and "scores = H1 W2ᵀ + 1_N b2" in text["cs231n"]
    assert "dW2 = dscoresᵀ H1" in text["cs231n"] and "db1 = 1_Nᵀ dZ1" in text["cs231n"]
    assert "softmax over each row" in derive.derive(DIGITS).text(notation="cs231n")
    assert "dZ1 = (dscores W2) ⊙ relu'(Z1)" in text["cs231n"] and "Z1       N × 2" in text["cs231n"]
    assert "chain rule through scores = H1 W2ᵀ + 1_N b2 (3)" in text["cs231n"]
    for name in OTHERS:  # the opening says which notation, in every format
        assert "The notation is" in text[name] and "The notation is" in latex[name]
        assert "The notation is" in simple.markdown(notation=name)


def test_a_notation_prints_its_own_forms_and_names_a_wrong_choice(simple, capsys):
    assert "One sample" not in simple.text(notation="ng") and "A batch of m examples" in simple.text(notation="ng")
    assert main(["derive", str(SIMPLE), "--notation", "ng", "--form", "sample"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ("chainrule: error: the ng notation writes the batch form, not the "
                                                   "sample form; give --form batch or leave --form out\n")
    assert main(["derive", str(SIMPLE), "--notation", "bishop"]) == 2
    assert capsys.readouterr().err == ("chainrule: error: the notation must be one of "
                                       + ", ".join(NOTATIONS) + ", not 'bishop'\n")
    assert main(["derive", str(SIMPLE), "--notation", "goodfellow", "-f", "md"]) == 0
    assert r"g \leftarrow \nabla_{a^{(1)}} J" in capsys.readouterr().out


# -- the rewrites: deeplearning.ai's scaling and cs231n's rows ------------------------------------------

#: small nets (their entries expanded symbolically) with what the gallery's do: a fused softmax with
#: cross-entropy, a sigmoid's dA before its dZ, Huber's 1/2 beside the 1/N, a residual block
SMALL = {"simple_nn": SIMPLE, "softmax": "2 -> 2 relu -> 2 softmax ; cross_entropy",
         "sigmoid-mse": "2 -> 2 sigmoid ; mse", "huber": "2 -> 2 tanh -> 1 ; huber",
         "residual": "2 -> 2 tanh residual -> 1 ; mse"}


@pytest.mark.parametrize("spec", SMALL.values(), ids=SMALL.keys())
def test_deeplearning_ai_gradients_equal_chainrules_and_dz_is_m_times_delta(spec):
    d = derive.derive(spec)
    forward = {q.key for q in d.batch.quantities.values() if q.role not in ("adjoint", "gradient")}
    original = _closed(d.batch.steps, forward)
    ng = _closed(notation("ng").view(d, "batch").steps, forward)
    N = sp.Integer(2)
    for key, (target, rhs) in original.items():
        if target.role == "gradient":
            assert _equal(_explicit(ng[key][1]), _explicit(rhs)), key
        elif target.role == "adjoint":  # dZ = m Δ, dA = m ∂J/∂A
            assert _equal(_explicit(ng[key][1]), N * _explicit(rhs)), key
    assert "1/N" not in str(ng[d.batch.steps[-1].target.key])  # printed 1/m, the symbol m


@pytest.mark.parametrize("spec", SMALL.values(), ids=SMALL.keys())
def test_cs231n_rows_are_the_transposes_and_the_parameter_gradients_the_same(spec):
    d = derive.derive(spec)
    view = notation("cs231n").view(d, "batch")
    rows = {q.key: q.symbol for q in view.quantities.values()}
    # the row matrices stand for the transposes of the column ones
    back = {rows[q.key]: q.symbol.T for q in d.batch.quantities.values() if q.symbol != rows[q.key]}
    for original, rewritten in zip(d.batch.steps, view.steps):
        rhs = _explicit(rewritten.rhs.xreplace(back))
        expected = _explicit(original.rhs)
        flipped = rewritten.target.symbol != original.target.symbol  # a batch value or a bias, as its rows
        assert _equal(rhs.T if flipped else rhs, expected), original.target.key


def test_cs231n_says_what_it_cannot_write_batch_first():
    with pytest.raises(ChainruleError, match="cannot write Conv batch-first"):
        derive.derive(SPECS / "small_cnn.toml").text(notation="cs231n")


def test_a_one_sample_notation_says_a_batch_norm_network_has_no_sample_form():
    d = derive.derive("3 -> 4 relu -> batchnorm -> 2 ; mse")
    with pytest.raises(ChainruleError, match="the nielsen notation writes one sample, and this network"):
        d.text(notation="nielsen")
    assert "dZ[1] = " in d.text(notation="ng")


# -- the PDFs ---------------------------------------------------------------------------------------

@pdflatex
@pytest.mark.parametrize("spec", [SIMPLE, DIGITS], ids=lambda p: p.stem)
@pytest.mark.parametrize("name", OTHERS)
def test_each_notation_compiles_with_no_overfull_box(spec, name, tmp_path):
    (tmp_path / "notes.tex").write_text(derive.derive(spec).latex(notation=name), encoding="utf-8")
    for _ in range(2):
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "notes.tex"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout[-2000:]
    log = (tmp_path / "notes.log").read_text(encoding="latin-1")
    assert "Overfull" not in log and "LaTeX Warning: Reference" not in log


# -- the checker reads what each notation prints ------------------------------------------------------

def _backward_lines(d, name, form) -> list:
    """The Markdown's backward equations of ``form`` in notation ``name``, as 'QUANTITY = EXPRESSION' lines."""
    part = d.markdown(notation=name, form=form).split("**Backward pass**")[1].split("\n## ")[0]
    return [re.sub(r" \\tag\{\d+\}", "", eq.strip()) for eq in re.findall(r"\$\$\n(.*?)\n\$\$", part, re.S)]


CHECKED = [(n.name, convention) for n in TABLE for convention in n.check.values()]


@pytest.mark.parametrize("name, convention", CHECKED)
def test_the_checker_finds_each_notations_gradients_right(name, convention, tmp_path, capsys):
    d = derive.derive(SIMPLE)
    form = next(f for f, c in notation(name).check.items() if c == convention)
    lines = _backward_lines(d, name, form)
    assert len(lines) == 6  # δ and the two parameter gradients of each of the two layers
    (tmp_path / "mine.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    main(["check", str(SIMPLE), "--file", str(tmp_path / "mine.txt"), "--convention", convention])
    verdicts = [line for line in capsys.readouterr().out.splitlines() if line.startswith("line ")]
    assert len(verdicts) == 6 and all(": correct" in v for v in verdicts), verdicts


@pytest.mark.parametrize("name, cost", [("nielsen", "C"), ("goodfellow", "J"), ("ng", "J"), ("chainrule", "L")])
def test_the_training_rules_write_the_notations_cost(simple, name, cost):
    training = simple.text(notation=name).split("\nTraining\n", 1)[1]
    assert f"∂{cost}/∂θ" in training and f"∇_θ {cost}(θ" in training
    assert cost == "L" or "∂L/∂θ" not in training and "∇_θ L(" not in training
