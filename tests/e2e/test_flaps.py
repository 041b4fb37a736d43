"""A flapping alert is flagged by ``msewatch slo status`` and the report, with the
setting that calms it; a calm alerts table is not.

The calm table is :func:`tests.synthetic_output.synthetic_alerts` without the second
firing of the drifted slice's page (that one fires again 3 h after it fired: flapping),
so every alert fires once. The flapping one adds ``forecast-rmse/page/region=eu``
firing at T0 + 1 h, + 4 h and + 7 h, resolving an hour after each: its ``fired_24h``
counted by hand is 1, 1, 2, 2, 3, 3 (firings in (F - 24 h, F]), the firings 3 h apart,
so ``keep_firing_for: 3h`` spans the gaps (docs/slo.md, Flapping).
"""

import copy

import pandas as pd
import pytest

from msewatch import cli
from msewatch.commands import flaps, report
from tests.synthetic_output import (
    DRIFTED,
    FIRING_PERIODS,
    SLO_SUMMARY,
    T0,
    synthetic_alerts,
    synthetic_slo_status,
    write_output,
    write_slo_tables,
)

EU_PAGE = "forecast-rmse/page/region=eu"
HOUR = pd.Timedelta(hours=1)


def calm_alerts() -> pd.DataFrame:
    alerts = synthetic_alerts()
    again = (alerts["alert"] == f"forecast-rmse/page/{DRIFTED}") & (
        alerts["frontier"] == FIRING_PERIODS[1][1]
    )
    assert again.sum() == 1 and (alerts.loc[~again, "fired_24h"] == 1).all()
    return alerts[~again]


def flapping_alerts() -> pd.DataFrame:
    calm = calm_alerts()
    template = calm[calm["alert"] == "forecast-rmse/page/" + calm["slice"]].iloc[0]
    rows = []
    for k, (state, hours, fired) in enumerate(
        [
            ("firing", 1, 1),
            ("resolved", 2, 1),
            ("firing", 4, 2),
            ("resolved", 5, 2),
            ("firing", 7, 3),
            ("resolved", 8, 3),
        ]  # fmt: skip
    ):
        frontier = T0 + hours * HOUR
        rows.append(template.to_dict() | dict(
            alert=EU_PAGE, slice="region=eu", state=state, frontier=frontier,
            fired_24h=fired, emitted_at=frontier + HOUR, summary=f"{EU_PAGE} {state} {k}",
        ))  # fmt: skip
    return pd.concat([calm, pd.DataFrame(rows)], ignore_index=True)


def summary_with_settings() -> dict:
    summary = copy.deepcopy(SLO_SUMMARY)
    rmse = next(s for s in summary["config"]["slo"]["slos"] if s["name"] == "forecast-rmse")
    rmse.update(keep_firing_for_s=0, min_scored=30)
    return summary


@pytest.fixture(params=["calm", "flapping"])
def output(request, tmp_path, metrics):
    out = write_output(tmp_path / "out", metrics, dead=None, summary=summary_with_settings())
    alerts = flapping_alerts() if request.param == "flapping" else calm_alerts()
    write_slo_tables(out, alerts, synthetic_slo_status())
    return request.param, out


def test_find_flaps_names_the_flapping_alert_its_gap_and_the_settings(output):
    kind, out = output
    found = flaps.read_flaps(out)
    if kind == "calm":
        assert found == []
        return
    [flap] = found
    assert (flap.alert, flap.fired_24h, flap.gap_s) == (EU_PAGE, 3, 3 * 3600)
    assert flap.frontier_ms == (T0 + 7 * HOUR).value // 10**6  # the first row with 3
    assert flap.hints[0].startswith("keep_firing_for: 3h (now 0s)")
    assert "short lookback than 5m" in flap.hints[1]
    assert "min_scored (now 30)" in flap.hints[2]


def test_slo_status_flags_a_flapping_alert_and_says_what_calms_it(output, capsys):
    kind, out = output
    assert cli.main(["slo", "status", str(out)]) == 0
    printed = capsys.readouterr().out
    flagged = [line for line in printed.splitlines() if line.startswith("FLAPPING ")]
    if kind == "calm":
        assert flagged == [] and "flapping" not in printed
        return
    [line] = flagged
    assert line.startswith(
        f"FLAPPING {EU_PAGE}: fired 3 times in the 24 h to 2024-03-02 04:00 UTC, at most 3h "
        "apart: flapping (fired 2 or more times in 24 h of frontier time)"
    )
    after = printed.splitlines()[printed.splitlines().index(line) + 1 :]
    assert after[0].startswith("  keep_firing_for: 3h (now 0s)")
    assert "short lookback" in after[1] and "min_scored" in after[2]


def test_the_report_flags_a_flapping_alert_and_says_what_calms_it(output, tmp_path):
    kind, out = output
    page = report.write_report(out, tmp_path / "r.html").read_text(encoding="utf-8")
    if kind == "calm":
        assert "Flapping alerts" not in page and 'class="note bad flapping"' not in page
        return
    block = page.split("<h3>Flapping alerts</h3>")[1].split("</table>")[0]
    assert "1 alert flapping (fired 2 or more times in 24 h" in block
    cells = block.split("<td>")[1:6]
    assert [c.split("</td>")[0] for c in cells[:4]] == [EU_PAGE, "3", "2024-03-02 04:00", "3h"]
    assert "keep_firing_for: 3h (now 0s)" in cells[4]
