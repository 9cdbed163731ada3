//! One module per screen; this module holds what their handlers share: session
//! checks, CSRF checks, redirects.

pub mod card;
pub mod certificate;
pub mod event;
pub mod home;
pub mod login;
pub mod password;
pub mod visit;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::session::{self, SessionView, StaffLogin};
use super::Ui;

/// `303 See Other` to `to`.
pub(crate) fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// Adds the session cookie for `id` to `response`.
pub(crate) fn with_cookie(mut response: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(id)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// A state-changing request is accepted only with the session's CSRF token, and
/// only from this origin when the browser says where it comes from.
pub(crate) fn csrf_ok(session: &SessionView, token: &str, headers: &HeaderMap) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest);
        if host.is_none() || origin_host != host {
            return false;
        }
    }
    session::same_token(&session.csrf, token)
}

/// The answer to a request with a missing or wrong CSRF token: nothing changed.
pub(crate) fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "この操作は受け付けられませんでした。画面を読み込み直してから、もう一度操作してください。",
    )
        .into_response()
}

/// The logged-in staff member of a request, or where to send the browser: the login
/// page (a page request) or `401` with `X-Kakanai-Login: required` (the script's
/// requests, which then go to the login page).
pub(crate) fn require_staff(
    ui: &Ui,
    headers: &HeaderMap,
    fragment: bool,
) -> Result<(SessionView, StaffLogin), Box<Response>> {
    let session = ui.session(headers);
    match session.and_then(|s| s.staff.clone().map(|st| (s, st))) {
        Some(ok) => Ok(ok),
        None if fragment => Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                [("x-kakanai-login", "required")],
                "ログインしてください。",
            )
                .into_response(),
        )),
        None => Err(Box::new(see_other("/login"))),
    }
}
