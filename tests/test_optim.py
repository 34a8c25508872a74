"""The emitted optimizers, schedules and clipping against torch.optim, step for step.

Every catalogue entry's ``examples`` run here, so a new optimizer or schedule is tested by
adding it to ``derive.optim``. Agreement is to 1e-12 relative to each array's largest entry.
torch runs in float64 (``set_default_dtype``): it keeps NAdam's ``mu_product`` in the default
dtype, so in float32 it would differ from ours at 1e-7.
"""
import os
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest

from codegen.optim import render_optim
from derive.errors import ChainruleError
from derive.optim import OPTIMIZERS, SCHEDULES, validate, validate_optimizer

STEPS = 100
SHAPES = {"W1": (3, 2), "b1": (3,), "w2": (1, 3)}
RTOL = 1e-12


# ------------------------------------------------------------------------------------ helpers

def load(settings):
    """Exec the source we render into a fresh namespace."""
    namespace = {}
    exec(compile(render_optim(settings), "<optim>", "exec"), namespace)
    return namespace


def initial_params(seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape) for name, shape in SHAPES.items()}


def gradient_sequence(steps=STEPS, seed=1, scale=1.0):
    rng = np.random.default_rng(seed)
    return [{name: scale * rng.normal(size=shape) for name, shape in SHAPES.items()} for _ in range(steps)]


def assert_close(ours, theirs, what):
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    error = np.max(np.abs(ours - theirs))
    assert error <= RTOL * np.max(np.abs(theirs)), f"{what}: max error {error:.3g}\nours {ours}\ntorch {theirs}"


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(previous)


def torch_optimizer(torch, settings, tensors):
    options = {key: value for key, value in settings.items() if key != "type"}
    return getattr(torch.optim, OPTIMIZERS[settings["type"]].torch_name)(tensors, foreach=False, **options)


def torch_schedule(torch, settings, optimizer):
    """The torch scheduler for ``settings``, warm-up as SequentialLR(LinearLR, schedule).

    The schedule is built before LinearLR so that CyclicLR's base_lr, which it writes into the
    optimizer, is the rate the warm-up climbs to (torch keeps the first ``initial_lr`` it sees).
    """
    sched = torch.optim.lr_scheduler
    options = {key: value for key, value in settings.items() if key not in ("type", "warmup_epochs")}
    if settings["type"] == "cyclic":
        options["cycle_momentum"] = False
    if settings["type"] == "multistep":
        options["milestones"] = list(options["milestones"])
    main = getattr(sched, SCHEDULES[settings["type"]].torch_name)(optimizer, **options)
    k = settings["warmup_epochs"]
    if not k:
        return main
    warmup = sched.LinearLR(optimizer, start_factor=1 / (k + 1), end_factor=1.0, total_iters=k)
    return sched.SequentialLR(optimizer, [warmup, main], milestones=[k])


def run_both(torch, settings, grads_sequence):
    """Train with our module and with torch side by side; compare lr and params every step."""
    ours = load(settings)
    params = initial_params()
    optimizer = ours["make_optimizer"](params)
    schedule = ours["make_schedule"](optimizer)

    tensors = [torch.tensor(value, requires_grad=True) for value in initial_params().values()]
    their_optimizer = torch_optimizer(torch, settings["optimizer"], tensors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR warns about its own first step
        their_schedule = None if settings["schedule"] is None else torch_schedule(
            torch, settings["schedule"], their_optimizer)

    for step, grads in enumerate(grads_sequence):
        assert_close(optimizer.lr, their_optimizer.param_groups[0]["lr"], f"lr before step {step}")
        grads = {name: grad.copy() for name, grad in grads.items()}
        for tensor, grad in zip(tensors, grads.values()):
            tensor.grad = torch.tensor(grad)
        norm = ours["clip_gradients"](grads)
        their_norm = _torch_clip(torch, settings["training"], tensors)
        assert_close(norm, their_norm, f"gradient norm at step {step}")
        optimizer.step(params, grads)
        their_optimizer.step()
        if schedule is not None:
            schedule.step()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                their_schedule.step()
        for (name, value), tensor in zip(params.items(), tensors):
            assert_close(value, tensor.detach().numpy(), f"{name} after step {step}")


def _torch_clip(torch, training, tensors):
    if training["clip_norm"] is not None:
        return float(torch.nn.utils.clip_grad_norm_(tensors, training["clip_norm"], foreach=False))
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.grad) for t in tensors])))
    if training["clip_value"] is not None:
        torch.nn.utils.clip_grad_value_(tensors, training["clip_value"], foreach=False)
    return norm


def _cases(catalogue):
    return [pytest.param(name, example, id=f"{name}-{i}")
            for name, kind in sorted(catalogue.items()) for i, example in enumerate(kind.examples)]


# --------------------------------------------------------------------------- against torch

@pytest.mark.parametrize("name, options", _cases(OPTIMIZERS))
def test_optimizer_matches_torch(torch, name, options):
    run_both(torch, validate({"optimizer": {"type": name, **options}}), gradient_sequence())


@pytest.mark.parametrize("name, options", _cases(SCHEDULES))
def test_schedule_matches_torch(torch, name, options):
    tables = {"optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9}, "schedule": {"type": name, **options}}
    run_both(torch, validate(tables), gradient_sequence())


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "nadam"])
def test_schedule_drives_adaptive_optimizers(torch, optimizer):
    tables = {"optimizer": {"type": optimizer}, "schedule": {"type": "cosine", "T_max": 15, "warmup_epochs": 3}}
    run_both(torch, validate(tables), gradient_sequence())


@pytest.mark.parametrize("training", [{"clip_norm": 1.0}, {"clip_norm": 100.0}, {"clip_value": 0.3}, {}])
def test_training_with_clipping_matches_torch(torch, training):
    tables = {"optimizer": {"type": "adam", "lr": 0.01}, "training": training}
    run_both(torch, validate(tables), gradient_sequence(scale=2.0))


@pytest.mark.parametrize("max_norm", [1e-3, 0.5, 2.0, 1e6])
@pytest.mark.parametrize("scale", [0.0, 1e-8, 1.0, 1e3])
def test_clip_norm_matches_clip_grad_norm_(torch, max_norm, scale):
    ours = load(validate({"training": {"clip_norm": max_norm}}))
    grads = gradient_sequence(steps=1, seed=7, scale=scale)[0]
    tensors = [torch.zeros(g.shape, requires_grad=True) for g in grads.values()]
    for tensor, grad in zip(tensors, grads.values()):
        tensor.grad = torch.tensor(grad)
    their_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    norm = ours["clip_gradients"](grads)
    assert_close(norm, float(their_norm), "total norm")
    for grad, tensor in zip(grads.values(), tensors):
        assert_close(grad, tensor.grad.numpy(), "clipped gradient")


@pytest.mark.parametrize("clip_value", [1e-3, 0.5, 10.0])
def test_clip_value_matches_clip_grad_value_(torch, clip_value):
    ours = load(validate({"training": {"clip_value": clip_value}}))
    grads = gradient_sequence(steps=1, seed=8)[0]
    norm_before = float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))
    tensors = [torch.zeros(g.shape, requires_grad=True) for g in grads.values()]
    for tensor, grad in zip(tensors, grads.values()):
        tensor.grad = torch.tensor(grad)
    torch.nn.utils.clip_grad_value_(tensors, clip_value)
    assert_close(ours["clip_gradients"](grads), norm_before, "norm before clipping")
    for grad, tensor in zip(grads.values(), tensors):
        assert_close(grad, tensor.grad.numpy(), "clipped gradient")


def test_no_clipping_still_reports_the_norm():
    ours = load(validate({}))
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert ours["clip_gradients"](grads) == pytest.approx(5.0, rel=1e-15)
    assert grads["a"].tolist() == [3.0, 0.0]


# ------------------------------------------------------------------------------- in place

# Arrays of a parameter's size a step may hold besides params, grads and state (the template's
# promise): one scratch array, two for Adadelta's delta and NAdam's denominator, plus the penalized
# gradient under an L2 penalty (AdamW decays the weights instead).
SCRATCH_ARRAYS = {"adadelta": 2, "nadam": 2}


@pytest.mark.parametrize("name, options", _cases(OPTIMIZERS))
def test_step_updates_the_callers_arrays_and_leaves_grads_alone(name, options):
    ours = load(validate({"optimizer": {"type": name, **options}}))
    params = initial_params()
    arrays = dict(params)
    optimizer = ours["make_optimizer"](params)
    for step, grads in enumerate(gradient_sequence(steps=3)):
        before = {key: value.copy() for key, value in params.items()}
        given = {key: value.copy() for key, value in grads.items()}
        optimizer.step(params, grads)
        for key, value in params.items():
            assert value is arrays[key], f"step {step} replaced params[{key!r}]"
            assert not np.array_equal(value, before[key]), f"step {step} left params[{key!r}] unchanged"
            assert np.array_equal(grads[key], given[key]), f"step {step} wrote into grads[{key!r}]"


@pytest.mark.parametrize("name, options", _cases(OPTIMIZERS))
def test_step_needs_at_most_its_scratch_arrays(name, options):
    settings = validate({"optimizer": {"type": name, **options}})
    ours = load(settings)
    rng = np.random.default_rng(3)
    # below NumPy's 256 KiB threshold for reusing the temporaries of an expression in place
    params, grads = {"W": rng.normal(size=(100, 100))}, {"W": rng.normal(size=(100, 100))}
    optimizer = ours["make_optimizer"](params)
    optimizer.step(params, grads)  # the first step may create state (SGD's momentum buffer)
    tracemalloc.start()
    try:
        optimizer.step(params, grads)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    allowed = SCRATCH_ARRAYS.get(name, 1) + bool(settings["optimizer"]["weight_decay"] and name != "adamw")
    assert peak <= (allowed + 0.1) * params["W"].nbytes, f"{name} step peaks at {peak / params['W'].nbytes:.2f} arrays"


# ----------------------------------------------------------------------- catalogue and text

@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_examples_turn_every_option_on(name):
    kind = OPTIMIZERS[name]
    varied = {key for example in kind.examples for key, value in example.items() if value != kind.defaults[key]}
    assert varied == set(kind.defaults), f"no example of {name} changes {sorted(set(kind.defaults) - varied)}"
    assert {} in kind.examples, f"{name} has no example with the defaults"


def test_every_schedule_is_tested_with_and_without_warmup():
    for name, kind in SCHEDULES.items():
        warmups = {bool(example.get("warmup_epochs")) for example in kind.examples}
        assert warmups == {False, True}, name
    assert {e.get("mode", "triangular") for e in SCHEDULES["cyclic"].examples} == {
        "triangular", "triangular2", "exp_range"}


@pytest.mark.parametrize("name, options", _cases(OPTIMIZERS) + _cases(SCHEDULES))
def test_rendered_source_compiles_without_torch(name, options):
    table = "optimizer" if name in OPTIMIZERS else "schedule"
    source = render_optim(validate({table: {"type": name, **options}}))
    namespace = {}
    exec(compile(source, "<optim>", "exec"), namespace)
    optimizer = namespace["make_optimizer"](initial_params())
    assert isinstance(optimizer.lr, float)
    assert "\n\n\n\n" not in source and not source.endswith("\n\n")


def test_only_the_chosen_optimizer_and_schedule_are_emitted():
    source = render_optim(validate({"optimizer": {"type": "adam"}, "schedule": {"type": "step", "step_size": 3}}))
    assert "class Adam:" in source and "class StepLR:" in source
    assert "class SGD" not in source and "CosineAnnealingLR" not in source and "amsgrad" not in source
    assert render_optim(validate({}), header=False).startswith("class SGD:")


def test_rendering_does_not_depend_on_hash_seed():
    script = ("from codegen.optim import render_optim; from derive.optim import validate; "
              "print(render_optim(validate({'optimizer': {'type': 'rmsprop', 'centered': True}, "
              "'schedule': {'type': 'multistep', 'milestones': [3, 9], 'warmup_epochs': 2}, "
              "'training': {'clip_norm': 1.0}})))")
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("0", "1", "123")}
    assert len(outputs) == 1


def test_derive_optim_does_not_import_codegen_or_jinja():
    script = "import sys, derive.optim; print(sorted(m for m in sys.modules if m.split('.')[0] in ('codegen', 'jinja2')))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_entry_has_equations_and_torch_names(torch):
    for kind in OPTIMIZERS.values():
        for example in kind.examples:  # the rules under every example's settings
            rules = kind.rules(validate_optimizer({"type": kind.name, **example}))
            assert rules and all(isinstance(eq, str) and eq for eq in rules)
    for kind in SCHEDULES.values():
        assert kind.equations and all(isinstance(eq, str) and eq for eq in kind.equations)
    for kind in OPTIMIZERS.values():
        assert hasattr(torch.optim, kind.torch_name)
    for kind in SCHEDULES.values():
        assert hasattr(torch.optim.lr_scheduler, kind.torch_name)


# ------------------------------------------------------------------------------- validate()

def test_defaults_when_tables_are_missing():
    settings = validate({})
    assert settings["optimizer"] == {"type": "sgd", "lr": 0.01, "momentum": 0.0, "dampening": 0.0,
                                     "nesterov": False, "weight_decay": 0.0}
    assert settings["schedule"] is None
    assert settings["training"] == {"epochs": 20, "batch_size": 32, "clip_norm": None, "clip_value": None,
                                    "patience": None, "seed": 0, "init": None, "bptt": None}
    assert validate({"optimizer": {"type": "adamw"}})["optimizer"]["weight_decay"] == 0.01
    assert validate({"optimizer": {"type": "adam", "betas": [0.8, 0.9]}})["optimizer"]["betas"] == (0.8, 0.9)
    assert validate({"training": {"batch_size": "full"}})["training"]["batch_size"] is None
    assert validate({"optimizer": {"type": "adadelta", "lr": 2}})["optimizer"]["lr"] == 2.0
    assert "lr=2.0," in render_optim(validate({"optimizer": {"type": "adadelta", "lr": 2}}))
    assert validate({"schedule": {"type": "step", "step_size": 2}})["schedule"] == {
        "type": "step", "step_size": 2, "gamma": 0.1, "warmup_epochs": 0}


BAD = [
    ({"optimizer": {"type": "adamm"}}, "adam"),
    ({"optimizer": {"type": "sgd", "lr": -0.1}}, "lr"),
    ({"optimizer": {"type": "sgd", "lr": "fast"}}, "lr"),
    ({"optimizer": {"type": "sgd", "momentum": -0.5}}, "momentum"),
    ({"optimizer": {"type": "sgd", "nesterov": True}}, "nesterov"),
    ({"optimizer": {"type": "sgd", "nesterov": True, "momentum": 0.9, "dampening": 0.1}}, "nesterov"),
    ({"optimizer": {"type": "sgd", "lrr": 0.1}}, "lrr"),
    ({"optimizer": {"type": "adam", "betas": [0.9, 1.0]}}, "betas"),
    ({"optimizer": {"type": "adam", "betas": [0.9]}}, "betas"),
    ({"optimizer": {"type": "adam", "eps": 0}}, "eps"),
    ({"optimizer": {"type": "adam", "amsgrad": 1}}, "amsgrad"),
    ({"optimizer": {"type": "adam", "momentum": 0.9}}, "momentum"),
    ({"optimizer": {"type": "rmsprop", "alpha": 1.5}}, "alpha"),
    ({"optimizer": {"type": "adadelta", "rho": -1}}, "rho"),
    ({"schedule": {"type": "cosine"}}, "T_max"),
    ({"schedule": {"step_size": 3}}, "type"),
    ({"schedule": {"type": "steplr", "step_size": 3}}, "steplr"),
    ({"schedule": {"type": "step", "step_size": 0}}, "step_size"),
    ({"schedule": {"type": "step", "step_size": 2.5}}, "step_size"),
    ({"schedule": {"type": "multistep", "milestones": [5, 2]}}, "milestones"),
    ({"schedule": {"type": "exponential", "gamma": 0}}, "gamma"),
    ({"schedule": {"type": "cyclic", "base_lr": 0.1, "max_lr": 1, "mode": "sine"}}, "mode"),
    ({"schedule": {"type": "step", "step_size": 2, "warmup": 3}}, "warmup"),
    ({"schedule": {"type": "step", "step_size": 2, "warmup_epochs": -1}}, "warmup_epochs"),
    ({"training": {"clip_norm": 1.0, "clip_value": 1.0}}, "clip_value"),
    ({"training": {"clip_norm": -1.0}}, "clip_norm"),
    ({"training": {"epochs": 0}}, "epochs"),
    ({"training": {"batch_size": "half"}}, "batch_size"),
    ({"training": {"epoch": 10}}, "epoch"),
    ({"training": "fast"}, "training"),
]


@pytest.mark.parametrize("tables, key", BAD, ids=[f"{i}-{key}" for i, (_, key) in enumerate(BAD)])
def test_validate_rejects_with_one_line_naming_the_key(tables, key):
    with pytest.raises(ChainruleError) as caught:
        validate(tables)
    message = str(caught.value)
    assert "\n" not in message and key in message, message


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ChainruleError, match=r"did you mean 'weight_decay'\?"):
        validate({"optimizer": {"type": "adam", "weight_decy": 0.1}})
    with pytest.raises(ChainruleError, match=r"did you mean 'rmsprop'\?"):
        validate({"optimizer": {"type": "rmsprp"}})
