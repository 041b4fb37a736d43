"""The game-day scenarios of the signals beyond the error: drift, silence, label bugs.

:mod:`msewatch.commands.scenarios` writes them like the others (same records, ``slo.yaml``,
``expected_alerts.json``; :data:`msewatch.commands.scenarios.SCENARIOS` is the one registry);
this module holds their faults, their SLOs and the alerts they must raise. Time is
event time, UTC epoch ms; ``T`` is :data:`msewatch.commands.scenarios.FAULT_START_HOURS` after
the start, and the healthy baseline is that of the hourly scenarios with a **flat day**
(no daily cycle, :data:`msewatch.commands.scenarios.DAILY_CYCLE` 0): drift compares an hour's
values with the trailing day's, and on a cycled stream that comparison measures the
cycle, not the fault. The random draws are the same as the other hourly scenarios'.

Faults:

* ``label-drift``: from T to the end, region=eu's ``y_true`` is :data:`SHIFT` higher
  and the model follows (``y_pred`` too): errors unchanged, RMSE flat. label_drift
  pages for eu (prediction_drift may: the model followed).
* ``prediction-drift``: from T for :data:`PREDICTION_DRIFT_HOURS`, region=apac's
  ``y_pred`` is :data:`SHIFT` higher (a preprocessing bug: its ``price`` feature is
  :data:`PRICE_SHIFT` higher too) while ``y_true`` is not, and those predictions' labels
  come :data:`SLOW_LABEL_LAG_MS` late (4.5 to 5.5 h, still within the 6 h freshness
  SLO): prediction_drift and the price feature_drift page for apac before the first
  label of the drifted hours has arrived (rmse and error_rate may, later); the
  ``tenure_days`` feature does not move and its feature_drift stays quiet.
* ``silent-slice``: region=na sends no predictions (and so no labels) for
  :data:`SILENT_HOURS` from T: traffic pages for na, nothing else.
* ``label-bug``: from T for :data:`LABEL_BUG_HOURS`, region=apac's labels are all
  :data:`BUG_LABEL` (a sentinel written by a broken labeling job: constant, and
  outside the valid range ``[0, 1000]``): label_anomaly pages for apac (rmse,
  error_rate and label_drift may: the labels are wrong).

* ``signals`` (:data:`COMBINED`): label-drift on eu, silent-slice on na and label-bug on
  apac in one stream: each region pages on its own SLI, with what each allows.
* ``signals-stationary``: the same flat-day stream and SLOs without a fault: no alert.

Every signal scenario's predictions carry a ``features`` map (:data:`FEATURES`):
``price``, region r's :data:`PRICE_LEVEL` + N(0, :data:`PRICE_SD`), and ``tenure_days``,
N(400, 60), drawn from their own random stream (``[seed, 1]``), so that the other
records are those of the scenarios without features.

The SLOs (:data:`SIGNAL_SLOS`, after the hourly scenarios' four) use the SLO file keys
of ``docs/slo.md``: ``reference: {trailing: 1d}`` and ``statistic: psi`` for the drift
SLIs, ``trailing`` and ``retire_after`` for traffic, ``valid_range`` for label_anomaly.
The drift threshold is a PSI of 2, not the usual 0.25: an hour of about 60 values
against the trailing day reads up to 0.3 from sampling noise alone with 10 bins
(deciles of the reference, empty bins floored at 1e-4) and up to 0.9 with 20, while
the first drifted hours, shifted by :data:`SHIFT` (5 noise standard deviations), read
about 8 (measured on these records, seed 7).
"""

from __future__ import annotations

import numpy as np

SIGNAL_SCENARIOS = ("label-drift", "prediction-drift", "silent-slice", "label-bug")
# one stream, a fault per region (each on its own SLI), and the same stream without them
COMBINED = {"signals": ("label-drift", "silent-slice", "label-bug"), "signals-stationary": ()}
SHIFT = 40.0  # added to y_true / y_pred: 5 x the label noise (8)
PREDICTION_DRIFT_HOURS = 12
SLOW_LABEL_LAG_MS = (int(4.5 * 3_600_000), int(5.5 * 3_600_000))
SILENT_HOURS = 6
LABEL_BUG_HOURS, BUG_LABEL, VALID_RANGE = 12, -1.0, (0, 1000)
SEGMENT = {"label-drift": "eu", "prediction-drift": "apac", "silent-slice": "na",
           "label-bug": "apac"}  # fmt: skip
_HOUR_MS = 3_600_000
FEATURES = ("price", "tenure_days")
PRICE_LEVEL = {"na": 30.0, "eu": 25.0, "apac": 20.0}
PRICE_SD, PRICE_SHIFT = 3.0, 15.0  # the shift: 5 sd, like SHIFT for y_pred
TENURE_MEAN, TENURE_SD = 400.0, 60.0

_DRIFT_SLO = """\
  - name: {name}
    sli: {sli}
    threshold: 2.0             # PSI: an hour of ~60 values reads up to ~0.9 from noise alone
    reference: {{trailing: 1d}}
    statistic: psi
    objective: 0.9
    slices: ["region=*"]
    alerting:                  # 2 of the 3 newest hours bad, the newest among them
      page: [{{long: 3h, short: 1h, burn_rate: 6}}]
      ticket: []
    keep_firing_for: 2h
"""
SIGNAL_SLOS = (
    _DRIFT_SLO.format(name="prediction-drift", sli="prediction_drift")
    + _DRIFT_SLO.format(name="label-drift", sli="label_drift")
    + _DRIFT_SLO.format(name="price-drift", sli="feature_drift\n    feature: price")
    + _DRIFT_SLO.format(name="tenure-drift", sli="feature_drift\n    feature: tenure_days")
    + f"""\
  - name: traffic
    sli: traffic
    threshold: 0.5             # bad: an hour with under half the trailing day's median
    trailing: 1d
    retire_after: 2d
    objective: 0.99
    slices: ["region=*"]
    keep_firing_for: 1h
  - name: label-anomaly
    sli: label_anomaly
    threshold: 0.05            # bad: over 5 % of an hour's labels anomalous
    valid_range: [{VALID_RANGE[0]}, {VALID_RANGE[1]}]
    objective: 0.99
    slices: ["region=*"]
    keep_firing_for: 1h
"""
)


def add_features(seed: int, cols, regions) -> dict:
    """``cols`` plus the healthy :data:`FEATURES` columns, from their own random stream."""
    rng = np.random.default_rng([seed, 1])
    n = len(cols["ms"])
    level = np.array([PRICE_LEVEL[r] for r in regions])[cols["region"]]
    price = level + rng.normal(0.0, PRICE_SD, n)
    return cols | {"price": price, "tenure_days": rng.normal(TENURE_MEAN, TENURE_SD, n)}


def in_window(cols, regions, region, from_ms, hours):
    """Mask: predictions of ``region`` made in ``[from_ms, from_ms + hours)``."""
    ms = cols["ms"]
    return (
        (cols["region"] == regions.index(region))
        & (ms >= from_ms)
        & (ms < from_ms + hours * _HOUR_MS)
    )


def apply_fault(name, rng, cols, regions, t_ms, end_ms):
    """Scenario ``name``'s fault on the baseline ``cols``
    (:func:`msewatch.commands.scenarios.baseline`).

    Args:
        name: one of :data:`SIGNAL_SCENARIOS`.
        rng: the scenario's generator (after the baseline's draws).
        cols: the baseline columns; changed in place, except that silent-slice
            returns new ones without the silent predictions.
        regions: the segments, ``cols["region"]`` indexes it.
        t_ms: the fault start T, UTC epoch ms.
        end_ms: the end of the data (label-drift lasts until then).

    Returns:
        ``(cols, segment, what, fault end ms)``.
    """
    if name in COMBINED:
        segments, whats, end = [], [], t_ms
        for part in COMBINED[name]:
            cols, segment, what, part_end = apply_fault(part, rng, cols, regions, t_ms, end_ms)
            segments.append(segment)
            whats.append(f"{segment}: {what}")
            end = max(end, part_end)
        if not segments:
            return cols, None, "nothing wrong: a flat day, every label in time", None
        return cols, ",".join(segments), "; ".join(whats), end
    segment = SEGMENT[name]
    if name == "label-drift":
        hit = in_window(cols, regions, segment, t_ms, (end_ms - t_ms) // _HOUR_MS)
        cols["y_true"][hit] += SHIFT
        cols["y_pred"][hit] += SHIFT
        return cols, segment, f"y_true +{SHIFT:g} and the model follows (y_pred +{SHIFT:g})", end_ms
    if name == "prediction-drift":
        hit = np.flatnonzero(in_window(cols, regions, segment, t_ms, PREDICTION_DRIFT_HOURS))
        cols["y_pred"][hit] += SHIFT
        if "price" in cols:
            cols["price"][hit] += PRICE_SHIFT
        cols["lag_ms"][hit] = rng.integers(*SLOW_LABEL_LAG_MS, len(hit))
        what = (
            f"y_pred +{SHIFT:g} and feature price +{PRICE_SHIFT:g} (y_true unchanged) for "
            f"{PREDICTION_DRIFT_HOURS} h, their labels 4.5 to 5.5 h late"
        )
        return cols, segment, what, t_ms + PREDICTION_DRIFT_HOURS * _HOUR_MS
    if name == "silent-slice":
        keep = ~in_window(cols, regions, segment, t_ms, SILENT_HOURS)
        what = f"no predictions for {SILENT_HOURS} h"
        return {k: v[keep] for k, v in cols.items()}, segment, what, t_ms + SILENT_HOURS * _HOUR_MS
    if name == "label-bug":
        cols["y_true"][in_window(cols, regions, segment, t_ms, LABEL_BUG_HOURS)] = BUG_LABEL
        what = (
            f"labels all {BUG_LABEL:g} (constant, outside [{VALID_RANGE[0]}, "
            f"{VALID_RANGE[1]}]) for {LABEL_BUG_HOURS} h"
        )
        return cols, segment, what, t_ms + LABEL_BUG_HOURS * _HOUR_MS
    raise AssertionError(name)


def _entry(sli, severity, segment, **window) -> dict:
    return {"sli": sli, "severity": severity, "slice": f"region={segment}", **window}


def expectations(name, iso, t_ms, window_s) -> tuple[list, list]:
    """``(must_fire, may_fire)`` of scenario ``name``; ``iso`` formats UTC epoch ms."""
    if name in COMBINED:
        must, may = [], []
        for part in COMBINED[name]:
            part_must, part_may = expectations(part, iso, t_ms, window_s)
            must, may = must + part_must, may + part_may
        return must, may
    segment, w = SEGMENT[name], window_s * 1000
    first = {"frontier_from": iso(t_ms + w), "frontier_to": iso(t_ms + 3 * w)}
    # the drift pages need 2 bad hours of 3: the frontier T + 2 h at the earliest
    drift = {"frontier_from": iso(t_ms + w), "frontier_to": iso(t_ms + 4 * w)}
    if name == "label-drift":
        must = [_entry("label_drift", "page", segment, **drift)]
        return must, [_entry("prediction_drift", "*", segment)]
    if name == "prediction-drift":
        must = [
            _entry("prediction_drift", "page", segment, **drift),
            _entry("feature_drift", "page", segment, slo="price-drift", **drift),
        ]
        return must, [_entry(["rmse", "error_rate"], "*", segment)]
    if name == "silent-slice":
        return [_entry("traffic", "page", segment, **first)], [_entry("traffic", "ticket", segment)]
    if name == "label-bug":
        must = [_entry("label_anomaly", "page", segment, **first)]
        may = [_entry("label_anomaly", "ticket", segment)]
        return must, may + [_entry(["rmse", "error_rate", "label_drift"], "*", segment)]
    raise AssertionError(name)
