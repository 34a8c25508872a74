"""The character-level transformer example (examples/char_transformer.py) learns: after a few epochs its loss
on the training part and on the held-out last tenth of the text are below their unigram baselines."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "char_transformer.py"


def _example():
    spec = importlib.util.spec_from_file_location("char_transformer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_char_transformer_beats_the_unigram_baseline_on_the_text_it_never_trained_on(capsys):
    example = _example()
    result = example.main(epochs=4)
    for part in ("train", "held_out"):
        before, after, unigram = result[part]
        assert after < unigram < before, (part, result[part])  # an untrained model is worse than the frequencies
    assert result["held_out"][1] > result["train"][1]  # the held-out part is harder than the text it learned
    printed = capsys.readouterr().out
    assert "the last 86 held out" in printed and f"held-out  {result['held_out'][0]:.3f} -> " in printed
    assert result["sample"] in printed and len(result["sample"]) == example.LENGTH + 200


def test_the_unigram_baseline_is_the_cross_entropy_under_the_training_frequencies():
    example = _example()
    train, held = np.array([0, 0, 0, 1]), np.array([0, 2])  # add-one: p = (4, 2, 1) / 7
    assert example.unigram(train, held, 3) == pytest.approx(-(np.log(4 / 7) + np.log(1 / 7)) / 2)
