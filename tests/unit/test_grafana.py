"""The Grafana dashboard JSON: the committed file is the generated one, its Prometheus data
source is a template variable, and its panels do not overlap. Each panel's PromQL is run
against a real Prometheus in ``tests/integration/test_grafana_prometheus.py``."""

from __future__ import annotations

import json
import pathlib

from msewatch.commands import grafana

DASHBOARD = pathlib.Path(__file__).parent.parent.parent / "docs" / "grafana" / "msewatch.json"


def test_the_committed_dashboard_is_the_generated_one():
    # regenerate: msewatch report OUTPUT --grafana docs/grafana/msewatch.json
    assert DASHBOARD.read_text(encoding="utf-8") == grafana.dashboard_json()


def test_the_data_source_is_a_template_variable():
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    queried = [p for p in board["panels"] if "targets" in p]
    assert queried and all(p["datasource"]["uid"] == "${datasource}" for p in queried)
    assert all(t["datasource"]["uid"] == "${datasource}" for p in queried for t in p["targets"])
    assert "uid" not in json.dumps(board).replace('"uid": "${datasource}"', "").replace(
        '"uid": "msewatch"', ""
    )  # no data source pinned by its uid anywhere else


def test_panels_do_not_overlap_and_rows_come_in_order():
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    cells = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, panel["title"]
        assert g["x"] + g["w"] <= 24
        cells |= mine
    rows = [p for p in board["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == ["Executive", "On-call", "Debug"]
    assert [r["gridPos"]["y"] for r in rows] == sorted(r["gridPos"]["y"] for r in rows)
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
