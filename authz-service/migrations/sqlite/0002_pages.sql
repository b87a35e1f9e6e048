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
    tenant_id     BLOB PRIMARY KEY,
    generation    INTEGER NOT NULL,
    base_revision INTEGER NOT NULL,
    revision      INTEGER NOT NULL
);

-- A base: the tenant's state in pages (format::Page), applied in any order.
CREATE TABLE projection_pages (
    tenant_id  BLOB NOT NULL,
    generation INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    body       BLOB NOT NULL,
    PRIMARY KEY (tenant_id, generation, seq)
);

-- The change sets applied on top of the base (format::LogEntry), by revision.
CREATE TABLE projection_log (
    tenant_id  BLOB NOT NULL,
    generation INTEGER NOT NULL,
    revision   INTEGER NOT NULL,
    body       BLOB NOT NULL,
    PRIMARY KEY (tenant_id, generation, revision)
);
