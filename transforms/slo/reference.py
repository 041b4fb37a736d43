"""The reference of a drift SLO (``reference:``), and the checks of the drift keys.

Three kinds (``docs/slo.md``, "Drift"):

* ``{from: T1, to: T2}``: the slice's own windows inside ``[T1, T2)`` (UTC), merged;
  windows that start at or after ``T2`` are judged against it.
* ``{trailing: 7d}``: for each judged window, the slice's windows that end in the span
  of that length before the judged window starts, merged.
* ``{file: PATH}``: a JSON Lines or Parquet file of values (``y_pred``, ``y_true``
  columns; training or validation data), read once when the SLO file is loaded; a
  relative path is relative to the SLO file's folder. Its sketches are held in the SLO
  as bytes (:meth:`~msewatch.transforms.metrics.sketch.ValueSketch.to_bytes`).

This module knows nothing of the SLO dataclasses (``spec.py`` calls
:func:`drift_problem`); errors are ``(key, what)`` pairs or ``ValueError``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from msewatch.transforms.durations import format_duration
from msewatch.transforms.metrics.sketch import ValueSketch
from msewatch.transforms.shown import shown
from msewatch.transforms.slo.drift import STATISTICS

DRIFT_SLIS = ("prediction_drift", "label_drift", "feature_drift")
# sli -> the metrics column holding the sketch it compares (feature_drift: its feature's)
SKETCH_COLUMN = {
    "prediction_drift": "y_pred_sketch",
    "label_drift": "y_true_sketch",
    "feature_drift": "feature_sketch",
}
# sli -> the column of a reference file it reads
FILE_COLUMN = {"prediction_drift": "y_pred", "label_drift": "y_true"}
KINDS = ("range", "trailing", "file")


@dataclasses.dataclass(frozen=True)
class Reference:
    """A drift reference: ``kind`` and its values (times UTC epoch ms, spans seconds).

    Attributes:
        kind: ``range``, ``trailing`` or ``file``.
        from_ms, to_ms: the range (``range``).
        trailing_s: the span before the judged window (``trailing``).
        path: the file as written in the SLO file (``file``).
        sketches: ``((column, sketch bytes), ...)`` read from the file (``file``).
    """

    kind: str
    from_ms: int | None = None
    to_ms: int | None = None
    trailing_s: int | None = None
    path: str | None = None
    sketches: tuple[tuple[str, bytes], ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {shown(self.kind)}")
        if self.kind == "range" and not (
            isinstance(self.from_ms, int) and isinstance(self.to_ms, int)
        ):
            raise ValueError("a range reference needs from and to")
        if self.kind == "range" and self.from_ms >= self.to_ms:
            raise ValueError("to must be later than from")
        if self.kind == "trailing" and not (
            isinstance(self.trailing_s, int) and self.trailing_s > 0
        ):
            raise ValueError("trailing must be a duration of at least 1s, e.g. 7d")

    def sketch(self, column: str) -> ValueSketch | None:
        """The file's sketch of ``column`` (``y_pred``, ``y_true``), None if absent."""
        for name, blob in self.sketches:
            if name == column:
                return ValueSketch.from_bytes(blob)
        return None

    def text(self) -> str:
        """For a person: ``trailing 7d``, ``file ref.parquet``, ``2026-11-01..2026-11-08``."""
        if self.kind == "trailing":
            return f"trailing {format_duration(self.trailing_s)}"
        if self.kind == "file":
            return f"file {self.path}"
        day = lambda ms: np.datetime64(ms, "ms").astype("datetime64[m]")  # noqa: E731
        return f"{day(self.from_ms)}Z..{day(self.to_ms)}Z"


def drift_problem(slo) -> tuple[str, str] | None:
    """What is wrong with the drift keys of ``slo`` (an ``Slo``), as ``(key, what)``."""
    drift = slo.sli in DRIFT_SLIS
    for key in ("reference", "statistic", "feature"):
        if not drift and getattr(slo, key) is not None:
            return key, f"applies only to sli: {', '.join(DRIFT_SLIS)}"
    if not drift:
        return None
    if not isinstance(slo.reference, Reference):
        return "reference", "is required, e.g. {trailing: 7d}, {from: T1, to: T2} or {file: PATH}"
    if slo.statistic not in STATISTICS:
        return "statistic", f"must be one of {', '.join(STATISTICS)}; got {shown(slo.statistic)}"
    if slo.statistic == "js" and slo.threshold > 1:
        return "threshold", f"for statistic js is a distance in [0, 1]; got {shown(slo.threshold)}"
    if (slo.sli == "feature_drift") != (slo.feature is not None):
        what = "is required for sli: feature_drift" if slo.feature is None else None
        return "feature", what or "applies only to sli: feature_drift"
    if slo.feature is not None and not (isinstance(slo.feature, str) and slo.feature):
        return "feature", f"must be a feature name; got {shown(slo.feature)}"
    if slo.reference.kind == "file" and slo.sli == "feature_drift":
        return "reference.file", "feature_drift takes {from, to} or {trailing} references"
    column = FILE_COLUMN.get(slo.sli)
    if slo.reference.kind == "file" and slo.reference.sketch(column) is None:
        return "reference.file", f"{slo.reference.path} has no finite {column} values"
    return None


def _read_table(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pq.read_table(path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return pa_json.read_json(path)
    raise ValueError("must be a .jsonl or .parquet file")


def read_reference_file(written: str, folder: Path) -> Reference:
    """The ``file`` reference ``written`` in the SLO file, relative to its ``folder``.

    Every ``y_pred`` and ``y_true`` column there is sketched (finite values only).

    Raises:
        ValueError: the file is missing or unreadable, or has neither column; the
            message names the path (one line).
    """
    if not isinstance(written, str) or not written:
        raise ValueError(f"must be a path to a .jsonl or .parquet file; got {shown(written)}")
    path = Path(written) if Path(written).is_absolute() else folder / written
    try:
        table = _read_table(path)
    except (OSError, pa.ArrowException) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot read {path}: {first}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    sketches = []
    for column in ("y_pred", "y_true"):
        if column in table.column_names:
            try:
                values = table.column(column).cast(pa.float64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowException, ValueError):
                raise ValueError(f"{path}: column {column} is not numeric") from None
            sketch = ValueSketch.from_values(values[np.isfinite(values)])
            if sketch.count:
                sketches.append((column, sketch.to_bytes()))
    if not sketches:
        raise ValueError(f"{path} has no finite y_pred or y_true values")
    return Reference("file", path=written, sketches=tuple(sketches))
