"""The other implementations of one train step: PyTorch eager, HIPS autograd, jax.jit.

Each ``make_*`` takes the network, NumPy params and data, and returns ``step()`` that gives
``(loss, {name: NumPy gradient})``; building it converts the data once, outside the timing.
A peer that is not installed raises ``Unavailable``; nothing is installed here.
"""
import numpy as np

from nets import Unavailable


def _import(name):
    try:
        return __import__(name)
    except ImportError:
        raise Unavailable(f"{name} is not installed here; skipped") from None


def jitted_step(compiled, *args):
    """A step calling ``compiled`` (a jax.jit of value_and_grad) on ``args`` that waits for the gradients: jax
    returns before its work is done, so a timing would otherwise stop early."""
    import jax

    def step():
        value, grads = compiled(*args)
        jax.block_until_ready(grads)
        return value, grads
    return step


def versions() -> dict:
    """The peers' versions, or None where missing."""
    from importlib.metadata import PackageNotFoundError, version
    found = {}
    for name, distribution in (("torch", "torch"), ("autograd", "autograd"), ("jax", "jax"),
                               ("sklearn", "scikit-learn")):
        try:
            found[name] = version(distribution)
        except PackageNotFoundError:
            found[name] = None
    return found


# -- PyTorch eager ------------------------------------------------------------------------------
def make_torch(net, params, X, T):
    torch = _import("torch")
    F = torch.nn.functional
    act = {"relu": torch.relu, "tanh": torch.tanh}[net.hidden]
    names = list(params)
    leaves = [torch.from_numpy(params[n]).requires_grad_(True) for n in names]
    x = torch.from_numpy(X)
    t = torch.from_numpy(T).long() if net.loss == "cross_entropy" else torch.from_numpy(T)
    depth = len(names) // 2
    criterion = F.cross_entropy if net.loss == "cross_entropy" else F.mse_loss

    def step():
        a = x
        for l in range(depth - 1):
            a = act(F.linear(a, leaves[2 * l], leaves[2 * l + 1]))
        out = F.linear(a, leaves[-2], leaves[-1])
        value = criterion(out, t)
        grads = torch.autograd.grad(value, leaves)
        return value.item(), dict(zip(names, grads))
    return step


def torch_operands(operands) -> list:
    """hand_numpy.matmul_operands as torch tensors sharing their memory, to time PyTorch's BLAS."""
    torch = _import("torch")
    return [(kind, torch.from_numpy(left), torch.from_numpy(right)) for kind, left, right in operands]


# -- HIPS autograd ------------------------------------------------------------------------------
def make_autograd(net, params, X, T):
    _import("autograd")
    import autograd
    import autograd.numpy as anp
    act = {"relu": lambda z: anp.maximum(z, 0.0), "tanh": anp.tanh}[net.hidden]
    depth = len(params) // 2
    onehot = None
    if net.loss == "cross_entropy":
        onehot = np.zeros((X.shape[0], net.widths[-1]), X.dtype)
        onehot[np.arange(X.shape[0]), T] = 1

    def loss(p):
        a = X
        for l in range(1, depth):
            a = act(anp.dot(a, p[f"W{l}"].T) + p[f"b{l}"])
        out = anp.dot(a, p[f"W{depth}"].T) + p[f"b{depth}"]
        if net.loss == "mse":
            return anp.mean((out - T) ** 2)
        shifted = out - anp.max(out, axis=1, keepdims=True)
        log_probs = shifted - anp.log(anp.sum(anp.exp(shifted), axis=1, keepdims=True))
        return -anp.sum(log_probs * onehot) / X.shape[0]

    value_and_grad = autograd.value_and_grad(loss)

    def step():
        return value_and_grad(params)
    return step


# -- JAX ----------------------------------------------------------------------------------------
def make_jax(net, params, X, T):
    _import("jax")
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)   # float64 peers must stay float64
    act = {"relu": jax.nn.relu, "tanh": jnp.tanh}[net.hidden]
    depth = len(params) // 2
    p = {k: jnp.asarray(v) for k, v in params.items()}
    x = jnp.asarray(X)
    t = jnp.asarray(T)

    def loss(p, x, t):
        a = x
        for l in range(1, depth):
            a = act(a @ p[f"W{l}"].T + p[f"b{l}"])
        out = a @ p[f"W{depth}"].T + p[f"b{depth}"]
        if net.loss == "mse":
            return jnp.mean((out - t) ** 2)
        log_probs = jax.nn.log_softmax(out, axis=1)
        return -jnp.mean(jnp.take_along_axis(log_probs, t[:, None], axis=1))

    compiled = jax.jit(jax.value_and_grad(loss))
    return jitted_step(compiled, p, x, t)


# -- the layer-norm network (hand_numpy.layernorm_loss_and_grads) -------------------------------
def make_torch_layernorm(params, X, T, eps=1e-5):
    torch = _import("torch")
    F = torch.nn.functional
    names = list(params)
    leaves = {n: torch.from_numpy(params[n]).requires_grad_(True) for n in names}
    x, t = torch.from_numpy(X), torch.from_numpy(T).long()

    def step():
        p = leaves
        a = torch.relu(F.linear(x, p["W1"], p["b1"]))
        a = F.layer_norm(a, a.shape[1:], p["gamma2"], p["beta2"], eps)
        a = torch.relu(F.linear(a, p["W3"], p["b3"]))
        value = F.cross_entropy(F.linear(a, p["W4"], p["b4"]), t)
        grads = torch.autograd.grad(value, [p[n] for n in names])
        return value.item(), dict(zip(names, grads))
    return step


def make_jax_layernorm(params, X, T, eps=1e-5):
    _import("jax")
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    p = {k: jnp.asarray(v) for k, v in params.items()}
    x, t = jnp.asarray(X), jnp.asarray(T)

    def loss(p, x, t):
        a = jax.nn.relu(x @ p["W1"].T + p["b1"])
        mean = a.mean(axis=1, keepdims=True)
        var = ((a - mean) ** 2).mean(axis=1, keepdims=True)
        a = (a - mean) / jnp.sqrt(var + eps) * p["gamma2"] + p["beta2"]
        a = jax.nn.relu(a @ p["W3"].T + p["b3"])
        log_probs = jax.nn.log_softmax(a @ p["W4"].T + p["b4"], axis=1)
        return -jnp.mean(jnp.take_along_axis(log_probs, t[:, None], axis=1))

    compiled = jax.jit(jax.value_and_grad(loss))
    return jitted_step(compiled, p, x, t)


def to_numpy(grads) -> dict:
    """Any peer's gradients as NumPy arrays (outside the timing)."""
    out = {}
    for name, g in grads.items():
        if hasattr(g, "detach"):
            g = g.detach().numpy()
        out[name] = np.asarray(g)
    return out
