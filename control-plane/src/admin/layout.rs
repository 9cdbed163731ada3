//! The page frame (header, navigation, logout), times in Japan time, and the assets
//! embedded in the binary (`control-plane/assets/admin/`).

use axum::http::header;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, DOCTYPE};

use super::{Admin, AdminState, NAV};

const CSS: &str = include_str!("../../assets/admin/admin.css");
const JS: &str = include_str!("../../assets/admin/admin.js");

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/admin/assets/admin.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }),
        )
        .route(
            "/admin/assets/admin.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    JS,
                )
            }),
        )
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " — かかない 管理画面" }
            link rel="stylesheet" href="/admin/assets/admin.css";
            script src="/admin/assets/admin.js" defer {}
        }
    }
}

/// A page for a logged-in administrator: header with their name and logout, the
/// navigation they may use, then `body`.
pub(super) fn page(admin: &Admin, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="ja" {
            (head(title))
            body {
                header.top {
                    span.brand { "かかない 管理画面" }
                    span.tenant { (admin.tenant.as_str()) }
                    nav {
                        @for item in NAV {
                            @if item.permission.is_none_or(|p| admin.has(p)) && !admin.must_change_password {
                                a href=(item.path) { (item.label) }
                            }
                        }
                    }
                    span.user { (admin.display_name) "（" (admin.login_id) "）" }
                    a href="/admin/password" { "パスワード変更" }
                    form.inline method="post" action="/admin/logout" {
                        input type="hidden" name="csrf" value=(admin.csrf);
                        button.link type="submit" { "ログアウト" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page without a session (login, errors).
pub(super) fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="ja" {
            (head(title))
            body { (body) }
        }
    }
}

/// A message page (errors).
pub(super) fn bare_page(title: &str, message: &str) -> Markup {
    bare(
        title,
        html! {
            main.message {
                h1 { (title) }
                p { (message) }
                p { a href="/admin/" { "管理画面のトップへ" } }
            }
        },
    )
}

const DAY_MS: i64 = 86_400_000;
const JST_MS: i64 = 9 * 3_600_000;

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-27 14:05:03` in Japan time.
pub(super) fn jst(ms: i64) -> String {
    let local = ms.saturating_add(JST_MS);
    let (y, m, d) = civil_from_days(local.div_euclid(DAY_MS));
    let s = local.rem_euclid(DAY_MS) / 1000;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `YYYY-MM-DD` (an `<input type="date">`) → 00:00 JST of that day in ms.
pub(super) fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if !(1900..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Refuse 02-30 and the like: the day must come back as given.
    (civil_from_days(days) == (y, m, d)).then(|| days * DAY_MS - JST_MS)
}

/// One day in ms (for "to" dates, which include the whole day).
pub(super) const ONE_DAY_MS: i64 = DAY_MS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_japan_time() {
        // 2026-04-01T00:00 JST = 2026-03-31T15:00Z.
        let ms = parse_date("2026-04-01").unwrap();
        assert_eq!(ms, 1_774_969_200_000);
        assert_eq!(jst(ms), "2026-04-01 00:00:00");
        assert_eq!(jst(ms - 1000), "2026-03-31 23:59:59");
        assert!(parse_date("2026-02-30").is_none());
        assert!(parse_date("x").is_none());
    }
}
