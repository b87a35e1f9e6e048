-- The revision of the tenant's latest user deletion. A directory process keeps
-- the users it knows to exist (each with the revision it knew it at) so that bulk
-- membership writes need not probe the users table for each id; under the tenant's
-- row lock it reads this column, and a user known at an earlier revision is
-- probed again: another replica may have deleted it.
ALTER TABLE tenants ADD COLUMN users_deleted_revision BIGINT NOT NULL DEFAULT 0;
