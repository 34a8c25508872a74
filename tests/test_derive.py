"""The derivation engine: specs, the reverse sweep and the printers (the proof: test_verify.py)."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

import derive
from derive.ops.activations import CATALOGUE as ACTIVATIONS
from derive.documents import label

ROOT = Path(__file__).resolve().parents[1]
SEEDS_SPEC = ROOT / "generated" / "specs" / "simple_nn.toml"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "codegen.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT)


# -- what the derivation says ------------------------------------------------------------------

def test_four_classic_backprop_equations_for_a_sigmoid_network():
    text = derive.derive("3 -> 4 sigmoid -> 4 sigmoid -> 2 sigmoid ; sse_half").text()
    assert "∂L/∂ŷ = ŷ - y" in text
    assert "δ3 = ∂L/∂ŷ ⊙ σ'(z3)" in text                    # delta^L = grad_a C (.) sigma'(z^L)
    assert "δ2 = (W3ᵀ δ3) ⊙ σ'(z2)" in text                 # delta^l = (W^{l+1}^T delta^{l+1}) (.) sigma'(z^l)
    assert "∂L/∂b2 = δ2" in text                            # dC/db^l = delta^l
    assert "∂L/∂W2 = δ2 a1ᵀ" in text                        # dC/dW^l = delta^l a^{l-1}^T
    assert "σ'(z) = σ(z) (1 - σ(z))" in text


def test_residual_adjoint_sums_both_paths():
    d = derive.derive("2 -> 3 tanh -> 3 tanh residual -> 1 ; mse")
    by_key = {s.target.key: s for s in d.sample_steps}
    assert set(by_key["dL_da1"].rhs.args) == {d.sample.quantities["W2"].symbol.T * d.sample.quantities["delta2"].symbol,
                                              d.sample.quantities["dL_da2"].symbol}


def test_seeds_network_gradients_and_batch_form():
    d = derive.derive(SEEDS_SPEC)
    q, b = d.sample.quantities, d.batch.quantities
    assert d.gradients["W1"] == q["delta1"].symbol * q["x"].symbol.T
    assert d.gradients["b2"] == q["delta2"].symbol
    assert d.batch_gradients["b1"] == b["Delta1"].symbol * sp.OneMatrix(derive.chain.N, 1)
    numbers = [s.number for s in d.all_steps()]
    assert numbers == list(range(1, len(numbers) + 1))


def test_printers_print_the_same_steps():
    d = derive.derive("2 -> 3 relu -> 2 sigmoid ; bce")
    tex, md, text = d.latex(), d.markdown(), d.text()
    for step in d.all_steps():
        assert f"\\label{{{label(step)}}}" in tex
        assert f"\\tag{{{step.number}}}" in md
        assert f"({step.number:>2})" in text
    # and the one equation of the fused step's derivation, after them
    assert tex.count("\\label{eq:fused") == 1
    assert tex.count("\\label{") == md.count("\\tag{") == len(d.all_steps()) + 1
    assert "\\tag{" not in tex


def test_derivation_grows_linearly_with_depth():
    sizes = []
    for depth in (4, 8, 16):
        spec = " -> ".join(["3"] + ["3 tanh"] * depth + ["1"]) + " ; mse"
        d = derive.derive(spec)
        sizes.append(sum(sp.count_ops(s.rhs) for s in d.all_steps()))
    assert sizes[2] - sizes[1] == pytest.approx(2 * (sizes[1] - sizes[0]), rel=0.05)


# -- specs and bad input --------------------------------------------------------------------------

def test_toml_inline_and_dict_specs_agree():
    toml_net = derive.load(SEEDS_SPEC)
    inline = derive.parse_inline("2 -> 2 relu -> 1 ; mse")
    as_dict = derive.from_dict({"network": {"inputs": 2, "layers": [{"units": 2, "activation": "relu"}, {"units": 1}],
                                            "loss": "mse"}})
    assert toml_net.layers == inline.layers == as_dict.layers
    assert toml_net.loss == inline.loss == as_dict.loss


@pytest.mark.parametrize("spec, message", [
    ("2 -> 2 relux -> 1 ; mse", "unknown activation at layer 1 'relux' (did you mean 'relu'?)"),
    ("2 -> 2 relu -> 1 ; mes", "unknown loss 'mes' (did you mean 'mse'?)"),
    ("2 -> 0 relu -> 1 ; mse", "layer 1 units must be a positive whole number"),
    ("2 -> 3 relu residual -> 1 ; mse", "layer 1 is residual but maps 2 to 3 units"),
    ("2 -> 2 relu -> 1", "has no loss after ';'"),
    ("2 -> 2 relu -> 1 sigmoid ; cross_entropy", "needs a softmax output layer"),
    ("2 -> 2 [z*foo(z)] -> 1 ; mse", "calls unknown function 'foo'"),
    ("2 -> 2 [w*z] -> 1 ; mse", "uses unknown name 'w'"),
    ("2 -> 2 leaky_relu(slop=0.1) -> 1 ; mse", "has no parameter 'slop'"),
    ("2 -> 2 relu -> 1 ; huber(delta=-1)", "must be a positive number"),
    ("2 -> 2 relu dropout=1.5 -> 1 ; mse", "dropout must be a probability in [0, 1)"),
    ("2 -> 2 relu -> 1 dropout=0.5 ; mse", "is the output layer and cannot have dropout"),
])
def test_bad_inline_specs_fail_in_one_line_with_exit_2(spec, message, tmp_path):
    out = tmp_path / "out.tex"
    result = cli("derive", spec, "--format", "tex", "-o", str(out))
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("text, message", [
    ("name = 'x'\n[network\ninputs = 2", "is not valid TOML"),
    ("[network]\ninputs = 2\nlayers = [{ units = 1 }]\nloss = 'mse'\nlayer = 3", "unknown key 'layer' (did you mean 'layers'?)"),
    ("[network]\ninputs = 2\nlayers = []\nloss = 'mse'", "layers must be a non-empty list"),
    ("[network]\ninputs = 2\nlayers = [{ units = 1, activation = { formula = 'z**2', name = '1x' } }]\nloss = 'mse'",
     "must be a plain identifier"),
])
def test_bad_toml_specs_fail_in_one_line(text, message, tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    result = cli("derive", str(spec))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("formula", [
    "__import__('os').system('touch {marker}')",
    "(lambda: __import__('os').system('touch {marker}'))()",
    "z.__class__.__bases__",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "exp(z) if open('{marker}', 'w') else z",
    "z" + "+z" * 400,
])
def test_hostile_formulas_only_fail_cleanly(formula, tmp_path):
    marker = tmp_path / "pwned"
    text = formula.format(marker=marker)
    spec = tmp_path / "evil.toml"
    spec.write_text(f"[network]\ninputs = 2\nlayers = [{{ units = 1, activation = {{ formula = {text!r} }} }}]\n"
                    f"loss = {{ formula = {text!r} }}\n".replace("'", '"') if "'" not in text else
                    f"[network]\ninputs = 2\nlayers = [{{ units = 1, activation = {{ formula = \"\"\"{text}\"\"\" }} }}]\nloss = 'mse'\n")
    result = cli("derive", str(spec))
    assert result.returncode == 2, result.stdout[-300:]
    assert "Traceback" not in result.stderr and result.stderr.startswith("chainrule: error: ")
    assert not marker.exists()


def test_unknown_key_in_a_layer_is_named():
    with pytest.raises(derive.ChainruleError, match="unknown key 'activaton'.*did you mean 'activation'"):
        derive.from_dict({"network": {"inputs": 2, "layers": [{"units": 1, "activaton": "relu"}], "loss": "mse"}})


# -- the command line -----------------------------------------------------------------------------

def test_cli_derive_writes_each_format(tmp_path):
    for fmt, marker in (("tex", r"\documentclass"), ("md", "$$"), ("text", "Backward pass")):
        out = tmp_path / f"seeds.{fmt}"
        result = cli("derive", str(SEEDS_SPEC), "--format", fmt, "-o", str(out))
        assert result.returncode == 0, result.stderr
        assert marker in out.read_text()


def test_cli_list_shows_derivatives_from_sympy():
    result = cli("list")
    assert result.returncode == 0
    assert "relu'(z) = 0 if z ≤ 0 else 1" in result.stdout
    assert "sse_half: ℓ = (ŷ - y)²/2;  ∂ℓ/∂ŷ = ŷ - y" in result.stdout


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is installed by .ci/run")
def test_gallery_latex_compiles_with_pdflatex(tmp_path):
    texs = sorted((ROOT / "generated").glob("*.tex"))
    assert texs, "the gallery has no .tex files"
    for tex in texs:
        result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", str(tex)],
                                cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, f"{tex.name}:\n" + "\n".join(re.findall(r"^!.*$", result.stdout, re.M))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_derivative_in_terms_of_the_output_agrees_with_sympy(name):
    from derive.ops.activations import A, Z, derivative_of_output, make_activation
    act = make_activation(name, "test")
    form = derivative_of_output(act)
    if name in ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "identity"):
        assert form is not None
    if form is None:
        return
    for point in (-2.0, -0.5, 0.0, 0.7, 1.9):
        expected = act.derivative.subs(Z, point)
        assert abs(sp.N(form.subs(A, act.definition.subs(Z, point)) - expected)) < 1e-12


def test_public_functions_are_not_shadowed_by_submodules():
    import codegen
    import codegen.emit  # noqa: F401  (importing a submodule must not replace the function)
    import derive.check.checker  # noqa: F401  (the package derive.check must stay callable)
    d = derive.derive("2 -> 2 relu -> 1 ; mse")
    assert derive.check(d, "W2", r"\delta_2 h_1^\top").equal
    assert codegen.generate(d).startswith("# Generated by chainrule")
