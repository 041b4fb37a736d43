"""Conflicting duplicate labels through the whole pipeline: the outcomes table carries them
as a detail of ``duplicate``, the bounded run and the streaming replay agree, and the
outcomes still add up to the inputs."""

from __future__ import annotations

import pytest

from msewatch.runners import outcomes as run_outcomes
from tests.harness import H, labels, predictions, run_bounded, run_replay

TTL = 3 * H


@pytest.mark.parametrize("run", [run_bounded, run_replay], ids=["bounded", "replay"])
def test_conflicting_duplicates_are_a_detail_of_duplicate(tmp_path, run):
    preds = predictions([{"id": i, "t": 0, "y": 1.0} for i in ("a", "b", "c")])
    # a: 2.0 wins, repeats 2.0 (same) and 3.0 (conflicting); b: 5.0 wins, a repeat 6.0
    # (conflicting) after b joined; c: one label; z: no prediction, 1.0 then 1.0 (same).
    # 8 labels: joined 3 (a, b, c), orphan 1 (z), duplicate 4 (a twice, b, z), 2 conflicting.
    labs = labels(
        [
            {"id": "a", "t": 10 * 60_000, "y": 2.0},
            {"id": "a", "t": 20 * 60_000, "y": 2.0},
            {"id": "a", "t": 30 * 60_000, "y": 3.0},
            {"id": "b", "t": 10 * 60_000, "y": 5.0},
            {"id": "b", "t": 40 * 60_000, "y": 6.0},
            {"id": "c", "t": 10 * 60_000, "y": 0.0},
            {"id": "z", "t": 10 * 60_000, "y": 1.0},
            {"id": "z", "t": 15 * 60_000, "y": 1.0},
        ]
    )
    _, outcomes = run(preds, labs, tmp_path, ttl_ms=TTL)
    assert outcomes["label"] == {
        "input": 8,
        "joined": 3,
        "late_label": 0,
        "orphan_label": 1,
        "duplicate": 4,
        "invalid": 0,
    }
    assert run_outcomes.balanced(outcomes)
    assert run_outcomes.outcome_details(str(tmp_path)) == {
        "label": {"duplicate": {"conflicting": 2}}
    }
