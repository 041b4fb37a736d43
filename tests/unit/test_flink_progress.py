"""The Flink job's progress line, read from a fake JobManager (an http.server on 127.0.0.1
that answers with JSON shaped as Flink 1.19's REST API answers)."""

from __future__ import annotations

import io
import json

import pytest

from msewatch.runners import flink_progress
from tests.servers import QuietHandler, http_on_loopback

BEAM_ID = "BeamApp-root-1208035959-6a1b2c3d_0f9e8d7c-aaaa-bbbb-cccc-123456789abc"
JID = "5d2f0c0a9f1e4b1c8a3d2e1f0a9b8c7d"
# three vertices in a chain: an Impulse source -> a step -> a discarding sink
DETAILS = {
    "jid": JID,
    "state": "RUNNING",
    "vertices": [
        {"id": "src", "status": "FINISHED", "metrics": {"read-records": 0, "write-records": 1}},
        {"id": "mid", "status": "RUNNING", "metrics": {"read-records": 1, "write-records": 1200}},
        {"id": "sink", "status": "RUNNING", "metrics": {"read-records": 1185, "write-records": 0}},
    ],
    "plan": {
        "nodes": [
            {"id": "src"},
            {"id": "mid", "inputs": [{"id": "src"}]},
            {"id": "sink", "inputs": [{"id": "mid"}]},
        ]
    },
}
OVERVIEW = {
    "jobs": [
        {"jid": "old", "name": BEAM_ID.split("_")[0], "state": "FINISHED", "start-time": 1},
        {"jid": JID, "name": BEAM_ID.split("_")[0], "state": "RUNNING", "start-time": 9},
        {"jid": "other", "name": "BeamApp-someone-else", "state": "RUNNING", "start-time": 20},
    ]
}


@pytest.fixture
def jobmanager():
    answers = {"/jobs/overview": OVERVIEW, f"/jobs/{JID}": DETAILS}

    class Handler(QuietHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = json.dumps(answers.get(self.path, {"errors": ["Not found."]})).encode()
            self.send_response(200 if self.path in answers else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    with http_on_loopback(Handler) as port:
        yield f"127.0.0.1:{port}"


def test_in_and_out_are_summed_over_every_vertex():
    # 1 of 3 vertices FINISHED; in: 0 + 1 + 1185 = 1186; out: 1 + 1200 + 0 = 1201
    assert flink_progress.job_status(DETAILS) == ("RUNNING", 1, 3, 1186, 1201)


def test_a_job_without_metrics_yet_counts_zero():
    details = {"state": "CREATED", "vertices": [{"id": "a"}], "plan": {"nodes": [{"id": "a"}]}}
    assert flink_progress.job_status(details) == ("CREATED", 0, 1, 0, 0)


def test_the_job_is_the_newest_named_after_beams_id(jobmanager):
    assert flink_progress.find_job(f"http://{jobmanager}", BEAM_ID) == JID
    assert flink_progress.find_job(f"http://{jobmanager}", "BeamApp-nobody_x") is None


def test_the_line_shows_the_state_and_the_counts_from_the_rest_api(jobmanager):
    stream = io.StringIO()
    with flink_progress.watching(jobmanager, BEAM_ID, enabled=True, stream=stream):
        pass  # closing polls once more and leaves the last line
    assert (
        "msewatch: Flink job: RUNNING, 1/3 vertices finished, 1,186 records in, 1,201 out"
        in stream.getvalue()
    )


def test_a_jobmanager_that_does_not_answer_leaves_the_line_as_it_was():
    stream = io.StringIO()
    with flink_progress.watching("127.0.0.1:9", BEAM_ID, enabled=True, stream=stream):
        pass
    assert "submitting" in stream.getvalue()


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(
    ("quiet", "runner", "master", "stream", "forced", "shown"),
    [
        (False, "FlinkRunner", "localhost:8081", _Tty(), "", True),
        (True, "FlinkRunner", "localhost:8081", _Tty(), "1", False),  # --quiet wins
        (False, "FlinkRunner", "localhost:8081", io.StringIO(), "", False),  # not a tty
        (False, "FlinkRunner", "localhost:8081", io.StringIO(), "1", True),  # forced
        (False, "DirectRunner", "localhost:8081", _Tty(), "1", False),
        (False, "FlinkRunner", "[local]", _Tty(), "", False),  # no REST API to ask
    ],
)
def test_it_is_on_only_for_flink_on_a_terminal_without_quiet(
    monkeypatch, quiet, runner, master, stream, forced, shown
):
    monkeypatch.setenv(flink_progress.FORCE_ENV, forced)
    assert flink_progress.wanted(quiet, runner, master, stream) is shown


def test_nothing_is_printed_when_it_is_off(jobmanager):
    stream = io.StringIO()
    with flink_progress.watching(jobmanager, BEAM_ID, enabled=False, stream=stream):
        pass
    assert stream.getvalue() == ""
