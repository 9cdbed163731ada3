//! The home screen after login: the counter's tasks as large tiles. The certificate
//! and life-event flows add their tiles here.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::{require_staff, see_other};
use crate::ui::layout::{self, Frame};
use crate::ui::session::EXPIRED;
use crate::ui::staff::{Whoami, WhoamiRequest};
use crate::ui::Ui;

/// `GET /`: checks with the control plane that the session still holds (when it can
/// be reached), then shows the tiles.
pub async fn page(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let (session, staff) = match require_staff(&ui, &headers, false) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    if staff.must_change_password {
        return see_other("/password");
    }
    if ui.link().is_online() {
        let r = ui
            .link()
            .rpc_in_session::<Whoami>(
                staff.token.expose(),
                &WhoamiRequest {},
                ui.config().rpc_timeout,
            )
            .await;
        if let Ok(Err(e)) = r {
            if e.code == "unauthenticated" {
                ui.sessions().logout(&session.id, Some(EXPIRED));
                ui.card_forget(&session.id);
                return see_other("/login");
            }
        }
    }
    let status = ui.status();
    layout::page(
        &Frame {
            title: "メニュー",
            page: "home",
            status: &status,
            session: Some(&session),
        },
        html! {
            h1 class="screen-title" { "メニュー" }
            nav class="tiles" {
                a class="tile" href="/card" {
                    span class="tile-title" { "マイナンバーカードの読み取り" }
                    span class="tile-sub" { "暗証番号または照合番号Bで基本4情報を読み取ります" }
                }
            }
        },
    )
    .into_response()
}
