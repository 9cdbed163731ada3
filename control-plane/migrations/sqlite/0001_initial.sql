-- Kakanai control plane, schema version 1, SQLite.
-- Keep in step with ../postgres/0001_initial.sql: same tables, columns and keys.
-- Every row carries its tenant and every key starts with it, so no query can reach
-- another city's rows through a key. Times are milliseconds since the Unix epoch (UTC).
-- STRICT tables make SQLite check column types like PostgreSQL does.

CREATE TABLE tenants (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- The fleet registry.
CREATE TABLE devices (
    tenant         TEXT    NOT NULL REFERENCES tenants (id),
    id             TEXT    NOT NULL,
    counter_name   TEXT    NOT NULL,
    location       TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('enrolled', 'active', 'revoked')),
    firmware       TEXT,
    last_seen_ms   INTEGER,
    boot_counter   INTEGER NOT NULL DEFAULT 0 CHECK (boot_counter >= 0),
    online         INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1)),
    enrolled_at_ms INTEGER NOT NULL,
    revoked_at_ms  INTEGER,
    PRIMARY KEY (tenant, id)
) STRICT;

-- A kid names one key of one device within a tenant (the replay window is kept per kid).
CREATE TABLE device_keys (
    tenant        TEXT    NOT NULL,
    kid           BLOB    NOT NULL,
    device        TEXT    NOT NULL,
    public_key    BLOB    NOT NULL CHECK (length(public_key) = 32),
    status        TEXT    NOT NULL CHECK (status IN ('active', 'revoked')),
    added_at_ms   INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    PRIMARY KEY (tenant, kid),
    FOREIGN KEY (tenant, device) REFERENCES devices (tenant, id)
) STRICT;
CREATE INDEX device_keys_by_device ON device_keys (tenant, device);

-- Message ids already acted on. No foreign key: this is the ingest hot path, and a
-- message reaches it only after its signature verified against a registered key.
CREATE TABLE ingest_messages (
    tenant         TEXT    NOT NULL,
    device         TEXT    NOT NULL,
    message_id     BLOB    NOT NULL CHECK (length(message_id) = 16),
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, device, message_id)
) STRICT;
CREATE INDEX ingest_messages_by_time ON ingest_messages (received_at_ms);

-- Replay window per sender key, opaque to the store.
CREATE TABLE replay_windows (
    tenant        TEXT    NOT NULL,
    kid           BLOB    NOT NULL,
    state         BLOB    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, kid)
) STRICT;

-- Staff accounts (N5). password_hash is an argon2id PHC string made by the caller.
CREATE TABLE staff (
    tenant               TEXT    NOT NULL REFERENCES tenants (id),
    login_id             TEXT    NOT NULL,
    display_name         TEXT    NOT NULL,
    password_hash        TEXT    NOT NULL,
    failed_attempts      INTEGER NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_until_ms      INTEGER,
    disabled             INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1)),
    created_at_ms        INTEGER NOT NULL,
    updated_at_ms        INTEGER NOT NULL,
    PRIMARY KEY (tenant, login_id)
) STRICT;

-- Groups and their permissions (N6).
CREATE TABLE staff_groups (
    tenant      TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
) STRICT;

CREATE TABLE group_permissions (
    tenant     TEXT NOT NULL,
    group_name TEXT NOT NULL,
    permission TEXT NOT NULL,
    PRIMARY KEY (tenant, group_name, permission),
    FOREIGN KEY (tenant, group_name) REFERENCES staff_groups (tenant, name) ON DELETE CASCADE
) STRICT;

CREATE TABLE group_members (
    tenant     TEXT NOT NULL,
    group_name TEXT NOT NULL,
    login_id   TEXT NOT NULL,
    PRIMARY KEY (tenant, group_name, login_id),
    FOREIGN KEY (tenant, group_name) REFERENCES staff_groups (tenant, name) ON DELETE CASCADE,
    FOREIGN KEY (tenant, login_id) REFERENCES staff (tenant, login_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX group_members_by_staff ON group_members (tenant, login_id);

-- The audit chain (N7, N8). One head row per tenant, created with the tenant, is the
-- lock every append takes, so concurrent appenders cannot fork the chain.
CREATE TABLE audit_heads (
    tenant TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id),
    seq    INTEGER NOT NULL CHECK (seq >= 0),
    hash   BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

-- `record` is the record's JSON as hashed; the other columns are copies for search.
CREATE TABLE audit_entries (
    tenant     TEXT    NOT NULL REFERENCES tenants (id),
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    at_ms      INTEGER NOT NULL,
    actor_kind TEXT    NOT NULL,
    actor_id   TEXT,
    action     TEXT    NOT NULL,
    resident   TEXT,
    record     TEXT    NOT NULL,
    hash       BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (tenant, seq)
) STRICT;
CREATE INDEX audit_entries_by_time ON audit_entries (tenant, at_ms);
CREATE INDEX audit_entries_by_actor ON audit_entries (tenant, actor_kind, actor_id);
CREATE INDEX audit_entries_by_resident ON audit_entries (tenant, resident);

-- Entries are append-only: the store never changes or removes one, and neither may
-- anything else without first dropping these triggers (which a later, deliberate
-- migration for fiscal-year archives would do).
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TABLE audit_checkpoints (
    tenant       TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    hash         BLOB    NOT NULL CHECK (length(hash) = 32),
    signed_at_ms INTEGER NOT NULL,
    signature    BLOB    NOT NULL,
    key_id       BLOB    NOT NULL,
    PRIMARY KEY (tenant, seq),
    FOREIGN KEY (tenant, seq) REFERENCES audit_entries (tenant, seq)
) STRICT;
