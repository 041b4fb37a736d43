-- dead-letter: rejected records counted by record type, source and reason, most
-- frequent first, with the first record of each group (by ingest position) as an
-- example.
WITH ranked AS (
    SELECT
        *,
        count(*) OVER (PARTITION BY record_type, source, reason) AS records,
        min(ingest_position) OVER (PARTITION BY record_type, source, reason) AS first_position,
        row_number() OVER (
            PARTITION BY record_type, source, reason
            ORDER BY ingest_position NULLS LAST, raw_payload NULLS LAST, detail NULLS LAST
        ) AS example_rank
    FROM dead_letter
)
SELECT
    record_type,
    source,
    reason,
    records,
    first_position,
    detail AS example_detail,
    left(raw_payload, 200) AS example_payload
FROM ranked
WHERE example_rank = 1
ORDER BY records DESC, record_type, source, reason
