"""A run whose outcomes do not add up to its inputs is an error, not a remark."""

from __future__ import annotations

from msewatch.runners import outcomes as run_outcomes


def test_balanced_outcomes_exit_0(capsys):
    outcomes = {"prediction": {"input": 3, "joined": 2, "expired": 1}}
    assert run_outcomes.check_conservation(outcomes) == 0
    assert capsys.readouterr().err == ""


def test_a_missing_outcome_exits_1_with_a_line_saying_what_is_missing(capsys):
    # 5 labels in, 2 joined + 1 orphan = 3 outcomes: 2 labels without an outcome
    outcomes = {
        "prediction": {"input": 2, "joined": 2},
        "label": {"input": 5, "joined": 2, "orphan_label": 1},
    }
    assert run_outcomes.check_conservation(outcomes) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "msewatch: error: conservation broken: labels: input 5, outcomes sum to 3 "
        "(2 without an outcome)"
    ]


def test_a_record_counted_twice_is_named_too(capsys):
    assert (
        run_outcomes.check_conservation({"label": {"input": 1, "joined": 1, "duplicate": 1}}) == 1
    )
    assert "(1 counted twice)" in capsys.readouterr().err
