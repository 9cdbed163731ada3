-- Kakanai control plane, schema version 5, SQLite: visits, applications and their
-- export batches (issue 8). Keep in step with ../postgres/0005_applications.sql: same
-- tables, columns and keys.
--
-- A visit (受付) groups the applications of one household at one counter. An
-- application is one printed form: its data as filled (JSON text; names and addresses
-- live here and nowhere else), its state (draft → printed → accepted → exported →
-- completed, or cancelled before exported), who did each step and when, the printed
-- PDF's SHA-256 and page count, and the export batch that carried it. A 個人番号, when
-- a form needs one, is kept only sealed (residents::crypt) in my_number_sealed.
-- Numbers readable on paper come from number_series: one row per (tenant, series),
-- bumped inside the transaction that uses the number, so numbers are never reused.

CREATE TABLE number_series (
    tenant  TEXT    NOT NULL REFERENCES tenants (id),
    series  TEXT    NOT NULL,
    last    INTEGER NOT NULL CHECK (last >= 1),
    PRIMARY KEY (tenant, series)
) STRICT;

CREATE TABLE visits (
    tenant        TEXT    NOT NULL REFERENCES tenants (id),
    id            TEXT    NOT NULL,
    number        TEXT    NOT NULL,
    device        TEXT    NOT NULL,
    staff         TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER,
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, number)
) STRICT;

CREATE TABLE applications (
    tenant           TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    number           TEXT    NOT NULL,
    visit            TEXT    NOT NULL,
    form             TEXT    NOT NULL,
    procedure        TEXT,
    certificate      TEXT,
    subject          TEXT,
    state            TEXT    NOT NULL CHECK (state IN ('draft', 'printed', 'accepted', 'exported', 'completed', 'cancelled')),
    data             TEXT    NOT NULL,
    my_number_sealed TEXT,
    pdf_sha256       TEXT    CHECK (pdf_sha256 IS NULL OR length(pdf_sha256) = 64),
    pdf_pages        INTEGER CHECK (pdf_pages IS NULL OR pdf_pages >= 1),
    cancel_reason    TEXT,
    cancel_note      TEXT,
    export_batch     TEXT,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    created_by       TEXT    NOT NULL,
    printed_by       TEXT,
    printed_at_ms    INTEGER,
    accepted_by      TEXT,
    accepted_at_ms   INTEGER,
    exported_at_ms   INTEGER,
    completed_by     TEXT,
    completed_at_ms  INTEGER,
    cancelled_by     TEXT,
    cancelled_at_ms  INTEGER,
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, number),
    FOREIGN KEY (tenant, visit) REFERENCES visits (tenant, id)
) STRICT;
-- The export reads accepted applications per form; the counter UI lists a visit's;
-- `--again` reads a batch's.
CREATE INDEX applications_by_state ON applications (tenant, state, form);
CREATE INDEX applications_by_visit ON applications (tenant, visit);
CREATE INDEX applications_by_batch ON applications (tenant, export_batch);

CREATE TABLE export_batches (
    tenant        TEXT    NOT NULL REFERENCES tenants (id),
    id            TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    applications  INTEGER NOT NULL CHECK (applications >= 0),
    manifest      TEXT    NOT NULL,
    PRIMARY KEY (tenant, id)
) STRICT;
