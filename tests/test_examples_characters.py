"""The character-level examples (examples/characters) run at tiny settings and learn the Python language
reference: the LSTM and the causal transformer end below the unigram baseline, on the held-out text too."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

CHARACTERS = Path(__file__).resolve().parent.parent / "examples" / "characters"


@pytest.fixture
def example(monkeypatch):
    """Load examples/characters/NAME.py as its script does: with its directory (chartext.py) importable."""
    monkeypatch.syspath_prepend(str(CHARACTERS))

    def load(name):
        spec = importlib.util.spec_from_file_location(name, CHARACTERS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


def test_char_lstm_learns_the_reference_text_and_samples_from_its_alphabet(example, capsys):
    chartext = example("chartext")
    result = example("char_lstm").main(["--chars", "4000", "--epochs", "8", "--hidden", "16", "--length", "16",
                                        "--sample", "40"])
    (train_before, held_before), (train_after, held_after) = result["before"], result["after"]
    uniform = np.log(len(chartext.ALPHABET))  # an untrained model guesses about uniformly
    assert train_before == pytest.approx(uniform, abs=0.05) and held_before == pytest.approx(uniform, abs=0.05)
    assert train_after < train_before - 0.8 and held_after < held_before - 0.5
    assert len(result["sample"]) == 40 and set(result["sample"]) <= set(chartext.ALPHABET)
    out = capsys.readouterr().out
    assert "windows of 16 to train on" in out and f"training {train_before:.3f} -> {train_after:.3f}" in out


def test_char_transformer_beats_the_unigram_baseline_on_the_text_it_never_trained_on(example, capsys):
    chartext = example("chartext")
    result = example("char_transformer").main(["--chars", "8000", "--epochs", "3", "--sample", "50"])
    for part, (before, after, unigram) in enumerate(zip(result["before"], result["after"], result["unigram"])):
        assert after < unigram < before, (part, before, after, unigram)  # untrained it is worse than the frequencies
    assert result["after"][1] > result["after"][0]  # the held-out part is harder than the text it learned
    out = capsys.readouterr().out
    assert "windows of 16 to train on, 49 held out" in out
    assert f"held out {result['before'][1]:.3f} -> {result['after'][1]:.3f} ({result['unigram'][1]:.3f})" in out
    assert len(result["sample"]) == 50 and set(result["sample"]) <= set(chartext.ALPHABET)


def test_the_text_is_the_python_reference_in_its_alphabet(example):
    chartext = example("chartext")
    text = chartext.reference_text(2000)
    assert len(text) == 2000 and set(text) <= set(chartext.ALPHABET)
    assert "statement" in text and "  \n" not in text and "***" not in text


def test_the_unigram_baseline_is_the_cross_entropy_under_the_training_frequencies(example):
    chartext = example("chartext")
    train, held = np.array([0, 0, 0, 1]), np.array([0, 2])  # add-one: p = (4, 2, 1) / 7
    assert chartext.unigram(train, held, 3) == pytest.approx(-(np.log(4 / 7) + np.log(1 / 7)) / 2)
