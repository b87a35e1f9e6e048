-- PostgreSQL only (its index on a user's memberships, deduplicated); SQLite keeps
-- (tenant_id, user_id, group_id), which it has no deduplication to shrink.
SELECT 1;
