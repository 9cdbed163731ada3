-- Kakanai control plane, schema version 11, SQLite: search keys on the records of
-- the other kinds, so the counter finds a person moving in (転出証明書情報) from a
-- card through an index instead of reading the whole kind (issue 6, N9). Keep in
-- step with ../postgres/0011_record_match_keys.sql.
--
-- The importer fills them for the kinds whose mapping has the field (NULL
-- otherwise): the folded 氏名 (`name`), the 生年月日 (`birth_date`, YYYY-MM-DD) and
-- the folded 世帯主 (`head_name`, to find a declared household). The indexes are
-- partial, so the kinds without these fields cost nothing more to import.
ALTER TABLE resident_records ADD COLUMN name_key TEXT;
ALTER TABLE resident_records ADD COLUMN birth_date TEXT;
ALTER TABLE resident_records ADD COLUMN head_key TEXT;
CREATE INDEX resident_records_by_name ON resident_records (tenant, kind, name_key)
    WHERE name_key IS NOT NULL;
CREATE INDEX resident_records_by_birth ON resident_records (tenant, kind, birth_date)
    WHERE birth_date IS NOT NULL;
CREATE INDEX resident_records_by_head ON resident_records (tenant, kind, head_key)
    WHERE head_key IS NOT NULL;

-- Records imported before this migration: the birth date is copied from the stored
-- fields here; the folded keys need the importer's folding, so those rows' hashes
-- are cleared and the next import of their kind writes them again with their keys
-- (reported once as changed).
UPDATE resident_records SET birth_date = NULLIF(json_extract(data, '$.birth_date'), '')
    WHERE json_valid(data);
UPDATE resident_records SET row_hash = X''
    WHERE json_valid(data)
      AND (json_extract(data, '$.name') IS NOT NULL OR json_extract(data, '$.head_name') IS NOT NULL);
