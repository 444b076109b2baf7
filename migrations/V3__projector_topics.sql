-- The topic id (KIP-516) of each decisions topic the projector has read,
-- recorded with the first batch applied from it. A topic deleted and
-- created again under the same name gets a new id and starts its offsets
-- at 0 again: the projector sees the id change, forgets the stored offsets
-- of the old topic (in one transaction with the new id) and reads the new
-- one from its beginning, instead of skipping its decisions as applied.
CREATE TABLE projector_topics (
    topic        TEXT        PRIMARY KEY,
    topic_id     TEXT        NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
