//! Strict headers on every response of the staff UI.
//!
//! - `Content-Security-Policy`: only this appliance's own scripts, styles, images
//!   and connections; no inline script or style, no framing, forms post only here.
//! - `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy: same-origin` (with `no-referrer` Chromium sends `Origin: null`
//!   on form posts, and the origin check needs the real one).
//! - `Cache-Control: no-store` on everything but the embedded assets: pages may hold
//!   personal data and must not stay in the tablet's cache.

use axum::http::{header, HeaderValue};
use axum::response::Response;

/// The policy: nothing but this origin, nothing inline.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Adds the headers (middleware for the UI router).
pub async fn strict(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
