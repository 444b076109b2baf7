-- The shadow policies' decisions (`earlykill project --shadow`), one row
-- per policy and session: the columns of variant_monitoring, with
-- session_id = `<session>~<policy>` (unique, so every write is idempotent
-- as in variant_monitoring) and the policy derived from it. Nothing acts
-- on these rows: they are for comparing a candidate policy, or the
-- held-out share (policy `holdout`), with the live one.
CREATE TABLE variant_monitoring_shadow (
    LIKE variant_monitoring INCLUDING DEFAULTS INCLUDING IDENTITY,
    PRIMARY KEY (id),
    UNIQUE (session_id),
    policy TEXT GENERATED ALWAYS AS (split_part(session_id, '~', 2)) STORED
);

CREATE INDEX ix_variant_monitoring_shadow_policy_variant
    ON variant_monitoring_shadow (policy, variant_id);
