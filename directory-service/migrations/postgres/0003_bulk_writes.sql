-- Faster writes, the same rules.
--
-- Memberships lose their foreign keys: checking them cost two index probes per
-- row in a trigger (half the time of adding 1,000 members). Every write that adds
-- memberships checks, under the tenant's lock, that the group and the users
-- exist, and deleting a user or a group deletes its memberships in the same
-- transaction (tests check that none is left behind).
ALTER TABLE memberships
    DROP CONSTRAINT memberships_tenant_id_group_id_fkey,
    DROP CONSTRAINT memberships_tenant_id_user_id_fkey;

-- The same for a user's roles, written with the user in the same transaction
-- (a bulk import writes 1,000 users and their 3,000 roles at once): deleting a
-- user deletes its roles explicitly.
ALTER TABLE user_roles DROP CONSTRAINT user_roles_tenant_id_user_id_fkey;

-- The outbox keeps change sets as written: `json` stores the text after a light
-- check, where `jsonb` parsed and rebuilt every change set of every write (and
-- nothing queries inside them).
ALTER TABLE change_events ALTER COLUMN changes TYPE json USING changes::json;
