"""Pub/Sub in, Parquet out: the real streaming pipeline against the Pub/Sub emulator.

The pipeline (``build`` with :class:`PubSubSource`, BundleBasedDirectRunner,
``--streaming``) runs in a subprocess started by ``tests/pubsub_emulator.py``. The
DirectRunner's Pub/Sub watermark is the wall clock at each pull (Beam's
``_PubSubReadEvaluator`` reports ``time.time()``), so the test uses event times near
the wall clock and a 10 s window that starts a few seconds in the future:

1. predictions p1, p2, p3 with event times inside window W (each with a ``price``
   feature, which the job sketches), a label of p1 inside W, and one malformed message,
   all published before W ends;
2. once the wall clock (hence the watermark) is past W's end and the ON_TIME pane has
   fired, a label of p2 *without* label_time (its publish time is used);
3. the metrics table must show W's ON_TIME row (1 labeled, the sketch of the three
   prices) and a LATE row (2 labeled), and the dead_letter table the malformed message
   with its message id and attributes.

Background traffic keeps both subscriptions busy, as in production: the emulator holds
a pull on an idle subscription for about 30 s, and the DirectRunner moves watermarks
and fires processing-time timers only between pulls. The background records are
predictions in windows at least 30 s after W and labels of unknown ids (orphans): they
never touch W's rows. The Parquet sinks flush 5 s of processing time after a pane's
first row (``sink_flush_seconds``) and move the files 5 s later.
It skips (printing why) when the emulator cannot start, except under CI, where it fails.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from msewatch.runners import presets
from msewatch.transforms.io import messages as message_batches
from msewatch.transforms.io import pubsub
from msewatch.transforms.metrics.sketch import ValueSketch
from tests import pubsub_emulator as emu
from tests.servers import stop

WINDOW_S = 10
PRICES = (9.5, 3.25, 12.0)  # p1..p3's price feature
LABEL_TTL_S = 120
DEADLINE_S = 240
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read_table(output: str, name: str) -> pd.DataFrame:
    files = glob.glob(os.path.join(output, name, "*.parquet")) + glob.glob(
        os.path.join(output, name, "*", "*.parquet")
    )
    frames = [pd.read_parquet(f) for f in files]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _wait_for(condition, proc, log_path, timeout_s: float):
    """Polls ``condition()`` until it returns a truthy value; fails with the job's log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value is not None and value is not False:
            return value
        if proc.poll() is not None:
            break
        time.sleep(1)
    with open(log_path, errors="replace") as f:
        log = f.read()[-4000:]
    pytest.fail(f"timed out (job status {proc.poll()}); pipeline log tail:\n{log}")


def _start_pipeline(emulator, preds_sub, labels_sub, output, log_path):
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.pubsub_emulator",
            f"--predictions={preds_sub}",
            f"--labels={labels_sub}",
            f"--output={output}",
            f"--window-seconds={WINDOW_S}",
            f"--label-ttl-seconds={LABEL_TTL_S}",
            "--slice=region",
            "--feature=price",
        ],
        cwd=REPO,
        env=emu.emulator_env(emulator.host),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    return proc


def _started(log_path):
    with open(log_path, errors="replace") as f:
        return emu.STARTED in f.read()


@contextlib.contextmanager
def _background_traffic(emulator, every_s: float = 0.3):
    """Publishes a prediction 50 s in the future and an orphan label every ``every_s``."""
    stop = threading.Event()

    def publish():
        n = 0
        while not stop.wait(every_s):
            n += 1
            event_ms = int((time.time() + 5 * WINDOW_S) * 1000)
            pred = {"prediction_id": f"bg-{n}", "event_time": event_ms, "y_pred": 1.0}
            emulator.publish("predictions", json.dumps(pred).encode())
            label = {"prediction_id": f"orphan-{n}", "y_true": 1.0}
            emulator.publish("labels", json.dumps(label).encode())

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def _sleep_until(epoch_s: float) -> None:
    time.sleep(max(0.0, epoch_s - time.time()))


@pytest.mark.slow
def test_late_label_makes_a_late_pane_and_bad_message_is_dead_lettered(emulator, tmp_path):
    preds_sub = emulator.create_subscription("predictions")
    labels_sub = emulator.create_subscription("labels")
    output = str(tmp_path / "out")
    log_path = str(tmp_path / "pipeline.log")
    proc = _start_pipeline(emulator, preds_sub, labels_sub, output, log_path)
    with contextlib.ExitStack() as stack:
        stack.callback(stop, proc)
        _wait_for(lambda: _started(log_path), proc, log_path, 90)

        # Window W starts at the next 10 s boundary at least 4 s ahead: every record
        # below is published before W ends, so it is on time for W.
        start_s = math.ceil((time.time() + 4) / WINDOW_S) * WINDOW_S
        end_s = start_s + WINDOW_S
        preds = [("p1", 10.0, "eu"), ("p2", 5.0, "eu"), ("p3", 7.0, "us")]
        for i, (pid, y, region) in enumerate(preds):
            record = {
                "prediction_id": pid,
                "event_time": (start_s + 1 + i) * 1000,
                "y_pred": y,
                "model_version": "v1",
                "segments": {"region": region},
                "features": {"price": PRICES[i], "other": "ignored"},
            }
            emulator.publish("predictions", json.dumps(record).encode())
        emulator.publish(
            "labels",
            json.dumps(
                {"prediction_id": "p1", "y_true": 12.0, "label_time": (start_s + 5) * 1000}
            ).encode(),
        )
        bad_id = emulator.publish("predictions", b'{"prediction_id": "p9", "y_pred":', origin="t1")
        stack.enter_context(_background_traffic(emulator))

        # The watermark follows the wall clock: W's ON_TIME pane fires shortly after
        # end_s. Publish p2's label (no label_time) well after that.
        _sleep_until(end_s + 6)
        late_published_s = time.time()
        emulator.publish("labels", json.dumps({"prediction_id": "p2", "y_true": 4.0}).encode())

        def rows_of_w():
            m = _read_table(output, "metrics")
            if m.empty:
                return None
            m = m[
                (m["slice"] == "overall")
                & (m["window_start"].map(pd.Timestamp.timestamp) == start_s)
            ]
            return m if (m["pane_timing"] == "LATE").any() else None

        rows = _wait_for(rows_of_w, proc, log_path, DEADLINE_S)
        dead = _wait_for(
            lambda: (lambda d: d if not d.empty else None)(_read_table(output, "dead_letter")),
            proc,
            log_path,
            DEADLINE_S,
        )

    on_time = rows[rows["pane_timing"] == "ON_TIME"]
    late = rows[rows["pane_timing"] == "LATE"].sort_values("pane_index")
    assert len(on_time) == 1, rows[["pane_index", "pane_timing", "labeled"]]
    on_time = on_time.iloc[0]
    late = late.iloc[-1]
    # ON_TIME: 3 predictions, p1 labeled (error 10 - 12 = -2, squared 4).
    assert (on_time["predictions"], on_time["labeled"], on_time["expired"]) == (3, 1, 0)
    assert on_time["mse"] == pytest.approx(4.0)
    (entry,) = on_time["feature_sketches"]
    assert entry["feature"] == "price"
    assert ValueSketch.from_bytes(entry["sketch"]) == ValueSketch.from_values(np.array(PRICES))
    # The watermark followed the wall clock: the ON_TIME pane was emitted after W's end
    # and before the late label was published.
    emitted = on_time["emitted_at"].timestamp()
    assert end_s <= emitted < late_published_s
    # LATE: p2 joined too (error 5 - 4 = 1): mse = mean(4, 1), accumulating pane.
    errors = np.array([10.0 - 12.0, 5.0 - 4.0])
    assert (late["predictions"], late["labeled"]) == (3, 2)
    assert late["pane_index"] > on_time["pane_index"]
    assert late["mse"] == pytest.approx(np.mean(errors**2))
    assert late["mean_error"] == pytest.approx(np.mean(errors))
    # p2's label had no label_time: its lag comes from the publish time, after W's end.
    assert late["label_lag_max_s"] >= end_s - (start_s + 2)
    assert not late["complete"]  # p3 is still waiting for its label

    assert list(dead["message_id"]) == [bad_id]
    bad = dead.iloc[0]
    assert (bad["record_type"], bad["reason"]) == ("prediction", "unparseable")
    assert bad["source"] == preds_sub
    assert json.loads(bad["attributes"]) == {"origin": "t1"}
    assert bad["raw_payload"] == '{"prediction_id": "p9", "y_pred":'


# Fast checks, no emulator: the batch parser and the URL / argument validation.


def _message(payload, publish_ms, message_id="m", **attributes):
    return message_batches.Message(payload, message_id, attributes, publish_ms)


def test_parse_batch_stamps_records_with_their_earliest_time_and_tags_dead_letters():
    fn = message_batches.ParseMessageBatch("label", "projects/p/subscriptions/labels", ())
    messages = [
        _message(
            json.dumps({"prediction_id": "a", "y_true": 1.0, "label_time": 5000}).encode(), 9000
        ),
        _message(json.dumps({"prediction_id": "b", "y_true": 2.0}).encode(), 7000, "m2"),
        _message(b"not json", 8000, "m3", origin="x"),
    ]
    records, dead = list(fn.process(("000", messages)))
    # b has no label_time: its publish time (7000) is used; the batch carries min(5000, 7000)
    assert records.value.column("label_time_ms").to_pylist() == [5000, 7000]
    assert records.timestamp.micros == 5000 * 1000
    assert dead.tag == pubsub.DEAD_LETTER_TAG
    row = dead.value.value.to_pylist()[0]
    assert (row["message_id"], json.loads(row["attributes"])) == ("m3", {"origin": "x"})
    assert dead.value.timestamp.micros == 7000 * 1000  # earliest publish time of the batch
    # positions: arrival sequence from the first message's publish time
    assert records.value.column("position").to_pylist() == [9000 << 20, (9000 << 20) + 1]


def test_parse_batch_keeps_the_configured_segments_of_predictions():
    fn = message_batches.ParseMessageBatch(
        "prediction", "projects/p/subscriptions/preds", ("region",)
    )
    record = {"prediction_id": "a", "event_time": 3000, "y_pred": 1.0, "segments": {"region": "eu"}}
    (records,) = list(fn.process(("001", [_message(json.dumps(record).encode(), 4000)])))
    assert records.value.column("seg.region").to_pylist() == ["eu"]
    assert records.timestamp.micros == 3000 * 1000


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"predictions_subscription": "projects/my-proj/topics/t"}, "predictions_subscription"),
        ({"max_batch": 0}, "max_batch"),
        ({"max_buffering_seconds": 0}, "max_buffering_seconds"),
        ({"shards": 0}, "shards"),
    ],
)
def test_pubsub_source_rejects_bad_arguments(kwargs, message):
    args = {
        "predictions_subscription": "projects/my-proj/subscriptions/preds",
        "labels_subscription": "projects/my-proj/subscriptions/labels",
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        pubsub.PubSubSource(**args)


def test_pubsub_runs_streaming_on_the_direct_runner():
    assert presets.pipeline_flags("DirectRunner", [], streaming=True) == [
        "--runner=BundleBasedDirectRunner",
        "--streaming",
    ]
    assert presets.pipeline_flags("direct", [], streaming=False) == ["--runner=FnApiRunner"]
