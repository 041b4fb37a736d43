"""`msewatch slo rules` in the real Prometheus and promtool (Debian's ``prometheus``).

promtool checks the rules of both example SLO files. Then the output of ``make demo``
(the session's ``make_demo`` fixture: its region=apac pages) is served by ``msewatch serve
--recent-windows 30h`` and scraped every second by a Prometheus that evaluates the demo's
rules every second (``tests/prometheus_server.py``).

Time, honestly: the output is written once, so Prometheus sees its **last** evaluation
only: the rules re-do msewatch's evaluation at the newest label frontier of the tables,
not the history of the ``alerts`` table. So the expected answer is read with pyarrow
from the tables msewatch wrote: the last ``slo_status`` row of each slice (its burn
rates, its frontier) and the alerts whose last transition is ``firing``; the apac page
fired at frontier 2026-11-02 10:00 and its condition still holds at the last frontier
(burn rate 100 over 1h and 5m: the last settled hour is bad), so Prometheus must fire it
too. An alert msewatch kept firing only by ``keep_firing_for`` would not show in
Prometheus (its clock is not frontier time; docs/observability.md) and the test would
say so: it checks that every firing alert's condition holds at the last frontier.
The same sample run with :data:`OTHER_SLOS` (an error_rate SLO, a suppression) checks
every burn rate and which alerts fire against msewatch's last evaluation the same way.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import subprocess
import time

import numpy as np
import pytest

from msewatch import cli
from tests import synthetic_output as so
from tests.prometheus_server import api, instant_query, running_prometheus, running_serve
from tests.servers import missing

PROMTOOL = shutil.which("promtool")
EXAMPLES = pathlib.Path(__file__).parents[2] / "docs" / "examples"
HEALTHY = ("region=eu", "region=na", "region=latam")
PAGE = ("forecast-rmse", "region=apac", "page")


def _rules(tmp_path, slo_file: str):
    path = tmp_path / "rules.yml"
    assert cli.main(["slo", "rules", slo_file, "--out", str(path)]) == 0
    return path


def _promtool(*args) -> subprocess.CompletedProcess:
    if PROMTOOL is None:
        missing("promtool", "apt-get install prometheus")
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("slo_file", "rules"),
    [
        # forecast-rmse: 4 window rules + 4 lookbacks (5m, 30m, 1h, 6h) + burn + 1 alert
        ("demo-slo.yaml", 10),
        # forecast-rmse: 4 + 5 lookbacks (the ticket's 3d too) + 1 + 2 alerts = 12;
        # forecast-error-rate: 4 + 4 + 1 + 1 (page only) = 10; nan-predictions (the default
        # alerting, as forecast-rmse) 12; the other two SLIs and the comparison are comments
        ("slo.yaml", 34),
    ],
)
def test_promtool_checks_the_generated_rules(tmp_path, slo_file, rules):
    done = _promtool("check", "rules", str(_rules(tmp_path, f"{EXAMPLES}/{slo_file}")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {rules} rules found" in done.stdout


def test_promtool_knows_keep_firing_for_and_refuses_a_misspelled_key(tmp_path):
    """The pass above means something: 2.42 reads keep_firing_for, and refuses a key it
    does not know."""
    text = _rules(tmp_path, f"{EXAMPLES}/demo-slo.yaml").read_text()
    assert "    keep_firing_for: 6h\n" in text
    wrong = tmp_path / "wrong.yml"
    wrong.write_text(text.replace("keep_firing_for:", "keep_firing_fro:"))
    done = _promtool("check", "rules", str(wrong))
    assert done.returncode != 0 and "keep_firing_fro" in done.stdout + done.stderr


@contextlib.contextmanager
def evaluating(out, slo_file, base, recent: str):
    """Prometheus URL once the rules of ``slo_file`` have every burn rate msewatch has at
    its last frontier (``slo_status``), over ``msewatch serve out --recent-windows``."""
    rules = _rules(base, str(slo_file))
    last = _last_rows(out, "slo_status", ["slo", "slice"])
    expected = int(sum(np.isfinite(rates).sum() for rates in last["burn_rates"]))
    with running_serve(out, base / "serve.log", ("--recent-windows", recent)) as target:
        with running_prometheus(base, [target], rule_files=(rules,)) as url:
            deadline = time.monotonic() + 30
            while len(instant_query(url, "msewatch_slo:burn_rate")) < expected:
                assert time.monotonic() < deadline, "the rules gave too few burn rates in 30 s"
                time.sleep(0.5)
            time.sleep(2)  # the alert rules run after them in the group: one more evaluation
            yield url


@pytest.fixture(scope="module")
def evaluated(make_demo, tmp_path_factory):
    """(OUTPUT, Prometheus URL): the make-demo output and its rules."""
    base = tmp_path_factory.mktemp("rules")
    out = shutil.copytree(make_demo[0], base / "out")
    with evaluating(out, EXAMPLES / "demo-slo.yaml", base, "30h") as url:
        yield out, url


def _last_rows(out, table: str, keys: list[str]):
    rows = so.read_table(out, table).sort_values("frontier", kind="stable")
    return rows.groupby(keys).tail(1).set_index(keys)


def test_the_rules_burn_rates_are_msewatchs_at_the_newest_frontier(evaluated):
    out, url = evaluated
    last = _last_rows(out, "slo_status", ["slo", "slice"]).loc["forecast-rmse"]
    got = {
        (r["metric"]["slice"], r["metric"]["lookback"]): float(r["value"][1])
        for r in instant_query(url, 'msewatch_slo:burn_rate{slo="forecast-rmse"}')
    }
    want = {
        (s, lookback): rate
        for s, row in last.iterrows()
        for lookback, rate in zip(("5m", "30m", "1h", "6h"), row["burn_rates"], strict=True)
    }
    assert list(last.iloc[0]["lookbacks_s"]) == [300, 1800, 3600, 21600]
    assert set(got) == set(want)
    for key, rate in want.items():
        assert got[key] == pytest.approx(rate, rel=1e-9, abs=1e-12), key
    frontiers = instant_query(url, 'msewatch_slo:frontier_timestamp_seconds{slo="forecast-rmse"}')
    for r in frontiers:
        expected = last.loc[r["metric"]["slice"], "frontier"].timestamp()
        assert float(r["value"][1]) == expected, r["metric"]["slice"]


def test_prometheus_fires_the_demos_page_as_the_alerts_table_does(evaluated):
    out, url = evaluated
    alerts = _last_rows(out, "alerts", ["alert"])
    firing = alerts[(alerts["state"] == "firing") & (alerts["sli"] != "comparison")]
    expected = {(r.slo, r.slice, r.severity) for r in firing.itertuples()}
    assert expected == {PAGE}  # the demo's page, still firing at the end of the output
    status = _last_rows(out, "slo_status", ["slo", "slice"]).loc[PAGE[:2]]
    burn = dict(zip(status["lookbacks_s"], status["burn_rates"], strict=True))
    assert burn[3600] >= 14.4 and burn[300] >= 14.4  # held at the last frontier, not kept
    shown = api(url, "/api/v1/alerts")["alerts"]
    got = {
        (a["labels"]["slo"], a["labels"]["slice"], a["labels"]["severity"])
        for a in shown
        if a["state"] == "firing"
    }
    assert got == expected
    page = next(a for a in shown if a["labels"]["slice"] == "region=apac")
    assert page["labels"]["msewatch_alert"] == "forecast-rmse/page/region=apac"
    assert page["annotations"]["runbook_url"] == "https://wiki.example/runbooks/forecast-rmse"


def test_no_alert_for_a_healthy_region(evaluated):
    """Neither firing nor pending: their burn rates are 0 at the last frontier."""
    _, url = evaluated
    shown = {a["labels"]["slice"] for a in api(url, "/api/v1/alerts")["alerts"]}
    assert shown.isdisjoint(HEALTHY)
    for s in HEALTHY:
        rates = instant_query(url, f'msewatch_slo:burn_rate{{slice="{s}"}}')
        assert len(rates) == 4 and all(float(r["value"][1]) == 0 for r in rates), s


# An error_rate SLO over the model_version x region crosses, an rmse SLO with a
# suppression inside its 6 h lookback (the windows 20:00-22:00 of the last day count
# neither way) and a nan_rate SLO (the sample's 69 NaN predictions: an hour of a region
# with one is above 0.5 %), run through the pipeline on the make-demo sample.
OTHER_SLOS = """
version: 1
slos:
  - name: demand-error-rate
    sli: error_rate
    threshold: 60
    objective: 0.95
    slices: ["overall", "model_version=*,region=*"]
    min_coverage: 0.7
    min_scored: 20
    alerting:
      page: [{long: 1h, short: 5m, burn_rate: 2}]
      ticket: [{long: 1d, short: 2h, burn_rate: 1}]
  - name: rmse-suppressed
    sli: rmse
    threshold: 45
    objective: 0.95
    slices: ["region=*"]
    suppress: [{from: "2026-11-03T20:00:00Z", to: "2026-11-03T22:00:00Z", reason: test}]
    alerting:
      page: [{long: 6h, short: 1h, burn_rate: 2}]
      ticket: []
  - name: nan-share
    sli: nan_rate
    threshold: 0.005
    objective: 0.9
    slices: ["overall", "region=*"]
    alerting:
      page: [{long: 6h, short: 1h, burn_rate: 2}]
      ticket: [{long: 1d, short: 6h, burn_rate: 1}]
"""


@pytest.fixture(scope="module")
def other(make_demo, tmp_path_factory):
    """(OUTPUT, Prometheus URL) of :data:`OTHER_SLOS`."""
    base = tmp_path_factory.mktemp("other-rules")
    slo_file = base / "slo.yaml"
    slo_file.write_text(OTHER_SLOS)
    sample, out = make_demo[0].parent / "sample", base / "out"
    argv = ["run", "--predictions", str(sample / "predictions.jsonl"), "--labels"]
    argv += [str(sample / "labels.jsonl"), "--output", str(out), "--quiet", "--slo", str(slo_file)]
    assert cli.main([*argv, "--slice", "region", "--slice", "model_version,region"]) == 0
    with evaluating(out, slo_file, base, "2d") as url:
        yield out, url


def test_error_rate_nan_rate_and_suppressed_burn_rates_are_msewatchs(other):
    out, url = other
    last = _last_rows(out, "slo_status", ["slo", "slice"])
    want = {
        (slo, s, int(lookback)): rate
        for (slo, s), row in last.iterrows()
        for lookback, rate in zip(row["lookbacks_s"], row["burn_rates"], strict=True)
        if np.isfinite(rate)
    }
    assert {slo for slo, _, _ in want} == {"demand-error-rate", "rmse-suppressed", "nan-share"}
    assert len({s for _, s, _ in want}) >= 5  # overall, crosses and regions
    seconds = {"5m": 300, "1h": 3600, "2h": 7200, "1d": 86400, "6h": 21600}
    got = {
        (m["slo"], m["slice"], seconds[m["lookback"]]): float(r["value"][1])
        for r in instant_query(url, "msewatch_slo:burn_rate")
        for m in (r["metric"],)
    }
    assert set(got) == set(want)
    for key, rate in want.items():
        assert got[key] == pytest.approx(rate, rel=1e-9, abs=1e-12), key
    for slo in ("demand-error-rate", "rmse-suppressed", "nan-share"):  # not all zeros
        assert any(rate > 0 for (name, _, _), rate in want.items() if name == slo), slo


def test_alerts_fire_where_a_condition_holds_at_the_last_frontier(other):
    """pandas decides from msewatch's burn rates (``slo_status``) and the conditions of
    :data:`OTHER_SLOS`; Prometheus fires exactly those."""
    out, url = other
    last = _last_rows(out, "slo_status", ["slo", "slice"])
    conditions = {  # (slo, severity) -> [(long_s, short_s, burn_rate)]
        ("demand-error-rate", "page"): [(3600, 300, 2.0)],
        ("demand-error-rate", "ticket"): [(86400, 7200, 1.0)],
        ("rmse-suppressed", "page"): [(21600, 3600, 2.0)],
        ("nan-share", "page"): [(21600, 3600, 2.0)],
        ("nan-share", "ticket"): [(86400, 21600, 1.0)],
    }
    held = set()
    for (slo, s), row in last.iterrows():
        burn = dict(zip(row["lookbacks_s"], row["burn_rates"], strict=True))
        for (name, severity), conds in conditions.items():
            if name == slo and any(
                burn[lo] >= b * (1 - 1e-9) and burn[sh] >= b * (1 - 1e-9) for lo, sh, b in conds
            ):
                held.add((slo, s, severity))
    got = {
        (a["labels"]["slo"], a["labels"]["slice"], a["labels"]["severity"])
        for a in api(url, "/api/v1/alerts")["alerts"]
        if a["state"] == "firing"
    }
    assert got == held
