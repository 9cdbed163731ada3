-- Kakanai control plane, schema version 9, SQLite: the card lookup's two indexes
-- cover what it compares (issue 6, N9). Keep in step with
-- ../postgres/0009_residents_lookup_cover.sql.
--
-- A card lookup reads everyone born on the card's birth date and everyone with the
-- card's folded name, and compares name and address before reading any full row. At
-- 10⁷ residents a birth date has a few hundred people; with the folded name, folded
-- address and 宛名番号 in the index those are read from the index alone (SQLite; on
-- PostgreSQL an index-only scan once the table is vacuumed), not from a few hundred
-- rows of the table. The trailing columns keep the prefix search's order (key, birth
-- date).
DROP INDEX residents_by_birth;
CREATE INDEX residents_by_birth ON residents (tenant, birth_date, name_key, address_key, atena);
DROP INDEX residents_by_name;
CREATE INDEX residents_by_name ON residents (tenant, name_key, birth_date, address_key, atena);
