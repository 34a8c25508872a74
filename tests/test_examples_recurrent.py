"""The recurrent examples run at tiny settings and learn: the adding problem (examples/adding_problem)
(the character-level models are in test_examples_characters.py)."""
import importlib.util
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(path):
    spec = importlib.util.spec_from_file_location(Path(path).stem, EXAMPLES / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_adding_problem_learns_and_measures_the_gradient_reaching_each_step(tmp_path, capsys):
    adding = example("adding_problem/adding.py")
    results = adding.main(["--lengths", "6", "--samples", "256", "--epochs", "4", "--hidden", "6",
                           "--plot", str(tmp_path / "g.png")])
    out = capsys.readouterr().out
    for cell in ("rnn", "lstm"):
        before, after, init, trained, _ = results[cell, 6]
        assert after < before / 2, (cell, before, after)
        assert init.shape == trained.shape == (6,) and np.all(np.isfinite(trained)) and trained.min() > 0
        assert f"{cell:4s} T=  6: test mse {before:.3f} -> {after:.3f}" in out
    # at initialization the RNN's gradient shrinks going back from t = T (the product of its Jacobians)
    assert results["rnn", 6][2][0] < results["rnn", 6][2][-1] / 10
    assert (tmp_path / "g.png").stat().st_size > 10_000
