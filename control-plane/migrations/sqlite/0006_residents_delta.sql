-- Kakanai control plane, schema version 6, SQLite: delta files (異動分), their order,
-- and the report of every imported file (issue 6). Keep in step with
-- ../postgres/0006_residents_delta.sql.

-- The timestamp (YYYYMMDDhhmmss, from the file name) of the newest file applied for
-- the kind; a delta older than it is refused. NULL: only untimed files so far.
ALTER TABLE resident_imports ADD COLUMN as_of TEXT;

-- One row per file the importer looked at, applied or not. Rejection reasons name a
-- line, a column header and the rule broken, never a value (no personal data here).
CREATE TABLE resident_import_reports (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant         TEXT    NOT NULL REFERENCES tenants (id),
    kind           TEXT    NOT NULL,
    file           TEXT    NOT NULL,
    mode           TEXT    NOT NULL CHECK (mode IN ('full', 'delta')),
    file_hash      BLOB    NOT NULL,
    as_of          TEXT,
    at_ms          INTEGER NOT NULL,
    outcome        TEXT    NOT NULL CHECK (outcome IN ('applied', 'unchanged', 'rejected')),
    rows           INTEGER NOT NULL,
    added          INTEGER NOT NULL,
    changed        INTEGER NOT NULL,
    removed        INTEGER NOT NULL,
    unchanged      INTEGER NOT NULL,
    rejected       INTEGER NOT NULL,
    reasons        TEXT    NOT NULL
) STRICT;
CREATE INDEX resident_import_reports_by_tenant ON resident_import_reports (tenant, id);
CREATE INDEX resident_import_reports_by_hash ON resident_import_reports (tenant, kind, file_hash);
