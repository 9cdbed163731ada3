//! The certificate request's own steps, drawn inside the visit panel: the
//! certificates with options and copies (＋/−), then the requester, purpose,
//! destination and ID check with the fee total and "申請書を印刷".

use kakanai_protocol::counter::Relationship;
use maud::{html, Markup};

use super::visit::{nav, person_line, yen};
use crate::ui::components::{act_button, act_text};
use crate::ui::visit::Visit;

fn subject_line(v: &Visit) -> Markup {
    html! {
        @if let Some(m) = v.members.get(v.cert.subject) {
            p class="subject-line" data-subject-line {
                "証明書の対象: " (person_line(&m.name, &m.kana, m.birth_date.as_deref(), m.sex.as_deref(), &m.relationship))
            }
        }
    }
}

/// The certificates step.
pub(crate) fn certificates(v: &Visit, csrf: &str) -> Markup {
    html! {
        h2 class="step-title" { "請求する証明書" }
        (subject_line(v))
        @match &v.cert.menu {
            None => {
                @if v.busy.is_none() {
                    p class="info" { "証明書の一覧を取得できていません。" }
                    (act_button(csrf, "goto", Some("people"), None, "来庁者の画面に戻る", "btn-secondary"))
                }
            }
            Some(menu) => {
                div class="offers" {
                    @for c in &menu.certificates {
                        @let item = v.cert.items.iter().find(|i| i.certificate == c.id);
                        div class=(if item.is_some() { "offer selected" } else { "offer" }) data-certificate=(c.id) data-selected=(item.is_some()) {
                            (act_button(csrf, "cert-toggle", Some(&c.id), None, &c.name, if item.is_some() { "btn-offer selected" } else { "btn-offer" }))
                            span class="offer-fee" { "1通 " (yen(c.fee)) }
                            @if let Some(item) = item {
                                div class="copies-row" {
                                    form method="post" action="/visit/act" class="inline" data-async {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="op" value="cert-copies";
                                        input type="hidden" name="value" value=(c.id);
                                        input type="hidden" name="extra" value="-";
                                        button type="submit" class="btn btn-round" data-act=(format!("cert-copies:{}", c.id)) data-delta="-" disabled[item.copies <= 1] { "−" }
                                    }
                                    span class="copies" { (item.copies) } span { "通" }
                                    form method="post" action="/visit/act" class="inline" data-async {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="op" value="cert-copies";
                                        input type="hidden" name="value" value=(c.id);
                                        input type="hidden" name="extra" value="+";
                                        button type="submit" class="btn btn-round" data-act=(format!("cert-copies:{}", c.id)) data-delta="+" disabled[item.copies >= menu.max_copies] { "＋" }
                                    }
                                    span class="subtotal" { (yen(item.fee * i64::from(item.copies))) }
                                }
                                @let all: Vec<&String> = c.options.iter().chain(&c.restricted_options).chain(&c.free_options).collect();
                                @if !all.is_empty() {
                                    div class="options" {
                                        @for o in all {
                                            @let on = item.options.contains(o);
                                            (act_button(csrf, "cert-option", Some(&c.id), Some(o), o, if on { "btn-small btn-toggle on" } else { "btn-small btn-toggle" }))
                                        }
                                    }
                                }
                                @if !c.requires.is_empty() { p class="hint" { "必要なもの: " (c.requires.join("、")) } }
                                @if !c.notes.is_empty() { p class="hint" { (c.notes) } }
                            }
                        }
                    }
                }
                p class="fee" { "手数料 合計 " strong id="fee-total" data-fee=(v.cert.fee_total()) { (yen(v.cert.fee_total())) } }
            }
        }
        (nav(v, csrf, (!v.cert.items.is_empty()).then_some("次へ")))
    }
}

fn choice(csrf: &str, action: &str, value: &str, text: &str, on: bool) -> Markup {
    act_button(
        csrf,
        action,
        Some(value),
        None,
        text,
        if on {
            "btn-choice selected"
        } else {
            "btn-choice"
        },
    )
}

/// The details step: requester, purpose, destination, ID check, fee, print.
pub(crate) fn details(v: &Visit, csrf: &str) -> Markup {
    let c = &v.cert;
    let Some(menu) = &c.menu else {
        return html! { p class="info" { "証明書の一覧を取得できていません。" } (nav(v, csrf, None)) };
    };
    let subject_atena = v
        .members
        .get(c.subject)
        .and_then(|m| m.atena())
        .unwrap_or("");
    html! {
        h2 class="step-title" { "請求の内容" }
        (subject_line(v))
        div class="field" data-field="requester" {
            p class="field-label" { "請求者" }
            div class="choices" {
                (choice(csrf, "requester", "self", "本人", c.relationship == Relationship::Myself))
                (choice(csrf, "requester", "household", "同一世帯", c.relationship == Relationship::Household))
                (choice(csrf, "requester", "agent", "代理人", c.relationship == Relationship::Agent))
                (choice(csrf, "requester", "third_party", "第三者", c.relationship == Relationship::ThirdParty))
            }
            @match c.relationship {
                Relationship::Household => {
                    div class="choices" {
                        @for r in c.household.iter().filter(|r| r.atena != subject_atena) {
                            (choice(csrf, "requester-member", &r.atena, &format!("{}（{}）", r.name, r.relation), c.requester_atena.as_deref() == Some(r.atena.as_str())))
                        }
                    }
                }
                Relationship::Agent | Relationship::ThirdParty => {
                    (act_text(csrf, "requester-name", "請求者の氏名", &c.requester_name, "設定", "text"))
                }
                Relationship::Myself => {}
            }
        }
        div class="field" data-field="purpose" {
            p class="field-label" { "使用目的" }
            div class="choices" {
                @for p in &menu.purposes {
                    (choice(csrf, "purpose", p, p, !c.purpose_other && c.purpose.as_deref() == Some(p.as_str())))
                }
                (choice(csrf, "purpose", "other", "その他", c.purpose_other))
            }
            @if c.purpose_other {
                (act_text(csrf, "purpose-text", "使用目的（その他）", c.purpose.as_deref().unwrap_or(""), "設定", "text"))
            }
        }
        div class="field" data-field="destination" {
            (act_text(csrf, "destination", "提出先（任意）", &c.destination, "設定", "text"))
        }
        div class="field" data-field="id-check" {
            p class="field-label" { "本人確認書類" }
            div class="choices" {
                @for i in &menu.id_checks {
                    (choice(csrf, "id-check", i, i, c.id_check.as_deref() == Some(i.as_str())))
                }
            }
        }
        div class="summary" {
            ul class="order" {
                @for item in &c.items {
                    @let name = menu.certificates.iter().find(|o| o.id == item.certificate).map_or(item.certificate.as_str(), |o| o.name.as_str());
                    li data-order=(item.certificate) {
                        span { (name) } span { (item.copies) "通" }
                        @if !item.options.is_empty() { span class="hint" { (item.options.join("・")) } }
                        span { (yen(item.fee * i64::from(item.copies))) }
                    }
                }
            }
            p class="fee" { "手数料 合計 " strong id="fee-total" data-fee=(c.fee_total()) { (yen(c.fee_total())) } }
        }
        div class="actions nav" {
            (act_button(csrf, "goto", Some("back"), None, "戻る", "btn-secondary"))
            (act_button(csrf, "print", None, None, "申請書を印刷", "btn-primary btn-next"))
        }
    }
}
