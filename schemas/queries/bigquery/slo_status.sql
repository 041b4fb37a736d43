-- slo-status: the latest evaluation of every SLO and slice: state, SLI, objective,
-- budget left, burn rates per lookback, the label frontier and its window's label lag.
SELECT
    s.slo,
    s.slice,
    s.page_state,
    s.ticket_state,
    s.sli,
    s.value,
    s.threshold,
    s.objective,
    s.good_share,
    s.budget_remaining,
    s.lookbacks_s,
    s.burn_rates,
    s.frontier,
    m.label_lag_p90_s
FROM (
    SELECT *
    FROM `{dataset}.slo_status`
    QUALIFY row_number() OVER (
        PARTITION BY slo, slice ORDER BY frontier DESC, emitted_at DESC) = 1
) AS s
LEFT JOIN `{dataset}.metrics_latest` AS m
    ON m.slice = s.slice AND m.window_end = s.frontier
ORDER BY s.slo, s.slice = 'overall' DESC, s.slice
