-- The load phase: the id map, the operations log (with pre-images for rollback)
-- and the destination's asynchronous jobs, journaled before their data is sent.

-- One row per destination record crmlift wrote, keyed by the external id it
-- carries (Source_System_ID__c), across every run of a migration.
CREATE TABLE id_map (
    migration       text NOT NULL,
    object          text NOT NULL,
    external_id     text NOT NULL,
    collection      text NOT NULL,
    source_id       text NOT NULL,
    destination_id  text NOT NULL,
    payload_hash    text NOT NULL,
    run_id          text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, object, external_id)
);
CREATE INDEX id_map_source_idx ON id_map (migration, collection, source_id);

CREATE TABLE operations (
    op_id           bigserial PRIMARY KEY,
    run_id          text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    collection      text NOT NULL,
    source_id       text NOT NULL,
    object          text,
    external_id     text,
    action          text NOT NULL
                    CHECK (action IN ('created', 'updated', 'unchanged', 'failed', 'skipped')),
    destination_id  text,
    reason_code     text,
    message         text,
    pre_image       jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operations_run_idx ON operations (run_id, collection, action);

-- A destination job (Salesforce Bulk API 2.0 ingest) is journaled the moment it
-- exists, before any record is uploaded, so a crash recovers its results
-- instead of loading the same records again.
CREATE TABLE load_jobs (
    job_id       text PRIMARY KEY,
    run_id       text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    platform     text NOT NULL,
    object       text NOT NULL,
    collection   text NOT NULL,
    state        text NOT NULL CHECK (state IN ('open', 'uploaded', 'done', 'aborted')),
    records      integer NOT NULL,
    -- [external_id, source_id, payload_hash] of every record in the job, so
    -- recovered results can be journaled without the original batch.
    members      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
