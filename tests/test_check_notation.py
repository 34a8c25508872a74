"""The notation of the corpus's sources, one rule at a time: the names, products and conventions
chainrule check reads (t, hats, gh/gz, dG, λΩ(θ), \\;, sums over samples, ng's side-by-side product,
ng_rows, ufldl, rowgrad), Ng's own printed form, and the mistakes check names as check-code does."""
import functools
import time

import pytest

from derive import derive
from derive.check import Checker, check
from derive.check.document import Equation, read_document
from derive.check.options import BY_NAME, ranked
from derive.check.parse import parse
from derive.errors import ChainruleError

SIGMOID = "2 -> 3 sigmoid -> 2 sigmoid ; sse_half"
TANH = "3 -> 4 tanh -> 2 ; sse_half"
NG = "3 -> 4 relu -> 2 softmax ; cross_entropy"


@functools.lru_cache(maxsize=None)
def _derived(spec):
    return derive(spec)


def verdict(spec, convention, wrt, text):
    return Checker(_derived(spec), convention).check(wrt, text)


@pytest.mark.parametrize("spec, convention, wrt, text", [
    (SIGMOID, "sample", r"\delta^L_j", r"a_j^L(1-a_j^L)\left(a_j^L - t_j\right)"),  # t, the target
    (SIGMOID, "sample", r"\hat{\delta}^L", r"f'(\hat{z}^L)\circ\frac{\partial C}{\partial (\hat{a}^L)}"),  # hats on vectors
    (TANH, "sample", r"\delta_1", r"(W_2^T \delta_2) \odot (1 - \tanh^{2}(z_1))"),  # a braced power, not layer 2
    (TANH, "sample", "gz^l", r"gh^l \odot f'(z^l)"),  # g + a name: its gradient
    (TANH, "sample", "gh^l", r"(W^{l+1})^T gz^{l+1}"),
    (NG, "ng", "dZ^l", r"dA^l * dG^l(Z^l)"),  # dG: the activation's derivative (at l = 1; softmax at l = 2 below)
    (NG, "ng", "dz^{[1]}", r"da^{[1]} g'(z^{[1]})"),  # side by side, two n × m matrices: element-wise
    (NG, "ng", "dZ^{[1]}", r"W^{[2]^T} \cdot dZ^{[2]} \times f^{'}(Z^{[1]})"),
    (NG, "ng_rows", "dZ^{[1]}", r"dZ^{[2]} \cdot W^{[2]^T} \times f^{'}(Z^{[1]})"),  # batch-first, W (n_in, n_out)
    (NG, "ng_rows", "dW^{[2]}", r"\frac{1}{m} A^{[1]T} dZ^{[2]}"),
    ("4 -> 1 sigmoid ; bce", "ng", r"\frac{\partial J}{\partial W}", r"\frac{1}{m} (A - y) \cdot X^T"),  # one layer: W
    (SIGMOID, "ufldl", r"\delta^{(l)}", r"((W^{(l)})^T\delta^{(l+1)}) \circ f'(z^{(l)})"),
    (SIGMOID, "ufldl", r"\nabla_{W^{(l)}} J(W,b;x,y)", r"\delta^{(l+1)} (a^{(l)})^T"),
    ("3 -> 4 tanh -> 2 softmax ; cross_entropy", "rowgrad", r"\delta^{(L)}", r"\left[h^{(L)} - y\right]^T"),
    ("3 -> 4 tanh -> 2 softmax ; cross_entropy", "rowgrad", r"\frac{\partial L}{\partial w_l}",
     r"\sum_{i=1}^n h_i^{(l-1)} \delta_i^{(l)}"),  # i runs over the samples
    (TANH + " ; l2=0.01", "goodfellow", r"\nabla_{W^{(k)}} J", r"g \, h^{(k-1)\top} + \lambda \nabla_{W^{(k)}} \Omega(\theta)"),
    (TANH + " ; l2=0.01", "goodfellow", r"\nabla_{b^{(k)}} J", r"g + \lambda \nabla_{b^{(k)}} \Omega(\theta)"),
])
def test_each_notation_reads_right(spec, convention, wrt, text):
    result = verdict(spec, convention, wrt, text)
    layers = [v.result for v in getattr(result, "layers", []) if v.result is not None] or [result]
    if (spec, wrt) == (NG, "dZ^l"):  # the rule of a hidden layer, which the softmax output does not follow
        assert layers[0].equal and not layers[1].equal and "softmax is not element-wise" in layers[1].diagnosis
        return
    assert all(r.equal for r in layers), result.report()


def test_the_side_by_side_product_is_elementwise_only_under_ng():
    """In the columns convention (chainrule's notes), dA1 g'(Z1) side by side stays a matrix product, a mistake."""
    result = verdict(NG, "columns", "Delta1", r"(W_2^T \Delta_2) relu'(Z_1)")
    assert not result.equal and "a matrix product where an element-wise (Hadamard) product belongs" in result.diagnosis


def test_lambda_needs_a_penalty_in_the_spec():
    with pytest.raises(ChainruleError, match=r"add l2=\.\.\."):
        verdict(TANH, "goodfellow", r"\nabla_{W^{(k)}} J", r"g \, h^{(k-1)\top} + \lambda \nabla_{W^{(k)}} \Omega(\theta)")


def test_a_weight_decay_gradient_is_lambda_w():
    """λ∇_W Ω(θ) is the spec's l2 times W: written 2λW it is wrong, by the penalty twice."""
    result = verdict(TANH + " ; l2=0.01", "goodfellow", r"\nabla_{W^{(2)}} J", r"g \, h^{(1)\top} + 2 \lambda W^{(2)}")
    assert not result.equal and "the L2 penalty's gradient twice" in result.diagnosis


def test_a_sum_up_to_the_sample_count_is_over_the_samples():
    assert parse(r"\sum_{i=1}^n h_i \delta_i").kind == "sum"
    assert parse(r"\sum_{i=1}^n h_i \delta_i").args[1] == "batch"
    assert parse(r"\sum_{k=1}^{s} w_{kj} \delta_k").kind != "sum"  # a component index: contracted


def test_a_thin_space_separates_only_equations():
    goodfellow = read_document(r"$g \leftarrow \nabla_{h^{(k-1)}} J = W^{(k)\top} \; g$")
    assert [(e.lhs.strip(), e.rhs.strip()) for e in goodfellow] == [(r"\nabla_{h^{(k-1)}} J", r"W^{(k)\top}   g")]
    two = read_document(r"$\delta_2 = \hat y - y \; \delta_1 = W_2^T \delta_2$")
    assert [e.lhs.strip() for e in two] == [r"\delta_2", r"\delta_1"]


def test_a_line_of_latex_between_prose_and_inline_math_is_read():
    text = "replace $n_l$ by $l$ and we get:\n\n\\delta^{(l)}_i = \\left( W^{(l)}_{ji} \\right) f'(z^{(l)}_i)\nnext line = prose"
    found = read_document(text)
    assert [type(e).__name__ for e in found] == ["Equation", "Skipped"]
    assert found[0].lhs.strip() == r"\delta^{(l)}_i"


def test_marked_only_conventions_are_never_guessed():
    """auto tries ufldl only where s_{l+1} or n_l appear, and never ng_rows or rowgrad: their names are other
    conventions' at another layer or transposed, so a mistake would be 'right' in them."""
    assert all(BY_NAME[c].marked_only for c in ("ng_rows", "ufldl", "rowgrad"))
    unmarked = [name for name, _ in ranked([r"\delta_2 h_1"])]
    assert not {"ng_rows", "ufldl", "rowgrad"} & set(unmarked)
    assert ranked([r"\sum_{j=1}^{s_{l+1}} W^{(l)}_{ji} \delta^{(l+1)}_j"])[0][0] == "ufldl"
    result = check(_derived("2 -> 2 relu -> 1 ; mse"), "W2", r"\delta_2 h_1", "auto")
    assert not result.equal  # a missing transpose is not "right in rowgrad"


@pytest.mark.parametrize("convention, wrt, text, correct", [
    ("ng", "dZ2", "A2 - Y", "A2 - Y"),
    ("ng", "dZ1", r"W2^T dZ2 * relu'(Z1)", "(W2ᵀ dZ2) ⊙ relu'(Z1)"),
    ("ng", "dW2", "1/m dZ2 A1^T", "(1/m)·dZ2 A1ᵀ"),
    ("ng", "db1", "1/m sum(dZ1, axis=1)", "(1/m)·dZ1 1"),
    ("ng", "dA1", "W2^T dZ2", "W2ᵀ dZ2"),
    ("ng_rows", "dW2", "1/m A1^T dZ2", "(1/m)·A1ᵀ dZ2"),
    ("ng_rows", "dZ1", r"dZ2 W2^T * relu'(Z1)", "(dZ2 W2ᵀ) ⊙ relu'(Z1)"),
])
def test_ng_correct_form_is_printed_as_ng_writes_it(convention, wrt, text, correct):
    result = verdict(NG, convention, wrt, text)
    assert result.equal and result.correct == correct
    assert "Δ" not in result.correct and "N" not in result.correct


def test_ng_printed_form_keeps_a_penalty_outside_the_1_over_m():
    result = verdict("3 -> 4 tanh -> 2 ; mse ; l2=0.1", "ng", "dW2", "1/m dZ2 A1^T + 0.1 W2")
    assert result.equal and result.correct == "(1/m)·dZ2 A1ᵀ + 1/10·W2"


def test_ufldl_prints_its_own_layer_numbers():
    result = verdict(SIGMOID, "ufldl", r"\delta^{(2)}", r"((W^{(1)})^T\delta^{(3)}) \circ f'(z^{(2)})")
    assert not result.equal and "wrong layer" in result.diagnosis
    assert result.correct == "(W2ᵀ δ3) ⊙ σ'(z2)" and r"\delta^{(3)}" in result.correct_latex


@pytest.mark.parametrize("spec, convention, wrt, text, mistake", [
    (TANH, "sample", "delta1", r"(W_2^T \delta_2) \odot a_1 \odot (1 - a_1)", "yours is sigmoid's, a(1 - a)"),
    (TANH, "sample", "delta1", r"(W_2^T \delta_2) \odot (1 - z_1^2)", "and yours applies it to z itself"),
    (TANH, "sample", "delta1", r"\tanh'(W_2^T \delta_2)", "derivative taken at the upstream gradient"),
    (TANH, "sample", "W1", r"(W_2^T \delta_2) x^T", "missing activation derivative: Δ1 needs ⊙ tanh'(Z1)"),
    (TANH + " ; l2=0.1", "columns", "W2", r"N \Delta_2 A_1^T + 0.1 W_2",
     "constant factor in the loss's part: yours is 3 times it (the 1/N of the mean over the batch, N = 3 at the check's points); the L2 penalty's "
     "0.1·W2 is right"),
    (TANH + " ; l2=0.1", "columns", "W2", r"\Delta_2 A_1^T + 0.2 W_2", "the L2 penalty's gradient twice: it is 0.1·W2, once"),
])
def test_check_names_the_mistakes_check_code_names(spec, convention, wrt, text, mistake):
    result = verdict(spec, convention, wrt, text)
    assert not result.equal and mistake in result.diagnosis, result.report()


def test_a_mistake_inside_a_named_step_is_not_blamed_on_a_later_gradient():
    """dW1 = δ1 xᵀ names δ1, which holds the right step: no World of δ1's step explains it."""
    assert verdict(TANH, "sample", "W1", r"\delta_1 x^T").equal


def test_the_mistake_search_answers_within_seconds_on_a_wide_deep_net():
    spec = "50 -> 50 relu -> 50 relu -> 50 relu -> 50 relu -> 10 ; mse"
    started = time.monotonic()
    result = verdict(spec, "sample", "delta2", r"(W_3^T \delta_3) \odot z_2")
    assert not result.equal and result.diagnosis
    assert time.monotonic() - started < 5


def test_nielsens_sigma_prime_is_the_diagonal_matrix_of_the_derivative():
    assert verdict(SIGMOID, "sample", r"\delta^l", r"\Sigma'(z^l) (w^{l+1})^T \delta^{l+1}").equal
    wrong = verdict(SIGMOID, "sample", r"\delta^l", r"(w^{l+1})^T \Sigma'(z^l) \delta^{l+1}")
    assert not wrong.equal and "factors in the wrong order" in wrong.layers[0].result.diagnosis
    with pytest.raises(ChainruleError, match="diagonal matrix of one sample"):
        verdict(NG, "columns", "Delta1", r"\Sigma'(Z_1) W_2^T \Delta_2")


@pytest.mark.parametrize("text, reason", [
    (r"$\delta^l = \Sigma'(z^l) (w^{l+1})^T \ldots \Sigma'(z^L) \nabla_a C$", r"leaves factors out with \ldots"),
    (r"until reaching $l+1 = L$, then", "relates layer numbers"),
    (r"$b^l_j = z^l_j - \sum_k w^l_{jk} a^{l-1}_k$", "the forward pass solved for the parameter"),
])
def test_what_is_not_a_gradient_equation_is_skipped_with_its_reason(text, reason):
    (found,) = read_document(text)
    assert not isinstance(found, Equation) and reason in found.reason


def test_a_bias_by_its_value_is_still_checked():
    (found,) = read_document(r"$b_2 = \hat y - y$")
    assert isinstance(found, Equation)


@pytest.mark.parametrize("wrt, text", [
    ("dZ[1]", "W[2]T . dZ[2] * g’[1](Z[1])"),  # forum style: W[2]T, " . ", a typographic prime, g'[1]
    ("dW^{[1]}", r"1/m \space\space dZ^{[1]} \space X^{[T]}"),  # \space, and the transpose as ^{[T]}
    ("dW^{[2]}", r"1/m * dZ^{[2]} * A^{[1]^T}"),  # * where only a matrix product fits
    ("dA^{[1]}", r"W^{[2]^T} * dZ^{[2]}"),
])
def test_forum_notation_reads_right(wrt, text):
    assert verdict("2 -> 4 tanh -> 3 tanh -> 1 sigmoid ; bce", "ng", wrt, text).equal


def test_a_star_that_fits_element_wise_stays_element_wise():
    """dA * g'(Z) of two n × m matrices is element-wise even under ng; * reads as a product only where the
    element-wise reading cannot fit, and not in the columns convention."""
    assert verdict(NG, "ng", "dZ1", r"dA1 * relu'(Z1)").equal
    wrong = verdict(NG, "columns", "W2", r"\Delta_2 * A_1^T")
    assert not wrong.equal


def test_prose_after_where_is_not_an_equation():
    (found,) = read_document(r"dZ^[1] = ((W^[2]).T) (dZ^[2]) * g’(Z^[1]), where * is element-wise multiplication")
    assert isinstance(found, Equation) and found.rhs.strip().endswith("g’(Z^[1])")
