"""derive.verify: every printed adjoint and gradient step proved against sympy.diff of the expanded network."""
import dataclasses
import random

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings, strategies as st

import derive
from derive.chain import Derivation
from derive.errors import ChainruleError
from derive.nodes import Pointwise
from derive.ops.activations import CATALOGUE as ACTIVATIONS
from derive.ops.losses import CATALOGUE as LOSSES
from derive.verify import Expansion, verify


def output_layer(loss: str) -> str:
    return {"bce": "1 sigmoid", "cross_entropy": "2 softmax"}.get(loss, "2")


def backward_count(d) -> int:
    return len([s for s in d.all_steps() if s.phase == "backward"])


def corrupt(d, keys: set, change):
    """`d`, its Step for one of `keys` in each form given the rhs change(step) (the lists are d's own)."""
    for steps in (d.sample_steps, d.steps):
        i = next(i for i, s in enumerate(steps) if s.target.key in keys)
        steps[i] = dataclasses.replace(steps[i], rhs=change(steps[i]))
    return d


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_is_proved(name):
    spec = "2 -> 2 tanh -> 2 softmax ; cross_entropy" if name == "softmax" else f"2 -> 2 {name} -> 2 {name} -> 1 ; mse"
    report = verify(derive.derive(spec))
    assert report.ok, report.text()
    assert len(report.proofs) == backward_count(derive.derive(spec))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_is_proved(name):
    report = verify(derive.derive(f"2 -> 2 tanh -> {output_layer(name)} ; {name}"))
    assert report.ok, report.text()


def test_custom_formulas_penalties_and_residuals_are_proved():
    spec = "2 -> 2 [z*tanh(log(1+exp(z)))] -> 2 elu(alpha=0.5) residual -> 2 ; [(yhat - y)**4/4] ; l1=0.01 ; l2=0.1"
    report = verify(derive.derive(spec))
    assert report.ok, report.text()


def test_dropout_masks_are_constants_in_the_proof():
    d = derive.derive("2 -> 2 tanh dropout=0.5 -> 2 relu residual dropout=0.25 -> 1 ; mse")
    assert "δ1 = ∂L/∂a1 ⊙ m1 ⊙ tanh'(z1)" in d.text()
    report = verify(d)
    assert report.ok, report.text()


def test_small_networks_are_proved_exactly():
    report = verify(derive.derive("2 -> 2 tanh -> 2 ; sse_half"), exact=True)
    assert report.ok and {p.method for p in report.proofs} == {"exact"}, report.text()


def test_softmax_cross_entropy_is_proved_exactly_through_the_expanded_softmax():
    # the fused rule Ŷ - Y holds only once Ŷ is written in terms of Z and the targets sum to 1
    report = verify(derive.derive("2 -> 2 sigmoid -> 2 softmax ; cross_entropy"), exact=True)
    assert report.ok and {p.method for p in report.proofs} == {"exact"}, report.text()


def test_the_proof_catches_a_wrong_step():
    derivation = corrupt(derive.derive("2 -> 2 tanh -> 1 ; mse"), {"dL_dW1"}, lambda s: s.rhs.T)  # a transpose forgotten
    report = verify(derivation)
    assert not report.ok
    assert {p.target for p in report.failures()} == {"dL/dW1"}


@pytest.mark.parametrize("spec", ["3 -> 3 sigmoid -> 3 sigmoid -> 3 sigmoid ; sse_half",
                                  "3 -> 3 tanh -> 3 sigmoid -> 3 softmax ; cross_entropy"])
def test_width_three_networks_of_depth_three_are_proved_as_derived(spec):
    d = derive.derive(spec)
    report = verify(d, cap=3)
    assert report.ok, report.text()
    assert len(report.proofs) == backward_count(d)
    assert {p.method for p in report.proofs} == {"numeric"} and max(p.error for p in report.proofs) < 1e-20


def test_a_dropped_factor_at_width_three_is_the_only_step_reported_wrong():
    spec = "3 -> 3 sigmoid -> 3 tanh -> 3 softmax ; cross_entropy"
    # delta1 = (W2ᵀ delta2) ⊙ σ'(z1) with σ'(z1) dropped: the Step a hand derivation most often gets wrong
    d = corrupt(derive.derive(spec), {"delta1", "Delta1"},
                lambda s: next(f for f in s.rhs.args if not isinstance(f, Pointwise)))
    report = verify(d, cap=3)
    assert {(p.target, p.form) for p in report.failures()} == {("δ1", "sample"), ("Δ1", "batch")}, report.text()
    assert all(p.method == "numeric" and p.error > 1e-3 for p in report.failures())
    assert "WRONG" in report.text()


def test_a_transposed_gradient_of_the_wrong_shape_is_reported():
    d = corrupt(derive.derive("3 -> 2 tanh -> 1 ; mse"), {"dL_dW1"}, lambda s: s.rhs.T)  # (3, 2) for a (2, 3) W1
    report = verify(d)
    assert [(p.target, p.method) for p in report.failures()] == [("dL/dW1", "shape")] * 2
    assert "dL/dW1 [sample]: WRONG (shape)" in report.text()


def test_a_wider_network_is_proved_at_the_cap():
    d = derive.derive("5 -> 4 tanh -> 2 ; mse")
    # a Step edited in place is not what is proved when the network is derived again at width `cap`
    corrupt(d, {"dL_dW2"}, lambda s: 2 * s.rhs)
    assert verify(d, cap=3).ok
    assert not verify(d, cap=5).ok


def test_the_reference_is_sympy_diff_of_the_fully_expanded_loss():
    d = derive.derive("2 -> 2 tanh residual -> 2 sigmoid -> 2 softmax ; cross_entropy ; l2=0.1")
    expansion = Expansion(d.batch, 2)
    full = {}
    for node, expr in expansion.definitions:
        full[node] = expr.xreplace(full)
    loss = full[expansion.loss]
    assert loss.free_symbols == set(expansion.inputs)
    adjoint = expansion.adjoints([partial for *_, partial in expansion.edges])
    rng = random.Random(1)
    point = {s: sp.Float(rng.uniform(-1.5, 1.5), 30) for s in expansion.inputs}
    for s in expansion.inputs:
        reference = sp.diff(loss, s).xreplace(point).evalf(30)
        assert abs(sp.sympify(adjoint[s]).xreplace(full).xreplace(point).evalf(30) - reference) < 1e-25, s


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 3), data=st.data())
def test_random_networks_are_proved(depth, data):
    cheap = ["identity", "relu", "tanh", "leaky_relu", "sigmoid"]
    widths = [data.draw(st.integers(1, 3)) for _ in range(depth + 1)]
    layers = []
    for i in range(1, depth + 1):
        act = data.draw(st.sampled_from(cheap))
        residual = i < depth and widths[i] == widths[i - 1] and data.draw(st.booleans())
        layers.append({"units": widths[i], "activation": act, "residual": residual})
    loss = data.draw(st.sampled_from(["mse", "sse_half", "huber"]))
    net = derive.from_dict({"network": {"inputs": widths[0], "layers": layers, "loss": loss}})
    report = verify(Derivation(net))
    assert report.ok, report.text()


def test_formulas_that_are_not_real_at_the_random_points_are_a_one_line_error():
    """A max of a formula that is complex where yhat < y cannot be compared there: verify says so
    (it tried mpmath's comparison of complex numbers, a TypeError, before)."""
    loss = {"formula": "max(max(0.5,((yhat-y)-sqrt(yhat-y))**0.5),sigmoid(0.5))"}
    d = derive.derive({"network": {"inputs": 2, "layers": [{"units": 1}], "loss": loss}})
    with pytest.raises(ChainruleError, match=r"^cannot prove the steps: the network's formulas are not real"):
        verify(d)
