"""Reads each peer's output into one canonical frame and checks that the peers agree.

Canonical frame: one row per (``window_start_ms``, ``slice``) for the ``overall`` slice
and the single-key slices of ``slice_key`` (``region=eu``), with whichever of
``predictions, labeled, scored, mse, mae, rmse`` the peer computes. For msewatch the
row is the latest pane (highest ``pane_index``) of each window and slice of the
``metrics`` table, read with DuckDB.

Agreement: the same keys, counts equal, floats within ``RTOL`` relative difference
(NaN equals NaN). The textbook peer only emits windows with a scored pair, so it is
compared on the reference rows whose ``scored`` is positive.
"""

from __future__ import annotations

import glob
import math
import os

import duckdb
import numpy as np
import pandas as pd

RTOL = 1e-9
KEYS = ["window_start_ms", "slice"]
COUNTS = ["predictions", "labeled", "scored"]
FLOATS = ["mse", "mae", "rmse"]

_MSEWATCH_SQL = """
SELECT epoch_ms(window_start) AS window_start_ms, slice, predictions, labeled, scored,
       mse, mae, rmse
FROM (
  SELECT *, row_number() OVER (
      PARTITION BY window_start, slice ORDER BY pane_index DESC) AS rn
  FROM read_parquet(?, hive_partitioning = true, union_by_name = true)
)
WHERE rn = 1 AND (slice = 'overall' OR (slice LIKE ? AND slice NOT LIKE '%,%'))
"""


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({"window_start_ms": "int64", "slice": "str"})
    return frame.sort_values(KEYS, ignore_index=True)


def read_msewatch(output_dir: str, slice_key: str) -> pd.DataFrame:
    """The latest pane per window and slice of msewatch's ``metrics`` table."""
    path = os.path.join(output_dir, "metrics", "*", "*.parquet")
    if not glob.glob(path):
        raise AssertionError(f"msewatch wrote no metrics under {output_dir}")
    with duckdb.connect() as con:
        frame = con.execute(_MSEWATCH_SQL, [path, f"{slice_key}=%"]).df()
    return _canonical(frame)


def read_parquet_rows(path: str) -> pd.DataFrame:
    """Rows written by ``pandas_ref.py`` (already canonical)."""
    return _canonical(pd.read_parquet(path))


def read_textbook(output_dir: str) -> pd.DataFrame:
    """Rows written by ``textbook.py`` (JSON Lines shards ``metrics-*``)."""
    shards = sorted(glob.glob(os.path.join(output_dir, "metrics-*")))
    frames = [pd.read_json(s, lines=True, dtype=False) for s in shards if os.path.getsize(s)]
    if not frames:
        raise AssertionError(f"the textbook pipeline wrote no rows under {output_dir}")
    return _canonical(pd.concat(frames, ignore_index=True))


def _rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), np.finfo(np.float64).tiny)
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b) / scale
    diff = np.where(both_nan, 0.0, diff)
    return np.where(np.isnan(diff) | np.isinf(diff), np.inf, diff)


def compare(reference: pd.DataFrame, peer: pd.DataFrame, only_scored: bool = False) -> dict:
    """Compares a peer's canonical rows with the reference's.

    Args:
        reference: canonical rows of the reference (pandas).
        peer: canonical rows of the peer.
        only_scored: compare on the reference rows with ``scored > 0`` only (for a
            peer that emits a row only when a pair was scored).

    Returns:
        ``{"ok", "rows", "columns", "max_rel_diff", "problems"}``; ``problems`` lists
        at most 10 readable mismatches.
    """
    if only_scored:
        reference = reference[reference["scored"] > 0]
    columns = [c for c in COUNTS + FLOATS if c in reference and c in peer]
    merged = reference.merge(peer, on=KEYS, how="outer", suffixes=("_ref", "_peer"), indicator=True)
    problems = []
    for side, label in (("left_only", "only in the reference"), ("right_only", "only in peer")):
        for _, row in merged[merged["_merge"] == side].head(5).iterrows():
            problems.append(f"{label}: window {row['window_start_ms']} slice {row['slice']}")
    both = merged[merged["_merge"] == "both"]
    worst = 0.0
    for column in columns:
        ref, got = both[f"{column}_ref"].to_numpy(), both[f"{column}_peer"].to_numpy()
        diff = _rel_diff(ref, got)
        bad = diff > (0.0 if column in COUNTS else RTOL)
        worst = max(worst, float(diff.max(initial=0.0)))
        for i in np.flatnonzero(bad)[:5]:
            row = both.iloc[i]
            problems.append(
                f"{column} at window {row['window_start_ms']} slice {row['slice']}: "
                f"reference {ref[i]!r}, peer {got[i]!r}"
            )
    n_missing = int((merged["_merge"] != "both").sum())
    return {
        "ok": not problems,
        "rows": int(len(both)),
        "missing_rows": n_missing,
        "columns": columns,
        "max_rel_diff": worst if math.isfinite(worst) else "inf",
        "problems": problems[:10],
    }
