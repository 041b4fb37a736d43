-- coverage: label coverage and label lag percentiles (seconds) per window for
-- one slice (query parameter @slice), newest window first. pending = not yet
-- labeled nor expired.
SELECT
    window_start,
    window_end,
    predictions,
    labeled,
    expired,
    predictions - labeled - expired AS pending,
    label_coverage,
    label_lag_p50_s,
    label_lag_p90_s,
    label_lag_p99_s,
    label_lag_max_s,
    negative_lags,
    pane_timing,
    complete
FROM `{dataset}.metrics_latest`
WHERE slice = @slice
ORDER BY window_start DESC, window_end DESC
