//! The city administrators' web UI (issue 5 item 7): server-rendered Japanese HTML
//! under `/admin/`, mounted on the service's HTTP server.
//!
//! Code map:
//! - this file — [`AdminSettings`], [`router`], the navigation list [`NAV`] (the
//!   extension point for later pages), the security headers every answer carries,
//!   [`AdminError`];
//! - `session` — login (the staff module's argon2id login and lockout), the
//!   server-side session in a cookie, logout, password change, CSRF and Origin checks,
//!   the [`Admin`] context every page gets;
//! - `ops` — every administrative change, applied with its audit entry in one
//!   transaction (`Store::apply_admin_changes`);
//! - `layout` — the page frame (header, navigation), times in JST, the embedded
//!   assets (`control-plane/assets/admin/`);
//! - `dashboard`, `fleet`, `staff`, `audit`, `stats` — the pages.
//!
//! Adding a page (imports, catalogue, applications, statistics, backups): write a
//! module with `pub(super) fn routes() -> Router<AdminState>` whose handlers take an
//! [`Admin`] (GET) or [`Posted`] (POST, CSRF-checked) and call `admin.require(PERM)`;
//! render with `layout::page`; merge the routes in [`router`] and add one [`NavItem`]
//! to [`NAV`]. Changes go through `ops` (or another function that writes the change
//! and its audit record in one transaction).
//!
//! Invariants:
//! - every answer has `Content-Security-Policy: default-src 'self'` (no inline script
//!   or style anywhere), `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`,
//!   `Cache-Control: no-store`, `X-Content-Type-Options: nosniff`;
//! - every POST is refused unless its Origin (or Referer) names this host and, after
//!   login, its form carries the session's CSRF token (an HMAC of the session token);
//!   the login form carries a pre-session token matched against a cookie;
//! - the session cookie is `HttpOnly; SameSite=Strict; Path=/` (and `__Host-` with
//!   `Secure` when served over TLS); the server keeps only the token's hash (the staff
//!   sessions table, bound to the pseudo-device [`ADMIN_DEVICE`]);
//! - an administrator sees and changes only their own tenant: the tenant comes from
//!   the session, never from a form or URL, and every store call takes it;
//! - personal data (names, 宛名番号) never appears in a URL: searches by resident are
//!   POST forms; all output is HTML-escaped by `maud`; SQL takes bound parameters.

mod audit;
mod dashboard;
mod fleet;
mod layout;
pub mod ops;
mod session;
mod staff;
mod stats;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;

use crate::service::Service;
use crate::staff::permissions;
use crate::staff::{StaffError, StaffPolicy, StaffService};
use crate::store::StoreError;

pub use session::{Admin, Posted, ADMIN_DEVICE};

/// How the admin UI runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Serve `/admin/` at all (default true).
    pub enabled: bool,
    /// The browser reaches us over HTTPS (directly or through a TLS proxy): the
    /// cookie is then `__Host-`-prefixed and `Secure`. Default false (the service has
    /// no TLS listener yet).
    pub tls: bool,
    /// Login, lockout and session timing (the idle timeout logs an administrator out
    /// after that long without a request). Default: the staff defaults with a 15
    /// minute idle timeout and an 8 hour absolute lifetime.
    pub policy: StaffPolicy,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            tls: false,
            policy: StaffPolicy {
                idle_timeout_ms: 15 * 60 * 1000,
                session_lifetime_ms: 8 * 60 * 60 * 1000,
                ..StaffPolicy::default()
            },
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    service: Service,
    staff: StaffService,
    settings: AdminSettings,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// One entry of the navigation bar: shown to administrators holding `permission`.
#[derive(Debug, Clone, Copy)]
pub struct NavItem {
    /// Where it leads.
    pub path: &'static str,
    /// Its label (Japanese).
    pub label: &'static str,
    /// Who sees it (`None`: every administrator).
    pub permission: Option<&'static str>,
}

/// The navigation bar, in order. Later pages add one line each.
pub const NAV: &[NavItem] = &[
    NavItem {
        path: "/admin/",
        label: "ダッシュボード",
        permission: None,
    },
    NavItem {
        path: "/admin/fleet",
        label: "端末",
        permission: Some(permissions::ADMIN_FLEET),
    },
    NavItem {
        path: "/admin/staff",
        label: "職員・グループ",
        permission: Some(permissions::ADMIN_STAFF),
    },
    NavItem {
        path: "/admin/audit",
        label: "監査ログ",
        permission: Some(permissions::AUDIT_SEARCH),
    },
    NavItem {
        path: "/admin/stats",
        label: "窓口統計",
        permission: Some(permissions::ADMIN_STATS),
    },
];

/// The permissions that make a staff account an administrator (any one of them lets
/// the account log in to the admin UI; each page asks for its own).
pub const ADMIN_PERMISSIONS: &[&str] = &[
    permissions::ADMIN_STAFF,
    permissions::ADMIN_FLEET,
    permissions::ADMIN_CATALOG,
    permissions::AUDIT_SEARCH,
    permissions::AUDIT_EXPORT,
    permissions::ADMIN_STATS,
];

/// The admin UI's routes (all under `/admin`), with the security headers; empty when
/// disabled. Merged into the service's router.
pub fn router(service: Service, settings: AdminSettings) -> Router {
    if !settings.enabled {
        return Router::new();
    }
    let staff = StaffService::new(service.store().clone(), settings.policy.clone());
    let state = AdminState {
        service,
        staff,
        settings,
    };
    Router::new()
        .merge(session::routes())
        .merge(layout::routes())
        .merge(dashboard::routes())
        .merge(fleet::routes())
        .merge(staff::routes())
        .merge(audit::routes())
        .merge(stats::routes())
        .route(
            "/admin",
            axum::routing::get(|| async { Redirect::to("/admin/") }),
        )
        .fallback(|| async { AdminError::NotFound })
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// Why a request was not served. The pages shown say what to do, in Japanese, and
/// carry no internal detail.
#[derive(Debug)]
pub enum AdminError {
    /// No (live) session: to the login page.
    NotLoggedIn,
    /// The password must be changed first.
    MustChangePassword,
    /// The session lacks the permission.
    Forbidden,
    /// A POST without a valid CSRF token or from another origin.
    CrossSite,
    /// No such thing in this tenant.
    NotFound,
    /// The input is wrong (the message says how, in Japanese).
    BadRequest(String),
    /// Something failed inside (logged; the page says only that).
    Internal(&'static str),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Self::NotFound,
            StoreError::Conflict(_) => Self::BadRequest("すでに登録されています".into()),
            StoreError::Invalid(_) => Self::BadRequest("入力に使えない文字が含まれています".into()),
            other => {
                tracing::error!(error = %other, "admin UI: store failed");
                Self::Internal("store")
            }
        }
    }
}

impl From<StaffError> for AdminError {
    fn from(e: StaffError) -> Self {
        match e {
            StaffError::StaffNotFound | StaffError::GroupNotFound | StaffError::MemberNotFound => {
                Self::NotFound
            }
            StaffError::Store(s) => s.into(),
            StaffError::Internal(what) => {
                tracing::error!(what, "admin UI: staff operation failed");
                Self::Internal(what)
            }
            other => Self::BadRequest(other.to_string()),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Self::NotLoggedIn => return Redirect::to("/admin/login").into_response(),
            Self::MustChangePassword => return Redirect::to("/admin/password").into_response(),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "権限がありません",
                "この操作を行う権限がありません。必要な場合はシステム管理者に依頼してください。"
                    .to_owned(),
            ),
            Self::CrossSite => (
                StatusCode::FORBIDDEN,
                "要求を受け付けられません",
                "画面の有効期限が切れたか、別のサイトからの送信です。画面を開き直してからもう一度操作してください。"
                    .to_owned(),
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "見つかりません",
                "指定されたものは見つかりません。".to_owned(),
            ),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "入力内容を確認してください", m),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "システムエラー",
                "システムエラーが発生しました。時間をおいてもう一度お試しください。".to_owned(),
            ),
        };
        (status, layout::bare_page(title, &message)).into_response()
    }
}
