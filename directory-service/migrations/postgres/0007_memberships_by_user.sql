-- A user's memberships are found on (tenant_id, user_id) alone. The index that
-- held the group too, (tenant_id, user_id, group_id), took every membership as a
-- distinct 48-byte key inserted at a random place: at 3M memberships it was as
-- large as the table, and a bulk AddGroupMembers dirtied a page of it per row,
-- which PostgreSQL wrote out of shared buffers itself. Without the group, the
-- keys of a user repeat, and B-tree deduplication (PostgreSQL 13 and later)
-- keeps one key with a list of rows: a tenth of the size. What read the group
-- from it reads the primary key (tenant_id, group_id, user_id) instead: the
-- group's members listing reads one range of it per group (storage/sql/members.rs).
-- Built once, under a lock that holds writes to the table while it builds.
CREATE INDEX memberships_by_user_only ON memberships (tenant_id, user_id);
DROP INDEX memberships_by_user;
ALTER INDEX memberships_by_user_only RENAME TO memberships_by_user;
