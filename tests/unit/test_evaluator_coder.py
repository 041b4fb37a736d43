"""The SLO and comparison evaluators' state: an explicit, versioned encoding of what
they keep between panes (no pickle), restored into a fresh evaluator."""

from __future__ import annotations

import pickle
from unittest import mock

import pytest

from msewatch.transforms.compare.kernel import ComparisonEvaluator
from msewatch.transforms.keyed_evaluation import EvaluatorCoder, restore, snapshot
from msewatch.transforms.slo.kernel import SloEvaluator
from tests.unit.test_compare_kernel import _cmp
from tests.unit.test_compare_kernel import _row as cmp_row
from tests.unit.test_slo_kernel import PAGE_ONLY, fired, rmse_slo, row, rows

CODER = EvaluatorCoder()


def _through_state(evaluator, fresh):
    """``evaluator`` as the next pane sees it: snapshot, encoded, decoded (pickle
    disabled), restored into ``fresh`` (what new_evaluator builds)."""
    encoded = CODER.encode(snapshot(evaluator))
    assert encoded[:5] == b"MWEV\x01"
    assert b"\x80\x04" not in encoded and b"\x80\x05" not in encoded  # no pickle protocol
    with mock.patch.object(pickle, "loads", side_effect=AssertionError("pickle used")):
        state = CODER.decode(encoded)
    assert CODER.encode(state) == encoded
    return restore(fresh, state)


def test_an_slo_evaluator_continues_from_its_state_as_the_same_object_would():
    slo = rmse_slo(alerting=PAGE_ONLY)
    kept, same = SloEvaluator(slo, "overall"), SloEvaluator(slo, "overall")
    kept.update(rows(5))
    same.update(rows(5))
    # the page fires at 6 h (window 5 bad, as in test_an_evaluator_pickles_mid_stream);
    # the restored evaluator and the one never encoded give the same transitions
    restored = _through_state(kept, SloEvaluator(slo, "overall"))
    assert fired(restored.update([row(5, bad=True)])[0]) == [("page", "firing", 6)]
    assert fired(same.update([row(5, bad=True)])[0]) == [("page", "firing", 6)]
    again = _through_state(restored, SloEvaluator(slo, "overall"))  # firing state kept
    assert [t.alert for t in again.firing()] == [t.alert for t in same.firing()] != []
    assert repr(again.update(rows(2, start=6))) == repr(same.update(rows(2, start=6)))


def test_a_comparison_evaluator_keeps_its_windows_and_firing_alert():
    kept = ComparisonEvaluator(_cmp(margin=0.05), "region=eu")
    n = 20_000  # +50 %: FAIL, the alert fires (test_compare_kernel)
    _, fired_now = kept.update([cmp_row("v1", 0, n, 1.0), cmp_row("v2", 0, n, 1.5)])
    assert [t.state for t in fired_now] == ["firing"]
    restored = _through_state(kept, ComparisonEvaluator(_cmp(margin=0.05), "region=eu"))
    assert repr(restored.firing()) == repr(kept.firing())  # NaN burn rates: compare reprs
    late = [cmp_row("v2", 0, n, 1.5, pane=1)]
    assert repr(restored.update(late)) == repr(kept.update(late))


def test_an_unknown_version_or_a_pickled_evaluator_is_refused():
    encoded = CODER.encode(snapshot(SloEvaluator(rmse_slo(), "overall")))
    with pytest.raises(ValueError, match="EvaluatorCoder: state format version 7 is unknown"):
        CODER.decode(encoded[:4] + b"\x07" + encoded[5:])
    with pytest.raises(ValueError, match="EvaluatorCoder: not a b'MWEV' state value"):
        CODER.decode(pickle.dumps(SloEvaluator(rmse_slo(), "overall")))
