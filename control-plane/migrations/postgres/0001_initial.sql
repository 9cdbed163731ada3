-- Kakanai control plane, schema version 1, PostgreSQL.
-- Keep in step with ../sqlite/0001_initial.sql: same tables, columns and keys.
-- Every row carries its tenant and every key starts with it, so no query can reach
-- another city's rows through a key. Times are milliseconds since the Unix epoch (UTC).
-- Identifier columns use COLLATE "C" so that ordering and comparison are bytewise, as
-- in SQLite; otherwise lists would come back in a different order per backend.

CREATE TABLE tenants (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name          TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- The fleet registry.
CREATE TABLE devices (
    tenant         TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id             TEXT COLLATE "C" NOT NULL,
    counter_name   TEXT    NOT NULL,
    location       TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('enrolled', 'active', 'revoked')),
    firmware       TEXT,
    last_seen_ms   BIGINT,
    boot_counter   BIGINT  NOT NULL DEFAULT 0 CHECK (boot_counter >= 0),
    online         BOOLEAN NOT NULL DEFAULT FALSE,
    enrolled_at_ms BIGINT  NOT NULL,
    revoked_at_ms  BIGINT,
    PRIMARY KEY (tenant, id)
);

-- A kid names one key of one device within a tenant (the replay window is kept per kid).
CREATE TABLE device_keys (
    tenant        TEXT COLLATE "C" NOT NULL,
    kid           BYTEA  NOT NULL,
    device        TEXT COLLATE "C" NOT NULL,
    public_key    BYTEA  NOT NULL CHECK (length(public_key) = 32),
    status        TEXT   NOT NULL CHECK (status IN ('active', 'revoked')),
    added_at_ms   BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    PRIMARY KEY (tenant, kid),
    FOREIGN KEY (tenant, device) REFERENCES devices (tenant, id)
);
CREATE INDEX device_keys_by_device ON device_keys (tenant, device);

-- Message ids already acted on. No foreign key: this is the ingest hot path, and a
-- message reaches it only after its signature verified against a registered key.
CREATE TABLE ingest_messages (
    tenant         TEXT COLLATE "C" NOT NULL,
    device         TEXT COLLATE "C" NOT NULL,
    message_id     BYTEA  NOT NULL CHECK (length(message_id) = 16),
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, device, message_id)
);
CREATE INDEX ingest_messages_by_time ON ingest_messages (received_at_ms);

-- Replay window per sender key, opaque to the store.
CREATE TABLE replay_windows (
    tenant        TEXT COLLATE "C" NOT NULL,
    kid           BYTEA  NOT NULL,
    state         BYTEA  NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, kid)
);

-- Staff accounts (N5). password_hash is an argon2id PHC string made by the caller.
CREATE TABLE staff (
    tenant               TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    login_id             TEXT COLLATE "C" NOT NULL,
    display_name         TEXT    NOT NULL,
    password_hash        TEXT    NOT NULL,
    failed_attempts      BIGINT  NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_until_ms      BIGINT,
    disabled             BOOLEAN NOT NULL DEFAULT FALSE,
    must_change_password BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms        BIGINT  NOT NULL,
    updated_at_ms        BIGINT  NOT NULL,
    PRIMARY KEY (tenant, login_id)
);

-- Groups and their permissions (N6).
CREATE TABLE staff_groups (
    tenant      TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    name        TEXT COLLATE "C" NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE group_permissions (
    tenant     TEXT COLLATE "C" NOT NULL,
    group_name TEXT COLLATE "C" NOT NULL,
    permission TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, group_name, permission),
    FOREIGN KEY (tenant, group_name) REFERENCES staff_groups (tenant, name) ON DELETE CASCADE
);

CREATE TABLE group_members (
    tenant     TEXT COLLATE "C" NOT NULL,
    group_name TEXT COLLATE "C" NOT NULL,
    login_id   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, group_name, login_id),
    FOREIGN KEY (tenant, group_name) REFERENCES staff_groups (tenant, name) ON DELETE CASCADE,
    FOREIGN KEY (tenant, login_id) REFERENCES staff (tenant, login_id) ON DELETE CASCADE
);
CREATE INDEX group_members_by_staff ON group_members (tenant, login_id);

-- The audit chain (N7, N8). One head row per tenant, created with the tenant, is the
-- row every append locks (SELECT … FOR UPDATE), so concurrent appenders from several
-- control-plane instances cannot fork the chain.
CREATE TABLE audit_heads (
    tenant TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES tenants (id),
    seq    BIGINT NOT NULL CHECK (seq >= 0),
    hash   BYTEA  NOT NULL CHECK (length(hash) = 32)
);

-- `record` is the record's JSON as hashed (TEXT, not JSONB: JSONB would rewrite it);
-- the other columns are copies for search.
CREATE TABLE audit_entries (
    tenant     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    seq        BIGINT NOT NULL CHECK (seq >= 1),
    at_ms      BIGINT NOT NULL,
    actor_kind TEXT COLLATE "C" NOT NULL,
    actor_id   TEXT COLLATE "C",
    action     TEXT COLLATE "C" NOT NULL,
    resident   TEXT COLLATE "C",
    record     TEXT   NOT NULL,
    hash       BYTEA  NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (tenant, seq)
);
CREATE INDEX audit_entries_by_time ON audit_entries (tenant, at_ms);
CREATE INDEX audit_entries_by_actor ON audit_entries (tenant, actor_kind, actor_id);
CREATE INDEX audit_entries_by_resident ON audit_entries (tenant, resident);

-- Entries are append-only: the store never changes or removes one, and neither may
-- anything else without first dropping these triggers (which a later, deliberate
-- migration for fiscal-year archives would do).
CREATE FUNCTION kakanai_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only';
END
$$;
CREATE TRIGGER audit_entries_no_change BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION kakanai_audit_append_only();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION kakanai_audit_append_only();

CREATE TABLE audit_checkpoints (
    tenant       TEXT COLLATE "C" NOT NULL,
    seq          BIGINT NOT NULL,
    hash         BYTEA  NOT NULL CHECK (length(hash) = 32),
    signed_at_ms BIGINT NOT NULL,
    signature    BYTEA  NOT NULL,
    key_id       BYTEA  NOT NULL,
    PRIMARY KEY (tenant, seq),
    FOREIGN KEY (tenant, seq) REFERENCES audit_entries (tenant, seq)
);
