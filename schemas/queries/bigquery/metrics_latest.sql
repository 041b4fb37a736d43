-- View {dataset}.metrics_latest: the current answer, one row per
-- (window_start, window_end, slice). Panes accumulate, so the row with the highest
-- pane_index supersedes the earlier ones; emitted_at (UTC) breaks a tie between two
-- writes of the same pane. Create it with:
--   CREATE OR REPLACE VIEW `{dataset}.metrics_latest` AS <this query>
SELECT *
FROM `{dataset}.metrics`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
    PARTITION BY window_start, window_end, slice
    ORDER BY pane_index DESC, emitted_at DESC
) = 1
