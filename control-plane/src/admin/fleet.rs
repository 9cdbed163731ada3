//! 端末: the fleet list (counter, location, online/offline, firmware, last seen, boot
//! counter) and one device's page. Device ids are not personal data and may appear in
//! URLs; a device of another tenant is simply not found.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};

use super::{layout, Admin, AdminError, AdminState};
use crate::model::Ident;
use crate::staff::permissions::ADMIN_FLEET;
use crate::store::{Device, DeviceStatus, KeyStatus};

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/fleet", get(list))
        .route("/admin/fleet/{device}", get(detail))
}

fn status_label(s: DeviceStatus) -> &'static str {
    match s {
        DeviceStatus::Enrolled => "登録済み（未接続）",
        DeviceStatus::Active => "稼働",
        DeviceStatus::Revoked => "失効",
    }
}

fn presence(d: &Device) -> Markup {
    html! {
        @if d.online { span.badge.online { "オンライン" } } @else { span.badge.offline { "オフライン" } }
    }
}

fn last_seen(d: &Device) -> String {
    d.last_seen_ms.map_or_else(|| "—".to_owned(), layout::jst)
}

/// The fleet table for `devices` (also used by the bench).
pub(super) fn fleet_table(devices: &[Device]) -> Markup {
    html! {
        div.table-wrap {
            table #devices {
                thead { tr {
                    th { "窓口" } th { "設置場所" } th { "状態" } th { "接続" }
                    th { "ファームウェア" } th { "最終確認" } th { "起動回数" }
                } }
                tbody {
                    @for d in devices {
                        tr {
                            td { a href={ "/admin/fleet/" (d.id.as_str()) } { (d.counter_name) } }
                            td { (d.location) }
                            td { (status_label(d.status)) }
                            td { (presence(d)) }
                            td { (d.firmware.as_deref().unwrap_or("—")) }
                            td { (last_seen(d)) }
                            td.num { (d.boot_counter) }
                        }
                    }
                }
            }
        }
    }
}

/// The whole fleet page.
pub(super) fn fleet_page(admin: &Admin, devices: &[Device]) -> Markup {
    let online = devices.iter().filter(|d| d.online).count();
    let body = html! {
        h1 { "端末" }
        p { "登録 " (devices.len()) " 台（オンライン " (online) " 台 / オフライン " (devices.len() - online) " 台）" }
        label.js-only { "絞り込み" input #device-filter type="search" placeholder="窓口名・設置場所で絞り込み"; }
        (fleet_table(devices))
    };
    layout::page(admin, "端末", body)
}

async fn list(State(state): State<AdminState>, admin: Admin) -> Result<Response, AdminError> {
    admin.require(ADMIN_FLEET)?;
    let devices = state.service.store().list_devices(&admin.tenant).await?;
    Ok(fleet_page(&admin, &devices).into_response())
}

async fn detail(
    State(state): State<AdminState>,
    admin: Admin,
    Path(device): Path<String>,
) -> Result<Response, AdminError> {
    admin.require(ADMIN_FLEET)?;
    let id = Ident::new(&device).map_err(|_| AdminError::NotFound)?;
    let d = state
        .service
        .store()
        .get_device(&admin.tenant, &id)
        .await?
        .ok_or(AdminError::NotFound)?;
    let body = html! {
        p { a href="/admin/fleet" { "← 端末一覧" } }
        h1 { (d.counter_name) }
        section.card {
            table {
                tr { th { "端末ID" } td { (d.id.as_str()) } }
                tr { th { "窓口" } td { (d.counter_name) } }
                tr { th { "設置場所" } td { (d.location) } }
                tr { th { "状態" } td { (status_label(d.status)) } }
                tr { th { "接続" } td { (presence(&d)) } }
                tr { th { "ファームウェア" } td { (d.firmware.as_deref().unwrap_or("—")) } }
                tr { th { "最終確認" } td { (last_seen(&d)) } }
                tr { th { "起動回数" } td { (d.boot_counter) } }
                tr { th { "登録日時" } td { (layout::jst(d.enrolled_at_ms)) } }
            }
        }
        h2 { "署名鍵" }
        div.table-wrap { table {
            thead { tr { th { "鍵ID (kid)" } th { "状態" } th { "追加日時" } } }
            tbody { @for k in &d.keys { tr {
                td { code { (k.kid.to_hex()) } }
                td { @if k.status == KeyStatus::Active { "有効" } @else { "失効" } }
                td { (layout::jst(k.added_at_ms)) }
            } } }
        } }
    };
    Ok(layout::page(&admin, "端末の詳細", body).into_response())
}
