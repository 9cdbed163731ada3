//! Password change, required before anything else when the control plane says so
//! (`staff.change-password`). The passwords are only passed on.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::{csrf_ok, forbidden, require_staff, see_other};
use crate::ui::card::Notice;
use crate::ui::components::notice;
use crate::ui::layout::{self, Frame, OFFLINE_NEXT, OFFLINE_TITLE};
use crate::ui::session::{SessionView, EXPIRED};
use crate::ui::staff::{ChangePassword, ChangePasswordRequest, Secret};
use crate::ui::Ui;

/// The form.
#[derive(Deserialize)]
pub struct PasswordForm {
    old_password: String,
    new_password: String,
    confirm: String,
    csrf: String,
}

impl std::fmt::Debug for PasswordForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordForm").finish_non_exhaustive()
    }
}

fn render(ui: &Ui, session: &SessionView, error: Option<&Notice>) -> Markup {
    let status = ui.status();
    layout::page(
        &Frame {
            title: "パスワードの変更",
            page: "password",
            status: &status,
            session: Some(session),
        },
        html! {
            section class="card-box login" {
                h1 { "パスワードの変更" }
                p { "続けるには、新しいパスワードを設定してください。" }
                @if let Some(e) = error { (notice(e, "bad")) }
                form method="post" action="/password" class="form" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label for="old_password" { "現在のパスワード" }
                    input id="old_password" name="old_password" type="password" autocomplete="current-password" maxlength="1024" required;
                    label for="new_password" { "新しいパスワード" }
                    input id="new_password" name="new_password" type="password" autocomplete="new-password" maxlength="1024" required;
                    label for="confirm" { "新しいパスワード（確認）" }
                    input id="confirm" name="confirm" type="password" autocomplete="new-password" maxlength="1024" required;
                    button type="submit" class="btn btn-primary btn-wide" { "変更する" }
                }
            }
        },
    )
}

/// `GET /password`.
pub async fn page(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    match require_staff(&ui, &headers, false) {
        Ok((session, _)) => render(&ui, &session, None).into_response(),
        Err(r) => *r,
    }
}

/// `POST /password`.
pub async fn submit(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    let (session, staff) = match require_staff(&ui, &headers, false) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    if !csrf_ok(&session, &form.csrf, &headers) {
        return forbidden();
    }
    let fail = |status: StatusCode, title: &str, next: &str| {
        let n = Notice {
            title: title.into(),
            next: next.into(),
        };
        (status, render(&ui, &session, Some(&n))).into_response()
    };
    if form.new_password != form.confirm {
        return fail(
            StatusCode::BAD_REQUEST,
            "新しいパスワードが確認欄と一致しません。",
            "もう一度入力してください。",
        );
    }
    if !ui.link().is_online() {
        return fail(StatusCode::SERVICE_UNAVAILABLE, OFFLINE_TITLE, OFFLINE_NEXT);
    }
    let request = ChangePasswordRequest {
        old_password: Secret::new(form.old_password),
        new_password: Secret::new(form.new_password),
    };
    match ui
        .link()
        .rpc_in_session::<ChangePassword>(staff.token.expose(), &request, ui.config().login_timeout)
        .await
    {
        Ok(Ok(_)) => {
            ui.sessions().password_changed(&session.id);
            see_other("/")
        }
        Ok(Err(e)) if e.code == "unauthenticated" => {
            ui.sessions().logout(&session.id, Some(EXPIRED));
            see_other("/login")
        }
        Ok(Err(e)) => fail(
            StatusCode::BAD_REQUEST,
            &e.message,
            "入力を確かめて、もう一度お試しください。",
        ),
        Err(_) => fail(StatusCode::SERVICE_UNAVAILABLE, OFFLINE_TITLE, OFFLINE_NEXT),
    }
}
