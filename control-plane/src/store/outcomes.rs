//! What appliances report about this control plane's commands and print jobs, kept
//! for the instance that waits for it (migration 0012).
//!
//! Several instances share one broker through a shared subscription, so the ack of
//! a command, an operation's result or a print job's status may be ingested by an
//! instance other than the one that sent the command and waits for the answer. The
//! ingesting instance writes the report here; the waiting one hears of it in
//! memory when it ingested the report itself, and finds it here otherwise. Rows are
//! housekeeping data (kept a day), not the record: the audit log is.

use super::backend::{check_id, with_pool, Cols};
use super::{Result, Store};
use crate::model::{Ident, TenantId};

/// One report: the message it came in, its body (CBOR) and when it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceOutcome {
    /// The reporting message's id.
    pub message_id: [u8; 16],
    /// The report as CBOR, as the caller wrote it.
    pub body: Vec<u8>,
    /// When it was ingested.
    pub received_at_ms: i64,
}

impl Store {
    /// Keeps a report of `device` about `reference` (a command id or a print job id);
    /// `kind` says what the body is. A second copy of one message changes nothing.
    #[allow(clippy::too_many_arguments)] // one row's columns
    pub async fn record_outcome(
        &self,
        tenant: &TenantId,
        device: &Ident,
        kind: &str,
        reference: &str,
        message_id: &[u8; 16],
        body: &[u8],
        now_ms: i64,
    ) -> Result<()> {
        check_id("outcome kind", kind)?;
        check_id("outcome reference", reference)?;
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO device_outcomes \
                 (tenant, device, kind, reference, message_id, body, received_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(device.as_str())
            .bind(kind)
            .bind(reference)
            .bind(&message_id[..])
            .bind(body)
            .bind(now_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The reports of `device` of this `kind` about `reference`, oldest first.
    pub async fn outcomes(
        &self,
        tenant: &TenantId,
        device: &Ident,
        kind: &str,
        reference: &str,
    ) -> Result<Vec<DeviceOutcome>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT message_id, body, received_at_ms FROM device_outcomes \
                 WHERE tenant = $1 AND device = $2 AND kind = $3 AND reference = $4 \
                 ORDER BY received_at_ms, message_id",
            )
            .bind(tenant.as_str())
            .bind(device.as_str())
            .bind(kind)
            .bind(reference)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    let id: [u8; 16] = r
                        .bytes("message_id")?
                        .try_into()
                        .map_err(|_| super::StoreError::Corrupt("outcome message id"))?;
                    Ok(DeviceOutcome {
                        message_id: id,
                        body: r.bytes("body")?,
                        received_at_ms: r.int("received_at_ms")?,
                    })
                })
                .collect()
        })
    }

    /// Forgets reports received before `before_ms` (all tenants); returns how many.
    pub async fn prune_outcomes(&self, before_ms: i64) -> Result<u64> {
        with_pool!(self, pool => {
            Ok(sqlx::query("DELETE FROM device_outcomes WHERE received_at_ms < $1")
                .bind(before_ms)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }
}
