"""The graph: a Network expanded into a DAG of op nodes over named values.

A Value is a tensor with named axes (``features`` and ``batch`` today; later ``channels``,
``height``, ``width``, ``time``): the batch axis has N entries in the batch form and 1 in the
per-sample form, so both forms are the same graph instantiated at two batch sizes. A value that
is ``named`` is a quantity of the derivation with its own forward Step; one that is not (the
activation before a dropout mask, say) is folded into its consumer's Step.

Each layer of the spec expands itself (its kind's ``expand``, beside its ops in ``derive/ops``): a
dense layer into dense -> activation (-> dropout) (-> add, when residual), a layer norm into the
layernorm op, a residual block into its layers (numbered by ``naming.Path``) and an add. The loss
becomes the loss op, then the penalties and their sum, the objective.
"""
from dataclasses import dataclass, field

from .naming import LOSS, Names, buffer_names, greek, indexed, letter, torch_key
from .ops.registry import ops

OPS = ops()


@dataclass(frozen=True, eq=False)
class Value:
    """A named tensor: ``axes`` ((name, size), ...) (() for a scalar), its role (data, param, mask,
    forward, loss), its layer, for a parameter the op's ``Param`` (its PyTorch attribute), and
    ``layout``, the named sizes its features unflatten to in PyTorch's row-major order
    ((("channels", C), ("height", H), ("width", W)) for an image; () for plain features); for a
    parameter, its shape as torch stores it when that is not its matrix shape (a convolution's kernel
    (out, in, kH, kW) is the matrix (out, in·kH·kW) in the math)."""
    names: Names
    axes: tuple
    role: str
    layer: int = 0
    named: bool = True
    param: object = None
    layout: tuple = ()

    @property
    def key(self) -> str:
        return self.names.key

    @property
    def shape(self) -> tuple:
        return tuple(size for _, size in self.axes)

    @property
    def torch_key(self) -> str:
        """A parameter's key in the state_dict of the network's PyTorch twin (see ``naming.torch_key``)."""
        return torch_key(self.layer, self.param.torch)


@dataclass(frozen=True, eq=False)
class Node:
    """One application of an op: its input values, its output value, its layer and its attributes."""
    op: object
    inputs: tuple
    output: Value
    layer: int
    batch: object
    attrs: dict = field(default_factory=dict)
    index: int = 0
    state: tuple = ()  # the values of the op's buffers (role "buffer"), one per ``op.state``

    @property
    def batched(self) -> bool:
        """Whether the samples are the columns of a matrix (the batch form), not one column."""
        return self.batch != 1


class Graph:
    """Values and op nodes in the order they were added (a topological order)."""

    def __init__(self, batch=1):
        self.batch = batch
        self.values: list = []
        self.nodes: list = []
        self.producer: dict = {}
        self.consumers: dict = {}

    @property
    def batched(self) -> bool:
        return self.batch != 1

    def features(self, size: int) -> tuple:
        return (("features", size), ("batch", self.batch))

    def value(self, names: Names, axes: tuple, role: str, layer: int = 0, named: bool = True, param=None,
              layout: tuple = ()) -> Value:
        v = Value(names, axes, role, layer, named, param, layout)
        self.values.append(v)
        self.consumers[v] = []
        return v

    def param(self, param, layer: int, axes: tuple) -> Value:
        """The value of an op's parameter (a registry ``Param``) in layer ``layer``."""
        return self.value(indexed(param.letter, layer, f"{param.meaning} of layer {layer}"), axes, "param", layer,
                          param=param)

    def greek_params(self, params, layer: int, axes: tuple) -> tuple:
        """The values of an op's parameters written with Greek letters (a normalization's γ and β), each
        of ``axes``, its meaning naming its attribute in the torch module."""
        return tuple(self.value(greek(p.letter, layer, f"{p.meaning} of layer {layer} (torch's {p.torch})"),
                                axes, "param", layer, param=p) for p in params)

    def leaf(self, key: str, rows: int = None, cols: int = None) -> Value:
        """An input value for an op's example: (rows, cols), (rows, batch) without cols, a scalar without rows."""
        axes = () if rows is None else self.features(rows) if cols is None else (("out_features", rows), ("in_features", cols))
        return self.value(Names.plain(key), axes, "data")

    def add(self, kind: str, inputs, layer: int, out: Value = None, **attrs) -> Value:
        """Apply op ``kind`` to ``inputs``; its output is ``out`` if given (a value made in advance, so it
        is listed before the op's own values), else the op's own (folded away when it names none)."""
        op = OPS[kind]
        # an op that changes the layout (a convolution, a pooling) returns the output's layout too;
        # one that keeps the axes of its first input keeps its layout
        inputs, axes, names, *layout = op.build(self, tuple(inputs), layer, **attrs)
        layout = layout[0] if layout else inputs[0].layout if inputs and inputs[0].axes == axes else ()
        if out is None:
            out = self.value(names or Names(f"_{kind}{len(self.nodes)}", "", "", ""), axes, op.role, layer,
                             named=names is not None, layout=layout)
        # a buffer has the output's axes (a running statistic), a counter none
        state = tuple(self.value(buffer_names(b, layer), () if b.integer else axes, "buffer", layer, named=False,
                                 param=b) for b in op.state)
        node = Node(op, inputs, out, layer, self.batch, attrs, len(self.nodes), state)
        self.nodes.append(node)
        self.producer[out] = node
        for v in inputs:
            self.consumers[v].append(node)
        return out


def expand(network, batch=1) -> Graph:
    """The graph of ``network`` with ``batch`` samples as columns (N for the batch form, 1 per sample)."""
    g = Graph(batch)
    x = g.value(Names.plain(letter("x", g.batched), "input" + _sequence(network.layout)
                            + (", one sample per column" if g.batched else "")),
                g.features(network.inputs), "data", layout=network.layout)
    y = g.value(Names.plain(letter("y", g.batched), "target"), g.features(network.outputs), "data")
    a = x
    for l, layer in enumerate(network.layers, start=1):
        a = layer.expand(g, l, a, last=l == len(network.layers))
    _loss(g, network, a, y)
    return g


def _sequence(layout) -> str:
    """How a sequence input's column is made, for its meaning: '' for any other input."""
    sizes = dict(layout)
    if "length" not in sizes or len(sizes) != 2:
        return ""
    if "vocab" in sizes:
        return f": {sizes['length']} token ids, each a one-hot column of {sizes['vocab']}, stacked (length × vocab)"
    if "features" in sizes:
        return f": {sizes['length']} steps of {sizes['features']} features, stacked (length × features)"
    return ""


def _loss(g: Graph, network, yhat: Value, y: Value):
    """The loss op on (ŷ, y), on z too when it is fused with the output activation; then the penalties."""
    L = len(network.layers)
    loss = network.loss
    inputs = [yhat, y] + ([g.producer[yhat].inputs[0]] if loss.fused_with else [])
    total = g.value(LOSS, (), "loss")
    penalties = [(kind, weight) for kind, weight in (("l2", network.l2), ("l1", network.l1)) if weight]
    term = g.add("loss", inputs, L, out=None if penalties else total, loss=loss)
    if not penalties:
        return
    weights = [v for v in g.values if v.param is not None and v.param.penalized]
    # L2's node is added first so each weight's gradient reads δ aᵀ + λ2 W + λ1 sign(W), its terms
    # in the order of their consumers; the loss still prints the L1 terms before the L2 ones
    terms = {kind: g.add(kind, weights, L, weight=weight) for kind, weight in penalties}
    g.add("objective", [term] + [terms[kind] for kind in ("l1", "l2") if kind in terms], L, out=total)
