//! RPC dispatch: the methods appliances call on the control plane.
//!
//! Each feature registers [`RpcHandler`]s (method name → handler) with a
//! [`Dispatcher`]. Before a handler runs, the dispatcher has already verified the
//! message (signature, device key bound to the topic, replay window, expiry) and
//! resolved the staff session named in the request — a session is valid only from
//! the appliance it was opened on. Handlers check their own permission with
//! [`RpcContext::require`], and every call is written to the audit log by the
//! service.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kakanai_protocol::catalogue::RpcError;
use kakanai_protocol::topic::Ident;

/// A staff member's session, resolved from the request's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffSession {
    /// The session id (not the bearer token).
    pub session_id: String,
    /// The staff member's login id.
    pub staff_id: String,
    /// The appliance the session was opened on.
    pub device: Ident,
    /// What the staff member may do (union of their groups' permissions).
    pub permissions: BTreeSet<String>,
}

/// Who calls, from where.
#[derive(Debug, Clone)]
pub struct RpcContext {
    /// The tenant (city) of the calling device.
    pub tenant: Ident,
    /// The calling device.
    pub device: Ident,
    /// The staff session, if the request named a valid one.
    pub session: Option<StaffSession>,
    /// Now, ms since the epoch (the dispatcher's clock).
    pub now_ms: i64,
}

impl RpcContext {
    /// The session, or `unauthenticated`.
    pub fn staff(&self) -> Result<&StaffSession, RpcError> {
        self.session.as_ref().ok_or_else(|| RpcError {
            code: "unauthenticated".into(),
            message: "ログインしてください".into(),
        })
    }

    /// The session, if it holds `permission`; else `forbidden`.
    pub fn require(&self, permission: &str) -> Result<&StaffSession, RpcError> {
        let staff = self.staff()?;
        if staff.permissions.contains(permission) {
            Ok(staff)
        } else {
            Err(RpcError {
                code: "forbidden".into(),
                message: format!("権限がありません（{permission}）"),
            })
        }
    }
}

/// What a handler returns.
pub type RpcResult = Result<ciborium::Value, RpcError>;

/// A boxed handler future.
pub type RpcFuture<'a> = Pin<Box<dyn Future<Output = RpcResult> + Send + 'a>>;

/// One RPC method.
pub trait RpcHandler: Send + Sync {
    /// The method's wire name (`RpcMethod::NAME`).
    fn method(&self) -> &'static str;
    /// Runs the method.
    fn handle<'a>(&'a self, ctx: &'a RpcContext, params: ciborium::Value) -> RpcFuture<'a>;
}

/// Method name → handler.
#[derive(Default, Clone)]
pub struct Dispatcher {
    handlers: BTreeMap<&'static str, Arc<dyn RpcHandler>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("methods", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Dispatcher {
    /// An empty dispatcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a handler; a second handler for the same method replaces the first.
    pub fn register(&mut self, handler: Arc<dyn RpcHandler>) {
        self.handlers.insert(handler.method(), handler);
    }

    /// The registered method names.
    pub fn methods(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.keys().copied()
    }

    /// Runs `method`; `unknown-method` when nothing is registered for it.
    pub async fn dispatch(
        &self,
        ctx: &RpcContext,
        method: &str,
        params: ciborium::Value,
    ) -> RpcResult {
        match self.handlers.get(method) {
            Some(h) => h.handle(ctx, params).await,
            None => Err(RpcError {
                code: "unknown-method".into(),
                message: format!(
                    "unknown method {:?}",
                    method.chars().take(64).collect::<String>()
                ),
            }),
        }
    }
}

/// `ping`: echoes its text; needs no session. Lets an appliance check the whole path.
#[derive(Debug)]
pub struct PingHandler;

impl RpcHandler for PingHandler {
    fn method(&self) -> &'static str {
        "ping"
    }

    fn handle<'a>(&'a self, _ctx: &'a RpcContext, params: ciborium::Value) -> RpcFuture<'a> {
        Box::pin(async move { Ok(params) })
    }
}
