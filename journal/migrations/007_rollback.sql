-- Rollback: every record a rollback deleted or restored, keyed by the run it undoes, so a
-- rerun (after SIGKILL, days later, from another machine) never deletes or restores twice.
-- 'pending' is written before a restore is sent: a rerun that finds it compares the
-- record with the pre-image instead of taking our own restore for someone else's edit.
CREATE TABLE rollback_ops (
    target_run_id    text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    object           text NOT NULL,
    destination_id   text NOT NULL,
    rollback_run_id  text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    action           text NOT NULL CHECK (action IN ('delete', 'restore')),
    outcome          text NOT NULL
                     CHECK (outcome IN ('pending', 'deleted', 'restored', 'conflict', 'failed')),
    reason           text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_run_id, object, destination_id)
);
