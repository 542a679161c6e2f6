-- Sample runs: which staged records a sample loads (chosen once, so a resumed sample
-- loads and reads back the same records), the mapping fingerprint the sample was made
-- with, and the operator's approvals that let a full run with
-- [migration] require_approved_sample = true start.
CREATE TABLE sample_runs (
    run_id               text PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    requested            integer NOT NULL CHECK (requested > 0),
    destination          text NOT NULL,
    -- set when the sample's diff is written: the mapping it was checked with
    mapping_fingerprint  text,
    created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sample_records (
    run_id      text NOT NULL REFERENCES sample_runs (run_id) ON DELETE CASCADE,
    collection  text NOT NULL,
    source_id   text NOT NULL,
    reason      text NOT NULL,
    PRIMARY KEY (run_id, collection, source_id)
);

CREATE TABLE sample_approvals (
    approval_id          bigserial PRIMARY KEY,
    migration            text NOT NULL,
    run_id               text NOT NULL REFERENCES sample_runs (run_id) ON DELETE CASCADE,
    mapping_fingerprint  text NOT NULL,
    approved_by          text NOT NULL,
    approved_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sample_approvals_lookup_idx ON sample_approvals (migration, mapping_fingerprint);
