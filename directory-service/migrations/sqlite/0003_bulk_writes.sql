-- Faster writes, the same rules (see the PostgreSQL migration of the same name).
-- On SQLite the foreign keys of memberships stay: they cost little in process,
-- and the writes that PostgreSQL now relies on (deleting a user's or a group's
-- memberships with it) run here as well. The outbox already keeps its text as is.
SELECT 1;
