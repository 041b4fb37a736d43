"""Metrics merged under several keys (a hash of the slice name modulo key_groups, as
on cluster runners) give the same rows as under one key (the DirectRunner's)."""

from __future__ import annotations

from unittest import mock

import pytest

from msewatch.runners import config as run_config
from msewatch.transforms.metrics.transform import slice_group_key
from tests.harness import H, labels, latest, predictions, run_bounded, run_replay

REGIONS = ("eu", "us", "ap", "sa", "af")
SLICES = ("region", "model_version")


def _records():
    # 40 predictions over two hours, 5 regions x 2 versions; error = i % 3.
    preds = predictions(
        [
            {
                "id": f"p{i}",
                "t": i * 180_000,
                "y": float(i % 3),
                "mv": f"v{i % 2}",
                "region": REGIONS[i % 5],
            }
            for i in range(40)
        ],
        segment_keys=("region",),
    )
    labs = labels([{"id": f"p{i}", "t": i * 180_000 + 60_000, "y": 0.0} for i in range(38)])
    return preds, labs


def _rows(df):
    return df.drop(columns=["emitted_at"]).reset_index(drop=True)


@pytest.mark.parametrize("run", [run_bounded, run_replay])
def test_sixteen_key_groups_give_the_rows_of_one(run, tmp_path):
    names = ["overall", *(f"region={r}" for r in REGIONS), "model_version=v0"]
    assert len({slice_group_key(n, 16) for n in names}) > 1  # the slices do spread
    preds, labs = _records()
    one, out_one = run(preds, labs, tmp_path / "one", slices=SLICES, ttl_ms=H)
    with mock.patch.object(run_config, "default_metrics_key_groups", return_value=16):
        many, out_many = run(preds, labs, tmp_path / "many", slices=SLICES, ttl_ms=H)
    assert out_one == out_many
    assert len(latest(one)) == 2 * (1 + 5 + 2)  # 2 windows x (overall, regions, versions)
    # every (window, slice)'s final pane holds the same numbers. (Under one key every
    # pane of a window carries all its slices; under several a slice gets the panes
    # of its own group, so a slice no late record touched ends at its ON_TIME pane:
    # pane_index and pane_timing may differ in the replay, the values may not.)
    first, second = _rows(latest(one)), _rows(latest(many))
    cols = [c for c in first.columns if c not in ("pane_index", "pane_timing")]
    assert first[cols].equals(second[cols])
