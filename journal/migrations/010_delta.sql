-- Delta pickup (crmlift delta): a record deleted at the source may be deleted in the
-- destination too. The operation journals the record's full image (fields as crmlift
-- sent them, its lookups as source references, the id-map hash and the run that wrote
-- it) in pre_image, so a rollback re-creates it by upserting that image on its external id.
ALTER TABLE operations DROP CONSTRAINT operations_action_check;
ALTER TABLE operations ADD CONSTRAINT operations_action_check
    CHECK (action IN ('created', 'updated', 'unchanged', 'failed', 'skipped', 'deleted'));

ALTER TABLE rollback_ops DROP CONSTRAINT rollback_ops_action_check;
ALTER TABLE rollback_ops ADD CONSTRAINT rollback_ops_action_check
    CHECK (action IN ('delete', 'restore', 'recreate'));
ALTER TABLE rollback_ops DROP CONSTRAINT rollback_ops_outcome_check;
ALTER TABLE rollback_ops ADD CONSTRAINT rollback_ops_outcome_check
    CHECK (outcome IN ('pending', 'deleted', 'restored', 'recreated', 'conflict', 'failed'));

-- Every field a delta found changed in the destination since crmlift last wrote it:
-- base (what crmlift wrote), theirs (the destination's value), ours (the source's now),
-- and what the cycle did. Rollback of the delta leaves the fields it kept out of its
-- conflict check: the destination's value there is one the delta chose to keep.
CREATE TABLE delta_conflicts (
    run_id          text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    object          text NOT NULL,
    external_id     text NOT NULL,
    field           text NOT NULL,
    collection      text NOT NULL,
    source_id       text NOT NULL,
    destination_id  text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('conflict', 'destination-only')),
    resolution      text NOT NULL CHECK (resolution IN ('kept', 'written', 'refused')),
    base            jsonb,
    theirs          jsonb,
    ours            jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, object, external_id, field)
);
