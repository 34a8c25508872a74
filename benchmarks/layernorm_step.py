"""Section 1c: one train step of a layer-norm network, 256-256 relu-layernorm-256 relu-10 softmax
cross-entropy, N = 256, float32, against hand-written NumPy, PyTorch eager and jax.jit.

As in section 1, every peer's loss and gradients are first compared with the hand-written step in
float64 on the same numbers; then medians over interleaved rounds.
"""
import sys

import numpy as np

import hand_numpy
import peers
from nets import available, emitted_step
from train_step import measure

SPEC = "256 -> 256 relu -> layernorm -> 256 relu -> 10 softmax ; cross_entropy"
LABEL = "256-256-layernorm-256-10 relu cross_entropy N=256"
BATCH = 256
SHAPES = {"W1": (256, 256), "b1": (256,), "gamma2": (256,), "beta2": (256,),
          "W3": (256, 256), "b3": (256,), "W4": (10, 256), "b4": (10,)}
PEERS = ("hand NumPy", "chainrule", "chainrule unchecked", "PyTorch", "jax.jit")


def make_params(dtype, seed=0) -> dict:
    """Scaled-normal weights, small biases, and γ, β near 1 and 0 (not exactly, so they count)."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in SHAPES.items():
        base = 1.0 if name.startswith("gamma") else 0.0
        scale = 1.0 / np.sqrt(shape[1]) if name.startswith("W") else 0.1
        params[name] = (base + rng.standard_normal(shape) * scale).astype(dtype)
    return params


def make_data(dtype, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((BATCH, 256)).astype(dtype), rng.integers(0, 10, size=BATCH)


def build_steps(dtype, params, X, T) -> tuple:
    makers = {
        "hand NumPy": lambda: (lambda: hand_numpy.layernorm_loss_and_grads(params, X, T)),
        "chainrule": lambda: emitted_step(SPEC, SHAPES, "emitted_layernorm", dtype, params, X, T),
        "chainrule unchecked": lambda: emitted_step(SPEC, SHAPES, "emitted_layernorm", dtype, params, X, T,
                                                    checked=False),
        "PyTorch": lambda: peers.make_torch_layernorm(params, X, T),
        "jax.jit": lambda: peers.make_jax_layernorm(params, X, T),
    }
    return available(makers)


def run(quick: bool) -> dict:
    rounds, target = (5, 0.02) if quick else (15, 0.05)
    X64, T = make_data(np.float64)
    params64 = make_params(np.float64)
    reference = hand_numpy.layernorm_loss_and_grads(params64, X64, T)

    def build(dtype):
        return build_steps(dtype, {k: v.astype(dtype) for k, v in params64.items()}, X64.astype(dtype), T)
    m = measure(LABEL, build, reference, ("float64", "float32"), rounds, target)
    print("  layer-norm step: done", file=sys.stderr, flush=True)
    return {"rows": m.rows(PEERS, net="layernorm", label=LABEL, dtype="float32"), "skipped": m.skipped,
            "mismatches": m.messages}
