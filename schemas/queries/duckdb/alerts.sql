-- alerts: every SLO alert transition, in event-time order of its label frontier
-- (watermark: when a streaming run saw it; null in bounded runs).
SELECT
    frontier,
    watermark,
    alert,
    state,
    severity,
    slo,
    slice,
    burn_rate_long,
    burn_rate_short,
    burn_rate_threshold,
    budget_remaining,
    value,
    summary
FROM alerts
ORDER BY frontier, alert, state DESC
