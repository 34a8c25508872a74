"""The recurrent examples run at tiny settings and learn: the adding problem (examples/adding_problem)
and the character-level language model (examples/char_lstm)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

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


def test_char_lstm_learns_the_reference_text_and_samples_from_its_alphabet(capsys):
    char_lstm = example("char_lstm/char_lstm.py")
    result = char_lstm.main(["--chars", "4000", "--epochs", "8", "--hidden", "16", "--length", "16", "--sample", "40"])
    (train_before, held_before), (train_after, held_after) = result["before"], result["after"]
    uniform = np.log(len(char_lstm.ALPHABET))  # an untrained model guesses about uniformly
    assert train_before == pytest.approx(uniform, abs=0.05) and held_before == pytest.approx(uniform, abs=0.05)
    assert train_after < train_before - 0.8 and held_after < held_before - 0.5
    assert len(result["sample"]) == 40 and set(result["sample"]) <= set(char_lstm.ALPHABET)
    out = capsys.readouterr().out
    assert "windows of 16 to train on" in out and f"training {train_before:.3f} -> {train_after:.3f}" in out


def test_the_language_model_text_is_the_python_reference_in_its_alphabet():
    char_lstm = example("char_lstm/char_lstm.py")
    text = char_lstm.reference_text(2000)
    assert len(text) == 2000 and set(text) <= set(char_lstm.ALPHABET)
    assert "statement" in text and "  \n" not in text and "***" not in text
