-- comparisons: the latest decision of every comparison and slice: is the candidate
-- worse than the baseline by more than the margin? ci_low/ci_high bound C / B - 1
-- (always valid: safe to look after every window); p_value is fixed-horizon.
SELECT
    comparison,
    slice,
    decision,
    candidate,
    baseline,
    metric,
    paired,
    metric_candidate,
    metric_baseline,
    ratio - 1 AS change,
    ci_low,
    ci_high,
    margin,
    alpha,
    p_value,
    n_candidate,
    n_baseline,
    windows,
    frontier
FROM `{dataset}.comparisons`
QUALIFY row_number() OVER (
    PARTITION BY comparison, slice ORDER BY frontier DESC, emitted_at DESC) = 1
ORDER BY comparison, slice = 'overall' DESC, slice
