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
