-- trend: RMSE per window for one slice ($slice), oldest window first.
SELECT
    window_start,
    window_end,
    predictions,
    scored,
    label_coverage,
    rmse,
    rmse_ci_low,
    rmse_ci_high,
    mse,
    mae,
    mean_error,
    pane_index,
    pane_timing,
    complete
FROM metrics_latest
WHERE slice = $slice
ORDER BY window_start, window_end
