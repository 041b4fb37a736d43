-- latest: the latest pane of every window and slice, newest windows first,
-- the overall slice first within a window.
SELECT
    window_start,
    window_end,
    slice,
    predictions,
    labeled,
    expired,
    scored,
    label_coverage,
    rmse,
    rmse_ci_low,
    rmse_ci_high,
    mse,
    mae,
    mean_error,
    r2,
    label_lag_p90_s,
    pane_index,
    pane_timing,
    complete
FROM `{dataset}.metrics_latest`
ORDER BY window_start DESC, window_end DESC, slice <> 'overall', slice
