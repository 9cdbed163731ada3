-- Kakanai control plane, schema version 3, PostgreSQL: residents and the data imported
-- from the core systems (R1, R8). Keep in step with ../sqlite/0003_residents.sql.
-- Key and search-key columns use COLLATE "C" (bytewise, like SQLite), so prefix
-- ranges and ordering agree between the backends.
-- Every row carries its tenant and every key starts with it.
--
-- Text is stored exactly as the core system wrote it (IVS selectors, characters
-- outside the BMP, 旧字体); the *_key columns hold the folded forms used only for
-- matching (residents::fold). `data` is the row's mapped fields as JSON, with the
-- 個人番号 (if any) encrypted; `row_hash` lets a re-import tell unchanged rows apart
-- without reading them.

-- 住民記録: one row per 宛名番号.
CREATE TABLE residents (
    tenant         TEXT COLLATE "C"    NOT NULL REFERENCES tenants (id),
    atena          TEXT COLLATE "C"    NOT NULL,
    household      TEXT COLLATE "C"    NOT NULL,
    name           TEXT    NOT NULL,
    kana           TEXT    NOT NULL,
    birth_date     TEXT COLLATE "C"    NOT NULL,
    sex            TEXT    NOT NULL,
    relation       TEXT    NOT NULL,
    machiaza       TEXT COLLATE "C"    NOT NULL,
    address        TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    name_key       TEXT COLLATE "C"    NOT NULL,
    kana_key       TEXT COLLATE "C"    NOT NULL,
    address_key    TEXT COLLATE "C"    NOT NULL,
    data           TEXT    NOT NULL,
    row_hash       BYTEA   NOT NULL,
    imported_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant, atena)
);
-- Card lookup reads by birth date and by folded name; prefix search by either key
-- (range scans, so their cost depends on the matches, not on the city's size: N9).
CREATE INDEX residents_by_birth ON residents (tenant, birth_date);
CREATE INDEX residents_by_name ON residents (tenant, name_key, birth_date);
CREATE INDEX residents_by_kana ON residents (tenant, kana_key, birth_date);
CREATE INDEX residents_by_household ON residents (tenant, household);

-- Households, derived from residents in the same transaction as each import.
CREATE TABLE resident_households (
    tenant     TEXT COLLATE "C"    NOT NULL REFERENCES tenants (id),
    household  TEXT COLLATE "C"    NOT NULL,
    head_atena TEXT,
    machiaza   TEXT COLLATE "C"    NOT NULL,
    address    TEXT    NOT NULL,
    members    BIGINT  NOT NULL CHECK (members >= 0),
    PRIMARY KEY (tenant, household)
);

-- Every other kind: one row per key of the kind's mapping, attached to a 宛名番号
-- where the kind has one (the address master has none).
CREATE TABLE resident_records (
    tenant         TEXT COLLATE "C"    NOT NULL REFERENCES tenants (id),
    kind           TEXT COLLATE "C"    NOT NULL,
    rkey           TEXT COLLATE "C"    NOT NULL,
    atena          TEXT,
    data           TEXT    NOT NULL,
    row_hash       BYTEA   NOT NULL,
    imported_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant, kind, rkey)
);
CREATE INDEX resident_records_by_atena ON resident_records (tenant, atena, kind);

-- The last applied import of each kind (what the report of the next one compares to).
CREATE TABLE resident_imports (
    tenant         TEXT COLLATE "C"    NOT NULL REFERENCES tenants (id),
    kind           TEXT COLLATE "C"    NOT NULL,
    file           TEXT    NOT NULL,
    rows           BIGINT  NOT NULL,
    file_hash      BYTEA   NOT NULL,
    imported_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant, kind)
);
