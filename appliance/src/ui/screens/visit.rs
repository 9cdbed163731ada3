//! The visit screens (受付): `GET /visit` is the whole page, `GET /visit/panel` its
//! live part (fetched again by the script whenever `/events` sends `visit`), `POST
//! /visit/start` opens a visit from the menu, `POST /visit/act` is every action of
//! staff on it (see [`crate::ui::visit`] for the state machine). The certificate
//! steps are drawn by [`super::certificate`], the life-event steps by
//! [`super::event`]; the people, print, scan and done steps here.
//!
//! An action answers `303 See Other` to `/visit` (or `/` once the visit ended); a
//! refusal is shown on the step as a notice. The card screen's "この方で受付" posts
//! here too and lands on `/visit`.
//!
//! # Test hooks
//!
//! Stable attributes the tests (and the lead's end-to-end test) drive the screens by:
//!
//! - `[data-step]` on the panel's root: `people`, `certificates`, `details`, `date`,
//!   `questions`, `procedures`, `print`, `scan`, `done`; `data-kind` the visit kind
//!   (`certificate`, `move_in` …), `data-busy` `true` while it waits for the control
//!   plane (`#visit-busy` holds the spinner and what it waits for);
//! - `#visit-notice` (`.notice`): the step's message; `#scan-notice`: the last
//!   scanned code's outcome (`data-tone` `ok` / `warn` / `bad`);
//! - buttons: `[data-act="ACTION"]` or `[data-act="ACTION:VALUE"]` for every visit
//!   action, e.g. `goto:next`, `goto:back`, `confirm-family`, `cert-toggle:juminhyo`,
//!   `cert-copies:juminhyo` (with `data-delta` `+`/`-`), `purpose:就職`, `id-check:…`,
//!   `requester:self`, `answer:KEY` (with `data-answer` `yes`/`no`),
//!   `adjust:PROCEDURE` (inside its `[data-procedure]`), `print`, `reprint`,
//!   `date:YYYY-MM-DD`, `machiaza:CODE`, `banchi-key:D` (`0`–`9`, `-`, `back`),
//!   `address-set`, `end`; the menu's tiles `[data-start="KIND"]`; the card
//!   screen's `[data-act="card-person:N"]`;
//! - `[data-member="I"]` a person of the visit (`data-card` `true` when their card
//!   was read, shown as カード確認済; `data-subject`); `[data-family]` the family of
//!   the 転出証明書情報 waiting for confirmation; `[data-result]` a search result;
//! - `[data-certificate="ID"]` an offered certificate (`data-selected`, `.copies`);
//!   `#fee-total` (`data-fee`, yen);
//! - `[data-question="KEY"]`; `[data-procedure="ID"]` (`data-member` `m1`…, empty
//!   for household procedures; `data-included`, `data-adjusted`); `.deadline`;
//! - `[data-address-picker]` the new address picker (転居, or 転入 after
//!   `address-unknown`); `#banchi` the 番地 keyed; `#destination` (`data-machiaza`) the
//!   address set;
//! - `#print` (`data-print`: `sending`, `queued`, `printing`, `completed`,
//!   `failed`); `[data-application="NUMBER"]` (`data-state`: `draft`, `printed`,
//!   `accepted` …); `#scan-prompt`; `#visit-done`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Form;
use kakanai_protocol::counter::ApplicationState;
use maud::{html, Markup};
use serde::Deserialize;

use super::{csrf_ok, forbidden, require_staff, see_other};
use crate::ui::components::{act_button, act_text, calendar, notice};
use crate::ui::layout::{self, Frame};
use crate::ui::session::SessionView;
use crate::ui::visit::{
    today_jst, wareki_iso, Action, PrintPhase, Step, StepNotice, Visit, VisitKind,
};
use crate::ui::Ui;

/// `POST /visit/start`.
#[derive(Debug, Deserialize)]
pub struct StartForm {
    csrf: String,
    kind: String,
}

/// `POST /visit/act`. Its text fields may hold personal data: `Debug` shows the
/// action only.
#[derive(Deserialize)]
pub struct ActForm {
    csrf: String,
    /// The action (`op`: a field named `action` would shadow the form's own
    /// `action` property in the browser).
    op: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    extra: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    text2: Option<String>,
}

impl std::fmt::Debug for ActForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActForm")
            .field("op", &self.op)
            .finish_non_exhaustive()
    }
}

/// `GET /visit`.
pub async fn page(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let (session, _) = match require_staff(&ui, &headers, false) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    let Some(kind) = ui.visit_view(&session.id, |v| v.map(|v| v.kind)) else {
        return see_other("/");
    };
    let status = ui.status();
    layout::page(
        &Frame {
            title: kind.label(),
            page: "visit",
            status: &status,
            session: Some(&session),
        },
        html! {
            div class="screen-head" {
                a class="btn btn-small" href="/" { "メニューへ" }
                h1 class="screen-title" { (kind.label()) "の受付" }
                div class="head-end" {
                    (act_button(&session.csrf, "end", None, None, "受付を終了", "btn-small btn-danger"))
                }
            }
            section id="visit-panel" class="panel" aria-live="polite"
                data-panel-src="/visit/panel" data-panel-on="visit" {
                (panel_markup(&ui, &session))
            }
        },
    )
    .into_response()
}

/// `GET /visit/panel`.
pub async fn panel(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    match require_staff(&ui, &headers, true) {
        Ok((session, _)) => panel_markup(&ui, &session).into_response(),
        Err(r) => *r,
    }
}

/// `POST /visit/start`: opens a visit of the kind chosen on the menu.
pub async fn start(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Form(form): Form<StartForm>,
) -> Response {
    let (session, _) = match require_staff(&ui, &headers, false) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    if !csrf_ok(&session, &form.csrf, &headers) {
        return forbidden();
    }
    let Some(kind) = VisitKind::parse(&form.kind) else {
        return see_other("/");
    };
    if let Err(n) = ui.visit_start(&session.id, kind) {
        ui.with_visit(&session.id, |v| {
            v.notice = Some(StepNotice {
                notice: n,
                tone: "warn",
            });
        });
    }
    see_other("/visit")
}

/// `POST /visit/act`: one action of staff; a refusal is shown on the step.
pub async fn act(State(ui): State<Ui>, headers: HeaderMap, Form(form): Form<ActForm>) -> Response {
    let (session, staff) = match require_staff(&ui, &headers, false) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    if !csrf_ok(&session, &form.csrf, &headers) {
        return forbidden();
    }
    let action = Action {
        action: form.op,
        value: form.value,
        extra: form.extra,
        text: form.text,
        text2: form.text2,
    };
    if let Err(n) = ui.visit_act(&session.id, &staff.token, &action) {
        let open = ui
            .with_visit(&session.id, |v| {
                v.notice = Some(StepNotice {
                    notice: n,
                    tone: "warn",
                });
            })
            .is_some();
        if !open {
            return see_other("/");
        }
    }
    if action.action == "end" {
        return see_other("/");
    }
    see_other("/visit")
}

fn panel_markup(ui: &Ui, session: &SessionView) -> Markup {
    let status = ui.status();
    let printer = status.printer();
    ui.visit_view(&session.id, |v| {
        let Some(v) = v else {
            return html! {
                div class="visit" data-step="none" {
                    p class="prompt-big" { "受付は終了しました。" }
                    a class="btn btn-primary" href="/" { "メニューへ" }
                }
            };
        };
        let csrf = session.csrf.as_str();
        html! {
            div class="visit" data-step=(v.step.name()) data-kind=(v.kind.as_str()) data-busy=(v.busy.is_some()) {
                ol class="steps" {
                    @for s in v.steps() {
                        li class=(step_class(v, s)) data-step-item=(s.name()) { (s.label()) }
                    }
                }
                @if let Some(b) = &v.busy {
                    div id="visit-busy" class="busy-line" role="status" {
                        div class="spinner small" {}
                        span { (b) }
                    }
                }
                @if let Some(n) = &v.notice {
                    div id="visit-notice" data-tone=(n.tone) { (notice(&n.notice, n.tone)) }
                }
                @match v.step {
                    Step::People => (people(v, csrf)),
                    Step::Certificates => (super::certificate::certificates(v, csrf)),
                    Step::Details => (super::certificate::details(v, csrf)),
                    Step::Date => (super::event::date(v, csrf)),
                    Step::Questions => (super::event::questions(v, csrf)),
                    Step::Procedures => (super::event::procedures(v, csrf)),
                    Step::Print | Step::Scan | Step::Done => (forms(v, csrf, crate::ui::status::label(&printer), crate::ui::status::tone(&printer))),
                }
            }
        }
    })
}

fn step_class(v: &Visit, s: Step) -> &'static str {
    let steps = v.steps();
    let at = steps.iter().position(|x| *x == v.step).unwrap_or(0);
    let i = steps.iter().position(|x| *x == s).unwrap_or(0);
    if i == at {
        "step current"
    } else if i < at {
        "step done"
    } else {
        "step"
    }
}

/// The navigation row: back (when there is a step before) and next.
pub(crate) fn nav(v: &Visit, csrf: &str, next: Option<&str>) -> Markup {
    html! {
        div class="actions nav" {
            @if v.step != Step::People {
                (act_button(csrf, "goto", Some("back"), None, "戻る", "btn-secondary"))
            }
            @if let Some(text) = next {
                (act_button(csrf, "goto", Some("next"), None, text, "btn-primary btn-next"))
            }
        }
    }
}

/// A person's line: name, reading, birth date in 和暦, sex, 続柄.
pub(crate) fn person_line(
    name: &str,
    kana: &str,
    birth: Option<&str>,
    sex: Option<&str>,
    relation: &str,
) -> Markup {
    html! {
        span class="p-name" { (name) }
        span class="p-kana" { (kana) }
        @if let Some(b) = birth { span class="p-birth" { (wareki_iso(b)) "生" } }
        @let s = crate::ui::visit::sex_label(sex);
        @if !s.is_empty() { span class="p-sex" { (s) } }
        @if !relation.is_empty() { span class="p-relation" { (relation) } }
    }
}

fn people(v: &Visit, csrf: &str) -> Markup {
    let certificate = v.kind == VisitKind::Certificate;
    let move_in = v.kind.as_str() == "move_in";
    let birth = v.kind.as_str() == "birth";
    html! {
        h2 class="step-title" {
            @if certificate { "証明書を請求する方" } @else { "届出に来られた方・対象の方" }
        }
        @if let Some(offer) = &v.family_offer {
            div class="family" data-family=(offer.family.len()) {
                p class="family-head" { "転出証明書情報の世帯（" (offer.family.len()) "人）" }
                @if !offer.exact {
                    (notice(&crate::ui::card::Notice {
                        title: "カードと完全には一致しませんでした。".into(),
                        next: "氏名・生年月日を券面と見比べてから確認してください。".into(),
                    }, "warn"))
                }
                ul class="people" {
                    @for p in &offer.family {
                        li class="person" {
                            (person_line(&p.name, &p.kana, Some(&p.birth_date), Some(&p.sex), &p.relation))
                            span class="p-address" { "前住所: " (p.previous_address) }
                            span class="p-address" { "転入先: " (p.destination) }
                            @if offer.card_code.as_deref() == Some(p.juminhyo_code.as_str()) {
                                span class="badge badge-ok" { "カード確認済" }
                            }
                        }
                    }
                }
                (act_button(csrf, "confirm-family", None, None, &format!("この世帯で受付（{}人）", offer.family.len()), "btn-primary btn-wide"))
            }
        }
        @if v.members.is_empty() && v.family_offer.is_none() {
            p class="prompt-big" { "マイナンバーカードを読み取ってください" }
        } @else if !v.members.is_empty() {
            ul class="people members" {
                @for (i, m) in v.members.iter().enumerate() {
                    li class="person member" data-member=(i) data-card=(m.card_read) data-subject=(m.subject) {
                        div class="person-main" {
                            (person_line(&m.name, &m.kana, m.birth_date.as_deref(), m.sex.as_deref(), &m.relationship))
                            @if !m.address.is_empty() { span class="p-address" { (m.address) } }
                        }
                        div class="person-tags" {
                            @if m.card_read { span class="badge badge-ok" { "カード確認済" } }
                            @if certificate && i == v.cert.subject { span class="badge badge-accent" { "証明書の対象" } }
                        }
                        div class="person-actions" {
                            @if certificate {
                                @if i != v.cert.subject && m.atena().is_some() {
                                    (act_button(csrf, "cert-subject", Some(&i.to_string()), None, "この方の証明書", "btn-small"))
                                }
                            } @else {
                                (act_button(csrf, "toggle-subject", Some(&i.to_string()), None,
                                    if m.subject { "対象" } else { "対象外" },
                                    if m.subject { "btn-small btn-toggle on" } else { "btn-small btn-toggle" }))
                            }
                            (act_button(csrf, "remove", Some(&i.to_string()), None, "外す", "btn-small btn-secondary"))
                        }
                    }
                }
            }
        }
        div class="people-tools" {
            a class="btn btn-primary" href="/card" data-act="read-card" {
                @if v.members.is_empty() { "カードを読み取る" } @else { "ほかの方のカードを読み取る" }
            }
        }
        @if certificate && !v.cert.household.is_empty() {
            details class="household" {
                summary { "同じ世帯の方（" (v.cert.household.len()) "人）" }
                ul class="people" {
                    @for r in &v.cert.household {
                        li class="person" { (person_line(&r.name, &r.kana, Some(&r.birth_date), None, &r.relation)) span class="p-status" { (r.status) } }
                    }
                }
            }
        }
        @if birth { (newborn(v, csrf)) }
        @if v.kind.as_str() == "move_out" {
            (act_text(csrf, "destination", "転出先の住所", &v.event.destination, "設定", "text"))
        }
        details class="search" open[v.search.results.is_some()] {
            summary { "カードがない方は氏名（カナ）で検索" }
            form method="post" action="/visit/act" class="text-form" data-async {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="op" value="search";
                label for="search-text" { "氏名の読み（先頭の数文字、カタカナ）" }
                div class="text-row" {
                    input id="search-text" name="text" type="text" value=(v.search.text) autocomplete="off" maxlength="40";
                    input id="search-birth" name="extra" type="date" value=(v.search.birth_date.clone().unwrap_or_default()) aria-label="生年月日（任意）";
                    button type="submit" class="btn btn-primary" data-act="search" { "検索" }
                }
            }
            @if let Some(results) = &v.search.results {
                @if results.is_empty() {
                    p class="info" { "該当する方がいません。読みを短くするか、生年月日を外して検索してください。" }
                } @else {
                    ul class="people results" {
                        @for c in results {
                            li class="person" data-result=(c.resident.atena) {
                                div class="person-main" {
                                    (person_line(&c.resident.name, &c.resident.kana, Some(&c.resident.birth_date), None, &c.resident.relation))
                                    span class="p-address" { (c.resident.address) }
                                    span class="p-status" { (c.resident.status) }
                                }
                                (act_button(csrf, "pick", Some(&c.resident.atena), None,
                                    if v.members.is_empty() { "この方で受付" } else { "この方を追加" }, "btn-primary"))
                            }
                        }
                    }
                }
            }
        }
        @if !move_in || !v.members.is_empty() {
            (nav(v, csrf, (!v.members.is_empty()).then_some("次へ")))
        }
    }
}

fn newborn(v: &Visit, csrf: &str) -> Markup {
    let n = &v.newborn;
    html! {
        details class="newborn" open[v.members.iter().all(|m| !m.subject)] {
            summary { "生まれた方を入力" }
            p class="field-label" { "① 生年月日" }
            @if let Some(b) = &n.birth_date { p class="chosen" data-newborn-birth=(b) { (wareki_iso(b)) } }
            (calendar(csrf, "newborn-date", "picker", v.event.picker, n.birth_date.as_deref(), today_jst()))
            p class="field-label" { "② 性別" }
            div class="choices" {
                (act_button(csrf, "newborn-sex", Some("male"), None, "男", if n.sex.as_deref() == Some("male") { "btn-choice selected" } else { "btn-choice" }))
                (act_button(csrf, "newborn-sex", Some("female"), None, "女", if n.sex.as_deref() == Some("female") { "btn-choice selected" } else { "btn-choice" }))
            }
            p class="field-label" { "③ 氏名とフリガナ" }
            form method="post" action="/visit/act" class="text-form" data-async {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="op" value="newborn-add";
                div class="text-row" {
                    input id="newborn-name" name="text" type="text" placeholder="氏名" autocomplete="off" maxlength="40";
                    input id="newborn-kana" name="text2" type="text" placeholder="フリガナ" autocomplete="off" maxlength="60";
                    button type="submit" class="btn btn-primary" data-act="newborn-add" { "追加" }
                }
            }
        }
    }
}

fn forms(v: &Visit, csrf: &str, printer_label: &str, printer_tone: &str) -> Markup {
    let fee: i64 = v
        .server
        .as_ref()
        .map_or(0, |s| s.applications.iter().map(|a| a.fee).sum());
    html! {
        @if v.step == Step::Done {
            div id="visit-done" class="done-box" {
                p class="done-title" { "受付完了" }
                @if v.kind == VisitKind::Certificate {
                    p class="fee" { "手数料 " strong id="fee-total" data-fee=(fee) { (yen(fee)) } }
                } @else {
                    p { "手続案内書の順に窓口へご案内してください。" }
                    @if let Some(d) = &v.event.determination {
                        ol class="visit-order" {
                            @for s in &d.visit_order { li { (s.department) "（" (s.counter) "）" (s.procedures) "件" } }
                        }
                    }
                }
                (act_button(csrf, "end", None, None, "受付を終了", "btn-primary btn-wide"))
            }
        } @else {
            @if let Some(p) = &v.print {
                div id="print" class="print-box" data-print=(p.phase.name()) {
                    @match &p.phase {
                        PrintPhase::Sending => { div class="spinner" {} p class="prompt-big" { "印刷データを送っています…" } }
                        PrintPhase::Queued => { div class="spinner" {} p class="prompt-big" { "プリンタの順番を待っています…" } }
                        PrintPhase::Printing => { div class="spinner" {} p class="prompt-big" { "印刷中です…" } @if p.pages > 0 { p { (p.pages) "ページ" } } }
                        PrintPhase::Completed => { p class="prompt-big ok" { "✓ 印刷が終わりました" } }
                        PrintPhase::Failed(reason) => {
                            (notice(&crate::ui::card::Notice {
                                title: format!("印刷できませんでした: {reason}"),
                                next: "プリンタの用紙・電源を確認してから「もう一度印刷」を押してください。".into(),
                            }, "bad"))
                            (act_button(csrf, "reprint", None, None, "もう一度印刷", "btn-primary"))
                        }
                    }
                    @if printer_tone == "bad" || printer_tone == "warn" {
                        p class="printer-state" data-printer-tone=(printer_tone) { "プリンタ: " (printer_label) }
                    }
                }
            }
            @if v.server.is_some() {
                div id="scan-prompt" class="scan-prompt" {
                    p class="prompt-big" { "署名された申請書の二次元コードを読み取ってください" }
                    p { "スキャナで申請書の右上の二次元コードを読み取ると、下の一覧に受付済みと表示されます。" }
                }
            }
            @if let Some(n) = &v.scan_notice {
                div id="scan-notice" data-tone=(n.tone) { (notice(&n.notice, if n.tone == "ok" { "ok" } else { n.tone })) }
            }
            @if v.server.is_some() && v.busy.is_none() {
                div class="actions" { (act_button(csrf, "reload", None, None, "最新の状態を表示", "btn-small btn-secondary")) }
            }
            @if !v.pending_codes.is_empty() {
                p class="info" { "送れていない読み取り: " (v.pending_codes.len()) "件" }
                (act_button(csrf, "resend-codes", None, None, "もう一度送る", "btn-primary"))
            }
        }
        @if let Some(s) = &v.server {
            ul class="applications" {
                @for a in &s.applications {
                    @let accepted = matches!(a.state, ApplicationState::Accepted | ApplicationState::Exported | ApplicationState::Completed);
                    li class=(if accepted { "application accepted" } else { "application" }) data-application=(a.number) data-state=(state_name(a.state)) {
                        span class="app-mark" { @if accepted { "✓" } @else { "□" } }
                        span class="app-title" { (a.title) }
                        @if let Some(n) = &a.subject_name { span class="app-subject" { (n) } }
                        span class="app-number" { "No. " (a.number) }
                        span class="app-state" { (state_label(a.state)) }
                        @if a.fee > 0 { span class="app-fee" { (yen(a.fee)) } }
                    }
                }
            }
        }
    }
}

/// `1,200円`.
pub(crate) fn yen(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}{out}円", if n < 0 { "-" } else { "" })
}

fn state_name(s: ApplicationState) -> &'static str {
    match s {
        ApplicationState::Draft => "draft",
        ApplicationState::Printed => "printed",
        ApplicationState::Accepted => "accepted",
        ApplicationState::Exported => "exported",
        ApplicationState::Completed => "completed",
        ApplicationState::Cancelled => "cancelled",
    }
}

fn state_label(s: ApplicationState) -> &'static str {
    match s {
        ApplicationState::Draft => "印刷待ち",
        ApplicationState::Printed => "署名待ち",
        ApplicationState::Accepted => "受付済",
        ApplicationState::Exported => "受付済（連携済）",
        ApplicationState::Completed => "完了",
        ApplicationState::Cancelled => "取消",
    }
}

#[cfg(test)]
mod tests {
    use super::yen;

    #[test]
    fn yen_has_thousands_separators() {
        assert_eq!(yen(0), "0円");
        assert_eq!(yen(600), "600円");
        assert_eq!(yen(1200), "1,200円");
        assert_eq!(yen(1_234_567), "1,234,567円");
    }
}
