//! Reports about our commands that another instance ingested.
//!
//! With several instances on one broker (a shared subscription), an appliance's ack
//! of a command, an operation's result or a print job's status reaches whichever
//! instance the broker picks, not necessarily the one that sent the command and
//! waits. The instance that ingests such a report hands it to its own waiters in
//! memory; when the report may be for another instance it also writes it to the
//! store ([`Store::record_outcome`](crate::store::Store::record_outcome)), and every
//! waiter looks there too, every [`POLL`], until its own deadline. A single instance
//! (no `broker.shared_group`) hears of everything in memory: it neither writes nor
//! polls the store.

use std::time::Duration;

use kakanai_protocol::MessageId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{now_ms, Service};
use crate::model::{Ident, TenantId};
use kakanai_protocol::Topic;

/// How often a waiter looks in the store for a report another instance ingested.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// The report kinds kept for other instances.
pub(crate) const COMMAND_ACK: &str = "command-ack";
/// An `operation-result`, by command id.
pub(crate) const OPERATION_RESULT: &str = "operation-result";
/// A `print-status`, by print job id.
pub(crate) const PRINT_STATUS: &str = "print-status";

impl Service {
    /// Keeps `body`, a report of `topic`'s device about `reference`, for the
    /// instance that waits for it. A failure is logged: the waiter then times out,
    /// and the report itself is in the audit log.
    pub(crate) async fn relay_outcome(
        &self,
        topic: &Topic,
        kind: &str,
        reference: &str,
        message: &MessageId,
        body: &impl Serialize,
    ) {
        if !self.inner.shared {
            return;
        }
        let mut bytes = Vec::new();
        if let Err(e) = ciborium::into_writer(body, &mut bytes) {
            return tracing::error!(error = %e, kind, "cannot encode a report for other instances");
        }
        if let Err(e) = self
            .inner
            .store
            .record_outcome(
                &topic.tenant,
                &topic.device,
                kind,
                reference,
                message.as_bytes(),
                &bytes,
                now_ms(),
            )
            .await
        {
            tracing::warn!(error = %e, kind, "cannot keep a report for other instances");
        }
    }

    /// Waits (until cancelled: callers put a deadline around it) for a report of
    /// `device` about `reference` that another instance kept and that `accept`
    /// takes; returns the first, oldest first.
    pub(crate) async fn relayed_outcome<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        device: &Ident,
        kind: &str,
        reference: &str,
        accept: impl Fn(&T) -> bool,
    ) -> T {
        if !self.inner.shared {
            // Nothing is relayed to a single instance: only its own memory answers.
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(POLL).await;
            match self
                .inner
                .store
                .outcomes(tenant, device, kind, reference)
                .await
            {
                Ok(list) => {
                    for o in list {
                        match ciborium::from_reader::<T, _>(&o.body[..]) {
                            Ok(v) if accept(&v) => return v,
                            Ok(_) => {}
                            Err(_) => tracing::warn!(kind, "a kept report does not decode"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, kind, "cannot read kept reports"),
            }
        }
    }
}
