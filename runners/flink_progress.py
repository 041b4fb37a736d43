"""The progress line of a job on a Flink cluster (stderr, tqdm), read from Flink's REST API.

A bounded run on Flink takes minutes and a streaming one never ends; the job's Python
workers do not report to this process, so the line shows what the JobManager says:
the job's state, its vertices finished of all, and the records its vertices read and
wrote (Flink's ``read-records`` / ``write-records``, see :func:`job_status`), with the
elapsed time. It is refreshed once a
second from ``GET /jobs/overview`` (the job is the one named after Beam's job id
without its ``_<uuid>`` tail, as :func:`msewatch.runners.flink.cancel_job` finds it)
and ``GET /jobs/<jid>`` (its plan and per-vertex metrics).

It is on when the runner is the FlinkRunner with a REST address, stderr is a terminal
and there is no ``--quiet``; ``MSEWATCH_PROGRESS=1`` forces it on (the tests read the
lines from a pipe). A REST call that fails leaves the last line as it was.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from msewatch.runners import flink

FORCE_ENV = "MSEWATCH_PROGRESS"
_REFRESH_S = 1.0
_TIMEOUT_S = 5.0
_DESC = "msewatch: Flink job: "


def wanted(quiet: bool, runner: str, master: str | None, stream=None) -> bool:
    """Whether a run with these settings shows the Flink line (see the module docstring)."""
    stream = sys.stderr if stream is None else stream
    if quiet or runner != "FlinkRunner" or not master or master in flink.MAGIC_MASTERS:
        return False
    forced = os.environ.get(FORCE_ENV, "") == "1"
    return forced or (hasattr(stream, "isatty") and stream.isatty())


def find_job(rest_url: str, beam_job_id: str) -> str | None:
    """The Flink job id of the newest job named after ``beam_job_id`` (None: not yet)."""
    name = beam_job_id.split("_", 1)[0]
    jobs = flink.overview(rest_url, "/jobs/overview", _TIMEOUT_S).get("jobs", [])
    mine = [job for job in jobs if job.get("name") == name]
    return max(mine, key=lambda job: job.get("start-time", 0))["jid"] if mine else None


def job_status(details: dict) -> tuple[str, int, int, int, int]:
    """``(state, vertices finished, vertices, records in, records out)`` from a
    ``GET /jobs/<jid>`` answer.

    In and out are Flink's ``read-records`` and ``write-records`` summed over every
    vertex: Beam's sources are Impulses (one record) and its sinks discard, so the ends
    alone say nothing; and Flink counts Beam elements, which msewatch's steps pass as
    Arrow batches, so these count batches and rows between steps, not input lines.
    Vertices without metrics yet count 0.
    """
    vertices = details.get("vertices", [])
    finished = sum(1 for vertex in vertices if vertex.get("status") == "FINISHED")
    records_in = records_out = 0
    for vertex in vertices:
        metrics = vertex.get("metrics", {})
        records_in += int(metrics.get("read-records", 0))
        records_out += int(metrics.get("write-records", 0))
    return str(details.get("state", "?")), finished, len(vertices), records_in, records_out


def status_line(state: str, done: int, vertices: int, records_in: int, records_out: int) -> str:
    return (
        f"{state}, {done}/{vertices} vertices finished, "
        f"{records_in:,} records in, {records_out:,} out"
    )


class _Watcher:
    """Polls the REST API on a thread and moves a tqdm line (no total: elapsed time)."""

    def __init__(self, rest_url: str, beam_job_id: str, stream):
        from tqdm import tqdm  # only a run that shows the line imports it

        self._url, self._beam_id, self._jid = rest_url, beam_job_id, None
        self._bar = tqdm(
            total=None,
            desc=f"{_DESC}submitting",
            bar_format="{desc} [{elapsed}]",
            file=stream,
            leave=True,  # the last line (FINISHED, the counts) stays
            ncols=100,
        )

    def poll(self) -> None:
        try:
            self._jid = self._jid or find_job(self._url, self._beam_id)
            if self._jid is None:
                return
            details = flink.overview(self._url, f"/jobs/{self._jid}", _TIMEOUT_S)
        except (OSError, KeyError, ValueError):
            return  # the JobManager is busy or the job not listed yet: keep the last line
        self._bar.set_description_str(_DESC + status_line(*job_status(details)), refresh=False)

    def run(self, done: threading.Event) -> None:
        while not done.wait(_REFRESH_S):
            self.poll()
            self._bar.refresh()

    def close(self) -> None:
        self.poll()
        self._bar.refresh()
        self._bar.close()


@contextlib.contextmanager
def watching(master: str, beam_job_id: str, enabled: bool, stream=None):
    """Shows the job's line while the block runs (nothing when ``enabled`` is false)."""
    if not enabled or not beam_job_id:
        yield
        return
    stream = sys.stderr if stream is None else stream
    watcher = _Watcher(flink.rest_url(master), beam_job_id, stream)
    done = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(done,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        watcher.close()
