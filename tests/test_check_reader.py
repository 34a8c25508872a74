"""The reader of real notation: documents (Markdown, LaTeX environments, macros) and the notations
of course notes, each read to the right verdict; what it skips it names, line by line."""
import pytest

from codegen.cli import main
from derive.check import Checker
from derive.check.document import Equation, Skipped, read_document
from derive.check.parse import parse, parse_equation
from derive.errors import ChainruleError
from test_check import SIGMOID, derivation

TANH = "2 -> 3 tanh -> 3 tanh -> 2 sigmoid ; sse_half"
NG = "3 -> 4 relu -> 2 sigmoid ; bce"


def _checker(spec=SIGMOID, convention="sample"):
    return Checker(derivation(spec), convention)


def _run(tmp_path, capsys, text, spec=SIGMOID, convention="sample"):
    path = tmp_path / "notes.md"
    path.write_text(text, encoding="utf-8")
    code = main(["check", spec, "--convention", convention, "--file", str(path)])
    return code, capsys.readouterr()


def test_a_markdown_page_is_checked_and_every_skipped_line_is_named(tmp_path, capsys):
    code, out = _run(tmp_path, capsys, "# Notes on chapter 2\n"
                     "The forward pass is $z^l = w^l a^{l-1} + b^l$, the cost $C = \\frac{1}{2}\\|y - a^L\\|^2$.\n"
                     "With n = 3 neurons.\n"
                     "$$\\delta^L = (a^L - y) \\odot \\sigma'(z^L).$$\n"
                     "| BP | equation |\n|---|---|\n"
                     "| 2 | $\\delta^l = ((w^{l+1})^T \\delta^{l+1}) \\odot \\sigma'(z^l)$ |\n"
                     "\\[ \\frac{\\partial C}{\\partial w^l_{jk}} = a^{l-1}_k \\delta^l_j \\]  % BP4\n"
                     "and \\( \\frac{\\partial a^L_j}{\\partial z^L_j} = \\sigma'(z^L_j) \\).\n")
    lines = out.out.splitlines()
    assert code == 0, out.out
    assert lines[0].startswith("line 2: skipped 'z^l = w^l a^{l-1} + b^l': a forward-pass equation")
    assert lines[1].startswith("line 2: skipped") and "defines the loss C" in lines[1]
    assert lines[2].startswith("line 3: skipped 'With n = 3 neurons.': text outside math")
    assert lines[3].startswith("line 4: δ3: correct")
    assert any(line.startswith("line 7: ") and "correct wherever it applies" in line for line in lines)
    assert any(line.startswith("line 8: ") and "correct wherever it applies" in line for line in lines)
    assert any(line.startswith("line 9: skipped") and "Jacobian entry" in line for line in lines)


def test_environments_rows_chains_and_continuations(tmp_path, capsys):
    text = ("\\begin{eqnarray}\n"
            "\\delta^L &=& (a^L - y) \\odot \\sigma'(z^L) \\nonumber \\\\\n"
            "\\delta^l &\\equiv& \\frac{\\partial C}{\\partial z^l} = ((w^{l+1})^T \\delta^{l+1}) \\odot \\sigma'(z^l)"
            " \\label{bp2}\n"
            "\\end{eqnarray}\n"
            "\\begin{multline}\n\\delta^l = ((w^{l+1})^T \\delta^{l+1})\n\\odot \\sigma'(z^l) \\tag{2'}\n\\end{multline}\n"
            "$$\\begin{aligned}\\frac{\\partial C}{\\partial b^l} &= \\delta^l, \\quad "
            "\\frac{\\partial C}{\\partial w^l} = \\delta^l (a^{l-1})^T.\\end{aligned}$$\n")
    items = read_document(text)
    assert [(type(i).__name__, i.line) for i in items] == [("Equation", 2), ("Equation", 3), ("Equation", 3),
                                                          ("Equation", 6), ("Equation", 9), ("Equation", 9)]
    assert items[3].rhs.endswith("\\odot \\sigma'(z^l)")
    code, out = _run(tmp_path, capsys, text)
    assert code == 0 and out.out.count("correct wherever it applies") == 5, out.out


def test_a_plain_align_written_without_delimiters_keeps_its_left_sides():
    items = read_document("\\frac{dL}{dz^{[l]}}\n&= \\frac{dL}{da^{[l]}} \\frac{da^{[l]}}{dz^{[l]}} \\\\\n"
                          "&= \\frac{dL}{da^{[l]}} \\odot g'(z^{[l]}) \\\\\n")
    assert isinstance(items[0], Skipped) and "Jacobian entry" in items[0].reason
    assert isinstance(items[1], Equation) and items[1].lhs == "\\frac{dL}{dz^{[l]}}" and items[1].line == 3


def test_macros_are_expanded_and_bounded(tmp_path, capsys):
    code, out = _run(tmp_path, capsys, "\\newcommand{\\dd}[1]{\\boldsymbol{\\delta}^{#1}}\n\\def\\act{\\sigma}\n"
                     "\\DeclareMathOperator{\\had}{\\odot}\n"
                     "$\\dd{L} = (a^L - y) \\odot \\act'(z^L)$\n")
    assert code == 0 and "line 4: δ3: correct" in out.out, out.out
    for text, limit in [("\\newcommand{\\loop}{\\loop x}\n$\\delta^L = \\loop$\n", "MACRO_NESTING"),
                        ("\\newcommand{\\a}{yy}\\newcommand{\\b}{\\a\\a\\a\\a\\a\\a}\\newcommand{\\c}{\\b\\b\\b\\b\\b\\b}"
                         "\\newcommand{\\d}{\\c\\c\\c\\c\\c\\c}\\newcommand{\\e}{\\d\\d\\d\\d\\d\\d}"
                         "\\newcommand{\\f}{\\e\\e\\e\\e\\e\\e}\n$\\delta^L = \\f$\n",
                         "MACRO_EXPANSIONS")]:
        code, out = _run(tmp_path, capsys, text)
        assert code == 2 and limit in out.err and len(out.err.strip().splitlines()) == 1, out.err


def test_nothing_in_a_document_is_run(tmp_path, capsys):
    marker = tmp_path / "ran"
    code, out = _run(tmp_path, capsys, f"\\newcommand{{\\x}}{{__import__('os').system('touch {marker}')}}\n"
                                       "$\\delta^L = \\x$\n")
    assert code == 2 and not marker.exists() and "not understood" in out.out


def test_deep_braces_are_one_line_errors():
    with pytest.raises(ChainruleError, match="nests braces"):
        parse("{" * 100 + "W_2" + "}" * 100)


@pytest.mark.parametrize("spec, convention, wrt, text", [
    (SIGMOID, "sample", r"\delta^L", r"\nabla_a C \odot \sigma^{\prime}(z^L)"),
    (SIGMOID, "sample", r"\delta^L", r"\nabla_a C \odot {\sigma}'(z^L)"),
    (SIGMOID, "sample", r"\delta^L", r"(a^L - y) \odot f^{'}(z^L)"),
    (SIGMOID, "sample", r"\delta^l", r"((w^{l+1})^T \delta^{l+1}) \odot (f^{l})'(z^l)"),
    (SIGMOID, "sample", r"\delta^L", r"(a^L - y) \odot \sigma(z^L) \odot (1 - \sigma(z^L))"),
    (SIGMOID, "sample", r"\delta^L", r"(a^L - y) \odot (\sigma(z^L) - \sigma^2(z^L))"),
    (TANH, "sample", r"\delta^l", r"((W^{l+1})^T \delta^{l+1}) \odot (1 - \tanh^2(z^l))"),
    (SIGMOID, "sample", r"\boldsymbol{\delta}^L", r"\LARGE (\mathbf{a}^L - \mathbf{y}) \odot \sigma'(\mathbf{z}^L)"),
    (SIGMOID, "sample", r"\frac{\partial L}{\partial W\_2}", r"\delta\_2 h\_1^T"),
    (SIGMOID, "sample", r"\frac{\partial J(W,b;x,y)}{\partial W^{(2)}}", r"\delta^{(2)} (a^{(1)})^T"),
    (SIGMOID, "sample", r"\nabla_{W^{(2)}} J(W,b;x,y)", r"\delta^{(2)} (a^{(1)})^T"),
    (SIGMOID, "sample", r"\frac{\partial \mathcal{L}}{\partial W_2}", r"\delta_2 h_1^\top"),
    (SIGMOID, "sample", r"\frac{\partial C_0}{\partial b^l}", r"\delta^l"),
    (SIGMOID, "sample", r"\partial C / \partial b^l_j", r"\delta^l_j"),
    (NG, "columns", "dA^{[l-1]}", r"W^{[l]T} dZ^{[l]}"),
    (NG, "columns", "dA^{[l-1]}", r"W^{[l]^T} \cdot dZ^{[l]}"),
    (NG, "columns", "dA[l-1]", "W[l].T dZ[l]"),
    (NG, "columns", "dZ^{[1]}", r"W^[2].T dZ^[2] * g'^{[1]}(Z^{[1]})"),
    (NG, "columns", "dW^{[l]}", r"dZ^{[l]} A^{[l-1]T}"),
    (NG, "columns", "dW[l]", "dZ[l] A[l-1]'"),
    (SIGMOID, "sample", r"\frac{dC}{dw^l_{kj}}", r"\delta^l_k a^{l-1}_j"),
    (SIGMOID, "sample", r"\delta^l_j", r"\sum_k w^{l+1}_{kj} \delta^{l+1}_k \sigma'(z^l_j)"),
    (SIGMOID, "sample", r"\delta_j^L", r"\frac{\partial C}{\partial a_j^L}\sigma'(z_j^L)"),
    (SIGMOID, "sample", r"\frac{\partial C}{\partial w_{jk}^L}", r"\delta_j^La_k^{L-1}"),
])
def test_notations_of_course_notes_read_to_correct(spec, convention, wrt, text):
    assert _checker(spec, convention).check(wrt, text).equal


@pytest.mark.parametrize("wrt, text, mistake", [
    (r"\frac{\partial C}{\partial w^l_{jk}}", r"a^{l-1}_j \delta^l_k", ""),
    (r"\delta^l_j", r"\sum_k w^{l+1}_{jk} \delta^{l+1}_k \sigma'(z^l_j)", "transpose"),
    (r"\delta^l", r"((w^{l+1})^T \delta^{l+1}) \odot \sigma^2(z^l)", ""),
])
def test_component_form_is_checked_entry_by_entry(wrt, text, mistake):
    result = _checker().check(wrt, text)
    assert not result.equal and mistake in result.report()


def test_free_indices_must_match_the_left_side():
    with pytest.raises(ChainruleError, match="free indices"):
        parse_equation(r"\delta^l_j", r"a^{l-1}_k")
    with pytest.raises(ChainruleError, match="more than two factors"):
        parse(r"\sum_k a_k b_k c_k")


def test_remarks_conditions_and_comments_after_an_equation_are_not_part_of_it():
    for text in [r"$\delta^L = (a^L - y) \odot \sigma'(z^L) \quad \text{(BP1)}$",
                 r"$\delta^L = (a^L - y) \odot \sigma'(z^L) \quad \text{for } L = 3$",
                 r"$\delta^L = (a^L - y) \odot \sigma'(z^L), \quad \forall j$",
                 "delta3 = (a3 - y) * sigmoid'(z3)  # output layer"]:
        (item,) = read_document(text)
        assert isinstance(item, Equation) and _checker().check(item.lhs, item.rhs).equal, text
    first, second = read_document(r"$\delta^L = (a^L - y) \odot \sigma'(z^L) \text{ where } a^L = \sigma(z^L)$")
    assert isinstance(first, Equation) and isinstance(second, Skipped) and "forward-pass" in second.reason


def test_unclosed_delimiters_and_deep_environments_are_read_quickly_or_refused_in_one_line(tmp_path, capsys):
    import time
    start = time.monotonic()
    for text in ["\\[ x " * 40000, "\\begin{align}x" * 20000, "\\( x " * 40000, "```\n" * 20000,
                 "\\newcommand{\\a}{" * 40000]:
        assert len(read_document(text)) <= 1
    assert time.monotonic() - start < 10  # one pass with bisection, not a search per opener
    (deep,) = read_document("$" + "\\begin{aligned}" * 60 + "x = y" + "\\end{aligned}" * 60 + "$")
    assert isinstance(deep, Skipped) and "nests braces or environments" in deep.reason
    with pytest.raises(ChainruleError, match="nests too deeply"):
        parse("\\sqrt[" * 300 + "x" + "]" * 300)
