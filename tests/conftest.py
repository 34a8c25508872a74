"""Test-suite options: ``--fuzz-long`` (or CHAINRULE_FUZZ_EXAMPLES=N) runs the fuzzers of
tests/test_fuzz.py with many more cases than CI's bounded budget."""
import dataclasses
import os

import pytest
from hypothesis import HealthCheck, settings

#: Cases per fuzzer in CI; a minute or two for all of them on two cores.
CI_EXAMPLES = 60
LONG_EXAMPLES = 2000


def pytest_addoption(parser):
    parser.addoption("--fuzz-long", action="store_true",
                     help=f"run each fuzzer of tests/test_fuzz.py for {LONG_EXAMPLES} cases instead of {CI_EXAMPLES}")


def pytest_configure(config):
    examples = int(os.environ.get("CHAINRULE_FUZZ_EXAMPLES", 0)) or \
        (LONG_EXAMPLES if config.getoption("--fuzz-long") else CI_EXAMPLES)
    settings.register_profile("fuzz", max_examples=examples, deadline=None, derandomize=not config.getoption("--fuzz-long"),
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                     HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])


@pytest.fixture
def slipped(monkeypatch):
    """``slipped(key)``: from then on ``derive.derive`` doubles the right-hand side of the step for ``key``
    (sample and batch), a wrong step for ``chainrule verify`` to find."""
    import derive
    real = derive.derive

    def slip(key):
        def with_a_slip(spec):
            d = real(spec)
            for steps in (d.sample_steps, d.steps):
                i = next(i for i, s in enumerate(steps) if s.target.key == key)
                steps[i] = dataclasses.replace(steps[i], rhs=2 * steps[i].rhs)
            return d
        monkeypatch.setattr(derive, "derive", with_a_slip)
    return slip
