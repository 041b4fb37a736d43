"""MetricsCombineFn inside a pipeline: Beam's own combining merges the partials right."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that
from sklearn.metrics import mean_squared_error

from msewatch.transforms.metrics.accumulators import MetricsCombineFn, finalize
from tests.metric_examples import aggregate, examples, random_pairs, take

REL = 1e-9


def test_combine_fn_in_a_pipeline():
    y_pred, y_true, w, lag = random_pairs(7, n=300)
    ex = examples(y_pred, y_true, w, lag)
    parts = [aggregate(take(ex, p))[0] for p in np.array_split(np.arange(600), 6)]
    want = mean_squared_error(y_true, y_pred, sample_weight=w)

    def check(outputs):
        (acc,) = outputs
        assert finalize(acc)["mse"] == pytest.approx(want, REL)
        assert acc.scored == 300

    with test_pipeline.TestPipeline() as p:
        out = (
            p
            | "Partials" >> beam.Create(parts)
            | "Merge" >> beam.CombineGlobally(MetricsCombineFn())
        )
        assert_that(out, check)
