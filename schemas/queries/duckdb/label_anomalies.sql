-- label_anomalies: the windows x slices whose labels trip a label_anomaly check, one row
-- per (window, slice, reason), from the latest pane of each window (metrics_latest), then
-- one row for the run's conflicting duplicate labels (from outcomes: they have no window).
--
-- reason        value                                   anomalous
-- out_of_range  labels outside [low, high] / labeled    labels outside it (finite y_true)
-- non_finite    nan_labels / labeled                    NaN/inf labels
-- constant      the one y_true of >= 30 finite labels   -
-- scale         mean |y_pred| / mean |y_true| over >= 30 scored pairs, beyond 10 or below
--               1/10 (inf when every |y_true| is 0)     -
-- conflicting_duplicate  conflicting / labels read      duplicate labels whose y_true
--               (window and slice null: the run)        differs from the label that won
--
-- One out_of_range row per valid range of the SLO file's label_anomaly SLOs (label_range,
-- low and high). The query does not read the SLO file: it lists every window with an
-- anomalous label (compare value with an SLO's threshold), and judges constant labels and
-- the scale with the defaults (min_scored 30, scale_factor 10). complete: every
-- prediction of the window is labeled or expired.
WITH latest AS (
    SELECT * FROM metrics_latest
),
ranges AS (
    SELECT window_start, window_end, slice, labeled, complete, unnest(label_range) AS r
    FROM latest
),
ratios AS (
    SELECT
        *,
        CASE
            WHEN sum_abs_true > 0 THEN sum_abs_pred / sum_abs_true
            WHEN sum_abs_pred > 0 THEN CAST('inf' AS DOUBLE)
        END AS ratio
    FROM latest
    WHERE scored >= 30
),
runs AS (
    SELECT
        sum(CASE WHEN record_type = 'label' AND outcome = 'duplicate'
            AND detail = 'conflicting' THEN "count" END) AS conflicting,
        sum(CASE WHEN record_type = 'label' AND outcome = 'input' THEN "count" END) AS labels
    FROM outcomes
),
found AS (
    SELECT window_start, window_end, slice, 'out_of_range' AS reason,
        r.outside / labeled AS value, r.outside AS anomalous, labeled,
        r.low AS low, r.high AS high, complete
    FROM ranges
    WHERE r.outside > 0
    UNION ALL
    SELECT window_start, window_end, slice, 'non_finite', nan_labels / labeled, nan_labels,
        labeled, NULL, NULL, complete
    FROM latest
    WHERE nan_labels > 0
    UNION ALL
    SELECT window_start, window_end, slice, 'constant', y_true_min, NULL, labeled, NULL, NULL,
        complete
    FROM latest
    WHERE labeled - nan_labels >= 30 AND y_true_min = y_true_max
    UNION ALL
    SELECT window_start, window_end, slice, 'scale', ratio, NULL, labeled, NULL, NULL, complete
    FROM ratios
    WHERE ratio > 10 OR ratio < 0.1
    UNION ALL
    SELECT NULL, NULL, NULL, 'conflicting_duplicate', conflicting / labels, conflicting,
        NULL, NULL, NULL, NULL
    FROM runs
    WHERE conflicting > 0
)
SELECT *
FROM found
ORDER BY window_start NULLS LAST, window_end, slice, reason, low, high
