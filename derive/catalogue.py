"""``chainrule list``: every activation and loss with its formula and derivative, from SymPy."""
from .documents import named_functions
from .ops.activations import CATALOGUE as ACTIVATIONS, make_activation
from .ops.losses import CATALOGUE as LOSSES, make_loss
from .printing import NotesText, activation_definitions, loss_definition


def catalogue_text() -> str:
    lines = ["Activations (layer key: activation = NAME or { type = NAME, param = value }):"]
    for name, kind in ACTIVATIONS.items():
        params = ", ".join(f"{k}={v}" for k, v in kind.defaults.items())
        title = f"  {name}" + (f" ({params})" if params else "")
        act = make_activation(name, "list")
        if not act.elementwise:
            lines.append(f"{title}: exp(z_i) / Σ_k exp(z_k), output layer only; fused with cross_entropy "
                         "(δ = ŷ - y), with any other loss its Jacobian-vector rule δ = ŷ ⊙ (g - 1 ŷᵀ g)")
            continue
        rows = activation_definitions([act], latex=False) or [(f"{name}(z) = {NotesText({}).doprint(act.definition)}", "")]
        where = named_functions([act.derivative_display()], latex=False)
        lines.append(f"{title}: {rows[0][0]}" + (f";  {rows[0][1]}" if rows[0][1] else "")
                     + (f"  ({where})" if where else ""))
    lines.append("  your own: { formula = \"z*tanh(log(1+exp(z)))\", name = \"mish\" }")
    lines.append("")
    lines.append("Losses (network key: loss = NAME or { type = NAME, param = value }):")
    for name, kind in LOSSES.items():
        loss = make_loss(name)
        term, derivative = loss_definition(loss, latex=False)
        params = ", ".join(f"{k}={v}" for k, v in kind.defaults.items())
        reduction = {"mean": "mean over all elements", "batch": "summed over outputs, mean over the batch"}[kind.reduction]
        fused = f", needs a {kind.fused_with} output" if kind.fused_with else ""
        lines.append(f"  {name}" + (f" ({params})" if params else "") + f": ℓ = {term};  ∂ℓ/∂ŷ = {derivative}  [{reduction}{fused}]")
    lines.append("  your own: { formula = \"(yhat - y)**4 / 4\" }  [mean over all elements]")
    lines.append("")
    lines.append("Penalties ([network] keys): l1 = λ adds λ Σ|W|, l2 = λ adds (λ/2) Σ W² over every weight matrix.")
    return "\n".join(lines) + "\n"
