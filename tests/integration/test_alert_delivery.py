"""Alert transitions reach a real Alertmanager, with their labels, then resolve."""

from __future__ import annotations

import datetime
import json
import math
import urllib.request

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from msewatch.transforms.io.alerts import (
    DeliverAlerts,
    DeliveryConfig,
    alertmanager_alert,
    post_alerts,
)
from msewatch.transforms.io.delivery import Deadline, with_retries
from tests.alertmanager_server import running_alertmanager
from tests.servers import free_port
from tests.slo_examples import RMSE_PAGE

T = datetime.datetime(2026, 11, 2, 9, 0, tzinfo=datetime.UTC)


def _row(state: str, emitted: datetime.datetime) -> dict:
    return {
        "alert": "forecast-rmse:page",
        "slo": "forecast-rmse",
        "sli": "rmse",
        "severity": "page",
        "slice": "model_version=v2,region=eu%2Cnorth",
        "state": state,
        "frontier": T,
        "watermark": None,
        "burn_rate_long": 20.0,
        "burn_rate_short": 30.0,
        "burn_rate_threshold": 14.4,
        "long_window_s": 3600,
        "short_window_s": 300,
        "budget_remaining": 0.5,
        "value": 52.0,
        "threshold": 40.0,
        "objective": 0.99,
        "summary": "forecast-rmse burns its budget 20x (1h) on model_version=v2,region=eu,north",
        "runbook": "https://wiki.example/runbooks/forecast-rmse",
        "emitted_at": emitted,
    }


def _alerts(url: str) -> list[dict]:
    with urllib.request.urlopen(url + "/api/v2/alerts?active=true&silenced=true", timeout=5) as r:
        return json.loads(r.read())


def test_the_payload_carries_the_slice_keys_as_labels():
    alert = alertmanager_alert(_row("firing", T))
    assert alert["labels"] == {
        "alertname": "forecast-rmse:page",
        "slo": "forecast-rmse",
        "sli": "rmse",
        "severity": "page",
        "slice": "model_version=v2,region=eu%2Cnorth",
        "model_version": "v2",
        "region": "eu,north",  # the label holds the value, unescaped
    }
    assert alert["startsAt"] == "2026-11-02T09:00:00Z" and "endsAt" not in alert
    assert alert["annotations"]["runbook_url"].endswith("/forecast-rmse")
    assert alert["annotations"]["burn_rate_long"] == "20"


def test_a_slice_key_that_is_not_a_label_name_is_renamed_and_kept_in_an_annotation():
    """Alertmanager answers 400 to a label named ``sku-category``; a segment named
    ``severity`` must not replace (or, as before, silently lose) the alert's own."""
    row = _row("firing", T) | {"slice": "severity=low,sku-category=books"}
    alert = alertmanager_alert(row, ("severity", "sku-category"))
    labels = {k: v for k, v in alert["labels"].items() if k not in ("alertname", "slo", "sli")}
    assert labels == {
        "severity": "page",
        "slice": "severity=low,sku-category=books",
        "slice_severity": "low",
        "sku_category": "books",
    }
    renamed = {k: v for k, v in alert["annotations"].items() if k.startswith("slice_key_")}
    assert renamed == {
        "slice_key_slice_severity": "severity",
        "slice_key_sku_category": "sku-category",
    }


def test_a_key_keeps_its_label_name_whatever_the_slice():
    """With sku_category and sku-category both slice keys of the run, sku-category is
    sku_category_2 in every alert, also in a slice without sku_category."""
    row = _row("firing", T) | {"slice": "sku-category=books"}
    alert = alertmanager_alert(row, ("sku-category", "sku_category"))
    assert alert["labels"]["sku_category_2"] == "books" and "sku_category" not in alert["labels"]


def test_a_comparison_alert_carries_its_difference_and_margin_not_burn_rates():
    row = _row("firing", T) | {
        "alert": "v2-rollout/page/region=eu",
        "slo": "v2-rollout",
        "sli": "comparison",
        "slice": "region=eu",
        "burn_rate_long": math.nan,
        "burn_rate_short": math.nan,
        "burn_rate_threshold": math.nan,
        "budget_remaining": math.nan,
        "value": 0.312,
        "threshold": 0.05,
    }
    alert = alertmanager_alert(row)
    assert alert["labels"]["sli"] == "comparison" and alert["labels"]["region"] == "eu"
    assert {k: v for k, v in alert["annotations"].items() if k in ("value", "threshold")} == {
        "value": "0.312",
        "threshold": "0.05",
    }
    assert not any("burn_rate" in k or "budget" in k for k in alert["annotations"])


def test_a_page_fires_in_alertmanager_then_resolves(tmp_path):
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    with running_alertmanager(tmp_path) as url:
        config = DeliveryConfig(alertmanager_url=url)
        with beam.Pipeline() as p:
            dead = p | beam.Create([_row("firing", now)]) | DeliverAlerts(config)
            assert_that(dead, equal_to([]))
        (shown,) = _alerts(url)
        assert shown["labels"]["region"] == "eu,north"
        assert shown["labels"]["severity"] == "page"
        assert shown["status"]["state"] == "active"
        assert shown["startsAt"].startswith(now.strftime("%Y-%m-%dT%H:%M:%S"))
        resolved = now + datetime.timedelta(seconds=1)
        post_alerts(url, [alertmanager_alert(_row("resolved", resolved))], 5)
        # Alertmanager drops resolved alerts from its active list once endsAt has passed
        deadline = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=20)
        while _alerts(url) and datetime.datetime.now(datetime.UTC) < deadline:
            pass
        assert _alerts(url) == []


def test_an_unreachable_alertmanager_becomes_a_dead_letter_not_a_failure():
    sleeps = []
    config = DeliveryConfig(
        alertmanager_url=f"http://127.0.0.1:{free_port()}", attempts=3, backoff_seconds=0.01
    )
    error, permanent = with_retries(
        lambda timeout: post_alerts(config.alertmanager_url, [], timeout),
        config.attempts,
        config.backoff_seconds,
        1,
        Deadline(10),
        sleeps.append,
    )
    assert error and "Connection refused" in error and not permanent
    assert sleeps == [0.01, 0.02]  # backoff doubles between the three attempts
    with beam.Pipeline() as p:
        dead = p | beam.Create([_row("firing", T)]) | DeliverAlerts(config)
        reasons = dead | beam.Map(lambda r: (r["reason"], r["record_type"], r["source"]))
        expected = [("alert_delivery_failed", "alert", config.alertmanager_url)]
        assert_that(reasons, equal_to(expected))


def _write_inputs(folder, bad_hours: set[int], hours: int, key: str = "region"):
    """40 labeled predictions an hour in ``key`` eu; error 10 in ``bad_hours``, else 1;
    the SLO file pages on every slice of ``key``."""
    folder.mkdir()
    with open(folder / "p.jsonl", "w") as p, open(folder / "l.jsonl", "w") as lab:
        for hour in range(hours):
            for i in range(40):
                t = 1_793_491_200_000 + hour * 3_600_000 + i * 60_000
                pid = f"{hour}-{i}"
                y = 10.0 if hour in bad_hours else 1.0
                rec = {"prediction_id": pid, "event_time": t, "y_pred": y}
                p.write(json.dumps({**rec, "segments": {key: "eu"}}) + "\n")
                lab.write(
                    json.dumps({"prediction_id": pid, "label_time": t + 600_000, "y_true": 0})
                )
                lab.write("\n")
    (folder / "slo.yaml").write_text(RMSE_PAGE.replace('"region=*"', f'"{key}=*"'))
    return folder


def _run(folder, url, key: str = "region") -> int:
    from msewatch import cli

    argv = ["run", "--predictions", str(folder / "p.jsonl"), "--labels", str(folder / "l.jsonl")]
    argv += ["--output", str(folder / "out"), "--slice", key, "--quiet"]
    argv += ["--slo", str(folder / "slo.yaml"), "--alertmanager", url]
    return cli.main(argv)


def test_a_slice_key_with_a_dash_reaches_alertmanager_as_a_valid_label(tmp_path):
    """``--slice sku-category``: before, Alertmanager answered 400 to every alert."""
    with running_alertmanager(tmp_path) as url:
        folder = _write_inputs(tmp_path / "in", {3, 4, 5}, 6, key="sku-category")
        assert _run(folder, url, key="sku-category") == 0
        (shown,) = _alerts(url)
    assert shown["labels"] == {
        "alertname": "rmse/page/sku-category=eu",
        "slo": "rmse",
        "sli": "rmse",
        "severity": "page",
        "slice": "sku-category=eu",
        "sku_category": "eu",
    }
    assert shown["annotations"]["slice_key_sku_category"] == "sku-category"


def test_a_run_pages_alertmanager_and_a_later_run_resolves_it(tmp_path):
    """Run 1: hours 3-5 are bad and the page is still firing at the end: Alertmanager
    shows it with its labels. Run 2: the same, then 3 good hours: the page resolves
    (1 h of frontier time after the last window that burnt), and Alertmanager drops it."""
    with running_alertmanager(tmp_path) as url:
        assert _run(_write_inputs(tmp_path / "firing", {3, 4, 5}, 6), url) == 0
        (shown,) = _alerts(url)
        assert shown["labels"] == {
            "alertname": "rmse/page/region=eu",
            "slo": "rmse",
            "sli": "rmse",
            "severity": "page",
            "slice": "region=eu",
            "region": "eu",
        }
        assert shown["annotations"]["runbook_url"] == "https://wiki.example/runbooks/rmse"
        assert shown["annotations"]["frontier"] == "2026-11-01T04:00:00Z"
        assert _run(_write_inputs(tmp_path / "resolving", {3, 4, 5}, 9), url) == 0
        deadline = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=20)
        while _alerts(url) and datetime.datetime.now(datetime.UTC) < deadline:
            pass
        assert _alerts(url) == []
