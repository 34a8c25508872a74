"""The reverse sweep: one instance of a graph becomes an ordered list of Steps, forward then backward.

Forward, every op gives its output's expression in its inputs' symbols; an output that is not a
named value is folded into its consumer's Step, its reason leading the consumer's. Backward, the nodes are visited in reverse: each
op gives every input its share of the adjoint (its VJP), and a value's adjoint is the sum of the
shares of all its consumers, in the order of the consumers. An adjoint is a quantity of its own,
with its own symbol and Step, when the op that made the value names it (δ), when the value has
several consumers, or when that op's VJPs read it more than once; otherwise it is folded into the
next Step. So each Step is a small expression in earlier symbols, and the derivation grows linearly
with depth.
"""
from collections import defaultdict
from dataclasses import replace

import sympy as sp

from .naming import gradient
from .ops.loss import gradient as loss_gradient
from .steps import Quantity, Step, symbol


def _join(parts) -> str:
    """Reasons joined, each after the first by its own joint; empty ones skipped."""
    text = ""
    for joint, reason in parts:
        if reason:
            text = f"{text}{joint}{reason}" if text else reason
    return text


class Sweep:
    """The quantities and Steps of one form ('sample' or 'batch') of a network, numbered from ``first_number``."""

    def __init__(self, graph, network, form: str, first_number: int):
        self.graph, self.net, self.form, self.number = graph, network, form, first_number
        self.quantities: dict[str, Quantity] = {}
        self.names = {}  # key -> its Names, whose structure a notation (derive.notation) reads
        self.steps: list[Step] = []
        self.expr = {}
        for v in graph.values:
            if v.named:
                self.expr[v] = self._quantity(v.names, v.shape, v.role, v.layer).symbol
        self.loss = graph.nodes[-1].output  # the root: the last node computes the loss
        self.L = self.quantities[self.loss.key]
        self._forward()
        self._backward()

    @property
    def z(self) -> dict:
        """{layer: its pre-activation}, the outputs of the dense nodes."""
        return {n.layer: self.quantities[n.output.key] for n in self.graph.nodes if n.op.name == "dense"}

    def loss_gradient(self, yhat: Quantity, target: Quantity):
        """dL/dŷ of the network's loss at the matrix level (for the checker's what-if derivations)."""
        return loss_gradient(self.net.loss, yhat.symbol, target.symbol)

    def _quantity(self, names, shape, role: str, layer: int) -> Quantity:
        q = Quantity(names.key, symbol(names.key, shape), names.latex, names.text, names.meaning, role, layer)
        self.quantities[q.key], self.names[q.key] = q, names
        return q

    def _step(self, target: Quantity, rhs, reason: str, phase: str, layer: int):
        self.steps.append(Step(self.number, target, rhs, reason, phase, layer, self.form))
        self.number += 1

    def _forward(self):
        reasons = {}
        for node in self.graph.nodes:
            out = node.op.forward(node, [self.expr[v] for v in node.inputs])
            folded = [(", ", reasons[v]) for v in node.inputs if v in reasons]
            reason = _join(folded + [(", ", out.reason)])
            v = node.output
            if v.named:
                self._step(self.quantities[v.key], out.expr, reason, "loss" if v.role == "loss" else "forward", node.layer)
            else:
                self.expr[v], reasons[v] = out.expr, reason

    def _needs_adjoint(self) -> set:
        """The values the loss depends on through a parameter: the parameters and what is computed from them."""
        needs = {v for v in self.graph.values if v.role == "param"}
        for node in self.graph.nodes:
            if needs.intersection(node.inputs):
                needs.add(node.output)
        return needs

    def _backward(self):
        graph, needs = self.graph, self._needs_adjoint()
        self._shares = defaultdict(list)  # value -> [(consumer's index, Grad)]
        for node in reversed(graph.nodes):
            upstream = (sp.Integer(1), "") if node.output is self.loss else self._settle(node.output)
            if upstream is None:
                continue
            g, why = upstream
            ins = [self.expr[v] for v in node.inputs]
            for i, share in sorted(node.op.vjp(node, g, ins, self.expr[node.output]).items()):
                if node.inputs[i] in needs:
                    reason = _join([("", why), ("; ", share.reason)])  # a folded adjoint's reason leads
                    self._shares[node.inputs[i]].append((node.index, replace(share, reason=reason)))
            for v in node.inputs:
                # a leaf (a parameter) has every share once its first consumer is visited
                if v in needs and v not in graph.producer and graph.consumers[v][0] is node:
                    self._settle(v)

    def _settle(self, v):
        """The adjoint of ``v``, its shares summed: (its symbol, "") when it has its own Step, else
        (the sum, its reason) to fold into the next; None when the loss does not depend on ``v``."""
        shares = [share for _, share in sorted(self._shares.pop(v, []), key=lambda item: item[0])]
        if not shares:
            return None
        add = sp.MatAdd if v.shape else sp.Add
        rhs = shares[0].expr
        for share in shares[1:]:
            rhs = add(rhs, share.expr)
        reason = _join([("", shares[0].reason)] + [(share.joint, share.reason) for share in shares[1:]])
        names = self._adjoint_names(v)
        if names is None:
            return rhs, reason
        q = self._quantity(names, v.shape, "gradient" if v.role == "param" else "adjoint", v.layer)
        self._step(q, rhs, reason, "backward", v.layer)
        return q.symbol, ""

    def adjoint_key(self, v):
        """The key of ``v``'s adjoint when it is a quantity with a Step of its own (δ1, dL_dW1), else None."""
        names = self._adjoint_names(v)
        return names.key if names is not None and names.key in self.quantities else None

    def _adjoint_names(self, v):
        """The names of v's adjoint if it gets a symbol of its own, else None (see the module docstring)."""
        if v.role == "param":
            return gradient(v.names)
        producer = self.graph.producer.get(v)
        own = producer.op.adjoint_names(producer) if producer else None
        if own is None and (len(self.graph.consumers[v]) > 1 or producer and producer.op.reuses_adjoint):
            own = gradient(v.names)
        return own
