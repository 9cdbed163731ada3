//! 職員・グループ: staff list, create, edit (name, groups — a transfer is a change of
//! groups —, password reset, disable/enable, unlock), groups with their permissions
//! per operation and data area, and the import file for transfers and the fiscal-year
//! switch (dry run first). Every change goes through [`super::ops`], so it is one
//! transaction with its audit entry. Login ids come in POST forms; whatever the id,
//! it is looked up in the administrator's own tenant only.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};

use super::ops::{AdminOps, Who};
use super::session::Form;
use super::{layout, Admin, AdminError, AdminState, Posted};
use crate::model::{Actor, Place};
use crate::staff::import::ImportError;
use crate::staff::permissions::{self, ADMIN_STAFF};
use crate::staff::{Secret, StaffError};
use crate::store::{Group, Staff};

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/staff", get(list))
        .route("/admin/staff/new", get(new_form).post(create))
        .route("/admin/staff/import", get(import_form).post(import))
        .route("/admin/staff/action", post(action))
        .route("/admin/staff/{login_id}", get(edit))
        .route("/admin/groups/new", get(new_group))
        .route("/admin/groups/save", post(save_group))
        .route("/admin/groups/delete", post(delete_group))
        .route("/admin/groups/{name}", get(edit_group))
}

#[derive(serde::Deserialize)]
struct Done {
    done: Option<String>,
}

fn done_message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "created" => "職員を登録しました。初期パスワードを本人に伝えてください（初回ログイン時に変更が必要です）。",
        "renamed" => "表示名を変更しました。",
        "groups" => "所属グループを変更しました。",
        "reset" => "パスワードを再設定しました。この職員のセッションはすべて終了しました。",
        "disabled" => "アカウントを無効にしました。この職員のセッションはすべて終了しました。",
        "enabled" => "アカウントを有効にしました。",
        "unlocked" => "ロックを解除しました。",
        "group-saved" => "グループを保存しました。",
        "group-deleted" => "グループを削除しました。",
        _ => return None,
    })
}

fn who(admin: &Admin) -> Who {
    Who {
        tenant: admin.tenant.clone(),
        actor: Actor::Admin(admin.login_id.clone()),
        place: Place::Ip(admin.ip.clone()),
    }
}

fn ops(state: &AdminState) -> AdminOps {
    AdminOps::new(state.staff.clone())
}

fn csrf(admin: &Admin) -> Markup {
    html! { input type="hidden" name="csrf" value=(admin.csrf); }
}

fn status(s: &Staff, now: i64) -> Markup {
    html! {
        @if s.disabled { span.badge.disabled { "無効" } }
        @else if s.locked_until_ms.is_some_and(|u| u > now) { span.badge.locked { "ロック中" } }
        @else { span.badge.online { "有効" } }
        @if s.must_change_password { " " span.muted { "（要パスワード変更）" } }
    }
}

async fn list(
    State(state): State<AdminState>,
    admin: Admin,
    Query(done): Query<Done>,
) -> Result<Response, AdminError> {
    admin.require(ADMIN_STAFF)?;
    let store = state.service.store();
    let staff = store.list_staff(&admin.tenant).await?;
    let groups = store.list_groups(&admin.tenant).await?;
    let mut members = Vec::new();
    for s in &staff {
        members.push(store.groups_of(&admin.tenant, &s.login_id).await?);
    }
    let now = crate::service::now_ms();
    let body = html! {
        h1 { "職員・グループ" }
        @if let Some(m) = done_message(done.done.as_deref()) { p.notice role="status" { (m) } }
        p.row {
            a href="/admin/staff/new" { "職員を登録" }
            a href="/admin/groups/new" { "グループを作成" }
            a href="/admin/staff/import" { "一括取込（人事異動・年度切替）" }
        }
        h2 { "職員" }
        div.table-wrap { table #staff {
            thead { tr { th { "ログインID" } th { "氏名" } th { "所属グループ" } th { "状態" } } }
            tbody { @for (s, g) in staff.iter().zip(&members) { tr {
                td { a href={ "/admin/staff/" (s.login_id) } { (s.login_id) } }
                td { (s.display_name) }
                td { (g.join("、")) }
                td { (status(s, now)) }
            } } }
        } }
        h2 { "グループ" }
        div.table-wrap { table #groups {
            thead { tr { th { "グループ名" } th { "説明" } th { "権限" } } }
            tbody { @for g in &groups { tr {
                td { a href={ "/admin/groups/" (g.name) } { (g.name) } }
                td { (g.description) }
                td { (perm_labels(&g.permissions)) }
            } } }
        } }
    };
    Ok(layout::page(&admin, "職員・グループ", body).into_response())
}

fn perm_labels(p: &BTreeSet<String>) -> String {
    permissions::CATALOGUE
        .iter()
        .filter(|c| p.contains(c.name))
        .map(|c| c.description)
        .collect::<Vec<_>>()
        .join("、")
}

fn group_boxes(groups: &[Group], checked: &[String]) -> Markup {
    html! {
        div.perm-list {
            @for g in groups {
                label {
                    input type="checkbox" name="group" value=(g.name) checked[checked.contains(&g.name)];
                    (g.name) @if !g.description.is_empty() { " — " (g.description) }
                }
            }
            @if groups.is_empty() { p.muted { "グループがまだありません。" } }
        }
    }
}

async fn new_form(State(state): State<AdminState>, admin: Admin) -> Result<Response, AdminError> {
    admin.require(ADMIN_STAFF)?;
    let groups = state.service.store().list_groups(&admin.tenant).await?;
    let body = html! {
        p { a href="/admin/staff" { "← 職員・グループ" } }
        h1 { "職員の登録" }
        form.card method="post" action="/admin/staff/new" {
            (csrf(&admin))
            label { "ログインID（半角英数字と . _ -）" input type="text" name="login_id" required maxlength="64" autocomplete="off"; }
            label { "氏名（表示名）" input type="text" name="display_name" required maxlength="100" autocomplete="off"; }
            label { "初期パスワード（10文字以上。初回ログイン時に変更が必要）" input type="password" name="password" required autocomplete="new-password"; }
            fieldset { legend { "所属グループ" } (group_boxes(&groups, &[])) }
            button type="submit" { "登録する" }
        }
    };
    Ok(layout::page(&admin, "職員の登録", body).into_response())
}

fn groups_of_form(form: &Form) -> BTreeSet<String> {
    form.all("group").into_iter().map(str::to_owned).collect()
}

async fn create(State(state): State<AdminState>, posted: Posted) -> Result<Response, AdminError> {
    let Posted { admin, form } = posted;
    admin.require(ADMIN_STAFF)?;
    let login_id = form.text("login_id").unwrap_or("");
    let name = form.text("display_name").unwrap_or("");
    let password = Secret::new(form.get("password").unwrap_or("").to_owned());
    ops(&state)
        .create_staff(
            &who(&admin),
            login_id,
            name,
            &password,
            &groups_of_form(&form),
        )
        .await
        .map_err(staff_error)?;
    Ok(Redirect::to("/admin/staff?done=created").into_response())
}

/// Staff errors as the administrator should read them (a group that does not exist
/// is an input error here, not a missing page).
fn staff_error(e: StaffError) -> AdminError {
    match e {
        StaffError::GroupNotFound | StaffError::MemberNotFound => {
            AdminError::BadRequest("指定されたグループが見つかりません".into())
        }
        StaffError::Disabled => {
            AdminError::BadRequest("自分自身のアカウントは無効にできません".into())
        }
        other => other.into(),
    }
}

async fn edit(
    State(state): State<AdminState>,
    admin: Admin,
    Path(login_id): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, AdminError> {
    admin.require(ADMIN_STAFF)?;
    let store = state.service.store();
    let s = store
        .get_staff(&admin.tenant, &login_id)
        .await?
        .ok_or(AdminError::NotFound)?;
    let groups = store.list_groups(&admin.tenant).await?;
    let mine = store.groups_of(&admin.tenant, &login_id).await?;
    let now = crate::service::now_ms();
    let id = s.login_id.as_str();
    let body = html! {
        p { a href="/admin/staff" { "← 職員・グループ" } }
        h1 { (s.display_name) "（" (id) "）" }
        @if let Some(m) = done_message(done.done.as_deref()) { p.notice role="status" { (m) } }
        p { "状態: " (status(&s, now)) }
        form.card method="post" action="/admin/staff/action" {
            (csrf(&admin)) input type="hidden" name="login_id" value=(id); input type="hidden" name="op" value="rename";
            label { "氏名（表示名）" input type="text" name="display_name" value=(s.display_name) required maxlength="100"; }
            button type="submit" { "表示名を変更" }
        }
        form.card method="post" action="/admin/staff/action" {
            (csrf(&admin)) input type="hidden" name="login_id" value=(id); input type="hidden" name="op" value="groups";
            fieldset { legend { "所属グループ（異動はここで変更）" } (group_boxes(&groups, &mine)) }
            button type="submit" { "所属を変更" }
        }
        form.card method="post" action="/admin/staff/action" {
            (csrf(&admin)) input type="hidden" name="login_id" value=(id); input type="hidden" name="op" value="reset";
            label { "新しいパスワード（次回ログイン時に変更が必要）" input type="password" name="password" required autocomplete="new-password"; }
            button type="submit" { "パスワードを再設定" }
        }
        div.row {
            @if s.disabled {
                form method="post" action="/admin/staff/action" {
                    (csrf(&admin)) input type="hidden" name="login_id" value=(id); input type="hidden" name="op" value="enable";
                    button #enable type="submit" { "アカウントを有効にする" }
                }
            } @else {
                form method="post" action="/admin/staff/action" {
                    (csrf(&admin)) input type="hidden" name="login_id" value=(id); input type="hidden" name="op" value="disable";
                    button.danger #disable type="submit" { "アカウントを無効にする" }
                }
            }
            @if s.locked_until_ms.is_some() || s.failed_attempts > 0 {
                form method="post" action="/admin/staff/action" {
                    (csrf(&admin)) input type="hidden" name="login_id" value=(id); input type="hidden" name="op" value="unlock";
                    button.secondary type="submit" { "ロックを解除" }
                }
            }
        }
    };
    Ok(layout::page(&admin, "職員の編集", body).into_response())
}

async fn action(State(state): State<AdminState>, posted: Posted) -> Result<Response, AdminError> {
    let Posted { admin, form } = posted;
    admin.require(ADMIN_STAFF)?;
    let login_id = form.text("login_id").unwrap_or("").to_owned();
    let w = who(&admin);
    let ops = ops(&state);
    // The account must be in the administrator's tenant before anything is tried.
    if state
        .service
        .store()
        .get_staff(&admin.tenant, &login_id)
        .await?
        .is_none()
    {
        return Err(AdminError::NotFound);
    }
    let done = match form.get("op").unwrap_or("") {
        "rename" => {
            ops.rename_staff(&w, &login_id, form.text("display_name").unwrap_or(""))
                .await
                .map_err(staff_error)?;
            "renamed"
        }
        "groups" => {
            ops.set_groups(&w, &login_id, &groups_of_form(&form))
                .await
                .map_err(staff_error)?;
            "groups"
        }
        "reset" => {
            let pw = Secret::new(form.get("password").unwrap_or("").to_owned());
            ops.reset_password(&w, &login_id, &pw)
                .await
                .map_err(staff_error)?;
            "reset"
        }
        "disable" => {
            ops.set_disabled(&w, &login_id, true)
                .await
                .map_err(staff_error)?;
            "disabled"
        }
        "enable" => {
            ops.set_disabled(&w, &login_id, false)
                .await
                .map_err(staff_error)?;
            "enabled"
        }
        "unlock" => {
            ops.unlock(&w, &login_id).await.map_err(staff_error)?;
            "unlocked"
        }
        _ => return Err(AdminError::BadRequest("不明な操作です".into())),
    };
    Ok(Redirect::to(&format!("/admin/staff/{login_id}?done={done}")).into_response())
}

fn group_form(admin: &Admin, group: Option<&Group>) -> Markup {
    let empty = BTreeSet::new();
    let perms = group.map_or(&empty, |g| &g.permissions);
    html! {
        form.card method="post" action="/admin/groups/save" {
            (csrf(admin))
            @if let Some(g) = group {
                input type="hidden" name="name" value=(g.name);
                p { "グループ名: " strong { (g.name) } }
            } @else {
                label { "グループ名（半角英数字と . _ -）" input type="text" name="name" required maxlength="64"; }
            }
            label { "説明（課・係など）" input type="text" name="description" value=(group.map_or("", |g| g.description.as_str())) maxlength="200"; }
            fieldset {
                legend { "権限（業務と閲覧できる情報の範囲）" }
                div.perm-list {
                    @for p in permissions::CATALOGUE {
                        label {
                            input type="checkbox" name="perm" value=(p.name) checked[perms.contains(p.name)];
                            (p.description) " " code.muted { (p.name) }
                        }
                    }
                }
            }
            button type="submit" { "保存する" }
        }
    }
}

async fn new_group(admin: Admin) -> Result<Response, AdminError> {
    admin.require(ADMIN_STAFF)?;
    let body = html! {
        p { a href="/admin/staff" { "← 職員・グループ" } }
        h1 { "グループの作成" }
        (group_form(&admin, None))
    };
    Ok(layout::page(&admin, "グループの作成", body).into_response())
}

async fn edit_group(
    State(state): State<AdminState>,
    admin: Admin,
    Path(name): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, AdminError> {
    admin.require(ADMIN_STAFF)?;
    let store = state.service.store();
    let group = store
        .list_groups(&admin.tenant)
        .await?
        .into_iter()
        .find(|g| g.name == name)
        .ok_or(AdminError::NotFound)?;
    let members = store.group_members(&admin.tenant, &name).await?;
    let body = html! {
        p { a href="/admin/staff" { "← 職員・グループ" } }
        h1 { "グループ " (group.name) }
        @if let Some(m) = done_message(done.done.as_deref()) { p.notice role="status" { (m) } }
        (group_form(&admin, Some(&group)))
        h2 { "所属職員（" (members.len()) "名）" }
        p { (members.join("、")) }
        form method="post" action="/admin/groups/delete" data-confirm="このグループを削除しますか？所属もすべて外れます。" {
            (csrf(&admin)) input type="hidden" name="name" value=(group.name);
            button.danger type="submit" { "グループを削除" }
        }
    };
    Ok(layout::page(&admin, "グループの編集", body).into_response())
}

async fn save_group(
    State(state): State<AdminState>,
    posted: Posted,
) -> Result<Response, AdminError> {
    let Posted { admin, form } = posted;
    admin.require(ADMIN_STAFF)?;
    let group = Group {
        name: form.text("name").unwrap_or("").to_owned(),
        description: form.text("description").unwrap_or("").to_owned(),
        permissions: form.all("perm").into_iter().map(str::to_owned).collect(),
    };
    ops(&state)
        .put_group(&who(&admin), &group)
        .await
        .map_err(staff_error)?;
    Ok(Redirect::to(&format!("/admin/groups/{}?done=group-saved", group.name)).into_response())
}

async fn delete_group(
    State(state): State<AdminState>,
    posted: Posted,
) -> Result<Response, AdminError> {
    let Posted { admin, form } = posted;
    admin.require(ADMIN_STAFF)?;
    let name = form.text("name").unwrap_or("");
    ops(&state)
        .delete_group(&who(&admin), name)
        .await
        .map_err(|e| match e {
            StaffError::GroupNotFound => AdminError::NotFound,
            other => staff_error(other),
        })?;
    Ok(Redirect::to("/admin/staff?done=group-deleted").into_response())
}

fn import_page(admin: &Admin, text: &str, result: Option<Markup>) -> Markup {
    let body = html! {
        p { a href="/admin/staff" { "← 職員・グループ" } }
        h1 { "一括取込（人事異動・年度切替）" }
        p { "職員とグループのあるべき姿を記述した設定ファイル（TOML）を貼り付け、まず「確認」で変更内容を確かめてから「適用」してください。適用はすべて反映されるか、何も反映されないかのどちらかです。" }
        @if let Some(r) = result { (r) }
        form.card method="post" action="/admin/staff/import" {
            (csrf(admin))
            label { "設定ファイル" textarea name="text" required spellcheck="false" { (text) } }
            div.row {
                button.secondary type="submit" name="mode" value="plan" { "確認（ドライラン）" }
                button type="submit" name="mode" value="apply" { "適用" }
            }
        }
    };
    layout::page(admin, "一括取込", body)
}

async fn import_form(admin: Admin) -> Result<Response, AdminError> {
    admin.require(ADMIN_STAFF)?;
    Ok(import_page(&admin, "version = 1\n", None).into_response())
}

async fn import(State(state): State<AdminState>, posted: Posted) -> Result<Response, AdminError> {
    let Posted { admin, form } = posted;
    admin.require(ADMIN_STAFF)?;
    let text = form.get("text").unwrap_or("");
    let apply = form.get("mode") == Some("apply");
    let result = match ops(&state).import(&who(&admin), text, apply).await {
        Ok(report) => html! {
            section.card #import-result {
                @if report.applied { p.ok { "適用しました（" (report.changes.len()) "件）。" } }
                @else if apply { p { "変更はありませんでした。" } }
                @else { p { "確認結果（まだ適用していません）: " (report.changes.len()) "件の変更" } }
                ul { @for c in &report.changes { li { (c.to_string()) } } }
                @if !report.initial_passwords.is_empty() {
                    h2 { "新規職員の初期パスワード（この画面でのみ表示されます）" }
                    table { @for p in &report.initial_passwords { tr { td { (p.login_id) } td { code { (p.password.expose()) } } } } }
                }
            }
        },
        Err(ImportError::Invalid(problems)) => html! {
            section.card #import-result {
                p.error { "設定ファイルに誤りがあります（" (problems.len()) "件）。何も変更していません。" }
                ul { @for p in &problems { li { (p.to_string()) } } }
            }
        },
        Err(ImportError::Staff(e)) => return Err(staff_error(e)),
    };
    Ok(import_page(&admin, text, Some(result)).into_response())
}
