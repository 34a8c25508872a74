"""Section 1d: one train step of the CIFAR-sized CNN of issue 12, N = 64, 3×32×32, float32:
conv(3->16, k3, p1)-relu-maxpool2-conv(16->32, k3, p1)-relu-maxpool2-flatten-dense(2048->10), softmax
cross-entropy, against hand-written NumPy (hand_cnn.py), PyTorch eager and jax.jit.

As in section 1, every peer's loss and gradients are first compared with the hand-written step in
float64 on the same numbers; then medians over interleaved rounds, the bound set by the step's own
GEMMs (timed alone on contiguous operands), and the peak memory of one step (tracemalloc).
"""
import sys

import numpy as np

import hand_cnn
from nets import available, emitted_step
from peers import _import, jitted_step
from train_step import measure, numpy_peaks

SPEC = ("3x32x32 -> conv2d(out_channels=16, kernel_size=3, padding=1, activation=relu) -> maxpool2d(kernel_size=2) "
        "-> conv2d(out_channels=32, kernel_size=3, padding=1, activation=relu) -> maxpool2d(kernel_size=2) -> flatten "
        "-> 10 softmax ; cross_entropy")
LABEL = "CIFAR CNN 3x32x32 c16-pool-c32-pool-fc10 N=64"
BATCH = 64
SHAPES = {"W1": (16, 3, 3, 3), "b1": (16,), "W3": (32, 16, 3, 3), "b3": (32,), "W6": (10, 2048), "b6": (10,)}
PEERS = ("hand NumPy", "chainrule", "chainrule unchecked", "PyTorch", "jax.jit")


def make_params(dtype, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in SHAPES.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = np.sqrt(2.0 / fan_in) if name.startswith("W") else 0.1
        params[name] = (rng.standard_normal(shape) * scale).astype(dtype)
    return params


def make_data(dtype, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((BATCH, 3, 32, 32)).astype(dtype), rng.integers(0, 10, size=BATCH)


def make_torch(params, X, T):
    torch = _import("torch")
    F = torch.nn.functional
    names = list(params)
    leaves = [torch.from_numpy(params[n]).requires_grad_(True) for n in names]
    x, t = torch.from_numpy(X), torch.from_numpy(T).long()

    def step():
        for leaf in leaves:
            leaf.grad = None
        p = dict(zip(names, leaves))
        a = F.max_pool2d(torch.relu(F.conv2d(x, p["W1"], p["b1"], padding=1)), 2)
        a = F.max_pool2d(torch.relu(F.conv2d(a, p["W3"], p["b3"], padding=1)), 2)
        loss = F.cross_entropy(a.flatten(1) @ p["W6"].T + p["b6"], t)
        loss.backward()
        return loss.item(), {n: leaf.grad for n, leaf in zip(names, leaves)}
    return step


def make_jax(params, X, T):
    jax = _import("jax")
    import jax.numpy as jnp
    from jax import lax
    jax.config.update("jax_enable_x64", True)

    def conv(a, W, b):
        out = lax.conv_general_dilated(a, W, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return out + b[None, :, None, None]

    def pool(a):
        return lax.reduce_window(a, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def loss(p, x, t):
        a = pool(jax.nn.relu(conv(x, p["W1"], p["b1"])))
        a = pool(jax.nn.relu(conv(a, p["W3"], p["b3"])))
        log_probs = jax.nn.log_softmax(a.reshape(len(x), -1) @ p["W6"].T + p["b6"], axis=1)
        return -jnp.mean(jnp.take_along_axis(log_probs, t[:, None], axis=1))
    compiled = jax.jit(jax.value_and_grad(loss))
    p, x, t = ({k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(X), jnp.asarray(T))
    return jitted_step(compiled, p, x, t)


def build_steps(dtype, params, X, T, only=None) -> tuple:
    makers = {
        "hand NumPy": lambda: (lambda: hand_cnn.loss_and_grads(params, X, T)),
        "chainrule": lambda: emitted_step(SPEC, SHAPES, "emitted_cnn", dtype, params, X, T),
        "chainrule unchecked": lambda: emitted_step(SPEC, SHAPES, "emitted_cnn", dtype, params, X, T,
                                                    checked=False),
        "PyTorch": lambda: make_torch(params, X, T),
        "jax.jit": lambda: make_jax(params, X, T),
    }
    return available(makers, only)


def run(quick: bool) -> dict:
    rounds, target = (5, 0.05) if quick else (15, 0.2)
    X64, T = make_data(np.float64)
    params64 = make_params(np.float64)
    reference = hand_cnn.loss_and_grads(params64, X64, T)
    params, X = {k: v.astype("float32") for k, v in params64.items()}, X64.astype("float32")

    def build(dtype):
        return build_steps(dtype, {k: v.astype(dtype) for k, v in params64.items()}, X64.astype(dtype), T)
    m = measure(LABEL, build, reference, ("float64", "float32"), rounds, target,
                {"GEMMs alone": hand_cnn.gemms(params, X)})
    bound = m.times["GEMMs alone"]["median_s"]
    memory = numpy_peaks(m.steps)
    rows = [{**row, "gemm_fraction": bound / row["median_s"], "peak_mib": memory.get(row["peer"])}
            for row in m.rows(PEERS, net="cnn", label=LABEL, dtype="float32")]
    print("  CNN step: done", file=sys.stderr, flush=True)
    return {"rows": rows, "skipped": m.skipped, "mismatches": m.messages, "gemm_s": bound}
