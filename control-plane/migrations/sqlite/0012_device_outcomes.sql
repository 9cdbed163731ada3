-- Kakanai control plane, schema version 12, SQLite: what appliances report about
-- the commands and print jobs of this control plane, for the instance that waits
-- for it. With several instances on one broker (shared subscription) the report
-- may be ingested by another instance than the one that sent the command; that
-- instance writes it here and the waiting one finds it. Keep in step with
-- ../postgres/0012_device_outcomes.sql.
--
-- `kind`: command-ack, operation-result or print-status; `reference`: the command
-- id (hex) or the print job id; `body`: the report as CBOR. Kept a day (the
-- service's housekeeping prunes older rows): waits last minutes.
CREATE TABLE device_outcomes (
    tenant         TEXT    NOT NULL,
    device         TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    reference      TEXT    NOT NULL,
    message_id     BLOB    NOT NULL CHECK (length(message_id) = 16),
    body           BLOB    NOT NULL,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, device, kind, reference, message_id)
) STRICT;
CREATE INDEX device_outcomes_by_time ON device_outcomes (received_at_ms);
