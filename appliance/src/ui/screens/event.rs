//! The life event's own steps, drawn inside the visit panel: the event date (today
//! by default, buttons for the last days and a month of day buttons: no typing),
//! the determination's questions as big はい/いいえ buttons (determined again after
//! each answer), and the procedure list per person with reason, counter and
//! deadline in 和暦, which staff can take a procedure out of or put it back in.

use kakanai_protocol::counter::ProcedureView;
use maud::{html, Markup};

use super::visit::{nav, person_line, yen};
use crate::ui::components::{act_button, calendar};
use crate::ui::visit::{banchi_text, iso, parse_iso, today_jst, wareki_iso, Visit};

/// The date step.
pub(crate) fn date(v: &Visit, csrf: &str) -> Markup {
    let today = today_jst();
    let chosen = v.event.date.as_str();
    html! {
        h2 class="step-title" { (v.kind.label()) "の日（異動日・届出日）" }
        p class="chosen" id="event-date" data-date=(chosen) { (wareki_iso(chosen)) }
        div class="choices quick-dates" {
            @for back in 0..7 {
                @let day = iso(today - back);
                @let label = match back { 0 => "今日".to_owned(), 1 => "昨日".to_owned(), n => format!("{n}日前") };
                (act_button(csrf, "date", Some(&day), None, &label, if day == chosen { "btn-choice selected" } else { "btn-choice" }))
            }
        }
        (calendar(csrf, "date", "picker", v.event.picker, Some(chosen), today))
        @if v.event.address.open { (address_picker(v, csrf)) }
        (nav(v, csrf, Some("次へ")))
    }
}

/// The questions step.
pub(crate) fn questions(v: &Visit, csrf: &str) -> Markup {
    let qs = v
        .event
        .determination
        .as_ref()
        .map(|d| d.questions.clone())
        .unwrap_or_default();
    html! {
        h2 class="step-title" { "確認事項" }
        p class="info" { "手続が変わる点だけをお尋ねします。" }
        @for q in &qs {
            div class="question" data-question=(q.key) {
                p class="question-text" { (q.text) }
                @if !q.affects.is_empty() { p class="hint" { "関係する手続: " (q.affects.join("、")) } }
                div class="answers" {
                    (answer(csrf, &q.key, "yes", "はい"))
                    (answer(csrf, &q.key, "no", "いいえ"))
                }
            }
        }
        (nav(v, csrf, None))
    }
}

fn answer(csrf: &str, key: &str, yes: &str, text: &str) -> Markup {
    html! {
        form method="post" action="/visit/act" class="inline" data-async {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="op" value="answer";
            input type="hidden" name="value" value=(key);
            input type="hidden" name="extra" value=(yes);
            button type="submit" class="btn btn-answer" data-act=(format!("answer:{key}")) data-answer=(yes) { (text) }
        }
    }
}

fn deadline(p: &ProcedureView) -> Markup {
    html! {
        span class="deadline" {
            @match (&p.deadline, &p.deadline_note) {
                (Some(d), _) => { "期限 " (wareki_iso(d)) }
                (None, Some(n)) => { "期限 " (n) }
                (None, None) => { "期限なし" }
            }
        }
    }
}

fn procedure(v: &Visit, csrf: &str, member: Option<&str>, p: &ProcedureView) -> Markup {
    let included = v.event.included(member, &p.id, p.included);
    let adjusted = included != p.included;
    html! {
        li class=(if included { "procedure" } else { "procedure excluded" })
            data-procedure=(p.id) data-member=(member.unwrap_or("")) data-included=(included) data-adjusted=(adjusted || p.adjusted) {
            div class="proc-main" {
                span class="proc-name" { (p.name) }
                @if p.has_form { span class="badge" { "申請書" } }
                @if adjusted { span class="badge badge-warn" { @if included { "職員が追加" } @else { "職員が除外" } } }
                p class="proc-reason" { (p.reason) }
                p class="proc-where" { (p.department) "　" (p.counter) "　" (deadline(p)) @if p.fee > 0 { "　手数料 " (yen(p.fee)) } }
                @if !p.documents.is_empty() { p class="hint" { "持ち物: " (p.documents.join("、")) } }
            }
            form method="post" action="/visit/act" class="inline" data-async {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="op" value="adjust";
                input type="hidden" name="value" value=(p.id);
                input type="hidden" name="extra" value=(member.unwrap_or(""));
                button type="submit" class=(if included { "btn btn-small btn-secondary" } else { "btn btn-small" }) data-act=(format!("adjust:{}", p.id)) {
                    @if included { "外す" } @else { "戻す" }
                }
            }
        }
    }
}

/// The procedures step.
pub(crate) fn procedures(v: &Visit, csrf: &str) -> Markup {
    let Some(d) = &v.event.determination else {
        return html! { p class="info" { "手続を判定していません。" } (nav(v, csrf, None)) };
    };
    let date_ok = parse_iso(&v.event.date).is_some();
    let forms = d
        .members
        .iter()
        .flat_map(|m| {
            m.procedures
                .iter()
                .map(move |p| (Some(m.member.as_str()), p))
        })
        .chain(d.household.iter().map(|p| (None, p)))
        .filter(|(m, p)| p.has_form && v.event.included(*m, &p.id, p.included))
        .count();
    html! {
        h2 class="step-title" { "必要な手続" }
        p class="info" {
            (v.kind.label()) "　" @if date_ok { (wareki_iso(&v.event.date)) }
            @if let Some(dest) = &d.destination { "　新住所: " (dest) }
        }
        @for m in &d.members {
            section class="member-procs" data-member=(m.member) {
                h3 { (person_line(&m.name, &m.kana, m.birth_date.as_deref(), None, &m.relationship)) span class="p-age" { (m.age) "歳" } }
                @let (needed, others): (Vec<&ProcedureView>, Vec<&ProcedureView>) = m
                    .procedures
                    .iter()
                    .partition(|p| p.included || v.event.included(Some(&m.member), &p.id, p.included));
                @if needed.is_empty() {
                    p class="hint" { "この方の手続はありません。" }
                } @else {
                    ul class="procedures" {
                        @for p in &needed { (procedure(v, csrf, Some(&m.member), p)) }
                    }
                }
                // What the rules left out stays at hand, folded, for staff to put back.
                @if !others.is_empty() {
                    details class="others" {
                        summary { "ほかの手続（対象外 " (others.len()) "件）" }
                        ul class="procedures" {
                            @for p in &others { (procedure(v, csrf, Some(&m.member), p)) }
                        }
                    }
                }
            }
        }
        @if !d.household.is_empty() {
            section class="member-procs" data-member="" {
                h3 { "世帯の手続" }
                ul class="procedures" {
                    @for p in &d.household { (procedure(v, csrf, None, p)) }
                }
            }
        }
        @if !d.visit_order.is_empty() {
            div class="visit-order-box" {
                p class="field-label" { "回る窓口の順番" }
                ol class="visit-order" {
                    @for s in &d.visit_order { li { (s.department) "（" (s.counter) "）" (s.procedures) "件" } }
                }
            }
        }
        div class="actions nav" {
            (act_button(csrf, "goto", Some("back"), None, "戻る", "btn-secondary"))
            (act_button(csrf, "print", None, None, &format!("すべて印刷（申請書{forms}枚＋手続案内書）"), "btn-primary btn-next"))
        }
    }
}

/// The new address: a 町字 from the address master's list, the 番地 from a keypad
/// (digits and 「-」 between 番地 and 号), no typing.
fn address_picker(v: &Visit, csrf: &str) -> Markup {
    let a = &v.event.address;
    html! {
        section class="address-picker" data-address-picker {
            h3 { "新しい住所" }
            @if let Some(d) = &a.chosen {
                p class="chosen" id="destination" data-machiaza=(d.machiaza.clone().unwrap_or_default()) { (d.address) }
            }
            @if let Some(menu) = &a.menu {
                p class="field-label" { "① 町字（" (menu.city) "）" }
                div class="choices machiaza" {
                    @for m in &menu.machiaza {
                        @let on = a.machiaza.as_ref().is_some_and(|x| x.code == m.code);
                        (act_button(csrf, "machiaza", Some(&m.code), None, &m.name, if on { "btn-choice selected" } else { "btn-choice" }))
                    }
                }
                @if let Some(m) = &a.machiaza {
                    p class="field-label" { "② 番地（番地と号の間は「-」）" }
                    p class="banchi-line" { (m.name) span id="banchi" data-banchi=(a.banchi) { (banchi_text(&a.banchi)) } }
                    div class="keys banchi-keys" {
                        @for d in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "-", "0", "back"] {
                            form method="post" action="/visit/act" class="inline" data-async {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="op" value="banchi-key";
                                input type="hidden" name="value" value=(d);
                                button type="submit" class="key" data-act=(format!("banchi-key:{d}")) {
                                    @if d == "back" { "訂正" } @else { (d) }
                                }
                            }
                        }
                    }
                    (act_button(csrf, "address-set", None, None, "この住所にする", "btn-primary"))
                }
            }
        }
    }
}
