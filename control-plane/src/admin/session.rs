//! Login, the session cookie, logout, password change, CSRF and Origin checks.
//!
//! The session is a staff session (`staff_sessions`: only the token's SHA-256 is
//! stored) opened by [`StaffService::login`](crate::staff::StaffService::login) on
//! the pseudo-device [`ADMIN_DEVICE`], so the staff module's argon2id, lockout, idle
//! and absolute expiry, and "disabling ends every session" apply unchanged, and a
//! counter's session token is worthless here (bound to its appliance) and an admin
//! token worthless at a counter. The cookie holds `TENANT~TOKEN`; the tenant in it is
//! only a lookup key: the token hash must be found in that tenant's sessions.
//!
//! CSRF: the token of a logged-in form is HMAC-SHA256(session token, label), so it is
//! per session, needs no storage, and does not reveal the session token. The login
//! form, before any session, carries a random value also set in a short-lived cookie
//! (double submit). Every POST must also come with an `Origin` (or, failing that, a
//! `Referer`) naming the host the request was sent to.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::html;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::{layout, AdminError, AdminState, ADMIN_PERMISSIONS};
use crate::model::{Actor, AuditRecord, Ident, Place, TenantId};
use crate::service::now_ms;
use crate::staff::{Secret, StaffError};

/// The pseudo-device admin sessions are bound to.
pub const ADMIN_DEVICE: &str = "admin-ui";

/// Largest form accepted (the staff import file is the biggest).
const MAX_FORM_BYTES: usize = 1024 * 1024;

const CSRF_LABEL: &[u8] = b"kakanai admin csrf v1";

fn admin_device() -> Ident {
    // A constant that satisfies the rules; checked by a unit test.
    Ident::new(ADMIN_DEVICE).unwrap_or_else(|_| unreachable!("ADMIN_DEVICE is a valid id"))
}

/// The logged-in administrator, as every page sees them.
#[derive(Clone)]
pub struct Admin {
    /// Their tenant: the only one they see.
    pub tenant: TenantId,
    /// Their login id.
    pub login_id: String,
    /// Display name (personal data: only rendered into their own page header).
    pub display_name: String,
    /// What they may do.
    pub permissions: BTreeSet<String>,
    /// The session id (not secret).
    pub session_id: String,
    /// The CSRF token for this session's forms.
    pub csrf: String,
    /// Where they are (for the audit log).
    pub ip: String,
    /// The password must be changed before anything else.
    pub must_change_password: bool,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("tenant", &self.tenant)
            .field("login_id", &self.login_id)
            .field("session_id", &self.session_id)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Whether they hold `permission`.
    pub fn has(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }

    /// [`AdminError::Forbidden`] unless they hold `permission`.
    pub fn require(&self, permission: &str) -> Result<(), AdminError> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(AdminError::Forbidden)
        }
    }

    /// An audit record of this administrator doing `action` with `outcome`.
    pub fn record(&self, action: &str, outcome: &str, detail: serde_json::Value) -> AuditRecord {
        AuditRecord {
            tenant: self.tenant.to_string(),
            at_ms: now_ms(),
            actor: Actor::Admin(self.login_id.clone()),
            action: action.to_owned(),
            resident: None,
            place: Place::Ip(self.ip.clone()),
            outcome: outcome.to_owned(),
            detail,
        }
    }
}

/// A CSRF-checked POST: the administrator and the form fields.
#[derive(Debug)]
pub struct Posted {
    /// Who.
    pub admin: Admin,
    /// The fields.
    pub form: Form,
}

/// The fields of an `application/x-www-form-urlencoded` body, in order (a name may
/// repeat, e.g. checkboxes).
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed, `None` when empty or absent.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|s| !s.is_empty())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn cookie_name(state: &AdminState) -> &'static str {
    if state.settings.tls {
        "__Host-kakanai-admin"
    } else {
        "kakanai-admin"
    }
}

fn pre_cookie_name(state: &AdminState) -> &'static str {
    if state.settings.tls {
        "__Host-kakanai-admin-login"
    } else {
        "kakanai-admin-login"
    }
}

fn set_cookie(state: &AdminState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let secure = if state.settings.tls { "; Secure" } else { "" };
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/{secure}{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The CSRF token of the session with bearer `token`.
pub(super) fn csrf_of(token: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
    hex::encode(hmac::sign(&key, CSRF_LABEL).as_ref())
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn client_ip(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// Whether a state-changing request comes from a page of this very host. With our
/// `Referrer-Policy: no-referrer`, browsers send `Origin: null` on form posts, so the
/// browser's `Sec-Fetch-Site` (which pages cannot forge) is the main signal; an
/// `Origin` other than `null`, or a `Referer`, must name the `Host` the request was
/// sent to. At least one positive signal is required, and none may say otherwise.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let authority = |url: &str| -> Option<String> {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))?;
        Some(rest.split('/').next().unwrap_or("").to_owned())
    };
    let names_host = |v: &HeaderValue| {
        v.to_str()
            .ok()
            .and_then(authority)
            .is_some_and(|a| a.eq_ignore_ascii_case(host))
    };
    let mut positive = false;
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return false;
        }
        positive = true;
    }
    match headers.get(header::ORIGIN) {
        Some(o) if o.as_bytes() == b"null" => {}
        Some(o) => {
            if !names_host(o) {
                return false;
            }
            positive = true;
        }
        None => {}
    }
    if let Some(r) = headers.get(header::REFERER) {
        if !names_host(r) {
            return false;
        }
        positive = true;
    }
    positive
}

/// The session named by the request's cookie, if live; `Err` only when the store
/// failed.
async fn resolve(state: &AdminState, parts: &Parts) -> Result<Option<Admin>, AdminError> {
    let Some(value) = cookie(&parts.headers, cookie_name(state)) else {
        return Ok(None);
    };
    let Some((tenant, token)) = value.split_once('~') else {
        return Ok(None);
    };
    let Ok(tenant) = TenantId::new(tenant) else {
        return Ok(None);
    };
    if !state.service.serves(&tenant) {
        return Ok(None);
    }
    let resolved = state
        .staff
        .try_resolve(&tenant, &admin_device(), token, now_ms())
        .await?;
    Ok(resolved.map(|r| Admin {
        csrf: csrf_of(token),
        tenant,
        login_id: r.session.staff_id,
        display_name: r.display_name,
        permissions: r.session.permissions,
        session_id: r.session.session_id,
        ip: client_ip(parts),
        must_change_password: r.must_change_password,
    }))
}

impl FromRequestParts<AdminState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let admin = resolve(state, parts)
            .await?
            .ok_or(AdminError::NotLoggedIn)?;
        let path = parts.uri.path();
        if admin.must_change_password && path != "/admin/password" && path != "/admin/logout" {
            return Err(AdminError::MustChangePassword);
        }
        Ok(admin)
    }
}

impl FromRequest<AdminState> for Posted {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &AdminState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        if !same_origin(&parts.headers) {
            return Err(AdminError::CrossSite);
        }
        let admin = Admin::from_request_parts(&mut parts, state).await?;
        let body = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| AdminError::BadRequest("送信された内容が大きすぎます".into()))?;
        let form = Form::parse(&body);
        match form.get("csrf") {
            Some(t) if same(t, &admin.csrf) => Ok(Self { admin, form }),
            _ => Err(AdminError::CrossSite),
        }
    }
}

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/logout", axum::routing::post(logout))
        .route("/admin/password", get(password_form).post(change_password))
}

fn random_hex(n: usize) -> Result<String, AdminError> {
    let mut b = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| AdminError::Internal("random"))?;
    Ok(hex::encode(b))
}

async fn login_form(State(state): State<AdminState>, parts: Parts) -> Result<Response, AdminError> {
    if resolve(&state, &parts).await?.is_some() {
        return Ok(Redirect::to("/admin/").into_response());
    }
    render_login(&state, None)
}

fn render_login(state: &AdminState, error: Option<&str>) -> Result<Response, AdminError> {
    let pre = random_hex(32)?;
    let tenants: Vec<String> = state
        .service
        .tenants()
        .iter()
        .map(ToString::to_string)
        .collect();
    let body = html! {
        main.login {
            h1 { "かかない 管理画面" }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            form method="post" action="/admin/login" {
                input type="hidden" name="pre" value=(pre);
                @if tenants.len() == 1 {
                    input type="hidden" name="tenant" value=(tenants[0]);
                } @else {
                    label { "自治体" select name="tenant" required {
                        @for t in &tenants { option value=(t) { (t) } }
                    } }
                }
                label { "ログインID" input type="text" name="login_id" autocomplete="username" required autofocus; }
                label { "パスワード" input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "ログイン" }
            }
        }
    };
    let mut res = layout::bare("ログイン", body).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(state, pre_cookie_name(state), &pre, Some(600)),
    );
    Ok(res)
}

fn login_record(
    tenant: &TenantId,
    login_id: &str,
    ip: &str,
    outcome: &str,
    reason: &str,
) -> AuditRecord {
    // An id that could not exist (e.g. a password typed in the wrong field) is not
    // recorded as typed.
    let who = if crate::staff::is_valid_name(login_id) {
        login_id.to_owned()
    } else {
        "(invalid-id)".to_owned()
    };
    AuditRecord {
        tenant: tenant.to_string(),
        at_ms: now_ms(),
        actor: Actor::Admin(who),
        action: if outcome == "ok" {
            "admin:login".into()
        } else {
            "admin:login-failed".into()
        },
        resident: None,
        place: Place::Ip(ip.to_owned()),
        outcome: outcome.into(),
        detail: serde_json::json!({ "reason": reason }),
    }
}

async fn login(State(state): State<AdminState>, req: Request) -> Result<Response, AdminError> {
    let (parts, body) = req.into_parts();
    if !same_origin(&parts.headers) {
        return Err(AdminError::CrossSite);
    }
    let body: Bytes = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map_err(|_| AdminError::BadRequest("送信された内容が大きすぎます".into()))?;
    let form = Form::parse(&body);
    match (
        cookie(&parts.headers, pre_cookie_name(&state)),
        form.get("pre"),
    ) {
        (Some(c), Some(f)) if same(c, f) => {}
        _ => return Err(AdminError::CrossSite),
    }
    let ip = client_ip(&parts);
    let generic = StaffError::InvalidCredentials.to_string();
    let Some(tenant) = form
        .get("tenant")
        .and_then(|t| TenantId::new(t).ok())
        .filter(|t| state.service.serves(t))
    else {
        return render_login(&state, Some(&generic));
    };
    let login_id = form.get("login_id").unwrap_or("").trim().to_owned();
    let password = Secret::new(form.get("password").unwrap_or("").to_owned());
    let store = state.service.store();
    let device = admin_device();
    let now = now_ms();
    let ok = match state
        .staff
        .login(&tenant, &device, &login_id, &password, now)
        .await
    {
        Ok(ok) => ok,
        Err(e) => {
            let (reason, message) = match &e {
                StaffError::Locked { .. } | StaffError::Disabled => (e.code(), e.to_string()),
                StaffError::InvalidCredentials => (e.code(), generic.clone()),
                _ => {
                    tracing::error!(error = %e, "admin login failed");
                    return Err(AdminError::Internal("login"));
                }
            };
            store
                .append_audit(&login_record(&tenant, &login_id, &ip, "denied", reason))
                .await?;
            return render_login(&state, Some(&message));
        }
    };
    let perms = store.permissions_of(&tenant, &login_id).await?;
    if !ADMIN_PERMISSIONS.iter().any(|p| perms.contains(*p)) {
        // Right password, but not an administrator: end the session, answer like a
        // wrong password (the admin UI is no oracle for counter staff's passwords).
        state.staff.logout(&tenant, &ok.session.session_id).await?;
        store
            .append_audit(&login_record(
                &tenant,
                &login_id,
                &ip,
                "denied",
                "not-an-administrator",
            ))
            .await?;
        return render_login(&state, Some(&generic));
    }
    let mut record = login_record(&tenant, &login_id, &ip, "ok", "password");
    record.detail = serde_json::json!({ "session": ok.session.session_id });
    store.append_audit(&record).await?;
    let target = if ok.must_change_password {
        "/admin/password"
    } else {
        "/admin/"
    };
    let mut res = Redirect::to(target).into_response();
    let value = format!("{}~{}", tenant, ok.token.expose());
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&state, cookie_name(&state), &value, None),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&state, pre_cookie_name(&state), "", Some(0)),
    );
    Ok(res)
}

async fn logout(State(state): State<AdminState>, posted: Posted) -> Result<Response, AdminError> {
    let admin = posted.admin;
    state.staff.logout(&admin.tenant, &admin.session_id).await?;
    state
        .service
        .store()
        .append_audit(&admin.record(
            "admin:logout",
            "ok",
            serde_json::json!({ "session": admin.session_id }),
        ))
        .await?;
    let mut res = Redirect::to("/admin/login").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&state, cookie_name(&state), "", Some(0)),
    );
    Ok(res)
}

async fn password_form(admin: Admin) -> Result<Response, AdminError> {
    Ok(render_password(&admin, None).into_response())
}

fn render_password(admin: &Admin, error: Option<&str>) -> maud::Markup {
    let body = html! {
        h1 { "パスワードの変更" }
        @if admin.must_change_password {
            p.notice { "初回ログインまたはパスワードの再設定後です。新しいパスワードを設定してください。" }
        }
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form.card method="post" action="/admin/password" {
            input type="hidden" name="csrf" value=(admin.csrf);
            label { "現在のパスワード" input type="password" name="old" autocomplete="current-password" required; }
            label { "新しいパスワード" input type="password" name="new" autocomplete="new-password" required; }
            label { "新しいパスワード（確認）" input type="password" name="new2" autocomplete="new-password" required; }
            button type="submit" { "変更する" }
        }
    };
    layout::page(admin, "パスワードの変更", body)
}

async fn change_password(
    State(state): State<AdminState>,
    posted: Posted,
) -> Result<Response, AdminError> {
    let Posted { admin, form } = posted;
    let old = Secret::new(form.get("old").unwrap_or("").to_owned());
    let new = Secret::new(form.get("new").unwrap_or("").to_owned());
    if form.get("new") != form.get("new2") {
        return Ok(render_password(&admin, Some("確認のパスワードが一致しません")).into_response());
    }
    let session = crate::rpc::StaffSession {
        session_id: admin.session_id.clone(),
        staff_id: admin.login_id.clone(),
        device: admin_device(),
        permissions: admin.permissions.clone(),
    };
    let result = state
        .staff
        .change_password(&admin.tenant, &session, &old, &new, now_ms())
        .await;
    let outcome = if result.is_ok() { "ok" } else { "denied" };
    state
        .service
        .store()
        .append_audit(&admin.record(
            "admin:password.change",
            outcome,
            serde_json::json!({ "staff": admin.login_id }),
        ))
        .await?;
    match result {
        Ok(_) => Ok(Redirect::to("/admin/").into_response()),
        Err(
            e @ (StaffError::WrongPassword | StaffError::Policy(_) | StaffError::Locked { .. }),
        ) => Ok(render_password(&admin, Some(&e.to_string())).into_response()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_device_is_a_valid_id() {
        assert!(Ident::new(ADMIN_DEVICE).is_ok());
    }

    #[test]
    fn csrf_depends_on_the_session() {
        let a = csrf_of(&"a".repeat(64));
        let b = csrf_of(&"b".repeat(64));
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
    }

    #[test]
    fn origin_must_name_the_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("cp.example:8090"));
        assert!(!same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://cp.example:8090"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
        // What Chromium sends for our own forms under no-referrer.
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
        h.remove("sec-fetch-site");
        h.remove(header::ORIGIN);
        h.insert(
            header::REFERER,
            HeaderValue::from_static("http://cp.example:8090/admin/staff"),
        );
        assert!(same_origin(&h));
    }
}
