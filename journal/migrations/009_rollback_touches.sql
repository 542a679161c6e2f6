-- Point-in-time undo (--to-before) rolls several runs back, newest first. Undoing a newer
-- run restores records an older run wrote, so the older run's conflict check asks when
-- crmlift's own rollbacks last touched each record, whatever run they undid: by record,
-- not by target run, which the primary key cannot serve.
CREATE INDEX rollback_ops_record_idx ON rollback_ops (object, destination_id)
    WHERE outcome IN ('restored', 'deleted');
