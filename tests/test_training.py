"""The training side of the emitted modules: dropout, weight initialization, train() with
validation and early stopping, the command line's training flags, and the digits classifier."""
import inspect
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from derive import derive
from derive.errors import ChainruleError
from derive.spec import from_dict

from gradcheck import central_differences, load_module, relative_error, torch_activation

ROOT = Path(__file__).resolve().parent.parent
DROPOUT_SPECS = [
    "3 -> 5 relu dropout=0.5 -> 4 tanh dropout=0.25 -> 2 ; mse",
    "4 -> 6 sigmoid dropout=0.3 -> 3 softmax ; cross_entropy",
    "3 -> 3 tanh residual dropout=0.5 -> 1 sigmoid ; bce",
]


@pytest.fixture(autouse=True)
def seeded():
    np.random.seed(0)


def spec_with(layers, loss="mse", inputs=3, **tables):
    """A spec dict: layers as (units, activation[, dropout]) and raw optimizer/schedule/training tables."""
    return {"name": "net", "network": {"inputs": inputs, "loss": loss, "layers": [
        {"units": u, "activation": a, **({"dropout": rest[0]} if rest else {})} for u, a, *rest in layers]},
        **tables}


def data(network, n=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, network.inputs))
    if network.loss.name == "cross_entropy":
        return X, rng.integers(0, network.outputs, size=n)
    if network.loss.name == "bce":
        return X, rng.uniform(0, 1, size=(n, network.outputs))
    return X, rng.normal(size=(n, network.outputs))


def torch_loss_and_grads(network, params, X, T, masks):
    """(loss, grads) in torch autograd with the same dropout masks multiplied in."""
    import torch
    import torch.nn.functional as F
    weights = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    a = torch.tensor(X)
    L = len(network.layers)
    for l, layer in enumerate(network.layers, start=1):
        z = a @ weights[f"W{l}"].T + weights[f"b{l}"]
        if l == L:
            break
        new = torch_activation(layer.activation)(z)
        if f"M{l}" in masks:
            new = new * torch.tensor(masks[f"M{l}"])
        a = new + a if layer.residual else new
    if network.loss.name == "cross_entropy":
        value = F.cross_entropy(z, torch.tensor(T))
    elif network.loss.name == "bce":
        value = F.binary_cross_entropy_with_logits(z, torch.tensor(T))
    else:
        value = F.mse_loss(z, torch.tensor(T))
    value.backward()
    return float(value.detach()), {k: w.grad.numpy() for k, w in weights.items()}


# ------------------------------------------------------------------------------------ dropout

@pytest.mark.parametrize("spec", DROPOUT_SPECS)
def test_dropout_gradients_with_a_fixed_mask(spec):
    network = derive(spec).network
    module = load_module(network)
    params = module.init_params(seed=1)
    X, T = data(network)
    masks = module.dropout_masks(X.shape[0], np.random.default_rng(2))
    assert any((m == 0).any() for m in masks.values())
    value, grads = module.loss_and_grads(params, X, T, masks=masks)
    fixed = types.SimpleNamespace(loss=lambda p, X, T: module.loss(p, X, T, masks=masks))
    numeric = central_differences(fixed, params, X, T)
    for name in params:
        assert relative_error(grads[name], numeric[name]) < 1e-6, name
    assert module.gradient_check(params, X, T) < 1e-6
    torch_value, torch_grads = torch_loss_and_grads(network, params, X, T, masks)
    assert abs(value - torch_value) < 1e-10
    for name in params:
        np.testing.assert_allclose(grads[name], torch_grads[name], rtol=0, atol=1e-10, err_msg=name)


def test_dropout_masks_are_inverted_and_reproducible():
    module = load_module("3 -> 400 relu dropout=0.3 -> 1 ; mse")
    masks = module.dropout_masks(500, np.random.default_rng(0))["M1"]
    assert masks.shape == (500, 400)
    assert set(np.unique(masks)) == {0.0, 1 / 0.7}
    assert abs((masks == 0).mean() - 0.3) < 0.01 and abs(masks.mean() - 1) < 0.02
    again = module.dropout_masks(500, np.random.default_rng(0))["M1"]
    np.testing.assert_array_equal(masks, again)
    assert not np.array_equal(masks, module.dropout_masks(500, np.random.default_rng(1))["M1"])
    params = module.init_params()
    X = np.random.default_rng(3).normal(size=(6, 3))
    first, _ = module.forward(params, X, rng=np.random.default_rng(5))
    second, _ = module.forward(params, X, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("spec", DROPOUT_SPECS)
def test_evaluation_has_no_dropout(spec):
    with_dropout = load_module(spec)
    without = load_module(spec.replace(" dropout=0.5", "").replace(" dropout=0.25", "").replace(" dropout=0.3", ""))
    network = derive(spec).network
    params = with_dropout.init_params(seed=4)
    X, T = data(network)
    Y, _ = with_dropout.forward(params, X)
    np.testing.assert_array_equal(Y, without.forward(params, X)[0])
    assert with_dropout.loss(params, X, T) == without.loss(params, X, T)
    trained, _ = with_dropout.forward(params, X, rng=np.random.default_rng(0))
    assert not np.allclose(trained, Y)


def test_networks_without_dropout_keep_the_plain_interface():
    module = load_module("2 -> 3 relu -> 1 ; mse")
    assert list(inspect.signature(module.forward).parameters) == ["params", "X"]
    assert list(inspect.signature(module.loss_and_grads).parameters) == ["params", "X", "T"]
    assert not hasattr(module, "dropout_masks")


# ----------------------------------------------------------------------------- initialization

TORCH_INIT = {
    "xavier_uniform": lambda t, gain, act: __import__("torch").nn.init.xavier_uniform_(t, gain=gain),
    "xavier_normal": lambda t, gain, act: __import__("torch").nn.init.xavier_normal_(t, gain=gain),
    "he_uniform": lambda t, gain, act: __import__("torch").nn.init.kaiming_uniform_(t, **act),
    "he_normal": lambda t, gain, act: __import__("torch").nn.init.kaiming_normal_(t, **act),
}
# (our activation, its torch.nn.init name and kaiming arguments)
INIT_LAYERS = [("relu", "relu", dict(nonlinearity="relu")),
               ({"type": "leaky_relu", "slope": 0.2}, ("leaky_relu", 0.2), dict(a=0.2, nonlinearity="leaky_relu")),
               ("tanh", "tanh", dict(nonlinearity="tanh")),
               ("sigmoid", "sigmoid", dict(nonlinearity="sigmoid"))]


@pytest.mark.parametrize("scheme", sorted(TORCH_INIT))
@pytest.mark.parametrize("activation, torch_name, kaiming", INIT_LAYERS, ids=lambda v: str(v)[:12])
def test_init_matches_torch_nn_init(scheme, activation, torch_name, kaiming):
    torch = pytest.importorskip("torch")
    spec = {"name": "net", "network": {"inputs": 300, "loss": "mse", "layers": [
        {"units": 500, "activation": activation}, {"units": 2}]}, "training": {"init": scheme}}
    params = load_module(spec).init_params(seed=0)
    ours = params["W1"]
    name, *param = torch_name if isinstance(torch_name, tuple) else (torch_name,)
    gain = torch.nn.init.calculate_gain(name, *param)
    theirs = torch.empty(500, 300, dtype=torch.float64)
    torch.manual_seed(0)
    TORCH_INIT[scheme](theirs, gain, kaiming)
    theirs = theirs.numpy()
    assert abs(ours.std() / theirs.std() - 1) < 0.02
    assert abs(ours.mean()) < 0.01 * theirs.std()
    if scheme.endswith("uniform"):
        bound = np.abs(theirs).max()
        assert np.abs(ours).max() <= bound * 1.001 and np.abs(ours).max() >= bound * 0.999
    assert not params["b1"].any()


def test_torch_init_is_nn_linear_default():
    torch = pytest.importorskip("torch")
    params = load_module(spec_with([(400, "relu"), (2, "identity")], inputs=300,
                                   training={"init": "torch"})).init_params()
    linear = torch.nn.Linear(300, 400).double()
    for ours, theirs in ((params["W1"], linear.weight), (params["b1"], linear.bias)):
        theirs = theirs.detach().numpy()
        assert np.abs(ours).max() <= 1 / np.sqrt(300) and np.abs(theirs).max() <= 1 / np.sqrt(300)
        assert abs(ours.std() / theirs.std() - 1) < 0.1


def test_default_init_follows_the_activation():
    module = load_module(spec_with([(4, {"type": "leaky_relu", "slope": 0.2}), (4, "tanh"), (4, "elu"),
                                    (3, "softmax")], loss="cross_entropy"))
    assert module.INIT == {1: ("he_uniform", pytest.approx(np.sqrt(2 / 1.04))),
                           2: ("xavier_uniform", pytest.approx(5 / 3)),
                           3: ("he_uniform", pytest.approx(np.sqrt(2))),
                           4: ("xavier_uniform", 1.0)}
    with pytest.raises(ChainruleError, match="init"):
        from_dict(spec_with([(2, "relu")], training={"init": "kaiming"}))


# ------------------------------------------------------------------------------------ train()

def regression_module(**tables):
    spec = spec_with([(8, "tanh"), (2, "identity")], **tables)
    module = load_module(spec)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    T = np.tanh(X @ rng.normal(size=(3, 2)))
    return module, X, T


def test_history_lengths_and_progress_lines(capsys):
    module, X, T = regression_module()
    history = module.train(module.init_params(), X, T, epochs=5, batch_size=8)
    assert set(history) == {"loss"} and len(history["loss"]) == 5
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()] == \
        [["epoch", f"{e}/5"] for e in range(1, 6)]
    history = module.train(module.init_params(), X[:30], T[:30], epochs=4, verbose=False,
                           X_val=X[30:], T_val=T[30:])
    assert len(history["loss"]) == len(history["val_loss"]) == 4
    assert capsys.readouterr().out == ""


def test_training_defaults_come_from_the_spec():
    module = load_module(spec_with([(2, "relu"), (1, "identity")],
                                   training={"epochs": 7, "batch_size": "full", "patience": 3, "seed": 5}))
    defaults = {k: p.default for k, p in inspect.signature(module.train).parameters.items()}
    assert (defaults["epochs"], defaults["batch_size"], defaults["patience"], defaults["seed"]) == (7, None, 3, 5)


def test_shuffling_is_reproducible_from_the_seed():
    module, X, T = regression_module(training={"batch_size": 4})
    runs = []
    for seed in (3, 3, 4):
        params = module.init_params()
        module.train(params, X, T, epochs=3, seed=seed, verbose=False)
        runs.append(params)
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(np.array_equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_dropout_training_is_reproducible_from_the_seed():
    module = load_module("3 -> 8 relu dropout=0.5 -> 2 ; mse")
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    first, second = module.init_params(), module.init_params()
    module.train(first, X, T, epochs=2, batch_size=5, seed=1, verbose=False)
    module.train(second, X, T, epochs=2, batch_size=5, seed=1, verbose=False)
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_early_stopping_stops_and_restores_the_best_parameters():
    module, X, T = regression_module(optimizer={"type": "adam", "lr": 0.05})
    X_val, T_val = X[:10], -T[:10]  # targets the training data contradicts: val_loss soon rises
    params = module.init_params()
    history = module.train(params, X, T, epochs=200, batch_size=10, verbose=False,
                           X_val=X_val, T_val=T_val, patience=3)
    best = history["best_epoch"]
    assert len(history["loss"]) == best + 3 + 1 < 200
    assert history["val_loss"][best] == min(history["val_loss"])
    assert module.loss(params, X_val, T_val) == pytest.approx(min(history["val_loss"]), rel=1e-12)
    without = module.init_params()
    assert len(module.train(without, X, T, epochs=30, batch_size=10, verbose=False)["loss"]) == 30


TORCH_RUNS = [
    ({"type": "adam", "lr": 0.01}, None, {}),
    ({"type": "sgd", "lr": 0.1, "momentum": 0.9}, {"type": "step", "step_size": 1, "gamma": 0.5}, {"clip_norm": 0.5}),
    ({"type": "sgd", "lr": 0.1}, {"type": "cosine", "T_max": 3}, {}),  # its module needs `import math`
]
TORCH_SCHEDULES = {
    "step": lambda torch, opt, s: torch.optim.lr_scheduler.StepLR(opt, s["step_size"], s["gamma"]),
    "cosine": lambda torch, opt, s: torch.optim.lr_scheduler.CosineAnnealingLR(opt, s["T_max"]),
}


@pytest.mark.parametrize("optimizer, schedule, training", TORCH_RUNS)
def test_train_equals_a_torch_loop(optimizer, schedule, training):
    torch = pytest.importorskip("torch")
    tables = {"optimizer": optimizer, "training": training, **({"schedule": schedule} if schedule else {})}
    module, X, T = regression_module(**tables)
    params = module.init_params(seed=2)
    weights = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    module.train(params, X, T, epochs=2, batch_size=16, shuffle=False, verbose=False)

    kind = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer["type"]]
    opt = kind(list(weights.values()), **{k: v for k, v in optimizer.items() if k != "type"})
    sched = TORCH_SCHEDULES[schedule["type"]](torch, opt, schedule) if schedule else None
    for _ in range(2):
        for start in range(0, len(X), 16):  # batches in order: 16, 16, 8
            xb, tb = torch.tensor(X[start:start + 16]), torch.tensor(T[start:start + 16])
            opt.zero_grad()
            hidden = torch.tanh(xb @ weights["W1"].T + weights["b1"])
            torch.nn.functional.mse_loss(hidden @ weights["W2"].T + weights["b2"], tb).backward()
            if "clip_norm" in training:
                torch.nn.utils.clip_grad_norm_(list(weights.values()), training["clip_norm"])
            opt.step()
        if sched:
            sched.step()
    for name, tensor in weights.items():
        np.testing.assert_allclose(params[name], tensor.detach().numpy(), rtol=0, atol=1e-12, err_msg=name)


# ------------------------------------------------------------------------------ command line

BAD_FLAGS = [
    ["--lr", "-0.1"],
    ["--lr", "fast"],
    ["--optimizer", "adamm"],
    ["--optimizer", "adam", "--betas", "0.9,1.0"],
    ["--optimizer", "sgd", "--betas", "0.9,0.99"],
    ["--epochs", "0"],
    ["--batch-size", "half"],
    ["--clip-norm", "1", "--clip-value", "1"],
    ["--patience", "0"],
    ["--schedule", "cosine"],
    ["--schedule", "step", "--schedule-arg", "step_size"],
    ["--init", "kaiming"],
]


@pytest.mark.parametrize("flags", BAD_FLAGS, ids=lambda flags: " ".join(flags))
def test_cli_rejects_bad_training_flags_in_one_line(flags, tmp_path):
    out = tmp_path / "net.py"
    run = subprocess.run([sys.executable, "-m", "codegen.cli", "generate", "generated/specs/simple_nn.toml",
                          "-o", str(out), *flags], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and run.stderr.startswith("chainrule: error:"), run.stderr
    assert not out.exists()


def test_cli_training_flags_override_the_spec(tmp_path):
    out = tmp_path / "net.py"
    flags = ["--optimizer", "adam", "--lr", "0.01", "--betas", "0.8,0.99", "--epochs", "3", "--batch-size", "full",
             "--clip-norm", "2", "--patience", "4", "--init", "he_normal", "--schedule", "multistep",
             "--schedule-arg", "milestones=2,5", "--seed", "9"]
    run = subprocess.run([sys.executable, "-m", "codegen.cli", "generate", "generated/specs/digits.toml",
                          "-o", str(out), *flags], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    source = out.read_text()
    assert "lr=0.01, betas=(0.8, 0.99)" in source and "CLIP_NORM = 2.0" in source
    assert "milestones=(2, 5)" in source and '("he_normal"' in source
    assert "epochs=3, batch_size=None, seed=9" in source and "patience=4" in source
    assert "--init he_normal" in source.split("Regenerate with:")[1].splitlines()[0]


# ----------------------------------------------------------------------------------- digits

def test_digits_classifier_reaches_95_percent():
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split
    module = load_module(ROOT / "generated" / "specs" / "digits.toml")
    X, y = datasets.load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16, y, test_size=0.25, random_state=0)
    params = module.init_params(seed=0)
    history = module.train(params, X_train, y_train, verbose=False)
    assert len(history["loss"]) == 20 and history["loss"][-1] < history["loss"][0]
    Y, _ = module.forward(params, X_test)
    assert (Y.argmax(axis=1) == y_test).mean() >= 0.95
