"""The outcome vocabulary: one definition (schemas/records.py RECORD_OUTCOMES) that the
join's counters, the outcome counts and the end-of-run summary all use."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from msewatch.commands import summary
from msewatch.runners import outcomes as run_outcomes
from msewatch.schemas import records
from msewatch.transforms import outcomes
from msewatch.transforms.join import kernel


def test_vocabulary_is_the_conservation_law():
    # docs/semantics.md: predictions -> joined | expired | duplicate | invalid;
    # labels -> joined | late_label | orphan_label | duplicate | invalid.
    assert records.RECORD_OUTCOMES == {
        "prediction": ("joined", "expired", "duplicate", "invalid"),
        "label": ("joined", "late_label", "orphan_label", "duplicate", "invalid"),
    }
    assert set(records.RECORD_OUTCOMES) == {t.name for t in records.RECORD_TYPES}


def test_every_join_counter_counts_one_outcome_of_the_vocabulary():
    allowed = {(t, o) for t, names in records.RECORD_OUTCOMES.items() for o in names}
    assert set(kernel.JOIN_COUNTERS.values()) <= allowed
    assert len(set(kernel.JOIN_COUNTERS.values())) == len(kernel.JOIN_COUNTERS)
    # The join decides every outcome but `invalid`, which the parsers decide.
    assert allowed - set(kernel.JOIN_COUNTERS.values()) == {
        ("prediction", "invalid"),
        ("label", "invalid"),
    }


def test_join_counts_become_outcome_rows():
    counts = {"prediction_valid": 5, "label_valid": 4, "label_late": 1, "label_orphan": 2}
    assert outcomes._join_counts(counts) == {
        ("prediction", "input"): 5,
        ("label", "input"): 4,
        ("label", "late_label"): 1,
        ("label", "orphan_label"): 2,
    }


def test_summary_reports_every_outcome_of_the_vocabulary(tmp_path):
    rows = [
        ("prediction", "input", 10),
        ("prediction", "joined", 6),
        ("prediction", "expired", 3),
        ("prediction", "invalid", 1),
        ("label", "input", 7),
        ("label", "joined", 4),
        ("label", "joined", 2),  # rows are deltas: 4 + 2
        ("label", "orphan_label", 1),
    ]
    (tmp_path / "outcomes").mkdir()
    names = [f.name for f in records.OUTCOMES_FIELDS]
    table = pa.Table.from_pylist([dict(zip(names, (*r, None), strict=True)) for r in rows])
    pq.write_table(table.cast(records.OUTCOMES), tmp_path / "outcomes" / "part-0.parquet")
    table = run_outcomes.outcome_counts(str(tmp_path))
    assert table == {
        "prediction": {"input": 10, "joined": 6, "expired": 3, "duplicate": 0, "invalid": 1},
        "label": {
            "input": 7,
            "joined": 6,
            "late_label": 0,
            "orphan_label": 1,
            "duplicate": 0,
            "invalid": 0,
        },
    }
    assert run_outcomes.balanced(table)


def test_a_detail_is_a_part_of_its_outcome_in_the_summary(tmp_path):
    # 5 duplicate labels, 3 of them conflicting (rows: 2 with detail NULL, 3 conflicting)
    rows = [
        ("label", "input", 9, None),
        ("label", "joined", 4, None),
        ("label", "duplicate", 2, None),
        ("label", "duplicate", 1, "conflicting"),
        ("label", "duplicate", 2, "conflicting"),  # deltas: 1 + 2
    ]
    (tmp_path / "outcomes").mkdir()
    names = [f.name for f in records.OUTCOMES_FIELDS]
    table = pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows])
    pq.write_table(table.cast(records.OUTCOMES), tmp_path / "outcomes" / "part-0.parquet")
    counts = run_outcomes.outcome_counts(str(tmp_path))
    assert counts["label"]["duplicate"] == 5 and counts["label"]["input"] == 9
    assert run_outcomes.balanced(counts)
    assert run_outcomes.outcome_details(str(tmp_path)) == {
        "label": {"duplicate": {"conflicting": 3}}
    }
    assert "of the duplicate labels, 3 conflicting" in summary.render(str(tmp_path), counts)
