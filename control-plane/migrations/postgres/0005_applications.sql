-- Kakanai control plane, schema version 5, PostgreSQL: visits, applications and their
-- export batches (issue 8). Keep in step with ../sqlite/0005_applications.sql: same
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
    tenant  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    series  TEXT COLLATE "C" NOT NULL,
    last    BIGINT NOT NULL CHECK (last >= 1),
    PRIMARY KEY (tenant, series)
);

CREATE TABLE visits (
    tenant        TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id            TEXT COLLATE "C" NOT NULL,
    number        TEXT COLLATE "C" NOT NULL,
    device        TEXT    NOT NULL,
    staff         TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    started_at_ms BIGINT NOT NULL,
    ended_at_ms   BIGINT,
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, number)
);

CREATE TABLE applications (
    tenant           TEXT COLLATE "C" NOT NULL,
    id               TEXT COLLATE "C" NOT NULL,
    number           TEXT COLLATE "C" NOT NULL,
    visit            TEXT COLLATE "C" NOT NULL,
    form             TEXT COLLATE "C" NOT NULL,
    procedure        TEXT,
    certificate      TEXT,
    subject          TEXT,
    state            TEXT COLLATE "C" NOT NULL CHECK (state IN ('draft', 'printed', 'accepted', 'exported', 'completed', 'cancelled')),
    data             TEXT    NOT NULL,
    my_number_sealed TEXT,
    pdf_sha256       TEXT    CHECK (pdf_sha256 IS NULL OR length(pdf_sha256) = 64),
    pdf_pages        BIGINT  CHECK (pdf_pages IS NULL OR pdf_pages >= 1),
    cancel_reason    TEXT,
    cancel_note      TEXT,
    export_batch     TEXT,
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL,
    created_by       TEXT    NOT NULL,
    printed_by       TEXT,
    printed_at_ms    BIGINT,
    accepted_by      TEXT,
    accepted_at_ms   BIGINT,
    exported_at_ms   BIGINT,
    completed_by     TEXT,
    completed_at_ms  BIGINT,
    cancelled_by     TEXT,
    cancelled_at_ms  BIGINT,
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, number),
    FOREIGN KEY (tenant, visit) REFERENCES visits (tenant, id)
);
-- The export reads accepted applications per form; the counter UI lists a visit's;
-- `--again` reads a batch's.
CREATE INDEX applications_by_state ON applications (tenant, state, form);
CREATE INDEX applications_by_visit ON applications (tenant, visit);
CREATE INDEX applications_by_batch ON applications (tenant, export_batch);

CREATE TABLE export_batches (
    tenant        TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    id            TEXT COLLATE "C" NOT NULL,
    created_at_ms BIGINT NOT NULL,
    applications  BIGINT NOT NULL CHECK (applications >= 0),
    manifest      TEXT    NOT NULL,
    PRIMARY KEY (tenant, id)
);
