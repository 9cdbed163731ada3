-- Retention of the audit log by fiscal year (N8): a closed year is exported to a
-- self-contained archive file (audit::archive), recorded here, and only then may its
-- entries be deleted, oldest year first, once it is older than the retention period.

CREATE TABLE audit_archives (
    tenant         TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    fiscal_year    BIGINT  NOT NULL,
    -- The year's entries are first_seq..=last_seq (last_seq = first_seq - 1: none).
    first_seq      BIGINT  NOT NULL CHECK (first_seq >= 1),
    last_seq       BIGINT  NOT NULL CHECK (last_seq >= first_seq - 1),
    final_hash     BYTEA   NOT NULL CHECK (length(final_hash) = 32),
    content_sha256 TEXT    NOT NULL,
    file_name      TEXT    NOT NULL,
    archived_at_ms BIGINT  NOT NULL,
    -- TRUE only inside the purge transaction: what lets the delete trigger through.
    purging        BOOLEAN NOT NULL DEFAULT FALSE,
    purged_at_ms   BIGINT,
    PRIMARY KEY (tenant, fiscal_year)
);

-- Where a tenant's log starts once older years are deleted: the number and hash of
-- the last deleted entry, which the first kept entry chains from.
CREATE TABLE audit_bases (
    tenant TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES tenants (id),
    seq    BIGINT NOT NULL CHECK (seq >= 1),
    hash   BYTEA  NOT NULL CHECK (length(hash) = 32)
);

-- Entries stay append-only, except the entries of an archived year being purged.
DROP TRIGGER audit_entries_no_change ON audit_entries;
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION kakanai_audit_append_only();
CREATE FUNCTION kakanai_audit_purge_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM audit_archives a
        WHERE a.tenant = OLD.tenant AND a.purging
          AND OLD.seq BETWEEN a.first_seq AND a.last_seq
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit entries are append-only';
END
$$;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION kakanai_audit_purge_only();
