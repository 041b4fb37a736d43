"""The pandas reference: the same error metrics as msewatch, from the same JSON Lines.

What a data scientist would write to check the numbers by hand, and the speed bar of
docs/performance.md: read both files with
``pandas.read_json(lines=True)``, keep the first prediction per (``prediction_id``,
``model_version``) and the first label per ``prediction_id``, merge, drop labels whose
lag exceeds the TTL, group by (window, slice) and average.

Semantics (those of msewatch's bounded run, see the README):

* Times are UTC epoch milliseconds; ``event_time`` / ``label_time`` may be epoch ms
  numbers or RFC 3339 strings with any offset, mixed in one file.
* First wins: the earliest ``event_time`` (``label_time`` for labels), ties broken by
  line order. A prediction is a (``prediction_id``, ``model_version``) pair (a missing
  version is ``unknown``): another version's prediction of an id (shadow traffic) is
  a prediction of its own.
* A prediction is joined when its id's first label has ``lag = label_time - event_time
  <= label_ttl`` (negative lags join), so one label scores every version's prediction
  of its id; otherwise it is expired. Labels without a
  prediction are orphans and are ignored.
* Windows: fixed, epoch-aligned, by the prediction's ``event_time``.
* Slices: ``overall`` and ``<key>=<value>`` per ``--slice`` key (a missing attribute is
  ``unknown``).
* Per (window, slice): ``predictions``, ``labeled``; ``scored`` pairs (labeled, both
  values finite, squared error finite) give ``sum_w``, ``sum_se`` (Σw·e²) and
  ``sum_ae`` (Σw·|e|); ``mse = sum_se / sum_w``, ``mae = sum_ae / sum_w``,
  ``rmse = sqrt(mse)``; NaN when nothing is scored.

Usage::

    python benchmarks/pandas_ref.py --predictions P.jsonl --labels L.jsonl \
        --output metrics.parquet [--window-seconds 3600] [--label-ttl-ms 604800000] \
        [--slice region]

Writes one Parquet file with columns ``window_start_ms, slice, predictions, labeled,
scored, sum_w, sum_se, sum_ae, mse, mae, rmse``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

UNKNOWN = "unknown"
_SUMS = ["predictions", "labeled", "scored", "sum_w", "sum_se", "sum_ae"]


def to_epoch_ms(values: pd.Series) -> np.ndarray:
    """Epoch milliseconds (UTC) of a column of epoch-ms numbers and RFC 3339 strings."""
    numbers = pd.to_numeric(values, errors="coerce")
    out = numbers.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    text = numbers.isna().to_numpy()
    if text.any():
        parsed = pd.to_datetime(values[text], format="ISO8601", utc=True)
        out[text] = parsed.dt.as_unit("ms").astype("int64").to_numpy()
    return out.astype(np.int64)


def first_wins(frame: pd.DataFrame, time_column: str, key=("prediction_id",)) -> pd.DataFrame:
    """The first row per ``key``: earliest time, ties broken by line order."""
    ordered = frame.sort_values(time_column, kind="stable")
    return ordered.drop_duplicates(list(key), keep="first")


def read_json_lines(path: str) -> pd.DataFrame:
    """The JSON objects of a JSON Lines file. ``pandas.read_json`` fails on the whole file
    at one malformed line (the default sample has some, which msewatch dead-letters):
    then the file is read again line by line, keeping the lines that are JSON objects."""
    try:
        return pd.read_json(path, lines=True, dtype=False)
    except ValueError:
        pass
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                rows.append(value)
    return pd.DataFrame.from_records(rows)


def read_predictions(path: str, slice_keys: list[str]) -> pd.DataFrame:
    """Predictions with ``event_ms``, ``y_pred``, ``model_version``, ``weight`` and one
    column per slice key."""
    raw = read_json_lines(path)
    version = raw["model_version"] if "model_version" in raw else pd.Series(None, raw.index)
    frame = pd.DataFrame(
        {
            "prediction_id": raw["prediction_id"].astype(str),
            "event_ms": to_epoch_ms(raw["event_time"]),
            "y_pred": pd.to_numeric(raw["y_pred"], errors="coerce"),
            "model_version": version.fillna(UNKNOWN).astype(str),
        }
    )
    weight = raw["weight"] if "weight" in raw else pd.Series(1.0, index=raw.index)
    frame["weight"] = pd.to_numeric(weight, errors="coerce").fillna(1.0)
    segments = raw["segments"] if "segments" in raw else pd.Series(None, index=raw.index)
    for key in slice_keys:
        frame[key] = segments.str.get(key).fillna(UNKNOWN).astype(str)
    return frame


def read_labels(path: str) -> pd.DataFrame:
    """Labels with ``label_ms`` and ``y_true``."""
    raw = read_json_lines(path)
    return pd.DataFrame(
        {
            "prediction_id": raw["prediction_id"].astype(str),
            "label_ms": to_epoch_ms(raw["label_time"]),
            "y_true": pd.to_numeric(raw["y_true"], errors="coerce"),
        }
    )


def compute(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    window_seconds: int,
    label_ttl_ms: int,
    slice_keys: list[str],
) -> pd.DataFrame:
    """Per (window, slice) counts, sums and metrics (see the module docstring).

    Args:
        predictions: as returned by :func:`read_predictions`.
        labels: as returned by :func:`read_labels`.
        window_seconds: fixed window length.
        label_ttl_ms: longest label lag that still joins.
        slice_keys: segment keys to slice by, besides ``overall``.

    Returns:
        One row per window and slice, sorted by both.
    """
    preds = first_wins(predictions, "event_ms", ("prediction_id", "model_version"))
    labs = first_wins(labels, "label_ms")[["prediction_id", "label_ms", "y_true"]]
    pairs = preds.merge(labs, on="prediction_id", how="left")
    lag = pairs["label_ms"] - pairs["event_ms"]
    labeled = (pairs["label_ms"].notna() & (lag <= label_ttl_ms)).to_numpy()
    y_pred, y_true = pairs["y_pred"].to_numpy(), pairs["y_true"].to_numpy()
    with np.errstate(over="ignore", invalid="ignore"):
        error = y_pred - y_true
        squared = error * error
    scored = labeled & np.isfinite(y_pred) & np.isfinite(y_true) & np.isfinite(squared)
    weight = np.where(scored, pairs["weight"].to_numpy(), 0.0)
    window_ms = window_seconds * 1000
    columns = {
        "window_start_ms": pairs["event_ms"].to_numpy() // window_ms * window_ms,
        "predictions": np.ones(len(pairs), np.int64),
        "labeled": labeled.astype(np.int64),
        "scored": scored.astype(np.int64),
        "sum_w": weight,
        "sum_se": np.where(scored, weight * squared, 0.0),
        "sum_ae": np.where(scored, weight * np.abs(error), 0.0),
    }
    base = pd.DataFrame(columns)
    parts = [base.groupby("window_start_ms", as_index=False)[_SUMS].sum().assign(slice="overall")]
    for key in slice_keys:
        grouped = base.assign(slice=key + "=" + pairs[key].to_numpy())
        parts.append(grouped.groupby(["window_start_ms", "slice"], as_index=False)[_SUMS].sum())
    rows = pd.concat(parts, ignore_index=True)
    has_weight = rows["sum_w"] > 0
    rows["mse"] = (rows["sum_se"] / rows["sum_w"]).where(has_weight)
    rows["mae"] = (rows["sum_ae"] / rows["sum_w"]).where(has_weight)
    rows["rmse"] = np.sqrt(rows["mse"])
    order = ["window_start_ms", "slice", *_SUMS, "mse", "mae", "rmse"]
    return rows[order].sort_values(["window_start_ms", "slice"], ignore_index=True)


def main(argv=None) -> int:
    """Reads, computes and writes the reference metrics (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", required=True, help="predictions JSON Lines file")
    parser.add_argument("--labels", required=True, help="labels JSON Lines file")
    parser.add_argument("--output", required=True, help="Parquet file to write")
    parser.add_argument("--window-seconds", type=int, default=3600)
    parser.add_argument("--label-ttl-ms", type=int, default=7 * 86_400_000)
    parser.add_argument("--slice", action="append", default=[], help="segment key (repeatable)")
    args = parser.parse_args(argv)
    rows = compute(
        read_predictions(args.predictions, args.slice),
        read_labels(args.labels),
        args.window_seconds,
        args.label_ttl_ms,
        args.slice,
    )
    rows.to_parquet(args.output, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
