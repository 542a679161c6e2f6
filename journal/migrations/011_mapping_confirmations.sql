-- The operator's confirmations of a mapping file (`crmlift mapping confirm`): which
-- content (its fingerprint, the sha256 of its canonical content) was confirmed for a
-- migration, by whom and when. With [mapping] require_confirmed = true a new run starts
-- only when the plan's mapping file has a confirmation with its current fingerprint.
CREATE TABLE mapping_confirmations (
    confirmation_id  bigserial PRIMARY KEY,
    migration        text NOT NULL,
    fingerprint      text NOT NULL,
    file             text NOT NULL,
    content          jsonb NOT NULL,
    confirmed_by     text NOT NULL,
    confirmed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mapping_confirmations_lookup_idx
    ON mapping_confirmations (migration, fingerprint);
CREATE INDEX mapping_confirmations_latest_idx
    ON mapping_confirmations (migration, confirmed_at DESC);
