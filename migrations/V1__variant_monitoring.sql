-- The variant_monitoring table: one row per monitoring session, projected
-- from the decisions topic. Columns and defaults follow the seeds' table;
-- timestamps are timestamptz. session_id makes every write idempotent.
CREATE TABLE variant_monitoring (
    id                       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- variant_id@posted_at+timeout m: the decision ids' session part.
    session_id               TEXT NOT NULL UNIQUE,
    variant_id               VARCHAR NOT NULL,
    persona_id               VARCHAR NOT NULL,
    post_id                  VARCHAR,
    expected_engagement_rate DOUBLE PRECISION NOT NULL,
    kill_threshold           DOUBLE PRECISION DEFAULT 0.5,
    min_interactions         INTEGER DEFAULT 10,
    started_at               TIMESTAMPTZ NOT NULL,
    ended_at                 TIMESTAMPTZ,
    timeout_minutes          INTEGER DEFAULT 10,
    is_active                BOOLEAN DEFAULT TRUE,
    was_killed               BOOLEAN DEFAULT FALSE,
    kill_reason              VARCHAR,
    final_engagement_rate    DOUBLE PRECISION,
    final_interaction_count  INTEGER,
    final_view_count         INTEGER,
    monitoring_metadata      JSONB,
    created_at               TIMESTAMPTZ DEFAULT NOW(),
    updated_at               TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX ix_variant_monitoring_variant_id ON variant_monitoring (variant_id);
CREATE INDEX ix_variant_monitoring_persona_id ON variant_monitoring (persona_id);
CREATE INDEX ix_variant_monitoring_is_active ON variant_monitoring (is_active);
CREATE INDEX ix_variant_monitoring_variant_active
    ON variant_monitoring (variant_id, is_active)
    WHERE is_active = TRUE;

-- Next offset to apply per decisions-topic partition, written in the same
-- transaction as the rows: the projector's exactly-once bookmark.
CREATE TABLE projector_offsets (
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset BIGINT  NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (topic, partition)
);
