-- View metrics_latest: the current answer, one row per (window_start, window_end, slice).
-- Panes accumulate, so the row with the highest pane_index supersedes the earlier
-- ones; emitted_at (UTC) breaks a tie between two writes of the same pane.
SELECT *
FROM metrics
QUALIFY row_number() OVER (
    PARTITION BY window_start, window_end, slice
    ORDER BY pane_index DESC, emitted_at DESC
) = 1
