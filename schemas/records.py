"""Record shapes: the Arrow schemas every stage of msewatch moves, and the one
field list of each output table.

Records move through the pipeline as ``pyarrow.Table`` batches, never one Python
object per record. Times inside batches are integer epoch milliseconds in UTC
(``*_ms`` columns); output tables carry UTC timestamps.

Batch shapes (internal):

* ``PREDICTIONS``: one row per valid prediction. Segment attributes used by the
  configured slices are extra string columns named ``seg.<key>`` (see
  :func:`segment_column`); a missing attribute is the string ``"unknown"``. The values
  of the configured features (the record's ``features`` map) are float64 columns named
  ``feat.<name>`` (see :func:`~msewatch.schemas.features.feature_column`); a missing
  value is NaN.
* ``LABELS``: one row per valid label.
* ``EXAMPLES``: what the join emits: prediction arrivals and resolutions
  (labeled or expired), carrying the prediction's event time, model version and id;
  ARRIVED rows carry the ``feat.<name>`` values too (NaN in the other kinds: the join
  holds no features in its state).
* ``DEAD_LETTER``: one row per rejected record, with its raw payload.

Record types: :class:`RecordType` (``PREDICTION``, ``LABEL``) ties each kind of input
record to its batch schema, its time column and the output tag of its batches; every
reader, source and the replay look them up there (``RecordType.of(name)``). Upper-case
plural names (``PREDICTIONS``, ``LABELS``, ``DEAD_LETTER``) are schemas; tags are the
``tag`` strings and ``DEAD_LETTER_TAG``.

``position`` is the record's ingest position: ``(file_index << 40) | offset``
where offset is the byte offset of the line (JSON Lines, CSV) or the row number
(Parquet); for Pub/Sub it is the arrival sequence. It breaks ties between records
with the same time so that "first wins" is deterministic.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from msewatch.schemas.features import PREDICTION_TIME_FIELD, feature_column

UNKNOWN = "unknown"
SEGMENT_PREFIX = "seg."
POSITION_FILE_SHIFT = 40


def segment_column(key: str) -> str:
    """Name of the batch column holding segment attribute ``key``."""
    return SEGMENT_PREFIX + key


def make_position(file_index, offset):
    """Packs a file index and an offset (line byte offset or row number) into one int64."""
    return (file_index << POSITION_FILE_SHIFT) | offset


PREDICTIONS = pa.schema(
    [
        ("prediction_id", pa.string()),
        ("event_time_ms", pa.int64()),
        ("y_pred", pa.float64()),
        ("model_version", pa.string()),
        ("weight", pa.float64()),
        ("position", pa.int64()),
    ]
)

LABELS = pa.schema(
    [
        ("prediction_id", pa.string()),
        ("y_true", pa.float64()),
        ("label_time_ms", pa.int64()),
        ("position", pa.int64()),
    ]
)


class ExampleKind:
    """Values of ``EXAMPLES.kind``."""

    ARRIVED = 0  # a (first) prediction entered the join: counts toward `predictions`
    LABELED = 1  # a prediction was joined with its label
    EXPIRED = 2  # a prediction's label_ttl passed without a label


EXAMPLES = pa.schema(
    [
        ("kind", pa.int8()),
        ("event_time_ms", pa.int64()),
        ("y_pred", pa.float64()),
        ("y_true", pa.float64()),  # NaN unless kind == LABELED
        ("weight", pa.float64()),
        ("label_lag_s", pa.float64()),  # NaN unless kind == LABELED
        ("model_version", pa.string()),
        ("prediction_id", pa.string()),  # pairs versions' examples of one id (shadow)
    ]
)


def with_segments(schema: pa.Schema, segment_keys, features=()) -> pa.Schema:
    """``schema`` plus one string column per segment key, then one float64 column per
    feature, in the given order."""
    for key in segment_keys:
        schema = schema.append(pa.field(segment_column(key), pa.string()))
    for name in features:
        schema = schema.append(pa.field(feature_column(name), pa.float64()))
    return schema


DEAD_LETTER_TAG = "dead_letter"  # the output of a source holding ``DEAD_LETTER`` batches


@dataclasses.dataclass(frozen=True)
class RecordType:
    """One kind of input record: its name, batch schema and time column.

    Attributes:
        name: ``"prediction"`` or ``"label"``: what callers pass as ``record_type``, and
            the ``record_type`` column of dead letters and outcomes.
        tag: the output of a source (and the replay spool file) holding its batches.
        schema: Arrow schema of its valid batches, without segment columns.
        time_field: the input field holding its time (RFC 3339 or epoch ms).
        time_column: the batch column of that time (UTC epoch ms); its arrival time
            in a replay and the element timestamp of a Pub/Sub batch.
        value_field: the input field and batch column of its y value.
        has_segments: whether its batches carry ``seg.<key>`` columns.
    """

    name: str
    tag: str
    schema: pa.Schema
    time_field: str
    time_column: str
    value_field: str
    has_segments: bool

    def batch_schema(self, segment_keys=(), features=()) -> pa.Schema:
        """Schema of its batches: plus one ``seg.<key>`` column per key and one
        ``feat.<name>`` column per feature if it has segments (predictions)."""
        if not self.has_segments:
            return self.schema
        return with_segments(self.schema, segment_keys, features)

    @staticmethod
    def of(name: str) -> RecordType:
        """The record type called ``name``.

        Raises:
            ValueError: ``name`` is not one of :data:`RECORD_TYPES`.
        """
        for record_type in RECORD_TYPES:
            if record_type.name == name:
                return record_type
        names = ", ".join(t.name for t in RECORD_TYPES)
        raise ValueError(f"record_type must be one of {names}; got {name!r}")


PREDICTION = RecordType(
    "prediction", "predictions", PREDICTIONS, PREDICTION_TIME_FIELD, "event_time_ms", "y_pred", True
)
LABEL = RecordType("label", "labels", LABELS, "label_time", "label_time_ms", "y_true", False)
RECORD_TYPES: tuple[RecordType, ...] = (PREDICTION, LABEL)


@dataclasses.dataclass(frozen=True)
class Field:
    """One output column: the source of both the Parquet and BigQuery schemas.

    A column holding a list of records (:func:`record_list`) has ``repeated`` set and
    its record's fields in ``fields``: Arrow ``list<struct<...>>``, BigQuery
    ``REPEATED RECORD``.
    """

    name: str
    arrow_type: pa.DataType
    bq_type: str
    description: str
    nullable: bool = True
    repeated: bool = False
    fields: tuple[Field, ...] = ()


def record_list(name: str, description: str, fields: tuple[Field, ...]) -> Field:
    """A column holding a list of records with ``fields``, never null (empty instead).

    Arrow: ``list<struct<fields>>``; BigQuery: mode ``REPEATED``, type ``RECORD``
    with ``fields`` as sub-fields (BigQuery has no NULL arrays, hence never null).
    """
    struct = pa.struct([pa.field(f.name, f.arrow_type, nullable=f.nullable) for f in fields])
    return Field(name, pa.list_(struct), "RECORD", description, False, True, tuple(fields))


_TS = pa.timestamp("us", tz="UTC")

METRICS_FIELDS: tuple[Field, ...] = (
    Field("window_start", _TS, "TIMESTAMP", "Window start (inclusive), UTC.", False),
    Field("window_end", _TS, "TIMESTAMP", "Window end (exclusive), UTC.", False),
    Field("slice", pa.string(), "STRING", "`overall` or key=value pairs joined by ','.", False),
    Field("predictions", pa.int64(), "INT64", "Distinct predictions made in the window."),
    Field("labeled", pa.int64(), "INT64", "Predictions joined with a label so far."),
    Field("expired", pa.int64(), "INT64", "Predictions whose label_ttl passed unlabeled."),
    Field("scored", pa.int64(), "INT64", "Labeled pairs with finite inputs and squared error."),
    Field("label_coverage", pa.float64(), "FLOAT64", "labeled / predictions."),
    Field("mse", pa.float64(), "FLOAT64", "Weighted mean squared error over scored pairs."),
    Field("rmse", pa.float64(), "FLOAT64", "sqrt(mse)."),
    Field("mae", pa.float64(), "FLOAT64", "Weighted mean absolute error."),
    Field("mean_error", pa.float64(), "FLOAT64", "Weighted mean of y_pred - y_true (bias)."),
    Field("max_abs_error", pa.float64(), "FLOAT64", "Largest |y_pred - y_true|."),
    Field("r2", pa.float64(), "FLOAT64", "Weighted coefficient of determination."),
    Field("mape", pa.float64(), "FLOAT64", "Weighted mean |e / y_true|, y_true = 0 excluded."),
    Field("rmsle", pa.float64(), "FLOAT64", "Root mean squared log1p error, negatives excluded."),
    Field("huber", pa.float64(), "FLOAT64", "Weighted mean Huber loss."),
    Field("mse_ci_low", pa.float64(), "FLOAT64", "95% CI of mse, lower bound."),
    Field("mse_ci_high", pa.float64(), "FLOAT64", "95% CI of mse, upper bound."),
    Field("rmse_ci_low", pa.float64(), "FLOAT64", "95% CI of rmse, lower bound."),
    Field("rmse_ci_high", pa.float64(), "FLOAT64", "95% CI of rmse, upper bound."),
    Field("label_lag_p50_s", pa.float64(), "FLOAT64", "Median label lag, seconds."),
    Field("label_lag_p90_s", pa.float64(), "FLOAT64", "90th percentile label lag, seconds."),
    Field("label_lag_p99_s", pa.float64(), "FLOAT64", "99th percentile label lag, seconds."),
    Field("label_lag_max_s", pa.float64(), "FLOAT64", "Largest label lag, seconds."),
    Field("nan_predictions", pa.int64(), "INT64", "Predictions with a NaN/inf/null y_pred."),
    Field("nan_labels", pa.int64(), "INT64", "Labeled pairs with a NaN/inf/null y_true."),
    Field("nonfinite_errors", pa.int64(), "INT64", "Finite inputs whose squared error overflows."),
    Field("mape_excluded", pa.int64(), "INT64", "Scored pairs left out of mape (y_true = 0)."),
    Field("rmsle_excluded", pa.int64(), "INT64", "Scored pairs left out of rmsle (a value < 0)."),
    Field("negative_lags", pa.int64(), "INT64", "Labeled pairs with label_time < event_time."),
    Field("sum_w", pa.float64(), "FLOAT64", "Sum of weights of scored pairs."),
    Field("sum_w2", pa.float64(), "FLOAT64", "Sum of squared weights (Kish effective n)."),
    Field("sum_se", pa.float64(), "FLOAT64", "Sum of w * e^2."),
    Field("sum_se2", pa.float64(), "FLOAT64", "Sum of w * e^4."),
    Field("sum_ae", pa.float64(), "FLOAT64", "Sum of w * |e|."),
    Field("sum_e", pa.float64(), "FLOAT64", "Sum of w * e."),
    Field("sum_y", pa.float64(), "FLOAT64", "Sum of w * y_true."),
    Field("sum_y2", pa.float64(), "FLOAT64", "Sum of w * y_true^2."),
    record_list(
        "error_exceedance",
        "Per configured error threshold (ascending): scored pairs with"
        " |y_pred - y_true| > threshold, their weight and number. Empty if none configured.",
        (
            Field("threshold", pa.float64(), "FLOAT64", "The error threshold.", False),
            Field("sum_w", pa.float64(), "FLOAT64", "Sum of weights of those pairs."),
            Field("count", pa.int64(), "INT64", "Number of those pairs, whatever their weight."),
        ),
    ),
    record_list(
        "labeled_within",
        "Per configured freshness bound (ascending): labeled predictions whose label lag"
        " is <= within_s (negative lags included). Empty if none configured.",
        (
            Field("within_s", pa.int64(), "INT64", "The bound on label lag, seconds.", False),
            Field("labeled", pa.int64(), "INT64", "Predictions labeled within within_s."),
        ),
    ),
    record_list(
        "paired",
        "Per baseline version compared with this slice's model version (comparisons):"
        " moments over the ids both versions scored with one label (unweighted; b, c ="
        " squared error of baseline, candidate). Empty unless a comparison pairs them.",
        (
            Field("baseline", pa.string(), "STRING", "The baseline model version.", False),
            Field("n", pa.int64(), "INT64", "Ids scored by both versions."),
            Field("sum_se_b", pa.float64(), "FLOAT64", "Sum of b."),
            Field("sum_se_c", pa.float64(), "FLOAT64", "Sum of c."),
            Field("sum_se_bb", pa.float64(), "FLOAT64", "Sum of b^2."),
            Field("sum_se_cc", pa.float64(), "FLOAT64", "Sum of c^2."),
            Field("sum_se_bc", pa.float64(), "FLOAT64", "Sum of b * c."),
            Field("sum_ae_b", pa.float64(), "FLOAT64", "Sum of |e_b|."),
            Field("sum_ae_c", pa.float64(), "FLOAT64", "Sum of |e_c|."),
            Field("sum_ae_bc", pa.float64(), "FLOAT64", "Sum of |e_b| * |e_c|."),
        ),
    ),
    Field(
        "y_pred_sketch",
        pa.binary(),
        "BYTES",
        "Value sketch (versioned bytes, transforms/metrics/sketch.py) of the finite y_pred"
        " of the window's distinct predictions. Null if none.",
    ),
    Field(
        "y_true_sketch",
        pa.binary(),
        "BYTES",
        "Value sketch of the finite y_true of labeled pairs. Null if none.",
    ),
    record_list(
        "feature_sketches",
        "Per configured feature: a value sketch of its finite values over the window's"
        " distinct predictions. Empty unless features are configured.",
        (
            Field("feature", pa.string(), "STRING", "The feature name.", False),
            Field("sketch", pa.binary(), "BYTES", "Its value sketch; null if no value."),
        ),
    ),
    record_list(
        "label_range",
        "Per configured valid range (ascending): labeled pairs whose finite y_true is"
        " outside [low, high]. Empty if none configured.",
        (
            Field("low", pa.float64(), "FLOAT64", "Lowest valid y_true.", False),
            Field("high", pa.float64(), "FLOAT64", "Highest valid y_true.", False),
            Field("outside", pa.int64(), "INT64", "Labeled pairs with y_true < low or > high."),
        ),
    ),
    Field("sum_abs_pred", pa.float64(), "FLOAT64", "Sum of w * |y_pred| over scored pairs."),
    Field("sum_abs_true", pa.float64(), "FLOAT64", "Sum of w * |y_true| over scored pairs."),
    Field("y_true_min", pa.float64(), "FLOAT64", "Smallest finite y_true of labeled pairs."),
    Field("y_true_max", pa.float64(), "FLOAT64", "Largest finite y_true of labeled pairs."),
    Field("pane_index", pa.int64(), "INT64", "Beam pane index of this firing.", False),
    Field("pane_timing", pa.string(), "STRING", "EARLY, ON_TIME or LATE.", False),
    Field("complete", pa.bool_(), "BOOL", "Every prediction resolved and window closed.", False),
    Field("emitted_at", _TS, "TIMESTAMP", "Wall-clock time the row was emitted, UTC.", False),
)

DEAD_LETTER_FIELDS: tuple[Field, ...] = (
    Field("source", pa.string(), "STRING", "File path or Pub/Sub subscription.", False),
    Field("record_type", pa.string(), "STRING", "prediction or label.", False),
    Field("reason", pa.string(), "STRING", "Reason code, e.g. missing_field.", False),
    Field("detail", pa.string(), "STRING", "What was wrong, for a person."),
    Field("raw_payload", pa.string(), "STRING", "The record as it arrived."),
    Field("ingest_position", pa.int64(), "INT64", "Byte offset / row number / sequence."),
    Field("message_id", pa.string(), "STRING", "Pub/Sub message id, if any."),
    Field("attributes", pa.string(), "STRING", "Pub/Sub attributes as JSON, if any."),
)

OUTCOMES_FIELDS: tuple[Field, ...] = (
    Field("record_type", pa.string(), "STRING", "prediction or label.", False),
    Field("outcome", pa.string(), "STRING", "input, joined, expired, duplicate, ...", False),
    Field("count", pa.int64(), "INT64", "Records (a delta: sum rows for totals).", False),
    Field(
        "detail",
        pa.string(),
        "STRING",
        "Null, or a part of the outcome's records (label duplicate: conflicting, a y_true "
        "different from the winning label's); an outcome's rows add up to it.",
    ),
)

RECORD_OUTCOMES: dict[str, tuple[str, ...]] = {
    PREDICTION.name: ("joined", "expired", "duplicate", "invalid"),
    LABEL.name: ("joined", "late_label", "orphan_label", "duplicate", "invalid"),
}
"""The outcome vocabulary: record type -> the outcomes one of its records can end in
(exactly one each: the conservation law, docs/semantics.md). The ``outcome`` column of
the ``outcomes`` table holds these, plus ``input`` rows that count the records read."""


def arrow_schema(fields) -> pa.Schema:
    """Arrow schema of an output table."""
    return pa.schema([pa.field(f.name, f.arrow_type, nullable=f.nullable) for f in fields])


def bigquery_schema(fields) -> list[dict]:
    """BigQuery JSON schema (the format `bq mk --schema` takes) of an output table.

    A :func:`record_list` column is ``REPEATED`` with its record's ``fields``.
    """
    schema = []
    for f in fields:
        mode = "REPEATED" if f.repeated else "NULLABLE" if f.nullable else "REQUIRED"
        column = {"name": f.name, "type": f.bq_type, "mode": mode, "description": f.description}
        if f.fields:
            column["fields"] = bigquery_schema(f.fields)
        schema.append(column)
    return schema


METRICS = arrow_schema(METRICS_FIELDS)
DEAD_LETTER = arrow_schema(DEAD_LETTER_FIELDS)
OUTCOMES = arrow_schema(OUTCOMES_FIELDS)
