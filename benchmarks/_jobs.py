"""The jobs a benchmark runs and the bench that measures, checks and records them.

A :class:`Job` is one tool (``msewatch``, ``textbook``, ``pandas`` or ``duckdb``) on one workload
with its settings; it knows its command line and how to read its output as
canonical rows (``_agree.py``). :class:`Bench` runs jobs as child processes
(``_measure.py``), each into a fresh ``OUT/runs/<tag>/`` with its log in
``OUT/logs/<tag>.log``, compares outputs and saves ``results.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys

import _agree
import _measure
import _report
import _workload

HERE = os.path.dirname(os.path.abspath(__file__))
WINDOW_SECONDS = 3600
SLICE_KEY = "region"
DEFAULT_TTL_MS = 7 * 86_400_000
JOIN_SHARDS = 16  # the state runs pass --shards 16 (msewatch's cluster default)
PEERS = (
    "msewatch_jsonl",
    "msewatch_slo",
    "msewatch_parquet",
    "msewatch_replay",
    "textbook",
    "pandas",
    "duckdb",
    "msewatch_flink_p1",
    "msewatch_flink_p2",
)
# apache-beam 2.62's Python for the Flink peers (``make flink-env``; runners/flink-constraints.txt)
FLINK_PYTHON = os.environ.get("MSEWATCH_FLINK_PYTHON") or os.path.join(
    os.path.dirname(HERE), ".venv-flink", "bin", "python"
)
_SCRIPTS = {"textbook": "textbook.py", "pandas": "pandas_ref.py", "duckdb": "duckdb_ref.py"}
SLO_FILE = os.path.join(os.path.dirname(HERE), "docs", "examples", "slo.yaml")


class Disagreement(Exception):
    """A peer's metrics differ from the reference's."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One thing to run: a tool on a workload with its settings."""

    name: str
    tool: str  # msewatch | textbook | pandas | duckdb
    workload: _workload.Workload
    fmt: str = "jsonl"
    replay: bool = False
    label_ttl_ms: int = DEFAULT_TTL_MS
    probe: bool = False
    replay_chunk_rows: int | None = None  # None: msewatch's default
    shards: int | None = None  # None: msewatch's default
    slo: str | None = None  # an SLO file: the run also evaluates SLOs (alerts tables)
    flink_master: str | None = None  # FlinkRunner on this cluster (bounded)
    parallelism: int = 1  # with flink_master: the job's --parallelism

    def command(self, out_dir: str) -> list[str]:
        """The child's argv, writing its output under ``out_dir``."""
        preds = self.workload.path("predictions", self.fmt)
        labels = self.workload.path("labels", self.fmt)
        if self.tool == "msewatch":
            cmd = ["run", "--predictions", preds, "--labels", labels, "--output", out_dir]
            cmd += ["--window", f"{WINDOW_SECONDS}s", "--slice", SLICE_KEY, "--quiet"]
            cmd += ["--label-ttl", f"{self.label_ttl_ms}ms"]
            cmd += ["--streaming-replay"] if self.replay else []
            if self.replay and self.replay_chunk_rows:
                cmd += ["--replay-chunk-rows", str(self.replay_chunk_rows)]
            if self.shards:
                cmd += ["--shards", str(self.shards)]
            if self.slo:
                cmd += ["--slo", self.slo]
            if self.probe:
                probe = os.path.join(HERE, "_probe.py")
                return [sys.executable, probe, os.path.join(out_dir, "beam_metrics.json"), *cmd]
            if self.flink_master:
                cmd += ["--runner", "FlinkRunner", "--flink-master", self.flink_master]
                cmd += ["--parallelism", str(self.parallelism)]
                return [FLINK_PYTHON, "-m", "msewatch", *cmd]
            return [sys.executable, "-m", "msewatch", *cmd]
        script = os.path.join(HERE, _SCRIPTS[self.tool])
        target = out_dir if self.tool == "textbook" else os.path.join(out_dir, "metrics.parquet")
        return [
            sys.executable, script, "--predictions", preds, "--labels", labels,
            "--output", target, "--window-seconds", str(WINDOW_SECONDS),
            "--label-ttl-ms", str(self.label_ttl_ms), "--slice", SLICE_KEY,
        ]  # fmt: skip

    def rows(self, out_dir: str):
        """The job's output as canonical rows (see ``_agree.py``)."""
        if self.tool == "msewatch":
            return _agree.read_msewatch(out_dir, SLICE_KEY)
        if self.tool == "textbook":
            return _agree.read_textbook(out_dir)
        return _agree.read_parquet_rows(os.path.join(out_dir, "metrics.parquet"))


class Bench:
    """Runs jobs, keeps their measurements and the agreement checks, saves results."""

    def __init__(self, out: str, timeout_s: float | None, results: dict):
        self.out = out
        self.timeout_s = timeout_s
        self.results = results
        self.checks = results["agreement"]["checks"]
        self.timed_out: set[str] = set()  # tags whose latest run hit the time limit

    def out_dir(self, tag: str) -> str:
        """Where run ``tag`` writes its output."""
        return os.path.join(self.out, "runs", tag)

    def measure(self, job: Job, tag: str) -> dict:
        """Runs ``job`` once (fresh output directory) and returns its measurement."""
        out_dir = self.out_dir(tag)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        log = os.path.join(self.out, "logs", f"{tag}.log")
        m = _measure.run(job.command(out_dir), log, timeout_s=self.timeout_s)
        run = dataclasses.asdict(m)
        (self.timed_out.add if m.timed_out else self.timed_out.discard)(tag)
        timing = os.path.join(out_dir, "timing.json")  # the textbook's in-pipeline time
        if os.path.exists(timing) and not m.timed_out:
            with open(timing, encoding="utf-8") as f:
                run |= json.load(f)
        rss = "TIMED OUT" if m.timed_out else f"{m.peak_rss_bytes / _report.MIB:,.0f} MiB"
        print(f"  {tag:28} {m.wall_s:9.2f} s  {rss:>10}", flush=True)
        return run

    def check(self, job: Job, tag: str, reference: Job, ref_tag: str, round_: int) -> None:
        """Compares run ``tag`` of ``job`` with the reference run; raises on a mismatch.

        A run that hit the time limit (either one) has no output: the check is recorded
        as skipped.
        """
        entry = {"peer": tag, "reference": ref_tag, "round": round_}
        if {tag, ref_tag} & self.timed_out:
            self.checks.append(entry | {"ok": None, "skipped": "timed out"})
            return
        result = _agree.compare(
            reference.rows(self.out_dir(ref_tag)),
            job.rows(self.out_dir(tag)),
            only_scored=job.tool == "textbook",
        )
        self.checks.append(entry | result)
        if not result["ok"]:
            raise Disagreement(
                f"{tag} disagrees with {ref_tag}:\n  " + "\n  ".join(result["problems"])
            )

    def save(self) -> None:
        """Writes ``results.json``."""
        with open(os.path.join(self.out, "results.json"), "w", encoding="utf-8") as f:
            json.dump(self.results, f, indent=2, default=str)


def rounds(
    bench: Bench,
    jobs: list[Job],
    refs: dict[str, tuple[Job, str]],
    repeats: int,
    into: dict,
) -> None:
    """Runs ``jobs`` ``repeats`` times, rotating the order; checks and records each round.

    Args:
        bench: the bench.
        jobs: the jobs (their names are the run tags).
        refs: job name -> (reference job, its run tag) to compare with after each round.
        repeats: rounds.
        into: receives ``{job name: summary}`` (``_report.summarize`` plus the list of
            ``runs``), updated after every round so that a failure keeps what was measured.
    """
    runs = {job.name: [] for job in jobs}
    for r in range(repeats):
        print(f"round {r + 1}/{repeats}", flush=True)
        shift = r % len(jobs)
        for job in jobs[shift:] + jobs[:shift]:
            runs[job.name].append(bench.measure(job, job.name))
            into[job.name] = _report.summarize(runs[job.name], job.workload.events)
            into[job.name]["runs"] = runs[job.name]
        for job in jobs:
            if job.name in refs:
                ref_job, ref_tag = refs[job.name]
                bench.check(job, job.name, ref_job, ref_tag, r)
        bench.save()
