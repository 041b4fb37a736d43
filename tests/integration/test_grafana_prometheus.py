"""Every panel of the Grafana dashboard finds data in a real Prometheus scraping ``serve``.

No Grafana runs here, so the test does what Grafana would: it takes every target's PromQL
from the committed ``docs/grafana/msewatch.json`` and asks Prometheus for it
(``tests/prometheus_server.py``), which scrapes ``msewatch serve`` over a copy of the demo
output run with the demo's SLO file (``make demo``'s: SLOs and the v2-rollout comparison),
and finds a non-empty answer for each. The worst-slices panel's numbers are checked against the
tables read with pandas (``tests/integration/test_prometheus.py``'s reference).
"""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from msewatch.commands import grafana
from tests import evidence
from tests.integration.test_prometheus import newest_settled
from tests.prometheus_server import instant_query, running_prometheus, running_serve

DASHBOARD = pathlib.Path(__file__).parent.parent.parent / "docs" / "grafana" / "msewatch.json"
EXPRESSIONS = grafana.expressions(json.loads(DASHBOARD.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def scraped(make_demo, tmp_path_factory):
    """(OUTPUT, Prometheus URL): the demo output with SLOs and comparisons, served and
    scraped every second."""
    base = tmp_path_factory.mktemp("grafana")
    out = shutil.copytree(make_demo[0], base / "out")
    with running_serve(out, base / "serve.log") as target:
        with running_prometheus(base, [target]) as url:
            yield out, url


def test_the_dashboard_has_panels_in_three_rows():
    assert len(EXPRESSIONS) >= 20
    rows = [p["title"] for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] == "row"]
    assert rows == ["Executive", "On-call", "Debug"]


@pytest.mark.parametrize(("title", "expr"), EXPRESSIONS, ids=[e for _, e in EXPRESSIONS])
def test_every_panel_expression_finds_data(scraped, title, expr):
    _, url = scraped
    result = instant_query(url, expr)
    assert result, f"panel {title!r}: {expr} has no data"
    evidence.say(f"grafana panel {title!r}: {expr} -> {len(result)} series")


def test_an_expression_without_data_is_seen(scraped):
    """The check can fail: a slice that does not exist answers nothing."""
    _, url = scraped
    assert instant_query(url, 'msewatch_rmse{slice="region=nowhere"}') == []


def test_the_worst_slices_panel_is_rmse_over_overall(scraped):
    """topk(5) of RMSE / overall RMSE: the same five slices and ratios as pandas finds
    from the newest settled window of each slice."""
    out, url = scraped
    expr = next(e for t, e in EXPRESSIONS if t.startswith("Top offending"))
    newest = newest_settled(out).set_index("slice")["rmse"]
    ratios = (newest.drop("overall") / newest["overall"]).sort_values(ascending=False).head(5)
    found = {r["metric"]["slice"]: float(r["value"][1]) for r in instant_query(url, expr)}
    assert sorted(found) == sorted(ratios.index)
    for name, ratio in ratios.items():
        assert found[name] == pytest.approx(ratio, rel=1e-12)
