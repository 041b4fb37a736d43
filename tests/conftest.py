"""Fixtures shared by the test layers that read a whole output folder (e2e, integration).

``metrics``: synthetic metrics rows (see ``tests/synthetic_output.py``). ``demo``: a
small generated sample run once per session through the real pipeline; ``make_demo``:
the sample and SLO file of ``make demo`` (its region=apac pages), also once per session.
"""

import os

import pytest
from hypothesis import settings

from tests.synthetic_output import DEMO_SLO, run_demo, synthetic_metrics

# Property tests are reproducible in CI: the same examples on every run (`.ci/run` sets
# CI=1); locally Hypothesis explores new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def metrics():
    """Synthetic ``metrics`` rows (a pandas DataFrame)."""
    return synthetic_metrics()


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """``(OUTPUT, generator stats)`` of the demo sample, run once per session."""
    return run_demo(tmp_path_factory.getbasetemp() / "demo")


@pytest.fixture(scope="session")
def make_demo(tmp_path_factory):
    """``(OUTPUT, generator stats)`` of ``make demo``: 20,000 predictions over 3 days
    (seed 7), ``--slo docs/examples/demo-slo.yaml``; about 15 s, once per session."""
    base = tmp_path_factory.getbasetemp() / "make-demo"
    return run_demo(base, predictions=20000, days=3.0, seed=7, slo=DEMO_SLO)


def pytest_terminal_summary(terminalreporter):
    """The ``evidence`` section: see ``tests/evidence.py``."""
    from tests import evidence

    if evidence.lines():
        terminalreporter.section("evidence")
        for line in evidence.lines():
            terminalreporter.write_line(line)
