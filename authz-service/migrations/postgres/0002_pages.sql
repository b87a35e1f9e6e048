-- The projection as a base of pages and a log of change sets (see
-- src/storage/mod.rs), replacing 0001's table per relation: one statement per
-- change took nearly a minute to rebuild a tenant of 300,000 memberships, and a
-- restart read every row back.
--
-- The tables of 0001 are dropped without conversion: no tenant is then stored,
-- so the service rebuilds its projection from the directory's feed (a snapshot
-- per tenant) at its next start.

DROP TABLE checkpoints;
DROP TABLE users;
DROP TABLE groups;
DROP TABLE memberships;
DROP TABLE administrators;
DROP TABLE catalogs;

-- Per tenant: the live generation of its base and log, the revision the base
-- was taken from, and the checkpoint (the revision base and log reflect).
CREATE TABLE projection_tenants (
    tenant_id     UUID PRIMARY KEY,
    generation    BIGINT NOT NULL,
    base_revision BIGINT NOT NULL,
    revision      BIGINT NOT NULL
);

-- A base: the tenant's state in pages (format::Page), applied in any order.
CREATE TABLE projection_pages (
    tenant_id  UUID NOT NULL,
    generation BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    body       BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, generation, seq)
);

-- The change sets applied on top of the base (format::LogEntry), by revision.
CREATE TABLE projection_log (
    tenant_id  UUID NOT NULL,
    generation BIGINT NOT NULL,
    revision   BIGINT NOT NULL,
    body       BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, generation, revision)
);

-- Pages are already compact protobuf: compressing them (TOAST's default) costs
-- CPU on every write and read for little.
ALTER TABLE projection_pages ALTER COLUMN body SET STORAGE EXTERNAL;
