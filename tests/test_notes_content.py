"""The notes' content beyond the steps: the fused steps derived, the picture of the graph, the
general recursion (BP1-BP4), the worked example computed by the emitted code, and mish' in the
softplus's name. Each is checked against what it claims to show."""
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from codegen.worked import worked_example
from derive import derive
from derive.verify import _evaluate
from derive.fused import fused_node, stages
from derive.functions import Phi, SoftPlus, expand_named, sigma
from derive.recursion import instances, is_chain
from derive.picture import ELLIPSIS, MAX_COLUMNS, diagram, drawn_values, mermaid, passes_on, tikz


def _simplified_zero(matrix) -> bool:
    return all(sp.simplify(entry) == 0 for entry in matrix)


# a softmax at every step of a sequence (2 steps of 3 features) derives one step's K = 3 outputs
SEQUENCE_SOFTMAX = {"name": "steps", "network": {"inputs": {"length": 2, "features": 3}, "layers": [
    {"units": 3, "activation": "softmax"}], "loss": "cross_entropy"}}


@pytest.mark.parametrize("spec", ["3 -> 3 softmax ; cross_entropy", SEQUENCE_SOFTMAX], ids=["vector", "sequence"])
def test_softmax_cross_entropy_stages_equal_sympy_diff(spec):
    graph = derive(spec).sample.graph
    z = sp.Matrix(sp.symbols("z0:3", real=True))
    y = sp.Matrix(sp.symbols("y0:3", real=True))
    yhat = z.applyfunc(sp.exp) / sum(z.applyfunc(sp.exp))
    loss = sum(-y[k] * sp.log(yhat[k]) for k in range(3))
    exact = sp.Matrix([sp.diff(loss, zj) for zj in z])
    jacobian, steps = stages(graph, fused_node(graph), yhat=sp.ImmutableMatrix(yhat), y=sp.ImmutableMatrix(y))
    assert _simplified_zero(jacobian.doit() - yhat.jacobian(z))
    assert _simplified_zero(steps[0].doit() - exact)
    assert _simplified_zero(steps[1].doit() - exact)
    one_hot = {y[2]: 1 - y[0] - y[1]}
    assert _simplified_zero((steps[2].doit() - exact).subs(one_hot))
    assert not _simplified_zero(steps[2].doit() - exact)  # the last stage needs the condition


def test_sigmoid_bce_stages_equal_sympy_diff():
    graph = derive("3 -> 2 sigmoid ; bce").sample.graph
    z = sp.Matrix(sp.symbols("z0:2", real=True))
    y = sp.Matrix(sp.symbols("y0:2", real=True))
    yhat = z.applyfunc(lambda t: 1 / (1 + sp.exp(-t)))
    loss = sum(-(y[k] * sp.log(yhat[k]) + (1 - y[k]) * sp.log(1 - yhat[k])) for k in range(2))
    exact = sp.Matrix([sp.diff(loss, zj) for zj in z])
    jacobian, steps = stages(graph, fused_node(graph), yhat=sp.ImmutableMatrix(yhat), y=sp.ImmutableMatrix(y))
    assert jacobian is None
    for stage in steps:
        assert _simplified_zero(stage.doit() - exact)


GALLERY = sorted(Path(__file__).resolve().parent.parent.joinpath("generated", "specs").glob("*.toml"))


@pytest.mark.parametrize("spec", GALLERY, ids=lambda p: p.stem)
def test_picture_draws_the_graph_the_derivation_walks(spec):
    derivation = derive(str(spec))
    sweep = derivation.sample or derivation.batch  # batch norm has no one-sample form
    boxes, arrows = diagram(sweep)
    assert [b.key for b in boxes if b.kind != ELLIPSIS] and ELLIPSIS not in {b.key for b in boxes}
    assert sorted(b.key for b in boxes) == sorted(v.key for v in drawn_values(sweep.graph))
    passed = {n.output: n.inputs[0] for n in sweep.graph.nodes if passes_on(n)}
    edges = {(passed.get(v, v).key, n.output.key) for n in sweep.graph.nodes if not passes_on(n)
             for v in n.inputs if v.role != "buffer"}
    assert {(a.source, a.target) for a in arrows if not a.adjoint} == edges
    backward = {(a.target, a.source) for a in arrows if a.adjoint}
    assert backward <= edges and all(source not in ("x", "y") for source, _ in backward)
    assert mermaid(sweep).count("\n    n") == len(boxes) + len(arrows)


def test_text_notes_draw_the_chain_what_joins_it_and_the_way_back():
    text = derive(str(GALLERY[0].parent / "simple_nn.toml")).text()
    assert "    x → z₁ → a₁ → z₂ → ŷ → L\n    also into z₁: W₁, b₁; z₂: W₂, b₂; L: y\n" in text
    assert "    back: L ⇢ ŷ, ŷ ⇢ z₂ (δ₂), z₂ ⇢ a₁, z₂ ⇢ W₂, z₂ ⇢ b₂, a₁ ⇢ z₁ (δ₁), z₁ ⇢ W₁, z₁ ⇢ b₁\n" in text


def test_fused_loss_sends_the_adjoint_straight_to_z():
    _, arrows = diagram(derive("3 -> 2 tanh -> 1 sigmoid ; bce").sample)
    backward = {(a.source, a.target) for a in arrows if a.adjoint}
    assert ("L", "z2") in backward and ("L", "yhat") not in backward and ("yhat", "z2") not in backward


def test_deep_picture_elides_the_middle_layers():
    sweep = derive("3 -> " + " -> ".join(["3 tanh residual"] * 30) + " -> 1 ; mse").sample
    boxes, arrows = diagram(sweep)
    keys = {b.key for b in boxes}
    assert ELLIPSIS in keys and {"z1", "z31", "L"} <= keys and "z15" not in keys
    assert max(b.column for b in boxes) <= MAX_COLUMNS
    forward = {(a.source, a.target) for a in arrows if not a.adjoint}
    assert ("a1", ELLIPSIS) in forward and (ELLIPSIS, "z31") in forward


def _pdflatex(text: str, folder: Path) -> str:
    """The log of compiling ``text`` with pdflatex (asserting it compiled)."""
    (folder / "notes.tex").write_text(text, encoding="utf-8")
    run = subprocess.run(["pdflatex", "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error", "notes.tex"],
                         cwd=folder, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    return (folder / "notes.log").read_text(errors="replace")


DEEP = "3 -> " + " -> ".join(["3 tanh residual"] * 30) + " -> 1 ; mse"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is installed by .ci/run")
@pytest.mark.parametrize("spec", ["residual", "binary", DEEP], ids=["residual", "binary", "deep"])
def test_notes_with_the_picture_compile_and_the_picture_fits_the_page(spec, tmp_path):
    derivation = derive(str(GALLERY[0].parent / f"{spec}.toml") if spec.isidentifier() else spec)
    assert "Overfull" not in _pdflatex(derivation.latex(), tmp_path)
    head, _ = derivation.latex().split("\\begin{document}")
    picture = "\n".join(line for line in tikz(derivation.sample).splitlines() if "{center}" not in line)
    for preamble in (head, "\\documentclass{article}\n\\usepackage{amsmath,amssymb,tikz}\n"):  # 17 cm, 12 cm wide
        log = _pdflatex(preamble + "\\begin{document}\\newsavebox\\drawn\\sbox\\drawn{" + picture + "}"
                        "\\typeout{WIDTHS \\the\\wd\\drawn\\space\\the\\linewidth}\\end{document}", tmp_path)
        width, line = (float(w) for w in re.search(r"WIDTHS ([\d.]+)pt ([\d.]+)pt", log).groups())
        assert 0.3 * line < width <= line


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is installed by .ci/run")
def test_body_only_notes_in_a_host_without_tikz_say_what_the_picture_needs(tmp_path):
    body = derive(str(GALLERY[0].parent / "simple_nn.toml")).latex(body_only=True)
    (tmp_path / "body.tex").write_text(body, encoding="utf-8")
    (tmp_path / "notes.tex").write_text("\\documentclass{article}\n\\usepackage{amsmath,amssymb,longtable}\n"
                                        "\\begin{document}\n\\input{body}\n\\end{document}\n", encoding="utf-8")
    run = subprocess.run(["pdflatex", "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error", "notes.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    text = subprocess.run(["pdftotext", "notes.pdf", "-"], cwd=tmp_path, capture_output=True, text=True).stdout
    assert "The picture of the network needs the tikz package." in text


def _module(derivation):
    from codegen.emit import generate
    namespace = {}
    exec(compile(generate(derivation), "<test module>", "exec"), namespace)  # noqa: S102 - chainrule's own output
    return namespace


def test_worked_example_is_the_seeds_case_in_the_emitted_modules_numbers():
    derivation = derive(str(GALLERY[0].parent / "simple_nn.toml"))
    example = worked_example(derivation)
    module = _module(derivation)
    X, T = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0], [2.0]])
    assert np.array_equal(example.data["X"], X.T) and np.array_equal(example.data["Y"], T.T)
    params = module["init_params"](seed=example.seed)
    loss, grads = module["loss_and_grads"](params, X, T)
    by_key = {s.target.key: example.steps[s.number] for s in derivation.batch.steps if s.number in example.steps}
    assert set(by_key) == {s.target.key for s in derivation.batch.steps}  # every step has its numbers
    assert by_key["L"] == loss
    assert np.array_equal(by_key["Yhat"], module["forward"](params, X)[0].T)
    for name, grad in grads.items():
        assert np.array_equal(by_key[f"dL_d{name}"], grad.reshape(by_key[f"dL_d{name}"].shape))
        assert np.allclose(example.updated[name], example.params[name] - 0.01 * by_key[f"dL_d{name}"])
    assert np.abs(by_key["dL_dW1"]).sum(axis=1).all()  # no dead unit: every row of W1 gets a gradient


@pytest.mark.parametrize("spec", ["simple_nn", "sigmoid_sse", "residual"])
def test_worked_example_numbers_satisfy_every_step(spec):
    """Each step's right-hand side, evaluated on the example's numbers, gives the number printed for it."""
    derivation = derive(str(GALLERY[0].parent / f"{spec}.toml"))
    example = worked_example(derivation)
    quantities = derivation.batch.quantities
    values = {**{k: v for k, v in example.data.items()}, **example.params,
              **{s.target.key: example.steps[s.number] for s in derivation.batch.steps}}
    numbers = {quantities[k].symbol: sp.ImmutableMatrix(np.atleast_2d(v)) if quantities[k].shape else sp.Float(v)
               for k, v in values.items()}
    for step in derivation.batch.steps:
        got = np.array(sp.N(_evaluate(step.rhs, numbers, 2)).tolist(), dtype=float)
        expected = example.steps[step.number]
        assert np.allclose(got.reshape(np.shape(expected)), expected, rtol=1e-9, atol=1e-12), step.target.key


def test_worked_example_skips_a_network_too_big_to_print():
    assert worked_example(derive(str(GALLERY[0].parent / "binary.toml"))) is None  # 8 hidden units
    assert worked_example(derive("2 -> 2 relu -> 2 relu -> 2 relu -> 2 relu -> 1 ; mse")) is None  # 5 layers
    text = derive(str(GALLERY[0].parent / "binary.toml")).text(worked=None)
    assert "worked example" not in text


def _evaluated_steps(sweep, rng, one_hot: bool) -> dict:
    """Every quantity of ``sweep`` at a random point: the inputs drawn, each step evaluated in turn."""
    values = {}
    for q in sweep.quantities.values():
        if q.role in ("data", "param"):
            rows, cols = q.shape
            entries = rng.normal(size=(rows, cols))
            if one_hot and q.key == "y":
                entries = np.eye(rows)[:, :1]
            values[q.symbol] = sp.ImmutableMatrix(entries)
    for step in sweep.steps:
        value = _evaluate(step.rhs, values, 1)
        values[step.target.symbol] = value if step.target.shape else value[0, 0]
    return values


CHAINS = ["generated/specs/simple_nn.toml", "generated/specs/sigmoid_sse.toml",
          "3 -> 3 relu -> 3 softmax ; cross_entropy",
          "3 -> 2 tanh -> 1 sigmoid ; bce", "3 -> 2 -> 2 tanh -> 1 ; mse", "2 -> 3 softmax ; mse"]


@pytest.mark.parametrize("spec", CHAINS)
def test_each_bp_rule_instance_equals_its_step(spec):
    root = Path(__file__).resolve().parent.parent
    derivation = derive(str(root / spec) if spec.endswith(".toml") else spec)
    assert is_chain(derivation.network)
    values = _evaluated_steps(derivation.sample, np.random.default_rng(0), one_hot="softmax" in spec)
    found = instances(derivation)
    layers = len(derivation.network.layers)
    assert sorted((rule, layer) for rule, layer, _, _ in found) == sorted(
        [("BP1", layers)] + [("BP2", l) for l in range(1, layers)] + [(r, l) for r in ("BP3", "BP4")
                                                                        for l in range(1, layers + 1)])
    for rule, layer, step, rhs in found:
        got = np.array(sp.N(_evaluate(rhs, values, 1)).tolist(), dtype=float)
        want = np.array(sp.N(values[step.target.symbol]).tolist(), dtype=float)
        assert np.allclose(got, want, rtol=1e-10, atol=1e-12), (rule, layer)
    text = derivation.text()
    assert {rule for rule, _, _, _ in found} == {f"BP{k}" for k in range(1, 5) if f"BP{k}, " in text}
    assert ("δ_l = (W_(l+1)ᵀ δ_(l+1)) ⊙ f_l'(z_l)" in text) == (layers > 1)


@pytest.mark.parametrize("spec", ["generated/specs/residual.toml", "3 -> 3 relu dropout=0.5 -> 1 ; mse"])
def test_bp_rules_are_not_claimed_beyond_a_chain_of_dense_layers(spec):
    root = Path(__file__).resolve().parent.parent
    derivation = derive(str(root / spec) if spec.endswith(".toml") else spec)
    assert not is_chain(derivation.network)
    assert "BP1" not in derivation.text() and "BP1" not in derivation.markdown()


@pytest.mark.parametrize("kind", [sigma, SoftPlus, Phi], ids=lambda k: k.__name__)
def test_each_named_functions_prime_is_its_definitions_derivative(kind):
    z = sp.Symbol("z", real=True)
    assert sp.simplify(expand_named(kind.prime(z)) - sp.diff(kind.define(z), z)) == 0


def test_mish_derivative_is_printed_through_softplus_and_sigma():
    mish = derive(str(GALLERY[0].parent / "mish.toml")).network.activations[0]
    shown = mish.derivative_display()
    assert shown.has(SoftPlus) and shown.has(sigma) and shown.has(sp.sech)
    z = sp.Symbol("z", real=True)
    s = SoftPlus(z)
    assert sp.simplify(shown - (sp.tanh(s) + z * sigma(z) * sp.sech(s) ** 2)) == 0
    for point in (-2.0, 0.3, 1.7):
        assert abs(float(expand_named(shown).subs(mish.definition.free_symbols.pop(), point))
                   - float(mish.derivative.subs(mish.definition.free_symbols.pop(), point))) < 1e-12


def test_worked_example_is_left_out_where_the_module_gives_no_finite_numbers(recwarn):
    spec = {"network": {"inputs": 2, "layers": [{"units": 2, "activation": "sigmoid"}],
                        "loss": {"formula": "-y*log(yhat) + log(1-y)"}}}  # y = 1 makes log(1 - y) infinite
    assert worked_example(derive(spec)) is None
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_chainrule_derive_prints_the_worked_example(capsys):
    from codegen.cli import main
    assert main(["derive", str(GALLERY[0].parent / "simple_nn.toml"), "--format", "text"]) == 0
    text = capsys.readouterr().out
    assert "A worked example" in text and "X = [1 3; 2 4],   Y = [1 2]" in text
