-- Started decisions open a row; a row that exists (the same decision again,
-- or its end applied first) is left as it is.
INSERT INTO variant_monitoring (
    session_id, variant_id, persona_id, post_id, expected_engagement_rate,
    kill_threshold, min_interactions, started_at, timeout_minutes,
    monitoring_metadata
)
SELECT * FROM UNNEST(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::float8[],
    $6::float8[], $7::int4[], $8::timestamptz[], $9::int4[],
    $10::jsonb[]
)
ON CONFLICT (session_id) DO NOTHING
