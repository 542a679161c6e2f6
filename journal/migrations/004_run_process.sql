-- The process working on a run (pid, host, and the OS's start time of that process, so a
-- reused pid is not mistaken for it): `crmlift runs` can then tell a run that is still
-- running from one whose process was killed (SIGKILL, OOM, a lost container) and is
-- resumable.
ALTER TABLE runs ADD COLUMN pid integer;
ALTER TABLE runs ADD COLUMN host text;
ALTER TABLE runs ADD COLUMN process_started_at timestamptz;
