-- The directory's schema on SQLite (same shape as PostgreSQL's; ids are 16-byte blobs).
--
-- Every table is keyed by (tenant_id, id): tenant isolation is structural, and every
-- lookup, join and keyset page runs on a primary key or an index that starts with
-- tenant_id. Counters on groups are kept by the writers (one transaction per change)
-- so that listings never count rows.

CREATE TABLE tenants (
    id           BLOB PRIMARY KEY,
    display_name TEXT NOT NULL,
    -- Grows by one per committed change; written first in every
    -- write transaction, so the write lock is held from the start.
    revision     INTEGER NOT NULL,
    create_time  TEXT NOT NULL
);

CREATE TABLE users (
    tenant_id    BLOB NOT NULL REFERENCES tenants (id),
    id           BLOB NOT NULL,
    display_name TEXT NOT NULL,
    email        TEXT NOT NULL,
    -- Lower-cased email: emails are unique per tenant, case-insensitively.
    email_key    TEXT NOT NULL,
    -- Lower-cased display name and email, for substring search.
    search_text  TEXT NOT NULL,
    -- The direct roles, comma-separated catalog names (user_roles indexes them).
    roles        TEXT NOT NULL,
    suspended    BOOLEAN NOT NULL,
    create_time  TEXT NOT NULL,
    update_time  TEXT NOT NULL,
    -- The tenant revision of the last change (the etag).
    revision     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email_key)
);

CREATE TABLE user_roles (
    tenant_id BLOB NOT NULL,
    user_id   BLOB NOT NULL,
    role      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, role),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX user_roles_by_role ON user_roles (tenant_id, role, user_id);

CREATE TABLE groups (
    tenant_id           BLOB NOT NULL REFERENCES tenants (id),
    id                  BLOB NOT NULL,
    parent_id           BLOB,
    display_name        TEXT NOT NULL,
    -- Lower-cased display name: sibling names are unique, case-insensitively.
    name_key            TEXT NOT NULL,
    is_organization     BOOLEAN NOT NULL,
    subgroup_count      INTEGER NOT NULL DEFAULT 0,
    member_count        INTEGER NOT NULL DEFAULT 0,
    administrator_count INTEGER NOT NULL DEFAULT 0,
    -- The roles members inherit, comma-separated catalog names (at most one per tool).
    inherited_roles     TEXT NOT NULL DEFAULT '',
    create_time         TEXT NOT NULL,
    update_time         TEXT NOT NULL,
    revision            INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, parent_id) REFERENCES groups (tenant_id, id),
    CHECK (NOT (is_organization AND parent_id IS NOT NULL))
);
CREATE UNIQUE INDEX groups_sibling_name
    ON groups (tenant_id, COALESCE(parent_id, X'00000000000000000000000000000000'), name_key);
CREATE INDEX groups_by_parent ON groups (tenant_id, parent_id, id);

CREATE TABLE memberships (
    tenant_id     BLOB NOT NULL,
    group_id      BLOB NOT NULL,
    user_id       BLOB NOT NULL,
    join_revision INTEGER NOT NULL,
    join_time     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX memberships_by_user ON memberships (tenant_id, user_id, group_id);

CREATE TABLE group_administrators (
    tenant_id BLOB NOT NULL,
    group_id  BLOB NOT NULL,
    user_id   BLOB NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX group_administrators_by_user ON group_administrators (tenant_id, user_id, group_id);

CREATE TABLE catalog_assignments (
    tenant_id   BLOB NOT NULL,
    group_id    BLOB NOT NULL,
    catalog_id  TEXT NOT NULL,
    assign_time TEXT NOT NULL,
    PRIMARY KEY (tenant_id, group_id, catalog_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE
);

-- The transactional outbox: one row per committed change, written in the change's
-- own transaction, numbered by the tenant revision it produced.
CREATE TABLE change_events (
    tenant_id   BLOB NOT NULL REFERENCES tenants (id),
    revision    INTEGER NOT NULL,
    commit_time TEXT NOT NULL,
    actor       TEXT NOT NULL,
    changes     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, revision)
);

-- Creates that carried a request_id, so that a retry returns the first result.
-- Tenant creation uses the nil BLOB as its scope.
CREATE TABLE idempotency_keys (
    scope       BLOB NOT NULL,
    request_id  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    resource_id BLOB NOT NULL,
    revision    INTEGER NOT NULL,
    create_time TEXT NOT NULL,
    PRIMARY KEY (scope, request_id)
);
