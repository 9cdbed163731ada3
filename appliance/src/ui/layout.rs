//! The frame of every page: the status strip (control plane link, card reader,
//! printer, scanner; kept live by `/events`), the banner shown while the control
//! plane is unreachable, the staff member and the logout button.

use maud::{html, Markup, DOCTYPE};

use super::session::SessionView;
use super::status::{label, tone, Status};

/// What the frame needs.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The page's title (after the product name).
    pub title: &'a str,
    /// A short id for the script (`login`, `home`, `card` …).
    pub page: &'a str,
    /// The counter's state when the page was rendered.
    pub status: &'a Status,
    /// The session (logout button and name when logged in).
    pub session: Option<&'a SessionView>,
}

/// What staff are told while the control plane is unreachable.
pub const OFFLINE_TITLE: &str = "本庁との通信が切れています。";
/// …and what to do.
pub const OFFLINE_NEXT: &str =
    "ログインや照会はできません。ネットワークケーブルと機器の電源を確認してください。\
回復すると自動でつながります。続く場合は情報システム担当に連絡してください。";

/// A whole page.
pub fn page(frame: &Frame<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="ja" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (frame.title) "｜書かない窓口" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body data-page=(frame.page) data-online=(frame.status.online) {
                (strip(frame))
                (offline_banner(frame.status.online))
                main id="main" { (body) }
            }
        }
    }
}

fn strip(frame: &Frame<'_>) -> Markup {
    let staff = frame
        .session
        .and_then(|s| s.staff.as_ref().map(|st| (s, st)));
    html! {
        header id="status-strip" class="strip" data-lights=(super::lights::pattern_name(frame.status.lights)) {
            a class="brand" href="/" { "書かない窓口" }
            ul class="devices" {
                @for (id, name, health) in frame.status.items() {
                    li class="device" data-status=(id) data-tone=(tone(&health)) {
                        span class="dot" {}
                        span class="name" { (name) }
                        span class="value" { (label(&health)) }
                    }
                }
            }
            @if let Some((session, staff)) = staff {
                div class="staff" {
                    span class="staff-name" { (staff.display_name) }
                    form method="post" action="/logout" class="logout" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" class="btn btn-small" { "ログアウト" }
                    }
                }
            }
        }
    }
}

fn offline_banner(online: bool) -> Markup {
    html! {
        div id="offline-banner" class="banner banner-bad" role="alert" hidden[online] {
            p class="banner-title" { (OFFLINE_TITLE) }
            p { (OFFLINE_NEXT) }
        }
    }
}
