"""``msewatch gameday`` on the stationary month, for real, with a twitchy SLO file: its
alerts flap, and the game day fails with the setting that calms them. (The shipped
stationary SLO fires nothing there: ``tests/e2e/test_gameday.py``.) The twitchy file and
why it flaps: ``tests/unit/test_gameday_flapping.py``.
"""

import pytest

from msewatch import cli
from msewatch.commands import gameday
from tests.unit.test_gameday_flapping import TWITCHY

pytestmark = pytest.mark.slow


def test_a_twitchy_config_fails_the_stationary_game_day_as_flapping(tmp_path, capsys):
    slo = tmp_path / "twitchy.yaml"
    slo.write_text(TWITCHY)
    argv = ["gameday", "--scenario", "stationary", "--slo", str(slo), "--keep", str(tmp_path)]
    assert cli.main(argv) == gameday.EXIT_MISMATCH
    out = capsys.readouterr().out
    flagged = [line.split()[:2] for line in out.splitlines() if line.rstrip().endswith("FLAPPING")]
    assert sorted(flagged) == sorted(
        [mode, f"twitchy-rmse/page/region={r}"]
        for mode in ("bounded", "replay")
        for r in ("na", "eu", "apac")
    )
    assert "flapping: twitchy-rmse/page/region=na: fired 2 times in the 24 h" in out
    assert "calm it with keep_firing_for: " in out and "(now 0s)" in out
    # (the replay also flips at one frontier, as panes of 80 % coverage settle windows
    # whose final RMSE is on the other side of the threshold: its periods differ)
    assert "game day FAILED: stationary" in out
