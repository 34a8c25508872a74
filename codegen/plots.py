"""The plots of ``chainrule train --plot DIR`` (matplotlib, the optional extra ``chainrule[plot]``).

``figures(runs)`` takes ``[(label, history)]`` (one run, or two with ``--compare``; a history as
``codegen.train.fit`` returns it) and returns ``{name: Figure}``; ``write`` saves each as PNG and SVG.
Each run has one colour throughout; training is drawn solid, validation dashed.
"""
import io
from pathlib import Path

from derive.errors import ChainruleError

NAMES = ("loss", "accuracy", "learning_rate", "gradient_norms")
MARK = "chainrule train"  # in each file's metadata, so chainrule knows its own files when it rewrites them
RUN_COLOURS = ("tab:blue", "tab:orange")
RUN_STYLES = ("-", "--")


def require():
    """matplotlib with its file-only backend, or the one-line error saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ChainruleError("--plot needs matplotlib: pip install chainrule[plot]") from None
    matplotlib.use("Agg")


def _epochs(history):
    return range(1, len(history["loss"]) + 1)


def _axes(title, ylabel, log=False):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if log:
        ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    return fig, ax


def _log_ticks(ax, values):
    """Log-scale tick labels as plain numbers (0.3, 2, 1e-05), the minor ones only within a decade or two."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    values = [v for v in values if v > 0]
    narrow = values and max(values) / min(values) < 100
    ax.yaxis.set_minor_formatter(plain if narrow else NullFormatter())


def _legend(fig, entries):
    """A legend under the plot, outside it so that no line is hidden: ``entries`` are (label, colour,
    line style) keys (a run's colour, training or validation's style, a layer's colour)."""
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=colour, linestyle=style, marker="." if style != ":" else None)
               for _, colour, style in entries]
    labels = [label for label, _, _ in entries]
    columns = 1 if max(map(len, labels)) > 40 else min(len(labels), 4)
    rows = -(-len(labels) // columns)
    fig.set_size_inches(8, 4.6 + 0.25 * rows)
    fig.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize="small")


def _run_entries(runs, validation):
    """Legend keys for figures where a run is a colour and training/validation a line style."""
    entries = [(label, colour, "-") for (label, _), colour in zip(runs, RUN_COLOURS)] if len(runs) > 1 else []
    if validation:
        entries += [("training", "grey", "-"), ("validation", "grey", "--")]
    return entries or [(runs[0][0], RUN_COLOURS[0], "-")]


def _has(history, key):
    return bool(history[key]) and history[key][0] is not None


def figures(runs) -> dict:
    """{name: Figure} of ``runs``: loss, accuracy (for losses with classes), learning rate and
    the gradient norm of each layer (log scale)."""
    require()
    out = {}
    validation = any(_has(h, "val_loss") for _, h in runs)
    fig, ax = _axes("Loss per epoch", "loss")
    values = [v for _, h in runs for key in ("loss", "val_loss") for v in h[key] if v is not None]
    if min(values) > 0:
        ax.set_yscale("log")
        ax.set_ylabel("loss (log scale)")
        _log_ticks(ax, values)
    entries = _run_entries(runs, validation)
    for (label, history), colour in zip(runs, RUN_COLOURS):
        ax.plot(_epochs(history), history["loss"], color=colour, marker=".")
        if _has(history, "val_loss"):
            ax.plot(_epochs(history), history["val_loss"], color=colour, linestyle="--", marker=".")
        if history.get("best_epoch") is not None and history["settings"].get("patience") is not None:
            ax.axvline(history["best_epoch"] + 1, color=colour, alpha=0.6, linestyle=":")
            entries.append((f"best epoch, weights kept ({history['best_epoch'] + 1})"
                            + (f": {label}" if len(runs) > 1 else ""), colour, ":"))
    _legend(fig, entries)
    out["loss"] = fig
    if any(_has(h, "accuracy") for _, h in runs):
        from matplotlib.ticker import PercentFormatter
        fig, ax = _axes("Accuracy per epoch", "accuracy")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        for (label, history), colour in zip(runs, RUN_COLOURS):
            if _has(history, "accuracy"):
                ax.plot(_epochs(history), history["accuracy"], color=colour, marker=".")
            if _has(history, "val_accuracy"):
                ax.plot(_epochs(history), history["val_accuracy"], color=colour, linestyle="--", marker=".")
        _legend(fig, _run_entries([r for r in runs if _has(r[1], "accuracy")], validation))
        out["accuracy"] = fig
    rates = [v for _, h in runs for v in h["lr"]]
    log = min(rates) > 0  # a schedule that reaches 0 is drawn on a linear scale, where 0 shows
    fig, ax = _axes("Learning rate of each epoch", "learning rate" + (" (log scale)" if log else ""), log=log)
    for (label, history), colour, style in zip(runs, RUN_COLOURS, RUN_STYLES):
        ax.plot(_epochs(history), history["lr"], color=colour, linestyle=style, marker=".")
    if log:
        _log_ticks(ax, rates)
    _legend(fig, [(label, colour, style) for (label, _), colour, style in zip(runs, RUN_COLOURS, RUN_STYLES)])
    out["learning_rate"] = fig
    out["gradient_norms"] = _gradient_norms(runs)
    return out


def _gradient_norms(runs):
    """One line per layer that learns and run: a layer is a colour (dark: first, light: last), named by its
    parameters (the history's grad_norm_layers), a run a line style."""
    import matplotlib.pyplot as plt
    fig, ax = _axes("Gradient norm of each layer (first batch of each epoch, before clipping)",
                    "L2 norm of the gradients of the layer's parameters (log scale)", log=True)
    layers = max(len(h["grad_norms"][0]) for _, h in runs)
    names = max((h.get("grad_norm_layers") or [f"layer {l + 1}" for l in range(len(h["grad_norms"][0]))]
                 for _, h in runs), key=len)
    cmap = plt.get_cmap("viridis")
    colours = [cmap(0.85 * l / max(layers - 1, 1)) for l in range(layers)]
    norms = [v for _, h in runs for epoch in h["grad_norms"] for v in epoch]
    # a gradient of exactly 0 (a dead layer) has no place on a log scale: it is drawn a decade below the smallest other
    floor = min([v for v in norms if v > 0] or [1.0]) / 10
    for (label, history), style in zip(runs, RUN_STYLES):
        for l in range(len(history["grad_norms"][0])):
            values = [max(epoch[l], floor) for epoch in history["grad_norms"]]
            ax.plot(_epochs(history), values, color=colours[l], linestyle=style, marker=".")
    _log_ticks(ax, [max(v, floor) for v in norms])
    entries = [(names[l] + (" (input side)" if l == 0 and layers > 1 else " (output)" if l == layers - 1 else ""),
                colours[l], "-") for l in range(layers)]
    if len(runs) > 1:
        entries += [(label, "black", style) for (label, _), style in zip(runs, RUN_STYLES)]
    _legend(fig, entries)
    return fig


def write(figs: dict, directory) -> list:
    """Save each figure as DIR/NAME.png and DIR/NAME.svg (a new folder is made); the paths written."""
    import matplotlib.pyplot as plt

    from .files import write_atomic
    directory = Path(directory)
    directory.mkdir(exist_ok=True)
    written = []
    for name, fig in figs.items():
        for suffix, metadata in ((".png", {"Software": MARK}), (".svg", {"Creator": MARK})):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=suffix[1:], dpi=120, metadata=metadata)
            write_atomic(directory / f"{name}{suffix}", buffer.getvalue())
            written.append(directory / f"{name}{suffix}")
        plt.close(fig)
    return written
