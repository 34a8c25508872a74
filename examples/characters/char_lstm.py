"""A character-level LSTM language model, trained on a text that ships with Python, that samples text.

    python examples/characters/char_lstm.py [--chars 80000] [--epochs 10]

The text is the prose of the Python language reference that ships with Python (chartext.py), the first
--chars of it.
The spec is char_lstm.toml beside this file: an embedding of the 39 symbols, an LSTM that keeps every
step's state, and a dense softmax layer at every step, with cross-entropy over the (N, T) next-character
targets (the mean over the N·T characters, as PyTorch's). The script derives it, generates its NumPy
module with codegen.generate, cuts the text into windows of T + 1 characters (a window's first T are
the input, its last T the targets), holds out a tenth of them, trains, and prints the loss (nats per
character) before and after training, on the training windows and on the held-out ones, against the
unigram baseline (the cross-entropy under the training part's character frequencies), then a sample:
starting from a window of the held-out text, the model's next-character distribution at the last step
is sampled (at --temperature) and the window moves on by one character.
"""
import tomllib
from pathlib import Path

from chartext import arguments, run

SPEC = Path(__file__).resolve().parent / "char_lstm.toml"


def main(argv=None):
    parser = arguments(__doc__)
    parser.add_argument("--hidden", type=int, help="the LSTM's hidden units (default: the spec's, 96)")
    parser.add_argument("--length", type=int, help="characters per window, T (default: the spec's, 32)")
    args = parser.parse_args(argv)
    table = tomllib.loads(SPEC.read_text())
    net = table["network"]
    net["inputs"]["length"] = args.length or net["inputs"]["length"]
    net["layers"][1]["hidden_size"] = args.hidden or net["layers"][1]["hidden_size"]
    return run(table, args)


if __name__ == "__main__":
    main()
