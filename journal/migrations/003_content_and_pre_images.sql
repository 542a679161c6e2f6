-- The sha256 of the file content an id-map entry last wrote, so a rerun can tell a
-- changed file (upload a new version of it) from changed metadata (update its fields).
ALTER TABLE id_map ADD COLUMN content_sha256 text;

-- The pre-images of a job's updates, read before the job was sent: a crash after the
-- upload recovers the job's results, and rollback still has what each update replaced.
ALTER TABLE load_jobs ADD COLUMN pre_images jsonb;
