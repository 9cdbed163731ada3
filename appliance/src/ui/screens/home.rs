//! The home screen after login: the counter's tasks as large tiles — 証明書の請求 and
//! the seven life events (each opens a visit: `POST /visit/start`, hook
//! `[data-start="KIND"]`), and the card reader. While a visit is open the tiles give
//! way to "受付を続ける" and "受付を終了": one visit per staff session at a time.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::{require_staff, see_other};
use crate::ui::components::act_button;
use crate::ui::layout::{self, Frame};
use crate::ui::session::EXPIRED;
use crate::ui::staff::{Whoami, WhoamiRequest};
use crate::ui::visit::VisitKind;
use crate::ui::Ui;
use kakanai_protocol::counter::EventKind;

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
    let open = ui.visit_view(&session.id, |v| v.map(|v| v.kind));
    layout::page(
        &Frame {
            title: "メニュー",
            page: "home",
            status: &status,
            session: Some(&session),
        },
        html! {
            h1 class="screen-title" { "メニュー" }
            @if let Some(kind) = open {
                div class="open-visit" data-open-visit=(kind.as_str()) {
                    p class="prompt-big" { (kind.label()) "の受付中です" }
                    div class="actions" {
                        (act_button(&session.csrf, "end", None, None, "受付を終了", "btn-secondary"))
                        a class="btn btn-primary" href="/visit" { "受付を続ける" }
                    }
                }
            } @else {
                nav class="tiles" {
                    @for kind in std::iter::once(VisitKind::Certificate).chain(EventKind::ALL.iter().map(|e| VisitKind::Event(*e))) {
                        form method="post" action="/visit/start" class="tile-form" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            input type="hidden" name="kind" value=(kind.as_str());
                            button type="submit" class=(if kind == VisitKind::Certificate { "tile tile-main" } else { "tile" }) data-start=(kind.as_str()) {
                                span class="tile-title" { (kind.label()) }
                                span class="tile-sub" { (subtitle(kind)) }
                            }
                        }
                    }
                }
            }
            nav class="tiles tiles-small" {
                a class="tile" href="/card" {
                    span class="tile-title" { "マイナンバーカードの読み取り" }
                    span class="tile-sub" { "暗証番号または照合番号Bで基本4情報を読み取ります" }
                }
            }
        },
    )
    .into_response()
}

fn subtitle(kind: VisitKind) -> &'static str {
    match kind {
        VisitKind::Certificate => "住民票の写し・印鑑登録証明書など",
        VisitKind::Event(EventKind::MoveIn) => "ほかの市区町村から引っ越してきた",
        VisitKind::Event(EventKind::MoveWithin) => "市内で引っ越した",
        VisitKind::Event(EventKind::MoveOut) => "ほかの市区町村へ引っ越す",
        VisitKind::Event(EventKind::Birth) => "子どもが生まれた",
        VisitKind::Event(EventKind::Death) => "家族が亡くなった",
        VisitKind::Event(EventKind::Marriage) => "結婚した",
        VisitKind::Event(EventKind::Divorce) => "離婚した",
    }
}
