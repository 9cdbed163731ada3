-- Kakanai control plane, schema version 8, SQLite: counter statistics (R9, issue 9).
-- Keep in step with ../postgres/0008_stats.sql.
--
-- The statistics (store/stats.rs) read a tenant's visits by the time they started (a
-- date range in Japan time) and, for each, its applications' procedure, certificate,
-- form, state and acceptance time. Both indexes cover every column that query reads,
-- so it never touches the table rows (an application's row carries its form data,
-- kilobytes each) and never scans visits outside the range: its time depends on the
-- range asked for, not on the years of history (N9). The price is one more index
-- entry to write per visit and per application change.
CREATE INDEX visits_for_stats ON visits (tenant, started_at_ms, id, device, staff);
CREATE INDEX applications_for_stats
    ON applications (tenant, visit, state, accepted_at_ms, procedure, certificate, form);
