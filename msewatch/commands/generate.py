"""Realistic sample data: a demand-forecast model's predictions and their late labels.

:func:`generate` writes ``predictions.jsonl`` and ``labels.jsonl`` (optionally the same
valid records, in file order, as ``predictions.parquet`` / ``labels.parquet`` with
``segments`` a struct and times ``timestamp[ms, UTC]``) and returns :class:`SampleStats`,
the ground truth a pipeline run is checked against. Same arguments, same bytes. UTC.

* Demand per (region, sku_category): a level times a daily cycle times log-normal noise;
  some labels are 0 (no sales), with a chance proportional to 1 / expected demand², so
  mostly on slow movers. A few NaN predictions (Python json's ``NaN`` token); weights
  mostly 1.0.
* Two model versions: v1 serves the traffic, v2 is a canary on ``V2_SHARE`` of it, as
  good as v1 except in ``CANARY_WORSE_REGION``, where its noise is ``CANARY_NOISE_FACTOR``
  times v1's. Shadow traffic: for ``SHADOW_SHARE`` of v1's predictions v2 also predicts
  the same request, a separate line with the same prediction_id, event time (as
  written), segments and weight. The join de-duplicates per (prediction_id,
  model_version), so a shadow prediction is its own prediction: one label scores both
  (``joined`` once as a label), and a comparison of v2 with v1 can run paired.
* Drift: from ``drift_start_ms`` (mid-range) demand in ``DRIFT_REGION`` jumps by
  ``DRIFT_FACTOR`` and neither model follows: clearly the worst region by RMSE.
* Labels: some never arrive; the rest after a log-normal lag (median hours, tail of days)
  under ``LABEL_TTL_SECONDS``, except ``PAST_TTL_RATE`` past it and a handful seconds
  *before* their prediction (clock skew); a few orphans have no prediction at all.
* Duplicates repeat a record (a prediction: an (id, version) pair, shadow ones too) on a
  later line at the same or a later time, half with another value, so "first wins" keeps
  the original in arrival and bounded order alike.
* Times are epoch ms (a JSON int) or RFC 3339 with ``Z`` or an offset (same instant),
  with or without milliseconds, mixed in a file. Without milliseconds the written time
  is the truth (originals floored, duplicates ceiled); counts use written times.
  Predictions are ordered by event_time, labels by label_time, as logs are.
* Malformed lines: ``lines // 1000`` per file (none under 1000 lines), at most two of
  each kind of ``PREDICTION_DEFECTS`` / ``LABEL_DEFECTS`` (taken in order), at random
  positions, from their own random stream: valid records do not depend on them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from msewatch.commands.jsonl_text import concat, json_floats, json_times, string_rows, write_jsonl

FORMATS = ("jsonl", "parquet")
LABEL_TTL_SECONDS = 7 * 86_400
REGIONS = ("na", "eu", "apac", "latam")
REGION_SHARE = (0.35, 0.30, 0.20, 0.15)
REGION_LEVEL = (120.0, 100.0, 80.0, 60.0)
REGION_UTC_OFFSET_HOURS = (-5, 1, 8, -3)
CATEGORIES = ("grocery", "electronics", "apparel", "home", "toys")
CATEGORY_SHARE = (0.35, 0.15, 0.20, 0.20, 0.10)
CATEGORY_FACTOR = (1.6, 0.6, 0.9, 1.0, 0.5)
MODEL_VERSIONS = ("v1", "v2")
V2_SHARE = 0.4  # of the requests, served by the canary v2 (the rest by v1)
MODEL_BIAS = (0.04, 0.04)  # relative bias of y_pred, per model version
MODEL_NOISE_SD = (0.14, 0.14)  # relative noise sd of y_pred, per model version
CANARY_WORSE_REGION = "eu"  # where v2 is worse than v1
CANARY_NOISE_FACTOR = 1.6  # v2's noise sd there, relative to its own elsewhere
SHADOW_SHARE = 0.25  # of v1's predictions, also predicted by v2 (same id): shadow traffic
TARGET_NOISE_SD = 0.10  # sd of log(y_true / expected demand)
DRIFT_REGION = "apac"
DRIFT_FACTOR = 1.8
NAN_PREDICTION_RATE = 0.003
DUPLICATE_RATE = 0.005
NEVER_SENT_RATE = 0.07
PAST_TTL_RATE = 0.01  # of the labels sent
ORPHAN_RATE = 0.001
ZERO_LABEL_RATE = 0.002  # of the labels sent
SKEWED_LABELS_MAX = 10  # "a handful" of labels slightly before their prediction
LAG_MEDIAN_SECONDS = 3 * 3600
LAG_LOG_SD = 1.2
PREDICTION_DEFECTS = ("not_json", "missing_field", "empty_id", "bad_timestamp")
PREDICTION_DEFECTS += ("string_y_pred", "negative_weight")
LABEL_DEFECTS = ("not_json", "missing_field", "empty_id", "bad_timestamp", "string_y_true")
_OFFSET_P = (0.55, 0.15, 0.15, 0.10, 0.05)  # of each jsonl_text.OFFSET_TEXT entry
_EPOCH_SHARE = 0.35
_MS_PER_DAY = 86_400_000
_V2 = MODEL_VERSIONS.index("v2")
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UTC_MS = pa.timestamp("ms", tz="UTC")


@dataclasses.dataclass(frozen=True)
class SampleStats:
    """What the generator decided: the ground truth a pipeline run is checked against.

    Times are epoch ms UTC. "Distinct" means the first occurrence of a (prediction_id,
    model_version) pair in the predictions file and of a prediction_id in the labels
    file; "malformed kinds" list each malformed line's kind in file order. Each field's
    meaning is on its line.
    """

    seed: int
    start_ms: int  # start of the event-time range
    end_ms: int  # end (exclusive) of the event-time range
    predictions: int  # distinct valid served predictions (the ``predictions`` argument)
    shadow_predictions: int  # distinct v2 predictions of ids v1 served (same prediction_id)
    shadow_joined: int  # shadow predictions whose id's label comes within the TTL
    duplicate_predictions: int  # extra valid lines repeating a (prediction_id, model_version)
    nan_predictions: int  # distinct predictions (shadow ones too) with y_pred NaN
    labels: int  # distinct valid labels, orphans included
    duplicate_labels: int  # extra valid label lines repeating a prediction_id
    labels_never_sent: int  # served predictions whose id never gets a label
    labels_past_ttl: int  # distinct labels with lag > label_ttl_seconds: late_label
    orphan_labels: int  # distinct labels whose prediction is in no predictions file
    negative_lag_labels: int  # distinct labels with label_time < event_time (clock skew)
    zero_labels: int  # distinct labels with y_true == 0
    malformed_prediction_kinds: tuple[str, ...]  # of predictions.jsonl, see PREDICTION_DEFECTS
    malformed_label_kinds: tuple[str, ...]  # of labels.jsonl, see LABEL_DEFECTS
    drift_segment: str  # the drifted slice, canonical form: region=apac
    drift_start_ms: int  # when the drift starts
    label_ttl_seconds: int = LABEL_TTL_SECONDS  # the TTL labels_past_ttl refers to

    @property
    def malformed_predictions(self) -> int:
        """Malformed lines in predictions.jsonl."""
        return len(self.malformed_prediction_kinds)

    @property
    def malformed_labels(self) -> int:
        """Malformed lines in labels.jsonl."""
        return len(self.malformed_label_kinds)

    @property
    def labels_joined(self) -> int:
        """Labels a bounded run with the default label_ttl counts ``joined`` (each once)."""
        return self.labels - self.orphan_labels - self.labels_past_ttl

    @property
    def joined(self) -> int:
        """Predictions such a run joins with their id's label: the served ones of the
        joined labels plus the shadow ones of the same ids."""
        return self.labels_joined + self.shadow_joined

    @property
    def expired(self) -> int:
        """Predictions such a run expires: never labeled, or labeled past the TTL."""
        return self.predictions + self.shadow_predictions - self.joined

    def to_dict(self) -> dict:
        """The fields and the derived counts, JSON-serializable."""
        derived = ("malformed_predictions", "malformed_labels", "labels_joined")
        derived += ("joined", "expired")
        return dataclasses.asdict(self) | {name: getattr(self, name) for name in derived}


def generate(
    out_dir: str,
    predictions: int = 20000,
    seed: int = 7,
    start: str = "2026-11-01T00:00:00Z",
    days: float = 3.0,
    malformed: bool = True,
    formats: tuple[str, ...] = ("jsonl",),
) -> SampleStats:
    """Writes a realistic predictions/labels sample into ``out_dir``.

    Args:
        out_dir: Directory to write into; created if missing, files overwritten.
        predictions: Distinct predictions to make, >= 1.
        seed: Seed (>= 0) of every random choice.
        start: Start of the event-time range, RFC 3339 with ``Z`` or an offset.
        days: Length of the event-time range in days, > 0.
        malformed: Whether to add malformed lines to the JSON Lines files.
        formats: Subset of ``FORMATS``. JSON Lines are always written (they carry the
            malformed lines); ``parquet`` adds ``*.parquet`` with the valid records.

    Returns:
        The counts the generator decided.

    Raises:
        ValueError: If an argument is out of range or ``start`` is not RFC 3339.
    """
    for name, value, least in (("predictions", predictions, 1), ("seed", seed, 0)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if not days > 0:
        raise ValueError(f"days must be > 0, got {days!r}")
    if isinstance(formats, str) or set(formats) - set(FORMATS):
        raise ValueError(f"formats must be a subset of {FORMATS}, got {formats!r}")
    try:
        when = dt.datetime.fromisoformat(start)
    except (TypeError, ValueError):
        when = None
    if when is None or when.tzinfo is None:
        raise ValueError(f"start must be RFC 3339 with Z or an offset, got {start!r}")
    start_ms = (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    span_ms = max(1, round(days * _MS_PER_DAY))
    data_rng, defect_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    salt = int(data_rng.integers(0, 2**63))
    drift_start_ms = start_ms + int(span_ms * data_rng.uniform(0.45, 0.6)) // 60_000 * 60_000

    p, expected = _predictions(data_rng, predictions, start_ms, span_ms, drift_start_ms)
    lab, counts = _labels(data_rng, p, expected, predictions)
    p = _with_duplicates(data_rng, p, "y_pred")
    lab = _with_duplicates(data_rng, lab, "y_true")
    p_table, l_table = _tables(p, lab, salt)

    os.makedirs(out_dir, exist_ok=True)
    kinds: dict[str, tuple[str, ...]] = {}
    p_lines, l_lines = _json_lines(p, lab, p_table, l_table)
    files = (("predictions", "y_pred", p_lines, PREDICTION_DEFECTS),)
    files += (("labels", "y_true", l_lines, LABEL_DEFECTS),)
    for index, (name, value, lines, defects) in enumerate(files, start=1):
        count = min(2 * len(defects), len(lines) // 1000) if malformed else 0
        kinds[name] = (defects * 2)[:count]
        ids = _ids(np.arange(count) + (index << 40), salt).to_pylist()
        times = p["ms"][defect_rng.integers(0, len(p["ms"]), count)].tolist()
        bad = [_defect(k, value, i, t) for k, i, t in zip(kinds[name], ids, times, strict=True)]
        write_jsonl(os.path.join(out_dir, f"{name}.jsonl"), lines, bad, defect_rng)
    if "parquet" in formats:
        pq.write_table(p_table, os.path.join(out_dir, "predictions.parquet"))
        pq.write_table(l_table, os.path.join(out_dir, "labels.parquet"))

    first = ~lab["dup"]
    return SampleStats(
        seed=seed,
        start_ms=start_ms,
        end_ms=start_ms + span_ms,
        predictions=predictions,
        shadow_predictions=int((~p["dup"]).sum()) - predictions,
        duplicate_predictions=int(p["dup"].sum()),
        nan_predictions=int(np.isnan(p["y_pred"][~p["dup"]]).sum()),
        labels=int(first.sum()),
        duplicate_labels=int(lab["dup"].sum()),
        zero_labels=int((lab["y_true"][first] == 0).sum()),
        malformed_prediction_kinds=kinds["predictions"],
        malformed_label_kinds=kinds["labels"],
        drift_segment=f"region={DRIFT_REGION}",
        drift_start_ms=drift_start_ms,
        **counts,
    )


def _predictions(rng, n, start_ms, span_ms, drift_start_ms):
    """Distinct predictions, the shadow ones last (columns of numpy arrays), and each
    served prediction's expected y_true."""
    grid = np.linspace(0.0, span_ms, max(2, span_ms // 60_000 + 1))
    hour = ((start_ms + grid) / 3_600_000) % 24
    traffic = np.cumsum(1.0 + 0.5 * np.cos(2 * np.pi * (hour - 15) / 24))
    cdf = (traffic - traffic[0]) / max(traffic[-1] - traffic[0], 1e-12)
    ms = start_ms + np.interp(rng.random(n), cdf, grid).astype(np.int64)
    region = rng.choice(len(REGIONS), size=n, p=REGION_SHARE)
    cat = rng.choice(len(CATEGORIES), size=n, p=CATEGORY_SHARE)
    version = (rng.random(n) < V2_SHARE).astype(np.int8)
    local_hour = (ms / 3_600_000 + np.asarray(REGION_UTC_OFFSET_HOURS)[region]) % 24
    season = 1.0 + 0.35 * np.cos(2 * np.pi * (local_hour - 18) / 24)
    expected = np.asarray(REGION_LEVEL)[region] * np.asarray(CATEGORY_FACTOR)[cat] * season
    other = np.maximum(np.round(rng.lognormal(0, 0.7, n), 2), 0.05)
    weight = np.where(rng.random(n) < 0.85, 1.0, other)
    cols = {"pid": np.arange(n, dtype=np.int64), "version": version}
    cols |= {"region": region, "cat": cat, "weight": weight}
    cols = _encode_times(rng, cols, ms, ceil=False)
    served_by_v1 = np.flatnonzero(version == 0)
    shadow = np.sort(rng.choice(served_by_v1, round(SHADOW_SHARE * len(served_by_v1)), False))
    cols = {name: np.concatenate([col, col[shadow]]) for name, col in cols.items()}
    cols["version"][n:] = _V2  # the same request, time as written and weight; v2's forecast
    y_pred = _forecast(rng, cols["version"], cols["region"], np.append(expected, expected[shadow]))
    y_pred[rng.choice(len(y_pred), round(NAN_PREDICTION_RATE * len(y_pred)), False)] = np.nan
    drifted = (region == REGIONS.index(DRIFT_REGION)) & (ms >= drift_start_ms)
    return cols | {"y_pred": y_pred}, np.where(drifted, expected * DRIFT_FACTOR, expected)


def _forecast(rng, version, region, expected):
    """Each model version's y_pred for demand ``expected`` (neither follows the drift)."""
    sd = np.asarray(MODEL_NOISE_SD)[version]
    worse = (version == _V2) & (region == REGIONS.index(CANARY_WORSE_REGION))
    sd = np.where(worse, CANARY_NOISE_FACTOR * sd, sd)
    rel = np.asarray(MODEL_BIAS)[version] + sd * rng.normal(size=len(version))
    return np.round(np.maximum(expected * (1.0 + rel), 0.0), 2)


def _labels(rng, p, expected, n):
    """Distinct labels (orphans last) and the label counts of :class:`SampleStats`.

    Labels belong to the ``n`` served predictions (rows ``:n`` of ``p``); a shadow row
    (``n:``) shares its id's label."""
    n_never = round(NEVER_SENT_RATE * n)
    sent = np.sort(rng.permutation(n)[n_never:])
    k = len(sent)
    n_late = round(PAST_TTL_RATE * k)
    n_skew = min(SKEWED_LABELS_MAX, (k - n_late) // 500)
    kind = rng.permutation(np.repeat([1, 2, 0], [n_late, n_skew, k - n_late - n_skew]))
    ttl_ms = LABEL_TTL_SECONDS * 1000
    lag = rng.lognormal(np.log(LAG_MEDIAN_SECONDS * 1000), LAG_LOG_SD, k)
    lag = np.where(lag > 0.93 * ttl_ms, rng.uniform(2 * _MS_PER_DAY, 0.93 * ttl_ms, k), lag)
    lag = np.where(kind == 1, ttl_ms + 60_000 + rng.exponential(1.5 * _MS_PER_DAY, k), lag)
    lag = np.where(kind == 2, -rng.uniform(500, 30_000, k), lag)
    y_true = np.round(expected[sent] * rng.lognormal(0, TARGET_NOISE_SD, k), 2)
    slow = expected[sent] ** -2.0  # no sales where little is expected, rarely elsewhere
    y_true[rng.choice(k, round(ZERO_LABEL_RATE * k), replace=False, p=slow / slow.sum())] = 0.0

    n_orphan = round(ORPHAN_RATE * n)
    o_ms = p["ms"].min() + rng.uniform(0, np.ptp(p["ms"]) + 3_600_000, n_orphan)
    o_y = np.round(rng.uniform(5, 200, n_orphan), 2)
    cols = {"pid": np.concatenate([sent, n + np.arange(n_orphan)])}
    cols["y_true"] = np.concatenate([y_true, o_y])
    ms = np.concatenate([p["ms"][sent] + lag.astype(np.int64), o_ms.astype(np.int64)])
    lab = _encode_times(rng, cols, ms, ceil=False)
    # Lags as written differ by < 1 s from the drawn ones: no lag can equal the TTL.
    lab_lag = lab["ms"][:k] - p["ms"][sent]
    return lab, {
        "shadow_joined": int(np.isin(p["pid"][n:], sent[lab_lag <= ttl_ms]).sum()),
        "labels_never_sent": n_never,
        "labels_past_ttl": int((lab_lag > ttl_ms).sum()),
        "orphan_labels": n_orphan,
        "negative_lag_labels": int((lab_lag < 0).sum()),
    }


def _encode_times(rng, cols, ms, ceil):
    """``cols`` plus how each time is written and the time as written (``ms``)."""
    n = len(ms)
    epoch = rng.random(n) < _EPOCH_SHARE
    fraction = rng.random(n) < 0.5
    offset = rng.choice(len(_OFFSET_P), size=n, p=_OFFSET_P)
    seconds = -(-ms // 1000) if ceil else ms // 1000
    ms = np.where(~epoch & ~fraction, seconds * 1000, ms)
    return cols | {"ms": ms, "epoch": epoch, "fraction": fraction, "offset": offset}


def _with_duplicates(rng, cols, value):
    """``cols`` plus ``DUPLICATE_RATE`` repeats, flagged ``dup``, rows in time order."""
    n = len(cols["pid"])
    candidates = np.flatnonzero(~np.isnan(cols[value]))
    src = np.sort(rng.choice(candidates, round(DUPLICATE_RATE * n), replace=False))
    k = len(src)
    delay = np.where(rng.random(k) < 0.5, 0, rng.integers(1_000, 3_600_000, k))
    factor = np.where(rng.random(k) < 0.5, rng.lognormal(0, 0.05, k), 1.0)
    dup = {name: col[src] for name, col in cols.items() if name != "ms"}
    dup[value] = np.round(dup[value] * factor, 2)
    dup = _encode_times(rng, dup, cols["ms"][src] + delay, ceil=True)
    out = {name: np.concatenate([cols[name], dup[name]]) for name in cols}
    out["dup"] = np.arange(n + k) >= n
    order = np.lexsort((out["dup"], out["ms"]))  # an original precedes its repeats
    return {name: col[order] for name, col in out.items()}


def _ids(pid, salt):
    """16-hex-digit prediction ids: a bijective mix of the index, so ids never collide."""
    x = pid.astype(np.uint64) + np.uint64(salt)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    octets = (x ^ (x >> np.uint64(31))).astype(">u8").view(np.uint8).reshape(-1, 8)
    return string_rows([(_HEX[np.stack([octets >> 4, octets & 15], axis=2).reshape(-1, 16)], 16)])


def _tables(p, lab, salt):
    """The valid prediction and label records in file order, as written to Parquet."""
    regions, categories = pa.array(REGIONS).take(p["region"]), pa.array(CATEGORIES).take(p["cat"])
    segments = pa.StructArray.from_arrays([regions, categories], ["region", "sku_category"])
    versions = pa.array(MODEL_VERSIONS).take(p["version"])
    columns = [_ids(p["pid"], salt).cast(pa.string()), pa.array(p["ms"], _UTC_MS)]
    columns += [p["y_pred"], versions, segments, p["weight"]]
    names = ["prediction_id", "event_time", "y_pred", "model_version", "segments", "weight"]
    label_columns = [_ids(lab["pid"], salt).cast(pa.string()), lab["y_true"]]
    label_columns.append(pa.array(lab["ms"], _UTC_MS))
    return (
        pa.table(columns, names=names),
        pa.table(label_columns, names=["prediction_id", "y_true", "label_time"]),
    )


def _json_lines(p, lab, p_table, l_table):
    """One newline-terminated JSON object per prediction and per label, in file order."""
    seg = [f'{{"region": "{r}", "sku_category": "{c}"}}' for r in REGIONS for c in CATEGORIES]
    predictions = concat(
        '{"prediction_id": "', p_table["prediction_id"].combine_chunks(), '", "event_time": ',
        json_times(p), ', "y_pred": ', json_floats(p["y_pred"]), ', "model_version": "',
        p_table["model_version"].combine_chunks(), '", "segments": ',
        pa.array(seg).take(p["region"] * len(CATEGORIES) + p["cat"]), ', "weight": ',
        json_floats(p["weight"]), "}\n",
    )  # fmt: skip
    labels = concat(
        '{"prediction_id": "', l_table["prediction_id"].combine_chunks(), '", "y_true": ',
        json_floats(lab["y_true"]), ', "label_time": ', json_times(lab), "}\n",
    )  # fmt: skip
    return predictions, labels


def _defect(kind, value, prediction_id, ms):
    """A malformed line of ``kind``: a prediction if ``value`` is ``y_pred``, else a label."""
    time = "event_time" if value == "y_pred" else "label_time"
    rec = {"prediction_id": "" if kind == "empty_id" else prediction_id, time: ms, value: 42.5}
    if value == "y_pred":
        rec |= {"model_version": "v1", "segments": {"region": "eu", "sku_category": "home"}}
        rec["weight"] = -1.0 if kind == "negative_weight" else 1.0
    if kind == "missing_field":
        del rec[value]
    elif kind == "bad_timestamp":
        rec[time] = "2026-13-45T25:61:00Z"
    elif kind == f"string_{value}":
        rec[value] = "high"
    text = json.dumps(rec)
    return text[: len(text) // 2] if kind == "not_json" else text
