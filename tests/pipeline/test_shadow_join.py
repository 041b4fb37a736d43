"""Shadow predictions through the whole pipeline: two model versions predict the same
ids, one label per id scores both, and each version gets its own metrics rows.

Runs of the real pipeline (1 h windows, label_ttl 3 h), bounded and as a streaming
replay; the latest pane per (window, slice) is compared with scikit-learn on the
pairs derived in the test.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mean_squared_error

from tests.harness import H, labels, latest, predictions, row, run_bounded, run_replay

pytestmark = pytest.mark.slow

MIN = 60_000
N_IDS = 12


@pytest.mark.parametrize("run", [run_bounded, run_replay], ids=["bounded", "replay"])
def test_both_versions_of_a_shadowed_id_are_scored_by_its_one_label(tmp_path, run):
    rng = np.random.default_rng(7)
    y_true = rng.normal(10.0, 3.0, N_IDS)
    y_v1 = y_true + rng.normal(0.0, 1.0, N_IDS)  # the serving model
    y_v2 = y_true + rng.normal(0.5, 2.0, N_IDS)  # the shadow: biased, noisier
    t = np.arange(N_IDS) * 4 * MIN  # all in the first hour's window
    rows = []
    for i in range(N_IDS):
        rows.append({"id": f"p{i}", "t": int(t[i]), "mv": "v1", "y": y_v1[i]})
        rows.append({"id": f"p{i}", "t": int(t[i]) + 1, "mv": "v2", "y": y_v2[i]})
    # A repeat of v1's prediction of p0 (same version): a duplicate, not scored.
    rows.append({"id": "p0", "t": int(t[0]) + 2, "mv": "v1", "y": 1e6})
    labs = labels(
        [{"id": f"p{i}", "t": int(t[i]) + 30 * MIN, "y": y_true[i]} for i in range(N_IDS)]
    )

    df, outcomes = run(predictions(rows), labs, tmp_path, ttl_ms=3 * H)

    assert outcomes["prediction"]["joined"] == 2 * N_IDS
    assert outcomes["prediction"]["duplicate"] == 1
    assert outcomes["label"]["joined"] == N_IDS  # one label scores two predictions
    final = latest(df)
    for version, y_pred in (("v1", y_v1), ("v2", y_v2)):
        r = row(final, 0, f"model_version={version}")
        assert (r["predictions"], r["labeled"], r["scored"]) == (N_IDS, N_IDS, N_IDS)
        assert r["complete"]
        assert r["mse"] == pytest.approx(mean_squared_error(y_true, y_pred), rel=1e-12)
    overall = row(final, 0)
    assert (overall["predictions"], overall["scored"]) == (2 * N_IDS, 2 * N_IDS)
    both = mean_squared_error(np.concatenate([y_true, y_true]), np.concatenate([y_v1, y_v2]))
    assert overall["mse"] == pytest.approx(both, rel=1e-12)
    v1, v2 = (row(final, 0, f"model_version={v}")["mse"] for v in ("v1", "v2"))
    assert v2 > v1  # the shadow is worse here: the rows are per version, not mixed
