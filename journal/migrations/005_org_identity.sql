-- The identity of the org an id map points into (Salesforce organization id,
-- Dataverse OrganizationId), per id-map scope (migration name | org URL). A
-- sandbox refresh or an org reset keeps the URL but not the identity nor a
-- single record id: a changed identity retires the scope's id map (its rows move
-- to the scope '<scope>#org:<old identity>', kept for the record) so the run
-- loads every record as new instead of trusting ids that no longer exist.
CREATE TABLE org_identity (
    migration    text PRIMARY KEY,
    identity     text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
