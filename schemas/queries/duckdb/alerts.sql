-- alerts: every SLO alert transition, in event-time order of its label frontier
-- (watermark: when a streaming run saw it; null in bounded runs; fired_24h: the
-- alert's firings in the trailing day of frontier time, 3 or more: flapping).
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
    fired_24h,
    summary
FROM alerts
ORDER BY frontier, alert, state DESC
