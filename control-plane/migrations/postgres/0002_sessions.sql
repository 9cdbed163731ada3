-- Kakanai control plane, schema version 2, PostgreSQL: staff sessions.
-- Keep in step with ../sqlite/0002_sessions.sql: same table, columns and keys.
-- A session is bound to the tenant, the staff member and the appliance it was opened
-- on. Only the SHA-256 of the bearer token is kept, so a copy of the database does not
-- let anyone act as a logged-in staff member. Logging out deletes the row; expired
-- rows are deleted by `Store::purge_sessions`.

CREATE TABLE staff_sessions (
    tenant          TEXT COLLATE "C" NOT NULL,
    id              TEXT COLLATE "C" NOT NULL,
    token_hash      BYTEA  NOT NULL CHECK (length(token_hash) = 32),
    login_id        TEXT COLLATE "C" NOT NULL,
    device          TEXT COLLATE "C" NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    last_seen_ms    BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL,
    idle_timeout_ms BIGINT NOT NULL CHECK (idle_timeout_ms > 0),
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, token_hash),
    FOREIGN KEY (tenant, login_id) REFERENCES staff (tenant, login_id) ON DELETE CASCADE
);
CREATE INDEX staff_sessions_by_staff ON staff_sessions (tenant, login_id);
CREATE INDEX staff_sessions_by_expiry ON staff_sessions (expires_at_ms);
