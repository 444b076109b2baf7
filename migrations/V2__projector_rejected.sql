-- Decisions the database refused as data (SQLSTATE classes 22 and 23: a
-- value PostgreSQL cannot store, a constraint it breaks). The projector
-- records each here with why, moves past it in the same transaction, and
-- goes on; an operator fixes the cause and replays or patches the row.
-- Texts are stored with U+0000 escaped (as \u0000): that is what the
-- database could not take.
CREATE TABLE projector_rejected (
    topic         TEXT        NOT NULL,
    partition     INTEGER     NOT NULL,
    "offset"      BIGINT      NOT NULL,
    decision_id   TEXT        NOT NULL,
    variant_id    TEXT        NOT NULL,
    sqlstate      TEXT        NOT NULL,
    error         TEXT        NOT NULL,
    -- The whole decision as JSON text (not jsonb, which cannot hold
    -- \u0000 either).
    decision      TEXT        NOT NULL,
    rejected_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
