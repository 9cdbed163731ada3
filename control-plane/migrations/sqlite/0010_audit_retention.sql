-- Retention of the audit log by fiscal year (N8): a closed year is exported to a
-- self-contained archive file (audit::archive), recorded here, and only then may its
-- entries be deleted, oldest year first, once it is older than the retention period.

CREATE TABLE audit_archives (
    tenant         TEXT    NOT NULL REFERENCES tenants (id),
    fiscal_year    INTEGER NOT NULL,
    -- The year's entries are first_seq..=last_seq (last_seq = first_seq - 1: none).
    first_seq      INTEGER NOT NULL CHECK (first_seq >= 1),
    last_seq       INTEGER NOT NULL CHECK (last_seq >= first_seq - 1),
    final_hash     BLOB    NOT NULL CHECK (length(final_hash) = 32),
    content_sha256 TEXT    NOT NULL,
    file_name      TEXT    NOT NULL,
    archived_at_ms INTEGER NOT NULL,
    -- 1 only inside the purge transaction: what lets the delete trigger through.
    purging        INTEGER NOT NULL DEFAULT 0 CHECK (purging IN (0, 1)),
    purged_at_ms   INTEGER,
    PRIMARY KEY (tenant, fiscal_year)
) STRICT;

-- Where a tenant's log starts once older years are deleted: the number and hash of
-- the last deleted entry, which the first kept entry chains from.
CREATE TABLE audit_bases (
    tenant TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id),
    seq    INTEGER NOT NULL CHECK (seq >= 1),
    hash   BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

-- Entries stay append-only, except the entries of an archived year being purged.
DROP TRIGGER audit_entries_no_delete;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
WHEN NOT EXISTS (
    SELECT 1 FROM audit_archives a
    WHERE a.tenant = OLD.tenant AND a.purging = 1
      AND OLD.seq BETWEEN a.first_seq AND a.last_seq
)
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;
