"""The emitted module's vectorized erf (the `_erf` helper of every gelu network), taken from a
generated module as users get it: accuracy against math.erf and mpmath in float64 and float32,
the erfc side, odd symmetry, dtype and shape, and the special values, without warnings."""
import math
import warnings

import mpmath
import numpy as np
import pytest

from gradcheck import load_module

#: The helper's branch edges (fdlibm's): the tests crowd points around each of them.
EDGES = (0.84375, 1.25, 1 / 0.35, 6.0)


@pytest.fixture(scope="module")
def erf():
    return load_module("2 -> 3 gelu -> 1 ; mse")._erf


def math_erf(x):
    return np.array([math.erf(v) for v in x.tolist()])


def max_relative_error(got, want) -> float:
    """max |got - want| / |want|; where want is 0, got must be 0 too (inf otherwise)."""
    zero = want == 0
    if not np.array_equal(got[zero], want[zero]):
        return math.inf
    return float((np.abs(got[~zero] - want[~zero]) / np.abs(want[~zero])).max())


def around_edges(ulps=64):
    """Every edge and its neighbours up to `ulps` float64 steps away, both signs."""
    points = np.concatenate([edge + np.arange(-ulps, ulps + 1) * np.spacing(edge) for edge in EDGES])
    return np.concatenate([points, -points])


def test_float64_within_4e_16_of_math_erf(erf):
    rng = np.random.default_rng(0)
    tiny = np.geomspace(1e-300, 1e-3, 3000)
    x = np.concatenate([np.linspace(-10, 10, 2_000_001), rng.uniform(-10, 10, 1_000_000), around_edges(),
                        tiny, -tiny])
    got = erf(x)
    assert got.dtype == np.float64
    assert max_relative_error(got, math_erf(x)) <= 4e-16


def test_erfc_side_within_one_ulp_of_one(erf):
    """Where erf >= 1/2, 1 - erf is exact (Sterbenz), so 1 - erf can be compared with math.erfc: the
    bound is 2^-53 (one ulp of [1/2, 1), the helper's absolute error) plus math.erfc's own one ulp.
    erfc's relative accuracy cannot be asked of erf once erfc is below an ulp of 1."""
    rng = np.random.default_rng(1)
    x = np.concatenate([np.linspace(0.47, 7, 1_000_001), rng.uniform(0.47, 7, 200_000), np.abs(around_edges())])
    x = x[math_erf(x) >= 0.5]
    erfc = np.array([math.erfc(v) for v in x.tolist()])
    assert np.all(np.abs((1 - erf(x)) - erfc) <= 2.0 ** -53 + 2.0 ** -52 * erfc)


def test_within_one_ulp_of_the_exact_value(erf):
    """Against mpmath at 40 digits (math.erf is itself within an ulp, not exact)."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(0, 6.5, 1500), np.geomspace(1e-300, 1, 200), np.abs(around_edges(4))])
    with mpmath.workdps(40):
        exact = [mpmath.erf(mpmath.mpf(v)) for v in x.tolist()]
        error = [abs(mpmath.mpf(g) - e) / np.spacing(float(e)) for g, e in zip(erf(x).tolist(), exact)]
    assert max(error) <= 1


def test_float32_within_1_4_ulp_of_math_erf(erf):
    """A float32 input gets _erf32, Arm's float32 erff: within 1.4 float32 ulps of math.erf (itself within
    a float64 ulp, far below that) at the same float32 input; tiny and subnormal inputs included."""
    rng = np.random.default_rng(3)
    tiny = np.geomspace(1.2e-38, 1e-3, 3000, dtype=np.float32)
    x = np.concatenate([np.linspace(-10, 10, 2_000_001, dtype=np.float32),
                        rng.uniform(-10, 10, 1_000_000).astype(np.float32), tiny, -tiny,
                        around_edges().astype(np.float32)])
    got = erf(x)
    assert got.dtype == np.float32
    want = math_erf(x)
    assert np.max(np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32))) <= 1.4


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_odd_dtype_and_shape(erf, dtype):
    x = np.random.default_rng(4).normal(scale=3.0, size=(3, 4, 10)).astype(dtype)
    got = erf(x)
    assert got.dtype == dtype and got.shape == x.shape
    assert np.array_equal(erf(-x), -got)
    np.testing.assert_array_equal(erf(x[:, ::2, 1::3]), got[:, ::2, 1::3])
    scalar = erf(np.array(0.5, dtype=dtype))
    assert scalar.shape == () and scalar.dtype == dtype and scalar == erf(np.array([0.5], dtype=dtype))[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_special_values_without_warnings(erf, dtype):
    big = np.finfo(dtype).max
    x = np.array([0.0, -0.0, np.inf, -np.inf, big, -big, 6.0, -6.0, 1e30, -1e30, np.nan], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        got = erf(x)
    np.testing.assert_array_equal(got[:10], [0, 0, 1, -1, 1, -1, 1, -1, 1, -1])
    assert not np.signbit(got[0]) and np.signbit(got[1])
    assert np.isnan(got[10])


def test_subnormal_inputs_within_one_spacing(erf):
    """Below the normal range erf(x) = 2x/sqrt(pi) is subnormal too: absolute error, one spacing."""
    x = np.geomspace(5e-324, 2.2e-308, 2000)
    x = np.concatenate([x, -x])
    assert np.all(np.abs(erf(x) - math_erf(x)) <= 5e-324)
