-- The authorization service's projection of the directory, on SQLite (ids are 16-byte blobs).
--
-- It holds what the service answers from (users, groups, relations) and, per tenant,
-- the revision it reflects. Every change set is applied in one transaction with its
-- checkpoint, so a restart resumes exactly where the projection stopped. No foreign
-- keys: inside a snapshot, changes arrive in any order.

CREATE TABLE checkpoints (
    tenant_id BLOB PRIMARY KEY,
    revision  INTEGER NOT NULL
);

CREATE TABLE users (
    tenant_id BLOB NOT NULL,
    id        BLOB NOT NULL,
    -- Direct roles, comma-separated catalog names.
    roles     TEXT NOT NULL,
    suspended BOOLEAN NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE groups (
    tenant_id       BLOB NOT NULL,
    id              BLOB NOT NULL,
    parent_id       BLOB,
    is_organization BOOLEAN NOT NULL,
    -- Inherited roles, comma-separated catalog names (at most one per tool).
    inherited_roles TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE memberships (
    tenant_id     BLOB NOT NULL,
    group_id      BLOB NOT NULL,
    user_id       BLOB NOT NULL,
    join_revision INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (tenant_id, user_id);

CREATE TABLE administrators (
    tenant_id BLOB NOT NULL,
    group_id  BLOB NOT NULL,
    user_id   BLOB NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id)
);
CREATE INDEX administrators_by_user ON administrators (tenant_id, user_id);

CREATE TABLE catalogs (
    tenant_id  BLOB NOT NULL,
    group_id   BLOB NOT NULL,
    catalog_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, group_id, catalog_id)
);
