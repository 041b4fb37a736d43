"""Kafka in, Beam's Flink runner on a real standalone cluster: late labels, dead letters, a crash.

Kafka's ``CreateTime`` watermark never runs ahead of the wall clock (KafkaIO caps a
partition's watermark at "now"), so a stream whose predictions must expire and whose
windows must close has to happen in real time. The sample is the generator's three
days (label lags of hours to days, 1 % of labels past the 7-day TTL, duplicates,
orphans, malformed lines), with every time scaled down :data:`SCALE` times around the
moment the stream starts: the label TTL becomes 21 s, an hour 0.125 s; the windows are
1 s (their allowed lateness on a cluster: TTL + 60 s). A producer thread
(tests/kafka_publish.py) writes each topic in time order, each record stamped with
its own event (or label) time and sent :data:`LEAD_MS` (15 s) before it, as a live
service would: windows fire their ON_TIME pane when the wall clock passes their end, labels
that come after it reach LATE panes, predictions expire when the wall clock passes
their TTL, malformed lines are dead-lettered with topic/partition/offset.

The job runs as a user starts it, ``msewatch run --predictions kafka://... --runner
FlinkRunner --flink-master ... --parallelism 2`` with the Python of the matched Flink
stack (apache-beam 2.62, LOOPBACK workers in the msewatch process), and is stopped
with Ctrl-C (SIGINT) once its tables are complete. The reference is the DirectRunner's
bounded run (apache-beam of the test's own Python) of the very lines published.

The crash test kills the TaskManager with SIGKILL in the middle of the stream, after a
checkpoint of the cluster (RocksDB, every 2 s) has completed, and starts a new one:
Flink restores the job from that checkpoint (Kafka offsets and Beam state alike) while
the producer goes on, and the finished tables must still equal the reference.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from msewatch.commands.generate import generate
from msewatch.commands.local import flink as local_flink
from msewatch.commands.local import processes
from msewatch.transforms.metrics.windowing import CLUSTER_CLOSE_SLACK_SECONDS
from tests.evidence import say
from tests.harness import latest
from tests.kafka_publish import KafkaRecord, Publisher, create_topics, records
from tests.local_servers import flink_python, running_flink, running_kafka

SCALE = 28_800  # sample milliseconds per wall-clock millisecond
# A record is sent this long before its own time. An idle partition's watermark is
# the wall clock, so a producer that falls further behind than this (a loaded
# machine) would publish records behind the watermark: the run says so and fails.
LEAD_MS = 15_000
_START = "2026-01-05T00:00:00Z"
_START_MS = 1_767_571_200_000
# the generator's durations, scaled: TTL 7 d -> 21 s, orphan TTL 8 h -> 1 s
_OPTIONS = ["--window", "1s", "--label-ttl", "21s", "--orphan-ttl", "1s", "--slice", "region"]
_TTL_MS = 21_000
# metric columns that depend on how the rows were fired, not on the records
_FIRING_COLUMNS = ["pane_index", "pane_timing", "emitted_at"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with running_kafka(tmp_path_factory.mktemp("kafka")) as settings:
        yield settings


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_flink(
        tmp_path_factory.mktemp("flink"), slots=2, checkpoint_interval_s=2
    ) as settings:
        yield settings


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    generate(str(out), predictions=1200, seed=23, start=_START, days=3)
    return out


def _scaled(batch: list[KafkaRecord], field: str, base_ms: int) -> list[KafkaRecord]:
    """``batch`` with every readable time ``t`` rewritten as ``base + (t - start) / SCALE``
    (epoch ms), in time order (stable: equal times keep their line order)."""
    out = []
    for record in batch:
        when = base_ms + (record.timestamp_ms - _START_MS) // SCALE
        try:
            fields = json.loads(record.value)
            if isinstance(fields, dict) and field in fields:
                fields[field] = when
                out.append(KafkaRecord(json.dumps(fields).encode(), when))
                continue
        except ValueError:
            pass
        out.append(KafkaRecord(record.value, when))  # malformed: kept as it was
    return sorted(out, key=lambda r: r.timestamp_ms)


class Stream:
    """The sample's lines as two topics of a live stream starting at ``base_ms``,
    and the same lines as files for the reference run."""

    def __init__(self, sample: Path, directory: Path, base_ms: int):
        self.predictions = _scaled(
            records(str(sample / "predictions.jsonl"), "predictions", _START_MS),
            "event_time",
            base_ms,
        )
        self.labels = _scaled(
            records(str(sample / "labels.jsonl"), "labels", _START_MS), "label_time", base_ms
        )
        directory.mkdir(parents=True, exist_ok=True)
        self.files = {
            "predictions": self._write(directory / "predictions.jsonl", self.predictions),
            "labels": self._write(directory / "labels.jsonl", self.labels),
        }
        self.counts = {"prediction": len(self.predictions), "label": len(self.labels)}
        last = max(r.timestamp_ms for r in self.predictions + self.labels)
        # every TTL and allowed lateness (TTL + the cluster slack) has passed after this
        self.settled_ms = last + _TTL_MS + CLUSTER_CLOSE_SLACK_SECONDS * 1000 + 3_000

    @staticmethod
    def _write(path: Path, batch: list[KafkaRecord]) -> str:
        path.write_bytes(b"".join(r.value + b"\n" for r in batch))
        return str(path)


class Producer(threading.Thread):
    """Sends both topics' records in time order, each :data:`LEAD_MS` before its time."""

    def __init__(self, bootstrap: str, topics: dict[str, str], stream: Stream):
        super().__init__(daemon=True)
        self._plan = sorted(
            [(r.timestamp_ms, topics["p"], r) for r in stream.predictions]
            + [(r.timestamp_ms, topics["l"], r) for r in stream.labels],
            key=lambda item: item[0],
        )
        self._servers = bootstrap
        self.error: BaseException | None = None
        self.behind_ms = 0  # the most a send came after its due time

    def run(self):
        try:
            publisher, i = Publisher(self._servers), 0
            while i < len(self._plan):
                due_ms = self._plan[i][0] - LEAD_MS
                wait_s = (due_ms - time.time() * 1000) / 1000
                if wait_s > 0:
                    time.sleep(min(wait_s, 0.2))
                    continue
                j = i
                while j < len(self._plan) and self._plan[j][0] - LEAD_MS <= time.time() * 1000:
                    j += 1
                due = self._plan[i:j]
                self.behind_ms = max(self.behind_ms, time.time() * 1000 - (due[0][0] - LEAD_MS))
                for topic in sorted({item[1] for item in due}):
                    publisher.send(topic, [r for _, t, r in due if t == topic])
                i = j
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.error = err


def _run_args(predictions: str, labels: str, output: str) -> list[str]:
    return [
        "-m",
        "msewatch",
        "run",
        "--predictions",
        predictions,
        "--labels",
        labels,
        "--output",
        output,
        *_OPTIONS,
        "--quiet",
    ]


def _reference(stream: Stream, output: str) -> str:
    """The DirectRunner's bounded run of the published lines."""
    done = subprocess.run(
        [sys.executable, *_run_args(stream.files["predictions"], stream.files["labels"], output)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return output


def _table(output: str, name: str) -> pd.DataFrame:
    files = glob.glob(os.path.join(output, name, "**", "*.parquet"), recursive=True)
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _outcomes(output: str) -> dict[tuple[str, str], int]:
    df = _table(output, "outcomes")
    if df.empty:
        return {}
    return {k: int(v) for k, v in df.groupby(["record_type", "outcome"])["count"].sum().items()}


def _metrics(output: str) -> pd.DataFrame:
    df = _table(output, "metrics")
    return latest(df) if not df.empty else df


class StreamingJob:
    """``msewatch run`` on two new Kafka topics, submitted to the cluster, fed live by a
    :class:`Producer`; stopped with SIGINT."""

    def __init__(self, cluster, broker, tmp: Path):
        self.cluster = cluster
        self.bootstrap = broker.bootstrap
        self.topics = {kind: f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("p", "l")}
        create_topics(self.bootstrap, list(self.topics.values()))
        self.output = str(tmp / "out")
        self.log = tmp / "msewatch.log"
        self.tmp = tmp
        self.proc = None
        self.jid = None
        self.producer = None

    def start(self) -> None:
        """``msewatch run`` as a user starts it; its output goes to ``self.log``."""
        self._earlier = {j["jid"] for j in local_flink.jobs(self.cluster)}
        url = f"kafka://{self.bootstrap}/"
        args = _run_args(url + self.topics["p"], url + self.topics["l"], self.output)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    flink_python(),
                    *args,
                    "--runner",
                    "FlinkRunner",
                    "--flink-master",
                    f"localhost:{self.cluster.rest_port}",
                    "--parallelism",
                    "2",
                    "--sink-flush",
                    "2s",
                    "--kafka-consumer-group",
                    f"msewatch-test-{uuid.uuid4().hex[:8]}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_for("the job's tasks to run", self._running, 600)

    def _running(self) -> bool:
        jobs = [
            j
            for j in local_flink.jobs(self.cluster)
            if j["state"] == "RUNNING" and j["jid"] not in self._earlier
        ]
        if not jobs:
            return False
        job = local_flink.overview(self.cluster.rest_url, f"/jobs/{jobs[0]['jid']}")
        self.jid = job["jid"]
        return all(v["status"] == "RUNNING" for v in job["vertices"])

    def stream(self, sample: Path) -> Stream:
        """Starts the live stream (its first record due 2 s from now); returns it."""
        start_ms = int(time.time() * 1000) + LEAD_MS + 2_000
        stream = Stream(sample, self.tmp / "published", start_ms)
        self.producer = Producer(self.bootstrap, self.topics, stream)
        self.producer.start()
        return stream

    def log_tail(self) -> str:
        return "msewatch log: " + self.log.read_text(errors="replace")[-3000:]

    def wait_for(self, what: str, ready, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"msewatch exited; {self.log_tail()}"
            if self.producer is not None and self.producer.error is not None:
                raise self.producer.error
            if ready():
                return
            time.sleep(1)
        raise AssertionError(f"timed out after {timeout_s:.0f} s: {what}; {self.log_tail()}")

    def wait_finished(self, stream: Stream) -> None:
        """Until every published record has its outcome and every window is complete."""

        def ready():
            if time.time() * 1000 < stream.settled_ms:
                return False
            outcomes = _outcomes(self.output)
            for record_type, n in stream.counts.items():
                resolved = sum(
                    v for (r, o), v in outcomes.items() if r == record_type and o != "input"
                )
                if resolved < n:
                    return False
            df = _metrics(self.output)
            return not df.empty and bool(df["complete"].all())

        self.wait_for("every outcome and complete windows", ready, 300)
        time.sleep(6)  # three more flushes: nothing else may arrive
        self.producer.join(10)
        behind = self.producer.behind_ms
        say(f"the producer sent each record at most {behind / 1000:.1f} s after it was due")
        assert behind < LEAD_MS - 1_000, "the producer fell behind the watermark: rerun"

    def checkpoints(self) -> dict:
        return local_flink.overview(self.cluster.rest_url, f"/jobs/{self.jid}/checkpoints")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def _check_against_reference(job: StreamingJob, stream: Stream, reference: str) -> None:
    """Nothing lost, nothing counted twice: the reference's outcomes and latest rows."""
    outcomes = _outcomes(job.output)
    assert outcomes == _outcomes(reference)
    for record_type, n in stream.counts.items():
        resolved = sum(v for (r, o), v in outcomes.items() if r == record_type and o != "input")
        assert (outcomes[(record_type, "input")], resolved) == (n, n), outcomes
    expected = _metrics(reference).drop(columns=_FIRING_COLUMNS)
    got = _metrics(job.output).drop(columns=_FIRING_COLUMNS)
    assert len(expected) > 20 and {"overall", "region=eu"} <= set(expected["slice"])
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)
    # the sink writes each file under a hidden temporary name and renames it: none left
    assert not glob.glob(os.path.join(job.output, "**", ".*.tmp"), recursive=True)


def _check_dead_letters(job: StreamingJob, stream: Stream, reference: str) -> None:
    """The reference's dead letters, each naming its record's topic, partition, offset."""
    dead = _table(job.output, "dead_letter")
    expected = _table(reference, "dead_letter")
    assert set(expected["record_type"]) == {"prediction", "label"}  # malformed lines of each
    assert sorted(dead["raw_payload"]) == sorted(expected["raw_payload"])
    assert sorted(dead["reason"]) == sorted(expected["reason"])
    for kind, batch in (("p", stream.predictions), ("l", stream.labels)):
        topic = job.topics[kind]
        mine = dead[dead["message_id"].str.startswith(f"{topic}/")]
        bad = set(mine["raw_payload"])
        # one partition: a record's offset is its position in the topic
        offsets = {i for i, r in enumerate(batch) if r.value.decode() in bad}
        assert set(mine["message_id"]) == {f"{topic}/0/{i}" for i in offsets}
        attributes = [json.loads(a) for a in mine["attributes"]]
        assert {(a["topic"], a["partition"]) for a in attributes} == {(topic, "0")}


def _check_cancelled(job: StreamingJob, cluster) -> None:
    """Ctrl-C cancelled the job on the cluster and msewatch exited cleanly."""
    assert job.proc.returncode == 0, job.log_tail()
    log = job.log.read_text()
    assert "msewatch: the Flink job is CANCELED" in log, job.log_tail()
    # the options msewatch adds (--checkpointing_interval) are known to Beam's parser
    assert "Unknown pipeline options" not in log, job.log_tail()
    states = [j["state"] for j in local_flink.jobs(cluster) if j["jid"] == job.jid]
    say(f"Flink REST /jobs/{job.jid} after Ctrl-C: {states}")
    assert states == ["CANCELED"]


def _check_finished(job: StreamingJob, stream: Stream, cluster, tmp_path: Path) -> dict:
    """The stopped job's tables against the reference, its dead letters and its end;
    returns its metric rows counted by pane timing."""
    timings = _table(job.output, "metrics").groupby("pane_timing").size().to_dict()
    say(f"metrics rows by pane timing: {timings}")
    reference = _reference(stream, str(tmp_path / "direct"))
    _check_against_reference(job, stream, reference)
    _check_dead_letters(job, stream, reference)
    _check_cancelled(job, cluster)
    return timings


def test_a_live_kafka_stream_on_flink_gives_late_panes_and_the_direct_runners_rows(
    cluster, broker, sample, tmp_path
):
    job = StreamingJob(cluster, broker, tmp_path)
    try:
        job.start()
        stream = job.stream(sample)
        job.wait_finished(stream)
        job_record = local_flink.overview(cluster.rest_url, f"/jobs/{job.jid}")
        say(f"Flink REST /jobs/{job.jid}: {job_record['name']} {job_record['state']}")
    finally:
        job.stop()
    timings = _check_finished(job, stream, cluster, tmp_path)
    # windows fired when the wall clock passed them; labels after that came in LATE panes
    assert timings.get("ON_TIME", 0) > 20 and timings.get("LATE", 0) > 20, timings


def test_a_taskmanager_killed_mid_stream_is_replaced_and_the_job_restores_its_checkpoint(
    cluster, broker, sample, tmp_path
):
    job = StreamingJob(cluster, broker, tmp_path)
    try:
        job.start()
        stream = job.stream(sample)
        # a third into the stream, once a checkpoint has completed after some records
        kill_at_ms = stream.settled_ms - (stream.settled_ms - time.time() * 1000) * 2 / 3
        job.wait_for("a third of the stream", lambda: time.time() * 1000 >= kill_at_ms, 300)
        done = job.checkpoints()["counts"]["completed"]
        job.wait_for("a checkpoint", lambda: job.checkpoints()["counts"]["completed"] > done, 60)
        last_completed = job.checkpoints()["latest"]["completed"]["id"]
        killed = processes.kill(cluster.pid_file("taskmanager"))
        assert killed is not None and processes.wait_for(lambda: not processes.alive(killed), 10)
        say(f"SIGKILL TaskManager pid {killed} after checkpoint {last_completed} completed")
        local_flink.start_role(cluster, "taskmanager")

        def restored():
            info = job.checkpoints()
            return (info.get("latest") or {}).get("restored") is not None

        job.wait_for("the job to restore a checkpoint", restored, 180)
        restored_record = job.checkpoints()["latest"]["restored"]
        say(
            f"Flink REST /jobs/{job.jid}/checkpoints latest.restored: id "
            f"{restored_record['id']}, {restored_record['external_path']}"
        )
        # the latest checkpoint that completed before the kill (or one completed in
        # the instant between reading it and the kill)
        assert restored_record["id"] >= last_completed
        job.wait_finished(stream)
    finally:
        job.stop()
    _check_finished(job, stream, cluster, tmp_path)
