"""A character-level LSTM language model, trained on a text that ships with Python, that samples text.

    python examples/char_lstm/char_lstm.py [--chars 80000] [--epochs 10]

The text is the prose of the Python language reference as the standard library ships it for help()
(``pydoc_data.topics``: "The "if" statement is used for conditional execution: ..."), its paragraphs
lower-cased and kept to 39 symbols (letters, space, newline and .,;:'"()-_*), the first --chars of it.
The spec is char_lstm.toml beside this file: an embedding of the 39 symbols, an LSTM that keeps every
step's state, and a dense softmax layer at every step, with cross-entropy over the (N, T) next-character
targets (the mean over the N·T characters, as PyTorch's). The script derives it, generates its NumPy
module with codegen.generate, cuts the text into windows of T + 1 characters (a window's first T are
the input, its last T the targets), holds out a tenth of them, trains, and prints the loss (nats per
character) before and after training, on the training windows and on the held-out ones, then a sample:
starting from a window of the held-out text, the model's next-character distribution at the last step
is sampled (at --temperature) and the window moves on by one character.
"""
import argparse
import time
import tomllib
import types
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from codegen.emit import generate
from derive import derive

SPEC = Path(__file__).resolve().parent / "char_lstm.toml"
ALPHABET = " \nabcdefghijklmnopqrstuvwxyz.,;:'\"()-_*"


def reference_text(chars: int) -> str:
    """The first ``chars`` symbols of the language reference's prose paragraphs (no headings, no code)."""
    from pydoc_data.topics import topics
    paragraphs = []
    for key in sorted(topics):
        lines, prose = topics[key].splitlines() + [""], []
        for line, after in zip(lines, lines[1:] + [""]):
            rule = line.strip() and set(line.strip()) <= set("*=-~^")
            heading = after.strip() and set(after.strip()) <= set("*=-~^")
            if not line.strip() or line.startswith(" ") or rule or heading:  # a break, code, a heading
                if prose:
                    paragraphs.append(" ".join(prose))
                prose = []
            else:
                prose.append(line.strip())
    text = "\n".join(p for p in paragraphs if len(p) > 80).lower()
    return "".join(c for c in text if c in ALPHABET)[:chars]


def emitted_module(network: dict):
    """The module chainrule emits for ``network``, imported from its source text."""
    module = types.ModuleType(network["name"])
    exec(compile(generate(derive(network)), f"<{network['name']}>", "exec"), module.__dict__)
    return module


def windows(ids, length: int):
    """(X, T): non-overlapping windows of length + 1 ids; T is X shifted by one (the next character)."""
    n = (len(ids) - 1) // length
    X = np.array([ids[i * length:(i + 1) * length] for i in range(n)])
    T = np.array([ids[i * length + 1:(i + 1) * length + 1] for i in range(n)])
    return X, T


def sample(module, params, seed_ids, count: int, temperature: float, rng) -> str:
    """``count`` characters drawn one at a time from the model's distribution at the window's last step."""
    window, out = list(seed_ids), []
    vocab = len(ALPHABET)
    for _ in range(count):
        Y, _ = module.forward(params, np.array([window]))
        p = Y.reshape(-1, vocab)[-1] ** (1 / temperature)
        k = int(rng.choice(vocab, p=p / p.sum()))
        out.append(ALPHABET[k])
        window = window[1:] + [k]
    return "".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=80000, help="characters of the text to train on (default 80000)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the spec's, 10)")
    parser.add_argument("--hidden", type=int, help="the LSTM's hidden units (default: the spec's, 96)")
    parser.add_argument("--length", type=int, help="characters per window, T (default: the spec's, 32)")
    parser.add_argument("--sample", type=int, default=300, help="characters to sample (default 300)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    args = parser.parse_args(argv)
    spec = tomllib.loads(SPEC.read_text())
    net = spec["network"]
    assert net["inputs"]["vocab"] == len(ALPHABET), "char_lstm.toml's vocab is the alphabet's size"
    net["inputs"]["length"] = args.length or net["inputs"]["length"]
    net["layers"][1]["hidden_size"] = args.hidden or net["layers"][1]["hidden_size"]
    spec["training"]["epochs"] = args.epochs or spec["training"]["epochs"]
    text = reference_text(args.chars)
    X, T = windows([ALPHABET.index(c) for c in text], net["inputs"]["length"])
    held = len(X) // 10
    X_train, T_train, X_val, T_val = X[held:], T[held:], X[:held], T[:held]
    print(f"{len(text)} characters of the Python language reference: {len(X_train)} windows of "
          f"{net['inputs']['length']} to train on, {held} held out")
    module = emitted_module(spec)
    params = module.init_params(seed=0)
    before = module.loss(params, X_train, T_train), module.loss(params, X_val, T_val)
    start = time.perf_counter()
    with threadpool_limits(1):  # a step's GEMMs are small: BLAS threads cost more than they save (far more on a busy machine)
        history = module.train(params, X_train, T_train, verbose=False)
    seconds = time.perf_counter() - start
    after = module.loss(params, X_train, T_train), module.loss(params, X_val, T_val)
    print(f"loss (nats per character; uniform guessing is ln {len(ALPHABET)} = {np.log(len(ALPHABET)):.2f}): "
          f"training {before[0]:.3f} -> {after[0]:.3f}, held out {before[1]:.3f} -> {after[1]:.3f} "
          f"after {len(history['loss'])} epochs in {seconds:.1f}s")
    seed = X_val[0].tolist()
    text_out = sample(module, params, seed, args.sample, args.temperature, np.random.default_rng(0))
    print(f"sample, after {''.join(ALPHABET[k] for k in seed)!r}:\n{text_out}")
    return {"before": before, "after": after, "sample": text_out}


if __name__ == "__main__":
    main()
