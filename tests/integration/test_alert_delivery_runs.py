"""``msewatch run`` with alert deliveries that fail: the tables are written, the summary
says how many alerts were not delivered, ``--fail-on-undelivered`` exits 1 for it, and a
Pub/Sub client that cannot start is a failed delivery, not a failed job."""

from __future__ import annotations

import duckdb

from msewatch import cli
from tests.integration.test_alert_delivery import _write_inputs
from tests.servers import free_port

FIRING_ALERTS = 1  # _write_inputs(bad hours 3-5 of 6): the page fires once, nothing resolves


def _run(folder, *extra) -> int:
    argv = ["run", "--predictions", str(folder / "p.jsonl"), "--labels", str(folder / "l.jsonl")]
    argv += ["--output", str(folder / "out"), "--slice", "region"]
    return cli.main([*argv, "--slo", str(folder / "slo.yaml"), *extra])


def _alert_dead_letters(out) -> list[tuple[str, str]]:
    with duckdb.connect() as con:
        return con.execute(
            "SELECT reason, detail FROM read_parquet(?) WHERE record_type = 'alert'",
            [str(out / "dead_letter" / "*.parquet")],
        ).fetchall()


def test_a_pubsub_client_that_cannot_start_dead_letters_the_alerts(tmp_path, monkeypatch):
    """No credentials and no emulator: before, the job died (exit 1, no tables)."""
    for name in ("PUBSUB_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "MSEWATCH_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # google-auth: do not look for a metadata server
    folder = _write_inputs(tmp_path / "in", {3, 4, 5}, 6)
    assert _run(folder, "--alerts-topic", "projects/p/topics/alerts", "--quiet") == 0
    dead = _alert_dead_letters(folder / "out")
    assert len(dead) == FIRING_ALERTS
    reason, detail = dead[0]
    assert reason == "alert_delivery_failed"
    assert detail.startswith("the Pub/Sub client cannot start: DefaultCredentialsError")


def test_the_summary_counts_the_alerts_not_delivered(tmp_path, capsys):
    folder = _write_inputs(tmp_path / "in", {3, 4, 5}, 6)
    refused = f"http://127.0.0.1:{free_port()}"
    assert _run(folder, "--alertmanager", refused, "--alert-deadline", "1s") == 0
    out = capsys.readouterr().out
    assert f"Alerts not delivered: {FIRING_ALERTS} (to Alertmanager or Pub/Sub" in out


def test_fail_on_undelivered_exits_1_with_the_tables_written(tmp_path, capsys):
    folder = _write_inputs(tmp_path / "in", {3, 4, 5}, 6)
    refused = f"http://127.0.0.1:{free_port()}"
    argv = ["--alertmanager", refused, "--alert-deadline", "1s", "--quiet"]
    assert _run(folder, *argv, "--fail-on-undelivered") == 1
    err = capsys.readouterr().err
    assert f"msewatch: error: {FIRING_ALERTS} alert deliveries failed" in err
    assert len(_alert_dead_letters(folder / "out")) == FIRING_ALERTS  # committed all the same


def test_without_the_option_undelivered_alerts_do_not_fail_the_run(tmp_path):
    folder = _write_inputs(tmp_path / "in", {3, 4, 5}, 6)
    refused = f"http://127.0.0.1:{free_port()}"
    assert _run(folder, "--alertmanager", refused, "--alert-deadline", "1s", "--quiet") == 0
