"""A character-level causal transformer trained with its emitted NumPy module on a text that ships with Python.

    python examples/characters/char_transformer.py [--chars 80000] [--epochs 10]

The text is the prose of the Python language reference that ships with Python (chartext.py), the first
--chars of it, the same the LSTM example reads. The network is the gallery's tiny transformer
(generated/specs/tiny_transformer.toml) with the text's 39 symbols as its vocabulary: embedding, learned
positions, one pre-norm block (4-head causal self-attention, gelu feed-forward), a final layer norm and a
softmax at every position, with cross-entropy over the next character at each of the T = 16 positions.
It trains on the windows but a held-out tenth (Adam at the spec's 3e-3, batches of 32), prints the loss on
both parts before and after training against the unigram baseline, then samples text one character at a
time from a held-out window.
"""
import tomllib
from pathlib import Path

from chartext import ALPHABET, arguments, run

SPEC = Path(__file__).resolve().parent.parent.parent / "generated" / "specs" / "tiny_transformer.toml"


def main(argv=None):
    args = arguments(__doc__).parse_args(argv)
    table = tomllib.loads(SPEC.read_text(encoding="utf-8"))
    table["name"] = "char_transformer"
    table["network"]["inputs"]["vocab"] = table["network"]["layers"][-1]["units"] = len(ALPHABET)
    table["training"] = {"epochs": 10, "batch_size": 32, "seed": 0}
    return run(table, args)


if __name__ == "__main__":
    main()
