"""The end-of-run summary: the conservation table and the latest complete RMSE per slice.

Outcome counts come from Beam counters (namespace ``msewatch``): the readers count
``<type>_records_read`` (every input record, valid or not) and ``<type>_invalid``;
the join counts the rest. Conservation: for each record type, ``input`` equals the
sum of its outcomes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

from apache_beam.metrics.metric import MetricsFilter

OUTCOME_ORDER = {
    "prediction": ("joined", "expired", "duplicate", "invalid"),
    "label": ("joined", "late_label", "orphan_label", "duplicate", "invalid"),
}
_COUNTER_OF = {
    ("prediction", "input"): "prediction_records_read",
    ("prediction", "joined"): "prediction_joined",
    ("prediction", "expired"): "prediction_expired",
    ("prediction", "duplicate"): "prediction_duplicate",
    ("prediction", "invalid"): "prediction_invalid",
    ("label", "input"): "label_records_read",
    ("label", "joined"): "label_joined",
    ("label", "late_label"): "label_late",
    ("label", "orphan_label"): "label_orphan",
    ("label", "duplicate"): "label_duplicate",
    ("label", "invalid"): "label_invalid",
}


def counters(result) -> dict[str, int]:
    """Committed values of the ``msewatch`` counters of a finished pipeline."""
    out: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace("msewatch"))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return out


def outcome_counts(result) -> dict[str, dict[str, int]]:
    """The conservation table: ``{record_type: {"input": n, outcome: n, ...}}``."""
    values = counters(result)
    table: dict[str, dict[str, int]] = {}
    for record_type, outcomes in OUTCOME_ORDER.items():
        row = {"input": values.get(_COUNTER_OF[(record_type, "input")], 0)}
        for outcome in outcomes:
            row[outcome] = values.get(_COUNTER_OF[(record_type, outcome)], 0)
        table[record_type] = row
    return table


def balanced(table: dict[str, dict[str, int]]) -> bool:
    """True when every record type's outcomes add up to its input count."""
    return all(
        row["input"] == sum(v for k, v in row.items() if k != "input") for row in table.values()
    )


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if callable(value):
        return f"{value.__module__}.{value.__qualname__}"
    return value


def write(config, outcomes, path: str) -> None:
    """Writes ``summary.json`` (outcomes and the config used) next to the tables."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"outcomes": outcomes, "config": _jsonable(config)}, f, indent=2)


LATEST_COMPLETE_SQL = """
WITH latest AS (
  SELECT *, row_number() OVER (
      PARTITION BY window_start, window_end, slice ORDER BY pane_index DESC) AS rn
  FROM read_parquet(?, hive_partitioning = true, union_by_name = true)
), last_complete AS (
  SELECT *, row_number() OVER (PARTITION BY slice ORDER BY window_start DESC) AS wn
  FROM latest WHERE rn = 1 AND complete
)
SELECT slice, window_start, rmse, label_coverage, label_lag_p90_s, predictions
FROM last_complete WHERE wn = 1 ORDER BY slice = 'overall' DESC, slice
"""


def latest_complete(output_dir: str):
    """Rows of the latest complete window per slice (latest pane), as tuples."""
    import duckdb

    pattern = os.path.join(output_dir, "metrics", "*", "*.parquet")
    with duckdb.connect() as con:
        try:
            return con.execute(LATEST_COMPLETE_SQL, [pattern]).fetchall()
        except duckdb.IOException:
            return []


def _fmt(x, spec: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NaN"
    return format(x, spec)


def render(output_dir: str, outcomes) -> str:
    """The text printed at the end of ``msewatch run``."""
    lines = ["", "Outcomes (every input record ends in exactly one):"]
    for record_type, row in outcomes.items():
        parts = ", ".join(f"{k}={v}" for k, v in row.items() if k != "input")
        total = sum(v for k, v in row.items() if k != "input")
        check = "ok" if total == row["input"] else f"MISMATCH: outcomes sum to {total}"
        lines.append(f"  {record_type + 's':12} input={row['input']:<9} {parts}  [{check}]")
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
    lines.append("")
    lines.append(f"Tables: {output_dir}/metrics, {output_dir}/dead_letter; {output_dir}/summary.json")
    return "\n".join(lines)
