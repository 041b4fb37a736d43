"""EXAMPLES columns for the metric tests: the join's output, built by hand.

Shared by ``tests/unit/test_accumulators.py`` (the math, called directly) and
``tests/pipeline/test_metrics_combine.py`` (the same CombineFn inside a pipeline).
"""

from __future__ import annotations

import math

import numpy as np

from msewatch.schemas.records import ExampleKind
from msewatch.transforms.metrics.aggregate import aggregate_examples

ARRIVED, LABELED, EXPIRED = ExampleKind.ARRIVED, ExampleKind.LABELED, ExampleKind.EXPIRED
NAN = math.nan


def examples(y_pred, y_true, weight=None, lag=None, codes=None, expired=0):
    """One ARRIVED plus one LABELED example per pair, then ``expired`` EXPIRED examples."""
    y_pred = np.asarray(y_pred, dtype=np.float64)  # None -> NaN
    y_true = np.asarray(y_true, dtype=np.float64)
    n = y_pred.size
    weight = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    lag = np.full(n, 60.0) if lag is None else np.asarray(lag, dtype=np.float64)
    codes = np.zeros(n, dtype=np.int64) if codes is None else np.asarray(codes)
    nan_n, nan_e = np.full(n, NAN), np.full(expired, NAN)
    return dict(
        codes=np.concatenate([codes, codes, np.zeros(expired, dtype=np.int64)]),
        kind=np.concatenate(
            [np.full(n, ARRIVED), np.full(n, LABELED), np.full(expired, EXPIRED)]
        ).astype(np.int8),
        y_pred=np.concatenate([y_pred, y_pred, nan_e]),
        y_true=np.concatenate([nan_n, y_true, nan_e]),
        weight=np.concatenate([weight, weight, np.ones(expired)]),
        lag_s=np.concatenate([nan_n, lag, nan_e]),
    )


def aggregate(ex, n_groups=1, **kwargs):
    """:func:`aggregate_examples` of the columns built by :func:`examples`."""
    return aggregate_examples(
        ex["codes"], n_groups, ex["kind"], ex["y_pred"], ex["y_true"], ex["weight"],
        ex["lag_s"], **kwargs,
    )  # fmt: skip


def take(ex, idx):
    """The rows ``idx`` (an index array or a slice) of every column."""
    return {k: v[idx] for k, v in ex.items()}


def random_pairs(seed, n=2000, offset=0.0):
    """``(y_pred, y_true, weight, lag)``: gamma targets, biased normal errors, some zero weights."""
    rng = np.random.default_rng(seed)
    y_true = offset + rng.gamma(2.0, 3.0, n)
    y_pred = y_true + rng.normal(0.5, 2.0, n)
    weight = rng.uniform(0.0, 3.0, n)
    weight[:20] = 0.0  # zero weights are legal
    lag = rng.lognormal(8.0, 2.0, n)
    return y_pred, y_true, weight, lag
