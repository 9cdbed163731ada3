//! Staff sessions for RPCs: the seam to the staff module.
//!
//! An RPC request may name a session token. The service asks a [`SessionResolver`]
//! what it stands for, then keeps the session only if it was opened on the very
//! appliance the request came from (checked again here, whatever the resolver does).
//! [`NoSessions`] — the default until staff login exists — resolves nothing, so every
//! method that needs a session answers `unauthenticated`.

use std::future::Future;
use std::pin::Pin;

use crate::model::{Ident, TenantId};
use crate::rpc::StaffSession;

/// What [`SessionResolver::resolve`] returns.
pub type SessionFuture<'a> = Pin<Box<dyn Future<Output = Option<StaffSession>> + Send + 'a>>;

/// Turns a bearer token from an RPC request into a staff session.
pub trait SessionResolver: Send + Sync {
    /// The live session `token` names in `tenant`, for a request from `device` at
    /// `now_ms`; `None` when unknown, expired or not valid from that device. An
    /// implementation logs its own failures (never the token) and answers `None`.
    fn resolve<'a>(
        &'a self,
        tenant: &'a TenantId,
        device: &'a Ident,
        token: &'a str,
        now_ms: i64,
    ) -> SessionFuture<'a>;
}

/// Resolves no session at all.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSessions;

impl SessionResolver for NoSessions {
    fn resolve<'a>(
        &'a self,
        _tenant: &'a TenantId,
        _device: &'a Ident,
        _token: &'a str,
        _now_ms: i64,
    ) -> SessionFuture<'a> {
        Box::pin(async { None })
    }
}
