"""Issue 10, item 7: the emitted module's public functions validate what they are given.

Every bad input is a ValueError naming the argument; good inputs in other forms (nested lists,
integers, float32) give the numbers the arrays give; extreme finite inputs raise no NumPy warning.
"""
import importlib.util
import re
import warnings

import numpy as np
import pytest

from codegen.emit import generate
from derive import derive
from gradcheck import load_module

SPECS = {
    "mse": ("3 -> 4 tanh -> 2 ; mse", "float64"),
    "bce": ("3 -> 4 relu -> 1 sigmoid ; bce", "float64"),
    "ce": ("3 -> 4 relu -> 3 softmax ; cross_entropy", "float64"),
    "dropout": ("3 -> 4 relu dropout=0.5 -> 2 ; mse", "float64"),
    "gelu32": ("3 -> 4 gelu -> 2 ; mse", "float32"),
}


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    folder = tmp_path_factory.mktemp("emitted")
    out = {}
    for key, (spec, dtype) in SPECS.items():
        path = folder / f"inputs_{key}.py"
        path.write_text(generate(derive(spec), dtype=dtype), encoding="utf-8")
        loader = importlib.util.spec_from_file_location(f"inputs_{key}", path)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        out[key] = module
    return out


def data(m, n=6, seed=1):
    """(params, X, T): good inputs for module m, T in the loss's domain."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, m.INPUTS)).astype(m.DTYPE)
    if m.OUTPUTS == 3:   # the cross-entropy module: class indices
        T = rng.integers(0, 3, size=n)
    elif "bce" in m.__name__:
        T = (rng.random((n, 1)) > 0.5).astype(m.DTYPE)
    else:
        T = rng.normal(size=(n, m.OUTPUTS)).astype(m.DTYPE)
    return m.init_params(seed=0), X, T


def call(m, fn, params, X, T, **kw):
    if fn == "forward":
        return m.forward(params, X, **kw)
    if fn == "train":
        return m.train(params, X, T, epochs=1, verbose=False, **kw)
    return getattr(m, fn)(params, X, T, **kw)


FUNCTIONS = ("forward", "loss", "loss_and_grads", "train", "gradient_check")


def with_nan(a, value=np.nan):
    a = np.array(a, dtype=np.float64)
    a.flat[-1] = value
    return a


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("key", ["mse", "dropout", "gelu32"])
def test_non_finite_inputs_and_parameters_are_refused(modules, key, fn, value):
    m = modules[key]
    params, X, T = data(m)
    last = f"[{X.shape[0] - 1}, {X.shape[1] - 1}]"
    with pytest.raises(ValueError, match=r"^X must hold finite numbers; X" + re.escape(last) + f" is {value}"):
        call(m, fn, params, with_nan(X, value).astype(m.DTYPE), T)
    bad = {**params, "b2": with_nan(params["b2"], value).astype(m.DTYPE)}
    with pytest.raises(ValueError, match=r"^params\['b2'\] must hold finite numbers; params\['b2'\]\[1\] is"):
        call(m, fn, bad, X, T)
    if fn != "forward":
        with pytest.raises(ValueError, match=r"^T must hold finite numbers; T\[5, 1\]"):
            call(m, fn, params, X, with_nan(T, value))



@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("bad, what", [
    (np.array([["a", "b", "c"]] * 2), "strings"),
    (np.array([[1, None, 2]] * 2, dtype=object), "Python objects"),
    (np.ones((2, 3)) + 1j, "complex numbers"),
])
def test_strings_objects_and_complex_are_refused(modules, fn, bad, what):
    m = modules["mse"]
    params, X, T = data(m, n=2)
    with pytest.raises(ValueError, match=rf"^X must hold real numbers .*; got {what}"):
        call(m, fn, params, bad, T)
    if fn != "forward":
        with pytest.raises(ValueError, match=rf"^T must hold real numbers .*; got {what}"):
            call(m, fn, params, X, bad[:, :2])
    with pytest.raises(ValueError, match=rf"^params\['W2'\] must hold real numbers .*; got {what}"):
        call(m, fn, {**params, "W2": bad[:, :4].T[:2] if what != "strings" else [["x"] * 4] * 2}, X, T)


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_an_empty_batch_and_ragged_lists_are_refused(modules, fn):
    m = modules["ce"]
    params, X, T = data(m)
    with pytest.raises(ValueError, match=r"^X must have shape \(N, 3\) with N >= 1.*got shape \(0, 3\)"):
        call(m, fn, params, X[:0], T[:0])
    with pytest.raises(ValueError, match=r"^X must be an array of numbers; NumPy cannot read the list"):
        call(m, fn, params, [[1.0, 2.0, 3.0], [1.0]], T[:2])
    with pytest.raises(ValueError, match=r"^params\['W1'\] must be an array of numbers"):
        call(m, fn, {**params, "W1": [[1.0] * 3] * 3 + [[1.0]]}, X, T)


@pytest.mark.parametrize("fn", FUNCTIONS[1:])
@pytest.mark.parametrize("key, target, pattern", [
    ("bce", [[1.5]], r"^T must hold targets in \[0, 1\] for bce .*; T\[0, 0\] is 1.5"),
    ("bce", [[-0.25]], r"^T must hold targets in \[0, 1\] for bce .*; T\[0, 0\] is -0.25"),
    ("ce", [[0.5, 0.6, 0.0]], r"^rows of T must be one-hot or probabilities .*; row 0 sums to 1.1"),
    ("ce", [[1.5, -0.5, 0.0]], r"^rows of T must be one-hot or probabilities .*; T\[0, 0\] is 1.5"),
    ("ce", [3], r"^class indices in T must be in 0..2, got 3..3"),
    ("ce", [True], r"^class indices in T must be integers, got dtype bool"),
])
def test_targets_outside_the_losss_domain_are_refused(modules, fn, key, target, pattern):
    m = modules[key]
    params, X, _ = data(m, n=1)
    with pytest.raises(ValueError, match=pattern):
        call(m, fn, params, X, np.array(target))


def test_probability_rows_are_cross_entropys_soft_targets(modules):
    m = modules["ce"]
    params, X, T = data(m)
    one_hot = np.eye(3)[T]
    assert m.loss(params, X, one_hot) == pytest.approx(m.loss(params, X, T), rel=1e-12)
    soft = np.full((6, 3), 1 / 3)
    Y, _ = m.forward(params, X)
    expected = -np.mean(np.log(Y).sum(axis=1) / 3)
    assert m.loss(params, X, soft) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name, value, pattern", [
    ("batch_size", 0, r"^batch_size must be an integer >= 1; got 0"),
    ("batch_size", -1, r"^batch_size must be an integer >= 1; got -1"),
    ("batch_size", 2.0, r"^batch_size must be an integer >= 1; got 2.0"),
    ("batch_size", True, r"^batch_size must be an integer >= 1; got True"),
    ("epochs", 0, r"^epochs must be an integer >= 1; got 0"),
    ("epochs", -3, r"^epochs must be an integer >= 1; got -3"),
    ("epochs", "5", r"^epochs must be an integer >= 1; got '5'"),
    ("patience", 0, r"^patience must be an integer >= 1; got 0"),
    ("seed", -1, r"^seed must be an integer >= 0; got -1"),
    ("seed", 0.5, r"^seed must be an integer >= 0; got 0.5"),
])
def test_train_settings_out_of_range_are_refused(modules, name, value, pattern):
    m = modules["dropout"]
    params, X, T = data(m)
    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(ValueError, match=pattern):
        m.train(params, X, T, verbose=False, **{name: value})
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


@pytest.mark.parametrize("eps", [0, -1e-6, np.nan, np.inf, "1e-6", True])
def test_gradient_check_step_out_of_range_is_refused(modules, eps):
    m = modules["mse"]
    params, X, T = data(m)
    with pytest.raises(ValueError, match=r"^eps must be a finite number > 0 .*; got"):
        m.gradient_check(params, X, T, eps=eps)


def test_large_batch_sizes_and_int64_settings_work(modules):
    m = modules["mse"]
    params, X, T = data(m)
    history = m.train(params, X, T, epochs=np.int64(2), batch_size=100, seed=np.int64(3), verbose=False)
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()


@pytest.mark.parametrize("key", ["mse", "bce", "ce", "gelu32"])
def test_lists_and_integers_give_the_numbers_arrays_give(modules, key):
    m = modules[key]
    params, X, T = data(m)
    X = np.round(X * 4)  # integers, so that the int array is the same data
    lists = {k: v.tolist() for k, v in params.items()}
    ints = X.astype(np.int64)
    L, grads = m.loss_and_grads(params, X, T)
    for p, x, t in ((lists, X, T), (params, ints, T), (params, X.tolist(), np.asarray(T).tolist())):
        L2, grads2 = m.loss_and_grads(p, x, t)
        assert L2 == L
        for k in grads:
            assert grads2[k].dtype == m.DTYPE
            np.testing.assert_array_equal(grads2[k], grads[k])
    np.testing.assert_array_equal(m.forward(lists, ints)[0], m.forward(params, X)[0])
    assert m.gradient_check(lists, ints, T) == m.gradient_check(params, X, T)
    trained = {k: v.copy() for k, v in params.items()}
    history = m.train(trained, X, T, epochs=2, batch_size=2, verbose=False)
    history_lists = m.train(lists, ints, T, epochs=2, batch_size=2, verbose=False)
    assert history_lists == history
    for k in params:  # the dict given as lists now holds the trained arrays
        np.testing.assert_array_equal(lists[k], trained[k])


def test_booleans_are_read_as_zero_and_one(modules):
    m = modules["bce"]
    params, X, T = data(m)
    mask = X > 0
    assert m.loss(params, mask, T.astype(bool)) == m.loss(params, mask.astype(float), T)


def test_params_that_are_not_a_dict_or_lack_a_key_are_refused(modules):
    m = modules["mse"]
    params, X, T = data(m)
    with pytest.raises(ValueError, match=r"^params must be a dict from names to arrays.*got list"):
        m.loss(list(params.values()), X, T)
    with pytest.raises(ValueError, match=r"^params has no 'b1'"):
        m.loss({"W1": params["W1"]}, X, T)
    with pytest.raises(ValueError, match=r"^params\['W2'\] must have shape \(2, 4\), got \(4, 2\)"):
        m.loss({**params, "W2": params["W2"].T.tolist()}, X, T)
    with pytest.raises(ValueError, match=r"^params must have only the keys .*got also \['extra'\]"):
        m.train({**params, "extra": np.zeros(2)}, X, T, verbose=False)


def test_float64_values_beyond_float32_are_named(modules):
    m = modules["gelu32"]
    params, X, T = data(m)
    X = X.astype(np.float64)
    X[2, 1] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^X must hold finite numbers that fit in float32 .*; X\[2, 1\] is 1e\+300"):
            m.loss(params, X, T)


def test_train_checks_its_data_once_not_per_batch(modules, monkeypatch):
    m = modules["dropout"]
    params, X, T = data(m, n=12)
    calls = []
    real = m._real
    monkeypatch.setattr(m, "_real", lambda *a: calls.append(a[1]) or real(*a))
    m.train({k: v.copy() for k, v in params.items()}, X, T, epochs=1, batch_size=12, verbose=False,
            X_val=X, T_val=T)
    once = list(calls)
    calls.clear()
    m.train({k: v.copy() for k, v in params.items()}, X, T, epochs=4, batch_size=1, verbose=False,
            X_val=X, T_val=T)
    assert calls == once == ["X", "T", "X", "T"]


EXTREMES = {"float32": (1e30, 3e38, 3.4028235e38), "float64": (1e30, 1e300, 1.79e308)}


@pytest.mark.parametrize("key", ["mse", "bce", "ce", "dropout", "gelu32"])
def test_extreme_finite_inputs_raise_no_numpy_warning(modules, key):
    """Pre-activations at ±1e30, ±3e38 (float32) and ±1e300 (float64): every activation, its
    derivative and the loss run without a warning (the second layer's weights are 0, so that the
    output, the loss and the gradients are finite and only the element-wise formulas see z)."""
    m = modules[key]
    params, _, T = data(m, n=2)
    params = {k: np.zeros_like(v) for k, v in params.items()}
    params["W1"][0, 0] = 1  # Z1[:, 0] = X[:, 0]
    dtype = np.dtype(m.DTYPE).name
    for z in EXTREMES[dtype]:
        X = np.zeros((2, m.INPUTS), dtype=m.DTYPE)
        X[:, 0] = (z, -z)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Y, _ = m.forward(params, X)
            L, grads = m.loss_and_grads(params, X, T)
            m.train({k: v.copy() for k, v in params.items()}, X, T, epochs=1, verbose=False)
        assert np.isfinite(Y).all() and np.isfinite(L)
        assert all(np.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("key", ["bce", "ce"])
def test_extreme_logits_raise_no_numpy_warning(modules, key):
    """The fused losses on logits at ±1e300 and each target: softplus and log-sum-exp stay finite."""
    m = modules[key]
    params, _, _ = data(m, n=2)
    params = {k: np.zeros_like(v) for k, v in params.items()}
    params["W2"][0, 0] = 1  # the first logit is relu(X[:, 0])
    params["W1"][0, 0] = 1
    for z in EXTREMES["float64"]:
        X = np.zeros((2, m.INPUTS))
        X[:, 0] = (z, 1.0)
        for target in ([0, 1] if key == "ce" else [[0.0], [1.0]]):
            T = np.array([target, target]).reshape(2, -1) if key == "bce" else np.array([target, target])
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                L, grads = m.loss_and_grads(params, X, T)
            assert np.isfinite(L) and all(np.isfinite(g).all() for g in grads.values())


def test_a_refused_train_leaves_the_callers_params_as_they_were(modules):
    m = modules["mse"]
    params, X, T = data(m)
    lists = {k: v.tolist() for k, v in params.items()}
    with pytest.raises(ValueError, match=r"^X must hold finite numbers"):
        m.train(lists, with_nan(X), T, verbose=False)
    assert all(isinstance(v, list) for v in lists.values())


@pytest.mark.parametrize("n", [2, 40])  # a small X is summed in Python, a large one by BLAS
def test_finite_values_whose_sum_overflows_are_accepted(modules, n):
    m = modules["mse"]
    params, _, T = data(m, n=n)
    X = np.full((n, 3), 1e200)
    X[:, 1] = 1.7e308
    with np.errstate(all="ignore"):  # the network's own overflow is not the point here
        Y, _ = m.forward(params, X)
        m.loss(params, X, T)
    assert Y.shape == (n, 2)


@pytest.mark.parametrize("fn", ["forward", "loss", "loss_and_grads"])
def test_dropout_masks_and_rng_given_are_checked(modules, fn):
    m = modules["dropout"]
    params, X, T = data(m)
    good = m.dropout_masks(6, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^rng must be a numpy Generator .*; got int"):
        call(m, fn, params, X, T, rng=0)
    with pytest.raises(ValueError, match=r"^masks must be a dict with the keys \['M1'\].*; got \['M2'\]"):
        call(m, fn, params, X, T, masks={"M2": good["M1"]})
    with pytest.raises(ValueError, match=r"^masks\['M1'\] must have shape \(6, 4\), one row per sample; got \(5, 4\)"):
        call(m, fn, params, X, T, masks={"M1": good["M1"][:5]})
    with pytest.raises(ValueError, match=r"^masks\['M1'\] must hold finite numbers; masks\['M1'\]\[5, 3\] is nan"):
        call(m, fn, params, X, T, masks={"M1": with_nan(good["M1"])})
    as_lists = call(m, fn, params, X, T, masks={"M1": good["M1"].tolist()})
    as_arrays = call(m, fn, params, X, T, masks=good)
    if fn == "loss":
        assert as_lists == as_arrays
    else:
        np.testing.assert_array_equal(as_lists[0], as_arrays[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logits_further_apart_than_the_dtype_holds_raise_no_warning(dtype):
    """Logits ±0.9 of the dtype's largest number, the target the larger one: z - max(z) is below the
    dtype's range (exp gives 0 exactly), and y lse - y z keeps the other class's term 0 (y (lse - z)
    was 0 * inf = nan)."""
    m = load_module("2 -> 2 softmax ; cross_entropy", dtype=dtype, name=f"ce_apart_{dtype}")
    big = 0.9 * np.finfo(dtype).max
    params = {"W1": np.zeros((2, 2), dtype), "b1": np.array([big, -big], dtype)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L, grads = m.loss_and_grads(params, np.zeros((1, 2), dtype), np.array([0]))
    assert L == 0 and all((g == 0).all() for g in grads.values())
