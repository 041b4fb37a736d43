"""Comparison of one (comparison, slice), Beam-free: decisions and alert transitions.

Time: everything is **event time** of the predictions (UTC epoch ms). Input rows are
the ``metrics`` panes of the baseline's and the candidate's slices crossed with the
compared slice (``model_version=v1,region=eu`` and ``model_version=v2,region=eu`` for
``region=eu``); a later pane of a window replaces the earlier one.

* A window **counts** when both versions have it and both pass the label gate
  (``label_coverage >= min_coverage`` or ``complete``), as an SLO's rmse window does.
* The **frontier** F is the end of the newest counted window. An evaluation at F sums
  the moments of the counted windows ending in ``(F - lookback, F]`` (with sliding
  windows, only those ending a whole number of window lengths before F, so that no
  prediction is summed twice) and applies :mod:`.stats`: paired when the mode says
  so (``auto``: when the lookback holds at least ``min_scored`` pairs), else Welch.
* Decision: FAIL when the always-valid lower bound of ``C / B - 1`` is above the
  margin, PASS when the upper bound is below it, INCONCLUSIVE otherwise or when
  either version (or the pairs) has fewer than ``min_scored`` scored predictions.
* The alert ``<comparison>/<severity>/<slice>`` fires at a FAIL and resolves at a
  PASS; INCONCLUSIVE keeps its state. Like the SLOs, nothing changes when windows
  stop counting for lack of labels.

:func:`evaluate_history` evaluates at every counted window end in event-time order
(bounded runs); :class:`ComparisonEvaluator` ``.update`` takes each pane's rows
(streaming) and evaluates at each new frontier, or again at the same frontier when
a pane changed a window it sums.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from msewatch.schemas import state_tree
from msewatch.schemas.slo import FIRING, RESOLVED, AlertTransition, epoch_ms, evaluation_row
from msewatch.transforms.compare import stats
from msewatch.transforms.compare.spec import VERSION_KEY, Comparison
from msewatch.transforms.flapping import recent_firings, record_firing
from msewatch.transforms.metrics.slices import parse_slice_name

# per metric: the group moments (sum_w, sum_w2, Σw·loss, Σw·loss²) and the paired
# moments (n, Σb, Σc, Σb², Σc², Σbc) of transforms/metrics/paired.py, by column name
_GROUP = {
    "mse": ("sum_w", "sum_w2", "sum_se", "sum_se2"),
    "mae": ("sum_w", "sum_w2", "sum_ae", "sum_se"),
}
_PAIRED = {
    "mse": ("n", "sum_se_b", "sum_se_c", "sum_se_bb", "sum_se_cc", "sum_se_bc"),
    "mae": ("n", "sum_ae_b", "sum_ae_c", "sum_se_b", "sum_se_c", "sum_ae_bc"),
}
T_OPT_PER_MIN_SCORED = 10  # the bounds are tightest at 10 x min_scored samples
_CHUNK = 256  # frontiers evaluated at once


class Window(NamedTuple):
    """The numbers of one version's window that a comparison reads."""

    start_ms: int
    pane_index: int
    gate: bool  # label_coverage >= min_coverage or complete
    scored: int
    group: tuple[float, float, float, float]
    paired: tuple[float, ...]  # the candidate's pairs with the baseline (zeros if none)


state_tree.register(b"W", Window)  # in the comparison evaluator's state (keyed_evaluation)


class Result(NamedTuple):
    """One evaluation: a row of the ``comparisons`` table, without ``emitted_at``."""

    comparison: str
    slice: str
    metric: str
    baseline: str
    candidate: str
    paired: bool
    frontier_ms: int
    watermark_ms: int | None
    windows: int
    n_baseline: int
    n_candidate: int
    metric_baseline: float
    metric_candidate: float
    delta: float
    ratio: float
    ci_low: float
    ci_high: float
    margin: float
    alpha: float
    p_value: float
    decision: str

    def as_row(self, emitted_at) -> dict:
        """The ``comparisons`` row: times as UTC datetimes, plus ``emitted_at``."""
        return evaluation_row(self._asdict(), emitted_at)


def window_of(comparison: Comparison, row: dict) -> Window:
    """A metrics row as the :class:`Window` the comparison reads."""
    paired = (0.0,) * 6
    for entry in row.get("paired") or ():
        if entry["baseline"] == comparison.baseline:
            paired = tuple(float(entry[k]) for k in _PAIRED[comparison.metric])
    coverage = row.get("label_coverage")
    covered = coverage is not None and not math.isnan(coverage)
    return Window(
        start_ms=epoch_ms(row["window_start"]),
        pane_index=int(row.get("pane_index") or 0),
        gate=bool(row.get("complete")) or (covered and coverage >= comparison.min_coverage),
        scored=int(row.get("scored") or 0),
        group=tuple(float(row.get(k) or 0.0) for k in _GROUP[comparison.metric]),
        paired=paired,
    )


def evaluate(comparison: Comparison, ends_ms, baseline, candidate, frontiers_ms) -> dict:
    """The statistics at each frontier, vectorized.

    Args:
        comparison: the comparison.
        ends_ms: the end of each counted window, ascending (numpy int64, length k).
        baseline: ``(start_ms, scored, group)`` arrays of the baseline's windows
            (``group`` is ``(k, 4)``).
        candidate: ``(start_ms, scored, group, paired)`` of the candidate's
            (``paired`` is ``(k, 6)``).
        frontiers_ms: the frontiers to evaluate (numpy int64, length m).

    Returns:
        Columns of length m: ``windows``, ``paired``, ``n_baseline``, ``n_candidate``,
        ``metric_baseline``, ``metric_candidate``, ``ratio``, ``se_ratio``, ``ci_low``, ``ci_high``,
        ``p_value``, ``decision``.
    """
    start_b, scored_b, group_b = baseline
    _, scored_c, group_c, pairs = candidate
    f = np.asarray(frontiers_ms, dtype=np.int64)[:, None]
    end = np.asarray(ends_ms, dtype=np.int64)[None, :]
    length = np.maximum(end - np.asarray(start_b, dtype=np.int64)[None, :], 1)
    mask = (end <= f) & (end > f - comparison.lookback_s * 1000) & ((f - end) % length == 0)
    m = mask.astype(np.float64)
    sb, sc, sp = m @ group_b, m @ group_c, m @ pairs
    nb, nc, n_pairs = m @ scored_b, m @ scored_c, sp[:, 0]
    use_pairs = n_pairs >= comparison.min_scored
    if comparison.mode == "paired":
        use_pairs = np.ones_like(use_pairs)
    elif comparison.mode == "unpaired":
        use_pairs = np.zeros_like(use_pairs)
    welch = stats.unpaired(sb.T, sc.T)
    pair = stats.paired(*sp.T)
    est = stats.Estimate(*(np.where(use_pairs, p, w) for p, w in zip(pair, welch, strict=True)))
    n_b = np.where(use_pairs, n_pairs, nb)
    n_c = np.where(use_pairs, n_pairs, nc)
    samples = np.where(use_pairs, n_pairs, nb + nc)
    t_opt = comparison.min_scored * T_OPT_PER_MIN_SCORED * np.where(use_pairs, 1, 2)
    low, high = stats.bounds(est, samples, comparison.alpha, t_opt)
    enough = (n_b >= comparison.min_scored) & (n_c >= comparison.min_scored)
    return {
        "windows": mask.sum(axis=1),
        "paired": use_pairs,
        "n_baseline": n_b,
        "n_candidate": n_c,
        "metric_baseline": est.metric_baseline,
        "metric_candidate": est.metric_candidate,
        "ratio": est.ratio,
        "se_ratio": est.se_ratio,
        "ci_low": low,
        "ci_high": high,
        "p_value": est.p_value,
        "decision": stats.decide(low, high, comparison.margin, enough),
    }


class ComparisonEvaluator:
    """The comparison of one slice over time: its windows, frontier and alert state."""

    CONFIG_ATTRS = frozenset({"comparison", "slice"})  # rebuilt by new_evaluator, not state

    def __init__(self, comparison: Comparison, slice_name: str):
        self.comparison, self.slice = comparison, slice_name
        self._windows: tuple[dict, dict] = ({}, {})  # baseline, candidate: end_ms -> Window
        self._frontier_ms: int | None = None
        self._firing: AlertTransition | None = None
        self._firings_ms: tuple[int, ...] = ()  # firing frontiers of the trailing day

    def firing(self) -> list[AlertTransition]:
        """The alert's firing transition while it fires (for re-sending)."""
        return [self._firing] if self._firing is not None else []

    def update(self, rows, watermark_ms: int | None = None):
        """Takes metrics rows of the two versions; returns ``(results, transitions)``."""
        c = self.comparison
        touched = set()
        for row in rows:
            side = self._windows[0 if _version(row) == c.baseline else 1]
            end, window = epoch_ms(row["window_end"]), window_of(c, row)
            old = side.get(end)
            if old is None or window.pane_index >= old.pane_index:
                side[end] = window
                touched.add(end)
        ends = self._counted()
        last = self._frontier_ms
        frontiers = [e for e in ends if last is None or e > last]
        if not frontiers and last is not None:
            if any(last - c.lookback_s * 1000 < e <= last for e in touched):
                frontiers = [last]
        if not frontiers:
            return [], []
        results, transitions = self._evaluate(ends, frontiers, watermark_ms)
        self._frontier_ms = frontiers[-1]
        self._prune()
        return results, transitions

    def _counted(self) -> list[int]:
        base, cand = self._windows
        return sorted(e for e, w in cand.items() if w.gate and e in base and base[e].gate)

    def _evaluate(self, ends, frontiers, watermark_ms):
        c = self.comparison
        base, cand = self._windows
        all_ends = np.array(ends, dtype=np.int64)
        parts = []
        # frontiers in chunks, each with the windows its lookbacks reach: the mask is
        # (chunk x windows), not (history x history), however long a bounded history is
        for at in range(0, len(frontiers), _CHUNK):
            chunk = np.array(frontiers[at : at + _CHUNK], dtype=np.int64)
            lo = np.searchsorted(all_ends, chunk[0] - c.lookback_s * 1000, side="right")
            hi = np.searchsorted(all_ends, chunk[-1], side="right")
            b = [base[e] for e in ends[lo:hi]]
            k = [cand[e] for e in ends[lo:hi]]
            paired = np.array([w.paired for w in k], dtype=np.float64).reshape(-1, 6)
            parts.append(evaluate(c, all_ends[lo:hi], _arrays(b), (*_arrays(k), paired), chunk))
        cols = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        results, transitions = [], []
        for i, frontier in enumerate(frontiers):
            col = {k: v[i] for k, v in cols.items()}
            result = Result(
                comparison=c.name,
                slice=self.slice,
                metric=c.metric,
                baseline=c.baseline,
                candidate=c.candidate,
                paired=bool(col["paired"]),
                frontier_ms=int(frontier),
                watermark_ms=watermark_ms,
                windows=int(col["windows"]),
                n_baseline=int(col["n_baseline"]),
                n_candidate=int(col["n_candidate"]),
                metric_baseline=float(col["metric_baseline"]),
                metric_candidate=float(col["metric_candidate"]),
                delta=float(col["metric_candidate"] - col["metric_baseline"]),
                ratio=float(col["ratio"]),
                ci_low=float(col["ci_low"]),
                ci_high=float(col["ci_high"]),
                margin=c.margin,
                alpha=c.alpha,
                p_value=float(col["p_value"]),
                decision=str(col["decision"]),
            )
            results.append(result)
            transition = self._transition(result)
            if transition is not None:
                transitions.append(transition)
        return results, transitions

    def _transition(self, r: Result) -> AlertTransition | None:
        if r.decision == stats.FAIL and self._firing is None:
            self._firings_ms = record_firing(self._firings_ms, r.frontier_ms)
            self._firing = _alert(self.comparison, r, FIRING, len(self._firings_ms))
            return self._firing
        if r.decision == stats.PASS and self._firing is not None:
            self._firing = None
            fired = len(recent_firings(self._firings_ms, r.frontier_ms))
            return _alert(self.comparison, r, RESOLVED, fired)
        return None

    def _prune(self) -> None:
        """Forgets windows no later evaluation can sum (frontiers only move forward)."""
        oldest = self._frontier_ms - self.comparison.lookback_s * 1000
        for side in self._windows:
            for end in [e for e in side if e <= oldest]:
                del side[end]


def _version(row: dict) -> str:
    return dict(parse_slice_name(row["slice"]))[VERSION_KEY]


def _arrays(windows):
    return (
        np.array([w.start_ms for w in windows], dtype=np.int64),
        np.array([w.scored for w in windows], dtype=np.float64),
        np.array([w.group for w in windows], dtype=np.float64).reshape(-1, 4),
    )


def _alert(c: Comparison, r: Result, state: str, fired_24h: int) -> AlertTransition:
    change = r.ratio - 1.0
    verdict = (
        f"worse than {c.baseline} by more than the {c.margin:.0%} margin"
        if state == FIRING
        else f"within the {c.margin:.0%} margin of {c.baseline}"
    )
    summary = (
        f"{c.name}: {c.candidate} is {verdict} in {c.metric} on {r.slice}: {change:+.1%} "
        f"({1 - c.alpha:.0%} always-valid bounds {r.ci_low:+.1%} to {r.ci_high:+.1%}, "
        f"{r.n_candidate} vs {r.n_baseline} {'pairs' if r.paired else 'predictions'})"
    )
    return AlertTransition(
        alert=f"{c.name}/{c.severity}/{r.slice}",
        slo=c.name,
        sli="comparison",
        severity=c.severity,
        slice=r.slice,
        state=state,
        frontier_ms=r.frontier_ms,
        watermark_ms=r.watermark_ms,
        burn_rate_long=math.nan,
        burn_rate_short=math.nan,
        burn_rate_threshold=math.nan,
        long_window_s=c.lookback_s,
        short_window_s=c.lookback_s,
        budget_remaining=math.nan,
        value=change,
        threshold=c.margin,
        objective=1.0 - c.alpha,
        summary=summary,
        runbook=c.runbook,
        fired_24h=fired_24h,
    )


def evaluate_history(comparison: Comparison, slice_name: str, rows):
    """Every evaluation of one slice's windows, in event-time order (bounded runs).

    Args:
        rows: the metrics rows of both versions, in pane order (the last pane of a
            window wins).

    Returns:
        ``(results, transitions)``.
    """
    return ComparisonEvaluator(comparison, slice_name).update(rows, watermark_ms=None)
