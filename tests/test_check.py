"""chainrule check: hand-derived gradients, right ones accepted, usual mistakes named."""
import pytest

from codegen.cli import main
from derive import derive
from derive.check import accepted_names, check, read_equations

SIMPLE = "2 -> 2 relu -> 1 ; mse"
SIGMOID = "3 -> 4 sigmoid -> 4 sigmoid -> 2 sigmoid ; sse_half"
SOFTMAX = "3 -> 4 relu -> 3 softmax ; cross_entropy"
RESIDUAL = "3 -> 3 tanh residual -> 3 tanh residual -> 2 ; mse"

_CACHE = {}


def derivation(spec):
    if spec not in _CACHE:
        _CACHE[spec] = derive(spec)
    return _CACHE[spec]


# (spec, convention, wrt, the same expression in LaTeX and in plain math)
CORRECT = [
    (SIMPLE, "sample", "delta2", r"2 (\hat{y} - y)", "2*(yhat - y)"),
    (SIMPLE, "sample", "W2", r"\delta_2 h_1^\top", "delta2 @ h1.T"),
    (SIMPLE, "sample", "b2", r"\delta_2", "delta2"),
    (SIMPLE, "sample", "delta1", r"(W_2^T \delta_2) \odot 1[z_1 > 0]", "(W2.T @ delta2) * (z1 > 0)"),
    (SIMPLE, "sample", "delta1", r"\left(W_2^{\top} \delta_2\right) \circ \operatorname{relu}'(z_1)",
     "np.dot(W2.T, delta2) * relu_prime(z1)"),
    (SIMPLE, "sample", "W1", r"\delta_1 x^T", "delta1 @ x.T"),
    (SIMPLE, "sample", "b1", r"\frac{\partial L}{\partial z_1}", "dL/dz1"),
    (SIMPLE, "columns", "delta2", r"\frac{2}{N} (\hat{Y} - Y)", "2/N*(Yhat - Y)"),
    (SIMPLE, "columns", "W1", r"\Delta_1 X^\top", "Delta1 @ X.T"),
    (SIMPLE, "columns", "b1", r"\Delta_1 \mathbf{1}", "sum(delta1, axis=1)"),
    (SIMPLE, "columns", "W2", r"\frac{2}{N} (\hat{Y} - Y) A_1^\top", "2 / N * (Yhat - Y) @ A1.T"),
    (SIMPLE, "rows", "W1", r"\Delta_1^\top X", "Delta1.T @ X"),
    (SIMPLE, "rows", "b1", r"\mathbf{1}^\top \Delta_1", "Delta1.sum(axis=0)"),
    (SIMPLE, "rows", "delta1", r"(\Delta_2 W_2) \odot \mathbb{1}[Z_1 > 0]", "(Delta2 @ W2) * (Z1 > 0)"),
    (SIGMOID, "sample", "yhat", r"\hat y - y", "yhat - y"),
    (SIGMOID, "sample", "delta3", r"(\hat y - y) \odot \sigma'(z_3)", "(yhat - y) * sigmoid_prime(z3)"),
    (SIGMOID, "sample", "delta2", r"(W_3^\top \delta_3) \odot a_2 \odot (1 - a_2)", "(W3.T @ delta3) * a2 * (1 - a2)"),
    (SIGMOID, "sample", "delta1", r"(W_2^T \delta_2) \odot \sigma'(z_1)", "(W2.T @ delta2) * sigmoid_prime(z1)"),
    (SIGMOID, "sample", "W3", r"\delta_3 h_2^\top", "delta3 @ h2.T"),
    (SIGMOID, "sample", "W1", r"\delta_1 x^\top", "dZ1 @ x.T"),
    (SIGMOID, "sample", "h1", r"W_2^\top \delta_2", "W2.T @ delta2"),
    (SIGMOID, "columns", "b3", r"\sum_{n=1}^{N} \Delta_3^{(n)}", "Delta3.sum(axis=1, keepdims=True)"),
    (SOFTMAX, "sample", "delta2", r"\hat{y} - y", "yhat - y"),
    (SOFTMAX, "sample", "W2", r"(\hat{y} - y) a_1^\top", "(yhat - y) @ a1.T"),
    (SOFTMAX, "sample", "delta1", r"(W_2^\top (\hat y - y)) \odot f'(z_1)", "(W2.T @ (yhat - y)) * (z1 > 0)"),
    (SOFTMAX, "columns", "delta2", r"\frac{1}{N}(\hat Y - Y)", "(Yhat - Y) / N"),
    (SOFTMAX, "rows", "W2", r"\frac{1}{N} (\hat Y - Y)^\top A_1", "(Yhat - Y).T @ A1 / N"),
    (RESIDUAL, "sample", "delta3", r"\hat y - y", "yhat - y"),
    (RESIDUAL, "sample", "delta2", r"(W_3^\top \delta_3) \odot (1 - \tanh(z_2)^2)",
     "(W3.T @ delta3) * (1 - tanh(z2)**2)"),
    (RESIDUAL, "sample", "h1", r"W_2^\top \delta_2 + \frac{\partial L}{\partial h_2}", "W2.T @ delta2 + dL/dh2"),
    (RESIDUAL, "sample", "delta1", r"(W_2^\top \delta_2 + W_3^\top \delta_3) \odot \tanh'(z_1)",
     "(W2.T @ delta2 + W3.T @ delta3) * tanh_prime(z1)"),
    (RESIDUAL, "sample", "W2", r"\delta_2 a_1^\top", "delta2 @ a1.T"),
    (RESIDUAL, "sample", "b1", r"\delta_1", "delta1"),
    (SIMPLE + " ; l1=0.5 ; l2=0.25", "sample", "W2", r"\delta_2 a_1^\top + \frac{1}{2} \operatorname{sign}(W_2) + 0.25 W_2",
     "delta2 @ a1.T + 0.5*sign(W2) + 0.25*W2"),
    # the chain through a sigmoid output and the binary cross-entropy, divided element-wise: (ŷ - y) / m
    ("3 -> 4 tanh -> 2 sigmoid ; bce", "sample", "delta2",
     r"\frac{1}{2} \sigma'(z_2) \odot (\hat y - y) \oslash (\hat y \odot (1 - \hat y))",
     "sigmoid_prime(z2) * (yhat - y) / (yhat * (1 - yhat)) / 2"),
]


@pytest.mark.parametrize("spec, convention, wrt, latex, plain", CORRECT)
def test_right_gradients_are_accepted_in_both_notations(spec, convention, wrt, latex, plain):
    for text in (latex, plain):
        result = check(derivation(spec), wrt, text, convention)
        assert result.equal, (text, result.report())


def test_the_four_classic_equations_in_textbook_notation():
    d = derivation(SIGMOID)
    assert check(d, r"\delta^{3}", r"(a^{3} - y) \odot \sigma'(z^{3})").equal    # δ^L = ∇_a C ⊙ σ'(z^L)
    assert check(d, r"\delta^{2}", r"((W^{3})^T \delta^{3}) \odot \sigma'(z^{2})").equal
    assert check(d, r"b^{2}", r"\delta^{2}").equal                                 # ∂C/∂b^l = δ^l
    assert check(d, r"\frac{\partial C}{\partial W^{2}}", r"\delta^{2} (a^{1})^T").equal


# (spec, convention, wrt, wrong expression, words the diagnosis must contain)
MISTAKES = [
    (SIGMOID, "sample", "delta1", r"(W_2 \delta_2) \odot \sigma'(z_1)", "missing transpose"),
    (SIGMOID, "sample", "W1", r"\delta_1^\top x^\top", "extra transpose"),
    (SIGMOID, "sample", "W2", r"h_1 \delta_2^\top", "transposed"),
    (SIGMOID, "sample", "delta3", r"(y - \hat y) \odot \sigma'(z_3)", "sign"),
    (SIGMOID, "sample", "delta3", r"2 (\hat y - y) \odot \sigma'(z_3)", "the 2 from differentiating the square"),
    (SIGMOID, "columns", "delta3", r"(\hat Y - Y) \odot \sigma'(Z_3)", "1/N of the mean"),
    (SIGMOID, "sample", "delta2", r"W_3^\top \delta_3", "missing activation derivative"),
    (SIGMOID, "sample", "delta2", r"(W_3^\top \delta_3) \odot \sigma'(z_2) \odot \sigma'(z_2)", "extra activation derivative"),
    (SIMPLE, "sample", "delta1", r"(W_2^T \delta_2) \odot \sigma'(z_1)", "wrong activation derivative"),
    (SIMPLE, "columns", "b1", "sum(Delta1, axis=0)", "wrong sum over the batch"),
    (SIMPLE, "columns", "b1", r"\Delta_1", "missing sum over the batch"),
    (SIGMOID, "sample", "delta2", r"(W_3^\top \odot \delta_3) \odot \sigma'(z_2)", "where a matrix product belongs"),
    (SIGMOID, "sample", "delta2", "W3.T * delta3 * sigmoid_prime(z2)", "where a matrix product belongs"),
    (SIGMOID, "sample", "delta1", r"(W_2^T \delta_2) \sigma'(z_1)", "where an element-wise (Hadamard) product belongs"),
    (SIGMOID, "sample", "delta1", r"(W_2^T \delta_2) \odot \sigma'(z_2)", "wrong layer"),
    (SIMPLE, "sample", "W2", "delta2 @ x.T", "wrong layer: 'x' should be h1"),
    (SIMPLE + " ; l2=0.01", "sample", "W1", "delta1 @ x.T", "missing the L2 penalty's gradient"),
    (RESIDUAL, "sample", "delta1", r"(W_2^\top \delta_2) \odot \tanh'(z_1)", "missing the residual path"),
    (RESIDUAL, "sample", "h1", r"W_2^\top \delta_2", "missing the residual path"),
]


@pytest.mark.parametrize("spec, convention, wrt, text, words", MISTAKES)
def test_usual_mistakes_are_named(spec, convention, wrt, text, words):
    result = check(derivation(spec), wrt, text, convention)
    assert not result.equal
    assert words in result.diagnosis, result.report()
    assert result.correct


def test_a_difference_comes_with_the_correct_expression_and_a_counterexample():
    result = check(derivation(SIGMOID), "W3", r"-\delta_3 h_2^\top")
    assert "δ3 a2ᵀ" in result.correct and r"\delta_{3} a_{2}^{\top}" in result.correct_latex
    assert "yours = " in result.counterexample and "dL/dW3 = " in result.counterexample
    assert "mistake:  sign" in result.report()


def test_rows_convention_prints_the_rows_form():
    result = check(derivation(SIMPLE), "W1", "X.T @ Delta1", "rows")
    assert "transposed" in result.diagnosis and "Δ1ᵀ X" in result.correct


def test_cli_exit_codes(capsys):
    assert main(["check", SIMPLE, "--wrt", "W2", "--grad", r"\delta_2 h_1^\top"]) == 0
    assert main(["check", SIMPLE, "--wrt", "W2", "--grad", r"\delta_2 h_1"]) == 1
    assert main(["check", SIMPLE, "--wrt", "W2", "--grad", r"\delta_2 q_1"]) == 2
    err = capsys.readouterr().err
    assert "unknown name 'q_1'" in err and "W_1" in err and "\\delta_1" in err and len(err.strip().splitlines()) == 1
    assert main(["check", SIMPLE, "--wrt", "W9", "--grad", "x"]) == 2


@pytest.mark.parametrize("hostile", [
    "__import__('os').system('touch {marker}')",
    "exec('open(\"{marker}\", \"w\")')",
    "x" * 100000,
    "(" * 5000 + "x" + ")" * 5000,
    "W2 @ " * 1000 + "x",
    "W1 @ " * 390 + "x",
    "-" * 1500 + "q",
    "x" + ".T" * 900,
    "\\input{{{marker}}}",
    "lambda: 0",
    "W2.__class__",
    "",
])
def test_hostile_input_fails_cleanly_with_exit_2(hostile, tmp_path, capsys):
    marker = tmp_path / "x"
    code = main(["check", SIMPLE, "--wrt", "W1", "--grad=" + hostile.format(marker=marker)])
    assert code == 2
    assert not marker.exists()
    assert capsys.readouterr().err.startswith("chainrule: error: ")


def test_a_file_of_equations(tmp_path, capsys):
    good = tmp_path / "mine.tex"
    good.write_text("\\begin{align}\n"
                    "\\delta_2 &= 2(\\hat y - y) \\\\\n"
                    "\\frac{\\partial L}{\\partial W_2} &= \\delta_2 h_1^\\top \\\\  % output layer\n"
                    "dL/dW1 = delta1 @ x.T\n"
                    "\\end{align}\n")
    assert len(read_equations(good.read_text())) == 3
    assert main(["check", SIMPLE, "--file", str(good)]) == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("W2 = delta2 @ h1.T\nW1 = x @ delta1.T\n")
    assert main(["check", SIMPLE, "--file", str(bad)]) == 1
    assert "line 2: dL/dW1: different" in capsys.readouterr().out


def test_accepted_names_are_listed():
    names = accepted_names(derivation(SIMPLE), "sample")
    assert "W_1" in names and "x" in names and any("relu'(z_1)" in n for n in names)
    assert any(n.startswith("N") for n in accepted_names(derivation(SIMPLE), "columns"))


def test_batch_size_needs_a_batch_convention():
    from derive.errors import ChainruleError
    with pytest.raises(ChainruleError, match="batch size"):
        check(derivation(SIMPLE), "W1", "delta1 @ x.T / N")


def test_a_small_network_counterexample_lists_every_input():
    result = check(derivation(SIMPLE), "W2", r"-\delta_2 h_1^\top")
    assert result.counterexample.startswith("at x = [") and "W1 = [" in result.counterexample
    assert "yours = [" in result.counterexample and "dL/dW2 = [" in result.counterexample


def test_a_wide_network_is_checked_quickly_at_its_real_widths():
    import time
    start = time.monotonic()
    spec = "64 -> 128 relu -> 10 softmax ; cross_entropy"
    assert check(derivation(spec), "W1", "delta1 @ x.T").equal
    wrong = check(derivation(spec), "delta1", "(W2.T @ delta2) * sigmoid_prime(z1)")
    assert "wrong activation derivative" in wrong.diagnosis
    assert time.monotonic() - start < 20


def test_a_formula_activation_and_an_identity_hidden_layer():
    mish = derivation("2 -> 3 [z*tanh(log(1+exp(z)))] -> 1 ; mse")
    assert check(mish, "delta1", r"(W_2^T \delta_2) \odot f'(z_1)").equal
    plain = derivation("2 -> 3 -> 1 ; mse")
    assert check(plain, "W2", r"\delta_2 h_1^T").equal and check(plain, "h1", "W2.T @ delta2").equal


def test_factor_hints_fit_the_loss():
    bce = check(derivation("2 -> 3 tanh -> 2 sigmoid ; bce"), "W2", "(yhat - y) @ h1.T")
    assert "1/2 of the mean over the outputs" in bce.diagnosis and "square" not in bce.diagnosis


def test_dropout_masks_have_names():
    d = derivation("2 -> 3 relu dropout=0.5 -> 1 ; mse")
    assert check(d, "delta1", r"(W_2^T \delta_2) \odot m_1 \odot 1[z_1 > 0]").equal
    assert check(d, "delta1", "(Delta2 @ W2) * M1 * (Z1 > 0)", "rows").equal
    assert "missing dropout mask" in check(d, "delta1", r"(W_2^T \delta_2) \odot 1[z_1 > 0]").diagnosis


def test_derive_check_is_callable_and_lists_names_whichever_object_it_is():
    import derive
    d = derivation(SIMPLE)
    for _ in range(2):  # the first access imports the module, the second finds it
        assert derive.check(d, "W2", "delta2 @ h1.T").equal
        assert "W_1" in accepted_names(d, "sample")


def test_a_file_line_that_cannot_be_read_gives_exit_2(tmp_path, capsys):
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("W2 = delta2 @ h1.T\nW1 = delta1 @ q.T\n")
    assert main(["check", SIMPLE, "--file", str(mixed)]) == 2
    out = capsys.readouterr().out
    assert "line 1: dL/dW2: correct" in out and "line 2: not understood: unknown name 'q'" in out


@pytest.mark.parametrize("convention, wrt, text", [
    ("sample", "dL/dx", r"W_1^\top \delta_1"),
    ("sample", r"\frac{\partial L}{\partial x}", "W1.T @ delta1"),
    ("columns", "dL/dX", r"W_1^T \Delta_1"),
    ("rows", "dX", "Delta1 @ W1"),
    ("sample", "dL/da^{l-1}", r"(W^l)^T \delta^l"),
])
def test_the_gradient_of_the_input_is_checked(convention, wrt, text):
    result = check(derivation(SIMPLE), wrt, text, convention)
    assert result.equal, result.report()


def test_a_wrong_gradient_of_the_input_is_diagnosed():
    result = check(derivation(SIMPLE), "dL/dx", r"W_1 \delta_1")
    assert not result.equal and "missing transpose" in result.diagnosis
    assert "dL/dx = W1ᵀ δ1" in result.report()
    residual = check(derivation("3 -> 3 tanh residual -> 2 ; mse"), "dL/dx", r"W_1^\top \delta_1")
    assert "missing the residual path" in residual.diagnosis


def test_the_gradient_of_the_input_is_what_pytorch_computes():
    """dL/dx is no step of the derivation: its value is compared with autograd's, residual path included."""
    import torch
    from derive.check import Checker
    checker = Checker(derivation(RESIDUAL), "sample")
    env = checker.points()[0]
    value = {k: torch.tensor(env[q.symbol], dtype=torch.float64) for k, q in checker.q.items()
             if q.symbol in env and k in ("x", "y", "W1", "b1", "W2", "b2", "W3", "b3")}
    x = value["x"].clone().requires_grad_(True)
    h1 = torch.tanh(value["W1"] @ x + value["b1"]) + x
    h2 = torch.tanh(value["W2"] @ h1 + value["b2"]) + h1
    loss = ((value["W3"] @ h2 + value["b3"] - value["y"]) ** 2).mean()
    loss.backward()
    mine = checker.numeric(checker.grads["x"][0], env)
    assert torch.allclose(torch.tensor(mine, dtype=torch.float64), x.grad.ravel(), atol=1e-12)


HUBER = "2 -> 3 tanh -> 2 ; huber"


@pytest.mark.parametrize("spec, convention, wrt, text", [
    (SIMPLE, "sample", "delta1", "(W2.T @ delta2) * np.where(z1 > 0, 1, 0)"),
    (SIMPLE, "sample", "delta1", "np.where(z1 > 0, W2.T @ delta2, 0)"),
    (SIMPLE, "rows", "delta1", "(Delta2 @ W2) * np.where(Z1 <= 0, 0.0, 1.0)"),
    (SIMPLE, "rows", "delta1", "np.where(Z1 < 0, 0, Delta2 @ W2)"),
    ("2 -> 3 leaky_relu(slope=0.1) -> 1 ; mse", "rows", "delta1", "(Delta2 @ W2) * np.where(Z1 > 0, 1, 0.1)"),
    (HUBER, "sample", "yhat", "np.clip(yhat - y, -1, 1) / 2"),
    (HUBER, "rows", "yhat", "np.clip(Yhat - Y, -1, 1) / (2 * N)"),
    (HUBER, "rows", "W2", "(np.clip(Yhat - Y, a_min=-1, a_max=1) / (2 * N)).T @ A1"),
    ("2 -> 3 tanh -> 2 ; huber(delta=0.5)", "sample", "yhat", "np.clip(yhat - y, -0.5, 0.5) / 2"),
])
def test_np_where_and_np_clip_are_read_and_right_ones_accepted(spec, convention, wrt, text):
    result = check(derivation(spec), wrt, text, convention)
    assert result.equal, result.report()


@pytest.mark.parametrize("spec, convention, wrt, text, words", [
    (SIMPLE, "rows", "delta1", "np.where(Z1 > 0, 0, Delta2 @ W2)", "np.where's branches swapped"),
    (SIMPLE, "sample", "delta1", "(W2 @ delta2) * np.where(z1 > 0, 1, 0)", "missing transpose"),
    (SIMPLE, "sample", "delta1", "(W2.T @ delta2) * np.where(z1 > 0, 1, 0) * np.where(z1 > 0, 1, 0) * 3",
     "constant factor: yours is 3 times"),
    (HUBER, "rows", "yhat", "np.clip(Yhat - Y, -2, 2) / (2 * N)", "wrong bounds: the Huber loss with delta = 1 clips at ±1"),
    (HUBER, "rows", "yhat", "np.clip(Yhat - Y, -1, 1) / 2", "the 1/N of the mean over the batch"),
    (HUBER, "sample", "yhat", "np.clip(y - yhat, -1, 1) / 2", "sign"),
    ("2 -> 3 tanh -> 2 ; mse", "sample", "yhat", "np.clip(yhat - y, -1, 1)", "extra clipping"),
    (SIMPLE, "sample", "delta1", "(W2.T @ delta2) * np.where(z1 > 0, 1, 0.01)",
     "wrong activation derivative: layer 1 uses relu, whose derivative is not 'np.where(z1 > 0, 1, 0.01)'"),
    ("3 -> 4 sigmoid -> 2 ; mse", "sample", "delta1", "(W2.T @ delta2) * (z1 > 0)",
     "wrong activation derivative: layer 1 uses sigmoid"),
])
def test_mistakes_inside_np_where_and_np_clip_are_named(spec, convention, wrt, text, words):
    result = check(derivation(spec), wrt, text, convention)
    assert not result.equal and words in result.diagnosis, result.report()


@pytest.mark.parametrize("text, words", [
    ("np.where(z1 > 1, 1, 0)", "only comparisons with 0"),
    ("np.where(z1, 1, 0)", "expected a comparison with 0"),
    ("np.clip(yhat - y, -delta, 1)", "the bounds of np.clip must be numbers"),
    ("np.clip(yhat - y, 1, -1)", "lower bound"),
])
def test_np_where_and_np_clip_that_cannot_be_read_exit_2(text, words, capsys):
    assert main(["check", SIMPLE, "--wrt", "delta1", "--grad", text]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_np_where_branches_that_do_not_fit_the_condition_are_a_shape_mistake():
    result = check(derivation("3 -> 2 relu -> 1 ; mse"), "delta1", "np.where(z1 > 0, x, 0)")
    assert not result.equal and "the shapes do not fit: 'z1' is 2 × 1 and 'x' is 3 × 1" in result.diagnosis


# (spec, convention, wrt, expression with two usual mistakes, the words naming each)
TWO_MISTAKES = [
    (SIGMOID, "sample", "delta2", r"2 (W_3 \delta_3) \odot \sigma'(z_2)", ("missing transpose", "2 times the gradient")),
    (SIGMOID, "sample", "delta1", r"W_2 \delta_2", ("missing transpose", "missing activation derivative")),
    (SIGMOID, "sample", "W2", r"-\delta_2 h_2^\top", ("wrong layer: 'h_2' should be h1", "sign")),
    (SIGMOID, "sample", "delta3", r"2 (\hat y - y)", ("missing activation derivative", "the 2 from differentiating")),
    (SIGMOID, "columns", "delta3", r"(\hat Y - Y) \odot \sigma'(Z_2)", ("at the wrong layer", "1/N of the mean")),
    (SIMPLE, "columns", "b1", r"2 \Delta_1", ("missing sum over the batch", "2 times the gradient")),
    (SIMPLE, "sample", "delta1", r"(W_2 \delta_2) \odot \sigma'(z_1)", ("transpose", "wrong activation derivative")),
]


@pytest.mark.parametrize("spec, convention, wrt, text, words", TWO_MISTAKES)
def test_two_usual_mistakes_at_once_are_both_named(spec, convention, wrt, text, words):
    result = check(derivation(spec), wrt, text, convention)
    assert not result.equal and result.diagnosis.startswith("two mistakes: "), result.report()
    first, second = result.diagnosis[len("two mistakes: "):].split("; and ")
    assert (words[0] in first and words[1] in second) or (words[1] in first and words[0] in second), result.diagnosis
    assert check(derivation(spec), wrt, text, convention).diagnosis == result.diagnosis  # the search is deterministic


def test_a_difference_no_pair_explains_says_so():
    result = check(derivation(SIGMOID), "W1", r"\delta_1 x^\top + h_1 x^\top")
    assert result.diagnosis.startswith("no usual mistake") and "or pair of them" in result.diagnosis


def test_the_mean_over_the_batch_is_no_hint_for_one_sample():
    result = check(derivation(SIGMOID), "W1", r"3 \delta_1 x^\top")
    assert "3 times the gradient" in result.diagnosis and "1/N" not in result.diagnosis


def test_a_missing_sum_names_the_batch_axis_of_the_convention():
    assert "one row per sample; sum it (axis=0)" in check(derivation(SIMPLE), "b1", "Delta1", "rows").diagnosis
    assert "one column per sample; sum it (axis=1)" in check(derivation(SIMPLE), "b1", "Delta1", "columns").diagnosis


SOFTMAX_MSE = "3 -> 4 tanh -> 3 softmax ; mse"
SOFTMAX_CE = "3 -> 4 tanh -> 3 softmax ; cross_entropy"

# (spec, convention, wrt, softmax read as element-wise: ŷ ⊙ (1 - ŷ) ⊙ g, the diagonal of its Jacobian only)
ELEMENTWISE_SOFTMAX = [
    (SOFTMAX_MSE, "sample", "delta2", r"\hat y \odot (1 - \hat y) \odot \frac{\partial L}{\partial \hat y}"),
    (SOFTMAX_MSE, "sample", "delta2", "yhat * (1 - yhat) * 2/3 * (yhat - y)"),
    (SOFTMAX_MSE, "sample", "delta2", r"\operatorname{softmax}'(z_2) \odot \frac{\partial L}{\partial \hat y}"),
    (SOFTMAX_MSE, "sample", "delta2", "sigmoid_prime(z2) * dL/dyhat"),
    (SOFTMAX_MSE, "sample", r"\delta^L", r"f'(z^L) \odot \frac{\partial L}{\partial a^L}"),
    (SOFTMAX_MSE, "columns", "delta2", r"\hat Y \circ (1 - \hat Y) \circ \frac{2}{3N} (\hat Y - Y)"),
    (SOFTMAX_MSE, "rows", "delta2", "Yhat * (1 - Yhat) * dL/dYhat"),
    (SOFTMAX_MSE, "sample", "delta1", "(W2.T @ (yhat * (1 - yhat) * dL/dyhat)) * (1 - h1**2)"),
    (SOFTMAX_MSE, "rows", "W2", r"(\hat Y \odot (1 - \hat Y) \odot \frac{\partial L}{\partial \hat Y})^\top H_1"),
    (SOFTMAX_CE, "sample", "delta2", r"\hat y \odot (1 - \hat y) \odot \left(-\frac{y}{\hat y}\right)"),
    (SOFTMAX_CE, "sample", "delta2", "yhat * (1 - yhat) * (-y / yhat)"),
    (SOFTMAX_CE, "sample", "delta2", r"-y \odot (1 - \hat y)"),                       # the same, simplified
    (SOFTMAX_CE, "sample", "delta2", "softmax'(z2) * (-y / yhat)"),
    (SOFTMAX_CE, "columns", "delta2", r"\frac{1}{N} \hat Y \odot (1 - \hat Y) \odot (-Y \oslash \hat Y)"),
    (SOFTMAX_CE, "rows", "delta2", "Yhat * (1 - Yhat) * (-Y / Yhat) / N"),
    (SOFTMAX_CE, "rows", "b2", "(Yhat * (1 - Yhat) * (-Y / Yhat) / N).sum(axis=0)"),
]


@pytest.mark.parametrize("spec, convention, wrt, text", ELEMENTWISE_SOFTMAX)
def test_softmax_read_as_element_wise_is_named_with_the_right_delta(spec, convention, wrt, text):
    d = derivation(spec)
    result = check(d, wrt, text, convention)
    assert not result.equal and result.diagnosis.startswith("softmax is not element-wise"), result.report()
    assert "ŷ ⊙ (1 − ŷ) is only the diagonal of" in result.diagnosis
    assert "Jacobian diag(ŷ) − ŷŷᵀ; with the off-diagonal −ŷ_i ŷ_j terms" in result.diagnosis
    output = check(d, "delta2", "yhat", convention)
    assert result.diagnosis.endswith(f"{output.wrt} = {output.correct}"), result.diagnosis
    if spec == SOFTMAX_CE:
        assert "ŷ ⊙ (g − 1 ŷᵀ g), which with the categorical cross-entropy is" in result.diagnosis
        assert output.correct in ("ŷ - y", "(1/N)·(Ŷ - Y)")
    else:
        assert "dL/dŷ - 1 ŷᵀ dL/dŷ" in output.correct or "dL/dŶ - " in output.correct


def test_a_named_element_wise_derivative_of_softmax_says_what_was_written():
    result = check(derivation(SOFTMAX_MSE), "delta2", "sigmoid_prime(z2) * dL/dyhat")
    assert result.diagnosis.startswith("softmax is not element-wise, so 'sigmoid_prime(z2)' is not its derivative: ")
    assert "wrong activation derivative" not in result.diagnosis


def test_softmax_read_as_element_wise_pairs_with_another_mistake():
    d = derivation(SOFTMAX_MSE)
    factor = check(d, "delta2", "yhat * (1 - yhat) * 2 * (yhat - y)")          # and no 1/3 of the mean
    assert factor.diagnosis.startswith("two mistakes: softmax is not element-wise: ")
    assert factor.diagnosis.endswith("; and constant factor: yours is 3 times the gradient "
                                     "(the 1/3 of the mean over the outputs)")
    transpose = check(d, "delta1", "(W2 @ (yhat * (1 - yhat) * dL/dyhat)) * (1 - h1**2)")
    assert transpose.diagnosis.startswith("two mistakes: missing transpose: 'W2' should be transposed; and softmax "
                                          "is not element-wise: "), transpose.diagnosis


def test_the_softmax_mistake_search_is_deterministic():
    """The same diagnosis from a fresh derivation, and from another process with another hash seed."""
    import os
    import subprocess
    import sys
    text = "W2 @ (yhat * (1 - yhat) * dL/dyhat)"                     # a shape mismatch until W2 is transposed
    first = check(derivation(SOFTMAX_MSE), "h1", text).diagnosis
    assert first.startswith("two mistakes: missing transpose: 'W2' should be transposed; and softmax is not "), first
    assert check(derive(SOFTMAX_MSE), "h1", text).diagnosis == first
    code = ("from derive import derive; from derive.check import check; "
            f"print(check(derive({SOFTMAX_MSE!r}), 'h1', {text!r}).diagnosis)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == first


@pytest.mark.parametrize("spec, convention, wrt, text", [
    (SOFTMAX_MSE, "sample", "delta2",
     r"\hat y \odot (\frac{\partial L}{\partial \hat y} - \hat y^\top \frac{\partial L}{\partial \hat y})"),
    (SOFTMAX_MSE, "sample", "delta2", "yhat * (2/3*(yhat - y) - yhat.T @ (2/3*(yhat - y)))"),
    (SOFTMAX_MSE, "sample", "delta2", "yhat * (1 - yhat) * dL/dyhat - yhat * (yhat.T @ dL/dyhat - yhat * dL/dyhat)"),
    (SOFTMAX_MSE, "sample", "delta2", "softmax(z2) * (dL/dyhat - softmax(z2).T @ dL/dyhat)"),
    (SOFTMAX_MSE, "columns", "delta2",
     r"\hat Y \odot (\frac{\partial L}{\partial \hat Y} - \mathbf{1}^\top (\hat Y \odot \frac{\partial L}{\partial \hat Y}))"),
    (SOFTMAX_MSE, "rows", "delta2", "Yhat * (dL/dYhat - (Yhat * dL/dYhat).sum(axis=1, keepdims=True))"),
    (SOFTMAX_MSE, "sample", "W2", r"(\hat y \odot (\frac{\partial L}{\partial \hat y} - \hat y^\top "
                                  r"\frac{\partial L}{\partial \hat y})) h_1^\top"),
    (SOFTMAX_CE, "sample", "delta2", "yhat * (-y/yhat - yhat.T @ (-y/yhat))"),
    (SOFTMAX_CE, "sample", "delta2", r"\hat y \odot (-y \oslash \hat y - \hat y^\top (-y ⊘ \hat y))"),
    (SOFTMAX_CE, "rows", "delta2", "Yhat * (-Y/Yhat - (Yhat * -Y/Yhat).sum(axis=1, keepdims=True)) / N"),
])
def test_softmax_s_jacobian_vector_rule_is_accepted(spec, convention, wrt, text):
    result = check(derivation(spec), wrt, text, convention)
    assert result.equal, result.report()


def test_softmax_of_a_layer_that_is_not_softmax_is_still_an_error(capsys):
    assert main(["check", SOFTMAX_MSE, "--wrt", "delta1", "--grad", "(W2.T @ delta2) * softmax'(z1)"]) == 2
    assert "softmax is not element-wise, so 'softmax'(z1)' is not understood" in capsys.readouterr().err
