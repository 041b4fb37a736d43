"""Record types (msewatch.schemas.records.RecordType): the one map from a record type's
name to its batch schema, time column and output tag.

Expected names are the input fields of the README's "Input records" and the outputs
every source returns (``predictions``, ``labels``, ``dead_letter``).
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from msewatch.schemas.records import (
    DEAD_LETTER_TAG,
    LABEL,
    LABELS,
    PREDICTION,
    PREDICTIONS,
    RECORD_TYPES,
    RecordType,
)


@pytest.mark.parametrize(
    "name, expected, schema, time_column, tag",
    [
        ("prediction", PREDICTION, PREDICTIONS, "event_time_ms", "predictions"),
        ("label", LABEL, LABELS, "label_time_ms", "labels"),
    ],
)
def test_lookup_by_name(name, expected, schema, time_column, tag):
    kind = RecordType.of(name)
    assert kind is expected
    assert (kind.schema, kind.time_column, kind.tag) == (schema, time_column, tag)
    assert kind.schema.field(kind.time_column).type == pa.int64()  # UTC epoch ms
    assert kind.schema.field(kind.value_field).type == pa.float64()


def test_unknown_name_names_the_allowed_ones():
    with pytest.raises(ValueError, match="record_type must be one of prediction, label; got 'x'"):
        RecordType.of("x")


def test_only_predictions_carry_segment_columns():
    assert PREDICTION.batch_schema(("region",)).names == PREDICTIONS.names + ["seg.region"]
    assert LABEL.batch_schema(("region",)) == LABELS


def test_tags_are_distinct():
    tags = [t.tag for t in RECORD_TYPES] + [DEAD_LETTER_TAG]
    assert len(set(tags)) == len(tags) == 3
