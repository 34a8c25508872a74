"""What a teacher would still edit before pasting the notes (issue 16's closing note): the picture's
boxes and labels apart at every gallery net, Goodfellow's ĝ in the Training section, the fused step's
derivation and the worked example as numbered equations that cite the steps they use, cs231n's
batch-first layer and batch norm (each equation the transpose of its column form), and what a
reader met in the gallery's notes (layers inside a block, the picture in the notation's symbols,
an equation kept on the page of its reason)."""
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from codegen.cli import main
from derive import derive
from derive.documents import outline
from derive.notation import notation
from derive.picture import FILL, box_width, diagram, label_width, layout
from derive.steps import N
from derive.verify import _evaluate

SPECS = Path(__file__).resolve().parent.parent / "generated" / "specs"
GENERATED = SPECS.parent
GALLERY = sorted(SPECS.glob("*.toml"))
pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                              reason="needs pdflatex and pdftotext")

# -- the picture ----------------------------------------------------------------------------------

#: Half the heights of the drawn boxes (a value's frame is 6 mm, a parameter's 5 mm), and an adjoint's
#: label over the gap it sits in (a fraction of \scriptsize), in cm at full size.
HALF_HEIGHT = {"param": 0.25}
LABEL_BOTTOM, LABEL_TOP = 0.12, 0.7


def _rectangles(sweep):
    """Every drawn box and every label of an adjoint between neighbours: (name, x0, x1, y0, y1)."""
    boxes, arrows = diagram(sweep)
    at, gaps = layout(boxes, arrows)
    rects = []
    for b in boxes:
        (x, y), w, h = at[b.key], box_width(b), HALF_HEIGHT.get(b.kind, 0.3)
        rects.append((b.text, x - w / 2, x + w / 2, y - h, y + h))
    chain = [b.key for b in sorted(boxes, key=lambda b: b.column) if b.row == 0]
    for a in arrows:  # an adjoint to the value before: its label sits in the gap after that value
        if a.adjoint and a.label and a.source in chain and chain.index(a.source) == chain.index(a.target) + 1:
            w = label_width(a.label[1])
            rects.append((a.label[1], gaps[a.target] - w / 2, gaps[a.target] + w / 2, LABEL_BOTTOM, LABEL_TOP))
    return boxes, arrows, at, rects


@pytest.mark.parametrize("spec", GALLERY, ids=lambda p: p.stem)
def test_no_box_or_label_of_the_picture_meets_another_or_a_parameters_arrow(spec):
    d = derive(spec)
    boxes, arrows, at, rects = _rectangles(d.sample or d.batch)
    for i, (a, ax0, ax1, ay0, ay1) in enumerate(rects):
        for b, bx0, bx1, by0, by1 in rects[i + 1:]:
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, (spec.stem, a, b)
    labels = [r for r in rects if r[3] == LABEL_BOTTOM]
    kinds = {b.key: b.kind for b in boxes}
    for arrow in arrows:  # a parameter's arrow runs from its box's foot to its value's head
        if arrow.adjoint or kinds[arrow.source] != "param":
            continue
        (x0, y0), (x1, y1) = at[arrow.source], at[arrow.target]
        for t in np.linspace(0, 1, 50):
            x, y = x0 + t * (x1 - x0), (y0 - 0.25) + t * ((y1 + 0.3) - (y0 - 0.25))
            assert not any(lx0 < x < lx1 and ly0 < y < ly1 for _, lx0, lx1, ly0, ly1 in labels), (spec.stem, arrow)


def test_the_layer_norm_block_is_drawn_larger_than_before():
    """The gallery's pre-norm block, 17 values long, was drawn at 0.6 of its size; now at 0.7 or more."""
    tex = derive(SPECS / "layernorm.toml").latex()
    natural = float(re.search(r"\\linewidth/([\d.]+)\)", tex)[1])
    assert FILL * (21 - 4) / 2.54 * 72.27 / natural >= 0.7  # the A4 text width of the notes, 2 cm margins


def test_the_picture_is_in_the_notations_symbols():
    d = derive(SPECS / "layernorm.toml")
    picture = d.text(notation="ng").split("Notation\n--------")[0]
    assert "X → Z[1] → A[1] → μ[2]" in picture and "J ⇢ Z[4] (dZ[4])" in picture and "z₁" not in picture
    assert "for a batch" in " ".join(picture.split())
    assert "x → z₁ → a₁" in d.text().split("Notation\n--------")[0]


# -- Goodfellow's gradient estimate -----------------------------------------------------------------

def test_goodfellows_training_gradient_is_his_g_hat_not_the_g_of_his_backward_steps():
    d = derive(SPECS / "simple_nn.toml")
    training = d.text(notation="goodfellow").split("\nTraining\n--------\n")[1]
    assert "(12)  ĝₜ = ∇_θ J(θₜ₋₁)" in training and "(13)  θₜ = θₜ₋₁ - η ĝₜ" in training
    assert not re.search(r"(?<!\u0302)g[ₜ_]", training.replace("ĝ", "#"))
    assert r"\hat{g}_t = \nabla_\theta J" in d.latex(notation="goodfellow")
    assert "g ← ∇" in d.text(notation="goodfellow")  # his g stays the backward steps' own
    assert "(23)  gₜ = ∇_θ L(θₜ₋₁)" in d.text()  # the other notations keep g


def test_ngs_training_rules_keep_clear_of_his_m_and_his_g():
    """deeplearning.ai's m is the batch size and g an activation: Adam's moments are his V and S, the
    gradient his dθ (as his dW)."""
    d = derive(SPECS / "digits.toml")
    training = d.text(notation="ng").split("\nTraining\n--------\n")[1]
    assert ("(15)  dθₜ = ∇_θ J(θₜ₋₁)\n  (16)  V₀ = S₀ = 0\n"
            "  (17)  Vₜ = β₁ Vₜ₋₁ + (1 - β₁) dθₜ\n") in training
    assert "(21)  θₜ = θₜ₋₁ - η V̂ₜ / (√Ŝₜ + ε)" in training and not re.search("[mg]ₜ", training)
    assert r"\hat V_t = V_t / (1 - \beta_1^t)" in d.latex(notation="ng")
    assert "m₀ = v₀ = 0" in d.text() and "m₀ = v₀ = 0" in d.text(notation="cs231n")


def test_rmsprops_centred_mean_keeps_its_bar():
    spec = {"name": "rms", "network": {"inputs": 2, "layers": [{"units": 1}], "loss": "mse"},
            "optimizer": {"type": "rmsprop", "centered": True}}
    tex = derive(spec).latex(notation="goodfellow")
    assert r"\bar g_t = \alpha \bar g_{t-1} + (1 - \alpha) \hat{g}_t" in tex


# -- citations: the fused step's derivation and the worked example ----------------------------------

def _numbered(d, kind):
    """{label: number} of the outline's equations of ``kind`` ('eq': the steps, 'rule': the others)."""
    return {args[1]: args[0] for k, *args in outline(d, False) if k == kind}


@pytest.mark.parametrize("name", ["digits", "layernorm", "batchnorm", "binary"])
def test_the_fused_step_cites_its_derivation_and_the_derivation_the_steps_it_uses(name):
    d = derive(SPECS / f"{name}.toml")
    text = " ".join(d.text().split())
    rules = _numbered(d, "rule")
    fused = sorted(n for label, n in rules.items() if label.startswith("eq:fused"))
    cited = f"({fused[0]})–({fused[-1]})" if len(fused) > 1 else f"({fused[0]})"
    assert f"their fused form, derived in {cited})" in text
    steps = _numbered(d, "eq")
    first = "eq:" if d.sample else "eq:batch-"
    delta = next(n for label, n in steps.items() if label.startswith(first + "delta"))
    assert f"The fused step ({delta}), derived for one sample" in text
    assert f"the loss ({steps[first + 'l']})" in text and f"({steps[first + 'yhat']}), so by the chain rule" in text
    assert "under Definitions" not in text


@pytest.mark.parametrize("name", ["digits", "layernorm", "batchnorm", "simple_nn"])
def test_each_step_keeps_its_own_number_which_the_emitted_code_cites(name):
    d = derive(SPECS / f"{name}.toml")
    printed = _numbered(d, "eq")
    from derive.documents import label
    assert all(printed[label(step)] == step.number for step in d.all_steps())
    code = (GENERATED / f"{name}.py").read_text(encoding="utf-8")
    cited = {int(n) for group in re.findall(r"# \(eq\. ([\d, ]+)\)", code) for n in group.split(",")}
    assert cited and cited <= {step.number for step in d.all_steps()}


@pytest.mark.parametrize("path", sorted(GENERATED.glob("*.tex")) + sorted(GENERATED.glob("*.md")), ids=lambda p: p.name)
def test_every_citation_in_the_gallery_names_an_equation(path):
    text = path.read_text(encoding="utf-8")
    assert "under Definitions" not in text
    if path.suffix == ".tex":
        labels = re.findall(r"\\label\{([^}]+)\}", text)
        assert len(labels) == len(set(labels))
        assert set(re.findall(r"\\eqref\{([^}]+)\}", text)) <= set(labels)
        assert "gather*" not in text.split("A worked example")[-1] or "A worked example" not in text
    else:
        tags = [int(t) for t in re.findall(r"\\tag\{(\d+)\}", text)]
        assert tags == list(range(1, len(tags) + 1))


def test_the_worked_example_is_numbered_and_each_step_cites_the_one_it_works():
    d = derive(SPECS / "simple_nn.toml")
    from codegen.worked import worked_example
    tex = d.latex(worked=worked_example(d))
    worked = tex.split(r"\subsection{A worked example}")[1]
    assert r"\label{eq:worked-data}" in worked and r"\label{eq:worked-W1}" in worked
    assert r"\label{eq:worked-step-W2}" in worked and "gather" not in worked
    assert r"\label{eq:worked-z1}" in worked and r"equation \eqref{eq:batch-z1} on this batch" in worked
    assert r"W_{1} \leftarrow \begin{bmatrix}" in worked  # the value after the step, not a second W1 =
    assert r"the rules \eqref{eq:sgd-1}--\eqref{eq:sgd-2}" in worked or \
        r"the rules \eqref{eq:sgd-1}–\eqref{eq:sgd-2}" in worked
    text = d.text(worked=worked_example(d))
    assert "  (28)  Z1 = W1 X + b1 1_Nᵀ = [3.162 6.365; 1.876 2.519]\n        equation (12) on this batch" in text
    assert "the rules (23)–(24) of the Training section)" in " ".join(text.split())


# -- cs231n: layer norm and batch norm batch-first ----------------------------------------------------

def _numbers(symbols, rng):
    """A positive value for each matrix symbol (a variance under a square root stays real), N = 2."""
    return {s: sp.ImmutableMatrix(rng.uniform(0.5, 1.5, (int(s.shape[0].subs(N, 2)), int(s.shape[1].subs(N, 2)))))
            for s in symbols}


def _value(expr, values):
    """``expr`` at ``values`` as the verifier evaluates a step (its ones as explicit matrices)."""
    return np.array(_evaluate(expr, values, 2).evalf(), dtype=float)


@pytest.mark.parametrize("name", ["layernorm", "batchnorm"])
def test_cs231n_layer_and_batch_norm_equations_are_the_transposes_of_the_column_ones(name):
    d = derive(SPECS / f"{name}.toml")
    view = notation("cs231n").view(d, "batch")
    rng = np.random.default_rng(0)
    columns = [q.symbol for q in d.batch.quantities.values() if isinstance(q.symbol, sp.MatrixSymbol)]
    values = _numbers(columns, rng)
    rows = {q.key: q.symbol for q in view.quantities.values()}
    for q in d.batch.quantities.values():  # a row matrix is its column one's transpose
        if q.symbol in values and rows[q.key] != q.symbol:
            values[rows[q.key]] = values[q.symbol].T
    values.update({q.symbol: sp.Float(rng.uniform(0.5, 1.5)) for q in d.batch.quantities.values()
                   if isinstance(q.symbol, sp.Symbol)})
    flipped = 0
    for original, rewritten in zip(d.batch.steps, view.steps):
        expected, got = _value(original.rhs, values), _value(rewritten.rhs, values)
        if rewritten.target.symbol != original.target.symbol:
            got, flipped = got.T, flipped + 1
        np.testing.assert_allclose(got, expected, rtol=1e-9, err_msg=original.target.key)
    assert flipped > 10


@pytest.mark.parametrize("name, shown", [("layernorm", "dγ2 = 1_Nᵀ (X̂2 ⊙ dH2)"),
                                         ("batchnorm", "μ2 = (1/N) 1_Nᵀ H1")])
def test_cs231n_prints_the_norm_galleries_batch_first(name, shown, capsys):
    assert main(["derive", str(SPECS / f"{name}.toml"), "--notation", "cs231n", "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert shown in out and "each column" not in out.split("A batch of N examples (the rows of X)\n---")[1]


# -- what a reader met in the gallery ------------------------------------------------------------------

def test_the_layers_inside_a_block_are_explained():
    text = derive(SPECS / "layernorm.toml").text()
    assert "Layers 3.1 and 3.2 are the layers inside layer 3, a residual block." in text
    assert "inside layer" not in derive(SPECS / "simple_nn.toml").text()


def test_the_batch_forms_fused_derivation_uses_no_symbol_the_notes_leave_undefined():
    text = " ".join(derive(SPECS / "digits.toml").text(form="batch").split("Where the fused step comes from")[1].split())
    assert "(14) ∂L/∂z = ŷ - y" in text and "δ2" not in text and "z2" not in text


def test_another_notations_fused_derivation_writes_its_own_cost():
    text = " ".join(derive(SPECS / "digits.toml").text(notation="goodfellow").split())
    assert "∂J/∂z = (∂ŷ/∂z)ᵀ ∂ℓ/∂ŷ" in text and "∂J/∂z = ŷ - y" in text and "δ2" not in text


def _compiled(tex, tmp_path) -> str:
    """The pdflatex log of ``tex``, compiled twice (the references) in ``tmp_path``."""
    (tmp_path / "notes.tex").write_text(tex, encoding="utf-8")
    for _ in range(2):
        subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "notes.tex"], cwd=tmp_path,
                       check=True, capture_output=True, timeout=300)
    return (tmp_path / "notes.log").read_text(errors="replace")


@pdflatex
@pytest.mark.parametrize("name, notation_name", [("layernorm", "cs231n"), ("batchnorm", "ng"), ("residual", "ng")])
def test_a_notations_picture_fits_the_line(name, notation_name, tmp_path):
    """The picture in Ng's names (dZ^{[3]} under a skip) was 0.6 pt too wide when it filled the line."""
    assert "Overfull" not in _compiled(derive(SPECS / f"{name}.toml").latex(notation=notation_name), tmp_path)


@pdflatex
@pytest.mark.parametrize("name", ["batchnorm", "simple_nn", "layernorm"])
def test_no_page_ends_with_a_step_whose_reason_is_on_the_next(name, tmp_path):
    d = derive(SPECS / f"{name}.toml")
    steps = {number for kind, number, *_ in outline(d, True) if kind == "eq"}
    assert "Overfull" not in _compiled(d.latex(), tmp_path)
    pages = subprocess.run(["pdftotext", "-layout", "notes.pdf", "-"], cwd=tmp_path, check=True,
                           capture_output=True, text=True).stdout.split("\f")
    for page in pages[:-1]:
        lines = [line.strip() for line in page.splitlines() if line.strip()]
        last = lines[-2] if len(lines) > 1 else ""  # the line over the page number
        number = re.search(r"\((\d+)\)$", last)
        assert not (number and int(number[1]) in steps), (name, last)
