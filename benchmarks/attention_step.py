"""Section 1e: one train step of a pre-norm transformer block (issue 14): token ids, embedding 64, learned
positions, residual(layernorm -> 4-head causal self-attention), residual(layernorm -> 256 gelu -> 64), a
softmax over 32 at every position, cross-entropy over N·T; N = 8, T = 64, float32. Against hand-written
NumPy, PyTorch eager (F.scaled_dot_product_attention) and jax.jit; the tracemalloc peak of one step of the
NumPy peers too (the (N, heads, T, T) attention weights are the largest arrays).

As in section 1 (``train_step.measure``), every peer's loss and gradients are first compared with the
hand-written step in float64 on the same numbers, in float64 and float32; then medians over interleaved rounds.
"""
import math
import sys

import numpy as np
from scipy.special import erf  # the hand-written gelu's (scikit-learn's dependency, installed with it)

import peers
from nets import available, emitted_step
from train_step import measure, numpy_peaks

N, T, V, E, HEADS, HIDDEN = 8, 64, 32, 64, 4, 256
SPEC = {"name": "attention_block", "network": {"inputs": {"length": T, "vocab": V}, "layers": [
    {"type": "embedding", "embedding_dim": E}, {"type": "positional"},
    {"type": "residual", "layers": [{"type": "layernorm"}, {"type": "attention", "num_heads": HEADS, "causal": True}]},
    {"type": "residual", "layers": [{"type": "layernorm"}, {"units": HIDDEN, "activation": "gelu"}, {"units": E}]},
    {"units": V, "activation": "softmax"}], "loss": "cross_entropy"}}
LABEL = f"pre-norm block T={T} E={E} heads={HEADS} ff={HIDDEN} gelu N={N}"
SHAPES = {"W1": (V, E), "P2": (T, E), "gamma3_1": (E,), "beta3_1": (E,), "W_in3_2": (3 * E, E), "b_in3_2": (3 * E,),
          "W_out3_2": (E, E), "b_out3_2": (E,), "gamma4_1": (E,), "beta4_1": (E,), "W4_2": (HIDDEN, E),
          "b4_2": (HIDDEN,), "W4_3": (E, HIDDEN), "b4_3": (E,), "W5": (V, E), "b5": (V,)}
PEERS = ("hand NumPy", "chainrule", "chainrule unchecked", "PyTorch", "jax.jit")
EPS = 1e-5


def make_params(dtype, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in SHAPES.items():
        base = 1.0 if name.startswith("gamma") else 0.0
        scale = 1.0 / np.sqrt(shape[-1]) if name.startswith("W") and name != "W1" else 0.1 if len(shape) == 1 else 1.0
        params[name] = (base + rng.standard_normal(shape) * scale).astype(dtype)
    return params


def make_data(seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, size=(N, T)), rng.integers(0, V, size=(N, T))


# -- hand-written NumPy -----------------------------------------------------------------------------

def _layernorm(x, gamma, beta):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    sigma = np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + EPS)
    xhat = xc / sigma
    return xhat * gamma + beta, (xhat, sigma)


def _layernorm_back(g, saved, gamma):
    xhat, sigma = saved
    gg = g * gamma
    dx = (gg - gg.mean(axis=-1, keepdims=True) - xhat * (gg * xhat).mean(axis=-1, keepdims=True)) / sigma
    return dx, (g * xhat).sum(axis=(0, 1)), g.sum(axis=(0, 1))


def hand_loss_and_grads(p, X, Y):
    """The block's loss and gradients, written out by hand: (N, T, E) arrays, heads as (N, h, T, d)."""
    d = E // HEADS
    a0 = p["W1"][X] + p["P2"]
    h1, ln1 = _layernorm(a0, p["gamma3_1"], p["beta3_1"])
    qkv = h1 @ p["W_in3_2"].T + p["b_in3_2"]
    q, k, v = (qkv[..., i * E:(i + 1) * E].reshape(N, T, HEADS, d).transpose(0, 2, 1, 3) for i in range(3))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
    s += np.where(np.triu(np.ones((T, T), bool), 1), -np.inf, 0).astype(s.dtype)
    a = np.exp(s - s.max(axis=-1, keepdims=True))
    a /= a.sum(axis=-1, keepdims=True)
    o = (a @ v).transpose(0, 2, 1, 3).reshape(N, T, E)
    a1 = a0 + o @ p["W_out3_2"].T + p["b_out3_2"]
    h2, ln2 = _layernorm(a1, p["gamma4_1"], p["beta4_1"])
    z = h2 @ p["W4_2"].T + p["b4_2"]
    cdf = 0.5 * (1 + erf(z / math.sqrt(2)))
    f = z * cdf
    a2 = a1 + f @ p["W4_3"].T + p["b4_3"]
    logits = a2 @ p["W5"].T + p["b5"]
    logits -= logits.max(axis=-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    n, t = np.arange(N)[:, None], np.arange(T)[None, :]
    loss = -logp[n, t, Y].mean()
    dlogits = np.exp(logp)
    dlogits[n, t, Y] -= 1
    dlogits /= N * T
    g = {"W5": dlogits.reshape(-1, V).T @ a2.reshape(-1, E), "b5": dlogits.sum(axis=(0, 1))}
    da2 = dlogits @ p["W5"]
    g["W4_3"], g["b4_3"] = da2.reshape(-1, E).T @ f.reshape(-1, HIDDEN), da2.sum(axis=(0, 1))
    dz = (da2 @ p["W4_3"]) * (cdf + z * np.exp(-z * z / 2) / math.sqrt(2 * math.pi))
    g["W4_2"], g["b4_2"] = dz.reshape(-1, HIDDEN).T @ h2.reshape(-1, E), dz.sum(axis=(0, 1))
    dh2, g["gamma4_1"], g["beta4_1"] = _layernorm_back(dz @ p["W4_2"], ln2, p["gamma4_1"])
    da1 = da2 + dh2
    g["W_out3_2"], g["b_out3_2"] = da1.reshape(-1, E).T @ o.reshape(-1, E), da1.sum(axis=(0, 1))
    do = (da1 @ p["W_out3_2"]).reshape(N, T, HEADS, d).transpose(0, 2, 1, 3)
    dv = a.transpose(0, 1, 3, 2) @ do
    da = do @ v.transpose(0, 1, 3, 2)
    ds = a * (da - (da * a).sum(axis=-1, keepdims=True)) / math.sqrt(d)
    dq, dk = ds @ k, ds.transpose(0, 1, 3, 2) @ q
    dqkv = np.concatenate([m.transpose(0, 2, 1, 3).reshape(N, T, E) for m in (dq, dk, dv)], axis=-1)
    g["W_in3_2"], g["b_in3_2"] = dqkv.reshape(-1, 3 * E).T @ h1.reshape(-1, E), dqkv.sum(axis=(0, 1))
    dh1, g["gamma3_1"], g["beta3_1"] = _layernorm_back(dqkv @ p["W_in3_2"], ln1, p["gamma3_1"])
    da0 = da1 + dh1
    g["P2"] = da0.sum(axis=0)
    g["W1"] = np.zeros_like(p["W1"])
    np.add.at(g["W1"], X.ravel(), da0.reshape(-1, E))
    return float(loss), g


# -- the peers ----------------------------------------------------------------------------------------

def torch_step(params, X, Y):
    torch = peers._import("torch")
    F = torch.nn.functional
    names = list(params)
    p = {n: torch.from_numpy(params[n]).requires_grad_(True) for n in names}
    x, y = torch.from_numpy(X), torch.from_numpy(Y).reshape(-1)

    def step():
        a0 = F.embedding(x, p["W1"]) + p["P2"]
        h = F.layer_norm(a0, (E,), p["gamma3_1"], p["beta3_1"], EPS)
        q, k, v = (m.reshape(N, T, HEADS, -1).transpose(1, 2)
                   for m in F.linear(h, p["W_in3_2"], p["b_in3_2"]).chunk(3, dim=-1))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(N, T, E)
        a1 = a0 + F.linear(o, p["W_out3_2"], p["b_out3_2"])
        h = F.layer_norm(a1, (E,), p["gamma4_1"], p["beta4_1"], EPS)
        a2 = a1 + F.linear(F.gelu(F.linear(h, p["W4_2"], p["b4_2"])), p["W4_3"], p["b4_3"])
        value = F.cross_entropy(F.linear(a2, p["W5"], p["b5"]).reshape(-1, V), y)
        grads = torch.autograd.grad(value, [p[n] for n in names])
        return value.item(), dict(zip(names, grads))
    return step


def jax_step(params, X, Y):
    peers._import("jax")
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    p = {k: jnp.asarray(v) for k, v in params.items()}
    x, y = jnp.asarray(X), jnp.asarray(Y)
    mask = jnp.asarray(np.triu(np.ones((T, T), bool), 1))

    def layernorm(a, gamma, beta):
        mu = a.mean(axis=-1, keepdims=True)
        return (a - mu) / jnp.sqrt(((a - mu) ** 2).mean(axis=-1, keepdims=True) + EPS) * gamma + beta

    def loss(p, x, y):
        a0 = p["W1"][x] + p["P2"]
        qkv = layernorm(a0, p["gamma3_1"], p["beta3_1"]) @ p["W_in3_2"].T + p["b_in3_2"]
        q, k, v = (qkv[..., i * E:(i + 1) * E].reshape(N, T, HEADS, -1).transpose(0, 2, 1, 3) for i in range(3))
        s = jnp.where(mask, -jnp.inf, q @ k.transpose(0, 1, 3, 2) / math.sqrt(E // HEADS))
        o = (jax.nn.softmax(s, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(N, T, E)
        a1 = a0 + o @ p["W_out3_2"].T + p["b_out3_2"]
        f = jax.nn.gelu(layernorm(a1, p["gamma4_1"], p["beta4_1"]) @ p["W4_2"].T + p["b4_2"], approximate=False)
        a2 = a1 + f @ p["W4_3"].T + p["b4_3"]
        logp = jax.nn.log_softmax(a2 @ p["W5"].T + p["b5"], axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[..., None], axis=-1))

    compiled = jax.jit(jax.value_and_grad(loss))
    return peers.jitted_step(compiled, p, x, y)


def build_steps(dtype, params, X, Y, only=None) -> tuple:
    makers = {
        "hand NumPy": lambda: (lambda: hand_loss_and_grads(params, X, Y)),
        "chainrule": lambda: emitted_step(SPEC, SHAPES, "emitted_attention", dtype, params, X, Y),
        "chainrule unchecked": lambda: emitted_step(SPEC, SHAPES, "emitted_attention", dtype, params, X, Y,
                                                    checked=False),
        "PyTorch": lambda: torch_step(params, X, Y),
        "jax.jit": lambda: jax_step(params, X, Y),
    }
    return available(makers, only)


def run(quick: bool) -> dict:
    rounds, target = (5, 0.02) if quick else (15, 0.05)
    X, Y = make_data()
    params64 = make_params(np.float64)
    reference = hand_loss_and_grads(params64, X, Y)

    def build(dtype):
        return build_steps(dtype, {k: v.astype(dtype) for k, v in params64.items()}, X, Y)
    m = measure(LABEL, build, reference, ("float64", "float32"), rounds, target)
    memory = numpy_peaks(m.steps)
    rows = [{**row, "peak_mib": memory.get(row["peer"])}
            for row in m.rows(PEERS, net="attention", label=LABEL, dtype="float32")]
    print("  attention step: done", file=sys.stderr, flush=True)
    return {"rows": rows, "skipped": m.skipped, "mismatches": m.messages}
