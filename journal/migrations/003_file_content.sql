-- The sha256 of the file content an id-map entry last wrote, so a rerun can tell a
-- changed file (upload a new version of it) from changed metadata (update its fields).
ALTER TABLE id_map ADD COLUMN content_sha256 text;
