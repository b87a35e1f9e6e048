-- The directory's schema on PostgreSQL.
--
-- Every table is keyed by (tenant_id, id): tenant isolation is structural, and every
-- lookup, join and keyset page runs on a primary key or an index that starts with
-- tenant_id. Counters on groups are kept by the writers (one transaction per change)
-- so that listings never count rows.

CREATE TABLE tenants (
    id           UUID PRIMARY KEY,
    display_name TEXT NOT NULL,
    -- Grows by one per committed change; taken with a row lock at the start of every
    -- write transaction, which serializes a tenant's writers in commit order.
    revision     BIGINT NOT NULL,
    create_time  TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    tenant_id    UUID NOT NULL REFERENCES tenants (id),
    id           UUID NOT NULL,
    display_name TEXT NOT NULL,
    email        TEXT NOT NULL,
    -- Lower-cased email: emails are unique per tenant, case-insensitively.
    email_key    TEXT NOT NULL,
    -- Lower-cased display name and email, for substring search.
    search_text  TEXT NOT NULL,
    -- The direct roles, comma-separated catalog names (user_roles indexes them).
    roles        TEXT NOT NULL,
    suspended    BOOLEAN NOT NULL,
    create_time  TIMESTAMPTZ NOT NULL,
    update_time  TIMESTAMPTZ NOT NULL,
    -- The tenant revision of the last change (the etag).
    revision     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email_key)
);

CREATE TABLE user_roles (
    tenant_id UUID NOT NULL,
    user_id   UUID NOT NULL,
    role      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, role),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX user_roles_by_role ON user_roles (tenant_id, role, user_id);

CREATE TABLE groups (
    tenant_id           UUID NOT NULL REFERENCES tenants (id),
    id                  UUID NOT NULL,
    parent_id           UUID,
    display_name        TEXT NOT NULL,
    -- Lower-cased display name: sibling names are unique, case-insensitively.
    name_key            TEXT NOT NULL,
    is_organization     BOOLEAN NOT NULL,
    subgroup_count      BIGINT NOT NULL DEFAULT 0,
    member_count        BIGINT NOT NULL DEFAULT 0,
    administrator_count BIGINT NOT NULL DEFAULT 0,
    -- The roles members inherit, comma-separated catalog names (at most one per tool).
    inherited_roles     TEXT NOT NULL DEFAULT '',
    create_time         TIMESTAMPTZ NOT NULL,
    update_time         TIMESTAMPTZ NOT NULL,
    revision            BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, parent_id) REFERENCES groups (tenant_id, id),
    CHECK (NOT (is_organization AND parent_id IS NOT NULL))
);
CREATE UNIQUE INDEX groups_sibling_name
    ON groups (tenant_id, COALESCE(parent_id, '00000000-0000-0000-0000-000000000000'::uuid), name_key);
CREATE INDEX groups_by_parent ON groups (tenant_id, parent_id, id);

CREATE TABLE memberships (
    tenant_id     UUID NOT NULL,
    group_id      UUID NOT NULL,
    user_id       UUID NOT NULL,
    join_revision BIGINT NOT NULL,
    join_time     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX memberships_by_user ON memberships (tenant_id, user_id, group_id);

CREATE TABLE group_administrators (
    tenant_id UUID NOT NULL,
    group_id  UUID NOT NULL,
    user_id   UUID NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX group_administrators_by_user ON group_administrators (tenant_id, user_id, group_id);

CREATE TABLE catalog_assignments (
    tenant_id   UUID NOT NULL,
    group_id    UUID NOT NULL,
    catalog_id  TEXT NOT NULL,
    assign_time TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, group_id, catalog_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE
);

-- The transactional outbox: one row per committed change, written in the change's
-- own transaction, numbered by the tenant revision it produced.
CREATE TABLE change_events (
    tenant_id   UUID NOT NULL REFERENCES tenants (id),
    revision    BIGINT NOT NULL,
    commit_time TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    changes     JSONB NOT NULL,
    PRIMARY KEY (tenant_id, revision)
);

-- Creates that carried a request_id, so that a retry returns the first result.
-- Tenant creation uses the nil UUID as its scope.
CREATE TABLE idempotency_keys (
    scope       UUID NOT NULL,
    request_id  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    resource_id UUID NOT NULL,
    revision    BIGINT NOT NULL,
    create_time TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, request_id)
);
