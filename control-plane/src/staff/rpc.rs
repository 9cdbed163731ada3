//! The `staff.*` RPC methods appliances call, their wire types, their handlers, and
//! the [`SessionResolver`] the service uses to turn a request's token into a session.
//!
//! | method | needs a session | params | result |
//! | --- | --- | --- | --- |
//! | `staff.login` | no | [`LoginRequest`] | [`LoginResponse`] |
//! | `staff.logout` | yes | [`LogoutRequest`] | [`LogoutResponse`] |
//! | `staff.change-password` | yes (even one that must change its password) | [`ChangePasswordRequest`] | [`ChangePasswordResponse`] |
//! | `staff.whoami` | yes | [`WhoamiRequest`] | [`WhoamiResponse`] |
//!
//! Error codes: `invalid-params` (the parameters do not decode; the message never
//! quotes them, since a decoder's message could repeat a password),
//! `unauthenticated`, `invalid-credentials`, `locked`, `disabled`, `wrong-password`,
//! `password-policy`, `internal` (details only in the control plane's log).

use std::sync::Arc;

use kakanai_protocol::catalogue::{RpcError, RpcMethod};
use serde::de::DeserializeOwned;

use super::{StaffError, StaffService};
use crate::model::{Ident, TenantId};
use crate::rpc::{Dispatcher, RpcContext, RpcFuture, RpcHandler, RpcResult};
use crate::service::session::{SessionFuture, SessionResolver};

pub use kakanai_protocol::staff::{
    ChangePassword, ChangePasswordRequest, ChangePasswordResponse, Login, LoginRequest,
    LoginResponse, Logout, LogoutRequest, LogoutResponse, Whoami, WhoamiRequest, WhoamiResponse,
};

fn invalid_params() -> RpcError {
    RpcError {
        code: "invalid-params".into(),
        message: "パラメータが正しくありません".into(),
    }
}

/// Decodes parameters; absent (`null`) parameters read as an empty map so that
/// methods without parameters accept both. The decoder's message is dropped: it could
/// quote a value (a password).
fn params<M: RpcMethod>(value: ciborium::Value) -> Result<M::Request, RpcError>
where
    M::Request: DeserializeOwned,
{
    let value = match value {
        ciborium::Value::Null => ciborium::Value::Map(Vec::new()),
        v => v,
    };
    value.deserialized().map_err(|_| invalid_params())
}

fn result<M: RpcMethod>(response: &M::Response) -> RpcResult {
    ciborium::Value::serialized(response).map_err(|_| RpcError {
        code: "internal".into(),
        message: "システムエラーが発生しました".into(),
    })
}

fn rpc_error(e: &StaffError) -> RpcError {
    if matches!(e, StaffError::Store(_) | StaffError::Internal(_)) {
        tracing::error!(error = %e, source = ?std::error::Error::source(e), "staff rpc failed");
    }
    RpcError {
        code: e.code().into(),
        message: e.to_string(),
    }
}

/// The handler of `staff.login`.
#[derive(Debug, Clone)]
pub struct LoginHandler(pub StaffService);
/// The handler of `staff.logout`.
#[derive(Debug, Clone)]
pub struct LogoutHandler(pub StaffService);
/// The handler of `staff.change-password`.
#[derive(Debug, Clone)]
pub struct ChangePasswordHandler(pub StaffService);
/// The handler of `staff.whoami`.
#[derive(Debug, Clone)]
pub struct WhoamiHandler(pub StaffService);

impl RpcHandler for LoginHandler {
    fn method(&self) -> &'static str {
        Login::NAME
    }

    fn handle<'a>(&'a self, ctx: &'a RpcContext, value: ciborium::Value) -> RpcFuture<'a> {
        Box::pin(async move {
            let req = params::<Login>(value)?;
            let ok = self
                .0
                .login(
                    &ctx.tenant,
                    &ctx.device,
                    &req.login_id,
                    &req.password,
                    ctx.now_ms,
                )
                .await
                .map_err(|e| rpc_error(&e))?;
            result::<Login>(&LoginResponse {
                token: ok.token,
                session_id: ok.session.session_id,
                display_name: ok.display_name,
                permissions: ok.session.permissions,
                must_change_password: ok.must_change_password,
                expires_at_ms: ok.expires_at_ms,
            })
        })
    }
}

impl RpcHandler for LogoutHandler {
    fn method(&self) -> &'static str {
        Logout::NAME
    }

    fn handle<'a>(&'a self, ctx: &'a RpcContext, value: ciborium::Value) -> RpcFuture<'a> {
        Box::pin(async move {
            let req = params::<Logout>(value)?;
            let session = ctx.staff()?;
            let ended = if req.everywhere {
                self.0.logout_all(&ctx.tenant, &session.staff_id).await
            } else {
                self.0
                    .logout(&ctx.tenant, &session.session_id)
                    .await
                    .map(u64::from)
            }
            .map_err(|e| rpc_error(&e))?;
            result::<Logout>(&LogoutResponse { ended })
        })
    }
}

impl RpcHandler for ChangePasswordHandler {
    fn method(&self) -> &'static str {
        ChangePassword::NAME
    }

    fn handle<'a>(&'a self, ctx: &'a RpcContext, value: ciborium::Value) -> RpcFuture<'a> {
        Box::pin(async move {
            let req = params::<ChangePassword>(value)?;
            let session = ctx.staff()?;
            let ended = self
                .0
                .change_password(
                    &ctx.tenant,
                    session,
                    &req.old_password,
                    &req.new_password,
                    ctx.now_ms,
                )
                .await
                .map_err(|e| rpc_error(&e))?;
            let permissions = self
                .0
                .permissions_of(&ctx.tenant, &session.staff_id)
                .await
                .map_err(|e| rpc_error(&e))?;
            result::<ChangePassword>(&ChangePasswordResponse {
                other_sessions_ended: ended,
                permissions,
            })
        })
    }
}

impl RpcHandler for WhoamiHandler {
    fn method(&self) -> &'static str {
        Whoami::NAME
    }

    fn handle<'a>(&'a self, ctx: &'a RpcContext, value: ciborium::Value) -> RpcFuture<'a> {
        Box::pin(async move {
            params::<Whoami>(value)?;
            let session = ctx.staff()?;
            let staff = self
                .0
                .store()
                .get_staff(&ctx.tenant, &session.staff_id)
                .await
                .map_err(|e| rpc_error(&e.into()))?
                .ok_or_else(|| rpc_error(&StaffError::StaffNotFound))?;
            result::<Whoami>(&WhoamiResponse {
                staff_id: session.staff_id.clone(),
                display_name: staff.display_name,
                session_id: session.session_id.clone(),
                permissions: session.permissions.clone(),
                must_change_password: staff.must_change_password,
            })
        })
    }
}

impl StaffService {
    /// Registers the four `staff.*` handlers.
    pub fn register_rpc(&self, dispatcher: &mut Dispatcher) {
        dispatcher.register(Arc::new(LoginHandler(self.clone())));
        dispatcher.register(Arc::new(LogoutHandler(self.clone())));
        dispatcher.register(Arc::new(ChangePasswordHandler(self.clone())));
        dispatcher.register(Arc::new(WhoamiHandler(self.clone())));
    }
}

impl SessionResolver for StaffService {
    fn resolve<'a>(
        &'a self,
        tenant: &'a TenantId,
        device: &'a Ident,
        token: &'a str,
        now_ms: i64,
    ) -> SessionFuture<'a> {
        Box::pin(StaffService::resolve(self, tenant, device, token, now_ms))
    }
}
