//! Signed audit checkpoints on a timer (N8): at least hourly while entries arrive,
//! and at every fiscal-year end, as [`CheckpointPolicy`] decides. A checkpoint pins the
//! head of a tenant's hash chain under the control plane's key, so a rewrite of the
//! log that recomputes every hash is still caught by `audit verify`.

use std::time::Duration;

use tokio::sync::watch;

use super::{now_ms, Service, ServiceError};
use crate::audit::{ChainPoint, Checkpoint, CheckpointPolicy};

/// How often the timer looks; well inside the policy's one-hour interval.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(60);

impl Service {
    /// Signs a checkpoint for every served tenant whose log head is due one at
    /// `now_ms`; returns how many were signed.
    pub async fn sign_due_checkpoints(&self, now_ms: i64) -> Result<usize, ServiceError> {
        let policy = CheckpointPolicy::default();
        let store = &self.inner.store;
        let mut signed = 0;
        for tenant in &self.inner.tenants {
            let head = store.audit_head(tenant).await?;
            if head.seq == 0 {
                continue;
            }
            let head_at = store
                .audit_range(tenant, head.seq, 1)
                .await?
                .first()
                .map_or(now_ms, |e| e.record.at_ms);
            let last = store
                .checkpoints(tenant)
                .await?
                .into_iter()
                .max_by_key(|c| c.seq);
            let due = policy.due(
                Some(ChainPoint {
                    seq: head.seq,
                    at_ms: head_at,
                }),
                last.map(|c| ChainPoint {
                    seq: c.seq,
                    at_ms: c.signed_at_ms,
                }),
                now_ms,
            );
            if due.is_some() {
                let cp = Checkpoint::sign(tenant, head.seq, &head.hash, now_ms, &self.inner.key);
                store.save_checkpoint(&cp).await?;
                tracing::info!(tenant = %tenant, seq = head.seq, reason = ?due, "audit checkpoint signed");
                signed += 1;
            }
        }
        Ok(signed)
    }
}

/// Runs [`Service::sign_due_checkpoints`] every [`CHECK_EVERY`] until shutdown.
pub(crate) async fn run(service: Service, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = service.sign_due_checkpoints(now_ms()).await {
            tracing::error!(error = %e, "cannot sign audit checkpoints");
        }
        tokio::select! {
            () = tokio::time::sleep(CHECK_EVERY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
