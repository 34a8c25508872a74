"""The spec's layer types, input forms and inline grammar: what they build and their one-line errors."""
import re

import pytest

import derive
from derive.ops.add import Residual
from derive.ops.dense import DenseLayer as Layer
from derive.ops.elementwise import ActivationLayer
from derive.ops.layernorm import LayerNormLayer as LayerNorm
from derive.spec import build

NET = "[network]\ninputs = {inputs}\nlayers = [{layers}]\nloss = 'mse'\n"


def toml(tmp_path, inputs="3", layers="{ units = 2 }"):
    path = tmp_path / "net.toml"
    path.write_text(NET.format(inputs=inputs, layers=layers), encoding="utf-8")
    return str(path)


def test_toml_inline_and_dict_build_the_same_tree(tmp_path):
    layers = ('{ units = 4, activation = "relu" }, { type = "layernorm", eps = 1e-3, affine = false }, '
              '{ type = "residual", layers = [ { type = "dense", units = 4, activation = "tanh" }, '
              '{ type = "activation", activation = "sigmoid" } ] }, { units = 2 }')
    from_toml = build(toml(tmp_path, "{ features = 3 }", layers))
    inline = build("3 -> 4 relu -> layernorm(eps=1e-3, affine=false) -> residual(4 tanh -> sigmoid) -> 2 ; mse")
    assert from_toml.layers == inline.layers
    assert [f.name for f in inline.activations] == ["relu", "tanh", "sigmoid", "identity"]
    dense, norm, block, _ = inline.layers
    assert isinstance(dense, Layer) and dense.units == 4
    assert norm == LayerNorm(4, 1e-3, False)
    assert isinstance(block, Residual) and isinstance(block.layers[1], ActivationLayer) and block.units == 4
    assert inline.widths == [3, 4, 4, 4, 2]


def test_numbering_by_position_and_path():
    d = derive.derive("3 -> 3 relu -> sigmoid -> residual(3 tanh -> residual(3)) -> 2 ; mse")
    assert d.network.param_names == ["W1", "b1", "W3_1", "b3_1", "W3_2_1", "b3_2_1", "W4", "b4"]
    q = d.sample.quantities
    assert (q["W3_2_1"].latex, q["W3_2_1"].text, q["delta3_1"].text) == ("W_{3.2.1}", "W3.2.1", "δ3.1")
    assert str(d.gradients["W3_1"]) == "delta3_1*a2.T"


def test_residual_shorthand_is_unchanged():
    """residual = true stays one layer (W2, one add) with the same steps as before blocks existed."""
    d = derive.derive("2 -> 2 tanh -> 2 relu residual -> 1 ; mse")
    assert d.network.param_names == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert [s.target.key for s in d.sample_steps if s.phase == "forward"] == ["z1", "a1", "z2", "a2", "z3", "yhat"]


@pytest.mark.parametrize("inputs, message", [
    ("{ channels = 1, height = 8, width = 8 }",
     "layer 1 (dense) takes vectors but its input is a 1×8×8 image; put a flatten layer before it"),
    ("{ channels = 2, length = 16 }", "layer 1 (dense) takes vectors but its input is a 2×16 signal; put a flatten layer"),
    # (a dense layer on { length, features } acts at every step: tests/test_sequence_dense.py)
    ("{ length = 12, vocab = 50 }", 'layer 1 (dense) takes features but its input is token ids; put { type = "embedding"'),
    ("{ features = 0 }", "inputs features must be a positive whole number, not 0"),
    ("{ channels = 1, hieght = 8, width = 8 }", "unknown key 'hieght' (did you mean 'height'?)"),
    ("{ channels = 1, width = 8 }", "inputs { channels, width } is not an input form; give a number of features"),
])
def test_input_forms(tmp_path, inputs, message):
    with pytest.raises(derive.ChainruleError, match=re.escape(message)):
        build(toml(tmp_path, inputs))


def test_vector_input_table_is_the_number(tmp_path):
    assert build(toml(tmp_path, "{ features = 3 }")) == build(toml(tmp_path, "3"))


@pytest.mark.parametrize("layers, message", [
    ('{ type = "layernrom" }', "layer 1: unknown layer type 'layernrom' (did you mean 'layernorm'?)"),
    ('{ type = "layernorm", esp = 0.1 }', "layer 1 (layernorm): unknown key 'esp' (did you mean 'eps'?)"),
    ('{ type = "layernorm", eps = 0 }', "layer 1 eps must be a number in"),
    ('{ type = "layernorm", affine = 1 }', "layer 1 affine must be true or false, not 1"),
    ('{ type = "activation" }', "layer 1 is an activation layer without an activation"),
    ('{ type = "activation", activation = "rleu" }', "did you mean 'relu'"),
    ('{ type = "activation", activation = "softmax" }, { units = 2 }', "layer 1: softmax is only supported on the output layer"),
    ('{ type = "residual", layers = [{ units = 2 }] }', "layer 1 (residual block) maps 3 to 2 features; its last layer must give 3"),
    ('{ type = "residual", layers = [{ units = 3 }, { type = "residual", layers = [{ units = 1 }] }] }',
     "layer 1.2 (residual block) maps 3 to 1 features"),
    ('{ type = "residual", layers = [{ unit = 3 }] }', "layer 1.1: unknown key 'unit' (did you mean 'units'?)"),
    ('{ type = "residual", layers = [] }', "layer 1 (residual) needs a non-empty list of layers"),
    ('{ type = "residual", layer = [] }', "unknown key 'layer' (did you mean 'layers'?)"),
    ('{ activation = "relu" }', "layer 1 has neither units nor type"),
    ('{ type = "activation", activation = "relu" }', "the network has no parameters to learn; add a dense layer"),
    ('{ type = 3 }', "layer 1: unknown layer type 3"),
])
def test_layer_mistakes_are_one_line(tmp_path, layers, message):
    with pytest.raises(derive.ChainruleError, match=re.escape(message)) as err:
        build(toml(tmp_path, layers=layers))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("spec, message", [
    ("3 -> layernorm(eps=x) -> 2 ; mse", "layer 1 eps must be a number in (0, 1] (torch's default is 1e-5), not 'x'"),
    ("3 -> layernorm(affine) -> 2 ; mse", "layer 1 argument 'affine' is not key=value"),
    ("3 -> residual(2) -> 2 ; mse", "layer 1 (residual block) maps 3 to 2"),
    ("3 -> residual(3 relu -> 3 tahn) -> 2 ; mse", "did you mean 'tanh'"),
    ("3 -> layrnorm -> 2 ; mse", "layer 1 'layrnorm' is not an activation or a layer kind (did you mean 'layernorm'?)"),
    ("3 -> residual -> 2 ; mse", "layer 1 'residual' needs its layers, like residual"),
    ("3 -> 4 relu -> layernorm -> 2 softmax ; cross_entropy", None),
    ("3 -> 4 -> relu -> 2 ; cross_entropy", "loss cross_entropy needs a softmax output layer"),
    ("3 -> 4 -> softmax ; cross_entropy", "loss cross_entropy needs a softmax output layer, not a layer of type activation"),
])
def test_inline_grammar(spec, message):
    if message is None:
        assert [layer.kind for layer in build(spec).layers] == ["dense", "layernorm", "dense"]
        return
    with pytest.raises(derive.ChainruleError, match=re.escape(message)):
        build(spec)


def test_notes_describe_the_new_layers():
    d = derive.derive("3 -> 3 relu -> tanh -> residual(3 tanh -> 3) -> 2 ; mse")
    assert "Network: 3 -> 3 relu -> tanh -> residual(3 tanh -> 3) -> 2, trained on the mean squared error." in d.text()


def test_derive_command_prints_notes_the_checker_cannot_read(capsys):
    from codegen.cli import main
    assert main(["derive", "3 -> 3 relu -> tanh -> residual(3 tanh -> 3) -> 2 ; mse"]) == 0
    out = capsys.readouterr().out
    assert "residual(3 tanh -> 3)" in out and "Checking your own derivation" not in out


def test_checker_refuses_other_layers_in_one_line(monkeypatch):
    from derive.check.checker import Checker
    # the checker reads every layer kind there is now; one it would not read is played by activation
    monkeypatch.setattr("derive.check.checker._READ", ("dense", "layernorm", "residual"))
    with pytest.raises(derive.ChainruleError,
                       match=r'reads networks of dense, layernorm, activation and attention layers and residual blocks '
                             r'of them \(after an embedding and a position table, or not\), and layer 2 has type = '
                             r'"activation"'):
        Checker(derive.derive("3 -> 3 relu -> tanh -> 2 ; mse"))
