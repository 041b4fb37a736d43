"""Records of the SLO evaluation: alert transitions and SLO status rows.

:class:`AlertTransition` is one row of the ``alerts`` table (one per state change of
an alert); :class:`SloStatus` one row of ``slo_status`` (one per SLO, slice and
evaluation). Inside the pipeline, times are UTC epoch milliseconds (``*_ms``);
``as_row`` gives the table's columns, with UTC datetimes and the caller's
``emitted_at`` (the only wall-clock column: the clock is injected). The evaluation
that makes them is :mod:`msewatch.transforms.slo.kernel`; ``docs/slo.md`` explains
every number.
"""

from __future__ import annotations

import datetime
from typing import NamedTuple

import pyarrow as pa

from msewatch.schemas.records import Field

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

FIRING = "firing"
RESOLVED = "resolved"
OK = "ok"  # status of an alert that is not firing
OFF = "off"  # status of a severity with no conditions


def utc_datetime(ms: int | None) -> datetime.datetime | None:
    """UTC epoch milliseconds -> an aware UTC datetime (None stays None)."""
    return None if ms is None else _EPOCH + datetime.timedelta(milliseconds=int(ms))


def epoch_ms(when: datetime.datetime) -> int:
    """An aware datetime -> UTC epoch milliseconds (the inverse of :func:`utc_datetime`)."""
    return (when - _EPOCH) // datetime.timedelta(milliseconds=1)


def evaluation_row(row: dict, emitted_at: datetime.datetime) -> dict:
    """An evaluation record's fields as table columns: ``frontier_ms`` and
    ``watermark_ms`` become the UTC datetimes ``frontier`` and ``watermark``, and
    ``emitted_at`` is added (``alerts``, ``slo_status``, ``comparisons``)."""
    row["frontier"] = utc_datetime(row.pop("frontier_ms"))
    row["watermark"] = utc_datetime(row.pop("watermark_ms"))
    row["emitted_at"] = emitted_at
    return row


class AlertTransition(NamedTuple):
    """An alert of one (SLO, severity, slice) starting or stopping to fire.

    Attributes:
        alert: ``<slo>/<severity>/<slice>``, the same for every transition of an alert.
        slo: SLO name.
        sli: ``rmse``, ``error_rate``, ``label_freshness``, ``nan_rate``, ``rmse_trend``,
            or ``comparison`` (a comparison's alert: ``slo`` is the comparison's name,
            ``value`` the relative difference ``C / B - 1``, ``threshold`` the margin,
            ``objective`` 1 - alpha, no burn rates or budget).
        severity: ``page`` or ``ticket``.
        slice: slice name as in ``metrics``.
        state: ``firing`` or ``resolved``.
        frontier_ms: the label frontier evaluated (end of the newest settled window),
            UTC epoch ms: where in event time the change happened.
        watermark_ms: the input watermark of the evaluation; None in bounded runs.
        burn_rate_long: burn rate over the long lookback of the condition (the first
            one that held when firing; the one that fired when resolving).
        burn_rate_short: burn rate over its short lookback.
        burn_rate_threshold: the condition's burn_rate.
        long_window_s: its long lookback, seconds.
        short_window_s: its short lookback, seconds.
        budget_remaining: share of the period's error budget left (1 - consumed /
            total); negative when overspent, NaN without eligible windows.
        value: SLI value of the newest settled window (RMSE, bad share, freshness
            share, NaN share, or RMSE slope per day).
        threshold: the SLO's threshold.
        objective: the SLO's objective.
        summary: one line a person reads.
        runbook: the SLO's runbook URL ("" if none).
        fired_24h: how many times this alert fired with a frontier in the trailing day
            ``(frontier - 24 h, frontier]``, this row's firing included: 2 or more (it
            fired again within a day) is a flapping alert
            (:mod:`msewatch.transforms.flapping`).
    """

    alert: str
    slo: str
    sli: str
    severity: str
    slice: str
    state: str
    frontier_ms: int
    watermark_ms: int | None
    burn_rate_long: float
    burn_rate_short: float
    burn_rate_threshold: float
    long_window_s: int
    short_window_s: int
    budget_remaining: float
    value: float
    threshold: float
    objective: float
    summary: str
    runbook: str
    fired_24h: int

    def as_row(self, emitted_at: datetime.datetime) -> dict:
        """The ``alerts`` row: :data:`ALERT_COLUMNS`, times as UTC datetimes."""
        row = evaluation_row(self._asdict(), emitted_at)
        return {name: row[name] for name in ALERT_COLUMNS}


class SloStatus(NamedTuple):
    """The state of one SLO and slice at one evaluation (one label frontier).

    Attributes:
        slo, sli, slice: as in :class:`AlertTransition`.
        frontier_ms: the label frontier evaluated, UTC epoch ms.
        watermark_ms: the input watermark; None in bounded runs.
        objective, threshold, period_s: the SLO's.
        value: SLI value of the newest settled window (NaN if that window has none).
        good_share: the SLI over the period: good / eligible over the counted windows
            ending in ``(frontier - period, frontier]`` (compare with ``objective``).
        eligible: eligible units over the period: counted windows, or the scored
            weight for error_rate.
        budget_total: bad units the period allows: ``(1 - objective) * eligible``.
        budget_consumed: bad units over the period.
        budget_remaining: ``1 - budget_consumed / budget_total`` (a share, may go
            negative; NaN when nothing is eligible).
        lookbacks_s: every lookback of the alert conditions, seconds, ascending.
        burn_rates: the burn rate over each of ``lookbacks_s`` (NaN: nothing eligible).
        suppressed: the frontier's window overlaps a suppression (no transitions).
        page_state, ticket_state: ``firing``, ``ok``, or ``off`` (no conditions).
    """

    slo: str
    sli: str
    slice: str
    frontier_ms: int
    watermark_ms: int | None
    objective: float
    threshold: float
    period_s: int
    value: float
    good_share: float
    eligible: float
    budget_total: float
    budget_consumed: float
    budget_remaining: float
    lookbacks_s: tuple[int, ...]
    burn_rates: tuple[float, ...]
    suppressed: bool
    page_state: str
    ticket_state: str

    def as_row(self, emitted_at: datetime.datetime) -> dict:
        """The ``slo_status`` row: times as UTC datetimes, lists for the lookbacks."""
        row = evaluation_row(self._asdict(), emitted_at)
        row["lookbacks_s"] = list(self.lookbacks_s)
        row["burn_rates"] = list(self.burn_rates)
        return row


def _fields():
    """The ``alerts``, ``slo_status`` and ``comparisons`` field lists (Parquet and
    BigQuery from one list)."""
    ts, f64, i64, s = pa.timestamp("us", tz="UTC"), pa.float64(), pa.int64(), pa.string()
    common = (
        Field("slo", s, "STRING", "SLO name.", False),
        Field(
            "sli",
            s,
            "STRING",
            "rmse, error_rate, label_freshness, nan_rate, rmse_trend or comparison.",
            False,
        ),
    )
    alerts = (
        Field("alert", s, "STRING", "<slo>/<severity>/<slice>: one alert's transitions.", False),
        *common,
        Field("severity", s, "STRING", "page or ticket.", False),
        Field("slice", s, "STRING", "Slice name, as in metrics.", False),
        Field("state", s, "STRING", "firing or resolved.", False),
        Field("frontier", ts, "TIMESTAMP", "Label frontier evaluated (event time), UTC.", False),
        Field("watermark", ts, "TIMESTAMP", "Input watermark (lower bound); null if bounded."),
        Field("burn_rate_long", f64, "FLOAT64", "Burn rate over the long lookback."),
        Field("burn_rate_short", f64, "FLOAT64", "Burn rate over the short lookback."),
        Field("burn_rate_threshold", f64, "FLOAT64", "The condition's burn rate."),
        Field("long_window_s", i64, "INT64", "Long lookback, seconds."),
        Field("short_window_s", i64, "INT64", "Short lookback, seconds."),
        Field("budget_remaining", f64, "FLOAT64", "Share of the period's budget left (< 0: over)."),
        Field("value", f64, "FLOAT64", "SLI of the newest settled window."),
        Field("threshold", f64, "FLOAT64", "The SLO's threshold."),
        Field("objective", f64, "FLOAT64", "The SLO's objective."),
        Field("summary", s, "STRING", "One line a person reads."),
        Field("runbook", s, "STRING", "Runbook URL."),
        Field("fired_24h", i64, "INT64", "Firings in (frontier - 24 h, frontier].", False),
        Field("emitted_at", ts, "TIMESTAMP", "Wall-clock time the row was emitted, UTC.", False),
    )
    status = (
        *common,
        Field("slice", s, "STRING", "Slice name, as in metrics.", False),
        Field("frontier", ts, "TIMESTAMP", "Label frontier evaluated (event time), UTC.", False),
        Field("watermark", ts, "TIMESTAMP", "Input watermark (lower bound); null if bounded."),
        Field("objective", f64, "FLOAT64", "The SLO's objective."),
        Field("threshold", f64, "FLOAT64", "The SLO's threshold."),
        Field("period_s", i64, "INT64", "SLO period, seconds."),
        Field("value", f64, "FLOAT64", "SLI of the newest settled window."),
        Field("good_share", f64, "FLOAT64", "Good / eligible over the period."),
        Field("eligible", f64, "FLOAT64", "Eligible windows (or scored weight) in the period."),
        Field("budget_total", f64, "FLOAT64", "Bad units the period allows."),
        Field("budget_consumed", f64, "FLOAT64", "Bad units in the period."),
        Field("budget_remaining", f64, "FLOAT64", "1 - consumed / total (< 0: overspent)."),
        Field("lookbacks_s", pa.list_(i64), "INT64", "Alert lookbacks, seconds.", False, True),
        Field("burn_rates", pa.list_(f64), "FLOAT64", "Burn rate per lookback.", False, True),
        Field("suppressed", pa.bool_(), "BOOL", "The frontier's window is suppressed.", False),
        Field("page_state", s, "STRING", "firing, ok or off.", False),
        Field("ticket_state", s, "STRING", "firing, ok or off.", False),
        Field("emitted_at", ts, "TIMESTAMP", "Wall-clock time the row was emitted, UTC.", False),
    )
    b = pa.bool_()
    comparisons = (
        Field("comparison", s, "STRING", "Comparison name.", False),
        Field("slice", s, "STRING", "Slice compared (without model_version).", False),
        Field("metric", s, "STRING", "mse or mae.", False),
        Field("baseline", s, "STRING", "Baseline model version.", False),
        Field("candidate", s, "STRING", "Candidate model version.", False),
        Field("paired", b, "BOOL", "Per-id loss differences (shadow) or Welch (canary).", False),
        Field("frontier", ts, "TIMESTAMP", "End of the newest counted window (event time).", False),
        Field("watermark", ts, "TIMESTAMP", "Input watermark (lower bound); null if bounded."),
        Field("windows", i64, "INT64", "Windows summed over the lookback.", False),
        Field("n_baseline", i64, "INT64", "Baseline's scored predictions (or pairs).", False),
        Field("n_candidate", i64, "INT64", "Candidate's scored predictions (or pairs).", False),
        Field("metric_baseline", f64, "FLOAT64", "Baseline's mean loss B (mse or mae)."),
        Field("metric_candidate", f64, "FLOAT64", "Candidate's mean loss C."),
        Field("delta", f64, "FLOAT64", "C - B."),
        Field("ratio", f64, "FLOAT64", "C / B."),
        Field("ci_low", f64, "FLOAT64", "Always-valid lower bound of C / B - 1."),
        Field("ci_high", f64, "FLOAT64", "Always-valid upper bound of C / B - 1."),
        Field("margin", f64, "FLOAT64", "FAIL beyond this C / B - 1.", False),
        Field("alpha", f64, "FLOAT64", "1 - confidence of the bounds.", False),
        Field("p_value", f64, "FLOAT64", "Fixed-horizon one-sided p of C > B (reference)."),
        Field("decision", s, "STRING", "FAIL, PASS or INCONCLUSIVE.", False),
        Field("emitted_at", ts, "TIMESTAMP", "Wall-clock time the row was emitted, UTC.", False),
    )
    return alerts, status, comparisons


ALERTS_FIELDS, SLO_STATUS_FIELDS, COMPARISONS_FIELDS = _fields()
# the ``alerts`` table's columns, in order: the one list (an :class:`AlertTransition`'s
# fields with its times as datetimes, plus ``emitted_at``; tests/unit/test_slo_kernel.py)
ALERT_COLUMNS = tuple(f.name for f in ALERTS_FIELDS)
