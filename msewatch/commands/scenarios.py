"""Game-day scenarios: sample data with one known fault and the alerts it must raise.

``msewatch generate --scenario NAME --out DIR`` calls :func:`generate_scenario`, which
writes into ``DIR``:

* ``predictions.jsonl`` and ``labels.jsonl``, the record format of ``msewatch
  generate`` (README "Input records"): times RFC 3339 UTC with milliseconds, one
  model version, ``segments`` ``{"region": ...}``, weight 1.0, no malformed lines;
* ``slo.yaml``, the scenario's SLO file (:data:`HOURLY_SLO` or, for the 6 h windows
  of ``stationary``, :data:`SIX_HOURLY_SLO`): rmse, error_rate, label_freshness and
  nan_rate SLOs on ``region=*`` (the signal scenarios' :data:`SIGNALS_SLO` adds
  prediction_drift, label_drift, traffic and label_anomaly);
* ``expected_alerts.json``: the fault (segment, start, end), the arguments of
  ``msewatch run`` (``run_args``), and the alerts: ``must_fire`` entries (SLI,
  severity, slice and a window of acceptable first-firing frontiers, UTC),
  ``may_fire`` and ``must_not_fire`` patterns (``*`` matches anything, a list any of
  its items), and ``must_not_flap`` (true for ``stationary``: an alert that flaps
  there fails the game day). ``msewatch gameday`` (:mod:`msewatch.commands.gameday`)
  checks runs against it.

The healthy baseline (all scenarios): event time from :data:`START` (UTC) for 3
days; per segment a Poisson number of predictions per hour (:data:`RATE_PER_HOUR`);
expected demand ``mu`` = the segment's level times a daily cycle; ``y_true = mu +
N(0, 8)``, ``y_pred = mu + N(0, 5)`` (RMSE about 9.4, far below the SLO threshold
15); every label is sent, after a log-normal lag (median 30 min) clipped to [1 min,
4 h], so every label is in time for the 6 h freshness SLO. The baseline draws come
first from the seeded generator, so every hourly scenario shares the same healthy
records and differs only by its fault. Same name and seed, same bytes.

Faults (``T`` = :data:`FAULT_START_HOURS` after the start):

* ``drift``: from T for 24 h, ``y_true`` in region=apac is 1.6x (the model does not
  follow): rmse and error_rate page for apac only, then resolve.
* ``label-outage``: region=eu's labels for predictions made in [T, T+12h) never come:
  no rmse or error_rate alert (those windows never settle), a label_freshness page
  for eu only.
* ``label-backfill``: region=na's labels for [T, T+12h) are held back, except the 20 %
  with the largest errors (a partial view that looks bad), then arrive in a burst at
  T+24h: no rmse or error_rate page (the windows settle healthy), a label_freshness
  page for na.
* ``nan-burst``: 30 % of region=na's predictions are NaN in [T, T+3h): a nan_rate page
  for na only.
* ``small-noisy-segment``: a fourth region, mena, with 8 predictions an hour and
  heavy-tailed errors (its window RMSE often breaks 15, but no window reaches
  ``min_scored``): no alert at all.
* ``label-drift``, ``prediction-drift``, ``silent-slice``, ``label-bug``: the signals
  beyond the error, on a flat day; their faults are :mod:`msewatch.commands.scenarios_signals`.
* ``stationary``: 30 days of 6 h windows (30 predictions an hour per segment),
  nothing wrong: no alert at all.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.commands import scenarios_signals as signals
from msewatch.commands.jsonl_text import concat, json_floats, write_jsonl

SCENARIOS = (
    "drift",
    "label-outage",
    "label-backfill",
    "nan-burst",
    "small-noisy-segment",
    *signals.SIGNAL_SCENARIOS,
    *signals.COMBINED,
    "stationary",
)
START = "2026-11-01T00:00:00Z"
DAYS = 3  # hourly scenarios
STATIONARY_DAYS = 30
FAULT_START_HOURS = 30  # T, hours after START
LEVEL = {"na": 120.0, "eu": 100.0, "apac": 80.0, "mena": 40.0}
REGIONS = ("na", "eu", "apac")  # the baseline's segments
SLICES = ("region",)  # what a scenario is sliced by (its run_args; msewatch gameday's runs)
RATE_PER_HOUR = 60  # predictions per hour per segment (stationary: 30, mena: 8)
TARGET_SD, MODEL_SD = 8.0, 5.0  # y_true and y_pred noise around mu
DAILY_CYCLE = 0.3  # mu = level * (1 + 0.3 cos(...)); 0 (a flat day) for the signal scenarios
LAG_MEDIAN_MS, LAG_LOG_SD = 30 * 60_000, 0.8
LAG_RANGE_MS = (60_000, 4 * 3_600_000)
DRIFT_FACTOR, DRIFT_HOURS = 1.6, 24
OUTAGE_HOURS = 12
BACKFILL_HOURS, BACKFILL_AT_HOURS, BACKFILL_EARLY_SHARE = 12, 24, 0.2
NAN_SHARE, NAN_HOURS = 0.3, 3
SMALL_RATE_PER_HOUR, SMALL_ERROR_SCALE = 8, 12.0
_HOUR_MS = 3_600_000

_SLO_TEMPLATE = """\
# Game-day SLOs ({windows} windows), written by msewatch generate --scenario.
#   msewatch slo check slo.yaml   explains every line; docs/slo.md has the semantics.
version: 1
slos:
  - name: forecast-rmse
    sli: rmse
    threshold: 15              # healthy RMSE is about 9.4
    objective: 0.99
    slices: ["region=*"]
    min_coverage: 0.8
    min_scored: 30
{alerting}
  - name: forecast-error-rate
    sli: error_rate
    threshold: 35              # a prediction off by more than 35 is bad (healthy: 0.02 %)
    objective: 0.99
    slices: ["region=*"]
    min_coverage: 0.8
    min_scored: 30
{alerting}
  - name: label-freshness
    sli: label_freshness
    threshold: 0.9             # a window is bad when < 90 % is labeled within 6 h
    within: 6h
    objective: 0.95
    slices: ["region=*"]
{alerting}
  - name: nan-predictions
    sli: nan_rate
    threshold: 0.05            # a window is bad when > 5 % of y_pred are NaN/inf
    objective: 0.99
    slices: ["region=*"]
{alerting}"""
HOURLY_SLO = _SLO_TEMPLATE.format(
    windows="1 h",
    alerting="    keep_firing_for: 1h        # default alerting: 14.4x 1h/5m, 6x 6h/30m, 1x 3d/6h",
)
SIX_HOURLY_SLO = _SLO_TEMPLATE.format(
    windows="6 h",
    alerting="""\
    keep_firing_for: 6h
    alerting:                  # lookbacks of whole 6 h windows
      page: [{long: 1d, short: 6h, burn_rate: 14.4}, {long: 3d, short: 12h, burn_rate: 6}]
      ticket: [{long: 7d, short: 1d, burn_rate: 1}]""",
)

SIGNALS_SLO = HOURLY_SLO + "\n" + signals.SIGNAL_SLOS  # the four above, then the new SLIs'


def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)


def _iso(ms: int) -> str:
    return str(np.datetime64(int(ms), "ms").astype("datetime64[s]")) + "Z"


def baseline(
    rng, regions, rate_per_hour, days, start_ms, cycle=DAILY_CYCLE
) -> dict[str, np.ndarray]:
    """Healthy predictions in event-time order, with each label's lag (columns).

    ``mu`` follows a daily cycle of relative amplitude ``cycle`` (peak at 18:00 UTC);
    ``cycle`` changes no random draw.

    Columns: ``ms`` (event time, UTC epoch ms), ``region`` (index into ``regions``),
    ``mu``, ``y_true``, ``y_pred``, ``lag_ms`` and ``sent`` (all True).
    """
    hours = days * 24
    counts = rng.poisson(rate_per_hour, (hours, len(regions))).ravel()
    n = int(counts.sum())
    region = np.repeat(np.tile(np.arange(len(regions)), hours), counts)
    hour = np.repeat(np.repeat(np.arange(hours), len(regions)), counts)
    ms = start_ms + hour * _HOUR_MS + rng.integers(0, _HOUR_MS, n)
    level = np.array([LEVEL[r] for r in regions])[region]
    mu = level * (1 + cycle * np.cos(2 * np.pi * ((ms / _HOUR_MS) % 24 - 18) / 24))
    y_true = mu + rng.normal(0, TARGET_SD, n)
    y_pred = mu + rng.normal(0, MODEL_SD, n)
    lag = np.clip(rng.lognormal(np.log(LAG_MEDIAN_MS), LAG_LOG_SD, n), *LAG_RANGE_MS)
    order = np.argsort(ms, kind="stable")
    cols = {"ms": ms, "region": region, "mu": mu, "y_true": y_true, "y_pred": y_pred}
    cols["lag_ms"] = lag.astype(np.int64)
    cols = {k: v[order] for k, v in cols.items()}
    return cols | {"sent": np.ones(n, bool)}


def _fault(name, rng, cols, regions, t_ms) -> tuple[str, str, int]:
    """Applies scenario ``name``'s fault to ``cols`` in place: (segment, what, end ms)."""
    if name == "drift":
        hit = signals.in_window(cols, regions, "apac", t_ms, DRIFT_HOURS)
        cols["y_true"][hit] = DRIFT_FACTOR * cols["mu"][hit] + (cols["y_true"] - cols["mu"])[hit]
        what = f"y_true x{DRIFT_FACTOR} for {DRIFT_HOURS} h (the model does not follow)"
        return "apac", what, t_ms + DRIFT_HOURS * _HOUR_MS
    if name == "label-outage":
        cols["sent"][signals.in_window(cols, regions, "eu", t_ms, OUTAGE_HOURS)] = False
        return (
            "eu",
            f"labels of {OUTAGE_HOURS} h of predictions never come",
            t_ms + OUTAGE_HOURS * _HOUR_MS,
        )
    if name == "label-backfill":
        hit = np.flatnonzero(signals.in_window(cols, regions, "na", t_ms, BACKFILL_HOURS))
        error = np.abs(cols["y_pred"][hit] - cols["y_true"][hit])
        held = hit[error < np.quantile(error, 1 - BACKFILL_EARLY_SHARE)]
        burst = t_ms + BACKFILL_AT_HOURS * _HOUR_MS + rng.integers(0, 30 * 60_000, len(held))
        cols["lag_ms"][held] = burst - cols["ms"][held]
        what = (
            f"labels of {BACKFILL_HOURS} h held back (the {BACKFILL_EARLY_SHARE:.0%} worst "
            f"arrive on time), then a burst {BACKFILL_AT_HOURS} h after the start"
        )
        return "na", what, t_ms + BACKFILL_AT_HOURS * _HOUR_MS
    if name == "nan-burst":
        hit = np.flatnonzero(signals.in_window(cols, regions, "na", t_ms, NAN_HOURS))
        cols["y_pred"][rng.choice(hit, round(NAN_SHARE * len(hit)), replace=False)] = np.nan
        return "na", f"{NAN_SHARE:.0%} of y_pred NaN for {NAN_HOURS} h", t_ms + NAN_HOURS * _HOUR_MS
    raise AssertionError(name)


def _small_segment(rng, cols, regions, days, start_ms) -> dict[str, np.ndarray]:
    """``cols`` plus region mena: few predictions, errors ``12 * t(3)`` (heavy tails)."""
    small = baseline(rng, ("mena",), SMALL_RATE_PER_HOUR, days, start_ms)
    small["region"][:] = len(regions)
    small["y_pred"] = small["y_true"] + SMALL_ERROR_SCALE * rng.standard_t(3, len(small["ms"]))
    merged = {k: np.concatenate([cols[k], small[k]]) for k in cols}
    order = np.argsort(merged["ms"], kind="stable")
    return {k: v[order] for k, v in merged.items()}


def _entry(sli, severity, segment, **window) -> dict:
    return {"sli": sli, "severity": severity, "slice": f"region={segment}", **window}


def _expectations(name, segment, t_ms, window_s) -> tuple[list, list]:
    """``(must_fire, may_fire)`` of scenario ``name`` (see the module docstring)."""
    w = window_s * 1000
    first = {"frontier_from": _iso(t_ms + w), "frontier_to": _iso(t_ms + 3 * w)}
    may_ticket = {"sli": "*", "severity": "ticket", "slice": f"region={segment}"}
    if name == "drift":
        must = [_entry(s, "page", segment, **first) for s in ("rmse", "error_rate")]
        return must, [
            may_ticket,
            {"sli": ["rmse", "error_rate"], "severity": "*", "slice": "overall"},
        ]
    if name in ("label-outage", "label-backfill"):
        may = [may_ticket, {"sli": "label_freshness", "severity": "*", "slice": "overall"}]
        return [_entry("label_freshness", "page", segment, **first)], may
    if name == "nan-burst":
        may = [may_ticket, {"sli": "nan_rate", "severity": "*", "slice": "overall"}]
        return [_entry("nan_rate", "page", segment, **first)], may
    return [], []


def generate_scenario(name: str, out_dir: str, seed: int = 7) -> dict:
    """Writes scenario ``name``'s records, ``slo.yaml`` and ``expected_alerts.json``.

    Args:
        name: one of :data:`SCENARIOS`.
        out_dir: directory to write into; created if missing, files overwritten.
        seed: seed (>= 0) of every random choice.

    Returns:
        The content of ``expected_alerts.json`` (plus ``predictions`` and ``labels``,
        the numbers of records written).

    Raises:
        ValueError: an unknown scenario or a negative seed.
    """
    if name not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}; got {name!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    start_ms = _ms(START)
    stationary = name == "stationary"
    signal = name in signals.SIGNAL_SCENARIOS or name in signals.COMBINED
    days, window_s = (STATIONARY_DAYS, 6 * 3600) if stationary else (DAYS, 3600)
    rate = RATE_PER_HOUR // 2 if stationary else RATE_PER_HOUR
    cols = baseline(rng, REGIONS, rate, days, start_ms, 0.0 if signal else DAILY_CYCLE)
    regions, t_ms, fault = REGIONS, start_ms + FAULT_START_HOURS * _HOUR_MS, None
    if name == "small-noisy-segment":
        cols, regions = _small_segment(rng, cols, REGIONS, days, start_ms), (*REGIONS, "mena")
        fault = {"segment": "mena", "what": f"{SMALL_RATE_PER_HOUR} predictions an hour, "
                 f"errors {SMALL_ERROR_SCALE:g} x t(3)", "start": START, "end": None}  # fmt: skip
    elif signal:
        end_ms = start_ms + days * 24 * _HOUR_MS
        cols = signals.add_features(seed, cols, regions)
        cols, segment, what, end_ms = signals.apply_fault(name, rng, cols, regions, t_ms, end_ms)
        end = end_ms and _iso(end_ms)
        fault = {"segment": segment, "what": what, "start": _iso(t_ms), "end": end}
        fault = fault if segment else None
    elif not stationary:
        segment, what, end_ms = _fault(name, rng, cols, regions, t_ms)
        fault = {"segment": segment, "what": what, "start": _iso(t_ms), "end": _iso(end_ms)}
    if signal:
        must, may = signals.expectations(name, _iso, t_ms, window_s)
    else:
        must, may = _expectations(name, fault and fault["segment"], t_ms, window_s)
    expected = {
        "scenario": name,
        "seed": seed,
        "fault": fault,
        "window_s": window_s,
        "run_args": [
            *(a for k in SLICES for a in ("--slice", k)),
            "--window",
            f"{window_s // 3600}h",
        ],
        "must_fire": must,
        "may_fire": may,
        "must_not_fire": [{"sli": "*", "severity": "*", "slice": "*"}],
        "must_not_flap": stationary or name == "signals-stationary",
    }
    os.makedirs(out_dir, exist_ok=True)
    n_labels = _write_records(out_dir, name, cols, regions)
    with open(os.path.join(out_dir, "slo.yaml"), "w", encoding="utf-8") as f:
        f.write(SIX_HOURLY_SLO if stationary else SIGNALS_SLO if signal else HOURLY_SLO)
    with open(os.path.join(out_dir, "expected_alerts.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    return expected | {"predictions": len(cols["ms"]), "labels": n_labels}


def _rfc3339(ms: np.ndarray) -> pa.Array:
    return pa.array(np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms", timezone="UTC"))


def _write_records(out_dir, name, cols, regions) -> int:
    """Writes predictions (event-time order) and sent labels (label-time order)."""
    n = len(cols["ms"])
    ids = concat(f"{name}-", pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), 7, "0"))
    segments = pa.array([f'{{"region": "{r}"}}' for r in regions]).take(cols["region"])
    features = ""  # the signal scenarios' (scenarios_signals.FEATURES), after the segments
    if "price" in cols:
        features = concat(
            ', "features": {"price": ', json_floats(np.round(cols["price"], 2)),
            ', "tenure_days": ', json_floats(np.round(cols["tenure_days"], 1)), "}",
        )  # fmt: skip
    predictions = concat(
        '{"prediction_id": "', ids, '", "event_time": "', _rfc3339(cols["ms"]),
        '", "y_pred": ', json_floats(np.round(cols["y_pred"], 2)),
        ', "model_version": "v1", "segments": ', segments, features, ', "weight": 1.0}\n',
    )  # fmt: skip
    sent = np.flatnonzero(cols["sent"])
    label_ms = cols["ms"][sent] + cols["lag_ms"][sent]
    rank = np.argsort(label_ms, kind="stable")
    order = sent[rank]
    labels = concat(
        '{"prediction_id": "', ids.take(order), '", "y_true": ',
        json_floats(np.round(cols["y_true"][order], 2)), ', "label_time": "',
        _rfc3339(label_ms[rank]), '"}\n',
    )  # fmt: skip
    write_jsonl(os.path.join(out_dir, "predictions.jsonl"), predictions, [], None)
    write_jsonl(os.path.join(out_dir, "labels.jsonl"), labels, [], None)
    return len(sent)
