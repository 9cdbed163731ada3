-- Kakanai control plane, schema version 7, PostgreSQL: the procedure guide of each
-- life-event visit (issue 9). Keep in step with ../sqlite/0007_counter_guides.sql.
--
-- `counter.create-visit` determines the procedures once and keeps here what the
-- guide (手続き案内) prints: every procedure of every member, with or without a form,
-- reasons, deadlines and counters, as the JSON the document engine's guide layout
-- reads. It is personal data (names, addresses) and lives in the database only, like
-- the applications' data. Kept in the store, not in memory, so any control-plane
-- instance can print the guide of a visit another instance created.
CREATE TABLE counter_guides (
    tenant        TEXT COLLATE "C" NOT NULL,
    visit         TEXT COLLATE "C" NOT NULL,
    data          TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant, visit),
    FOREIGN KEY (tenant, visit) REFERENCES visits (tenant, id)
);
