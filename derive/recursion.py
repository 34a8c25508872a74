"""The general recursion of a chain of dense layers: BP1-BP4 in the layer index l, as Nielsen names
them ("Neural Networks and Deep Learning", ch. 2), beside the steps that instantiate each.

Only a chain of dense layers has them in this form (no residual path, dropout, layer norm or
penalty, every activation element-wise but a softmax output); for any other network the notes say
nothing. ``instances`` gives, for each rule and layer, the rule's right-hand side in the one-sample
symbols and the step it is: ``tests/test_notes_content.py`` proves each equal to its step.
"""
import sympy as sp

from .ops.elementwise import apply

#: Nielsen's names of the four equations.
RULES = {
    "BP1": "the error in the output layer",
    "BP2": "the error of a layer in terms of the error in the next layer",
    "BP3": "the rate of change of the loss with respect to any bias",
    "BP4": "the rate of change of the loss with respect to any weight",
}


def is_chain(network) -> bool:
    """Whether ``network`` is a chain of dense layers (see the module docstring)."""
    layers = network.layers
    return (all(layer.kind == "dense" and not layer.residual and not layer.dropout for layer in layers)
            and not network.l1 and not network.l2
            and all(layer.activation.elementwise for layer in layers[:-1]))


def _dense(graph) -> dict:
    """{layer: its dense node}."""
    return {node.layer: node for node in graph.nodes if node.op.name == "dense"}


def instances(derivation) -> list:
    """[(rule, layer, the step it instantiates, the rule's right-hand side at that layer)], one sample."""
    sweep = derivation.sample
    graph, symbol = sweep.graph, (lambda v: sweep.expr[v])
    dense = _dense(graph)
    last = max(dense)
    steps = {s.target.key: s for s in sweep.steps}
    out = []
    for l, node in sorted(dense.items(), reverse=True):
        a, W, b = node.inputs
        z = node.output
        delta = steps[sweep.adjoint_key(z)]
        f = graph.consumers[z][0].attrs["act"]
        if l == last:
            rhs = _output_error(sweep, f, z)
            out.append(("BP1", l, delta, rhs))
        else:
            nxt = dense[l + 1]
            back = nxt.inputs[1].names.key
            g = sweep.quantities[back].symbol.T * steps[sweep.adjoint_key(nxt.output)].target.symbol
            rhs = g if f.is_identity else sp.HadamardProduct(g, apply(f, symbol(z), prime=True))
            out.append(("BP2", l, delta, rhs))
        out.append(("BP3", l, steps[f"dL_d{b.key}"], delta.target.symbol))
        out.append(("BP4", l, steps[f"dL_d{W.key}"], delta.target.symbol * symbol(a).T))
    return out


def _output_error(sweep, f, z):
    """BP1's right-hand side: dL/dŷ through the output activation (softmax's Jacobian for a softmax)."""
    loss = next(n for n in sweep.graph.nodes if n.op.name == "loss")
    yhat, y = (sweep.quantities[v.key] for v in loss.inputs[:2])
    g = sweep.loss_gradient(yhat, y)
    if not f.elementwise:
        return sp.MatMul(sp.MatAdd(sp.DiagMatrix(yhat.symbol), -yhat.symbol * yhat.symbol.T), g)
    return g if f.is_identity else sp.HadamardProduct(g, apply(f, sweep.expr[z], prime=True))


def recursion_outline(derivation, latex: bool, cite, fused=""):
    """The outline's blocks: BP1-BP4 boxed, each with the steps that instantiate it, ``cite(key)`` citing
    the step of the quantity ``key`` (nothing unless a chain); ``fused``: the citation of the fused
    step's derivation, if the notes print one."""
    net = derivation.network
    if not is_chain(net):
        return
    found = instances(derivation)
    last = max(l for _, l, _, _ in found)
    softmax = not net.layers[-1].activation.elementwise
    if latex:
        dyhat, fl = r"\frac{\partial L}{\partial \hat{y}}", r"f_{l}'\left(z_{l}\right)"
        jacobian = r"\left(\operatorname{diag}(\hat{y}) - \hat{y} \hat{y}^{\top}\right)"
        bp1 = (rf"\delta_{{{last}}} = {jacobian} {dyhat}"
               if softmax else rf"\delta_{{{last}}} = {dyhat} \odot f_{{{last}}}'\left(z_{{{last}}}\right)")
        forms = {"BP1": bp1,
                 "BP2": rf"\delta_{{l}} = \left(W_{{l+1}}^{{\top}} \delta_{{l+1}}\right) \odot {fl}",
                 "BP3": r"\frac{\partial L}{\partial b_{l}} = \delta_{l}",
                 "BP4": r"\frac{\partial L}{\partial W_{l}} = \delta_{l} a_{l-1}^{\top}, \quad "
                        r"\frac{\partial L}{\partial (W_{l})_{jk}} = (\delta_{l})_{j} (a_{l-1})_{k}"}
        forms = {k: rf"\boxed{{{v}}}" for k, v in forms.items()}
        math = lambda s: f"${s}$"  # noqa: E731
    else:
        bp1 = f"δ_{last} = (diag(ŷ) - ŷ ŷᵀ) ∂L/∂ŷ" if softmax else f"δ_{last} = ∂L/∂ŷ ⊙ f_{last}'(z_{last})"
        forms = {"BP1": bp1, "BP2": "δ_l = (W_(l+1)ᵀ δ_(l+1)) ⊙ f_l'(z_l)", "BP3": "∂L/∂b_l = δ_l",
                 "BP4": "∂L/∂W_l = δ_l a_(l-1)ᵀ,   ∂L/∂(W_l)_jk = (δ_l)_j (a_(l-1))_k"}
        math = str
    activations = ", ".join(math(f"f_{{{l}}}" if latex else f"f{l}") + f" = {layer.activation.name}"
                            for l, layer in enumerate(net.layers, start=1))
    yield "heading", "The general recursion (BP1–BP4)"
    yield "para", (f"For any chain of dense layers the steps above follow four equations in the layer index "
                   f"{math('l')}, "
                   f"named as in Nielsen's Neural Networks and Deep Learning; here "
                   f"{math('a_{0} = x' if latex else 'a0 = x')}, the last layer is {last} and {activations}. "
                   f"The index form of BP4, one weight at a time, is why the weight gradient is an outer product."
                   + (f" With the softmax, BP1 is the fused step derived in {fused}." if softmax and fused else ""))
    for rule, meaning in RULES.items():
        cited = [cite(step.target.key) for r, _, step, _ in found if r == rule]
        if not cited:
            continue
        yield "para", f"{rule}, {meaning} ({'steps' if len(cited) > 1 else 'step'} {', '.join(cited)}):"
        yield "display", [forms[rule]]
