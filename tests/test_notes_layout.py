"""Notes a teacher pastes unchanged (issue 16, items 2 and 6, paste-friendly LaTeX, the concise
document): no checker dump, numbered sections, \\eqref, --body-only, --form, pages that break well.

The PDF tests compile with pdflatex: a deep and a wide-penalty network with no overfull box (alone
and \\input into LaTeX's default article, whose text is narrower), and every gallery PDF with no
page that ends in a heading or in a sentence that introduces what follows."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import derive
from codegen.cli import main
from codegen.gallery import render as gallery
from derive.check import accepted_names
from derive.documents import outline

ROOT = Path(__file__).resolve().parent.parent
SIMPLE = ROOT / "generated/specs/simple_nn.toml"
DEEP = "2 -> " + " -> ".join(["3 tanh"] * 30) + " -> 1 ; mse"          # 31 layers: 62 rows per symbol table
WIDE = "4 -> 8 relu -> 8 relu -> 8 relu -> 8 relu -> 2 ; mse ; l1=0.001 ; l2=0.01"   # the 535 pt loss
NESTED = "4 -> 5 relu -> layernorm -> residual(5 tanh -> layernorm) -> 3 softmax ; cross_entropy"   # eq:z3_1
HOST = "\\documentclass{article}\n\\usepackage{amsmath,amssymb,longtable}\n\\begin{document}\n\\input{notes}\n\\end{document}\n"
pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                              reason="needs pdflatex and pdftotext")


def _compile(directory: Path, name: str, tex: str) -> str:
    """``tex`` compiled twice (the references resolved); the log."""
    (directory / f"{name}.tex").write_text(tex, encoding="utf-8")
    for _ in range(2):
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
                             cwd=directory, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout[-2000:]
    return (directory / f"{name}.log").read_text(encoding="latin-1")


def _pages(pdf: Path) -> list:
    """The lines of each page of ``pdf``, blank lines and the page number at its foot left out."""
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = [[line.strip() for line in page.splitlines() if line.strip()] for page in text.split("\f")]
    return [page[:-1] if page and page[-1].isdigit() else page for page in pages if page]


# -- PDFs ------------------------------------------------------------------------------------------

@pdflatex
@pytest.mark.parametrize("spec", [DEEP, WIDE, NESTED], ids=["depth-31", "l1-l2-over-5-layers", "nested-labels"])
def test_deep_and_wide_notes_compile_with_no_overfull_box_alone_and_in_a_narrow_host(spec, tmp_path):
    d = derive.derive(spec)
    log = _compile(tmp_path, "alone", d.latex())
    assert "Overfull" not in log
    (tmp_path / "notes.tex").write_text(d.latex(body_only=True), encoding="utf-8")
    log = _compile(tmp_path, "host", HOST)
    assert "Overfull" not in log and "LaTeX Warning: Reference" not in log


@pdflatex
@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "generated/specs").glob("*.toml")))
def test_no_gallery_page_ends_in_a_heading_or_a_sentence_that_introduces_a_display(name, tmp_path):
    tex = gallery()[f"generated/{name}.tex"]
    log = _compile(tmp_path, name, tex)
    assert "Overfull" not in log
    d = derive.derive(ROOT / "generated/specs" / f"{name}.toml")
    headings = {args[0] for kind, *args in outline(d, True) if kind in ("heading", "subheading")}
    headings |= {args[0][0] for kind, *args in outline(d, True) if kind == "table"}   # the tables' captions
    pages = _pages(tmp_path / f"{name}.pdf")
    assert len(pages) >= 3
    for number, page in enumerate(pages, start=1):
        last = re.sub(r"^[\d.]+\s+", "", page[-1])                                 # its section number
        assert last not in headings, f"page {number} of {name}.pdf ends in the heading {last!r}"
        assert not last.endswith(":"), f"page {number} of {name}.pdf ends in {last!r}, away from what it introduces"


# -- the LaTeX: numbered, labelled, cited, pasteable --------------------------------------------------

def test_latex_sections_are_numbered_and_no_equation_carries_its_own_number():
    tex = derive.derive(SIMPLE).latex()
    assert "\\section{Gradients of the network" in tex and "\\subsection{Notation}" in tex
    assert "\\subsubsection{Backward pass}" in tex
    assert not re.search(r"\\(sub)*section\*|\\tag|\\paragraph", tex)
    assert tex.count("\\begin{equation}\\label{eq:") == tex.count("\\begin{equation}") == 24


def test_reasons_cite_the_equation_they_restate():
    d = derive.derive(SIMPLE)
    assert "chain rule through $z_{2} = W_{2} a_{1} + b_{2}$ \\eqref{eq:z2}: the error times" in d.latex()
    assert "chain rule through $Z_{1} = W_{1} X + b_{1} \\mathbf{1}_{N}^{\\top}$ \\eqref{eq:batch-z1}:" in d.latex()
    assert "chain rule through $z_{2} = W_{2} a_{1} + b_{2}$ (3): the error times" in d.markdown()
    assert "chain rule through z2 = W2 a1 + b2 (3): the error times" in d.text()
    assert "\\eqref{eq:batch-z1}" not in d.latex(form="sample")
    assert "b_{3.1}$ \\eqref{eq:z3_1}: the error times" in derive.derive(NESTED).latex()   # the label as it is


def test_body_only_is_the_document_without_its_preamble():
    d = derive.derive(SIMPLE)
    whole, body = d.latex(), d.latex(body_only=True)
    assert body.startswith("% chainrule's notes without a preamble, for \\input")
    assert "\\documentclass" not in body and "\\begin{document}" not in body and "\\end{document}" not in body
    assert "\\usepackage" not in body and "\\DeclareUnicodeCharacter" not in body
    start = whole.index("\\section{")
    assert body.split("\n", 1)[1] == whole[start:whole.index("\\end{document}")]


def test_the_page_breaks_are_offered_between_blocks_and_never_after_a_heading_or_a_colon():
    tex = derive.derive(SIMPLE).latex()
    assert "\\filbreak\n\\begin{equation}\\label{eq:a1}" in tex                  # between two steps
    assert "\\subsubsection{Forward pass}\n\\begin{equation}\\label{eq:z1}" in tex   # the heading keeps its step
    assert "its derivative:\n\\begin{gather*}" in tex                           # the sentence keeps its display
    assert "\\allowdisplaybreaks" not in tex and "\\begin{longtable}" in tex and "\\begin{tabular}" not in tex


def test_a_sum_too_wide_for_a_line_breaks_between_terms_in_every_format():
    d = derive.derive(WIDE)
    tex = d.latex()
    loss = tex[tex.index("\\label{eq:l}"):tex.index("\\end{equation}", tex.index("\\label{eq:l}"))]
    assert loss.startswith("\\label{eq:l}\\postdisplaypenalty=10000\n\\begin{split}\nL & = \\frac{1}{2} \\sum_{i}")
    assert loss.count(" \\\\\n&\\quad + ") == 3 and loss.endswith("\\end{split}\n")
    assert "\\begin{aligned}\nL & = \\frac{1}{2} \\sum_{i}" in d.markdown()
    nested = derive.derive(NESTED).latex()                    # layer norm's 1/σ ⊙ (the sum of three terms)
    assert "\\frac{\\partial L}{\\partial a_{1}} & = \\frac{1}{\\sigma_{2}} \\odot \\Bigl(\\gamma_{2} \\odot" in nested
    assert "\\right)\\Bigr)\n\\end{split}" in nested
    text = d.text()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "  (11)  L = (1/2) Σᵢ (ŷᵢ - yᵢ)² + (1/1000) Σᵢⱼ |W1ᵢⱼ| + (1/1000) Σᵢⱼ |W2ᵢⱼ| +" in text
    assert "\n            (1/1000) Σᵢⱼ |W4ᵢⱼ|" in text                               # under the right-hand side


# -- the concise document --------------------------------------------------------------------------

@pytest.mark.parametrize("render", ["latex", "markdown", "text"])
def test_no_document_carries_the_checkers_names(render):
    for spec in sorted((ROOT / "generated/specs").glob("*.toml")):
        d = derive.derive(spec)
        names = accepted_names(d)                               # None: the checker cannot read this network
        doc = " ".join(getattr(d, render)(names).split())       # the text unwrapped
        assert "Checking your own derivation" not in doc and "--wrt" not in doc and "reads these names" not in doc
        assert ("names lists the names it reads" in doc) == (names is not None), spec.stem


def test_one_form_alone_is_numbered_from_one_in_every_format():
    d = derive.derive(SIMPLE)
    text = d.text(form="batch")
    assert "One sample" not in text and "A batch of N samples (the columns of X)\n---" in text
    assert "  ( 1)  Z1 = W1 X + b1 1_Nᵀ\n" in text and "  (11)  ∂L/∂b1 = Δ1 1_N\n" in text
    assert "  (12)  gₜ = ∇_θ L(θₜ₋₁)\n" in text and "(the batch form above)" in " ".join(text.split())
    sample = d.markdown(form="sample")
    assert "A batch" not in sample and "\\hat{Y}" not in sample and "\\tag{13}" in sample and "\\tag{14}" not in sample
    assert "batch form above" not in " ".join(d.text(form="sample").split())
    tex = d.latex(form="sample")
    assert "Z_{1}" not in tex and "\\label{eq:batch-" not in tex and "\\label{eq:sgd-2}" in tex
    with pytest.raises(derive.errors.ChainruleError, match="one of sample, batch, both"):
        d.text(form="columns")


def test_training_names_the_rate_eta_and_prints_only_the_rules_the_settings_use():
    d = derive.derive(ROOT / "generated/specs/digits.toml")          # Adam, no weight decay, no amsgrad
    training = " ".join(d.text().split("\nTraining\n--------\n")[1].split())
    assert "η = lr = 0.001" in training and "(27) m₀ = v₀ = 0" in training and "γ" not in training
    assert "λ" not in training and "vᵐᵃˣ" not in training


# -- the command line ------------------------------------------------------------------------------

def test_derive_takes_form_and_body_only(capsys):
    assert main(["derive", str(SIMPLE), "-f", "tex", "--form", "batch", "--body-only"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("% chainrule's notes") and "\\documentclass" not in out and "eq:batch-z1" in out
    assert "\\label{eq:z1}" not in out
    assert main(["derive", str(SIMPLE), "-f", "md", "--body-only"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        "chainrule: error: --body-only leaves out LaTeX's preamble; give it with --format tex, not md\n")
    assert main(["derive", str(SIMPLE), "--form", "rows"]) == 2
    assert "invalid choice: 'rows'" in capsys.readouterr().err
