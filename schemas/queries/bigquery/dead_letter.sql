-- dead-letter: rejected records counted by record type, source and reason, most
-- frequent first, with the first record of each group (by ingest position) as an
-- example.
WITH ranked AS (
    SELECT
        *,
        COUNT(*) OVER (PARTITION BY record_type, source, reason) AS records,
        MIN(ingest_position) OVER (PARTITION BY record_type, source, reason) AS first_position,
        ROW_NUMBER() OVER (
            PARTITION BY record_type, source, reason
            ORDER BY ingest_position NULLS LAST, raw_payload NULLS LAST, detail NULLS LAST
        ) AS example_rank
    FROM `{dataset}.dead_letter`
)
SELECT
    record_type,
    source,
    reason,
    records,
    first_position,
    detail AS example_detail,
    LEFT(raw_payload, 200) AS example_payload
FROM ranked
WHERE example_rank = 1
ORDER BY records DESC, record_type, source, reason
