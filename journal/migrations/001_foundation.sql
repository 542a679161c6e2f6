-- Runs, staging, extraction checkpoints, deletions, file blobs and record issues.
-- The id map and the operations log of the load phase join on
-- (run_id, collection, source_id), the key every table here shares.

CREATE TABLE runs (
    run_id       text PRIMARY KEY,
    migration    text NOT NULL,
    source       text NOT NULL,
    destination  text,
    status       text NOT NULL CHECK (status IN ('running', 'interrupted', 'failed', 'extracted', 'completed')),
    snapshot_at  timestamptz NOT NULL,
    settings     jsonb NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    message      text
);
CREATE INDEX runs_migration_idx ON runs (migration, started_at DESC);

CREATE TABLE staged_records (
    run_id        text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    collection    text NOT NULL,
    source_id     text NOT NULL,
    updated_at    timestamptz NOT NULL,
    payload       jsonb NOT NULL,
    content_hash  text NOT NULL,
    staged_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, collection, source_id)
);

-- One row per extraction window; a window is read page by page and its cursor
-- advances in the same transaction that stages the page.
CREATE TABLE checkpoints (
    run_id        text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    collection    text NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz,
    kind          text NOT NULL CHECK (kind IN ('main', 'catchup')),
    expected      integer,
    cursor        text,
    pages         integer NOT NULL DEFAULT 0,
    records       integer NOT NULL DEFAULT 0,
    done          boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, collection, kind, window_start)
);

CREATE TABLE source_deletions (
    run_id      text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    collection  text NOT NULL,
    source_id   text NOT NULL,
    deleted_at  timestamptz NOT NULL,
    PRIMARY KEY (run_id, collection, source_id)
);

-- File content is stored once per sha256, on disk beside the journal.
CREATE TABLE blobs (
    sha256      text PRIMARY KEY,
    size_bytes  bigint NOT NULL,
    path        text NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now()
);

-- Every record the engine could not take as it is: skipped or failed, with why.
CREATE TABLE record_issues (
    run_id      text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    phase       text NOT NULL,
    collection  text NOT NULL,
    source_id   text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('skipped', 'failed', 'warning')),
    code        text NOT NULL,
    message     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, phase, collection, source_id, code)
);
