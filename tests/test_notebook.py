"""chainrule notebook: the cells it writes, the file rules it follows, and a headless run of it."""
import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

from derive.errors import ChainruleError

nbformat = pytest.importorskip("nbformat", reason="chainrule notebook needs nbformat (pip install '.[notebook]')")

import codegen  # noqa: E402
import derive  # noqa: E402
from codegen.cli import main  # noqa: E402
from codegen.notebook import HEADER, SECTIONS, notebook, tomllib  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "generated" / "specs" / "digits.toml"
DROPOUT_BCE = "3 -> 4 tanh dropout=0.25 -> 1 sigmoid ; bce"


def cells(text: str) -> list:
    return nbformat.reads(text, as_version=4).cells


def by_id(nb_cells) -> dict:
    return {cell.id: cell for cell in nb_cells}


def execute(nb, path: Path, monkeypatch):
    """Run every cell in a fresh kernel whose `import derive` is this checkout's."""
    pytest.importorskip("nbclient", reason="running a notebook needs nbclient (pip install '.[notebook]')")
    pytest.importorskip("ipykernel", reason="running a notebook needs a kernel: ipykernel (pip install '.[notebook]')")
    from nbclient import NotebookClient
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # a busy shared machine: no threads fighting for the cores
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(path)}}).execute()
    return {cell.id: "".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells if cell.cell_type == "code"}


def test_cells_follow_the_derivation_and_the_module_and_the_file_is_deterministic():
    text = notebook("2 -> 3 relu -> 1 ; mse")
    assert text == notebook("2 -> 3 relu -> 1 ; mse")
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["chainrule"]["generated_by"] == "chainrule notebook"
    assert nb.cells[0].source.splitlines()[0] == HEADER
    # the Markdown notes, cut at their headings, in order and whole
    notes = [c.source for c in nb.cells if c.id.startswith("notes-")]
    assert [n.splitlines()[0] for n in notes] == [
        "# Gradients of the network 2 -> 3 relu -> 1", "## Notation", "## Definitions", "## One sample (column vectors)",
        "## A batch of N samples (the columns of X)"]
    d = derive.derive("2 -> 3 relu -> 1 ; mse")
    markdown = d.markdown(derive.check.accepted_names(d))
    assert "chainrule check --names lists the names it reads" in notes[0]
    assert "\n\n".join(notes) == markdown.strip("\n")
    # the module's sections, in order, are the module up to its __main__ demo
    module = codegen.generate("2 -> 3 relu -> 1 ; mse")
    code = [by_id(nb.cells)[cell_id].source for cell_id, *_ in SECTIONS]
    assert code[1].startswith("def forward(") and code[2].startswith("def _loss(") and code[3].startswith("# ---- optimizer")
    assert "\n\n\n".join(code) + "\n\n\n" == module[:module.index('if __name__ == "__main__":')]
    ids = [c.id for c in nb.cells]
    assert ids.index("module-training") < ids.index("gradcheck") < ids.index("training") < ids.index("plot") < ids.index("check")


def test_text_from_the_spec_lands_as_data(tmp_path):
    spec = tmp_path / "evil.toml"
    spec.write_text('name = "evil"\ndescription = """<script>alert(1)</script> $\\\\int$ \\"\\"\\"\n'
                    'import os"""\n[network]\ninputs = 2\nlayers = [{ units = 1, activation = "Sigmoid" }]\n'
                    'loss = "BCE"\n')
    nb = by_id(cells(notebook(str(spec))))
    intro = nb["intro"].source
    assert "<script>" not in intro and "&lt;script&gt;" in intro and "&#36;" in intro
    tree = ast.parse(nb["check"].source)  # the spec as a Python literal, read back exactly
    literal = ast.literal_eval(tree.body[0].value)
    assert literal == {**tomllib.loads(spec.read_text()), "name": "evil"}
    assert "import os" in literal["description"]


def test_a_bad_spec_or_one_a_notebook_cannot_write_as_python_fails_in_one_line(tmp_path, capsys):
    assert main(["notebook", "2 -> 1 ; nonsense", "-o", str(tmp_path / "bad.ipynb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chainrule: error: unknown loss 'nonsense'") and err.count("\n") == 1
    assert not (tmp_path / "bad.ipynb").exists()
    with pytest.raises(ChainruleError, match="cannot write as Python \\(a NumPy number"):
        notebook({"network": {"inputs": 2, "layers": [1], "loss": "mse"}, "optimizer": {"lr": np.float64(0.1)}})
    tupled = {"network": {"inputs": 2, "layers": [1], "loss": "mse"}, "optimizer": {"type": "adam", "betas": (0.8, 0.9)}}
    assert "'betas': (0.8, 0.9)" in by_id(cells(notebook(tupled)))["check"].source


def test_the_cli_writes_its_own_notebooks_and_refuses_others(tmp_path, capsys):
    out = tmp_path / "net.ipynb"
    assert main(["notebook", "2 -> 2 tanh -> 1 ; mse", "-o", str(out)]) == 0
    first = out.read_text()
    assert by_id(cells(first))["intro"].source.endswith(f"Regenerate with: chainrule notebook '2 -&gt; 2 tanh -&gt; 1 ; mse' -o {out}")
    assert main(["notebook", "2 -> 3 tanh -> 1 ; mse", "-o", str(out)]) == 0  # its own: overwritten
    assert out.read_text() != first
    theirs = tmp_path / "theirs.ipynb"
    theirs.write_text(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# mine")])))
    before = theirs.read_text()
    assert main(["notebook", "2 -> 1 ; mse", "-o", str(theirs)]) == 2
    assert "was not generated by chainrule" in capsys.readouterr().err and theirs.read_text() == before
    assert main(["notebook", "2 -> 1 ; mse", "-o", str(theirs), "--force"]) == 0
    assert cells(theirs.read_text())[0].source.startswith(HEADER)
    assert main(["notebook", "2 -> 1 ; mse", "-o", str(tmp_path / "net.json")]) == 2
    assert "a notebook's file name ends in .ipynb" in capsys.readouterr().err and not (tmp_path / "net.json").exists()
    assert main(["notebook", "2 -> 1 ; mse"]) == 0
    assert json.loads(capsys.readouterr().out)["metadata"]["chainrule"]["network"] == "2 -> 1 identity ; mse"


def test_the_digits_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    nb = nbformat.reads(notebook(str(DIGITS)), as_version=4)
    out = execute(nb, tmp_path, monkeypatch)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    error = float(re.search(r"largest relative error (\S+):", out["gradcheck"])[1])
    assert error < 1e-6 and "the gradients agree" in out["gradcheck"]
    accuracy = float(re.search(r"validation accuracy ([\d.]+)%", out["training"])[1])
    assert accuracy > 90  # scikit-learn's digits, 20 epochs of adam
    plot = by_id(nb.cells)["plot"].outputs
    assert [o.output_type for o in plot] == ["display_data"] and "image/png" in plot[0].data
    assert out["check"].startswith("dL/dW2: correct")
    assert "mistake:  sign: yours is the negative of the gradient" in out["check"]


def test_without_matplotlib_scikit_learn_or_chainrule_the_cells_still_run(tmp_path, monkeypatch):
    nb = nbformat.reads(notebook(DROPOUT_BCE), as_version=4)
    blocked = nbformat.v4.new_code_cell("import sys\nfor name in ('matplotlib', 'sklearn', 'derive'):\n"
                                        "    sys.modules[name] = None  # import name now fails")
    blocked.id = "blocked"
    nb.cells.insert(0, blocked)
    out = execute(nb, tmp_path, monkeypatch)
    assert "the gradients agree" in out["gradcheck"]
    assert re.search(r"validation accuracy [\d.]+%", out["training"])
    printed = out["plot"].splitlines()
    assert len(printed) == 20 and printed[0].startswith("epoch   1  loss ") and "validation loss" in printed[0]
    assert out["check"].startswith("chainrule is not installed in this kernel")


@pytest.mark.parametrize("spec", ["2 -> 1 ; mse", DROPOUT_BCE, "3 -> 3 tanh residual -> 3 relu residual -> 2 ; huber",
                                  "2 -> 3 [z**3] -> 2 softmax ; cross_entropy"])
def test_the_check_cells_example_is_right_and_its_slip_is_diagnosed(spec):
    source = by_id(cells(notebook(spec)))["check"].source
    assert ast.literal_eval(ast.parse(source).body[0].value) == spec
    mine, slipped = re.findall(r'r"([^"]+)"', source)
    wrt = re.search(r'check\(derivation, "(W\d+)", mine\)', source)[1]
    d = derive.derive(spec)
    assert wrt == f"W{len(d.network.layers)}" and slipped == "-" + mine
    assert derive.check(d, wrt, mine).equal
    assert "mistake:  sign" in derive.check(d, wrt, slipped).report()


def test_a_network_the_checker_does_not_read_gets_no_check_cell_and_says_why(monkeypatch):
    # the checker reads every layer kind there is now; one it would not read is played by residual
    monkeypatch.setattr("derive.check.checker._READ", ("dense", "layernorm", "activation"))
    nb = by_id(cells(notebook("4 -> 8 relu -> residual(8 tanh -> layernorm) -> 2 softmax ; cross_entropy")))
    assert "check" not in nb and "does not read this network's layer kinds yet" in nb["check-about"].source
    assert "def forward(" in nb["module-forward"].source and "gradcheck" in nb
