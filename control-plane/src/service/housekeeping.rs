//! Housekeeping on a timer: the tables that only serve a horizon are kept the size
//! of that horizon instead of growing with every message.
//!
//! - `ingest_messages` (de-duplication ids): kept [`DEDUP_HORIZON_MS`]. An appliance
//!   re-sends what we did not ack until we do, and a re-sent message is sealed again
//!   with a fresh sequence number, so the replay window alone does not refuse a copy
//!   of an old message: the id must be remembered as long as a copy can still come.
//!   Thirty days covers an appliance that got its message through, lost the ack and
//!   then stayed switched off for weeks.
//! - `staff_sessions`: sessions that expired or idled out (the session check refuses
//!   them anyway).
//! - `device_outcomes` (reports kept for other instances, see `outcomes`): a day;
//!   every wait for them lasts minutes.
//!
//! Several instances may run it at once: each statement deletes what is old, and
//! two deleting the same rows do no harm.

use std::time::Duration;

use tokio::sync::watch;

use super::{now_ms, Service, ServiceError};

/// How long a message id is remembered for de-duplication.
pub const DEDUP_HORIZON_MS: i64 = 30 * 24 * 3_600_000;
/// How long a report is kept for another instance.
pub const OUTCOME_HORIZON_MS: i64 = 24 * 3_600_000;
/// How often the housekeeping runs.
pub(crate) const EVERY: Duration = Duration::from_secs(600);

/// What one round removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Housekept {
    /// De-duplication ids older than the horizon.
    pub message_ids: u64,
    /// Dead staff sessions.
    pub sessions: u64,
    /// Reports kept for other instances.
    pub outcomes: u64,
}

impl Service {
    /// Removes what is past its horizon at `now_ms` (see the module docs).
    pub async fn housekeep(&self, now_ms: i64) -> Result<Housekept, ServiceError> {
        let store = &self.inner.store;
        Ok(Housekept {
            message_ids: store
                .prune_messages(now_ms.saturating_sub(DEDUP_HORIZON_MS))
                .await?,
            sessions: store.purge_sessions(now_ms).await?,
            outcomes: store
                .prune_outcomes(now_ms.saturating_sub(OUTCOME_HORIZON_MS))
                .await?,
        })
    }
}

/// Runs [`Service::housekeep`] at start and every [`EVERY`] until shutdown.
pub(crate) async fn run(service: Service, mut shutdown: watch::Receiver<bool>) {
    loop {
        match service.housekeep(now_ms()).await {
            Ok(done) if done != Housekept::default() => tracing::info!(
                message_ids = done.message_ids,
                sessions = done.sessions,
                outcomes = done.outcomes,
                "housekeeping"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "housekeeping failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
