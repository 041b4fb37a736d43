"""Summaries of measured runs: medians, rates, ratios, the targets (docs/performance.md), tables.

Every figure is a median over the repeats of a peer (runs that hit the time limit
are left out and flagged). Events are prediction records plus label records.
"""

from __future__ import annotations

import statistics

MIB = 1 << 20
GIB = 1 << 30


def summarize(runs: list[dict], events: int) -> dict:
    """Median wall time, events per second and peak RSS of one peer's runs.

    Args:
        runs: one dict per run with ``wall_s``, ``peak_rss_bytes`` and ``timed_out``,
            and ``pipeline_s`` if the peer reports its time without start-up.
        events: records the peer processed per run.

    Returns:
        ``events``, ``repeats``, ``completed``, ``timed_out``, ``wall_median_s``,
        ``wall_min_s``, ``wall_max_s``, ``events_per_s`` (at the median wall time) and
        ``peak_rss_mib`` (the largest), ``None`` when no run completed; then
        ``events_per_s_upper_bound`` (events over the time limit) instead. With
        ``pipeline_s``: ``pipeline_median_s`` and ``events_per_s_in_pipeline``.
    """
    done = [r for r in runs if not r["timed_out"]]
    walls = [r["wall_s"] for r in done]
    median = statistics.median(walls) if walls else None
    out = {
        "events": events,
        "repeats": len(runs),
        "completed": len(done),
        "timed_out": len(done) < len(runs),
        "wall_median_s": median,
        "wall_min_s": min(walls) if walls else None,
        "wall_max_s": max(walls) if walls else None,
        "events_per_s": events / median if median else None,
        "peak_rss_mib": max(r["peak_rss_bytes"] for r in done) / MIB if done else None,
    }
    if not done and runs:
        out["events_per_s_upper_bound"] = events / min(r["wall_s"] for r in runs)
    inner = [r["pipeline_s"] for r in done if "pipeline_s" in r]
    if inner:
        out["pipeline_median_s"] = statistics.median(inner)
        out["events_per_s_in_pipeline"] = events / out["pipeline_median_s"]
    return out


def ratio_of(a, b):
    """``a / b``, None when either is missing (a run timed out) or ``b`` is 0."""
    return a / b if a is not None and b else None


_div = ratio_of


def ratios(peers: dict) -> dict:
    """The performance comparisons of docs/performance.md (``None``: a peer missing or timed out).

    * ``msewatch_over_pandas_wall``: msewatch bounded JSONL wall / pandas wall (same data).
    * ``msewatch_parquet_over_pandas_wall``: the same with Parquet input.
    * ``msewatch_over_duckdb_wall``: msewatch bounded JSONL wall / DuckDB's SQL over the
      same JSON Lines (``duckdb_ref.py``): the single-machine limit.
    * ``slo_over_bounded_wall``: bounded JSONL with ``--slo docs/examples/slo.yaml`` /
      without (the SLO evaluation's cost; target <= 1.1).
    * ``flink_p1_over_direct_wall`` / ``flink_p2_over_direct_wall`` (when those peers
      ran): the bounded JSONL run on a Flink cluster (parallelism 1 / 2) / on the
      DirectRunner.
    * ``flink_speedup_p2_over_p1`` (when both ran): the Flink run's wall at parallelism 1
      / at parallelism 2 (above 1: the second slot helped).
    * ``textbook_over_msewatch_per_event``: textbook seconds per event / msewatch
      bounded JSONL seconds per event (how many times faster msewatch is per event),
      both end to end.
    * ``textbook_in_pipeline_over_msewatch_per_event``: the same with the textbook's
      time without interpreter start-up and imports (its ``pipeline_s``): the
      comparison least favourable to msewatch, whose start-up stays counted.
    """

    def wall(name):
        return peers.get(name, {}).get("wall_median_s")

    def rate(name, key="events_per_s"):
        return peers.get(name, {}).get(key)

    return (
        {
            "msewatch_over_pandas_wall": _div(wall("msewatch_jsonl"), wall("pandas")),
            "msewatch_parquet_over_pandas_wall": _div(wall("msewatch_parquet"), wall("pandas")),
            "msewatch_over_duckdb_wall": _div(wall("msewatch_jsonl"), wall("duckdb")),
            "slo_over_bounded_wall": _div(wall("msewatch_slo"), wall("msewatch_jsonl")),
            "textbook_over_msewatch_per_event": _div(rate("msewatch_jsonl"), rate("textbook")),
            "textbook_in_pipeline_over_msewatch_per_event": _div(
                rate("msewatch_jsonl"), rate("textbook", "events_per_s_in_pipeline")
            ),
        }
        | {  # only when the Flink peers ran (they need --flink-master)
            f"flink_p{n}_over_direct_wall": _div(
                wall(f"msewatch_flink_p{n}"), wall("msewatch_jsonl")
            )
            for n in (1, 2)
            if f"msewatch_flink_p{n}" in peers
        }
        | (
            {"flink_speedup_p2_over_p1": _div(wall("msewatch_flink_p1"), wall("msewatch_flink_p2"))}
            if {"msewatch_flink_p1", "msewatch_flink_p2"} <= peers.keys()
            else {}
        )
    )


def targets(
    peers: dict, ratio: dict, replay_scaling: dict | None, scaling: dict | None = None
) -> dict:
    """Each performance target of docs/performance.md: ``{"target", "measured", "met"}``.

    ``met`` is None when unmeasured.
    """

    def check(measured, op, bound):
        met = None if measured is None else (measured <= bound if op == "<=" else measured >= bound)
        return {"target": f"{op} {bound:g}", "measured": measured, "met": met}

    rss = [peers.get(n, {}).get("peak_rss_mib") for n in ("msewatch_jsonl", "msewatch_parquet")]
    rss = [r for r in rss if r is not None]
    out = {
        "bounded_jsonl_wall_over_pandas": check(ratio["msewatch_over_pandas_wall"], "<=", 1.5),
        "bounded_jsonl_wall_over_duckdb": check(ratio["msewatch_over_duckdb_wall"], "<=", 2.0),
        "textbook_over_msewatch_per_event": check(
            ratio["textbook_over_msewatch_per_event"], ">=", 10
        ),
        "bounded_parquet_events_per_s": check(
            peers.get("msewatch_parquet", {}).get("events_per_s"), ">=", 500_000
        ),
        "replay_events_per_s": check(
            peers.get("msewatch_replay", {}).get("events_per_s"), ">=", 100_000
        ),
        "bounded_peak_rss_gib": check(max(rss) * MIB / GIB if rss else None, "<=", 1.5),
        "slo_evaluation_overhead": check(ratio["slo_over_bounded_wall"], "<=", 1.1),
    }
    if replay_scaling:
        out["replay_scaling_large_over_small"] = check(
            replay_scaling.get("large_over_small"), ">=", 0.7
        )
    if scaling and scaling["sizes"]:
        largest = scaling["sizes"][max(scaling["sizes"], key=int)]
        ours = largest.get(f"msewatch_jsonl_{largest['predictions']}", {})
        rss = ours.get("peak_rss_mib")
        out["largest_size_wall_over_duckdb"] = check(
            largest["msewatch_over_duckdb_wall"], "<=", 2.0
        )
        out["largest_size_peak_rss_gib"] = check(rss and rss * MIB / GIB, "<=", 2.0)
    return out


def _fmt(value, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else format(value, spec) + unit


def render(results: dict) -> str:
    """The text printed at the end of a benchmark run."""
    head = f"{'peer':24} {'events':>10} {'wall median':>12} {'events/s':>11} {'peak RSS':>10}"
    lines = ["", head]
    for name, s in results["peers"].items():
        flag = "  (timed out)" if s["timed_out"] else ""
        if "events_per_s_upper_bound" in s:
            flag += f" < {s['events_per_s_upper_bound']:,.0f} events/s"
        lines.append(
            f"{name:24} {s['events']:>10,} {_fmt(s['wall_median_s'], '.2f', ' s'):>12} "
            f"{_fmt(s['events_per_s'], ',.0f'):>11} {_fmt(s['peak_rss_mib'], ',.0f', ' MiB'):>10}"
            + flag
        )
    lines.append("")
    for name, value in results["ratios"].items():
        lines.append(f"{name:46} {_fmt(value, '.2f'):>8}")
    lines += _scaling_lines(results.get("scaling"))
    scaling = results.get("replay_scaling")
    if scaling:
        for s in scaling["sizes"].values():
            rate = _fmt(s["events_per_s"], ",.0f")
            lines.append(
                f"{'replay events/s at ' + format(s['events'], ',') + ' events':46} {rate:>8}"
            )
        lines.append(
            f"{'replay scaling (large / small)':46} {_fmt(scaling['large_over_small'], '.2f'):>8}"
        )
    state = results.get("state")
    if state:
        lines.append("")
        lines.append(f"state ({state['note']}):")
        lines.append(
            f"  {state['events']:,} events; all predictions / shards = "
            f"{state['all_predictions_per_shard']:,.0f} rows per shard"
        )
        for name, s in state["runs"].items():
            rows = s.get("join_state_rows_max_per_shard")
            lines.append(
                f"  {name:26} wall {_fmt(s['wall_s'], '.1f', ' s'):>9}  peak RSS "
                f"{_fmt(s['peak_rss_mib'], ',.0f', ' MiB'):>10}  join_state_rows max/shard "
                f"{_fmt(rows, ','):>9}"
            )
    lines.append("")
    for name, t in results["targets"].items():
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        measured = _fmt(t["measured"], ",.2f")
        lines.append(f"target {name:36} {t['target']:>9}  {measured:>12}  {verdict}")
    lines.append("")
    agreement = results["agreement"]
    skipped = sum(1 for c in agreement["checks"] if c.get("skipped"))
    verdict = {True: "passed", False: "FAILED", None: "not checked"}[agreement["passed"]]
    done = len(agreement["checks"]) - skipped
    note = f", {skipped} skipped because a run timed out" if skipped else ""
    lines.append(f"agreement: {verdict} ({done} checks{note})")
    return "\n".join(lines)


def _scaling_lines(scaling: dict | None) -> list[str]:
    """The ``--scaling`` table: per size, msewatch and DuckDB wall, events/s, peak RSS."""
    if not scaling or not scaling["sizes"]:
        return []
    lines = ["", "scaling (bounded JSON Lines; medians):"]
    lines.append(
        f"  {'predictions':>12} {'events':>12} {'tool':10} {'wall':>9} {'events/s':>11} "
        f"{'peak RSS':>10} {'/DuckDB':>8}"
    )
    for size in scaling["sizes"].values():
        n = size["predictions"]
        for tool, tag in (("msewatch", f"msewatch_jsonl_{n}"), ("duckdb", f"duckdb_{n}")):
            s = size.get(tag, {})
            ratio = _fmt(size["msewatch_over_duckdb_wall"], ".2f") if tool == "msewatch" else ""
            lines.append(
                f"  {n:>12,} {size['events']:>12,} {tool:10} "
                f"{_fmt(s.get('wall_median_s'), '.1f', ' s'):>9} "
                f"{_fmt(s.get('events_per_s'), ',.0f'):>11} "
                f"{_fmt(s.get('peak_rss_mib'), ',.0f', ' MiB'):>10} {ratio:>8}"
            )
    return lines


def markdown(results: dict) -> str:
    """A README-ready table of the peers."""
    rows = [
        "| peer | events | wall (median) | events/s | peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in results["peers"].items():
        wall = _fmt(s["wall_median_s"], ".1f", " s")
        rate = _fmt(s["events_per_s"], ",.0f")
        if "events_per_s_upper_bound" in s:
            wall = f"> {s['events'] / s['events_per_s_upper_bound']:.0f} s (killed)"
            rate = f"< {s['events_per_s_upper_bound']:,.0f}"
        rss = _fmt(s["peak_rss_mib"], ",.0f", " MiB")
        rows.append(f"| {name} | {s['events']:,} | {wall} | {rate} | {rss} |")
    return "\n".join(rows)
