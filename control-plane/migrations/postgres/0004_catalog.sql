-- Kakanai control plane, schema version 4, PostgreSQL: the procedure catalogue per
-- tenant. Keep in step with ../sqlite/0004_catalog.sql: same tables, columns and keys.
-- One row per catalogue version (a version directory of the TOML layout), its files
-- kept as uploaded (JSON object: relative path → TOML text) so the exact text an
-- administrator reviewed is what the counter runs. Whether a version is scheduled,
-- active or superseded follows from effective_from and today's date, so it is not
-- stored (it would go stale at midnight).
-- catalog_heads holds a revision per tenant, bumped by every install or deletion in
-- the same transaction: a control-plane instance compares it with the revision of
-- the catalogue it has loaded to know when to reload, and writers serialise on its
-- row lock.

CREATE TABLE catalog_versions (
    tenant          TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    name            TEXT COLLATE "C" NOT NULL,
    version         TEXT   NOT NULL,
    effective_from  TEXT COLLATE "C" NOT NULL CHECK (length(effective_from) = 10),
    files           TEXT   NOT NULL,
    uploaded_at_ms  BIGINT NOT NULL,
    uploaded_by     TEXT   NOT NULL,
    PRIMARY KEY (tenant, name),
    UNIQUE (tenant, effective_from)
);

CREATE TABLE catalog_heads (
    tenant   TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES tenants (id),
    revision BIGINT NOT NULL
);
