"""Section 1f: one train step of a recurrent network (issue 13), float32: token ids (N = 16, T = 32, vocab 32)
embedded to 16 features, an LSTM, GRU or plain RNN of 64 units, a dense layer to 32 classes and softmax
cross-entropy; against hand-written NumPy BPTT (hand_rnn.py), PyTorch eager (nn.Embedding, nn.LSTM /
nn.GRU / nn.RNN, nn.Linear) and jax.jit (a lax.scan cell).

As in section 1, every peer's loss and gradients are first compared with the hand-written step in
float64 on the same numbers; then medians over interleaved rounds, every peer with the same threads
(run.py's --threads caps NumPy's BLAS and torch alike).
"""
import sys
from dataclasses import dataclass

import numpy as np

import hand_rnn
from nets import available, emitted_step
from peers import _import, jitted_step
from train_step import measure

VOCAB, EMBED, HIDDEN, LENGTH, BATCH, CLASSES = 32, 16, 64, 32, 16, 32
PEERS = ("hand NumPy", "chainrule", "chainrule unchecked", "PyTorch", "jax.jit")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


@dataclass(frozen=True)
class RecurrentNet:
    """embedding -> cell -> dense softmax; ``sequences``: the dense layer and the loss at every step."""
    key: str
    cell: str
    sequences: bool

    @property
    def label(self) -> str:
        head = f"dense {CLASSES} per step, CE over (N, T)" if self.sequences else f"h_T, dense {CLASSES}, CE over (N,)"
        return f"emb {EMBED} {self.cell} {HIDDEN} {head}, T={LENGTH} N={BATCH}"

    @property
    def spec(self) -> dict:
        layers = [{"type": "embedding", "embedding_dim": EMBED},
                  {"type": self.cell, "hidden_size": HIDDEN, "return_sequences": self.sequences},
                  {"units": CLASSES, "activation": "softmax"}]
        network = {"inputs": {"length": LENGTH, "vocab": VOCAB}, "layers": layers, "loss": "cross_entropy"}
        return {"name": self.key.replace("-", "_"), "network": network}

    @property
    def shapes(self) -> dict:
        rows = GATES[self.cell] * HIDDEN
        return {"W1": (VOCAB, EMBED), "W_ih2": (rows, EMBED), "W_hh2": (rows, HIDDEN), "b_ih2": (rows,),
                "b_hh2": (rows,), "W3": (CLASSES, HIDDEN), "b3": (CLASSES,)}


NETS = (RecurrentNet("char-lstm", "lstm", True), RecurrentNet("gru", "gru", False), RecurrentNet("rnn", "rnn", False))


def make_params(net, dtype, seed=0) -> dict:
    """torch's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for the cell, N(0, 1) for the embedding."""
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(HIDDEN)
    return {name: (rng.standard_normal(shape) if name == "W1" else rng.uniform(-bound, bound, shape)).astype(dtype)
            for name, shape in net.shapes.items()}


def make_data(net, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, VOCAB, size=(BATCH, LENGTH)),
            rng.integers(0, CLASSES, size=(BATCH, LENGTH) if net.sequences else BATCH))


def make_torch(net, params, X, T):
    torch = _import("torch")
    F = torch.nn.functional
    dtype = torch.float32 if params["W1"].dtype == np.float32 else torch.float64
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[net.cell]
    embed = torch.nn.Embedding(VOCAB, EMBED, dtype=dtype)
    cell = module(EMBED, HIDDEN, batch_first=True, dtype=dtype)
    dense = torch.nn.Linear(HIDDEN, CLASSES, dtype=dtype)
    names = {"W1": embed.weight, "W_ih2": cell.weight_ih_l0, "W_hh2": cell.weight_hh_l0, "b_ih2": cell.bias_ih_l0,
             "b_hh2": cell.bias_hh_l0, "W3": dense.weight, "b3": dense.bias}
    with torch.no_grad():
        for name, leaf in names.items():
            leaf.copy_(torch.from_numpy(params[name]))
    leaves = list(names.values())
    x, t = torch.from_numpy(X), torch.from_numpy(T).long()

    def step():
        out, _ = cell(embed(x))
        logits = dense(out if net.sequences else out[:, -1])
        value = F.cross_entropy(logits.reshape(-1, CLASSES), t.reshape(-1))
        grads = torch.autograd.grad(value, leaves)
        return value.item(), dict(zip(names, grads))
    return step


def make_jax(net, params, X, T):
    jax = _import("jax")
    import jax.numpy as jnp
    from jax import lax
    jax.config.update("jax_enable_x64", True)
    H = HIDDEN

    def cell(p, carry, gi):
        h, c = carry
        gh = h @ p["W_hh2"].T + p["b_hh2"]
        if net.cell == "rnn":
            h = jnp.tanh(gi + gh)
        elif net.cell == "lstm":
            a = gi + gh
            i, f, o = jax.nn.sigmoid(a[:, :H]), jax.nn.sigmoid(a[:, H:2 * H]), jax.nn.sigmoid(a[:, 3 * H:])
            c = f * c + i * jnp.tanh(a[:, 2 * H:3 * H])
            h = o * jnp.tanh(c)
        else:
            r = jax.nn.sigmoid(gi[:, :H] + gh[:, :H])
            z = jax.nn.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = jnp.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            h = (1 - z) * n + z * h
        return (h, c), h

    def loss(p, x, t):
        gi = p["W1"][x.T] @ p["W_ih2"].T + p["b_ih2"]     # (T, N, gates·H): every step's input projection
        zero = jnp.zeros((x.shape[0], H), gi.dtype)
        (h, _), hs = lax.scan(lambda carry, g: cell(p, carry, g), (zero, zero), gi)
        logits = (hs if net.sequences else h) @ p["W3"].T + p["b3"]
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        targets = t.T if net.sequences else t
        return -jnp.mean(jnp.take_along_axis(log_probs, targets[..., None], axis=-1))
    compiled = jax.jit(jax.value_and_grad(loss))
    p, x, t = ({k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(X), jnp.asarray(T))
    return jitted_step(compiled, p, x, t)


def build_steps(net, dtype, params, X, T, only=None) -> tuple:
    name = f"emitted_{net.key.replace('-', '_')}"
    makers = {
        "hand NumPy": lambda: (lambda: hand_rnn.loss_and_grads(net.cell, params, X, T, net.sequences)),
        "chainrule": lambda: emitted_step(net.spec, net.shapes, name, dtype, params, X, T),
        "chainrule unchecked": lambda: emitted_step(net.spec, net.shapes, name, dtype, params, X, T, checked=False),
        "PyTorch": lambda: make_torch(net, params, X, T),
        "jax.jit": lambda: make_jax(net, params, X, T),
    }
    return available(makers, only)


def run(quick: bool) -> dict:
    rounds, target = (5, 0.05) if quick else (15, 0.2)
    rows, skipped, mismatches = [], {}, []
    for net in NETS:
        X, T = make_data(net)
        params64 = make_params(net, np.float64)
        reference = hand_rnn.loss_and_grads(net.cell, params64, X, T, net.sequences)

        def build(dtype):
            return build_steps(net, dtype, {k: v.astype(dtype) for k, v in params64.items()}, X, T)
        m = measure(net.label, build, reference, ("float64", "float32"), rounds, target)
        for name, reason in m.skipped.items():
            skipped.setdefault(name, reason)
        mismatches += m.messages
        torch_s = m.times.get("PyTorch", {}).get("median_s")
        rows += [{**row, "ratio_to_torch": row["median_s"] / torch_s if torch_s else None}
                 for row in m.rows(PEERS, net=net.key, label=net.label, dtype="float32")]
        print(f"  recurrent step {net.key}: done", file=sys.stderr, flush=True)
    return {"rows": rows, "skipped": skipped, "mismatches": mismatches,
            "labels": [f"{net.key} = {net.label}" for net in NETS]}
