-- Killed, timed out and stopped decisions close the row, creating it if its
-- start was never applied. Applying the same decision again writes the same
-- values: idempotent.
INSERT INTO variant_monitoring (
    session_id, variant_id, persona_id, post_id, expected_engagement_rate,
    kill_threshold, min_interactions, started_at, timeout_minutes,
    ended_at, is_active, was_killed, kill_reason, final_engagement_rate,
    final_interaction_count, final_view_count, monitoring_metadata
)
SELECT session_id, variant_id, persona_id, post_id, expected_engagement_rate,
       kill_threshold, min_interactions, started_at, timeout_minutes,
       ended_at, FALSE, was_killed, kill_reason, final_engagement_rate,
       final_interaction_count, final_view_count, monitoring_metadata
FROM UNNEST(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::float8[],
    $6::float8[], $7::int4[], $8::timestamptz[], $9::int4[],
    $10::timestamptz[], $11::bool[], $12::text[], $13::float8[],
    $14::int4[], $15::int4[], $16::jsonb[]
) AS t (
    session_id, variant_id, persona_id, post_id, expected_engagement_rate,
    kill_threshold, min_interactions, started_at, timeout_minutes,
    ended_at, was_killed, kill_reason, final_engagement_rate,
    final_interaction_count, final_view_count, monitoring_metadata
)
ON CONFLICT (session_id) DO UPDATE SET
    ended_at = EXCLUDED.ended_at,
    is_active = FALSE,
    was_killed = EXCLUDED.was_killed,
    kill_reason = EXCLUDED.kill_reason,
    final_engagement_rate = EXCLUDED.final_engagement_rate,
    final_interaction_count = EXCLUDED.final_interaction_count,
    final_view_count = EXCLUDED.final_view_count,
    monitoring_metadata = COALESCE(variant_monitoring.monitoring_metadata, '{}'::jsonb)
                          || EXCLUDED.monitoring_metadata,
    updated_at = NOW()
