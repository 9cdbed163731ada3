//! The card-read screen. `GET /card` is the whole page; `GET /card/panel` is its
//! live part, fetched again by the script whenever `/events` says the card flow
//! changed. The PIN arrives in `POST /card/pin` and goes straight to the card.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use kakanai_hw::card::Credential;
use kakanai_protocol::personal::Sex;
use maud::{html, Markup};
use serde::Deserialize;

use super::login::CsrfForm;
use super::{csrf_ok, forbidden, require_staff, see_other};
use crate::ui::card::{CardScreen, Entry, Lookup, Notice};
use crate::ui::components::{act_button, keypad, notice, post_button, KeypadKind};
use crate::ui::layout::{self, Frame, OFFLINE_TITLE};
use crate::ui::session::SessionView;
use crate::ui::wareki::birth_date_label;
use crate::ui::Ui;

/// Which entry the staff chose (`?entry=code-b`).
#[derive(Debug, Default, Deserialize)]
pub struct EntryQuery {
    entry: Option<String>,
}

impl EntryQuery {
    fn entry(&self) -> Entry {
        match self.entry.as_deref() {
            Some("code-b") => Entry::CodeB,
            _ => Entry::Pin,
        }
    }
}

/// The PIN form. Never logged: `Debug` shows nothing of it.
#[derive(Deserialize)]
pub struct PinForm {
    pin: String,
    csrf: String,
}

impl std::fmt::Debug for PinForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinForm(<redacted>)")
    }
}

/// The 照合番号B form.
#[derive(Deserialize)]
pub struct CodeBForm {
    code: String,
    csrf: String,
}

impl std::fmt::Debug for CodeBForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeBForm(<redacted>)")
    }
}

/// `GET /card`.
pub async fn page(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<EntryQuery>,
) -> Response {
    let (session, _) = match require_staff(&ui, &headers, false) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    let status = ui.status();
    layout::page(
        &Frame {
            title: "カードの読み取り",
            page: "card",
            status: &status,
            session: Some(&session),
        },
        html! {
            div class="screen-head" {
                @if ui.visit_view(&session.id, |v| v.is_some()) {
                    a class="btn btn-small" href="/visit" data-act="back-to-visit" { "受付に戻る" }
                } @else {
                    a class="btn btn-small" href="/" { "メニューへ" }
                }
                h1 class="screen-title" { "マイナンバーカードの読み取り" }
            }
            section id="card-panel" class="panel" aria-live="polite"
                data-panel-src="/card/panel" data-panel-on="card visit" {
                (panel_markup(&ui, &session, q.entry(), None))
            }
        },
    )
    .into_response()
}

/// `GET /card/panel`: the live part of the card screen.
pub async fn panel(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<EntryQuery>,
) -> Response {
    match require_staff(&ui, &headers, true) {
        Ok((session, _)) => panel_markup(&ui, &session, q.entry(), None).into_response(),
        Err(r) => *r,
    }
}

fn sex_label(sex: Sex) -> &'static str {
    match sex {
        Sex::Male => "男",
        Sex::Female => "女",
        Sex::NotApplicable => "適用不能",
    }
}

fn panel_markup(ui: &Ui, session: &SessionView, entry: Entry, refused: Option<&Notice>) -> Markup {
    let csrf = &session.csrf;
    let status = ui.status();
    // A card taken into a 転入 visit without a tap: back to the visit (the script
    // follows `data-goto`).
    let goto_visit = ui.take_card_taken(&session.id);
    // The visit open for this session, if any: a read person can join it.
    let visit = ui.visit_view(&session.id, |v| {
        v.filter(|v| v.step == crate::ui::visit::Step::People && v.busy.is_none())
            .map(|v| (v.kind, v.members.is_empty()))
    });
    let take = if visit.is_some_and(|(_, first)| first) {
        "この方で受付"
    } else {
        "この方を追加"
    };
    ui.card_view(&session.id, |screen, mine| {
        html! {
            div class="card-state" data-card-state=(screen.name()) {
                @if goto_visit { div data-goto="/visit" hidden {} }
                @if let Some(n) = refused { (notice(n, "warn")) }
                @match screen {
                    CardScreen::Waiting => {
                        @if status.reader_configured && status.readers.is_empty() {
                            (notice(&Notice {
                                title: "カードリーダーが接続されていません。".into(),
                                next: "カードリーダーのケーブルを確認してください。つなぐと自動で使えるようになります。".into(),
                            }, "bad"))
                        } @else {
                            div class="prompt" {
                                p class="prompt-big" { "マイナンバーカードをカードリーダーに置いてください" }
                                p { "カードを置くと、自動で確認を始めます。" }
                            }
                        }
                    }
                    CardScreen::Identifying => {
                        div class="prompt busy" {
                            div class="spinner" {}
                            p class="prompt-big" { "カードを確認しています…" }
                            p { "カードを動かさないでください。" }
                        }
                    }
                    CardScreen::Ready { pin_tries, notice: why } => {
                        p class="card-kind" { "マイナンバーカードを確認しました" }
                        @if let Some(n) = why { (notice(n, "warn")) }
                        nav class="tabs" {
                            a class=(if entry == Entry::Pin { "tab active" } else { "tab" }) href="/card" { "暗証番号（住民の方）" }
                            a class=(if entry == Entry::CodeB { "tab active" } else { "tab" }) href="/card?entry=code-b" { "照合番号B（職員）" }
                        }
                        div class="entry" {
                            @match entry {
                                Entry::Pin => {
                                    @if *pin_tries == 0 {
                                        div class="entry-info" {
                                            p { "暗証番号では読み取れません。「照合番号B（職員）」を選んでください。" }
                                            (post_button("/card/reset", "最初からやり直す", csrf, "btn-secondary"))
                                        }
                                    } @else {
                                        div class="entry-info" {
                                            p class="instruction" { "住民の方に、暗証番号（数字4桁）を入力していただいてください。" }
                                            p class="tries" data-tries=(pin_tries) { "入力できる残り回数: " strong { (pin_tries) "回" } }
                                            (post_button("/card/reset", "最初からやり直す", csrf, "btn-secondary"))
                                        }
                                        (keypad(KeypadKind::Pin, "/card/pin", "pin", csrf))
                                    }
                                }
                                Entry::CodeB => {
                                    div class="entry-info" {
                                        p class="instruction" { "カード表面の照合番号B（数字14桁）を入力してください。" }
                                        p class="hint" { "生年月日（和暦の年月日 6桁）＋有効期限の西暦年（4桁）＋セキュリティコード（4桁）" }
                                        (post_button("/card/reset", "最初からやり直す", csrf, "btn-secondary"))
                                    }
                                    (keypad(KeypadKind::CodeB, "/card/code-b", "code", csrf))
                                }
                            }
                        }
                    }
                    CardScreen::Reading(_) => {
                        div class="prompt busy" {
                            div class="spinner" {}
                            p class="prompt-big" { "読み取り中です" }
                            p { "カードを動かさないでください。" }
                        }
                    }
                    CardScreen::Read { face, lookup, card_removed } => {
                        @if mine {
                            h2 class="result-title" { "読み取り結果" }
                            @if face.has_private_use_chars {
                                (notice(&Notice {
                                    title: "外字を含む可能性があります。".into(),
                                    next: "カードの券面と見比べて確認してください。".into(),
                                }, "warn"))
                            }
                            dl class="face" {
                                dt { "氏名" } dd class="face-name" { (face.name.expose()) }
                                dt { "住所" } dd class="face-address" { (face.address.expose()) }
                                dt { "生年月日" } dd class="face-birth" { (birth_date_label(face.birth_date.expose())) }
                                dt { "性別" } dd class="face-sex" { (sex_label(face.sex)) }
                            }
                            div class="lookup" data-lookup=(lookup_name(lookup)) {
                                @match lookup {
                                    Lookup::Pending => { div class="spinner small" {} span { "住民記録を照会中…" } }
                                    Lookup::Answered { candidates, .. } if candidates.is_empty() => {
                                        span { "住民記録に該当する方が見つかりません。" }
                                    }
                                    Lookup::Answered { exact, candidates } => {
                                        p class="lookup-head" {
                                            @if *exact { "住民記録と一致しました。" } @else { "住民記録の候補: " strong { (candidates.len()) "件" } }
                                        }
                                        ol class="candidates" {
                                            @for (i, c) in candidates.iter().enumerate().take(5) {
                                                li class="candidate" {
                                                    span class="cand-name" { (c.resident.name) }
                                                    span class="cand-kana" { (c.resident.kana) }
                                                    span class="cand-birth" { (birth_date_label(&c.resident.birth_date.replace('-', ""))) }
                                                    span class="cand-address" { (c.resident.address) }
                                                    span class="cand-status" { (c.resident.status) }
                                                    span class="cand-reason" { (c.reason) }
                                                    @if visit.is_some_and(|(k, _)| k.as_str() != "move_in") {
                                                        (act_button(csrf, "card-person", Some(&i.to_string()), None, take, if i == 0 && *exact { "btn-primary" } else { "btn-secondary" }))
                                                    }
                                                }
                                            }
                                        }
                                    }
                                    Lookup::NotAvailable => { span { "住民記録の照会は、本庁のシステムでまだ利用できません。" } }
                                    Lookup::Unreachable => { span { (OFFLINE_TITLE) "住民記録を照会できませんでした。" } }
                                    Lookup::Failed(m) => { span { "照会できませんでした: " (m) } }
                                }
                            }
                            @if *card_removed {
                                p class="info" { "カードは取り外されました。" }
                            }
                            @if let Some((kind, first)) = visit {
                                @if kind.as_str() == "move_in" {
                                    div class="actions take" {
                                        (act_button(csrf, "card-person", Some("0"), None,
                                            if first { "この方で受付（転出証明書情報を照会）" } else { "この方のカードを確認" }, "btn-primary"))
                                    }
                                }
                            }
                        } @else {
                            (notice(&Notice {
                                title: "別の職員が読み取った内容です。".into(),
                                next: "「次の方へ」を押すと、新しく読み取れます。".into(),
                            }, "warn"))
                        }
                        div class="actions" { (post_button("/card/reset", "次の方へ（画面を消去）", csrf, "btn-primary")) }
                    }
                    CardScreen::Problem(n) => {
                        (notice(n, "bad"))
                        div class="actions" { (post_button("/card/reset", "最初からやり直す", csrf, "btn-primary")) }
                    }
                }
            }
        }
    })
}

fn lookup_name(l: &Lookup) -> &'static str {
    match l {
        Lookup::Pending => "pending",
        Lookup::Answered { .. } => "answered",
        Lookup::NotAvailable => "not-available",
        Lookup::Unreachable => "unreachable",
        Lookup::Failed(_) => "failed",
    }
}

/// Where a form post goes back to (the script follows it and refreshes the panel).
fn back(entry: Entry) -> Response {
    see_other(match entry {
        Entry::Pin => "/card",
        Entry::CodeB => "/card?entry=code-b",
    })
}

fn submit(ui: &Ui, headers: &HeaderMap, csrf: &str, entry: Entry, digits: &str) -> Response {
    let (session, staff) = match require_staff(ui, headers, false) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    if !csrf_ok(&session, csrf, headers) {
        return forbidden();
    }
    let credential = match entry {
        Entry::Pin => Credential::pin(digits),
        Entry::CodeB => Credential::code_b(digits),
    };
    let refused = match credential {
        Err(_) => Some(Notice {
            title: match entry {
                Entry::Pin => "暗証番号は数字4桁です。".into(),
                Entry::CodeB => "照合番号Bは数字14桁です。".into(),
            },
            next: "もう一度入力してください。カードには何も送っていません。".into(),
        }),
        Ok(c) => ui.card_submit(&session, staff.token, entry, c).err(),
    };
    match refused {
        None => back(entry),
        Some(n) => (
            StatusCode::CONFLICT,
            panel_markup(ui, &session, entry, Some(&n)),
        )
            .into_response(),
    }
}

/// `POST /card/pin`.
pub async fn submit_pin(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Form(form): Form<PinForm>,
) -> Response {
    submit(&ui, &headers, &form.csrf, Entry::Pin, &form.pin)
}

/// `POST /card/code-b`.
pub async fn submit_code_b(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Form(form): Form<CodeBForm>,
) -> Response {
    submit(&ui, &headers, &form.csrf, Entry::CodeB, &form.code)
}

/// `POST /card/reset`: forget the screen, check the card on the reader again.
pub async fn reset(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (session, _) = match require_staff(&ui, &headers, false) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    if !csrf_ok(&session, &form.csrf, &headers) {
        return forbidden();
    }
    ui.card_reset();
    see_other("/card")
}
