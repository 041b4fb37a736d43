"""msewatch against its peers, in one invocation: speed, memory and agreement (README, Performance).

Usage::

    python benchmarks/run.py [--predictions 1000000] [--repeats 3]
        [--textbook-predictions 50000] [--out bench-out] [--quick]
        [--scaling [--scaling-sizes 1000000,3000000,10000000]] [--replay-scaling]
        [--state] [--peers NAME,...] [--timeout SECONDS]

Generates the workload once (``msewatch.commands.generate.generate`` without malformed
lines, JSON Lines and Parquet; cached by parameters under ``OUT/workload``), then runs
``--repeats`` rounds of these peers, one child process each, the order rotating every
round so that no peer always runs first or last:

* ``msewatch_jsonl`` / ``msewatch_parquet``: ``msewatch run --quiet --window 1h
  --slice region`` on the JSON Lines / Parquet files (bounded, FnApiRunner);
* ``msewatch_replay``: the same with ``--streaming-replay`` (``--replay-format``);
* ``textbook``: ``benchmarks/textbook.py``, the per-record Beam pipeline, on the first
  ``--textbook-predictions`` predictions and their labels (it is slow);
* ``pandas``: ``benchmarks/pandas_ref.py``, the pandas reference, on the JSON Lines.
* ``duckdb``: ``benchmarks/duckdb_ref.py``, the same result as one DuckDB SQL query over
  the JSON Lines (all cores): the single-machine limit msewatch is judged against.
* ``msewatch_flink_p1`` / ``msewatch_flink_p2`` (only when asked for, with
  ``--flink-master``): the JSON Lines run on that Flink cluster with ``--parallelism``
  1 / 2, through the Python of the matched Flink stack (``$MSEWATCH_FLINK_PYTHON``,
  else ``.venv-flink``). Their peak RSS is the client's only (the work runs in the
  cluster's JVMs and, with LOOPBACK, in the client's Python workers).

After each round every peer's metrics (``predictions``, ``labeled``, ``scored``,
``mse``, ``mae``, ``rmse`` per window for the ``overall`` and ``region=*`` slices;
msewatch's latest pane) are compared with the pandas reference on the same records
(the textbook with a pandas run on its slice): counts equal, floats within 1e-9
relative. A mismatch prints the differences and exits with status 1.

``--scaling`` adds msewatch's bounded JSON Lines run and DuckDB at each of
``--scaling-sizes`` predictions (1 M, 3 M, 10 M), alternated and repeated, msewatch checked
against DuckDB at each size (pandas would not fit at 10 M); it prints wall, events/s, peak RSS
and msewatch/DuckDB per size. ``--replay-scaling`` adds the replay at about 200,000 and
2,000,000 events (``--scaling-events``), alternated and repeated.
``--state`` runs a bounded and a replay run with ``--label-ttl`` set to ``--state-ttl``
(1h) and to the default (7d), on a workload of ``--state-predictions``, replayed in
steps of ``--state-chunk-rows`` records (a step's records all enter the join before the
watermark moves, so the step bounds the state from below), through ``_probe.py``, which
records the join's ``join_state_rows`` distribution (rows held by a join shard after
each batch or timer) in-process, because the streaming DirectRunner drops Beam metric
updates. Only the streaming join reports it; the bounded join buffers its whole input by
design, so bounded runs report peak RSS only. Each of these runs is checked against
pandas too.

Measured: wall time and peak RSS per child process (``_measure.py``: ``os.wait4``'s
``ru_maxrss`` taken by the small ``_spawn.py`` launcher; no psutil). Events are
prediction records plus label records. Prints a table, ratios and the README's
targets; writes everything to ``OUT/results.json`` (rewritten after each round).
Exit status: 0, or 1 if the peers disagree or a run fails, 3 if a run hit
``--timeout``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import sys

import _agree
import _report
import _workload
from _jobs import (
    DEFAULT_TTL_MS,
    JOIN_SHARDS,
    PEERS,
    SLO_FILE,
    Bench,
    Disagreement,
    Job,
    rounds,
)

_QUICK = {"predictions": 3000, "repeats": 1, "textbook_predictions": 1000, "days": 0.25}
_DEFAULTS = {"predictions": 1_000_000, "repeats": 3, "textbook_predictions": 50_000, "days": 3.0}


def main_peers(bench: Bench, args, workload, head) -> None:
    """The peers of the README's Performance section and their agreement (``results["peers"]``)."""
    pandas = Job("pandas", "pandas", workload)
    jobs = {
        "msewatch_jsonl": Job("msewatch_jsonl", "msewatch", workload),
        "msewatch_slo": Job("msewatch_slo", "msewatch", workload, slo=SLO_FILE),
        "msewatch_parquet": Job("msewatch_parquet", "msewatch", workload, fmt="parquet"),
        "msewatch_replay": Job(
            "msewatch_replay", "msewatch", workload, fmt=args.replay_format, replay=True
        ),
        "textbook": Job("textbook", "textbook", head),
        "pandas": pandas,
        "duckdb": Job("duckdb", "duckdb", workload),
    }
    for n in (1, 2):  # the bounded JSON Lines run on a Flink cluster
        name = f"msewatch_flink_p{n}"
        jobs[name] = Job(name, "msewatch", workload, flink_master=args.flink_master, parallelism=n)
    chosen = [jobs[name] for name in args.peers]
    refs = {name: (pandas, "pandas") for name in jobs if name.startswith("msewatch")}
    refs["duckdb"] = (pandas, "pandas")
    if any(job.tool == "textbook" for job in chosen):
        head_ref = Job("pandas_textbook_slice", "pandas", head)
        print("reference on the textbook slice", flush=True)
        bench.measure(head_ref, head_ref.name)
        refs["textbook"] = (head_ref, head_ref.name)
    if any(job.tool in ("msewatch", "duckdb") for job in chosen) and pandas not in chosen:
        chosen.append(pandas)  # the reference of every msewatch peer
    rounds(bench, chosen, refs, args.repeats, into=bench.results["peers"])


def scaling(bench: Bench, args) -> dict:
    """msewatch's bounded JSON Lines run and DuckDB at each ``--scaling-sizes``, alternated
    and repeated; msewatch checked against DuckDB (pandas would not fit at 10 M)."""
    out = bench.results["scaling"] = {"sizes": {}}
    for predictions in args.scaling_sizes:
        workload = _workload.ensure(args.cache, predictions, args.seed, args.days)
        duck = Job(f"duckdb_{predictions}", "duckdb", workload)
        ours = Job(f"msewatch_jsonl_{predictions}", "msewatch", workload)
        measured: dict = {}
        print(f"scaling: {predictions:,} predictions ({workload.events:,} events)", flush=True)
        rounds(bench, [ours, duck], {ours.name: (duck, duck.name)}, args.repeats, into=measured)
        size = {"predictions": predictions, "events": workload.events, **measured}
        size["msewatch_over_duckdb_wall"] = _report.ratio_of(
            measured[ours.name]["wall_median_s"], measured[duck.name]["wall_median_s"]
        )
        out["sizes"][str(predictions)] = size
        bench.save()
    return out


def replay_scaling(bench: Bench, args) -> dict:
    """The replay at two sizes, alternated and repeated; each checked against pandas."""
    jobs, refs = [], {}
    for label, events in zip(("small", "large"), args.scaling_events, strict=True):
        workload = _workload.ensure(
            args.cache, _workload.predictions_for_events(events), args.seed, args.days
        )
        ref = Job(f"pandas_scaling_{label}", "pandas", workload)
        print(f"reference for the {label} replay", flush=True)
        bench.measure(ref, ref.name)
        job = Job(f"replay_{label}", "msewatch", workload, fmt=args.replay_format, replay=True)
        jobs.append(job)
        refs[job.name] = (ref, ref.name)
    out = bench.results["replay_scaling"] = {"sizes": {}, "large_over_small": None}
    rounds(bench, jobs, refs, args.repeats, into=out["sizes"])
    small = out["sizes"]["replay_small"]["events_per_s"]
    large = out["sizes"]["replay_large"]["events_per_s"]
    out["large_over_small"] = large / small if small and large else None
    return out


def state(bench: Bench, args) -> dict:
    """Bounded and replay runs with a short and the default label TTL (see module doc)."""
    workload = _workload.ensure(args.cache, args.state_predictions, args.seed, args.days)
    out = {"predictions": args.state_predictions, "events": workload.events, "runs": {}}
    out["replay_chunk_rows"] = args.state_chunk_rows
    out["all_predictions_per_shard"] = workload.prediction_records / JOIN_SHARDS
    out["note"] = (
        "join_state_rows max = rows held by the largest of the 16 join shards after a "
        "batch or timer (streaming join only; recorded in-process by _probe.py because the "
        "streaming DirectRunner drops Beam metric updates); bounded runs buffer their "
        "input by design and report peak RSS only"
    )
    for ttl_ms, ttl_name in ((args.state_ttl_ms, "short_ttl"), (DEFAULT_TTL_MS, "default_ttl")):
        ref = Job(f"pandas_state_{ttl_name}", "pandas", workload, label_ttl_ms=ttl_ms)
        bench.measure(ref, ref.name)
        for mode in ("bounded", "replay"):
            job = Job(
                f"state_{mode}_{ttl_name}", "msewatch", workload, fmt="parquet",
                replay=mode == "replay", label_ttl_ms=ttl_ms, probe=True,
                replay_chunk_rows=args.state_chunk_rows, shards=JOIN_SHARDS,
            )  # fmt: skip
            run = bench.measure(job, job.name)
            bench.check(job, job.name, ref, ref.name, 0)
            beam_dist, recorded = _read_state_rows(bench.out_dir(job.name))
            peak = (recorded or beam_dist or {}).get("max")
            out["runs"][job.name] = {
                "label_ttl_ms": ttl_ms,
                "wall_s": run["wall_s"],
                "peak_rss_mib": run["peak_rss_bytes"] and run["peak_rss_bytes"] / _report.MIB,
                "timed_out": run["timed_out"],
                "join_state_rows_max_per_shard": peak,
                "join_state_rows_beam_metric": beam_dist,
                "join_state_rows_in_process": recorded,
            }
            bench.save()
    return out


def _read_state_rows(out_dir: str) -> tuple[dict | None, dict | None]:
    """``join_state_rows`` as the runner reported it, and as recorded in-process."""
    path = os.path.join(out_dir, "beam_metrics.json")
    if not os.path.exists(path):
        return None, None
    with open(path, encoding="utf-8") as f:
        probe = json.load(f)
    items = probe["distributions"].get("join_state_rows", [])
    values = [item["value"] for item in items if item["value"] and item["value"]["count"]]
    recorded = (probe.get("in_process") or {}).get("join_state_rows")
    recorded = recorded if recorded and recorded["count"] else None
    if not values:
        return None, recorded
    beam_dist = {
        "count": sum(v["count"] for v in values),
        "sum": sum(v["sum"] for v in values),
        "min": min(v["min"] for v in values),
        "max": max(v["max"] for v in values),
    }
    return beam_dist, recorded


def _any_timed_out(value) -> bool:
    """Whether any run recorded anywhere in ``value`` (results) hit the time limit."""
    if isinstance(value, dict):
        return value.get("timed_out") is True or any(map(_any_timed_out, value.values()))
    if isinstance(value, list):
        return any(map(_any_timed_out, value))
    return False


def _duration_ms(text: str) -> int:
    from msewatch.cli import parse_duration_seconds

    return int(round(parse_duration_seconds(text) * 1000))


def _events_pair(text: str) -> tuple[int, int]:
    values = tuple(int(x) for x in text.split(","))
    if len(values) != 2 or not 0 < values[0] < values[1]:
        raise argparse.ArgumentTypeError("give two increasing event counts, e.g. 200000,2000000")
    return values


def _sizes(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("give prediction counts, e.g. 1000000,3000000")
    return values


def _peer_list(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(names) - set(PEERS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"peers must be among {', '.join(PEERS)}; got {unknown}")
    return names


def parse_args(argv=None):
    """Command-line options; ``--quick`` fills the sizes not given explicitly."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--predictions", type=int, help="distinct predictions (1000000)")
    p.add_argument("--repeats", type=int, help="rounds of every peer (3)")
    p.add_argument("--textbook-predictions", type=int, help="textbook slice (50000)")
    p.add_argument("--days", type=float, help="event-time range of the workload (3)")
    p.add_argument("--seed", type=int, default=7, help="generator seed (7)")
    p.add_argument("--out", default="bench-out", help="output directory (bench-out)")
    p.add_argument("--cache", help="workload cache (OUT/workload)")
    p.add_argument("--quick", action="store_true", help="tiny workload, one round (for tests)")
    p.add_argument(
        "--peers",
        type=_peer_list,
        default=[n for n in PEERS if not n.startswith("msewatch_flink")],
        help="subset, comma-separated (the msewatch_flink_p1/p2 peers need --flink-master)",
    )
    p.add_argument(
        "--flink-master",
        help="a Flink cluster's REST address (msewatch local flink start: localhost:8081)",
    )
    p.add_argument("--replay-format", choices=("jsonl", "parquet"), default="jsonl")
    p.add_argument("--scaling", action="store_true", help="msewatch and DuckDB at --scaling-sizes")
    p.add_argument(
        "--scaling-sizes",
        type=_sizes,
        default=(1_000_000, 3_000_000, 10_000_000),
        help="predictions per size, comma-separated (1000000,3000000,10000000)",
    )
    p.add_argument("--replay-scaling", action="store_true", help="replay at two sizes")
    p.add_argument("--scaling-events", type=_events_pair, default=(200_000, 2_000_000))
    p.add_argument("--state", action="store_true", help="short vs default label TTL")
    p.add_argument("--state-predictions", type=int, default=200_000, help="(200000)")
    p.add_argument("--state-ttl", type=_duration_ms, default=3_600_000, dest="state_ttl_ms")
    p.add_argument("--state-chunk-rows", type=int, default=5000, help="replay step (5000)")
    p.add_argument("--timeout", type=float, help="seconds before a run is killed (none)")
    args = p.parse_args(argv)
    for name, default in _DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, _QUICK[name] if args.quick else default)
    if args.predictions < 1 or args.repeats < 1 or args.textbook_predictions < 1:
        p.error("--predictions, --repeats and --textbook-predictions must be >= 1")
    args.cache = args.cache or os.path.join(args.out, "workload")
    flink = [name for name in args.peers if name.startswith("msewatch_flink")]
    if flink and not args.flink_master:
        p.error(f"{', '.join(flink)} need --flink-master HOST:PORT (a running cluster)")
    return args


def _environment() -> dict:
    import apache_beam
    import pandas
    import pyarrow

    return {
        "python": platform.python_version(),
        "apache_beam": apache_beam.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def main(argv=None) -> int:
    """Runs the benchmark (see the module docstring); returns the exit status."""
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    print(f"workload: {args.predictions:,} predictions (cache {args.cache})", flush=True)
    workload = _workload.ensure(args.cache, args.predictions, args.seed, args.days)
    head = _workload.head(workload, args.textbook_predictions)
    results = {
        "command": ["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)],
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": _environment(),
        "settings": dict(vars(args)),
        "method": {
            "wall": "time.perf_counter from spawn to exit of each child process",
            "peak_rss": "ru_maxrss of each child from os.wait4 (psutil not used)",
            "events": "prediction records + label records",
            "statistic": "median wall over repeats; peak RSS is the largest of the repeats",
            "order": "one round runs every peer; the order rotates by one each round",
        },
        "workload": dataclasses.asdict(workload) | {"events": workload.events},
        "textbook_workload": dataclasses.asdict(head) | {"events": head.events},
        "peers": {},
        "agreement": {"passed": None, "rtol": _agree.RTOL, "checks": []},
    }
    bench = Bench(args.out, args.timeout, results)
    status = 0
    try:
        main_peers(bench, args, workload, head)
        if args.scaling:
            results["scaling"] = scaling(bench, args)
        if args.replay_scaling:
            print("replay scaling: streaming replay at two sizes", flush=True)
            results["replay_scaling"] = replay_scaling(bench, args)
        if args.state:
            print("state: short vs default label TTL", flush=True)
            results["state"] = state(bench, args)
        checked = [c for c in results["agreement"]["checks"] if not c.get("skipped")]
        results["agreement"]["passed"] = True if checked else None  # None: nothing to compare
    except (Disagreement, RuntimeError, AssertionError) as e:
        results["agreement"]["passed"] = False if isinstance(e, Disagreement) else None
        results["error"] = str(e)
        status = 1
    results["ratios"] = _report.ratios(results["peers"])
    results["targets"] = _report.targets(
        results["peers"], results["ratios"], results.get("replay_scaling"), results.get("scaling")
    )
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    bench.save()
    print(_report.render(results))
    print("\nREADME table:\n" + _report.markdown(results))
    print(f"\nresults: {os.path.join(args.out, 'results.json')}")
    if status:
        print(f"\nBENCHMARK FAILED: {results['error']}", file=sys.stderr)
    elif _any_timed_out(results):
        status = 3
    return status


if __name__ == "__main__":
    raise SystemExit(main())
