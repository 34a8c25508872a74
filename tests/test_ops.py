"""The op registry: each op's stated VJP for each input equals sympy.diff of its forward definition.

The tests loop over the registry and each op's own examples, so a new op is proved as soon as its
module is in ``derive/ops``. An example is expanded element-wise at 1 and 2 samples (a matrix of
symbols per leaf, ``doit``, as ``derive.verify`` does); the scalar <G, output> is differentiated
with respect to every entry of every input the op states a VJP for, and the stated VJP, expanded
the same way, must agree with it to 25 digits at two random points (Piecewise and erf resist
symbolic cancellation, so numbers decide).
"""
import random

import pytest
import sympy as sp

import derive
from derive.graph import Graph
from derive.ops.registry import ops
from derive.steps import symbol

OPS = ops()
CASES = [pytest.param(name, build, id=f"{name}-{label}") for name, op in sorted(OPS.items())
         for label, build in op.examples()]


def explicit(key: str, shape: tuple):
    """A matrix of one real symbol per entry (a 1 x 1 matrix for a scalar)."""
    rows, cols = shape or (1, 1)
    return sp.ImmutableMatrix(rows, cols, lambda i, j: sp.Symbol(f"{key}_{i}_{j}", real=True))


def expanded(expr, env: dict):
    """``expr`` evaluated entry by entry, every symbol of ``env`` replaced by its entries."""
    value = expr.xreplace(env).replace(sp.OneMatrix, lambda rows, cols: sp.ImmutableMatrix.ones(rows, cols)).doit()
    if isinstance(value, sp.MatrixExpr):  # a scalar times a matrix stays a product until made explicit
        value = value.as_explicit()
    return value if isinstance(value, sp.MatrixBase) else sp.ImmutableMatrix([[value]])


def bind(env: dict, sym, entries, shape):
    env[sym] = entries if shape else entries[0]


def test_every_op_has_examples():
    assert OPS and all(op.examples() for op in OPS.values())


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name, build", CASES)
def test_stated_vjp_is_the_derivative_of_the_definition(name, build, batch):
    g = Graph(batch)
    build(g)
    node = g.nodes[-1]
    assert node.op is OPS[name]
    symbols = {v: symbol(v.key, v.shape) for v in g.values}
    env, leaves = {}, {}
    for v in g.values:
        if v not in g.producer:
            leaves[v] = explicit(v.key, v.shape)
            bind(env, symbols[v], leaves[v], v.shape)
    for n in g.nodes:
        value = expanded(n.op.forward(n, [symbols[v] for v in n.inputs]).expr, env)
        assert value.shape == (n.output.shape or (1, 1)), f"{n.op.name}'s forward has the wrong shape"
        bind(env, symbols[n.output], value, n.output.shape)
    output = expanded(symbols[node.output], env)
    adjoint = explicit("G", node.output.shape)
    g_symbol = symbol("G", node.output.shape)
    bind(env, g_symbol, adjoint, node.output.shape)
    pairing = sum(a * b for a, b in zip(adjoint, output))

    shares = node.op.vjp(node, g_symbol, [symbols[v] for v in node.inputs], symbols[node.output])
    assert shares, f"{name} states no VJP"
    constraint = node.op.constraint(node, {v: leaves[v] for v in node.inputs if v in leaves})
    rng = random.Random(0)
    free = sorted({s for m in list(leaves.values()) + [adjoint] for s in m} - constraint.keys(), key=str)
    points = [{s: sp.Float(rng.uniform(-1.5, 1.5), 30) for s in free} for _ in range(2)]
    for i, share in shares.items():
        v = node.inputs[i]
        assert v in leaves, f"{name}'s VJP is stated for an input its example computes"
        stated = expanded(share.expr, env)
        assert stated.shape == leaves[v].shape, f"{name}'s VJP for input {i} has the wrong shape"
        for entry, value in zip(leaves[v], stated):
            difference = (value - sp.diff(pairing, entry)).xreplace(constraint)
            for point in points:
                assert abs(sp.N(difference.xreplace(point), 30)) < 1e-25, f"{name}: d/d{entry} differs"


# -- the sweep over the graph ------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    "3 -> 3 tanh residual -> 3 relu dropout=0.5 -> 2 softmax ; mse ; l1=0.1 ; l2=0.2",
    "3 -> 3 residual -> 3 -> 3 identity residual ; huber(delta=0.5)",
    "2 -> 3 sigmoid -> 3 softmax ; cross_entropy",
])
def test_every_step_reads_only_earlier_quantities(spec):
    """The sweep's order: a Step names only inputs, parameters, masks and quantities defined before it,
    and every quantity is defined once (one adjoint per value, however many consumers it has)."""
    d = derive.derive(spec)
    for sweep in (d.sample, d.batch):
        known = {q.symbol for q in sweep.quantities.values() if q.role in ("data", "param", "mask")}
        defined = [s.target.key for s in sweep.steps]
        assert len(defined) == len(set(defined))
        for step in sweep.steps:
            assert step.rhs.free_symbols - {derive.chain.N} <= known, step
            known.add(step.target.symbol)
