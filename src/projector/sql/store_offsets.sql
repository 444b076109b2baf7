-- The next offset per partition, in the same transaction as the rows.
INSERT INTO projector_offsets (topic, partition, next_offset)
SELECT $1, partition, next_offset
FROM UNNEST($2::int4[], $3::int8[]) AS t (partition, next_offset)
ON CONFLICT (topic, partition) DO UPDATE SET
    next_offset = GREATEST(projector_offsets.next_offset, EXCLUDED.next_offset),
    updated_at = NOW()
