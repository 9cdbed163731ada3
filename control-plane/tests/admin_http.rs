//! The admin UI over plain HTTP: security headers and cookie attributes, CSRF and
//! cross-site POSTs refused (and changing nothing), HTML/SQL injection in every
//! field harmless, login audited with the IP, lockout, logout, non-administrators
//! kept out, and one city's administrator unable to read or change another city's
//! staff, devices or audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "admin_fixture/mod.rs"]
mod fixture;

use fixture::{city_a, city_b, Browser, ADMIN_PASSWORD, CLERK_PASSWORD};
use kakanai_control_plane::model::{Actor, Place};

fn header<'a>(a: &'a fixture::Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}

fn assert_security_headers(a: &fixture::Answer) {
    assert!(header(a, "content-security-policy").starts_with("default-src 'self'"));
    assert!(!header(a, "content-security-policy").contains("unsafe-inline"));
    assert_eq!(header(a, "x-frame-options"), "DENY");
    assert_eq!(header(a, "referrer-policy"), "no-referrer");
    assert_eq!(header(a, "cache-control"), "no-store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_cookies_login_audit_and_logout() {
    let fx = fixture::start().await;
    let mut b = Browser::new(&fx.base);

    let login_page = b.get("/admin/login").await;
    assert_eq!(login_page.status, 200);
    assert_security_headers(&login_page);
    // No inline script or style anywhere: everything comes from /admin/assets.
    assert!(!login_page.body.contains("<script>"));
    assert!(!login_page.body.contains("style="));

    // Not logged in: every page sends you to the login form.
    for path in ["/admin/", "/admin/fleet", "/admin/staff", "/admin/audit"] {
        let a = b.get(path).await;
        assert_eq!(a.status, 303, "{path}");
        assert_eq!(a.location(), Some("/admin/login"));
        assert_security_headers(&a);
    }

    // A wrong password: refused, audited with the IP.
    let a = b.login("city-a", "admin-a", "wrong-password-1").await;
    assert_eq!(a.status, 200);
    assert!(a
        .body
        .contains("ログインIDまたはパスワードが正しくありません"));
    assert!(!b.cookies.iter().any(|(k, _)| k == "kakanai-admin"));

    // The right one: a session cookie with the right attributes.
    let a = b.login("city-a", "admin-a", ADMIN_PASSWORD).await;
    assert_eq!(a.status, 303);
    assert_eq!(a.location(), Some("/admin/"));
    let set_cookie = a
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("kakanai-admin="))
        .expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    // Only a hash of the token is stored; the cookie's token is not in the URL.
    assert!(!a.location().unwrap().contains('~'));

    let dash = b.get("/admin/").await;
    assert_eq!(dash.status, 200);
    assert_security_headers(&dash);
    assert!(dash.body.contains("ダッシュボード"));
    assert!(
        dash.body.contains("id=\"online-count\">1<"),
        "one device online"
    );

    let audit = fx.audit(&city_a()).await;
    let failed = audit
        .iter()
        .find(|e| e.record.action == "admin:login-failed")
        .expect("failed login audited");
    assert_eq!(failed.record.actor, Actor::Admin("admin-a".into()));
    assert_eq!(failed.record.place, Place::Ip("127.0.0.1".into()));
    let ok = audit
        .iter()
        .find(|e| e.record.action == "admin:login")
        .expect("login audited");
    assert_eq!(ok.record.outcome, "ok");
    assert_eq!(ok.record.place, Place::Ip("127.0.0.1".into()));

    // Logout ends the session on the server: the old cookie is worthless.
    let old_cookies = b.cookies.clone();
    let csrf = b.csrf().await;
    let a = b.post("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(a.status, 303);
    b.cookies = old_cookies;
    assert_eq!(b.get("/admin/").await.status, 303);
    assert!(fx
        .audit(&city_a())
        .await
        .iter()
        .any(|e| e.record.action == "admin:logout"));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_are_refused_and_change_nothing() {
    let fx = fixture::start().await;
    let mut b = Browser::new(&fx.base);
    assert_eq!(
        b.login("city-a", "admin-a", ADMIN_PASSWORD).await.status,
        303
    );
    let csrf = b.csrf().await;
    let form = |csrf: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("login_id".to_owned(), "new-clerk".to_owned()),
            ("display_name".to_owned(), "新人 一郎".to_owned()),
            ("password".to_owned(), "Hajimete-Pass-1".to_owned()),
        ]
    };
    // No token.
    let mut no_token = form("");
    no_token.remove(0);
    let a = send_new(&mut b, no_token, Some(fx.base.clone())).await;
    assert_eq!(a.status, 403);
    // A wrong token.
    let a = send_new(&mut b, form("00ff"), Some(fx.base.clone())).await;
    assert_eq!(a.status, 403);
    // The right token from another site.
    let a = send_new(&mut b, form(&csrf), Some("http://evil.example".into())).await;
    assert_eq!(a.status, 403);
    // No Origin and no Referer.
    let a = send_new(&mut b, form(&csrf), None).await;
    assert_eq!(a.status, 403);
    assert!(a.body.contains("別のサイトからの送信"));
    assert!(fx
        .store()
        .get_staff(&city_a(), "new-clerk")
        .await
        .unwrap()
        .is_none());

    // A login form posted from elsewhere (login CSRF) is refused too.
    let mut other = Browser::new(&fx.base);
    let a = other
        .post(
            "/admin/login",
            &[
                ("tenant", "city-a"),
                ("login_id", "admin-a"),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(a.status, 403);

    // The same request done properly works.
    let a = send_new(&mut b, form(&csrf), Some(fx.base.clone())).await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert!(fx
        .store()
        .get_staff(&city_a(), "new-clerk")
        .await
        .unwrap()
        .is_some());
    fx.stop().await;
}

async fn send_new(
    b: &mut Browser,
    v: Vec<(String, String)>,
    origin: Option<String>,
) -> fixture::Answer {
    let refs: Vec<(&str, &str)> = v.iter().map(|(a, c)| (a.as_str(), c.as_str())).collect();
    b.post_from("/admin/staff/new", &refs, origin.as_deref())
        .await
}

const NASTY: &[&str] = &[
    "<script>alert('x')</script>",
    "\"><img src=x onerror=alert(1)>",
    "'; DROP TABLE staff; --",
    "' OR '1'='1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_in_every_field_is_harmless() {
    let fx = fixture::start().await;
    let mut b = Browser::new(&fx.base);
    // In the login form: just a failed login.
    for n in NASTY {
        let a = b.login("city-a", n, n).await;
        assert_eq!(a.status, 200);
        assert!(!a.body.contains(n) || !n.contains('<'));
    }
    let a = b.login(NASTY[2], "admin-a", ADMIN_PASSWORD).await;
    assert!(a
        .body
        .contains("ログインIDまたはパスワードが正しくありません"));
    assert_eq!(
        b.login("city-a", "admin-a", ADMIN_PASSWORD).await.status,
        303
    );
    let csrf = b.csrf().await;

    // As a display name: stored as text, shown escaped.
    for (i, n) in NASTY.iter().enumerate() {
        let id = format!("clerk-x{i}");
        let a = b
            .post(
                "/admin/staff/new",
                &[
                    ("csrf", &csrf),
                    ("login_id", &id),
                    ("display_name", n),
                    ("password", "Hajimete-Pass-1"),
                    ("group", "shimin-madoguchi"),
                ],
            )
            .await;
        assert_eq!(a.status, 303, "{}", a.body);
        assert_eq!(
            fx.store()
                .get_staff(&city_a(), &id)
                .await
                .unwrap()
                .unwrap()
                .display_name,
            *n
        );
    }
    let list = b.get("/admin/staff").await;
    assert_eq!(list.status, 200);
    assert!(!list.body.contains("<script>alert"));
    assert!(!list.body.contains("<img src=x"));
    assert!(list.body.contains("&lt;script&gt;alert"));
    // The staff table is still there, with everyone in it.
    assert_eq!(
        fx.store().list_staff(&city_a()).await.unwrap().len(),
        2 + NASTY.len()
    );

    // As a login id, group name, group description, permission: refused or escaped,
    // never executed, nothing created by a refused request.
    for n in NASTY {
        let a = b
            .post(
                "/admin/staff/new",
                &[
                    ("csrf", &csrf),
                    ("login_id", n),
                    ("display_name", "x"),
                    ("password", "Hajimete-Pass-1"),
                ],
            )
            .await;
        assert_eq!(a.status, 400);
        assert!(!a.body.contains(n) || !n.contains('<'));
        let a = b
            .post(
                "/admin/groups/save",
                &[("csrf", &csrf), ("name", n), ("description", n)],
            )
            .await;
        assert_eq!(a.status, 400);
        let a = b
            .post(
                "/admin/groups/save",
                &[
                    ("csrf", &csrf),
                    ("name", "g1"),
                    ("description", n),
                    ("perm", "resident.view"),
                ],
            )
            .await;
        assert_eq!(a.status, 303);
        let a = b
            .post(
                "/admin/groups/save",
                &[
                    ("csrf", &csrf),
                    ("name", "g1"),
                    ("description", "d"),
                    ("perm", n),
                ],
            )
            .await;
        assert_eq!(a.status, 400);
        let a = b
            .post(
                "/admin/staff/action",
                &[("csrf", &csrf), ("login_id", n), ("op", "disable")],
            )
            .await;
        assert_eq!(a.status, 404);
    }
    let g = b.get("/admin/groups/g1").await;
    assert!(!g.body.contains("<script>alert") && !g.body.contains("<img src=x"));
    assert_eq!(fx.store().list_groups(&city_a()).await.unwrap().len(), 3);
    assert_eq!(
        fx.store().list_staff(&city_a()).await.unwrap().len(),
        2 + NASTY.len()
    );

    // In every audit search field: no error, no match, echoed escaped.
    for n in NASTY {
        let a = b
            .post(
                "/admin/audit",
                &[
                    ("csrf", &csrf),
                    ("operator", n),
                    ("resident", n),
                    ("action", n),
                ],
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.body.contains("該当する記録はありません"));
        assert!(!a.body.contains("<script>alert") && !a.body.contains("<img src=x"));
        let a = b
            .post("/admin/audit", &[("csrf", &csrf), ("from", n)])
            .await;
        assert_eq!(a.status, 400);
    }
    // The staff module's own search still works afterwards.
    let a = b
        .post("/admin/audit", &[("csrf", &csrf), ("operator", "admin-a")])
        .await;
    assert!(a.body.contains("admin:staff.create"));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_and_non_administrators() {
    let fx = fixture::start().await;
    let mut b = Browser::new(&fx.base);
    // A counter clerk with the right password is not let in (and told nothing more
    // than a wrong password would tell).
    let a = b.login("city-a", "clerk-a1", CLERK_PASSWORD).await;
    assert_eq!(a.status, 200);
    assert!(a
        .body
        .contains("ログインIDまたはパスワードが正しくありません"));
    assert!(fx
        .audit(&city_a())
        .await
        .iter()
        .any(|e| e.record.detail["reason"] == "not-an-administrator"));

    for _ in 0..5 {
        let a = b.login("city-a", "admin-a", "guess-guess-1").await;
        assert_eq!(a.status, 200);
    }
    let a = b.login("city-a", "admin-a", ADMIN_PASSWORD).await;
    assert_eq!(a.status, 200, "locked: the right password does not get in");
    assert!(a.body.contains("ロックされています"));
    let failures = fx
        .audit(&city_a())
        .await
        .iter()
        .filter(|e| {
            e.record.action == "admin:login-failed"
                && e.record.actor == Actor::Admin("admin-a".into())
        })
        .count();
    assert_eq!(failures, 6);

    // Another administrator unlocks the account (audited), and it works again.
    let mut other = Browser::new(&fx.base);
    fx.store()
        .add_group_member(&city_a(), "johosystem", "clerk-a1")
        .await
        .unwrap();
    assert_eq!(
        other
            .login("city-a", "clerk-a1", CLERK_PASSWORD)
            .await
            .status,
        303
    );
    let csrf = other.csrf().await;
    let a = other
        .post(
            "/admin/staff/action",
            &[("csrf", &csrf), ("login_id", "admin-a"), ("op", "unlock")],
        )
        .await;
    assert_eq!(a.status, 303);
    assert_eq!(
        b.login("city-a", "admin-a", ADMIN_PASSWORD).await.status,
        303
    );
    assert!(fx
        .audit(&city_a())
        .await
        .iter()
        .any(|e| e.record.action == "admin:staff.unlock"));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_city_cannot_reach_another() {
    let fx = fixture::start().await;
    let mut b = Browser::new(&fx.base);
    assert_eq!(
        b.login("city-b", "admin-b", ADMIN_PASSWORD).await.status,
        303
    );
    b.cookies.clear();
    // city-b's administrator's password does not open city-a.
    assert_eq!(
        b.login("city-a", "admin-b", ADMIN_PASSWORD).await.status,
        200
    );
    assert_eq!(
        b.login("city-a", "admin-a", ADMIN_PASSWORD).await.status,
        303
    );
    let csrf = b.csrf().await;

    // Reading: city-b's staff, groups and devices are not found; lists show city-a only.
    assert_eq!(b.get("/admin/staff/clerk-b1").await.status, 404);
    assert_eq!(b.get("/admin/groups/johosystem").await.status, 200);
    assert_eq!(b.get("/admin/fleet/counter-b1").await.status, 404);
    assert_eq!(b.get("/admin/fleet/counter-a1").await.status, 200);
    let fleet = b.get("/admin/fleet").await;
    assert!(fleet.body.contains("A市 市民課 1番窓口"));
    assert!(!fleet.body.contains("B市"));
    let staff = b.get("/admin/staff").await;
    assert!(!staff.body.contains("clerk-b1"));

    // Changing by id in a form: not found, and nothing changes in city-b.
    for op in ["disable", "unlock", "groups", "rename", "reset"] {
        let a = b
            .post(
                "/admin/staff/action",
                &[
                    ("csrf", &csrf),
                    ("login_id", "clerk-b1"),
                    ("op", op),
                    ("display_name", "乗っ取り"),
                    ("password", "Nottori-Pass-99"),
                    ("group", "johosystem"),
                ],
            )
            .await;
        assert_eq!(a.status, 404, "{op}");
    }
    let clerk = fx
        .store()
        .get_staff(&city_b(), "clerk-b1")
        .await
        .unwrap()
        .unwrap();
    assert!(!clerk.disabled);
    assert_eq!(clerk.display_name, "窓口 花子");
    assert_eq!(
        fx.store().groups_of(&city_b(), "clerk-b1").await.unwrap(),
        vec!["shimin-madoguchi".to_owned()]
    );
    // Deleting or rewriting city-b's group by name touches city-a's group of that
    // name only (names are per tenant).
    let a = b
        .post(
            "/admin/groups/save",
            &[
                ("csrf", &csrf),
                ("name", "shimin-madoguchi"),
                ("description", "x"),
                ("perm", "admin.staff"),
            ],
        )
        .await;
    assert_eq!(a.status, 303);
    let b_groups = fx.store().list_groups(&city_b()).await.unwrap();
    let g = b_groups
        .iter()
        .find(|g| g.name == "shimin-madoguchi")
        .unwrap();
    assert!(!g.permissions.contains("admin.staff"));

    // The audit log: city-b's entries (admin-b's login) are not found.
    // (admin-b's failed attempt on city-a above is city-a's to see; its successful
    // login to city-b is not.)
    let a = b
        .post("/admin/audit", &[("csrf", &csrf), ("operator", "admin-b")])
        .await;
    assert!(a.body.contains("<td>admin:login-failed</td>"), "{}", a.body);
    assert!(!a.body.contains("<td>admin:login</td>"), "{}", a.body);
    let a = b.post("/admin/audit/csv", &[("csrf", &csrf)]).await;
    assert_eq!(a.status, 200);
    assert!(a
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let rows = a.body.lines().count() - 1;
    assert_eq!(
        rows,
        fx.audit(&city_a()).await.len(),
        "exactly city-a's entries"
    );
    assert!(a.body.contains("admin-a"));

    // A cookie edited to name the other city: no session there.
    let (name, value) = b
        .cookies
        .iter()
        .find(|(k, _)| k == "kakanai-admin")
        .cloned()
        .unwrap();
    let swapped = value.replacen("city-a", "city-b", 1);
    b.cookies.retain(|(k, _)| *k != name);
    b.cookies.push((name, swapped));
    assert_eq!(b.get("/admin/audit").await.status, 303);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends() {
    let mut settings = kakanai_control_plane::admin::AdminSettings {
        policy: fixture::test_policy(),
        ..Default::default()
    };
    settings.policy.idle_timeout_ms = 1_000;
    let fx = fixture::start_with(settings).await;
    let mut b = Browser::new(&fx.base);
    assert_eq!(
        b.login("city-a", "admin-a", ADMIN_PASSWORD).await.status,
        303
    );
    // Used within the idle time: still in.
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(b.get("/admin/").await.status, 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
    let a = b.get("/admin/").await;
    assert_eq!(a.status, 303);
    assert_eq!(a.location(), Some("/admin/login"));
    fx.stop().await;
}
