//! Pieces the screens share: the on-screen keypad, notices, big buttons.

use maud::{html, Markup};

use super::card::Notice;

/// What a keypad enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeypadKind {
    /// The resident's 4-digit PIN: shown as dots, never echoed.
    Pin,
    /// 照合番号B, 14 digits typed by staff from the card face: shown in its groups.
    CodeB,
}

/// An on-screen keypad posting to `action` with the digits in field `field`.
///
/// Large keys (1–9, 訂正, 0), a display, and a submit key enabled when all digits are
/// in. The script fills the hidden field; without the script the field is a plain
/// numeric input, so the form still works.
pub fn keypad(kind: KeypadKind, action: &str, field: &str, csrf: &str) -> Markup {
    let (len, submit, label) = match kind {
        KeypadKind::Pin => (4, "確定", "暗証番号（数字4桁）"),
        KeypadKind::CodeB => (14, "読み取る", "照合番号B（数字14桁）"),
    };
    let kind_name = match kind {
        KeypadKind::Pin => "pin",
        KeypadKind::CodeB => "code-b",
    };
    html! {
        form method="post" action=(action) class="keypad" data-async data-keypad=(kind_name) data-length=(len) {
            input type="hidden" name="csrf" value=(csrf);
            label class="keypad-label" for=(format!("keypad-{kind_name}")) { (label) }
            input id=(format!("keypad-{kind_name}")) class="keypad-input" name=(field)
                type=(if kind == KeypadKind::Pin { "password" } else { "text" })
                inputmode="numeric" pattern=(format!("[0-9]{{{len}}}")) maxlength=(len)
                autocomplete="off" required;
            div class="keypad-display" aria-live="polite" {
                @for i in 0..len {
                    @if kind == KeypadKind::CodeB && (i == 6 || i == 10) {
                        span class="gap" {}
                    }
                    span class="slot" {}
                }
            }
            div class="keys" {
                @for d in ["1", "2", "3", "4", "5", "6", "7", "8", "9"] {
                    button type="button" class="key" data-key=(d) { (d) }
                }
                button type="button" class="key key-fn" data-action="back" { "訂正" }
                button type="button" class="key" data-key="0" { "0" }
                button type="submit" class="key key-ok" data-action="submit" { (submit) }
            }
        }
    }
}

/// A notice: what happened and what to do next.
pub fn notice(n: &Notice, tone: &str) -> Markup {
    html! {
        div class=(format!("notice notice-{tone}")) role="alert" {
            p class="notice-title" { (n.title) }
            p class="notice-next" { (n.next) }
        }
    }
}

/// A big button posting to `action` (state-changing, so a form with the CSRF token).
pub fn post_button(action: &str, text: &str, csrf: &str, class: &str) -> Markup {
    html! {
        form method="post" action=(action) class="inline" data-async {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" class=(format!("btn {class}")) { (text) }
        }
    }
}

/// A button doing one visit action (`POST /visit/act`): `action` with `value` and
/// `extra`. `hook` goes in the button's `data-act` (what tests and the script find
/// it by: `action` or `action:value`).
pub fn act_button(
    csrf: &str,
    action: &str,
    value: Option<&str>,
    extra: Option<&str>,
    text: &str,
    class: &str,
) -> Markup {
    let hook = match value {
        Some(v) => format!("{action}:{v}"),
        None => action.to_owned(),
    };
    html! {
        form method="post" action="/visit/act" class="inline" data-async {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="op" value=(action);
            @if let Some(v) = value { input type="hidden" name="value" value=(v); }
            @if let Some(e) = extra { input type="hidden" name="extra" value=(e); }
            button type="submit" class=(format!("btn {class}")) data-act=(hook) { (text) }
        }
    }
}

/// A one-line text form for a visit action (`text` field) with its submit button;
/// for what only a keyboard can give (a kana prefix, a name typed by staff).
pub fn act_text(
    csrf: &str,
    action: &str,
    label: &str,
    current: &str,
    button: &str,
    input_mode: &str,
) -> Markup {
    let id = format!("text-{action}");
    html! {
        form method="post" action="/visit/act" class="text-form" data-async {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="op" value=(action);
            label for=(id) { (label) }
            div class="text-row" {
                input id=(id) name="text" type="text" value=(current) inputmode=(input_mode)
                    autocomplete="off" maxlength="100";
                button type="submit" class="btn btn-primary" data-act=(action) { (button) }
            }
        }
    }
}

/// A month of day buttons (no typing): `action` with the day as `YYYY-MM-DD`,
/// ◀ ▶ for the month (`nav_action` with `prev` / `next`). Days after `last`
/// (a day count) cannot be chosen; `selected` is marked.
pub fn calendar(
    csrf: &str,
    action: &str,
    nav_action: &str,
    month_first: i64,
    selected: Option<&str>,
    last: i64,
) -> Markup {
    use super::visit::{civil_from_days, iso, month_len};
    let (y, m, _) = civil_from_days(month_first);
    let len = i64::from(month_len(y, m));
    // 1970-01-01 was a Thursday (4 with Sunday = 0).
    let lead = (month_first + 4).rem_euclid(7);
    let next_disabled = month_first + len > last;
    let title = super::visit::wareki_iso(&iso(month_first));
    let title = title.split('月').next().unwrap_or("").to_owned() + "月";
    html! {
        div class="calendar" data-calendar=(action) data-month=(format!("{y:04}-{m:02}")) {
            div class="cal-head" {
                (act_button(csrf, nav_action, Some("prev"), None, "◀ 前の月", "btn-small"))
                span class="cal-title" { (title) "（" (y) "年" (m) "月）" }
                @if next_disabled {
                    button type="button" class="btn btn-small" disabled { "次の月 ▶" }
                } @else {
                    (act_button(csrf, nav_action, Some("next"), None, "次の月 ▶", "btn-small"))
                }
            }
            div class="cal-grid" {
                @for w in ["日", "月", "火", "水", "木", "金", "土"] { span class="cal-wd" { (w) } }
                @for _ in 0..lead { span class="cal-empty" {} }
                @for d in 0..len {
                    @let day = iso(month_first + d);
                    @let class = if selected == Some(day.as_str()) { "btn cal-day selected" } else { "btn cal-day" };
                    @if month_first + d > last {
                        button type="button" class=(class) disabled { (d + 1) }
                    } @else {
                        form method="post" action="/visit/act" class="inline" data-async {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="op" value=(action);
                            input type="hidden" name="value" value=(day);
                            button type="submit" class=(class) data-day=(day) { (d + 1) }
                        }
                    }
                }
            }
        }
    }
}
