"""The statistics of a comparison, vectorized over evaluations (numpy, no Beam).

Each function takes numpy arrays (one entry per evaluation) of summed moments and
returns arrays. ``loss`` is the per-example loss compared: ``e²`` for ``mse``,
``|e|`` for ``mae`` (``e = y_pred - y_true``); ``B`` and ``C`` are the baseline's and
the candidate's mean loss.

* **Unpaired** (canary: the versions scored different requests): Welch's test on the
  two groups' losses, from the mergeable moments of the metrics rows (``sum_w``,
  ``sum_w2``, ``sum_loss = Σ w·loss``, ``sum_loss2 = Σ w·loss²``). With weights, the
  group's n is Kish's effective n ``(Σw)² / Σw²``; with unit weights every number
  equals ``scipy.stats.ttest_ind(c, b, equal_var=False)``.
* **Paired** (shadow: both versions scored the same ids): the per-id difference
  ``d = loss_c - loss_b`` over ``n`` pairs, from the ``paired`` moments
  (:mod:`msewatch.transforms.metrics.paired`); equals ``scipy.stats.ttest_rel(c, b)``.
* The **relative difference** ``r = C / B - 1`` and its standard error by the delta
  method (with the covariance of ``B`` and ``C`` when paired).
* **Always-valid bounds**: the normal-mixture confidence sequence of Waudby-Smith
  et al. (2024, "Time-uniform central limit theory and asymptotic confidence
  sequences", Theorem 2.2): ``r ± se_r · sqrt(2 (tρ² + 1) / (tρ²) · log(sqrt(tρ² + 1)
  / α))`` with ``t`` the sample size (pairs, or the two versions' predictions) and
  ``ρ²`` chosen to make it tightest at ``t_opt``. Unlike a fixed-sample interval
  (``r ± 1.96 se_r``), the probability that it *ever* excludes the true ``r``, over
  every look, is at most ``α`` (asymptotically), so checking after every window does
  not inflate false FAILs.
* ``p_value``: the fixed-horizon one-sided p-value of "the candidate is worse"
  (``C > B``), for reference only: looking at it after every window inflates errors.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from msewatch.transforms.compare.spec import FAIL, INCONCLUSIVE, PASS


class Estimate(NamedTuple):
    """One comparison per entry (numpy arrays of one length)."""

    n_baseline: np.ndarray  # effective n of the baseline (pairs when paired)
    n_candidate: np.ndarray
    metric_baseline: np.ndarray  # B
    metric_candidate: np.ndarray  # C
    se_ratio: np.ndarray  # standard error of C / B
    t_stat: np.ndarray  # (C - B) / se(C - B)
    df: np.ndarray  # degrees of freedom of t_stat
    p_value: np.ndarray  # one-sided, H1: C > B

    @property
    def delta(self) -> np.ndarray:
        return self.metric_candidate - self.metric_baseline

    @property
    def ratio(self) -> np.ndarray:
        with np.errstate(all="ignore"):
            return self.metric_candidate / self.metric_baseline


def _arrays(*values):
    return [np.asarray(v, dtype=np.float64) for v in values]


def group_moments(sum_w, sum_w2, sum_loss, sum_loss2):
    """Mean, variance of the mean and effective n of one group's loss.

    ``var = (Σw·x² / Σw - mean²) · n / (n - 1)`` is the (Bessel-corrected) weighted
    variance; the mean's variance is ``var / n`` with ``n = (Σw)² / Σw²``.
    """
    sum_w, sum_w2, s1, s2 = _arrays(sum_w, sum_w2, sum_loss, sum_loss2)
    with np.errstate(all="ignore"):
        mean = s1 / sum_w
        n = sum_w * sum_w / sum_w2
        var = np.maximum(s2 / sum_w - mean * mean, 0.0) * n / (n - 1.0)
        return mean, var / n, n


def _p_greater(t, df):
    # imported here: scipy.stats costs ~0.7 s, paid only by runs that compare versions
    from scipy import stats

    with np.errstate(all="ignore"):
        p = stats.t.sf(t, df)
    return np.where(np.isfinite(t) & (df > 0), p, np.nan)


def unpaired(baseline, candidate) -> Estimate:
    """Welch's comparison of two groups.

    Args:
        baseline: ``(sum_w, sum_w2, sum_loss, sum_loss2)`` of the baseline, each an array.
        candidate: the same for the candidate.
    """
    mb, vb, nb = group_moments(*baseline)
    mc, vc, nc = group_moments(*candidate)
    with np.errstate(all="ignore"):
        se2 = vb + vc
        t = (mc - mb) / np.sqrt(se2)
        df = se2 * se2 / (vb * vb / (nb - 1.0) + vc * vc / (nc - 1.0))
        se_ratio = np.sqrt(vc / (mb * mb) + (mc * mc) * vb / mb**4)
    return Estimate(nb, nc, mb, mc, se_ratio, t, df, _p_greater(t, df))


def paired(n, sum_b, sum_c, sum_bb, sum_cc, sum_bc) -> Estimate:
    """The paired comparison over ``n`` ids both versions scored.

    Args:
        n: pairs; ``sum_b = Σ loss_b``, ``sum_c``, ``sum_bb = Σ loss_b²``, ``sum_cc``,
            ``sum_bc = Σ loss_b·loss_c`` over them (arrays).
    """
    n, sb, sc, sbb, scc, sbc = _arrays(n, sum_b, sum_c, sum_bb, sum_cc, sum_bc)
    with np.errstate(all="ignore"):
        mb, mc = sb / n, sc / n
        var_b = (sbb - n * mb * mb) / (n - 1.0)
        var_c = (scc - n * mc * mc) / (n - 1.0)
        cov = (sbc - n * mb * mc) / (n - 1.0)
        var_d = np.maximum(var_b + var_c - 2.0 * cov, 0.0)
        t = (mc - mb) / np.sqrt(var_d / n)
        q = mc / mb
        var_ratio = np.maximum(var_c - 2.0 * q * cov + q * q * var_b, 0.0) / (n * mb * mb)
    df = n - 1.0
    return Estimate(n, n, mb, mc, np.sqrt(var_ratio), t, df, _p_greater(t, df))


def mixture_rho2(t_opt, alpha):
    """The ``ρ²`` that makes the confidence sequence tightest at ``t_opt`` samples
    (Waudby-Smith et al. 2024, section B.2)."""
    a = -2.0 * np.log(alpha)
    return (a + np.log(a + 1.0)) / t_opt


def cs_multiplier(t, alpha, t_opt):
    """How many standard errors the always-valid half-width is after ``t`` samples.

    ``sqrt(2 (tρ² + 1) / (tρ²) · log(sqrt(tρ² + 1) / α))``; NaN where ``t <= 0``.
    """
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(all="ignore"):
        x = t * mixture_rho2(t_opt, alpha)
        m = np.sqrt(2.0 * (x + 1.0) / x * np.log(np.sqrt(x + 1.0) / alpha))
    return np.where(t > 0, m, np.nan)


def bounds(estimate: Estimate, samples, alpha: float, t_opt: float):
    """The always-valid ``(low, high)`` bounds of the relative difference ``C / B - 1``."""
    half = cs_multiplier(samples, alpha, t_opt) * estimate.se_ratio
    r = estimate.ratio - 1.0
    return r - half, r + half


def decide(low, high, margin: float, enough) -> np.ndarray:
    """FAIL where the lower bound is above ``margin`` (worse with confidence), PASS where
    the upper bound is below it, else INCONCLUSIVE (also without ``enough`` data)."""
    low, high = _arrays(low, high)
    enough = np.asarray(enough, dtype=bool) & np.isfinite(low) & np.isfinite(high)
    out = np.full(low.shape, INCONCLUSIVE, dtype=object)
    out[enough & (low > margin)] = FAIL
    out[enough & (high < margin)] = PASS
    return out
