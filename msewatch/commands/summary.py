"""The summary ``msewatch run`` prints: the conservation table, the latest complete RMSE
per slice, the firing alerts and the comparisons' decisions.

The counts come from ``runners/outcomes.py`` (the launcher's own check of a run); this
module only shows them.
"""

from __future__ import annotations

import math
import os

from msewatch.commands import query, terminal
from msewatch.runners.outcomes import outcome_details, outcomes_total, undelivered_alerts

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

    Reads the tables through :func:`msewatch.commands.query.connect`, so a window's row is the
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
    from msewatch.commands import compare

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
