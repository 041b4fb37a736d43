-- View `{project}.{dataset}.metrics_latest`: the current answer, one row per
-- (window_start, window_end, slice). Panes accumulate, so the row with the highest
-- pane_index supersedes the earlier ones; emitted_at (UTC) breaks a tie between two
-- writes of the same pane (a streaming-insert retry that BigQuery did not dedupe).
-- A filter on window_start is pushed below the window function (it is a PARTITION BY
-- column), so it prunes the metrics table's day partitions. msewatch creates the view
-- with: CREATE OR REPLACE VIEW `{project}.{dataset}.metrics_latest` AS <this query>
SELECT *
FROM `{project}.{dataset}.metrics`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
    PARTITION BY window_start, window_end, slice
    ORDER BY pane_index DESC, emitted_at DESC
) = 1
