//! Login (staff id and password, relayed to the control plane as `staff.login`) and
//! logout. The password is only passed on: never stored, logged or shown again.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::{csrf_ok, forbidden, see_other, with_cookie};
use crate::link::LinkError;
use crate::ui::card::Notice;
use crate::ui::components::notice;
use crate::ui::layout::{self, Frame, OFFLINE_NEXT, OFFLINE_TITLE};
use crate::ui::session::{SessionView, StaffLogin};
use crate::ui::staff::{Login, LoginRequest, Logout, LogoutRequest, Secret};
use crate::ui::Ui;

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    staff_id: String,
    password: String,
    csrf: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm").finish_non_exhaustive()
    }
}

/// A form carrying only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub(crate) csrf: String,
}

fn render(ui: &Ui, session: &SessionView, error: Option<&Notice>, staff_id: &str) -> Markup {
    let status = ui.status();
    // Kept until the next login: a page loaded twice (the script also goes to the
    // login page when a session ends) still says why.
    let flash = session.flash.as_deref();
    layout::page(
        &Frame {
            title: "ログイン",
            page: "login",
            status: &status,
            session: None,
        },
        html! {
            section class="card-box login" {
                h1 { "職員ログイン" }
                @if let Some(message) = flash {
                    p class="flash" role="status" { (message) }
                }
                @if let Some(e) = error {
                    (notice(e, "bad"))
                }
                form method="post" action="/login" class="form" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label for="staff_id" { "職員ID" }
                    input id="staff_id" name="staff_id" type="text" value=(staff_id)
                        autocomplete="username" autocapitalize="off" spellcheck="false"
                        maxlength="64" required autofocus;
                    label for="password" { "パスワード" }
                    input id="password" name="password" type="password"
                        autocomplete="current-password" maxlength="1024" required;
                    button type="submit" class="btn btn-primary btn-wide" { "ログイン" }
                }
            }
        },
    )
}

/// `GET /login`.
pub async fn page(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    match ui.session(&headers) {
        Some(s) if s.staff.is_some() => see_other("/"),
        Some(s) => render(&ui, &s, None, "").into_response(),
        None => {
            let s = ui.sessions().create();
            with_cookie(render(&ui, &s, None, "").into_response(), &s.id)
        }
    }
}

fn unreachable() -> Notice {
    Notice {
        title: OFFLINE_TITLE.into(),
        next: OFFLINE_NEXT.into(),
    }
}

/// `POST /login`.
pub async fn submit(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(session) = ui.session(&headers) else {
        // No session (expired, or cookies refused): start again with a fresh form.
        return see_other("/login");
    };
    if !csrf_ok(&session, &form.csrf, &headers) {
        return forbidden();
    }
    if session.staff.is_some() {
        return see_other("/");
    }
    let staff_id = form.staff_id.trim().to_owned();
    let fail = |status: StatusCode, n: Notice| {
        (status, render(&ui, &session, Some(&n), &staff_id)).into_response()
    };
    if staff_id.is_empty()
        || staff_id.chars().count() > 64
        || form.password.is_empty()
        || form.password.len() > 1024
    {
        return fail(
            StatusCode::BAD_REQUEST,
            Notice {
                title: "職員IDとパスワードを入力してください。".into(),
                next: "職員IDは64文字以内です。".into(),
            },
        );
    }
    if !ui.link().is_online() {
        return fail(StatusCode::SERVICE_UNAVAILABLE, unreachable());
    }
    let request = LoginRequest {
        login_id: staff_id.clone(),
        password: Secret::new(form.password),
    };
    match ui
        .link()
        .rpc::<Login>(&request, ui.config().login_timeout)
        .await
    {
        Ok(Ok(ok)) => {
            let must_change = ok.must_change_password;
            let new = ui.sessions().login(
                &session.id,
                StaffLogin {
                    token: ok.token,
                    staff_id,
                    display_name: ok.display_name,
                    must_change_password: must_change,
                    expires_at_ms: ok.expires_at_ms,
                },
            );
            tracing::info!(session = %ok.session_id, "staff logged in");
            let to = if must_change { "/password" } else { "/" };
            with_cookie(see_other(to), &new.id)
        }
        Ok(Err(e)) => {
            let next = match e.code.as_str() {
                "invalid-credentials" => "入力を確かめて、もう一度ログインしてください。",
                "locked" | "disabled" => "管理者に連絡してください。",
                _ => "しばらくしてからもう一度お試しください。",
            };
            fail(
                StatusCode::UNAUTHORIZED,
                Notice {
                    title: e.message,
                    next: next.into(),
                },
            )
        }
        Err(LinkError::Timeout(_)) | Err(LinkError::Closed) => {
            fail(StatusCode::SERVICE_UNAVAILABLE, unreachable())
        }
        Err(e) => {
            tracing::error!(error = %e, "login request not sent");
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                Notice {
                    title: "ログインの要求を送れませんでした。".into(),
                    next: "しばらくしてからもう一度お試しください。続く場合は情報システム担当に連絡してください。".into(),
                },
            )
        }
    }
}

/// `POST /logout`: ends the session here at once; the control plane is told when it
/// can be reached.
pub async fn logout(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(session) = ui.session(&headers) else {
        return see_other("/login");
    };
    if !csrf_ok(&session, &form.csrf, &headers) {
        return forbidden();
    }
    let token = ui
        .sessions()
        .logout(&session.id, Some("ログアウトしました。"));
    ui.card_forget(&session.id);
    if let Some(token) = token {
        if ui.link().is_online() {
            let link = ui.link().clone();
            let timeout = ui.config().rpc_timeout;
            tokio::spawn(async move {
                let r = link
                    .rpc_in_session::<Logout>(token.expose(), &LogoutRequest::default(), timeout)
                    .await;
                if !matches!(r, Ok(Ok(_))) {
                    tracing::warn!("the control plane was not told of a logout");
                }
            });
        }
    }
    see_other("/login")
}
