-- worst: slices ranked by RMSE over the last day of complete windows, highest first.
--
-- The day is the 24 h (or one window, when windows are longer) that ends with the
-- latest complete window of any slice, the same for every slice. Each slice's rows in
-- it are merged from their weighted sums, over non-overlapping windows only (window
-- start a multiple of the window length, as Beam aligns windows), so sliding windows
-- are not counted twice. One window of a small slice is too noisy to rank by; a day of
-- windows is not. The 95 % CI is the normal approximation of the metrics rows (Kish's
-- effective sample size); latest_rmse is the slice's latest complete window alone.
WITH done AS (
    SELECT * FROM `{dataset}.metrics_latest` WHERE complete
),
horizon AS (
    SELECT
        MAX(window_end) AS day_end,
        TIMESTAMP_SUB(
            MAX(window_end),
            INTERVAL GREATEST(86400, MAX(TIMESTAMP_DIFF(window_end, window_start, SECOND))) SECOND
        ) AS day_start
    FROM done
),
pooled AS (
    SELECT
        slice,
        MIN(window_start) AS period_start,
        MAX(window_end) AS period_end,
        COUNT(*) AS windows,
        SUM(predictions) AS predictions,
        SUM(labeled) AS labeled,
        SUM(scored) AS scored,
        SUM(sum_w) AS w,
        SUM(sum_w2) AS w2,
        SUM(sum_se) AS se,
        SUM(sum_se2) AS se2
    FROM done CROSS JOIN horizon
    WHERE window_start >= day_start AND window_end <= day_end
        AND MOD(UNIX_SECONDS(window_start), TIMESTAMP_DIFF(window_end, window_start, SECOND)) = 0
    GROUP BY slice
),
moments AS (
    SELECT
        *,
        SAFE_DIVIDE(se, w) AS mse,
        SAFE_DIVIDE(w * w, w2) AS n_eff,
        GREATEST(SAFE_DIVIDE(se2, w) - SAFE_DIVIDE(se, w) * SAFE_DIVIDE(se, w), 0) AS var_se
    FROM pooled
    WHERE w > 0
),
latest AS (
    SELECT slice, rmse AS latest_rmse
    FROM done
    WHERE TRUE
    QUALIFY ROW_NUMBER() OVER (PARTITION BY slice ORDER BY window_start DESC, window_end DESC) = 1
)
SELECT
    slice,
    period_start,
    period_end,
    windows,
    scored,
    SQRT(mse) AS rmse,
    CASE WHEN n_eff > 1
        THEN SQRT(GREATEST(mse - 1.959963984540054 * SQRT(SAFE_DIVIDE(var_se, n_eff - 1)), 0))
    END AS rmse_ci_low,
    CASE WHEN n_eff > 1
        THEN SQRT(mse + 1.959963984540054 * SQRT(SAFE_DIVIDE(var_se, n_eff - 1)))
    END AS rmse_ci_high,
    SAFE_DIVIDE(labeled, predictions) AS label_coverage,
    latest_rmse
FROM moments
LEFT JOIN latest USING (slice)
ORDER BY rmse DESC, slice
