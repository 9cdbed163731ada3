-- Kakanai control plane, schema version 2, SQLite: staff sessions.
-- Keep in step with ../postgres/0002_sessions.sql: same table, columns and keys.
-- A session is bound to the tenant, the staff member and the appliance it was opened
-- on. Only the SHA-256 of the bearer token is kept, so a copy of the database does not
-- let anyone act as a logged-in staff member. Logging out deletes the row; expired
-- rows are deleted by `Store::purge_sessions`.

CREATE TABLE staff_sessions (
    tenant          TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    token_hash      BLOB    NOT NULL CHECK (length(token_hash) = 32),
    login_id        TEXT    NOT NULL,
    device          TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    last_seen_ms    INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    idle_timeout_ms INTEGER NOT NULL CHECK (idle_timeout_ms > 0),
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, token_hash),
    FOREIGN KEY (tenant, login_id) REFERENCES staff (tenant, login_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX staff_sessions_by_staff ON staff_sessions (tenant, login_id);
CREATE INDEX staff_sessions_by_expiry ON staff_sessions (expires_at_ms);
