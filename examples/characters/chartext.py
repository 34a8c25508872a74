"""The text and the helpers the character-level examples share (char_lstm.py, char_transformer.py).

The text is the prose of the Python language reference as the standard library ships it for help()
(``pydoc_data.topics``: "The "if" statement is used for conditional execution: ..."), its paragraphs
lower-cased and kept to 39 symbols (letters, space, newline and .,;:'"()-_*): no download.
"""
import argparse
import time
import types

import numpy as np
from threadpoolctl import threadpool_limits

from codegen.emit import generate
from derive import derive

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


def emitted_module(table: dict):
    """The module chainrule emits for the spec ``table``, imported from its source text."""
    module = types.ModuleType(table["name"])
    exec(compile(generate(derive(table)), f"<{table['name']}>", "exec"), module.__dict__)
    return module


def windows(ids, length: int):
    """(X, T): non-overlapping windows of length + 1 ids; T is X shifted by one (the next character)."""
    n = (len(ids) - 1) // length
    X = np.array([ids[i * length:(i + 1) * length] for i in range(n)])
    T = np.array([ids[i * length + 1:(i + 1) * length + 1] for i in range(n)])
    return X, T


def unigram(train, targets, vocab: int) -> float:
    """The loss per character of ``targets`` under the characters' frequencies in ``train``, add-one smoothed (a
    character the training part lacks costs log(N + V), not infinity): the best a model without context does."""
    p = (np.bincount(np.ravel(train), minlength=vocab) + 1) / (np.size(train) + vocab)
    return float(-np.mean(np.log(p[np.ravel(targets)])))


def sample(module, params, seed_ids, count: int, temperature: float, rng) -> str:
    """``count`` characters drawn one at a time from the model's distribution at the window's last step."""
    window, out = list(seed_ids), []
    vocab = len(ALPHABET)
    for _ in range(count):
        Y, _ = module.forward(params, np.array([window]))
        p = Y.reshape(-1, vocab)[-1].astype(np.float64) ** (1 / temperature)
        k = int(rng.choice(vocab, p=p / p.sum()))
        out.append(ALPHABET[k])
        window = window[1:] + [k]
    return "".join(out)


def arguments(doc: str) -> argparse.ArgumentParser:
    """The options both examples take (the text's length, the epochs, the sample)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=80000, help="characters of the text to use (default 80000)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the spec's, 10)")
    parser.add_argument("--sample", type=int, default=300, help="characters to sample (default 300)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    return parser


def run(table: dict, args) -> dict:
    """Train the spec ``table`` on the text's windows but a held-out tenth, print the loss before and after on
    both parts against the unigram baseline, and a sample that starts from a held-out window."""
    length = table["network"]["inputs"]["length"]
    assert table["network"]["inputs"]["vocab"] == len(ALPHABET), "the spec's vocab is the alphabet's size"
    table["training"]["epochs"] = args.epochs or table["training"]["epochs"]
    text = reference_text(args.chars)
    X, T = windows([ALPHABET.index(c) for c in text], length)
    held = len(X) // 10
    X_train, T_train, X_val, T_val = X[held:], T[held:], X[:held], T[:held]
    print(f"{len(text)} characters of the Python language reference: {len(X_train)} windows of "
          f"{length} to train on, {held} held out")
    module = emitted_module(table)
    params = module.init_params(seed=0)
    before = module.loss(params, X_train, T_train), module.loss(params, X_val, T_val)
    start = time.perf_counter()
    with threadpool_limits(1):  # a step's GEMMs are small: BLAS threads cost more than they save (far more on a busy machine)
        history = module.train(params, X_train, T_train, verbose=False)
    seconds = time.perf_counter() - start
    after = module.loss(params, X_train, T_train), module.loss(params, X_val, T_val)
    base = unigram(T_train, T_train, len(ALPHABET)), unigram(T_train, T_val, len(ALPHABET))
    print(f"loss in nats per character after {len(history['loss'])} epochs in {seconds:.1f}s (uniform guessing is "
          f"ln {len(ALPHABET)} = {np.log(len(ALPHABET)):.2f}; the unigram baseline, the training part's character "
          f"frequencies, in parentheses):\n  training {before[0]:.3f} -> {after[0]:.3f} ({base[0]:.3f}), "
          f"held out {before[1]:.3f} -> {after[1]:.3f} ({base[1]:.3f})")
    seed = X_val[0].tolist()
    text_out = sample(module, params, seed, args.sample, args.temperature, np.random.default_rng(0))
    print(f"sample, after {''.join(ALPHABET[k] for k in seed)!r}:\n{text_out}")
    return {"before": before, "after": after, "unigram": base, "sample": text_out}
