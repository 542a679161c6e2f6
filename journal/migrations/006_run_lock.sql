-- What a run was started against (source platform and URL, destination platform and org,
-- mapping settings): `--resume` compares it with the plan it is given and refuses another
-- source, org or mapping, which would mix two tenants in one staging area or id map.
-- NULL for runs started before crmlift recorded it (adopted on their next resume).
ALTER TABLE runs ADD COLUMN fingerprint jsonb;
