"""The bounded join through spill files (``transforms/join/spill.py``): the results do
not depend on how many buckets the records are spread over, equal a pandas join written
from the rules in docs/semantics.md, and the spill files are gone when the run ends."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from msewatch.transforms.join import spill
from msewatch.transforms.join.kernel import JoinConfig
from tests import harness
from tests.harness import H

TTL = 3 * H


def _records(seed: int = 11, n_ids: int = 3000):
    """Predictions of two versions (some ids twice: duplicates), labels (some twice,
    some late, some orphans), over 6 hourly windows."""
    rng = np.random.default_rng(seed)
    preds, labs = [], []
    for i in range(n_ids):
        t = int(rng.integers(0, 6 * H))
        for mv in ("v1", "v2") if i % 3 == 0 else ("v1",):
            preds.append({"id": f"p{i}", "t": t, "y": float(rng.normal()), "mv": mv})
            if i % 17 == 0:  # a later repeat of the same version: a duplicate
                preds.append({"id": f"p{i}", "t": t + 5, "y": 9.0, "mv": mv})
        if i % 11 == 0:
            continue  # never labeled: expires
        lag = int(rng.integers(-H // 10, 4 * H))  # some beyond the 3 h TTL: late labels
        labs.append({"id": f"p{i}", "t": t + lag, "y": float(rng.normal())})
        if i % 13 == 0:  # a repeat label, later: a duplicate
            labs.append({"id": f"p{i}", "t": t + lag + 1, "y": 5.0})
    for j in range(50):
        labs.append({"id": f"orphan{j}", "t": int(rng.integers(0, 6 * H)), "y": 0.0})
    return preds, labs


def _pandas_overall(preds: list[dict], labs: list[dict]) -> pd.DataFrame:
    """The rules of docs/semantics.md (bounded runs), written in pandas: the first
    prediction per (id, version) and the first label per id by (time, position); a
    prediction is scored when its id's first label comes at most the TTL after it."""
    p = pd.DataFrame(preds).assign(pos=range(len(preds)), mv=lambda d: d["mv"])
    lb = pd.DataFrame(labs).assign(pos=range(len(labs)))
    p = p.sort_values(["t", "pos"]).drop_duplicates(["id", "mv"])
    lb = lb.sort_values(["t", "pos"]).drop_duplicates(["id"])
    j = p.merge(lb, on="id", how="left", suffixes=("", "_label"))
    j = j[(j["t_label"] - j["t"]) <= TTL]
    j = j.assign(window=(j["t"] // H) * H, se=(j["y"] - j["y_label"]) ** 2)
    return j.groupby("window").agg(scored=("se", "size"), mse=("se", "mean")).reset_index()


@pytest.mark.parametrize("buckets", [1, 37])
def test_any_bucket_count_gives_the_pandas_join(tmp_path, buckets):
    preds, labs = _records()
    folder = tmp_path / "spill"
    folder.mkdir()
    metrics, counts = harness.run_bounded(
        harness.predictions(preds),
        harness.labels(labs),
        tmp_path / "out",
        ttl_ms=TTL,
        spill_folder=str(folder),
        spill_buckets=buckets,
    )
    overall = metrics[metrics["slice"] == "overall"].sort_values("window_start")
    expected = _pandas_overall(preds, labs)
    epoch = pd.Timestamp(0, tz="UTC")
    got_windows = (overall["window_start"] - epoch) // pd.Timedelta(milliseconds=1)
    assert got_windows.tolist() == expected["window"].tolist()
    assert overall["scored"].tolist() == expected["scored"].tolist()
    np.testing.assert_allclose(overall["mse"], expected["mse"], rtol=1e-12)
    # every record is counted once: valid = joined + expired + duplicate, and so on
    pred, label = counts["prediction"], counts["label"]
    assert pred["input"] == len(preds)
    assert pred["joined"] + pred["expired"] + pred["duplicate"] == len(preds)
    assert label["input"] == len(labs)
    assert label["orphan_label"] == 50
    assert os.listdir(folder) == []  # each bucket's files are deleted once joined


def test_a_spilled_file_with_fewer_rows_than_written_is_an_error_not_a_loss(tmp_path):
    table = harness.predictions([{"id": "a", "t": 0, "y": 1.0}, {"id": "b", "t": 1, "y": 2.0}])
    path = str(tmp_path / "00000-P-x.arrows")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.slice(0, 1))
    join = spill.JoinBuckets(JoinConfig(), lambda *a: iter(()))
    with pytest.raises(OSError, match="1 rows spilled, 2 expected"):
        list(join.process(("00000", [("P", path, 2)])))


def test_buckets_follow_the_input_size():
    # one bucket per 32 MiB: 3.05 GB of JSON Lines (10 M predictions) -> 91 buckets
    assert spill.buckets_for(3_050_651_372) == 91
    assert spill.buckets_for(1000, at_least=16) == 16
    assert spill.buckets_for(10**15) == 4096
