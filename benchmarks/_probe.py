"""Runs ``msewatch run`` in this process and saves the job's Beam metrics as JSON.

``msewatch run`` does not print Beam metrics, so the ``--state`` benchmark runs the
CLI through this wrapper: it wraps ``apache_beam.Pipeline.run`` to keep the
``PipelineResult``, calls ``msewatch.cli.main`` with the remaining arguments
unchanged, then writes every distribution and counter in namespace ``msewatch``
(``join_state_rows`` among them) to the JSON file.

The streaming DirectRunner drops metric updates (often all of them), so the wrapper
also records ``join_state_rows`` in-process: it wraps the join module's distribution
object (``msewatch.transforms.join._STATE_ROWS``) with one that keeps count, sum,
min and max as well as forwarding each update. That is exact for in-process runners
(DirectRunner, FnApiRunner) and written as ``in_process`` (``null`` if the join
module has no such object).

Usage::

    python benchmarks/_probe.py METRICS.json run --predictions ... [msewatch run options]
"""

from __future__ import annotations

import json
import sys

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter


def _result_value(result):
    """``committed`` if the runner reports it, else ``attempted``."""
    value = result.committed if result.committed is not None else result.attempted
    if hasattr(value, "count"):  # DistributionResult
        return {"count": value.count, "sum": value.sum, "min": value.min, "max": value.max}
    return value


class _Recorder:
    """Forwards ``update`` to a Beam distribution and keeps count, sum, min and max."""

    def __init__(self, inner):
        self._inner = inner
        self.stats = {"count": 0, "sum": 0, "min": None, "max": None}

    def update(self, value):
        self._inner.update(value)
        s = self.stats
        s["count"] += 1
        s["sum"] += int(value)
        s["min"] = value if s["min"] is None else min(s["min"], value)
        s["max"] = value if s["max"] is None else max(s["max"], value)


def _record_state_rows() -> _Recorder | None:
    from msewatch.transforms.join import transform as join

    inner = getattr(join, "_STATE_ROWS", None)
    if inner is None:
        return None
    join._STATE_ROWS = _Recorder(inner)
    return join._STATE_ROWS


def main(argv: list[str]) -> int:
    """Runs the CLI with ``argv[1:]`` and writes its metrics to ``argv[0]``."""
    out_path, cli_args = argv[0], argv[1:]
    results = []
    original_run = beam.Pipeline.run

    def run(self, *args, **kwargs):
        result = original_run(self, *args, **kwargs)
        results.append(result)
        return result

    beam.Pipeline.run = run
    recorder = _record_state_rows()
    from msewatch import cli

    status = cli.main(cli_args)
    metrics = {"distributions": {}, "counters": {}, "available": bool(results)}
    metrics["in_process"] = {"join_state_rows": recorder.stats if recorder else None}
    if results:
        query = results[-1].metrics().query(MetricsFilter().with_namespace("msewatch"))
        for kind in ("distributions", "counters"):
            for item in query.get(kind, []):
                name = item.key.metric.name
                metrics[kind].setdefault(name, []).append(
                    {"step": item.key.step, "value": _result_value(item)}
                )
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
