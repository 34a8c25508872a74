"""The adding problem: a many-to-one task whose answer is known, that an LSTM learns and a plain RNN
struggles with as the sequences grow, and the per-step gradient norms ‖∂L/∂h_t‖ that show why.

    python examples/adding_problem/adding.py [--plot gradients.png]

Each sequence has T steps of two features: a random value in [0, 1) and a marker, 1 at two steps (one
in each half) and 0 elsewhere; the target is the sum of the two marked values. Predicting the mean
(1.0) scores a mean squared error of 1/6 ≈ 0.167, so a network below it has found the markers.

For each cell (rnn with tanh, lstm) and each T (--lengths), the script builds the spec (a recurrent
layer that keeps its last state, then one linear output; mse; Adam), derives it and generates its NumPy
module with codegen.generate, trains it, and prints the test loss before and after training and the
norm of ∂L/∂h_t at some steps t of a test batch. ∂L/∂h_t comes from the emitted backward loop itself
(``_recurrent_backward``): given W_hh in place of the input weights, the input's gradient it returns at
step t is W_hhᵀ δ_t = ∂L/∂h_(t-1) (for rnn and lstm, whose h_(t-1) reaches step t only through W_hh);
the script checks that the real run gives the module's own dL/dW_ih and that the stand-in's dL/dW_hh
is the real one.

What it shows: the RNN's gradient shrinks geometrically going back from t = T (the product of Jacobians
W_hhᵀ diag(1 - h_t²) of its notes), so the first marker's step hardly moves its weights and at the
larger T it stays near the 0.167 of guessing; the LSTM's cell-state path, multiplied by its forget gate
alone, keeps the gradient alive over the whole sequence once training opens that gate, and it learns
the task at both lengths. With --plot FILE.png (matplotlib) it draws ‖∂L/∂h_t‖ against t for each
cell and T, after training (solid) and at initialization (dashed).
"""
import argparse
import time
import types

import numpy as np
from threadpoolctl import threadpool_limits

from codegen.emit import generate
from derive import derive

GUESS = 1 / 6  # the mse of always answering 1.0, the mean of the sum of two U(0, 1) values
COLOURS = {"rnn": "tab:red", "lstm": "tab:blue"}  # the cells whose h_(t-1) reaches step t through W_hh alone


def spec(cell: str, length: int, hidden: int, lr: float, epochs: int) -> dict:
    """The network: T steps of (value, marker) -> the cell's last hidden state -> one linear output."""
    return {"name": f"adding_{cell}_{length}",
            "network": {"inputs": {"length": length, "features": 2}, "loss": "mse",
                        "layers": [{"type": cell, "hidden_size": hidden, "return_sequences": False}, {"units": 1}]},
            "optimizer": {"type": "adam", "lr": lr},
            "training": {"epochs": epochs, "batch_size": 32, "seed": 0, "clip_norm": 1.0}}


def emitted_module(network: dict):
    """The module chainrule emits for ``network``, imported from its source text."""
    module = types.ModuleType(network["name"])
    exec(compile(generate(derive(network)), f"<{network['name']}>", "exec"), module.__dict__)
    return module


def adding_data(n: int, length: int, rng):
    """(X (n, T, 2), targets (n, 1)): values and markers, the sum of the two marked values."""
    values = rng.uniform(0, 1, size=(n, length))
    markers = np.zeros((n, length))
    half = length // 2
    first, second = rng.integers(0, half, size=n), rng.integers(half, length, size=n)
    markers[np.arange(n), first] = markers[np.arange(n), second] = 1
    return np.stack([values, markers], axis=2), (values * markers).sum(axis=1, keepdims=True)


def hidden_gradients(module, cell: str, params, X, T):
    """‖∂L/∂h_t‖ for t = 1..T (the batch's Frobenius norm) from the emitted backward loop."""
    params, X, Y = module._checked(params, X, T)
    Y_hat, cache = module._forward(params, X)
    N, length = X.shape[0], module.INPUT_SHAPE[0]
    G = 2 / N * (Y_hat - Y) @ params["W2"]  # ∂L/∂h_T: the module's own step for dL/dH1 (mse, mean over N)
    saved, W_ih, W_hh = cache["H1_saved"], params["W_ih1"], params["W_hh1"]
    _, grads = module.loss_and_grads(params, X, T)
    real = module._recurrent_backward(cell, G, saved, W_ih, W_hh, False)
    assert np.allclose(real[1], grads["W_ih1"]), "∂L/∂h_T is not the module's"
    # saved is (cell, W, Z, ...): W = [W_x W_h b] the stacked weights and Z[t] = [x_t; h_(t-1); 1] their
    # operand; dX_t is W_xᵀ times step t's gate errors. With W_h in W_x's place (and h_(t-1) as the input,
    # only read for dW), dX_t is W_hᵀ times them: ∂L/∂h_(t-1), for rnn and lstm, whose h_(t-1) reaches
    # step t only through W_hh
    cell_, W, Z, *rest = saved
    F, H = W_ih.shape[1], W_hh.shape[1]
    W_h, Z_h = W[:, F:F + H], Z[:, F:]
    stand_in = (cell_, np.concatenate([W_h, W[:, F:]], axis=1), np.concatenate([Z_h[:, :H], Z_h], axis=1), *rest)
    back = module._recurrent_backward(cell, G, stand_in, np.zeros((W_ih.shape[0], H), W_ih.dtype), W_hh, False)
    assert np.allclose(back[2], real[2]), "the stand-in does not run the module's backward loop"
    earlier = back[0].reshape(N, length, H)  # ∂L/∂h_0, ..., ∂L/∂h_(T-1)
    dh = [earlier[:, t] for t in range(1, length)] + [G]  # ∂L/∂h_1, ..., ∂L/∂h_T
    return np.array([np.linalg.norm(g) for g in dh])


def run(cell: str, length: int, args):
    """Train one cell at one length: (test loss before, after, ‖∂L/∂h_t‖ at init, after, seconds)."""
    rng = np.random.default_rng(length)
    X, T = adding_data(args.samples, length, rng)
    X_test, T_test = adding_data(500, length, rng)
    module = emitted_module(spec(cell, length, args.hidden, args.lr, args.epochs))
    params = module.init_params(seed=0)
    before, norms_before = module.loss(params, X_test, T_test), hidden_gradients(module, cell, params, X_test, T_test)
    start = time.perf_counter()
    with threadpool_limits(1):  # a step's GEMMs are small: BLAS threads cost more than they save (far more on a busy machine)
        module.train(params, X, T, verbose=False)
    seconds = time.perf_counter() - start
    after, norms_after = module.loss(params, X_test, T_test), hidden_gradients(module, cell, params, X_test, T_test)
    return before, after, norms_before, norms_after, seconds


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lengths = sorted({length for _, length in results})
    fig, axes = plt.subplots(1, len(lengths), figsize=(5.5 * len(lengths), 4.2), layout="constrained", squeeze=False)
    for ax, length in zip(axes[0], lengths):
        for (cell, T), (_, after, init, trained, _) in results.items():
            if T == length:
                steps = np.arange(1, T + 1)
                ax.semilogy(steps, trained, color=COLOURS[cell], marker=".", label=f"{cell} trained (test mse {after:.3f})")
                ax.semilogy(steps, init, color=COLOURS[cell], linestyle="--", alpha=0.6, label=f"{cell} at initialization")
        ax.set_title(f"T = {length}")
        ax.set_xlabel("step t")
        ax.set_ylabel("‖∂L/∂h_t‖ (log scale)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("The adding problem: how much of the loss's gradient reaches each step")
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="10,40", help="sequence lengths T, comma-separated (default 10,40)")
    parser.add_argument("--cells", default="rnn,lstm", help="cells to train (default rnn,lstm)")
    parser.add_argument("--hidden", type=int, default=16, help="hidden units (default 16)")
    parser.add_argument("--samples", type=int, default=2000, help="training sequences (default 2000)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate (default 0.01)")
    parser.add_argument("--plot", metavar="FILE.png", help="draw ‖∂L/∂h_t‖ over t into FILE.png (needs matplotlib)")
    args = parser.parse_args(argv)
    cells = args.cells.split(",")
    if not set(cells) <= set(COLOURS):
        parser.error(f"--cells takes {' and '.join(COLOURS)} (a GRU's h_(t-1) also reaches step t directly), not {args.cells}")
    results = {}
    print(f"test mse of guessing 1.0: {GUESS:.3f}")
    for length in map(int, args.lengths.split(",")):
        for cell in cells:
            before, after, init, trained, seconds = results[cell, length] = run(cell, length, args)
            marks = sorted({1, length // 4 or 1, length // 2, length})
            shown = "  ".join(f"t={t}: {trained[t - 1]:.1e}" for t in marks)
            print(f"{cell:4s} T={length:3d}: test mse {before:.3f} -> {after:.3f} in {seconds:.1f}s;  "
                  f"trained ‖∂L/∂h_t‖ {shown};  h_1/h_T {trained[0] / trained[-1]:.1e}")
    if args.plot:
        plot(results, args.plot)
    return results


if __name__ == "__main__":
    main()
