"""The replay's test clock adapter (msewatch.runners.direct_clock): in force only inside
``early_test_clock``, restored after, refused when Beam's runner has changed shape.

Its effect on a whole replay (windows before 1970 close, no stall) is tested in
``tests/pipeline/test_extreme_times.py``.
"""

from __future__ import annotations

import pytest
from apache_beam.runners.direct import clock, direct_runner

from msewatch.runners import direct_clock
from msewatch.schemas.time_range import EARLIEST_MS, MAX_DURATION_MS


def test_clock_starts_before_every_accepted_window_and_is_restored():
    with direct_clock.early_test_clock():
        test_clock = direct_runner.TestClock()
        # before the earliest window end (a sliding window ends up to one window
        # after its start, which is at most one window before the first record)
        assert test_clock.time() * 1000 < EARLIEST_MS - 2 * MAX_DURATION_MS
        test_clock.advance_time(60)
        assert test_clock.time() == pytest.approx(direct_clock.ORIGIN.micros / 1e6 + 60)
    assert direct_runner.TestClock is clock.TestClock
    assert direct_runner.TestClock().time() == 0  # Beam's own origin again


def test_clock_is_restored_after_an_error():
    with pytest.raises(KeyError), direct_clock.early_test_clock():
        raise KeyError("boom")
    assert direct_runner.TestClock is clock.TestClock


def test_an_unexpected_runner_layout_is_refused(monkeypatch):
    monkeypatch.setattr(direct_runner, "TestClock", object)
    with pytest.raises(RuntimeError, match="direct_clock.py"), direct_clock.early_test_clock():
        pass
