//! `procedures.determine`: the counter UI's RPC for a determination (issue 7, item 5).
//!
//! The request is a [`DeterminationInput`] (the same JSON the CLI's `determine` reads,
//! carried as CBOR), the response the [`Determination`](super::Determination). The
//! caller needs the staff permission `procedure.determine`. The catalogue is the one
//! stored for the caller's tenant: loaded once per tenant and kept, and reloaded when
//! the tenant's catalogue revision in the store has moved (an install or deletion,
//! from this instance, another instance or the CLI). Checking the revision costs one
//! primary-key read per call, which keeps every instance current without a message
//! bus; loading (parsing and type-checking every rule) happens only on a change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kakanai_protocol::catalogue::RpcError;

use super::{determine, CatalogueSet, DeterminationInput, RulesError};
use crate::model::TenantId;
use crate::rpc::{RpcContext, RpcFuture, RpcHandler};
use crate::staff::permissions::PROCEDURE_DETERMINE;
use crate::store::Store;

/// The method's wire name.
pub const METHOD: &str = "procedures.determine";

/// The `procedures.determine` handler.
#[derive(Debug)]
pub struct DetermineHandler {
    store: Store,
    /// Tenant → (revision loaded, catalogue). A std mutex: it is never held across
    /// an await, only to look up or swap an `Arc`.
    cache: Mutex<HashMap<TenantId, (i64, Arc<CatalogueSet>)>>,
}

impl DetermineHandler {
    /// A handler reading the catalogues stored in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's catalogue, reloaded if its stored revision moved.
    pub async fn catalogue(&self, tenant: &TenantId) -> Result<Arc<CatalogueSet>, RpcError> {
        let revision = self
            .store
            .catalogue_revision(tenant)
            .await
            .map_err(|_| internal())?;
        if let Some((rev, set)) = self.lock().get(tenant) {
            if *rev == revision {
                return Ok(Arc::clone(set));
            }
        }
        let (revision, files) = self
            .store
            .catalogue_files(tenant)
            .await
            .map_err(|_| internal())?;
        if files.is_empty() {
            return Err(RpcError {
                code: "no-catalogue".into(),
                message: "手続き定義が登録されていません".into(),
            });
        }
        // Stored versions were validated on install, so this fails only if the
        // validation rules got stricter since; then nothing can be determined until
        // an administrator fixes the catalogue, which the logs must say.
        let set = Arc::new(CatalogueSet::load_from_files(&files).map_err(|errors| {
            tracing::error!(
                tenant = tenant.as_str(),
                errors = errors.len(),
                "the stored catalogue no longer validates"
            );
            internal()
        })?);
        self.lock()
            .insert(tenant.clone(), (revision, Arc::clone(&set)));
        Ok(set)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, (i64, Arc<CatalogueSet>)>> {
        // A panic elsewhere while holding the lock cannot leave the map half-written
        // (insert and get are single operations), so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn internal() -> RpcError {
    RpcError {
        code: "internal".into(),
        message: "システムエラーが発生しました".into(),
    }
}

impl RpcHandler for DetermineHandler {
    fn method(&self) -> &'static str {
        METHOD
    }

    fn handle<'a>(&'a self, ctx: &'a RpcContext, params: ciborium::Value) -> RpcFuture<'a> {
        Box::pin(async move {
            ctx.require(PROCEDURE_DETERMINE)?;
            // The decoder's message is dropped: it could quote a resident's data.
            let input: DeterminationInput = params.deserialized().map_err(|_| RpcError {
                code: "invalid-params".into(),
                message: "パラメータが正しくありません".into(),
            })?;
            let set = self.catalogue(&ctx.tenant).await?;
            let result = determine(&set, &input).map_err(|e| match e {
                RulesError::NoVersion(date) => RpcError {
                    code: "no-catalogue-version".into(),
                    message: format!("{date} に適用される手続き定義がありません"),
                },
                RulesError::Input(m) => RpcError {
                    code: "invalid-params".into(),
                    message: m,
                },
                RulesError::Catalogue(_) | RulesError::InputFile { .. } => internal(),
            })?;
            ciborium::Value::serialized(&result).map_err(|_| internal())
        })
    }
}
