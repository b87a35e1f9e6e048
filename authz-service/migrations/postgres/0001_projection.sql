-- The authorization service's projection of the directory, on PostgreSQL.
--
-- It holds what the service answers from (users, groups, relations) and, per tenant,
-- the revision it reflects. Every change set is applied in one transaction with its
-- checkpoint, so a restart resumes exactly where the projection stopped. No foreign
-- keys: inside a snapshot, changes arrive in any order.

CREATE TABLE checkpoints (
    tenant_id UUID PRIMARY KEY,
    revision  BIGINT NOT NULL
);

CREATE TABLE users (
    tenant_id UUID NOT NULL,
    id        UUID NOT NULL,
    -- Direct roles, comma-separated catalog names.
    roles     TEXT NOT NULL,
    suspended BOOLEAN NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE groups (
    tenant_id       UUID NOT NULL,
    id              UUID NOT NULL,
    parent_id       UUID,
    is_organization BOOLEAN NOT NULL,
    -- Inherited roles, comma-separated catalog names (at most one per tool).
    inherited_roles TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE memberships (
    tenant_id     UUID NOT NULL,
    group_id      UUID NOT NULL,
    user_id       UUID NOT NULL,
    join_revision BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (tenant_id, user_id);

CREATE TABLE administrators (
    tenant_id UUID NOT NULL,
    group_id  UUID NOT NULL,
    user_id   UUID NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id)
);
CREATE INDEX administrators_by_user ON administrators (tenant_id, user_id);

CREATE TABLE catalogs (
    tenant_id  UUID NOT NULL,
    group_id   UUID NOT NULL,
    catalog_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, group_id, catalog_id)
);
