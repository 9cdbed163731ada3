//! 監査ログ: search by date range (JST days), operator, resident (宛名番号) and
//! operation, newest first, paged; the chain's state (verified up to which entry,
//! the last signed checkpoint); CSV of the result.
//!
//! The search is always a POST: a 宛名番号 is personal data and must not end up in a
//! URL, a proxy log or the browser history. A search naming a resident is itself
//! audited (`admin:audit.search`, with that resident), as is every CSV export.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kakanai_protocol::{KeyId, VerifyingKey};
use maud::{html, Markup};

use super::session::Form;
use super::{layout, Admin, AdminError, AdminState, Posted};
use crate::audit::Verifier;
use crate::model::{Actor, Place, TenantId};
use crate::staff::permissions::{AUDIT_EXPORT, AUDIT_SEARCH};
use crate::store::{AuditEntry, AuditQuery, Store};

/// Entries per page.
const PAGE: u32 = 50;
/// Most entries in one CSV download.
const CSV_MAX: u32 = 100_000;
/// Most entries verified for the chain state on one page view (from the last
/// checkpoint on).
const VERIFY_MAX: u64 = 50_000;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/audit", get(form_page).post(search))
        .route("/admin/audit/csv", post(csv))
}

/// What the page says about the chain.
struct ChainState {
    head: u64,
    last_checkpoint: Option<(u64, i64)>,
    verified_to: Option<u64>,
    first_problem: Option<u64>,
    truncated: bool,
}

async fn chain_state(
    store: &Store,
    tenant: &TenantId,
    own: (KeyId, VerifyingKey),
) -> Result<ChainState, AdminError> {
    let head = store.audit_head(tenant).await?.seq;
    let checkpoints = store.checkpoints(tenant).await?;
    let last = checkpoints.last().cloned();
    let (kid, key) = own;
    let keys = move |k: &KeyId| (*k == kid).then_some(key);
    // From the last checkpoint, else from where deleted older years end, else the start.
    let base = store.audit_base(tenant).await?;
    let mut verifier = match (&last, base) {
        (Some(cp), _) => Verifier::after(tenant, cp.seq, cp.hash, std::slice::from_ref(cp), &keys),
        (None, Some(b)) => Verifier::after(tenant, b.seq, b.hash, &[], &keys),
        (None, None) => Verifier::new(tenant, &[], &keys),
    };
    let mut from = last
        .as_ref()
        .map(|cp| cp.seq + 1)
        .or(base.map(|b| b.seq + 1))
        .unwrap_or(1);
    let stop = from.saturating_add(VERIFY_MAX);
    while from <= head && from < stop {
        let page = store.audit_range(tenant, from, 5_000).await?;
        let Some(l) = page.last().map(|e| e.seq) else {
            break;
        };
        for e in &page {
            verifier.push(e);
        }
        from = l + 1;
    }
    let report = verifier.finish();
    let first_problem = report.problems.first().map(|p| p.seq.unwrap_or(0));
    let verified_to = if report.is_ok() {
        Some(
            report
                .head
                .map_or(last.as_ref().map_or(0, |c| c.seq), |h| h.seq),
        )
    } else {
        None
    };
    Ok(ChainState {
        head,
        last_checkpoint: last.map(|c| (c.seq, c.signed_at_ms)),
        verified_to,
        first_problem,
        truncated: from <= head,
    })
}

fn chain_box(c: &ChainState) -> Markup {
    html! {
        section.card #chain-state {
            h2 { "改ざん検知（ハッシュチェーン）の状態" }
            p { "記録件数: " (c.head) "件" }
            p { "最終チェックポイント（署名済み）: "
                @match c.last_checkpoint {
                    Some((seq, at)) => { "seq " (seq) "（" (layout::jst(at)) "）" }
                    None => { "まだありません" }
                }
            }
            @match (c.verified_to, c.first_problem) {
                (Some(v), _) => {
                    p.ok { "seq " (v) " まで検証済み: 問題はありません。" }
                    @if c.truncated { p.muted { "（表示を速くするため、チェックポイント以降の一部のみ検証しています。全件の検証は audit verify コマンドで行えます。）" } }
                }
                (None, p) => { p.bad { "検証で問題が見つかりました（seq " (p.unwrap_or(0)) " 付近）。システム管理者に連絡してください。" } }
            }
        }
    }
}

fn own_key(state: &AdminState) -> (KeyId, VerifyingKey) {
    (state.service.kid().clone(), state.service.verifying_key())
}

fn filter_fields(q: &Fields) -> Markup {
    html! {
        div.row {
            label { "開始日" input type="date" name="from" value=(q.from); }
            label { "終了日" input type="date" name="to" value=(q.to); }
            label { "操作者（ログインID）" input type="text" name="operator" value=(q.operator) autocomplete="off"; }
            label { "宛名番号" input type="text" name="resident" value=(q.resident) autocomplete="off" inputmode="numeric"; }
            label { "操作（前方一致）" input type="text" name="action" value=(q.action) list="actions" autocomplete="off"; }
        }
        datalist #actions {
            @for a in ["admin:", "admin:login", "admin:staff.", "admin:group.", "login", "rpc:", "command.", "print", "export"] {
                option value=(a) {}
            }
        }
    }
}

/// The form fields as typed (echoed back escaped) and the query they make.
#[derive(Default)]
struct Fields {
    from: String,
    to: String,
    operator: String,
    resident: String,
    action: String,
}

fn parse_fields(form: &Form) -> Result<(Fields, AuditQuery), AdminError> {
    let f = Fields {
        from: form.text("from").unwrap_or("").to_owned(),
        to: form.text("to").unwrap_or("").to_owned(),
        operator: form.text("operator").unwrap_or("").to_owned(),
        resident: form.text("resident").unwrap_or("").to_owned(),
        action: form.text("action").unwrap_or("").to_owned(),
    };
    let date = |s: &str, what: &str| -> Result<Option<i64>, AdminError> {
        if s.is_empty() {
            return Ok(None);
        }
        layout::parse_date(s).map(Some).ok_or_else(|| {
            AdminError::BadRequest(format!("{what}は YYYY-MM-DD の形で入力してください"))
        })
    };
    let for_search = |s: &str| (!s.is_empty() && s.len() <= 200).then(|| s.to_owned());
    let before_seq = match form.text("before") {
        Some(b) => Some(
            b.parse::<u64>()
                .map_err(|_| AdminError::BadRequest("ページの指定が正しくありません".into()))?,
        ),
        None => None,
    };
    let q = AuditQuery {
        from_ms: date(&f.from, "開始日")?,
        to_ms: date(&f.to, "終了日")?.map(|d| d + layout::ONE_DAY_MS),
        operator: for_search(&f.operator),
        resident: for_search(&f.resident),
        action_prefix: for_search(&f.action),
        before_seq,
    };
    Ok((f, q))
}

fn actor_text(a: &Actor) -> String {
    match a {
        Actor::Staff(id) => format!("職員 {id}"),
        Actor::Admin(id) => format!("管理者 {id}"),
        Actor::Device(id) => format!("端末 {id}"),
        Actor::System => "システム".to_owned(),
    }
}

fn place_text(p: &Place) -> String {
    match p {
        Place::Appliance(d) => format!("端末 {d}"),
        Place::Ip(ip) => format!("IP {ip}"),
        Place::Internal => "内部".to_owned(),
    }
}

fn results(admin: &Admin, f: &Fields, entries: &[AuditEntry], more: bool) -> Markup {
    html! {
        h2 { "検索結果" }
        @if entries.is_empty() { p #no-results { "該当する記録はありません。" } }
        @else {
            div.table-wrap { table #audit-results {
                thead { tr { th { "seq" } th { "日時" } th { "操作者" } th { "操作" } th { "宛名番号" } th { "場所" } th { "結果" } th { "詳細" } } }
                tbody { @for e in entries { tr {
                    td.num { (e.seq) }
                    td { (layout::jst(e.record.at_ms)) }
                    td { (actor_text(&e.record.actor)) }
                    td { (e.record.action) }
                    td { (e.record.resident.as_deref().unwrap_or("")) }
                    td { (place_text(&e.record.place)) }
                    td { (e.record.outcome) }
                    td { code { (e.record.detail.to_string()) } }
                } } }
            } }
        }
        div.pager {
            @if more {
                @if let Some(last) = entries.last() {
                    form method="post" action="/admin/audit" {
                        input type="hidden" name="csrf" value=(admin.csrf);
                        (hidden(f))
                        input type="hidden" name="before" value=(last.seq);
                        button.secondary type="submit" { "次の" (PAGE) "件" }
                    }
                }
            }
            @if admin.has(AUDIT_EXPORT) {
                form method="post" action="/admin/audit/csv" {
                    input type="hidden" name="csrf" value=(admin.csrf);
                    (hidden(f))
                    button.secondary #csv type="submit" { "CSVでダウンロード" }
                }
            }
        }
    }
}

fn hidden(f: &Fields) -> Markup {
    html! {
        input type="hidden" name="from" value=(f.from);
        input type="hidden" name="to" value=(f.to);
        input type="hidden" name="operator" value=(f.operator);
        input type="hidden" name="resident" value=(f.resident);
        input type="hidden" name="action" value=(f.action);
    }
}

fn page(admin: &Admin, chain: &ChainState, f: &Fields, found: Option<Markup>) -> Markup {
    let body = html! {
        h1 { "監査ログ" }
        (chain_box(chain))
        form.card #audit-search method="post" action="/admin/audit" {
            input type="hidden" name="csrf" value=(admin.csrf);
            (filter_fields(f))
            button type="submit" { "検索" }
        }
        @if let Some(r) = found { (r) }
    };
    layout::page(admin, "監査ログ", body)
}

async fn form_page(State(state): State<AdminState>, admin: Admin) -> Result<Response, AdminError> {
    admin.require(AUDIT_SEARCH)?;
    let chain = chain_state(state.service.store(), &admin.tenant, own_key(&state)).await?;
    Ok(page(&admin, &chain, &Fields::default(), None).into_response())
}

async fn audit_resident_view(
    state: &AdminState,
    admin: &Admin,
    q: &AuditQuery,
    action: &str,
) -> Result<(), AdminError> {
    if q.resident.is_some() || action == "admin:audit.export" {
        let mut record = admin.record(action, "ok", serde_json::json!({
            "from_ms": q.from_ms, "to_ms": q.to_ms, "operator": q.operator, "action": q.action_prefix,
        }));
        record.resident.clone_from(&q.resident);
        state.service.store().append_audit(&record).await?;
    }
    Ok(())
}

async fn search(State(state): State<AdminState>, posted: Posted) -> Result<Response, AdminError> {
    let Posted { admin, form } = posted;
    admin.require(AUDIT_SEARCH)?;
    let (f, q) = parse_fields(&form)?;
    audit_resident_view(&state, &admin, &q, "admin:audit.search").await?;
    let store = state.service.store();
    let mut entries = store.audit_page(&admin.tenant, &q, PAGE + 1).await?;
    let more = entries.len() > PAGE as usize;
    entries.truncate(PAGE as usize);
    let chain = chain_state(store, &admin.tenant, own_key(&state)).await?;
    let found = results(&admin, &f, &entries, more);
    Ok(page(&admin, &chain, &f, Some(found)).into_response())
}

/// One CSV field: quoted, quotes doubled, and a leading `= + - @` (or tab/CR)
/// neutralised so a spreadsheet does not run it as a formula.
fn csv_field(s: &str) -> String {
    let risky = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let s = s.replace('"', "\"\"");
    if risky {
        format!("\"'{s}\"")
    } else {
        format!("\"{s}\"")
    }
}

/// The CSV text of `entries` (UTF-8 with BOM, for Excel).
pub(super) fn to_csv(entries: &[AuditEntry]) -> String {
    let mut out = String::from("\u{FEFF}seq,日時,操作者,操作,宛名番号,場所,結果,詳細\r\n");
    for e in entries {
        let r = &e.record;
        let row = [
            e.seq.to_string(),
            layout::jst(r.at_ms),
            actor_text(&r.actor),
            r.action.clone(),
            r.resident.clone().unwrap_or_default(),
            place_text(&r.place),
            r.outcome.clone(),
            r.detail.to_string(),
        ];
        out.push_str(
            &row.iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

async fn csv(State(state): State<AdminState>, posted: Posted) -> Result<Response, AdminError> {
    let Posted { admin, form } = posted;
    admin.require(AUDIT_SEARCH)?;
    admin.require(AUDIT_EXPORT)?;
    let (_, mut q) = parse_fields(&form)?;
    q.before_seq = None;
    audit_resident_view(&state, &admin, &q, "admin:audit.export").await?;
    let entries = state
        .service
        .store()
        .audit_page(&admin.tenant, &q, CSV_MAX)
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit-log.csv\"",
            ),
        ],
        to_csv(&entries),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("=SUM(A1)"), "\"'=SUM(A1)\"");
        assert_eq!(csv_field("ok"), "\"ok\"");
    }
}
