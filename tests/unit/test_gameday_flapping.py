"""``msewatch gameday`` fails a config whose alert flaps on the stationary scenario.

The stationary month (6 h windows, healthy RMSE about hypot(8, 5) = 9.43) is generated
and its window rows are computed here with pandas from the records (RMSE per region
and 6 h window; every label arrives within 4 h, so each window is complete), then
evaluated by the SLO kernel as a bounded run does: the twitchy SLO below (threshold
9.5, next to the healthy RMSE: about 45 % of the windows are bad by chance; both
lookbacks the newest window; ``keep_firing_for: 0``) flaps, the shipped
``SIX_HOURLY_SLO`` fires nothing. The game-day runs themselves are faked here (as in
``test_gameday.py``); ``tests/e2e/test_gameday.py`` runs them.
"""

import numpy as np
import pandas as pd
import pytest

from msewatch import cli
from msewatch.commands import flaps, gameday, scenarios
from msewatch.transforms.slo.config import load_slo_file
from msewatch.transforms.slo.kernel import evaluate_history

TWITCHY = """\
version: 1
slos:
  - name: twitchy-rmse
    sli: rmse
    threshold: 9.5             # the healthy RMSE is about 9.4
    objective: 0.99
    slices: ["region=*"]
    alerting:
      page: [{long: 6h, short: 1h, burn_rate: 14.4}]
      ticket: []
    keep_firing_for: 0
"""
EMITTED = pd.Timestamp("2026-12-01", tz="UTC")


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """Region -> the stationary scenario's 6 h window rows, from the records."""
    folder = tmp_path_factory.mktemp("stationary")
    scenarios.generate_scenario("stationary", str(folder), seed=7)
    p = pd.read_json(folder / "predictions.jsonl", lines=True)
    lab = pd.read_json(folder / "labels.jsonl", lines=True)
    df = p.merge(lab, on="prediction_id", how="left")
    df["region"] = df["segments"].map(lambda s: s["region"])
    df["se"] = (df["y_pred"] - df["y_true"]) ** 2
    start = pd.to_datetime(df["event_time"], utc=True).dt.floor("6h")
    df["start_ms"] = (start - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    out = {}
    for region, part in df.groupby("region"):
        g = part.groupby("start_ms").agg(n=("se", "size"), mse=("se", "mean"))
        n = g["n"].to_numpy()
        out[region] = {
            "window_start_ms": g.index.to_numpy(),
            "window_end_ms": g.index.to_numpy() + 6 * 3_600_000,
            "predictions": n, "labeled": n, "scored": n, "sum_w": n.astype(float),
            "label_coverage": np.ones(len(n)), "complete": np.ones(len(n), bool),
            "rmse": np.sqrt(g["mse"].to_numpy()),
        }  # fmt: skip
    return out


def _alerts(slo_text: str, tmp_path, windows) -> pd.DataFrame:
    path = tmp_path / "slo.yaml"
    path.write_text(slo_text)
    [slo] = [s for s in load_slo_file(str(path)).slos if s.sli == "rmse"]
    rows = []
    for region, columns in windows.items():
        transitions, _ = evaluate_history(slo, f"region={region}", columns)
        rows += [t.as_row(EMITTED) for t in transitions]
    return pd.DataFrame(rows)


def test_a_twitchy_config_flaps_on_the_stationary_month(tmp_path, windows):
    rmse = np.concatenate([w["rmse"] for w in windows.values()])
    assert 0.2 < (rmse > 9.5).mean() < 0.8  # the threshold is next to the healthy RMSE
    found = flaps.find_flaps(_alerts(TWITCHY, tmp_path, windows))
    assert {f.alert for f in found} == {f"twitchy-rmse/page/region={r}" for r in scenarios.REGIONS}
    for f in found:  # 6 h windows, fired again 12 h after (fire, resolve, fire) at the least
        assert f.fired_24h == 2 and 12 * 3600 <= f.gap_s <= 18 * 3600
        assert f.hints[0].startswith(f"keep_firing_for: {f.gap_s // 3600}h")
    lines = gameday.check_flaps({"must_not_flap": True}, found)
    assert [x.verdict for x in lines] == ["FLAPPING"] * 3 and all(x.mismatch for x in lines)
    assert not any(x.mismatch for x in gameday.check_flaps({"must_not_flap": False}, found))


def test_the_shipped_stationary_slo_fires_nothing_so_nothing_flaps(tmp_path, windows):
    assert _alerts(scenarios.SIX_HOURLY_SLO, tmp_path, windows).empty


def test_keep_firing_for_as_suggested_calms_the_twitchy_config(tmp_path, windows):
    found = flaps.find_flaps(_alerts(TWITCHY, tmp_path, windows))
    keep = max(flaps.suggested_keep_s(f.gap_s) for f in found) // 3600
    calmer = TWITCHY.replace("keep_firing_for: 0", f"keep_firing_for: {keep}h")
    assert flaps.find_flaps(_alerts(calmer, tmp_path, windows)) == []


def test_gameday_fails_the_stationary_scenario_on_a_flapping_alert(monkeypatch, tmp_path, capsys):
    alert = "twitchy-rmse/page/region=na"
    flap = flaps.Flap(alert, "twitchy-rmse", "rmse", "page", "region=na", 2,
                      1_793_599_200_000, 12 * 3600, ("keep_firing_for: 12h (now 0s)",))  # fmt: skip
    t = gameday.Transition(alert, "twitchy-rmse", "rmse", "page", "region=na", "firing",
                           1_793_599_200_000, None)  # fmt: skip
    monkeypatch.setattr(gameday, "_run_once", lambda *args: 0)
    monkeypatch.setattr(gameday, "read_transitions", lambda out: [t])
    monkeypatch.setattr(gameday, "read_flaps", lambda out: [flap])
    code = cli.main(["gameday", "--scenario", "stationary", "--keep", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == gameday.EXIT_MISMATCH
    assert [line.split()[-1] for line in out.splitlines() if alert in line][:4] == [
        "ALARM",
        "FLAPPING",
        "ALARM",
        "FLAPPING",
    ]  # fmt: skip  (bounded, then replay: the false alarm and the flapping line)
    assert f"  flapping: {alert}: fired 2 times in the 24 h" in out
    assert "calm it with keep_firing_for: 12h (now 0s)" in out
