"""Synthetic msewatch output folders and their pandas references.

Shared by the query and report tests (``tests/e2e/test_query.py``,
``tests/e2e/test_report.py``, ``tests/integration/test_report_browser.py``). The
tables are written with pyarrow in the exact output schema (several windows over two
UTC dates, five slices, accumulating panes, provisional rows, an empty window, a
re-written pane); every expected answer is computed from the same rows with pandas,
independently of the SQL and of the report. :func:`synthetic_alerts` and
:func:`synthetic_slo_status` are the SLO tables of a run with ``--slo``, the alerts built
from :data:`FIRING_PERIODS`. :func:`run_demo` makes a real output with the pipeline
instead.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from msewatch.schemas import records
from msewatch.schemas.slo import ALERTS_FIELDS, SLO_STATUS_FIELDS
from msewatch.transforms.metrics.sketch import ValueSketch

KEYS = ["window_start", "window_end", "slice"]
DRIFTED = "model_version=v2,region=eu"
SLICES = ("overall", "model_version=v1", "model_version=v2", "region=eu", DRIFTED)
T0 = pd.Timestamp("2024-03-01 21:00", tz="UTC")  # windows cross midnight UTC
WINDOWS = 5


def _random_value(arrow_type: pa.DataType, rng: np.random.Generator):
    """A random value of an int64, float64 or binary (a value sketch) column; None for
    other types."""
    if pa.types.is_binary(arrow_type):
        return ValueSketch.from_values(rng.uniform(0, 10, 5)).to_bytes()
    if pa.types.is_int64(arrow_type):
        return int(rng.integers(0, 50))
    if pa.types.is_float64(arrow_type):
        return float(rng.uniform(0, 10))
    return None


def _random_records(field: records.Field, rng: np.random.Generator) -> list[dict]:
    """Two records of a list-of-records column: the first member (the bound) 1 then 2,
    the others random."""
    key, *rest = field.fields
    as_key = float if pa.types.is_floating(key.arrow_type) else int
    if pa.types.is_string(key.arrow_type):  # paired: the baseline version
        as_key = "v{}".format
    return [
        {key.name: as_key(bound), **{f.name: _random_value(f.arrow_type, rng) for f in rest}}
        for bound in (1, 2)
    ]


def synthetic_metrics(seed: int = 7) -> pd.DataFrame:
    """Metrics rows: every (window, slice) has 1-3 accumulating panes.

    The last two windows' latest panes are provisional (complete = False); window 2 of
    region=eu is empty (rmse NaN); the drifted slice's error is four times the others;
    the last pane of (window 0, overall) is written twice (the later emitted_at wins).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for w in range(WINDOWS):
        start = T0 + pd.Timedelta(hours=w)
        for s in SLICES:
            panes = 1 + (w + len(s)) % 3
            for pane in range(panes):
                row = {}
                for f in records.METRICS_FIELDS:
                    if f.repeated:
                        row[f.name] = _random_records(f, rng)
                    elif (value := _random_value(f.arrow_type, rng)) is not None:
                        row[f.name] = value
                scale = 4.0 if s == DRIFTED else 1.0
                mse = float(rng.uniform(1, 2)) * scale**2 * (1 + 0.1 * pane)
                if s == "region=eu" and w == 2:
                    mse = math.nan
                latest = pane == panes - 1
                sum_w = 0.0 if math.isnan(mse) else float(rng.integers(5, 40))  # unit weights
                row.update(sum_w=sum_w, sum_w2=sum_w, sum_se=sum_w * np.nan_to_num(mse))
                row.update(sum_se2=row["sum_se"] * np.nan_to_num(mse) * rng.uniform(1.5, 3))
                row.update(
                    window_start=start,
                    window_end=start + pd.Timedelta(hours=1),
                    slice=s,
                    mse=mse,
                    rmse=math.sqrt(mse),
                    rmse_ci_low=math.sqrt(mse) * 0.9,
                    rmse_ci_high=math.sqrt(mse) * 1.1,
                    label_coverage=min(1.0, 0.3 * (pane + 1) + 0.1 * w),
                    pane_index=pane,
                    pane_timing=("EARLY", "ON_TIME", "LATE")[min(pane, 2)],
                    complete=latest and w < WINDOWS - 2,
                    emitted_at=start + pd.Timedelta(hours=2, minutes=pane),
                )
                rows.append(row)
    last = [r for r in rows if r["slice"] == "overall" and r["window_start"] == T0][-1]
    rows.append(dict(last, rmse=99.0, emitted_at=last["emitted_at"] + pd.Timedelta("1s")))
    return pd.DataFrame(rows)


def synthetic_dead_letter() -> pd.DataFrame:
    """Dead-letter rows over two sources and three reasons, with nulls."""
    rows = [
        ("p.jsonl", "prediction", "bad_number", "y_pred: 'x'", '{"y_pred": "x"}', 40),
        ("p.jsonl", "prediction", "bad_number", "y_pred: 'y'", '{"y_pred": "y"}', 10),
        ("p.jsonl", "prediction", "missing_field", "event_time", '{"prediction_id": "a"}', 7),
        ("l.jsonl", "label", "unparseable", None, "{not json", 3),
        ("l.jsonl", "label", "unparseable", "bad json", "{also not", None),
        ("l.jsonl", "label", "unparseable", "bad json", "{nope", 90),
    ]
    names = [f.name for f in records.DEAD_LETTER_FIELDS]  # message_id, attributes: None
    return pd.DataFrame([row + (None, None) for row in rows], columns=names)


PREDICTION_OUTCOMES = {"input": 120, "joined": 90, "expired": 20, "duplicate": 7, "invalid": 3}
LABEL_OUTCOMES = {"input": 100, "joined": 90, "late_label": 4, "orphan_label": 2}
LABEL_OUTCOMES |= {"duplicate": 1, "invalid": 3}
SUMMARY = {
    "outcomes": {"prediction": PREDICTION_OUTCOMES, "label": LABEL_OUTCOMES},
    "config": {"window": "1h", "label_ttl": "7d"},
}


def to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Column by column, so float NaN stays NaN (as the pipeline writes it), not null."""

    def values(field):
        column = frame[field.name]
        if pa.types.is_floating(field.type):
            return column.tolist()
        return column.astype(object).where(column.notna(), None).tolist()

    return pa.table([pa.array(values(f), f.type) for f in schema], schema=schema)


def write_output(out, metrics: pd.DataFrame, dead: pd.DataFrame | None, summary=SUMMARY):
    """Writes an OUTPUT folder in the pipeline's layout: one file per date and pane."""
    dates = metrics["window_start"].dt.strftime("%Y-%m-%d")
    for (date, pane), part in metrics.groupby([dates, metrics["pane_index"]]):
        folder = out / "metrics" / f"window_date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(to_arrow(part, records.METRICS), folder / f"pane-{pane}.parquet")
    if dead is not None:
        (out / "dead_letter").mkdir(parents=True)
        for i, part in enumerate((dead.iloc[:3], dead.iloc[3:])):
            table = to_arrow(part, records.DEAD_LETTER)
            pq.write_table(table, out / "dead_letter" / f"part-{i}.parquet")
    if summary is not None:
        (out / "summary.json").write_text(json.dumps(summary))
    return out


def rmse_ci(w, w2, se, se2):
    """RMSE and its 95 % CI from weighted sums, as the metrics rows define them."""
    mse, n_eff = se / w, w * w / w2
    half = 1.959963984540054 * np.sqrt(np.maximum(se2 / w - mse * mse, 0) / (n_eff - 1))
    return np.sqrt(mse), np.sqrt(np.maximum(mse - half, 0)), np.sqrt(mse + half)


def pooled_worst(metrics: pd.DataFrame) -> pd.DataFrame:
    """The pandas reference of `worst`: the last day of complete, aligned windows."""
    done = latest_panes(metrics)
    done = done[done["complete"]]
    length = done["window_end"] - done["window_start"]
    end = done["window_end"].max()
    start = end - max(pd.Timedelta(hours=24), length.max())
    aligned = (done["window_start"] - pd.Timestamp(0, tz="UTC")) % length == pd.Timedelta(0)
    day = done[(done["window_start"] >= start) & (done["window_end"] <= end) & aligned]
    sums = day.groupby("slice")[["sum_w", "sum_w2", "sum_se", "sum_se2", "labeled"]].sum()
    sums["predictions"] = day.groupby("slice")["predictions"].sum()
    sums = sums[sums["sum_w"] > 0]
    rmse, low, high = rmse_ci(sums["sum_w"], sums["sum_w2"], sums["sum_se"], sums["sum_se2"])
    frame = pd.DataFrame({"rmse": rmse, "rmse_ci_low": low, "rmse_ci_high": high})
    frame["label_coverage"] = sums["labeled"] / sums["predictions"]
    last = done.sort_values("window_start").groupby("slice").tail(1)  # NaN if empty
    frame["latest_rmse"] = last.set_index("slice")["rmse"]
    return frame.reset_index().sort_values(["rmse", "slice"], ascending=[False, True])


def latest_panes(metrics: pd.DataFrame) -> pd.DataFrame:
    """The pandas reference of metrics_latest: max pane_index, then latest emitted_at."""
    ordered = metrics.sort_values(["pane_index", "emitted_at"])
    return ordered.groupby(KEYS, as_index=False).tail(1).reset_index(drop=True)


DEMO_SLO = Path(__file__).parent.parent / "docs" / "examples" / "demo-slo.yaml"


def run_demo(base, predictions: int = 3000, days: float = 2.0, seed: int = 11, slo=None):
    """(OUTPUT, generator stats) of a sample run through the real pipeline (bounded,
    DirectRunner), once per folder: by default a small one (the session's ``demo``
    fixture, tests/conftest.py); with ``slo`` (a file) also the SLO tables."""
    from msewatch import cli
    from msewatch.commands import generate as sample

    out, inputs = base / "out", base / "sample"
    stats = sample.generate(str(inputs), predictions=predictions, seed=seed, days=days)
    if not (out / "summary.json").exists():
        argv = ["run", "--predictions", str(inputs / "predictions.jsonl"), "--labels"]
        argv += [str(inputs / "labels.jsonl"), "--output", str(out), "--quiet"]
        argv += ["--slo", str(slo)] if slo else []
        assert cli.main([*argv, "--slice", "region", "--slice", "model_version,region"]) == 0
    return out, stats


def read_table(out, table: str) -> pd.DataFrame:
    """A pipeline table read with pyarrow, independently of the DuckDB views."""
    files = sorted((out / table).rglob("*.parquet"))
    return pq.read_table(files).to_pandas() if files else pd.DataFrame()


# SLO tables (``msewatch run --slo``): the firing periods below are the truth the
# synthetic ``alerts`` table is built from, so tests compare the report with them.
SLO_LOOKBACKS_S = [300, 1800, 3600, 21600, 259200]
SLO_SLICES = {"forecast-rmse": ("overall", "region=eu", DRIFTED), "label-freshness": ("region=eu",)}
SLO_SLIS = {"forecast-rmse": "rmse", "label-freshness": "label_freshness"}
SLO_FRONTIERS = [T0 + pd.Timedelta(hours=h) for h in range(1, WINDOWS + 1)]  # window ends
FIRING_PERIODS = (  # (alert, firing frontier, resolved frontier or None: still firing)
    (f"forecast-rmse/page/{DRIFTED}", SLO_FRONTIERS[0], SLO_FRONTIERS[2]),
    (f"forecast-rmse/page/{DRIFTED}", SLO_FRONTIERS[3], None),
    (f"forecast-rmse/ticket/{DRIFTED}", SLO_FRONTIERS[1], None),
    ("label-freshness/page/region=eu", SLO_FRONTIERS[1], SLO_FRONTIERS[3]),
)
_PAGE = [{"long_s": 3600, "short_s": 300, "burn_rate": 14.4}]
_PAGE.append({"long_s": 21600, "short_s": 1800, "burn_rate": 6.0})
SLO_CONFIG = {
    "version": 1,
    "slos": [
        {"name": "forecast-rmse", "sli": "rmse", "alerting": {"page": _PAGE, "ticket": [
            {"long_s": 259200, "short_s": 21600, "burn_rate": 1.0}]}},
        {"name": "label-freshness", "sli": "label_freshness",
         "alerting": {"page": _PAGE, "ticket": []}},
    ],
}  # fmt: skip
SLO_SUMMARY = {**SUMMARY, "config": {**SUMMARY["config"], "slo": SLO_CONFIG}}


def _state(alert: str, frontier: pd.Timestamp) -> str:
    """``firing`` inside one of the alert's :data:`FIRING_PERIODS`, else ``ok``."""
    inside = any(
        a == alert and start <= frontier and (end is None or frontier < end)
        for a, start, end in FIRING_PERIODS
    )
    return "firing" if inside else "ok"


def synthetic_slo_status() -> pd.DataFrame:
    """``slo_status`` rows: every SLO and slice at each frontier of :data:`SLO_FRONTIERS`.

    The drifted slice's budget falls from 100 % to -300 % (below the report's -100 %
    floor), region=eu has nothing eligible at the first frontier (NaN), burn rates hold
    0, NaN and 100. (forecast-rmse, drifted slice, third frontier) is evaluated twice,
    as a streaming run does: the row with the later ``emitted_at`` is the one to draw.
    """
    rows = []
    for slo, slices in SLO_SLICES.items():
        for s in slices:
            for i, frontier in enumerate(SLO_FRONTIERS):
                budget = [1.0, 0.5, -0.5, -2.0, -3.0][i] if s == DRIFTED else 1.0 - 0.1 * i
                if s == "region=eu" and i == 0:
                    budget = math.nan
                burns = [0.0, math.nan, 100.0 * (s == DRIFTED), 2.5 * i, 0.5]
                page, ticket = (_state(f"{slo}/{sev}/{s}", frontier) for sev in ("page", "ticket"))
                rows.append(dict(
                    slo=slo, sli=SLO_SLIS[slo], slice=s, frontier=frontier, watermark=None,
                    objective=0.99, threshold=3.0, period_s=2592000, value=1.5 + i,
                    good_share=0.99, eligible=10.0 + i, budget_total=0.1, budget_consumed=0.0,
                    budget_remaining=budget, lookbacks_s=SLO_LOOKBACKS_S, burn_rates=burns,
                    suppressed=False, page_state=page, ticket_state=ticket,
                    emitted_at=frontier + pd.Timedelta(hours=1),
                ))  # fmt: skip
    redo = next(r for r in rows if r["slice"] == DRIFTED and r["frontier"] == SLO_FRONTIERS[2])
    earlier = redo["emitted_at"] - pd.Timedelta(minutes=5)
    rows.insert(0, dict(redo, budget_remaining=0.25, emitted_at=earlier))
    return pd.DataFrame(rows)


_CONDITION = {  # the condition each severity's transitions name (the first of SLO_CONFIG)
    "page": {"burn_rate_threshold": 14.4, "long_window_s": 3600, "short_window_s": 300},
    "ticket": {"burn_rate_threshold": 1.0, "long_window_s": 259200, "short_window_s": 21600},
}


def synthetic_alerts() -> pd.DataFrame:
    """``alerts`` rows of :data:`FIRING_PERIODS` (a firing and, if any, a resolved
    transition each), newest first, so readers must order them."""
    rows = []
    for alert, start, end in FIRING_PERIODS:
        slo, severity, s = alert.split("/", 2)
        for state, frontier in (("firing", start), ("resolved", end)):
            if frontier is None:
                continue
            summary = f"{alert} {state}: RMSE > 3 & rising <fast>"
            day = pd.Timedelta(hours=24)  # fired_24h: the alert's firings in (F - 24 h, F]
            fired = sum(a == alert and frontier - day < f <= frontier for a, f, _ in FIRING_PERIODS)
            rows.append(dict(
                alert=alert, slo=slo, sli=SLO_SLIS[slo], severity=severity, slice=s,
                state=state, frontier=frontier, watermark=None, burn_rate_long=20.0,
                burn_rate_short=20.0, budget_remaining=0.5, value=4.0, threshold=3.0,
                objective=0.99, summary=summary, runbook="", fired_24h=fired,
                emitted_at=frontier + pd.Timedelta(hours=1), **_CONDITION[severity],
            ))  # fmt: skip
    return pd.DataFrame(rows).sort_values("frontier", ascending=False, kind="stable")


def write_slo_tables(out, alerts: pd.DataFrame, status: pd.DataFrame):
    """Writes the ``alerts`` and ``slo_status`` tables of an OUTPUT folder."""
    for name, frame, fields in (("alerts", alerts, ALERTS_FIELDS),
                                ("slo_status", status, SLO_STATUS_FIELDS)):  # fmt: skip
        (out / name).mkdir(parents=True)
        for i, part in enumerate((frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :])):
            table = to_arrow(part, records.arrow_schema(fields))
            pq.write_table(table, out / name / f"part-{i}.parquet")
    return out
