//! ダッシュボード: devices online and offline, staff, the audit chain's head and last
//! checkpoint.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;

use super::{layout, Admin, AdminError, AdminState};
use crate::store::DeviceStatus;

pub(super) fn routes() -> Router<AdminState> {
    Router::new().route("/admin/", get(dashboard))
}

async fn dashboard(State(state): State<AdminState>, admin: Admin) -> Result<Response, AdminError> {
    let store = state.service.store();
    let t = &admin.tenant;
    let devices = store.list_devices(t).await?;
    let active: Vec<_> = devices
        .iter()
        .filter(|d| d.status != DeviceStatus::Revoked)
        .collect();
    let online = active.iter().filter(|d| d.online).count();
    let staff = store.list_staff(t).await?;
    let enabled = staff.iter().filter(|s| !s.disabled).count();
    let head = store.audit_head(t).await?;
    let last_cp = store.checkpoints(t).await?.pop();
    let body = html! {
        h1 { "ダッシュボード" }
        div.cards {
            div.card { div.muted { "オンラインの端末" } div.num #online-count { (online) } }
            div.card { div.muted { "オフラインの端末" } div.num #offline-count { (active.len() - online) } }
            div.card { div.muted { "職員（有効 / 登録）" } div.num #staff-count { (enabled) " / " (staff.len()) } }
            div.card {
                div.muted { "監査ログ" }
                div.num { (head.seq) "件" }
                div {
                    "最終チェックポイント: "
                    @match &last_cp {
                        Some(cp) => { "seq " (cp.seq) "（" (layout::jst(cp.signed_at_ms)) "）" }
                        None => { "まだありません" }
                    }
                }
            }
        }
    };
    Ok(layout::page(&admin, "ダッシュボード", body).into_response())
}
