"""Why a fused loss's step is the output minus the target: the chain rule through the output
activation, derived for one sample instead of asserted.

Softmax with cross-entropy and sigmoid with binary cross-entropy state dL/dz = ŷ - y (``ops/loss.py``).
``stages`` gives the steps from the definitions to that: the loss's derivative (the definitions'
∂ℓ/∂ŷ), the activation's Jacobian (softmax's diag(ŷ) - ŷŷᵀ) or derivative (the sigmoid's σ(1 - σ),
written in ŷ), their product, and what cancels, under the condition it needs (softmax: Σ_k y_k = 1).
Each stage is a SymPy matrix expression in the one-sample symbols, so ``tests/test_notes_content.py``
proves every one equal to ``sympy.diff`` of the loss at small sizes; ``fused_outline`` prints them as
numbered equations after the steps (each step keeping its own number), citing the steps they start from.
"""
import sympy as sp

from .nodes import Pointwise
from .ops.activations import A, derivative_of_output
from .ops.loss import divided_by, scale
from .ops.losses import Y, YHAT
from .ops.softmax import steps as sequence_steps
from .printing import MathLatex, NotesText


def fused_node(graph):
    """The loss node that reads z beside ŷ and y (a loss fused with the output activation), else None."""
    return next((n for n in graph.nodes if n.op.name == "loss" and len(n.inputs) == 3), None)


def stages(graph, node, yhat=None, y=None) -> tuple:
    """(the activation's Jacobian or None when it is element-wise, [each stage of dL/dz for one
    sample]) for the fused loss ``node`` of ``graph``; ``yhat`` and ``y`` stand for ŷ and y (default:
    their one-sample MatrixSymbols), so a test can put explicit matrices in their place."""
    yhat_v, y_v, _ = node.inputs
    rows = yhat_v.shape[0] // (sequence_steps(yhat_v) or 1)  # a softmax at every step: one step's K outputs
    yhat = sp.MatrixSymbol(yhat_v.key, rows, 1) if yhat is None else yhat
    y = sp.MatrixSymbol(y_v.key, rows, 1) if y is None else y
    loss, act = node.attrs["loss"], graph.producer[yhat_v].attrs["act"]
    dloss = Pointwise(sp.Lambda((YHAT, Y), loss.derivative_display()), "", yhat, y)
    if not act.elementwise:
        jacobian = sp.MatAdd(sp.DiagMatrix(yhat), -yhat * yhat.T)
        return jacobian, [sp.MatMul(jacobian, dloss), sp.MatAdd(sp.MatMul(yhat, sp.OneMatrix(1, rows), y), -y),
                          sp.MatAdd(yhat, -y)]
    local = Pointwise(sp.Lambda(A, derivative_of_output(act)), "", yhat)
    return None, [sp.HadamardProduct(dloss, local), sp.MatAdd(yhat, -y)]


def fused_labels(derivation) -> list:
    """The labels of the equations ``fused_outline`` prints ([] when the loss is not fused)."""
    sweep = derivation.sample or derivation.batch  # batch norm's network has the batch form only
    node = fused_node(sweep.graph)
    if node is None:
        return []
    if sweep.graph.producer[node.inputs[0]].attrs["act"].elementwise:
        return ["eq:fused"]
    return ["eq:fused-jacobian", "eq:fused-product", "eq:fused"]


def fused_outline(derivation, latex: bool, printed: dict, labels: list, cite, form=None, own=True, cost="L"):
    """The outline's blocks deriving the fused step for one sample, its equations labelled ``labels``
    (``fused_labels``) and citing the steps they use: those of the sweep ``form`` (default: the
    one-sample one) the notes print first, ``printed`` (key -> the label of its step);
    ``cite(label)``: the outline's citation of an equation; ``own``: in chainrule's symbols (else, as
    the one sample's symbols of another notation are not printed, the output layer's ``z`` and ``∂L/∂z``;
    so too where the network has no one-sample form, batch norm's, whose batch graph it then reads);
    ``cost``: the notation's letter of the loss (Nielsen's C, J)."""
    sweep = derivation.sample or derivation.batch
    own = own and derivation.sample is not None
    node = fused_node(sweep.graph)
    names = {q.key: (q.latex if latex else q.text) for q in sweep.quantities.values()}
    if not own:
        names.update({node.inputs[0].key: r"\hat{y}" if latex else "ŷ", node.inputs[1].key: "y"})
    show = (MathLatex(names) if latex else NotesText(names)).doprint
    math = (lambda s: f"${s}$") if latex else str
    yhat_v, _, z_v = node.inputs
    loss, act = node.attrs["loss"], sweep.graph.producer[yhat_v].attrs["act"]
    yhat, z = (show(sweep.quantities[v.key].symbol) for v in (yhat_v, z_v))
    delta = show(sweep.quantities[sweep.adjoint_key(z_v)].symbol)
    said = delta  # in the prose: a slash, not a fraction
    if not own:
        z = "z"
        delta, said = ((rf"\frac{{\partial {cost}}}{{\partial z}}", rf"\partial {cost} / \partial z") if latex
                       else (f"∂{cost}/∂z", f"∂{cost}/∂z"))
    at_step = sequence_steps(yhat_v)
    # the one-sample loss's divisor: K (a mean over the outputs), T (a sequence's steps), T K, or 1
    outputs = int(1 / (scale(loss, yhat_v, at_step) * yhat_v.shape[1]))  # per column: the batch form has N
    lhs = f"{outputs} {delta}" if outputs != 1 else delta
    said = f"{outputs} {said}" if outputs != 1 else said
    jacobian, steps = stages(sweep.graph, node)
    # d: a derivative in a display; inline, in the prose, as a slash
    if latex:
        d = lambda a, b: rf"\frac{{\partial {a}}}{{\partial {b}}}"  # noqa: E731
        inline = lambda a, b: rf"\partial {a} / \partial {b}"  # noqa: E731
        ell, one, top = r"\ell", r"\sum_k y_k = 1", r"^{\top}"
    else:
        d = inline = lambda a, b: f"∂{a}/∂{b}"  # noqa: E731
        ell, one, top = "ℓ", "Σ_k y_k = 1", "ᵀ"
    dloss = steps[0].args[-1] if jacobian is not None else steps[0].args[0]
    definition = math(f"{inline(ell, yhat)} = {show(dloss)}")
    ell_k = r"\ell(\hat{y}_k, y_k)" if latex else "ℓ(ŷ_k, y_k)"
    form = form or sweep
    shown = fused_node(form.graph)  # the same node in the form the notes cite
    delta_at, loss_at, yhat_at = (cite(printed[key]) for key in
                                  (form.adjoint_key(shown.inputs[2]), shown.output.key, shown.inputs[0].key))
    yield "heading", "Where the fused step comes from"
    lead = (f"The fused step {delta_at}, derived for one sample"
            + (f" at one step {math('t')} (the softmax normalises each step's K = {yhat_v.shape[0] // at_step} "
               f"outputs, so {math(yhat)}, {math('y')} and {math(z)} below are one step's)" if at_step else "")
            + ("" if own else f" ({math(z)} the output layer's pre-activation and {math(yhat)} its output, columns)")
            + f": the loss {loss_at} "
            f"is the sum of {math(ell_k)} over the outputs {math('k')}"
            + (f", divided by {divided_by(loss, yhat_v, at_step)}" if at_step else
               f", divided by K = {outputs}" if outputs != 1 else "")
            + f", and {math(yhat)} is the {act.name} of {math(z)} {yhat_at}, so by the chain rule")
    first, last = labels[0], labels[-1]
    if jacobian is not None:
        entry = (r"\partial \hat{y}_i / \partial z_j = \hat{y}_i (1[i = j] - \hat{y}_j)" if latex
                 else "∂ŷ_i/∂z_j = ŷ_i (1[i = j] - ŷ_j)")
        chain = math(f"{said} = ({inline(yhat, z)}){top} {inline(ell, yhat)}")
        yield "para", (f"{lead} {chain}, where {math(inline(ell, yhat))} is "
                       f"the column of the outputs' derivatives. Every output of the softmax depends on every entry "
                       f"of {math(z)}, {math(entry)}, so its Jacobian is symmetric:")
        yield "rule", None, first, f"{d(yhat, z)} = {show(jacobian)}"
        total = r"\hat{y}^{\top} (y / \hat{y}) = \mathbf{1}^{\top} y" if latex else "ŷᵀ (y/ŷ) = 1ᵀ y"
        yield "para", (f"Times the definitions' {definition}, element-wise: the diagonal of {cite(first)} undoes the "
                       f"division, and {math(total)}, the sum of the targets:")
        yield "rule", None, labels[1], f"{lhs} = {show(steps[0])} = {show(steps[1])}"
        yield "para", (f"A sample's targets sum to one ({math(one)}: a one-hot label or a distribution), so "
                       f"{cite(labels[1])} is")
        yield "rule", None, last, f"{lhs} = {show(steps[2])}"
    else:
        prime = show(steps[0].args[1])
        yield "para", (f"{lead}, element-wise, {math(said)} is the definitions' {definition} times the derivative "
                       f"of the {act.name}, which written in its output {math(yhat)} is {math(prime)}; the product cancels:")
        yield "rule", None, last, f"{lhs} = {show(steps[0])} = {show(steps[1])}"
    yield "para", (f"Each sample of a batch{' and each step' if at_step else ''} follows the same steps, so the batch "
                   f"form's error holds {cite(last)} for each sample, scaled as the batch loss scales its sum.")
