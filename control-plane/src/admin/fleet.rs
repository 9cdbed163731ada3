//! 端末: the fleet list (counter, location, online/offline, firmware, last seen, boot
//! counter) and one device's page. Device ids are not personal data and may appear in
//! URLs; a device of another tenant is simply not found. The device's page has two
//! operations (`admin.fleet`): ログを取得 (its recent log lines, shown on the page)
//! and 再起動, both through `service::operations` (audited with the administrator
//! and their address before the command leaves).

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
        .route(
            "/admin/fleet/{device}/operation",
            axum::routing::post(operation),
        )
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
        (operation_forms(&admin, &d))
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

/// How long the admin page waits for an appliance's answer.
const OPERATION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Log lines fetched from the device's page.
const LOG_LINES: u32 = 200;

/// The operation buttons of a device's page (an offline device cannot answer).
fn operation_forms(admin: &Admin, d: &Device) -> Markup {
    let action = format!("/admin/fleet/{}/operation", d.id.as_str());
    html! {
        @if d.online && d.status != DeviceStatus::Revoked {
            section.card #device-operations {
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(admin.csrf);
                    input type="hidden" name="op" value="logs";
                    button type="submit" data-op="logs" { "ログを取得（最新 " (LOG_LINES) " 行）" }
                }
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(admin.csrf);
                    input type="hidden" name="op" value="restart";
                    button type="submit" data-op="restart" { "再起動" }
                }
            }
        }
    }
}

async fn operation(
    State(state): State<AdminState>,
    Path(device): Path<String>,
    posted: super::session::Posted,
) -> Result<Response, AdminError> {
    use crate::service::operations::Requester;
    use kakanai_protocol::catalogue::{Operation, OperationStatus};
    let super::session::Posted { admin, form } = posted;
    admin.require(ADMIN_FLEET)?;
    let id = Ident::new(&device).map_err(|_| AdminError::NotFound)?;
    let op = match form.get("op") {
        Some("logs") => Operation::Logs {
            since_ms: None,
            max_lines: LOG_LINES,
        },
        Some("restart") => Operation::Restart {
            reason: format!("admin UI: {}", admin.login_id),
        },
        _ => return Err(AdminError::BadRequest("操作が指定されていません".into())),
    };
    let restart = matches!(op, Operation::Restart { .. });
    let requester = Requester {
        by: admin.login_id.clone(),
        uid: None,
        ip: Some(admin.ip.clone()),
    };
    let outcome = state
        .service
        .run_operation(&admin.tenant, &id, op, &requester, OPERATION_WAIT)
        .await;
    let body = html! {
        p { a href={ "/admin/fleet/" (id.as_str()) } { "← 端末の詳細" } }
        h1 { (id.as_str()) }
        @match &outcome {
            Ok(o) if o.result.status == OperationStatus::Done => {
                p #operation-result data-status="done" {
                    @if restart {
                        @if let Some(boot) = o.back_online_boot {
                            "再起動しました（起動回数 " (boot) "）。"
                        } @else {
                            "再起動を受け付けました。まだ接続が戻っていません（一覧で確認してください）。"
                        }
                    } @else {
                        "最新のログ " (o.result.logs.len()) " 行"
                        @if o.result.truncated { "（それより前は省略）" }
                    }
                }
                @if !o.result.logs.is_empty() {
                    div.table-wrap { table #device-logs {
                        thead { tr { th { "時刻" } th { "レベル" } th { "モジュール" } th { "内容" } } }
                        tbody { @for l in &o.result.logs { tr {
                            td { (layout::jst(l.time_ms)) } td { (l.level) } td { (l.target) } td { (l.text) }
                        } } }
                    } }
                }
            }
            Ok(o) => { p #operation-result data-status="failed" { "端末が実行できませんでした: " (o.result.message) } }
            Err(e) => { p #operation-result data-status="error" { "実行できませんでした: " (e.to_string()) } }
        }
    };
    Ok(layout::page(&admin, "端末の操作", body).into_response())
}
