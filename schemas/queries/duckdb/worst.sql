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
    SELECT * FROM metrics_latest WHERE complete
),
horizon AS (
    SELECT
        max(window_end) AS day_end,
        max(window_end) - to_seconds(
            greatest(86400, max(date_diff('second', window_start, window_end)))
        ) AS day_start
    FROM done
),
pooled AS (
    SELECT
        slice,
        min(window_start) AS period_start,
        max(window_end) AS period_end,
        count(*) AS windows,
        CAST(sum(predictions) AS DOUBLE) AS predictions,
        CAST(sum(labeled) AS DOUBLE) AS labeled,
        CAST(sum(scored) AS BIGINT) AS scored,
        sum(sum_w) AS w,
        sum(sum_w2) AS w2,
        sum(sum_se) AS se,
        sum(sum_se2) AS se2
    FROM done, horizon
    WHERE window_start >= day_start AND window_end <= day_end
        AND CAST(epoch(window_start) AS BIGINT)
            % date_diff('second', window_start, window_end) = 0
    GROUP BY slice
),
moments AS (
    SELECT
        *,
        se / w AS mse,
        w * w / w2 AS n_eff,
        greatest(se2 / w - (se / w) * (se / w), 0) AS var_se
    FROM pooled
    WHERE w > 0
),
latest AS (
    SELECT slice, rmse AS latest_rmse
    FROM done
    QUALIFY row_number() OVER (PARTITION BY slice ORDER BY window_start DESC, window_end DESC) = 1
)
SELECT
    slice,
    period_start,
    period_end,
    windows,
    scored,
    sqrt(mse) AS rmse,
    CASE WHEN n_eff > 1
        THEN sqrt(greatest(mse - 1.959963984540054 * sqrt(var_se / (n_eff - 1)), 0))
    END AS rmse_ci_low,
    CASE WHEN n_eff > 1
        THEN sqrt(mse + 1.959963984540054 * sqrt(var_se / (n_eff - 1)))
    END AS rmse_ci_high,
    labeled / predictions AS label_coverage,
    latest_rmse
FROM moments
LEFT JOIN latest USING (slice)
ORDER BY rmse DESC, slice
