-- Kakanai control plane, schema version 6, PostgreSQL: delta files (異動分), their
-- order, and the report of every imported file (issue 6). Keep in step with
-- ../sqlite/0006_residents_delta.sql.

-- The timestamp (YYYYMMDDhhmmss, from the file name) of the newest file applied for
-- the kind; a delta older than it is refused. NULL: only untimed files so far.
ALTER TABLE resident_imports ADD COLUMN as_of TEXT COLLATE "C";

-- One row per file the importer looked at, applied or not. Rejection reasons name a
-- line, a column header and the rule broken, never a value (no personal data here).
CREATE TABLE resident_import_reports (
    id             BIGSERIAL PRIMARY KEY,
    tenant         TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    kind           TEXT COLLATE "C" NOT NULL,
    file           TEXT    NOT NULL,
    mode           TEXT    NOT NULL CHECK (mode IN ('full', 'delta')),
    file_hash      BYTEA   NOT NULL,
    as_of          TEXT COLLATE "C",
    at_ms          BIGINT  NOT NULL,
    outcome        TEXT    NOT NULL CHECK (outcome IN ('applied', 'unchanged', 'rejected')),
    rows           BIGINT  NOT NULL,
    added          BIGINT  NOT NULL,
    changed        BIGINT  NOT NULL,
    removed        BIGINT  NOT NULL,
    unchanged      BIGINT  NOT NULL,
    rejected       BIGINT  NOT NULL,
    reasons        TEXT    NOT NULL
);
CREATE INDEX resident_import_reports_by_tenant ON resident_import_reports (tenant, id);
CREATE INDEX resident_import_reports_by_hash ON resident_import_reports (tenant, kind, file_hash);
