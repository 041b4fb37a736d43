"""Comparisons inside the pipeline: the numbers equal scipy on the raw errors, the worse
region FAILs and pages, and the streaming replay agrees with the bounded history.

Six hourly windows; per window and region 60 predictions of v1 and 60 of v2 (a canary:
different ids), labeled 10 minutes later with y_true = 0, so the error is y_pred. In
region ``good`` both versions' errors are N(0, 1); in region ``bad`` v2's are N(0, 2)
(4x the MSE). Region ``shadow`` has 60 ids an hour that both versions predict (same id,
same time): one label scores both, so that region is compared paired.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp

from msewatch import cli
from msewatch.commands.report import write_report
from msewatch.transforms.slo.config import parse_slo_file
from tests.harness import H, labels, predictions, read_table, run_both

SLO = parse_slo_file(
    """
version: 1
slos: []
comparisons:
  - name: v2
    baseline: {model_version: v1}
    candidate: {model_version: v2}
    slices: ["region=*"]
    lookback: 6h
    margin: 0.05
    min_scored: 100
"""
)
HOURS, PER = 6, 60


def _errors():
    rng = np.random.default_rng(12)
    out = {}
    for region, sd in (("good", 1.0), ("bad", 2.0)):
        out[region] = {
            "v1": rng.normal(0, 1.0, (HOURS, PER)),
            "v2": rng.normal(0, sd, (HOURS, PER)),
        }
    noise = rng.normal(0, 1.0, (HOURS, PER))  # shared by both versions of a shadow id
    out["shadow"] = {"v1": noise + rng.normal(0, 0.3, noise.shape), "v2": noise * 1.1}
    return out


def _records(errors):
    preds, labs = [], []
    for region, versions in errors.items():
        for hour in range(HOURS):
            for i in range(PER):
                t = hour * H + i * 50_000
                for mv, e in versions.items():
                    pid = f"{region}-{hour}-{i}" + ("" if region == "shadow" else f"-{mv}")
                    preds.append({"id": pid, "t": t, "y": e[hour, i], "mv": mv, "region": region})
                    if region != "shadow" or mv == "v1":
                        labs.append({"id": pid, "t": t + 600_000, "y": 0.0})
    return predictions(preds, segment_keys=("region",)), labels(labs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    errors = _errors()
    preds, labs = _records(errors)
    outputs = run_both(
        tmp_path_factory, preds, labs, 120, slices=("region",), ttl_ms=3 * H, slo=SLO
    )
    out = {}
    for mode, path in outputs.items():
        out[mode] = (read_table(path, "comparisons"), read_table(path, "alerts"))
        out[f"{mode}_path"] = path
    return errors, out


def _last(table: pd.DataFrame) -> pd.DataFrame:
    rows = table.sort_values(["frontier", "emitted_at"]).groupby("slice").tail(1)
    return rows.set_index("slice")


@pytest.mark.parametrize("region", ["good", "bad"])
def test_a_canary_region_is_welch_on_the_raw_squared_errors(runs, region):
    errors, out = runs
    b, c = errors[region]["v1"].ravel() ** 2, errors[region]["v2"].ravel() ** 2
    row = _last(out["bounded"][0]).loc[f"region={region}"]
    ref = sp.ttest_ind(c, b, equal_var=False, alternative="greater")
    assert not row.paired and row.windows == HOURS
    assert (row.n_baseline, row.n_candidate) == (b.size, c.size)
    assert row.ratio == pytest.approx(c.mean() / b.mean(), rel=1e-9)
    assert row.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert row.ci_low < row.ratio - 1 < row.ci_high


def test_a_shadow_region_is_paired_on_the_ids_both_versions_scored(runs):
    errors, out = runs
    b, c = errors["shadow"]["v1"].ravel() ** 2, errors["shadow"]["v2"].ravel() ** 2
    row = _last(out["bounded"][0]).loc["region=shadow"]
    ref = sp.ttest_rel(c, b, alternative="greater")
    assert row.paired and row.n_candidate == row.n_baseline == b.size
    assert row.ratio == pytest.approx(c.mean() / b.mean(), rel=1e-9)
    assert row.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_only_the_worse_region_fails_and_pages(runs):
    _, out = runs
    comparisons, alerts = out["bounded"]
    last = _last(comparisons)
    assert last.loc["region=bad", "decision"] == "FAIL"  # 4x the MSE
    assert (last.drop("region=bad")["decision"] != "FAIL").all()
    assert list(zip(alerts.alert, alerts.state, alerts.sli, strict=True)) == [
        ("v2/page/region=bad", "firing", "comparison")
    ]


def test_the_replay_ends_with_the_bounded_numbers(runs):
    _, out = runs
    bounded, replay = _last(out["bounded"][0]), _last(out["replay"][0])
    cols = ["frontier", "n_baseline", "n_candidate", "paired", "decision"]
    pd.testing.assert_frame_equal(bounded[cols].sort_index(), replay[cols].sort_index())
    np.testing.assert_allclose(replay.sort_index().ratio, bounded.sort_index().ratio, rtol=1e-9)
    assert replay.watermark.notna().all()
    firing = out["replay"][1]
    assert set(firing.loc[firing.state == "firing", "alert"]) == {"v2/page/region=bad"}


def test_msewatch_compare_prints_the_fail_and_gates_with_exit_code(runs, capsys):
    _, out = runs
    path = str(out["bounded_path"])
    assert cli.main(["compare", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("v2: v2 vs v1 in mse")
    decisions = {line.split()[1]: line.split()[0] for line in lines[1:]}
    assert decisions["region=bad"] == "FAIL" and decisions["region=good"] != "FAIL"
    assert "paired" in next(line for line in lines if "region=shadow" in line).split()
    assert cli.main(["compare", path, "--exit-code"]) == 1  # a FAIL stops the rollout
    assert cli.main(["compare", path, "--comparison", "nope"]) == 2
    assert "no comparison named 'nope'" in capsys.readouterr().err


def test_the_report_shows_the_latest_decisions(runs, tmp_path):
    _, out = runs
    page = write_report(out["bounded_path"], tmp_path / "r.html").read_text()
    assert "Comparisons: is the candidate worse?" in page
    assert page.count("<b>FAIL</b>") == 1
