-- The latest session of one variant, for the status endpoint.
SELECT session_id, variant_id, persona_id, post_id, expected_engagement_rate,
       kill_threshold, min_interactions, timeout_minutes, started_at, ended_at,
       is_active, was_killed, kill_reason, final_engagement_rate,
       final_interaction_count, final_view_count,
       monitoring_metadata->>'ended_by', monitoring_metadata->>'end_reason'
FROM variant_monitoring
WHERE variant_id = $1
ORDER BY started_at DESC
LIMIT 1
