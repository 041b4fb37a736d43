"""The end-of-run summary: the conservation table and the latest complete RMSE per slice.

Outcome counts are read back from the ``outcomes`` table the pipeline wrote (rows are
deltas; totals are sums). Conservation: for each record type, ``input`` equals the
sum of its outcomes.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import sys

import duckdb

from msewatch import query, terminal
from msewatch.schemas import layout
from msewatch.schemas.records import RECORD_OUTCOMES


def _parquet(output_dir: str, table: str) -> list[str]:
    """The table's Parquet files; the folder name is escaped (``out[1]`` is a name)."""
    return sorted(glob.glob(os.path.join(glob.escape(output_dir), table, "*.parquet")))


def outcome_counts(output_dir: str) -> dict[str, dict[str, int]]:
    """The conservation table: ``{record_type: {"input": n, outcome: n, ...}}``."""
    sql = "SELECT record_type, outcome, SUM(count) FROM read_parquet(?) GROUP BY ALL"
    files = _parquet(output_dir, "outcomes")
    with duckdb.connect() as con:
        rows = con.execute(sql, [files]).fetchall() if files else []
    totals = {(r, o): int(n) for r, o, n in rows}
    return {
        record_type: {
            "input": totals.get((record_type, "input"), 0),
            **{o: totals.get((record_type, o), 0) for o in outcomes},
        }
        for record_type, outcomes in RECORD_OUTCOMES.items()
    }


DETAILS_SQL = """
SELECT record_type, outcome, detail, SUM(count) FROM read_parquet(?, union_by_name = true)
WHERE detail IS NOT NULL GROUP BY ALL ORDER BY ALL
"""


def outcome_details(output_dir: str) -> dict[str, dict[str, dict[str, int]]]:
    """The parts of outcomes the ``detail`` column names: ``{record_type: {outcome:
    {detail: n}}}``, e.g. ``{"label": {"duplicate": {"conflicting": 3}}}`` (a part of the
    outcome's count, not an outcome); empty when there are none."""
    files = _parquet(str(layout.resolve(output_dir)), "outcomes")  # a run's committed tables
    with duckdb.connect() as con:
        rows = con.execute(DETAILS_SQL, [files]).fetchall() if files else []
    out: dict = {}
    for record_type, outcome, detail, n in rows:
        out.setdefault(record_type, {}).setdefault(outcome, {})[detail] = int(n)
    return out


def outcomes_total(row: dict[str, int]) -> int:
    """The sum of one record type's outcomes (everything but its ``input``)."""
    return sum(v for k, v in row.items() if k != "input")


def balanced(table: dict[str, dict[str, int]]) -> bool:
    """True when every record type's outcomes add up to its input count."""
    return not unbalanced(table)


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if callable(value):
        return f"{value.__module__}.{value.__qualname__}"
    return value


def write(config, outcomes, path: str, details=None) -> None:
    """Writes ``summary.json`` (outcomes, their details (:func:`outcome_details`) and the
    config used) next to the tables."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    doc = {"outcomes": outcomes, "outcome_details": details or {}, "config": _jsonable(config)}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)


LATEST_COMPLETE_SQL = """
SELECT slice, window_start, rmse, label_coverage, label_lag_p90_s, predictions
FROM metrics_latest
WHERE complete
QUALIFY row_number() OVER (PARTITION BY slice ORDER BY window_start DESC, window_end DESC) = 1
ORDER BY slice = 'overall' DESC, slice
"""
"""The latest complete window per slice, over the ``metrics_latest`` view (which alone
says which pane of a window is the latest)."""


def latest_complete(output_dir: str):
    """Rows of the latest complete window per slice, as tuples (UTC timestamps).

    Reads the tables through :func:`msewatch.query.connect`, so a window's row is the
    one ``msewatch query OUTPUT latest`` shows: the ``metrics_latest`` view's pick
    (highest ``pane_index``, then latest ``emitted_at``). Empty when there is no
    metrics table.
    """
    try:
        con = query.connect(output_dir)
    except query.NoMetricsError:
        return []
    try:
        return con.execute(LATEST_COMPLETE_SQL).fetchall()
    finally:
        con.close()


def _fmt(x, spec: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NaN"
    return format(x, spec)


def unbalanced(outcomes) -> list[str]:
    """One sentence per record type whose outcomes do not add up to its input."""
    out = []
    for record_type, row in outcomes.items():
        total = outcomes_total(row)
        if total != row["input"]:
            missing = row["input"] - total
            what = f"{missing} without an outcome" if missing > 0 else f"{-missing} counted twice"
            out.append(f"{record_type}s: input {row['input']}, outcomes sum to {total} ({what})")
    return out


def check_conservation(outcomes) -> int:
    """Exit status of a finished run: 0, or 1 with one line on stderr per broken law."""
    problems = unbalanced(outcomes)
    for problem in problems:
        print(f"msewatch: error: conservation broken: {problem}", file=sys.stderr)
    return 1 if problems else 0


UNDELIVERED_SQL = "SELECT count(*) FROM dead_letter WHERE reason = 'alert_delivery_failed'"


def undelivered_alerts(output_dir: str) -> int:
    """Alerts not delivered (to Alertmanager, or as Pub/Sub messages): the ``dead_letter``
    rows with reason ``alert_delivery_failed``; 0 without tables."""
    try:
        con = query.connect(output_dir)
    except query.NoMetricsError:
        return 0
    with con:
        return con.execute(UNDELIVERED_SQL).fetchone()[0]


def check_delivered(output_dir: str) -> int:
    """Exit status for ``--fail-on-undelivered``: 0, or 1 with one line on stderr."""
    n = undelivered_alerts(output_dir)
    if n:
        print(
            f"msewatch: error: {n} alert deliveries failed (--fail-on-undelivered); the "
            f"reasons: msewatch query {output_dir} dead_letter",
            file=sys.stderr,
        )
    return 1 if n else 0


def render(output_dir: str, outcomes) -> str:
    """The text printed at the end of ``msewatch run``."""
    lines = ["", "Outcomes (every input record ends in exactly one):"]
    for record_type, row in outcomes.items():
        parts = ", ".join(f"{k}={v}" for k, v in row.items() if k != "input")
        total = outcomes_total(row)
        check = "ok" if total == row["input"] else f"MISMATCH: outcomes sum to {total}"
        lines.append(f"  {record_type + 's':12} input={row['input']:<9} {parts}  [{check}]")
    conflicting = outcome_details(output_dir).get("label", {}).get("duplicate", {})
    if conflicting.get("conflicting"):
        lines.append(
            f"  of the duplicate labels, {conflicting['conflicting']} conflicting (a y_true "
            f"different from the label that won): msewatch query {output_dir} label_anomalies"
        )
    rows = latest_complete(output_dir)
    lines.append("")
    lines.append("Latest complete window per slice:")
    if not rows:
        lines.append("  (no complete window yet)")
    else:
        width = max(len(r[0]) for r in rows)
        lines.append(
            f"  {'slice':{width}}  {'window_start (UTC)':19}  {'rmse':>10}  "
            f"{'coverage':>8}  {'lag p90':>10}  {'preds':>6}"
        )
        for s, start, rmse, cov, lag90, n in rows:
            lag = "NaN" if lag90 is None or math.isnan(lag90) else f"{lag90 / 3600:.1f} h"
            lines.append(
                f"  {s:{width}}  {start:%Y-%m-%d %H:%M}     {_fmt(rmse, '10.4f')}  "
                f"{_fmt(cov, '8.1%')}  {lag:>10}  {n:>6}"
            )
    lines.extend(_firing(output_dir))
    undelivered = undelivered_alerts(output_dir)
    if undelivered:
        lines += ["", f"Alerts not delivered: {undelivered} (to Alertmanager or Pub/Sub; the "
                  f"reasons: msewatch query {output_dir} dead_letter)"]  # fmt: skip
    lines.extend(_comparisons(output_dir))
    lines.append("")
    tables = ["metrics", "dead_letter", "outcomes", "alerts", "slo_status", "comparisons"]
    present = tables[:3] + [t for t in tables[3:] if os.path.isdir(os.path.join(output_dir, t))]
    lines.append(
        f"Tables: {', '.join(f'{output_dir}/{t}' for t in present)}; {output_dir}/summary.json"
    )
    lines.append(f"Worst slices: msewatch query {output_dir} worst")
    if "comparisons" in present:
        lines.append(f"Comparisons: msewatch compare {output_dir}")
    return "\n".join(terminal.escape(line) for line in lines)  # values are data, not escapes


FIRING_SQL = """
SELECT alert, frontier, summary FROM alerts
QUALIFY row_number() OVER (PARTITION BY alert ORDER BY frontier DESC, emitted_at DESC) = 1
    AND state = 'firing'
ORDER BY severity = 'page' DESC, alert
"""


def _comparisons(output_dir: str) -> list[str]:
    """The latest decision per comparison and slice (none: no section)."""
    from msewatch import compare

    if not os.path.isdir(os.path.join(output_dir, "comparisons")):
        return []
    frame = compare.latest(output_dir)
    every = f"msewatch query {output_dir} comparisons"
    header = f"Comparisons (latest decision; every evaluation: {every}):"
    return ["", header, *(["  (none evaluated yet)"] if frame.empty else compare.render(frame))]


def _firing(output_dir: str) -> list[str]:
    """The alerts still firing at the end of a run with ``--slo`` (none: no section)."""
    if not os.path.isdir(os.path.join(output_dir, "alerts")) and not os.path.isdir(
        os.path.join(output_dir, "slo_status")
    ):
        return []
    with query.connect(output_dir) as con:
        rows = con.execute(FIRING_SQL).fetchall()
    lines = [
        "",
        f"Firing alerts ({len(rows)}; all transitions: msewatch query {output_dir} alerts):",
    ]
    if not rows:
        lines.append("  (none)")
    for alert, frontier, text in rows:
        lines.append(f"  {alert}  since frontier {frontier:%Y-%m-%d %H:%M} UTC")
        lines.append(f"      {text}")
    return lines
