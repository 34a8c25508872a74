"""Notes a teacher pastes unchanged (issue 16, items 1, 3, 4, 7, 8 and 9): one test per fix, on the
gallery's specs and a few inline ones, in the three formats."""
import re
from pathlib import Path

import pytest

import derive
from codegen.emit import generate

ROOT = Path(__file__).resolve().parent.parent
GALLERY = sorted((ROOT / "generated" / "specs").glob("*.toml"))
NETWORK = {"inputs": 2, "layers": [{"units": 3, "activation": "tanh"}, {"units": 1}], "loss": "mse"}


def _with(**tables):
    return derive.derive({"name": "notes", "network": NETWORK, **tables})


def _training(text: str) -> str:
    return text.split("\nTraining\n--------\n")[1]


def _joined(text: str) -> str:
    """The text's words, one space between each (wrapped lines read as one)."""
    return " ".join(text.split())


# -- 1. the Training section --------------------------------------------------------------------

def test_plain_sgd_prints_only_its_update_and_no_symbol_of_the_network():
    training = _training(_with(optimizer={"type": "sgd", "lr": 0.01}).text())
    assert "  (23)  gₜ = ∇_θ L(θₜ₋₁)\n  (24)  θₜ = θₜ₋₁ - η gₜ\nTraining:" in training
    assert not re.search(r"\bb[ₜ₁]|μ|τ|λ|Nesterov", training), training


def test_sgd_momentum_buffer_is_not_the_bias_and_every_symbol_is_tied_to_a_setting():
    d = _with(optimizer={"type": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01})
    training = _joined(_training(d.text()))
    assert "B₁ = g₁, Bₜ = μ Bₜ₋₁ + gₜ" in training and "θₜ = θₜ₋₁ - η Bₜ" in training
    assert "θ stands for each of W1, b1, W2, b2 in turn" in training
    assert "η = lr = 0.1, μ = momentum = 0.9, λ = weight_decay = 0.01" in training
    assert "τ" not in training                                  # no dampening: its factor is not printed
    assert r"\theta_t = \theta_{t-1} - \eta (g_t + \mu B_t)" in _with(
        optimizer={"type": "sgd", "momentum": 0.9, "nesterov": True}).latex()


def test_adam_rules_are_numbered_labelled_and_start_from_zero_moments():
    tex = derive.derive(ROOT / "generated/specs/digits.toml").latex()
    assert "\\begin{equation}\\label{eq:adam-2}\nm_0 = v_0 = 0\n\\end{equation}" in tex
    assert "amsgrad" not in tex and "lambda" not in tex          # neither amsgrad nor weight decay is on


# -- 3. formulas as a textbook writes them ------------------------------------------------------

def test_huber_step_is_a_clip_of_yhat_minus_y_in_every_format_and_in_the_code():
    d = derive.derive(ROOT / "generated/specs/huber_tanh.toml")
    assert "δ3 = (1/2) clip(ŷ - y, -1/2, 1/2)\n" in d.text()
    assert "|y - ŷ|" not in d.text() and "sign(" not in d.text()
    assert r"\left|{y - \hat{y}}\right|" not in d.latex() and r"\left|{\hat{y} - y}\right|" in d.latex()
    assert r"\delta_{3} = \frac{1}{2} \operatorname{clip}\left(\hat{y} - y, - \frac{1}{2}, \frac{1}{2}\right)" in d.latex()
    code = generate(d)
    assert "np.clip(Yhat - Y, -1/2, 1/2)" in code and "-np.clip" not in code


def test_mse_derivative_is_two_times_the_error():
    d = derive.derive(ROOT / "generated/specs/simple_nn.toml")
    assert "∂ℓ/∂ŷ = 2 (ŷ - y)\n" in d.text()
    assert r"\frac{\partial \ell}{\partial \hat{y}} = 2 \left(\hat{y} - y\right)" in d.markdown()


def test_a_builtin_activation_is_not_defined_by_its_own_name():
    for doc in (derive.derive(ROOT / "generated/specs/huber_tanh.toml").text(),
                derive.derive(ROOT / "generated/specs/huber_tanh.toml").latex()):
        assert not re.search(r"tanh\(z\) = \\?tanh|\\tanh\(z\) = \\tanh", doc)
    assert "tanh(z) = (exp(z) - exp(-z))/(exp(z) + exp(-z))" in derive.derive("2 -> 2 tanh -> 1 ; mse").text()


def test_cross_entropy_puts_its_minus_before_the_sum():
    d = derive.derive(ROOT / "generated/specs/digits.toml")
    assert "L = -Σᵢ yᵢ log(ŷᵢ)" in d.text() and "L = -(1/N) Σᵢⱼ Yᵢⱼ log(Ŷᵢⱼ)" in d.text()
    assert r"L = -\frac{1}{N} \sum_{i,j} Y_{ij} \log{\left(\hat{Y}_{ij} \right)}" in d.latex()


def test_custom_softsign_derivative_is_one_over_a_square():
    spec = {"name": "s", "network": {"inputs": 2, "loss": "mse", "layers": [
        {"units": 2, "activation": {"formula": "z/(1+abs(z))", "name": "softsign"}}, {"units": 1}]}}
    d = derive.derive(spec)
    assert "softsign'(z) = 1/(|z| + 1)²\n" in d.text() and "Eq(" not in d.text()


def test_a_loss_applied_to_whole_matrices_says_element_wise():
    d = derive.derive(ROOT / "generated/specs/huber_tanh.toml")
    step = next(s for s in d.steps if s.target.key == "Delta3")
    assert "applied element-wise" in step.explain({k: k for k in d.batch.quantities} | {"partial": "∂"})


# -- 4. sentences --------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", GALLERY, ids=lambda p: p.stem)
def test_gallery_prose_has_no_code_names_or_broken_phrases(spec):
    d = derive.derive(spec)
    for doc in (_joined(d.text()), d.markdown()):
        assert "divided as the loss is" not in doc and "the half the sum" not in doc and "the a custom" not in doc
        assert not re.search(r"\b(cross_entropy|sse_half|simple_nn|huber_tanh|sigmoid_sse)\b", doc)
        assert d.network.description in doc
        assert "dL/d" not in doc.split("Checking your own derivation")[0]        # ∂L/∂, as the equations


def test_sample_loss_with_nothing_divided_says_nothing_is():
    text = _joined(derive.derive("2 -> 2 relu -> 1 ; mse").text())
    assert "mean squared error of one sample Backward pass:" in text
    assert "(see the definitions), applied element-wise; the output activation" in text


def test_mse_over_two_outputs_says_its_half_is_one_over_k():
    text = _joined(derive.derive("2 -> 3 tanh -> 2 ; mse").text())
    assert "the factor 1/2 in the one-sample loss is 1/K" in text
    assert "mean squared error of one sample: the sum divided by K = 2 (the number of outputs)" in text


def test_batch_reasons_keep_the_ones_and_each_formula_is_one_piece_of_math():
    md = derive.derive(ROOT / "generated/specs/simple_nn.toml").markdown()
    assert r"chain rule through $Z_{2} = W_{2} A_{1} + b_{2} \mathbf{1}_{N}^{\top}$ (14):" in md
    assert "$ = $" not in md and "$ + $" not in md
    assert r"$\partial z_{1}/\partial b_{1}$ is the identity" in md
    assert r"$\frac{\partial L}{\partial W_{1}}$ | $2 \times 2$ | gradient of the loss with respect to $W_{1}$" in md


def test_sse_and_custom_losses_read_as_sentences():
    assert "Loss: halved sum of squared errors." in derive.derive("2 -> 2 -> 1 ; sse_half").text()
    custom = derive.derive({"name": "c", "network": {"inputs": 2, "layers": [{"units": 1}],
                                                     "loss": {"formula": "(yhat - y)**4 / 4"}}}).text()
    assert "trained on the custom loss." in custom


# -- 7. paste-friendly LaTeX -----------------------------------------------------------------------

@pytest.mark.parametrize("spec", GALLERY, ids=lambda p: p.stem)
def test_every_latex_equation_has_one_unique_label_and_no_tag(spec):
    d = derive.derive(spec)
    tex = d.latex()
    labels = re.findall(r"\\begin\{equation\}\\label\{(eq:[\w-]+)\}", tex)
    assert tex.count(r"\begin{equation}") == len(labels) == len(set(labels)) > 0
    assert r"\tag" not in tex
    per_sample = {"eq:delta1", "eq:dW1"} if d.sample else set()  # batch norm's notes have the batch form only
    assert per_sample | {"eq:batch-delta1", "eq:batch-dW1"} <= set(labels)


# -- 8. text and emitted code ----------------------------------------------------------------------

@pytest.mark.parametrize("spec", GALLERY, ids=lambda p: p.stem)
def test_text_notes_are_unicode_within_100_characters(spec):
    text = derive.derive(spec).text()
    assert max(len(line) for line in text.splitlines()) <= 100
    body = text.split("Checking your own derivation")[0]
    assert "**" not in body and "*" not in body and "<=" not in body


def test_bias_gradient_in_text_reads_as_a_product_with_ones():
    text = derive.derive(ROOT / "generated/specs/simple_nn.toml").text()
    assert "∂L/∂b2 = Δ2 1_N\n" in text and "Z1 = W1 X + b1 1_Nᵀ\n" in text


def test_module_docstring_says_which_lines_are_transposed_and_explains_the_stable_sigmoid():
    code = generate(derive.derive(ROOT / "generated/specs/binary.toml"))
    doc = code.split('"""')[1]
    assert "so each line\nbelow is the transpose" not in doc
    assert "weight and bias gradients do not" in doc
    assert "np.exp(-np.logaddexp(0, -Z)) is the sigmoid" in doc and "np.exp(-np.logaddexp(0, -Z2))" in code
    assert "logaddexp(0, -Z)) is the sigmoid" not in generate(derive.derive(ROOT / "generated/specs/simple_nn.toml"))


# -- 9. Jupyter ------------------------------------------------------------------------------------

def test_derivation_repr_and_latex_repr():
    d = derive.derive(ROOT / "generated/specs/simple_nn.toml")
    assert repr(d) == "<Derivation of simple_nn: 2 -> 2 relu -> 1 ; mse, 22 steps>"
    latex = d._repr_latex_()
    assert latex.startswith("$$\\begin{aligned}") and latex.endswith("\\end{aligned}$$")
    assert latex.count("&=") == 22 and r"\delta_{2} &= 2 \left(\hat{y} - y\right) && (6)" in latex


# -- beyond the fixes: a dimension check beside each step ------------------------------------------

def test_each_product_has_its_dimension_check_in_every_format():
    d = derive.derive(ROOT / "generated/specs/simple_nn.toml")
    assert "  ( 7)  ∂L/∂W2 = δ2 a1ᵀ\n        chain rule through z2 = W2 a1 + b2 (3): the error times the input, transposed\n" \
           "        dimensions: (1×1)(1×2) = 1×2\n" in d.text()
    assert "dimensions: (2×2)(2×N) = 2×N, (2×1)(1×N) = 2×N\n" in d.text()     # W1 X and b1 1_Nᵀ
    assert r"transposed. Dimensions: $(1 \times 1)(1 \times 2) = 1 \times 2$." in d.markdown()
    assert r"transposed \nobreak\hfill\penalty50\hskip1em\null\nobreak\hfill $(2 \times 1)(1 \times 2) = 2 \times 2$" \
           r"\parfillskip=0pt\par}" in d.latex()
    assert "( 8)  ∂L/∂b2 = δ2\n        ∂z2/∂b2 is the identity\n  ( 9)" in d.text()   # no product, no check
