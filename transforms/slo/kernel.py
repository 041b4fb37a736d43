"""SLO evaluation of one (SLO, slice), Beam-free: burn rates, budget and alert states.

Time: everything is **event time** of the predictions (UTC epoch ms). Input rows are
the latest ``metrics`` pane of each window of the slice (the columns of
:func:`~msewatch.transforms.slo.sli.required_columns`); a later row of the same
window (``window_start_ms``, ``window_end_ms``) replaces the earlier one.

* A window *settles* by its SLI's rule (:mod:`.sli`); unsettled windows are neither
  good nor bad. Windows overlapping a suppression are *suppressed*: they settle but
  count neither way and spend no budget.
* The *label frontier* F is the end of the newest settled window. An evaluation at F
  counts the settled, unsuppressed windows whose end lies in ``(F - L, F]``: the burn
  rate over a lookback L is ``bad / eligible / (1 - objective)`` over them (NaN when
  nothing is eligible). On a grid of windows ending every ``p``, L covers the
  ``ceil(L / p)`` newest window ends; a lookback shorter than ``p`` is the newest
  window alone.
* Budget over the period P: ``total = (1 - objective) * eligible`` and ``consumed =
  bad``, over the windows ending in ``(F - P, F]``; ``remaining = 1 - consumed /
  total``, a share that goes negative when overspent.
* Alerts, one per (SLO, severity, slice): at each evaluation not suppressed at F, an
  alert fires when a condition holds (long and short burn rates both >= its
  burn_rate) and resolves once none has held for ``keep_firing_for`` of frontier
  time. Evaluations happen only at frontiers, so when windows stop settling the
  state freezes: nothing fires or resolves for lack of labels. Each transition
  carries ``fired_24h``, the alert's firings with a frontier in ``(F - 24 h, F]``
  (:mod:`msewatch.transforms.flapping`).

Entry points share all of it: :func:`evaluate_history` evaluates at every settled
window end in event-time order (bounded runs); :class:`SloEvaluator` ``.update``
takes each pane's rows and the watermark (streaming), evaluating at each newly
settled window end, or again at the same frontier when rows changed (a late label
that turns a settled window bad fires at that pane). Fed the final rows window by
window, the updates give the transitions of the history. ``docs/slo.md`` has the
semantics for users.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from msewatch.schemas import state_tree
from msewatch.schemas.slo import FIRING, OFF, OK, RESOLVED, AlertTransition, SloStatus
from msewatch.transforms.flapping import recent_firings, record_firing
from msewatch.transforms.slo.sli import (
    BOOL_COLUMNS,
    OBJECT_COLUMNS,
    SLI_RULES,
    WINDOW_KEY,
    Verdicts,
    required_columns,
    share,
    suppressed_windows,
)
from msewatch.transforms.slo.spec import SEVERITIES, Slo
from msewatch.transforms.slo.text import summary

RELATIVE_TOLERANCE = 1e-9  # a burn rate this close below a threshold reaches it


class Evaluation(NamedTuple):
    """Evaluations at ``n`` frontiers (arrays of length ``n``; ``burn`` is n x lookbacks)."""

    frontier_ms: np.ndarray
    burn: np.ndarray
    eligible: np.ndarray  # over the period
    bad: np.ndarray  # over the period
    budget_total: np.ndarray  # (1 - objective) * eligible
    budget_remaining: np.ndarray  # 1 - bad / budget_total
    good_share: np.ndarray  # 1 - bad / eligible
    value: np.ndarray  # SLI of the newest settled window
    suppressed: np.ndarray  # that window overlaps a suppression


@dataclasses.dataclass
class _AlertState:
    firing: bool = False
    last_held_ms: int | None = None
    condition: int = 0  # index of the condition that fired it
    fired: AlertTransition | None = None
    firings_ms: tuple[int, ...] = ()  # firing frontiers of the trailing day (flapping)


state_tree.register(b"L", _AlertState)  # in the SLO evaluator's state (keyed_evaluation)


def as_columns(rows, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Window rows -> numpy columns ``names`` (ms int64, flags bool, sketches object, the
    rest float64).

    ``rows`` is a ``pyarrow.Table``/``RecordBatch``, a mapping of column -> values
    (a dict of lists or arrays, a pandas DataFrame), or a sequence of row dicts.

    Raises:
        ValueError: a column is missing.
    """
    if isinstance(rows, (pa.Table, pa.RecordBatch)):
        have = set(rows.schema.names)
        get = lambda n: rows.column(n).to_numpy(zero_copy_only=False)  # noqa: E731 (null: NaN)
    elif isinstance(rows, Mapping) or hasattr(rows, "columns"):
        have, get = set(rows.keys()), lambda n: rows[n]
    else:
        rows = list(rows)
        have = set.intersection(*(set(r) for r in rows)) if rows else set(names)
        get = lambda n: [r[n] for r in rows]  # noqa: E731
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(f"window rows lack {', '.join(missing)}; the SLO reads {', '.join(names)}")
    out = {}
    for n in names:
        values = get(n)
        if n in WINDOW_KEY:
            out[n] = np.asarray(values, dtype=np.int64)
        elif n in BOOL_COLUMNS:  # null and NaN are False
            out[n] = np.array([v is not None and v == v and bool(v) for v in values], bool)
        elif n in OBJECT_COLUMNS:  # bytes (a sketch) or None, kept as they are
            out[n] = np.empty(len(values), object)
            out[n][:] = list(values)
        else:
            out[n] = np.asarray(values, dtype=np.float64)
    return out


def merge_windows(table: dict[str, np.ndarray], rows: dict[str, np.ndarray]) -> dict:
    """``table`` with ``rows`` added, the last row of each window kept, sorted by (end, start)."""
    cols = {n: np.concatenate([table[n], rows[n]]) for n in table}
    start, end = cols["window_start_ms"], cols["window_end_ms"]
    order = np.lexsort((np.arange(len(end)), start, end))
    s, e = start[order], end[order]
    last = np.ones(len(order), bool)
    last[:-1] = (s[1:] != s[:-1]) | (e[1:] != e[:-1])
    return {n: c[order[last]] for n, c in cols.items()}


def evaluate(slo: Slo, table, verdicts: Verdicts, frontiers_ms: np.ndarray) -> Evaluation:
    """Burn rates (every lookback of ``slo.alerting``) and period sums at each frontier.

    Vectorised over frontiers with cumulative sums over the windows sorted by end.
    """
    ends = table["window_end_ms"]
    suppressed = suppressed_windows(slo, table)
    counted = verdicts.settled & ~suppressed
    cum_eligible = np.concatenate(([0.0], np.cumsum(np.where(counted, verdicts.eligible, 0.0))))
    cum_bad = np.concatenate(([0.0], np.cumsum(np.where(counted, verdicts.bad, 0.0))))
    hi = np.searchsorted(ends, frontiers_ms, side="right")

    def sums(span_s: int) -> tuple[np.ndarray, np.ndarray]:
        lo = np.searchsorted(ends, frontiers_ms - span_s * 1000, side="right")
        return cum_eligible[hi] - cum_eligible[lo], cum_bad[hi] - cum_bad[lo]

    allowed = 1.0 - slo.objective
    burn = np.empty((len(frontiers_ms), len(slo.alerting.lookbacks_s())))
    for j, lookback_s in enumerate(slo.alerting.lookbacks_s()):
        eligible, bad = sums(lookback_s)
        burn[:, j] = share(bad, eligible) / allowed
    eligible, bad = sums(slo.period_s)
    total = allowed * eligible
    settled = np.flatnonzero(verdicts.settled)
    newest = settled[np.searchsorted(ends[settled], frontiers_ms, side="right") - 1]
    return Evaluation(
        frontier_ms=frontiers_ms,
        burn=burn,
        eligible=eligible,
        bad=bad,
        budget_total=total,
        budget_remaining=1.0 - share(bad, total),
        good_share=1.0 - share(bad, eligible),
        value=verdicts.value[newest],
        suppressed=suppressed[newest],
    )


class SloEvaluator:
    """Incremental evaluation of one (SLO, slice); small and picklable (Beam state).

    State: the windows of the last period before the frontier (one row each), and
    those the SLI's verdicts read before them (its rule's ``reach_s``: one more period
    for rmse_trend), the frontier, and per severity whether its alert fires, when a
    condition last held and its firing frontiers of the trailing day.
    """

    CONFIG_ATTRS = frozenset({"slo", "slice_name", "_columns", "_lookbacks"})  # not state

    def __init__(self, slo: Slo, slice_name: str):
        self.slo = slo
        self.slice_name = slice_name
        self.frontier_ms: int | None = None
        self._columns = required_columns(slo.sli)
        self._table = {
            n: np.empty(0, np.int64 if n in WINDOW_KEY else float) for n in self._columns
        }
        self._table.update({n: np.empty(0, bool) for n in BOOL_COLUMNS if n in self._table})
        self._table.update({n: np.empty(0, object) for n in OBJECT_COLUMNS if n in self._table})
        self._alerts = {sev: _AlertState() for sev, conds in slo.alerting.items() if conds}
        self._lookbacks = slo.alerting.lookbacks_s()
        self._last_status: SloStatus | None = None

    def firing(self) -> list[AlertTransition]:
        """The transitions that started the alerts firing now (for re-sends)."""
        return [a.fired for a in self._alerts.values() if a.firing]

    def update(
        self, window_rows=None, watermark_ms: int | None = None
    ) -> tuple[list[AlertTransition], list[SloStatus]]:
        """Adds a pane's rows (latest per window) and evaluates.

        Args:
            window_rows: rows of this slice's windows (see :func:`as_columns`), or None.
            watermark_ms: the input watermark, UTC epoch ms; None in bounded runs
                (every window is closed). It settles label_freshness and nan_rate
                windows and is recorded in the outputs.

        Returns:
            ``(transitions, statuses)``: alert state changes, and one status per
            evaluation (at a frontier already evaluated, only when it changed).
        """
        rows = None if window_rows is None else as_columns(window_rows, self._columns)
        changed = rows is not None and len(rows["window_end_ms"]) > 0
        if changed:
            self._table = merge_windows(self._table, rows)
        horizon = math.inf if watermark_ms is None else watermark_ms
        verdicts = SLI_RULES[self.slo.sli].verdicts(self.slo, self._table, horizon)
        if not verdicts.settled.any():
            return [], []
        settled_ends = np.unique(self._table["window_end_ms"][verdicts.settled])
        previous = self.frontier_ms
        frontiers = settled_ends if previous is None else settled_ends[settled_ends > previous]
        again = len(frontiers) == 0
        if again:
            if previous is None or not changed:
                return [], []
            frontiers = np.array([previous], np.int64)
        ev = evaluate(self.slo, self._table, verdicts, frontiers)
        out = self._step(ev, watermark_ms, again)
        self.frontier_ms = int(frontiers[-1])
        self._prune()
        return out

    def _prune(self) -> None:
        """Drops the windows no verdict reads any more: older than the period plus the
        rule's reach (and the longest window: a drift rule reaches back from a window's
        start). A ``{from, to}`` drift reference's windows are kept for good (their number
        is bounded by the range)."""
        reach_s = SLI_RULES[self.slo.sli].reach_s(self.slo)
        start, end = self._table["window_start_ms"], self._table["window_end_ms"]
        longest_ms = int((end - start).max(initial=0)) if reach_s else 0
        keep = end > self.frontier_ms - (self.slo.period_s + reach_s) * 1000 - longest_ms
        ref = getattr(self.slo, "reference", None)
        if ref is not None and ref.kind == "range":
            keep |= (start >= ref.from_ms) & (end <= ref.to_ms)
        if not keep.all():
            self._table = {n: c[keep] for n, c in self._table.items()}

    def _first_held(self, ev: Evaluation) -> dict[str, np.ndarray]:
        """Per severity and frontier: the first condition that holds, or -1.

        A burn rate equal to the threshold holds, to within float rounding
        (:data:`RELATIVE_TOLERANCE`): ``0.144 / (1 - 0.99)`` is 14.4 to a person.
        """
        column = {s: j for j, s in enumerate(self._lookbacks)}
        first = {}
        for severity in self._alerts:
            holds = np.column_stack(
                [
                    (ev.burn[:, column[w.long_s]] >= w.burn_rate * (1 - RELATIVE_TOLERANCE))
                    & (ev.burn[:, column[w.short_s]] >= w.burn_rate * (1 - RELATIVE_TOLERANCE))
                    for w in self.slo.alerting[severity]
                ]
            )
            first[severity] = np.where(holds.any(axis=1), holds.argmax(axis=1), -1)
        return first

    def _step(self, ev: Evaluation, watermark_ms, again: bool):
        first = self._first_held(ev)
        keep_ms = self.slo.keep_firing_for_s * 1000
        transitions = []
        n = len(ev.frontier_ms)
        if not any(a.firing or (first[s] >= 0).any() for s, a in self._alerts.items()):
            statuses = self._statuses(ev, watermark_ms, {s: [OK] * n for s in self._alerts})
            return self._deduplicated(statuses, again)
        states = {severity: [] for severity in self._alerts}
        for i, frontier in enumerate(ev.frontier_ms.tolist()):
            for severity, alert in [] if ev.suppressed[i] else self._alerts.items():
                held = int(first[severity][i])
                if held >= 0:
                    alert.last_held_ms = frontier
                    if not alert.firing:
                        alert.firing, alert.condition = True, held
                        alert.firings_ms = record_firing(alert.firings_ms, frontier)
                        alert.fired = self._transition(severity, FIRING, alert, ev, i, watermark_ms)
                        transitions.append(alert.fired)
                elif alert.firing and frontier - alert.last_held_ms >= keep_ms:
                    alert.firing = False
                    transitions.append(
                        self._transition(severity, RESOLVED, alert, ev, i, watermark_ms)
                    )
            for severity, alert in self._alerts.items():
                states[severity].append(FIRING if alert.firing else OK)
        return transitions, self._deduplicated(self._statuses(ev, watermark_ms, states), again)[1]

    def _deduplicated(self, statuses: list[SloStatus], again: bool):
        """``([], statuses)``; none when re-evaluating a frontier changed nothing."""
        last = statuses[-1]
        if again and _key(last) == _key(self._last_status):
            statuses = []
        self._last_status = last
        return [], statuses

    def _transition(self, severity, state, alert, ev, i, watermark_ms) -> AlertTransition:
        slo, frontier_ms = self.slo, int(ev.frontier_ms[i])
        w = slo.alerting[severity][alert.condition]
        column = self._lookbacks.index
        record = AlertTransition(
            alert=f"{slo.name}/{severity}/{self.slice_name}",
            slo=slo.name,
            sli=slo.sli,
            severity=severity,
            slice=self.slice_name,
            state=state,
            frontier_ms=frontier_ms,
            watermark_ms=watermark_ms,
            burn_rate_long=float(ev.burn[i, column(w.long_s)]),
            burn_rate_short=float(ev.burn[i, column(w.short_s)]),
            burn_rate_threshold=w.burn_rate,
            long_window_s=w.long_s,
            short_window_s=w.short_s,
            budget_remaining=float(ev.budget_remaining[i]),
            value=float(ev.value[i]),
            threshold=slo.threshold,
            objective=slo.objective,
            summary="",
            runbook=slo.runbook,
            fired_24h=len(recent_firings(alert.firings_ms, frontier_ms)),
        )
        return record._replace(summary=summary(slo, record))

    def _statuses(self, ev: Evaluation, watermark_ms, states) -> list[SloStatus]:
        """One status per evaluated frontier; ``states``: per severity, per frontier."""
        slo, n = self.slo, len(ev.frontier_ms)
        page, ticket = (states.get(s, [OFF] * n) for s in SEVERITIES)
        head = (slo.name, slo.sli, self.slice_name)
        conf = (slo.objective, slo.threshold, slo.period_s)
        columns = (
            ev.frontier_ms,
            ev.value,
            ev.good_share,
            ev.eligible,
            ev.budget_total,
            ev.bad,
            ev.budget_remaining,
            ev.burn,
            ev.suppressed,
        )
        rows = zip(*(c.tolist() for c in columns), page, ticket, strict=True)
        return [
            SloStatus(
                *head, f, watermark_ms, *conf, v, g, e, t, c, r, self._lookbacks, tuple(b), s, p, k
            )
            for f, v, g, e, t, c, r, b, s, p, k in rows
        ]


def _key(status: SloStatus | None):
    """A status without its watermark, NaN made comparable (a re-evaluation that
    changed nothing is not written again)."""
    if status is None:
        return None
    fields = status._replace(watermark_ms=None, burn_rates=None)
    nan_free = tuple(None if isinstance(v, float) and math.isnan(v) else v for v in fields)
    return nan_free + tuple(None if math.isnan(b) else b for b in status.burn_rates)


def evaluate_history(
    slo: Slo, slice_name: str, windows
) -> tuple[list[AlertTransition], list[SloStatus]]:
    """Evaluates a bounded run: every settled window end in event-time order, as if the
    windows had settled one after another (watermark None: every window is closed).

    Args:
        slo: the SLO.
        slice_name: the slice the windows belong to.
        windows: the final row of each window of the slice (see :func:`as_columns`).

    Returns:
        ``(transitions, statuses)``: every alert state change, and one status per
        settled window end.
    """
    return SloEvaluator(slo, slice_name).update(windows)
