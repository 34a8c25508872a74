"""The hand-written NumPy baseline: what a careful person writes for one train step.

Layout as ``torch.nn.Linear``: ``Z = A @ W.T + b`` with samples as rows. The step does the
forward pass, the loss and every gradient, and no update. It works in place where that saves
a pass over memory (the activation overwrites its pre-activation; relu' and tanh' are taken
from the activation, so Z is never kept) and fuses softmax with cross-entropy.
"""
import numpy as np


def _activate(Z, hidden):
    """Apply the hidden activation to Z in place and return it."""
    if hidden == "relu":
        return np.maximum(Z, 0, out=Z)
    if hidden == "tanh":
        return np.tanh(Z, out=Z)
    raise ValueError(f"hand-written baseline has no activation {hidden!r}")


def _backprop_activation(dA, A, hidden):
    """dL/dZ from dL/dA in place, with the derivative read off the activation A = f(Z)."""
    if hidden == "relu":
        return np.multiply(dA, A > 0, out=dA)   # relu'(0) = 0, as PyTorch
    square = np.multiply(A, A)                  # tanh' = 1 - tanh**2
    np.subtract(1, square, out=square)
    return np.multiply(dA, square, out=dA)


def _loss_and_delta(out, T, loss):
    """The loss and dL/d(output pre-activation); overwrites ``out``."""
    N = out.shape[0]
    if loss == "mse":
        residual = np.subtract(out, T, out=out)
        value = float(np.vdot(residual, residual)) / residual.size
        residual *= 2 / residual.size
        return value, residual
    if loss == "cross_entropy":
        rows = np.arange(N)
        out -= out.max(axis=1, keepdims=True)      # log-sum-exp shift: exp never overflows
        target_logit = out[rows, T]
        np.exp(out, out=out)
        total = out.sum(axis=1, keepdims=True)
        value = float(np.log(total).sum() - target_logit.sum()) / N
        out /= total                               # softmax
        out[rows, T] -= 1                          # softmax minus one-hot
        out /= N
        return value, out
    raise ValueError(f"hand-written baseline has no loss {loss!r}")


def loss_and_grads(params, X, T, hidden="relu", loss="cross_entropy"):
    """One train step without the update: ``(loss, {"W1": dL/dW1, "b1": ..., ...})``."""
    depth = len(params) // 2
    activations = [X]
    A = X
    for l in range(1, depth):
        Z = A @ params[f"W{l}"].T
        Z += params[f"b{l}"]
        A = _activate(Z, hidden)
        activations.append(A)
    out = A @ params[f"W{depth}"].T
    out += params[f"b{depth}"]
    value, delta = _loss_and_delta(out, T, loss)
    grads = {}
    for l in range(depth, 0, -1):
        A_prev = activations[l - 1]
        grads[f"W{l}"] = delta.T @ A_prev
        grads[f"b{l}"] = delta.sum(axis=0)
        if l > 1:
            delta = _backprop_activation(delta @ params[f"W{l}"], A_prev, hidden)
    return value, grads


def matmul_shapes(widths, batch):
    """The (left, right) operand shapes and transposes of every matmul in one step."""
    shapes = []
    depth = len(widths) - 1
    for l in range(1, depth + 1):
        fan_in, fan_out = widths[l - 1], widths[l]
        shapes.append(("forward", (batch, fan_in), (fan_out, fan_in), "A @ W.T"))
        shapes.append(("weight grad", (batch, fan_out), (batch, fan_in), "delta.T @ A"))
        if l > 1:
            shapes.append(("input grad", (batch, fan_out), (fan_out, fan_in), "delta @ W"))
    return shapes


def matmul_operands(widths, batch, dtype, seed=2) -> list:
    """(kind, left, right) NumPy operands of every matmul in one step."""
    rng = np.random.default_rng(seed)
    return [(kind, rng.standard_normal(a).astype(dtype), rng.standard_normal(b).astype(dtype))
            for _, a, b, kind in matmul_shapes(widths, batch)]


def matmuls_only(operands):
    """A function that runs just the step's matmuls, same shapes and layouts, for the bound.
    The operands may be NumPy arrays or torch tensors: the same code times either library's BLAS."""
    def run():
        for kind, left, right in operands:
            if kind == "A @ W.T":
                left @ right.T
            elif kind == "delta.T @ A":
                left.T @ right
            else:
                left @ right
    return run


def layernorm_loss_and_grads(params, X, T, eps=1e-5):
    """One train step of X -> W1 relu -> layer norm (gamma2, beta2) -> W3 relu -> W4 softmax,
    cross-entropy: ``(loss, grads)`` with the emitted module's parameter names.

    Layer norm as torch.nn.LayerNorm (biased variance, eps inside the square root); its backward is
    the compact form dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = gamma * dy, the
    means over each sample's features. In place where it saves a pass, as above.
    """
    W1, b1, gamma, beta = params["W1"], params["b1"], params["gamma2"], params["beta2"]
    W3, b3, W4, b4 = params["W3"], params["b3"], params["W4"], params["b4"]
    A1 = X @ W1.T
    A1 += b1
    np.maximum(A1, 0, out=A1)
    xhat = A1 - A1.mean(axis=1, keepdims=True)
    rstd = 1 / np.sqrt(np.einsum("ij,ij->i", xhat, xhat)[:, None] / xhat.shape[1] + eps)
    xhat *= rstd
    A2 = xhat * gamma
    A2 += beta
    A3 = A2 @ W3.T
    A3 += b3
    np.maximum(A3, 0, out=A3)
    out = A3 @ W4.T
    out += b4
    value, delta = _loss_and_delta(out, T, "cross_entropy")
    grads = {"W4": delta.T @ A3, "b4": delta.sum(axis=0)}
    delta = _backprop_activation(delta @ W4, A3, "relu")
    grads["W3"], grads["b3"] = delta.T @ A2, delta.sum(axis=0)
    dA2 = delta @ W3
    grads["gamma2"], grads["beta2"] = np.einsum("ij,ij->j", dA2, xhat), dA2.sum(axis=0)
    g = np.multiply(dA2, gamma, out=dA2)
    dA1 = g - g.mean(axis=1, keepdims=True)
    dA1 -= xhat * (np.einsum("ij,ij->i", g, xhat)[:, None] / g.shape[1])
    dA1 *= rstd
    delta = _backprop_activation(dA1, A1, "relu")
    grads["W1"], grads["b1"] = delta.T @ X, delta.sum(axis=0)
    return value, {name: grads[name] for name in params}
