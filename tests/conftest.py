"""Fixtures shared by the test layers that read a whole output folder (e2e, integration).

``metrics``: synthetic metrics rows (see ``tests/synthetic_output.py``). ``demo``: a
small generated sample run once per session through the real pipeline.
"""

import os

import pytest
from hypothesis import settings

from tests.synthetic_output import run_demo, synthetic_metrics

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


def pytest_terminal_summary(terminalreporter):
    """The ``evidence`` section: see ``tests/evidence.py``."""
    from tests import evidence

    if evidence.lines():
        terminalreporter.section("evidence")
        for line in evidence.lines():
            terminalreporter.write_line(line)
