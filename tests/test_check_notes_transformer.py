"""The transformer's notes pasted back (tiny_transformer, checked narrowed): its definitions skipped with their
reasons, the fused softmax step at every position with the spec's \\mathbf{1}_{40}, the position table's gradient in
the columns convention, and messages that quote the text as written."""
from pathlib import Path

import pytest

from derive import derive
from derive.check import Conventions
from derive.check.document import Equation, Skipped, read_document
from derive.errors import ChainruleError

SPEC = Path(__file__).resolve().parent.parent / "generated" / "specs" / "tiny_transformer.toml"


@pytest.fixture(scope="module")
def transformer():
    return Conventions(derive(str(SPEC)), "auto")


@pytest.mark.parametrize("math, reason", [
    (r"\Phi(z) = \frac{1}{2} + \frac{z}{2}", r"it defines the function '\Phi(z)' on its own"),
    ("E = 32", "it gives a size (E = 32), not a quantity"),  # not 'the loss E'
    ("d = E/H", "it gives a size (d = E/H), not a quantity"),
    (r"W_{in} = [W_Q; W_K; W_V]", r"it stacks matrices (W_{in} = [W_Q; W_K; W_V]), a parameter's layout"),
    (r"M_{ij} = -\infty", "it sets M_{ij} to an infinity (a mask's entry)"),
    (r"G = \partial L/\partial Y", r"it names the gradient \partial L/\partial Y (G)"),
    (r"(\delta S_h)_{ij} = A_{ij} (\ldots)", r"it writes one entry, (\delta S_h)_{ij}, which chainrule reads only"),
    (r"e_{1} = \left[W_{1}^{\top} x_{t}\right]_{t=1}^{T}", "a forward-pass equation (it defines e_{1})"),
    (r"Y = O W_O^{\top} + \mathbf{1} b_O^{\top}", "a forward-pass equation (it defines Y)"),
])
def test_the_notes_definitions_are_skipped_with_their_reasons(math, reason):
    [item] = read_document(f"Here ${math}$, in the notes.")
    assert isinstance(item, Skipped) and item.reason.startswith(reason), item


def test_a_remark_in_words_after_the_expression_is_dropped_and_the_rest_checked():
    [item] = read_document(r"$$\frac{\partial L}{\partial b_Q} = \sum_{t=1}^{T} \delta q_t \text{ (likewise K, V)}$$")
    assert isinstance(item, Equation) and item.rhs == r"\sum_{t=1}^{T} \delta q_t"
    [item] = read_document("dz = W (yhat - y)")  # a name in parentheses is no remark
    assert isinstance(item, Equation) and item.rhs == "W (yhat - y)"


def test_the_fused_softmax_step_reads_at_every_position_with_the_spec_ones_length(transformer):
    # the spec's vocabulary is 40, the narrowed network's 4; 1ᵀy is 1 at every step only with a class at every step
    assert transformer.check(r"\delta_{6}", r"\frac{\hat{y} \mathbf{1}_{40}^{\top} y - y}{16}").equal
    wrong = transformer.check(r"\delta_{6}", r"\hat{y} \mathbf{1}_{40}^{\top} y - y")
    assert not wrong.equal and "factor" in wrong.report(), wrong.report()


def test_the_position_table_gradient_reads_in_the_columns_convention(transformer):
    wrt = r"\frac{\partial L}{\partial P_{2}}"
    right = transformer.check(wrt, r"\left[\left(\frac{\partial L}{\partial A_{2}} \mathbf{1}_{N}\right)_{t}^{\top}"
                                   r"\right]_{t=1}^{T}")
    assert right.equal and "columns convention" in right.report()
    wrong = transformer.check(wrt, r"\left[\left(\frac{\partial L}{\partial A_{2}} \mathbf{1}_{N}\right)_{t}\right]"
                                   r"_{t=1}^{T}")
    assert not wrong.equal and "transposed" in wrong.report(), wrong.report()


@pytest.mark.parametrize("wrt, text", [
    (r"\frac{\partial L}{\partial a_5}", r"\overline{g_t} +"),
    (r"\frac{\partial L}{\partial a_5}", r"\left[W_6^T \delta_{6,t}\right]_{t=1}^{T} +"),
    (r"\frac{\partial L}{\partial b_Q}", r"\sum_{t=1}^{T} \delta q_t +"),
])
def test_a_message_quotes_the_text_as_written_not_as_the_reader_rewrote_it(transformer, wrt, text):
    with pytest.raises(ChainruleError) as err:
        transformer.check(wrt, text)
    assert str(err.value).startswith(f"'{text}' ends too early"), str(err.value)  # not \sumtime, mean (g_t), \left(
