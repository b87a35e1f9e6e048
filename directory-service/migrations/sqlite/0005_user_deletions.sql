-- The revision of the tenant's latest user deletion (see the PostgreSQL migration:
-- only the PostgreSQL backend remembers known users, but user deletion is shared
-- SQL and writes the column on both).
ALTER TABLE tenants ADD COLUMN users_deleted_revision BIGINT NOT NULL DEFAULT 0;
