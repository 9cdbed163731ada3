//! The counter UI's RPC methods for applications.
//!
//! | method | permission | params | result |
//! | --- | --- | --- | --- |
//! | `applications.create-certificate-request` | `application.create` | [`CertificateRequestParams`] | [`ListResponse`] (one application per request form) |
//! | `applications.accept` | `application.create` | [`AcceptParams`] (number from the scanned code) | [`ApplicationRecord`] |
//! | `applications.cancel` | `application.create` | [`CancelParams`] | [`ApplicationRecord`] |
//! | `applications.list` | `application.view` | [`ListParams`] (a visit) | [`ListResponse`] |
//! | `applications.print` | `application.create` | [`super::print::PrintParams`] | [`super::print::PrintResponse`] (registered by `serve`: it needs the document engine and the running service) |
//!
//! Error codes: `invalid-params` (the message never quotes the parameters: they hold
//! personal data), `unauthenticated`, `forbidden`, `not-found`, `illegal-transition`,
//! `invalid-certificate-request` (the message names the item and field),
//! `no-catalogue`, `internal` (details only in the control plane's log).
//!
//! Every call is made by the session's staff member at the calling appliance; both are
//! recorded on the application and in the audit entry.

use std::sync::Arc;

use kakanai_protocol::catalogue::RpcError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    ApplicationError, ApplicationRecord, CancelReason, CertificateRequest, TransitionError,
};
use crate::model::TenantId;
use crate::rpc::{Dispatcher, RpcContext, RpcFuture, RpcHandler, RpcResult};
use crate::rules::rpc::DetermineHandler;
use crate::staff::permissions::{APPLICATION_CREATE, APPLICATION_VIEW};
use crate::store::{Store, StoreError};

/// `applications.create-certificate-request` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequestParams {
    /// The visit it belongs to; absent: a new certificate visit is started.
    #[serde(default)]
    pub visit: Option<String>,
    /// The request.
    pub request: CertificateRequest,
}

/// `applications.accept` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptParams {
    /// The application number read from the form's 2-D code.
    pub number: String,
}

/// `applications.cancel` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelParams {
    /// The application number.
    pub number: String,
    /// Why.
    pub reason: CancelReason,
    /// A note kept on the application (not in the audit log).
    #[serde(default)]
    pub note: String,
}

/// `applications.list` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// The visit id.
    pub visit: String,
}

/// `applications.list` result.
#[derive(Debug, Clone, Serialize)]
pub struct ListResponse {
    /// The visit's applications, by number.
    pub applications: Vec<ApplicationRecord>,
}

struct Shared {
    store: Store,
    catalogues: DetermineHandler,
}

fn err(code: &str, message: impl Into<String>) -> RpcError {
    RpcError {
        code: code.into(),
        message: message.into(),
    }
}

fn internal() -> RpcError {
    err("internal", "システムエラーが発生しました")
}

fn params<T: DeserializeOwned>(p: ciborium::Value) -> Result<T, RpcError> {
    // The decoder's message is dropped: it could quote a resident's data.
    p.deserialized()
        .map_err(|_| err("invalid-params", "パラメータが正しくありません"))
}

fn reply<T: Serialize>(v: &T) -> RpcResult {
    ciborium::Value::serialized(v).map_err(|_| internal())
}

fn map_error(e: ApplicationError) -> RpcError {
    match e {
        ApplicationError::Transition(TransitionError::Illegal { from, to }) => err(
            "illegal-transition",
            format!("{}の申請は{}にできません", from.label(), to.label()),
        ),
        ApplicationError::Transition(TransitionError::Invalid(m)) => err("invalid-params", m),
        ApplicationError::Certificate(c) => err("invalid-certificate-request", c.to_string()),
        ApplicationError::UnknownNumber(_) | ApplicationError::Store(StoreError::NotFound(_)) => {
            err("not-found", "申請が見つかりません")
        }
        other => {
            tracing::error!(error = %other, "application RPC failed");
            internal()
        }
    }
}

fn act(ctx: &RpcContext, staff: &str) -> super::Act {
    super::Act::staff_at(staff, ctx.device.as_str(), ctx.now_ms)
}

macro_rules! handler {
    ($(#[$m:meta])* $name:ident, $method:literal, |$shared:ident, $ctx:ident, $p:ident| $body:expr) => {
        $(#[$m])*
        pub struct $name(Arc<Shared>);

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($name))
            }
        }

        impl RpcHandler for $name {
            fn method(&self) -> &'static str {
                $method
            }

            fn handle<'a>(&'a self, $ctx: &'a RpcContext, $p: ciborium::Value) -> RpcFuture<'a> {
                let $shared = &self.0;
                Box::pin(async move { $body })
            }
        }
    };
}

handler!(
    /// `applications.create-certificate-request`.
    CreateCertificateRequest,
    "applications.create-certificate-request",
    |shared, ctx, p| {
        let staff = ctx.require(APPLICATION_CREATE)?;
        let p: CertificateRequestParams = params(p)?;
        let tenant: &TenantId = &ctx.tenant;
        let store = &shared.store;
        let set = shared.catalogues.catalogue(tenant).await?;
        let today = crate::store::applications::jst_date(ctx.now_ms);
        let catalogue = set
            .for_date(today)
            .ok_or_else(|| err("no-catalogue", "手続き定義が登録されていません"))?;
        // Checked before a visit is started for it, so a refused request leaves nothing.
        p.request
            .validate(catalogue)
            .map_err(|e| map_error(e.into()))?;
        let visit = match &p.visit {
            Some(id) => store
                .visit(tenant, id)
                .await
                .map_err(|_| internal())?
                .ok_or_else(|| err("not-found", "受付が見つかりません"))?,
            None => super::start_visit(
                store,
                tenant,
                ctx.device.as_str(),
                &staff.staff_id,
                "certificate",
                ctx.now_ms,
            )
            .await
            .map_err(map_error)?,
        };
        let city = store
            .get_tenant(tenant)
            .await
            .map_err(|_| internal())?
            .map(|t| t.name)
            .unwrap_or_default();
        let applications = super::create_certificate_request(
            store, tenant, &visit, &p.request, catalogue, &city, ctx.now_ms,
        )
        .await
        .map_err(map_error)?;
        reply(&ListResponse { applications })
    }
);

handler!(
    /// `applications.accept`.
    Accept,
    "applications.accept",
    |shared, ctx, p| {
        let staff = ctx.require(APPLICATION_CREATE)?;
        let p: AcceptParams = params(p)?;
        let app = super::accept_by_number(
            &shared.store,
            &ctx.tenant,
            &p.number,
            &act(ctx, &staff.staff_id),
        )
        .await
        .map_err(map_error)?;
        reply(&app)
    }
);

handler!(
    /// `applications.cancel`.
    Cancel,
    "applications.cancel",
    |shared, ctx, p| {
        let staff = ctx.require(APPLICATION_CREATE)?;
        let p: CancelParams = params(p)?;
        let app = shared
            .store
            .application_by_number(&ctx.tenant, &p.number)
            .await
            .map_err(|_| internal())?
            .ok_or_else(|| err("not-found", "申請が見つかりません"))?;
        let app = super::cancel(
            &shared.store,
            &ctx.tenant,
            &app.id,
            p.reason,
            &p.note,
            &act(ctx, &staff.staff_id),
        )
        .await
        .map_err(map_error)?;
        reply(&app)
    }
);

handler!(
    /// `applications.list`.
    List,
    "applications.list",
    |shared, ctx, p| {
        ctx.require(APPLICATION_VIEW)?;
        let p: ListParams = params(p)?;
        let applications = shared
            .store
            .visit_applications(&ctx.tenant, &p.visit)
            .await
            .map_err(|_| internal())?;
        reply(&ListResponse { applications })
    }
);

/// Registers the four methods with `dispatcher`.
pub fn register(dispatcher: &mut Dispatcher, store: Store) {
    let shared = Arc::new(Shared {
        catalogues: DetermineHandler::new(store.clone()),
        store,
    });
    dispatcher.register(Arc::new(CreateCertificateRequest(Arc::clone(&shared))));
    dispatcher.register(Arc::new(Accept(Arc::clone(&shared))));
    dispatcher.register(Arc::new(Cancel(Arc::clone(&shared))));
    dispatcher.register(Arc::new(List(shared)));
}
