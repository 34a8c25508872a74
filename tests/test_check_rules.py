"""chainrule check on a rule in the layer l: instantiated at every layer it applies at, one verdict each."""
import pytest

from codegen.cli import main
from derive.check import check
from derive.errors import ChainruleError
from test_check import SIGMOID, derivation

MIXED = "3 -> 4 relu -> 4 tanh -> 2 ; mse"
RESIDUAL = "3 -> 3 tanh -> 3 tanh residual -> 2 ; mse"


def verdicts(result):
    """{layer: True/False for a checked layer, None where the rule does not apply}."""
    return {v.layer: None if v.result is None else v.result.equal for v in result.layers}


@pytest.mark.parametrize("wrt, text", [
    (r"\delta^l", r"((W^{l+1})^T \delta^{l+1}) \odot \sigma'(z^l)"),
    (r"\delta_l", r"(W_{l+1}^\top \delta_{l+1}) \odot \sigma'(z_l)"),
    (r"\delta^{[l]}", r"(W^{[l+1]})^T \delta^{[l+1]} \circ a^{[l]} \circ (1 - a^{[l]})"),
    (r"\delta^{(\ell)}", r"((W^{(\ell+1)})^\top \delta^{(\ell+1)}) \odot f'(z^{(\ell)})"),
    ("delta^l", "(W^{l+1}.T @ delta^{l+1}) * sigmoid_prime(z^l)"),
])
def test_the_hidden_layer_rule_is_right_at_every_hidden_layer_and_left_out_at_the_output(wrt, text):
    result = check(derivation(SIGMOID), wrt, text)
    assert result.equal, result.report()
    assert verdicts(result) == {1: True, 2: True, 3: None}
    note = result.layers[2].note
    assert "does not apply (the output layer)" in note and "would be layer 4" in note and "there δ3 = " in note


def test_the_weight_rule_holds_at_every_layer_with_a0_the_input():
    for wrt, text in ((r"\frac{\partial L}{\partial W^l}", r"\delta^l (a^{l-1})^T"),
                      ("dL/dW_l", "delta_l @ h_{l-1}.T"), ("b^l", r"\delta^l")):
        result = check(derivation(SIGMOID), wrt, text)
        assert verdicts(result) == {1: True, 2: True, 3: True}, result.report()
    # the same rule in the batch conventions
    assert verdicts(check(derivation(SIGMOID), "W^l", "Delta^l @ A^{l-1}.T", "columns")) == {1: True, 2: True, 3: True}
    assert verdicts(check(derivation(MIXED), "Delta^l", "(Delta^{l+1} @ W^{l+1}) * (Z^l > 0)", "rows")) == {
        1: True, 2: False, 3: None}


def test_a_rule_wrong_at_one_layer_names_that_layer_and_why(capsys):
    result = check(derivation(MIXED), "delta^l", r"((W^{l+1})^T \delta^{l+1}) \odot relu'(z^l)")
    assert verdicts(result) == {1: True, 2: False, 3: None} and not result.equal
    assert "wrong activation derivative: layer 2 uses tanh" in result.layers[1].result.diagnosis
    assert main(["check", MIXED, "--wrt", "delta^l", "--grad", r"((W^{l+1})^T \delta^{l+1}) \odot relu'(z^l)"]) == 1
    out = capsys.readouterr().out
    assert "wrong at l = 2" in out and "l = 1: δ1: correct" in out and "l = 2: δ2: different" in out


def test_a_rule_wrong_everywhere_gets_each_layers_diagnosis():
    result = check(derivation(SIGMOID), "W^l", r"\delta^l a^{l-1}")
    assert verdicts(result) == {1: False, 2: False, 3: False}
    assert all("transpose" in v.result.diagnosis for v in result.layers)


def test_a_residual_layer_breaks_the_plain_rule_there_only():
    result = check(derivation(RESIDUAL), "delta^l", r"((W^{l+1})^T \delta^{l+1}) \odot f'(z^l)")
    assert verdicts(result) == {1: False, 2: True, 3: None}
    assert "missing the residual path" in result.layers[0].result.diagnosis


def test_L_is_the_last_layer():
    d = derivation(SIGMOID)
    assert check(d, r"\delta^L", r"(a^L - y) \odot \sigma'(z^L)").equal       # Nielsen's BP1
    assert check(d, r"\delta^{L-1}", r"((W^L)^T \delta^L) \odot \sigma'(z^{L-1})").equal
    assert not check(d, r"\delta^L", r"(a^L - y) \odot \sigma'(z^{L-1})").equal


def test_a_rule_reaching_below_the_first_layer_is_left_out_there():
    result = check(derivation(SIGMOID), r"\delta^{l-1}", r"((W^l)^T \delta^l) \odot \sigma'(z^{l-1})")
    assert verdicts(result) == {1: None, 2: True, 3: True}
    assert "layers start at 1 (only a^0 = h^0 = x is layer 0)" in result.layers[0].note


@pytest.mark.parametrize("wrt, text, words", [
    ("delta2", r"(W^{l+1})^T \delta^{l+1}", "is a rule in the layer l"),
    ("W^{L+1}", "x", "would be layer 4, but this network's layers are 1 to 3"),
    (r"\delta^l", r"(W^{l+3})^T \delta^{l+3}", "applies at no layer of this network"),
])
def test_a_rule_that_cannot_be_checked_is_one_clear_error(wrt, text, words, capsys):
    with pytest.raises(ChainruleError, match=words):
        check(derivation(SIGMOID), wrt, text)
    assert main(["check", SIGMOID, "--wrt", wrt, "--grad", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chainrule: error: ") and len(err.strip().splitlines()) == 1


def test_a_file_may_hold_rules(tmp_path, capsys):
    path = tmp_path / "rules.tex"
    path.write_text("\\delta^L &= (a^L - y) \\odot \\sigma'(z^L) \\\\\n"
                    "\\delta^l &= ((W^{l+1})^T \\delta^{l+1}) \\odot \\sigma'(z^l) \\\\\n"
                    "\\frac{\\partial C}{\\partial W^l} &= \\delta^l (a^{l-1})^T\n")
    assert main(["check", SIGMOID, "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "line 2: " in out and "checked at l = 1, 2: correct wherever it applies" in out
    assert "checked at l = 1, 2, 3" in out


def test_andrew_ngs_notation_in_the_columns_convention():
    d = derivation(MIXED)
    for text in ("W^{[l+1]T} dZ^{[l+1]} * g^{[l]'}(Z^{[l]})", "(W^{[l+1]})^T dZ^{[l+1]} * g^{[l]}'(Z^{[l]})"):
        back = check(d, "dZ^{[l]}", text, "columns")
        assert verdicts(back) == {1: True, 2: True, 3: None}, back.report()
    assert verdicts(check(d, "dW^{[l]}", "dZ^{[l]} A^{[l-1]T}", "columns")) == {1: True, 2: True, 3: True}
    assert verdicts(check(d, "dW^{[l]}", "dZ^{[l]} A^{[l-1]}", "columns")) == {1: False, 2: False, 3: False}
    assert verdicts(check(d, "db^{[l]}", "np.sum(dZ^{[l]}, axis=1, keepdims=True)", "columns")) == {
        1: True, 2: True, 3: True}
