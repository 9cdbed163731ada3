//! Staff login, lockout, sessions, password change, permissions and the `staff.*` RPC
//! methods, against SQLite (a file in a temporary directory) and a real PostgreSQL
//! server started by `kakanai-test-peers` (a case that cannot start it fails).
//!
//! Time is driven through `now_ms`; argon2 runs with the smallest parameters
//! (`HashParams::INSECURE_FOR_TESTS`) except where the production parameters are the
//! point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use kakanai_control_plane::model::{Ident, TenantId};
use kakanai_control_plane::rpc::{Dispatcher, RpcContext, RpcFuture, RpcHandler};
use kakanai_control_plane::service::session::SessionResolver;
use kakanai_control_plane::staff::admin::NewAccount;
use kakanai_control_plane::staff::rpc::{
    ChangePassword, ChangePasswordRequest, Login, LoginRequest, LoginResponse, Logout,
    LogoutRequest, Whoami, WhoamiResponse,
};
use kakanai_control_plane::staff::{
    permissions, HashParams, PolicyViolation, Secret, StaffError, StaffPolicy, StaffService,
};
use kakanai_control_plane::store::SESSION_TOUCH_MS;
use kakanai_control_plane::store::{Group, StaffUpdate, Store, Tenant};
use kakanai_protocol::catalogue::{RpcError, RpcMethod};

// ---------------------------------------------------------------------------------
// Harness

both_backends!("ss_";
    login_ok,
    wrong_password_and_unknown_id_are_indistinguishable,
    lockout_after_five_failures_until_it_runs_out,
    success_resets_the_failure_count,
    disabled_accounts_are_refused_and_their_sessions_end,
    sessions_are_bound_to_device_and_tenant,
    idle_timeout_slides_and_absolute_expiry_holds,
    uses_seconds_apart_write_last_seen_once,
    logout_and_logout_all,
    change_password,
    must_change_password_session_has_no_permissions,
    permissions_are_the_union_and_follow_membership,
    rpc_handlers_through_the_dispatcher,
);

// ---------------------------------------------------------------------------------
// Fixtures

const T0: i64 = 1_795_000_000_000;
const MIN: i64 = 60_000;
const PW: &str = "sakura-no-hana-2026";

fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

fn city(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn policy() -> StaffPolicy {
    StaffPolicy {
        hash: HashParams::INSECURE_FOR_TESTS,
        ..StaffPolicy::default()
    }
}

fn perms(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A service over a store with tenants `city-a` and `city-b`, and in `city-a` the staff
/// member `tanaka` (password [`PW`], no forced change) in group `madoguchi`
/// (certificate.issue, resident.view).
async fn setup(url: &str) -> StaffService {
    let store = Store::open(url).await.unwrap();
    for t in ["city-a", "city-b"] {
        store
            .create_tenant(
                &Tenant {
                    id: city(t),
                    name: format!("{t} 市役所"),
                },
                T0,
            )
            .await
            .unwrap();
    }
    let svc = StaffService::new(store, policy());
    add_staff(&svc, "city-a", "tanaka").await;
    svc.put_group(
        &city("city-a"),
        &Group {
            name: "madoguchi".into(),
            description: "市民課 窓口".into(),
            permissions: perms(&[permissions::CERTIFICATE_ISSUE, permissions::RESIDENT_VIEW]),
        },
    )
    .await
    .unwrap();
    svc.add_member(&city("city-a"), "madoguchi", "tanaka")
        .await
        .unwrap();
    svc
}

/// Creates `login` with password [`PW`] and clears the forced change.
async fn add_staff(svc: &StaffService, tenant: &str, login: &str) {
    svc.create_staff(
        &city(tenant),
        &NewAccount {
            login_id: login.into(),
            display_name: "田中 花子".into(),
            initial_password: PW.into(),
        },
        T0,
    )
    .await
    .unwrap();
    svc.store()
        .update_staff(
            &city(tenant),
            login,
            &StaffUpdate {
                display_name: None,
                must_change_password: Some(false),
            },
            T0,
        )
        .await
        .unwrap();
}

async fn login(svc: &StaffService, device: &str, pw: &str, now: i64) -> Result<String, StaffError> {
    svc.login(
        &city("city-a"),
        &id(device),
        "tanaka",
        &Secret::new(pw),
        now,
    )
    .await
    .map(|ok| ok.token.expose().to_owned())
}

// ---------------------------------------------------------------------------------
// Cases

async fn login_ok(url: String) {
    let svc = setup(&url).await;
    let ok = svc
        .login(&city("city-a"), &id("dev-1"), "tanaka", &PW.into(), T0)
        .await
        .unwrap();
    assert_eq!(ok.session.staff_id, "tanaka");
    assert_eq!(ok.session.device, id("dev-1"));
    assert_eq!(ok.display_name, "田中 花子");
    assert!(!ok.must_change_password);
    assert_eq!(
        ok.session.permissions,
        perms(&["certificate.issue", "resident.view"])
    );
    assert_eq!(ok.expires_at_ms, T0 + 12 * 60 * MIN);
    let token = ok.token.expose();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));

    let s = svc
        .resolve(&city("city-a"), &id("dev-1"), token, T0 + MIN)
        .await
        .unwrap();
    assert_eq!(s, ok.session);

    // Only the hash is stored: the token appears nowhere in the session row.
    let rec = svc
        .store()
        .get_session(&city("city-a"), &ok.session.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.last_seen_ms, T0 + MIN);
    assert!(!format!("{rec:?}").contains(token));
    assert_ne!(rec.id, token);

    // A second login opens a second, independent session.
    let other = login(&svc, "dev-1", PW, T0 + 2 * MIN).await.unwrap();

    // Raised hash parameters: the stored hash is upgraded at the next login.
    let stronger = HashParams {
        memory_kib: 64,
        ..HashParams::INSECURE_FOR_TESTS
    };
    let upgraded = StaffService::new(
        svc.store().clone(),
        StaffPolicy {
            hash: stronger,
            ..policy()
        },
    );
    upgraded
        .login(
            &city("city-a"),
            &id("dev-1"),
            "tanaka",
            &PW.into(),
            T0 + 3 * MIN,
        )
        .await
        .unwrap();
    let staff = svc
        .store()
        .get_staff(&city("city-a"), "tanaka")
        .await
        .unwrap()
        .unwrap();
    assert!(
        staff
            .password_hash
            .starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{}",
        &staff.password_hash[..30]
    );
    login(&svc, "dev-1", PW, T0 + 4 * MIN).await.unwrap();
    assert_ne!(other, token);
    assert_eq!(
        svc.store()
            .sessions_of(&city("city-a"), "tanaka")
            .await
            .unwrap()
            .len(),
        4
    );
}

async fn wrong_password_and_unknown_id_are_indistinguishable(url: String) {
    let svc = setup(&url).await;
    let a = svc
        .login(
            &city("city-a"),
            &id("dev-1"),
            "tanaka",
            &"wrong-password-1".into(),
            T0,
        )
        .await
        .unwrap_err();
    let b = svc
        .login(
            &city("city-a"),
            &id("dev-1"),
            "nobody",
            &"wrong-password-1".into(),
            T0,
        )
        .await
        .unwrap_err();
    let c = svc
        .login(&city("city-a"), &id("dev-1"), "bad id!", &PW.into(), T0)
        .await
        .unwrap_err();
    // tanaka exists in city-a only.
    let d = svc
        .login(&city("city-b"), &id("dev-1"), "tanaka", &PW.into(), T0)
        .await
        .unwrap_err();
    for e in [&a, &b, &c, &d] {
        assert!(matches!(e, StaffError::InvalidCredentials), "{e:?}");
        assert_eq!(e.code(), "invalid-credentials");
        assert_eq!(e.to_string(), a.to_string());
    }
    assert_eq!(
        a.to_string(),
        "ログインIDまたはパスワードが正しくありません"
    );
}

async fn lockout_after_five_failures_until_it_runs_out(url: String) {
    let svc = setup(&url).await;
    for i in 0..5 {
        let e = login(&svc, "dev-1", "wrong-password-1", T0 + i)
            .await
            .unwrap_err();
        assert!(matches!(e, StaffError::InvalidCredentials), "{e:?}");
    }
    let until = T0 + 4 + 15 * MIN;
    // Locked: refused even with the right password, and further tries do not extend
    // the lock or count.
    for now in [T0 + 5, T0 + 10 * MIN, until - 1] {
        match login(&svc, "dev-1", PW, now).await.unwrap_err() {
            StaffError::Locked { until_ms } => assert_eq!(until_ms, until),
            e => panic!("{e:?}"),
        }
        let e = login(&svc, "dev-1", "wrong-password-1", now)
            .await
            .unwrap_err();
        assert!(matches!(e, StaffError::Locked { .. }), "{e:?}");
    }
    let staff = svc
        .store()
        .get_staff(&city("city-a"), "tanaka")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(staff.failed_attempts, 5);
    assert_eq!(staff.locked_until_ms, Some(until));
    assert!(StaffError::Locked { until_ms: until }
        .to_string()
        .contains("ロック"));

    // Once it has run out: a fresh set of attempts (one failure does not re-lock) …
    let e = login(&svc, "dev-1", "wrong-password-1", until)
        .await
        .unwrap_err();
    assert!(matches!(e, StaffError::InvalidCredentials), "{e:?}");
    // … and the right password works and clears the counter.
    login(&svc, "dev-1", PW, until + 1).await.unwrap();
    let staff = svc
        .store()
        .get_staff(&city("city-a"), "tanaka")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((staff.failed_attempts, staff.locked_until_ms), (0, None));

    // An administrator can lift a lock early.
    for i in 0..5 {
        login(&svc, "dev-1", "wrong-password-1", until + 10 + i)
            .await
            .unwrap_err();
    }
    assert!(matches!(
        login(&svc, "dev-1", PW, until + 20).await.unwrap_err(),
        StaffError::Locked { .. }
    ));
    svc.unlock(&city("city-a"), "tanaka").await.unwrap();
    login(&svc, "dev-1", PW, until + 21).await.unwrap();
}

async fn success_resets_the_failure_count(url: String) {
    let svc = setup(&url).await;
    for round in 0..3 {
        for i in 0..4 {
            login(&svc, "dev-1", "wrong-password-1", T0 + round * 10 + i)
                .await
                .unwrap_err();
        }
        login(&svc, "dev-1", PW, T0 + round * 10 + 5).await.unwrap();
    }
    let staff = svc
        .store()
        .get_staff(&city("city-a"), "tanaka")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((staff.failed_attempts, staff.locked_until_ms), (0, None));
}

async fn disabled_accounts_are_refused_and_their_sessions_end(url: String) {
    let svc = setup(&url).await;
    let t1 = login(&svc, "dev-1", PW, T0).await.unwrap();
    let t2 = login(&svc, "dev-2", PW, T0).await.unwrap();
    let ended = svc
        .set_disabled(&city("city-a"), "tanaka", true, T0 + 1)
        .await
        .unwrap();
    assert_eq!(ended, 2);
    assert!(svc
        .resolve(&city("city-a"), &id("dev-1"), &t1, T0 + 2)
        .await
        .is_none());
    assert!(svc
        .resolve(&city("city-a"), &id("dev-2"), &t2, T0 + 2)
        .await
        .is_none());
    assert!(svc
        .store()
        .sessions_of(&city("city-a"), "tanaka")
        .await
        .unwrap()
        .is_empty());

    // The right password is told "disabled"; a wrong one learns nothing more.
    let e = login(&svc, "dev-1", PW, T0 + 3).await.unwrap_err();
    assert!(matches!(e, StaffError::Disabled), "{e:?}");
    assert_eq!(e.code(), "disabled");
    let e = login(&svc, "dev-1", "wrong-password-1", T0 + 3)
        .await
        .unwrap_err();
    assert!(matches!(e, StaffError::InvalidCredentials), "{e:?}");

    // Disabled behind the service's back (plain store flag): the session is refused too.
    svc.set_disabled(&city("city-a"), "tanaka", false, T0 + 4)
        .await
        .unwrap();
    let t3 = login(&svc, "dev-1", PW, T0 + 5).await.unwrap();
    svc.store()
        .set_staff_disabled(&city("city-a"), "tanaka", true, T0 + 6)
        .await
        .unwrap();
    assert!(svc
        .resolve(&city("city-a"), &id("dev-1"), &t3, T0 + 7)
        .await
        .is_none());
    svc.store()
        .set_staff_disabled(&city("city-a"), "tanaka", false, T0 + 8)
        .await
        .unwrap();
    login(&svc, "dev-1", PW, T0 + 9).await.unwrap();
}

async fn sessions_are_bound_to_device_and_tenant(url: String) {
    let svc = setup(&url).await;
    // The same login id exists in city-b, with the same password.
    add_staff(&svc, "city-b", "tanaka").await;
    let token = login(&svc, "dev-1", PW, T0).await.unwrap();
    assert!(svc
        .resolve(&city("city-a"), &id("dev-2"), &token, T0 + 1)
        .await
        .is_none());
    assert!(svc
        .resolve(&city("city-b"), &id("dev-1"), &token, T0 + 1)
        .await
        .is_none());
    // Malformed and unknown tokens.
    for bad in [
        "",
        "zz",
        &token.to_uppercase(),
        &"0".repeat(64),
        &token[..63],
    ] {
        assert!(svc
            .resolve(&city("city-a"), &id("dev-1"), bad, T0 + 1)
            .await
            .is_none());
    }
    // A try from elsewhere does not end the session on its own appliance.
    let s = svc
        .resolve(&city("city-a"), &id("dev-1"), &token, T0 + 2)
        .await
        .unwrap();
    assert_eq!(s.device, id("dev-1"));
    // Through the trait the service uses.
    let resolver: &dyn SessionResolver = &svc;
    assert!(resolver
        .resolve(&city("city-a"), &id("dev-1"), &token, T0 + 3)
        .await
        .is_some());
    assert!(resolver
        .resolve(&city("city-a"), &id("dev-9"), &token, T0 + 3)
        .await
        .is_none());
}

async fn uses_seconds_apart_write_last_seen_once(url: String) {
    let svc = setup(&url).await;
    let (a, d) = (city("city-a"), id("dev-1"));
    let token = login(&svc, "dev-1", PW, T0).await.unwrap();
    let last_seen = |s: &StaffService, id: String| {
        let store = s.store().clone();
        let a = a.clone();
        async move {
            store
                .get_session(&a, &id)
                .await
                .unwrap()
                .unwrap()
                .last_seen_ms
        }
    };
    let s = svc.resolve(&a, &d, &token, T0 + MIN).await.unwrap();
    assert_eq!(last_seen(&svc, s.session_id.clone()).await, T0 + MIN);
    // Uses within SESSION_TOUCH_MS of the last write read the session only.
    for dt in [1, 1_000, SESSION_TOUCH_MS - 1] {
        assert!(svc.resolve(&a, &d, &token, T0 + MIN + dt).await.is_some());
        assert_eq!(last_seen(&svc, s.session_id.clone()).await, T0 + MIN);
    }
    // A later use writes it again.
    assert!(svc
        .resolve(&a, &d, &token, T0 + MIN + SESSION_TOUCH_MS + 1)
        .await
        .is_some());
    assert_eq!(
        last_seen(&svc, s.session_id.clone()).await,
        T0 + MIN + SESSION_TOUCH_MS + 1
    );
    // The read-only path checks as much as the write: a session on another appliance,
    // a disabled account, an ended session are refused even seconds after a use.
    let now = T0 + MIN + SESSION_TOUCH_MS + 2;
    assert!(svc.resolve(&a, &id("dev-2"), &token, now).await.is_none());
    assert!(svc.logout(&a, &s.session_id).await.unwrap());
    assert!(svc.resolve(&a, &d, &token, now + 1).await.is_none());
}

async fn idle_timeout_slides_and_absolute_expiry_holds(url: String) {
    let svc = setup(&url).await;
    let (a, d) = (city("city-a"), id("dev-1"));
    let token = login(&svc, "dev-1", PW, T0).await.unwrap();
    // Used every 29 minutes: alive for hours.
    let mut now = T0;
    while now + 29 * MIN < T0 + 12 * 60 * MIN {
        now += 29 * MIN;
        assert!(
            svc.resolve(&a, &d, &token, now).await.is_some(),
            "at +{} min",
            (now - T0) / MIN
        );
    }
    // … but never past 12 hours.
    assert!(svc
        .resolve(&a, &d, &token, T0 + 12 * 60 * MIN - 1)
        .await
        .is_some());
    assert!(svc
        .resolve(&a, &d, &token, T0 + 12 * 60 * MIN)
        .await
        .is_none());

    // Idle: 30 minutes without use end it, and using it afterwards does not revive it.
    let token = login(&svc, "dev-1", PW, T0).await.unwrap();
    assert!(svc.resolve(&a, &d, &token, T0 + 10 * MIN).await.is_some());
    assert!(svc
        .resolve(&a, &d, &token, T0 + 40 * MIN - 1)
        .await
        .is_some());
    assert!(svc
        .resolve(&a, &d, &token, T0 + 70 * MIN - 1)
        .await
        .is_none());
    assert!(svc.resolve(&a, &d, &token, T0 + 80 * MIN).await.is_none());

    // A clock running behind on another instance does not move last_seen back.
    let token = login(&svc, "dev-1", PW, T0).await.unwrap();
    let s = svc
        .try_resolve(&a, &d, &token, T0 + 20 * MIN)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.idle_until_ms, T0 + 50 * MIN);
    svc.resolve(&a, &d, &token, T0 + 5 * MIN).await.unwrap();
    let rec = svc
        .store()
        .get_session(&a, &s.session.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.last_seen_ms, T0 + 20 * MIN);

    // Housekeeping deletes the dead ones.
    let purged = svc
        .store()
        .purge_sessions(T0 + 12 * 60 * MIN)
        .await
        .unwrap();
    assert_eq!(purged, 3);
    assert!(svc
        .store()
        .sessions_of(&a, "tanaka")
        .await
        .unwrap()
        .is_empty());
}

async fn logout_and_logout_all(url: String) {
    let svc = setup(&url).await;
    let (a, d1, d2) = (city("city-a"), id("dev-1"), id("dev-2"));
    let t1 = login(&svc, "dev-1", PW, T0).await.unwrap();
    let t2 = login(&svc, "dev-2", PW, T0).await.unwrap();
    let s1 = svc.resolve(&a, &d1, &t1, T0 + 1).await.unwrap();
    assert!(svc.logout(&a, &s1.session_id).await.unwrap());
    assert!(!svc.logout(&a, &s1.session_id).await.unwrap());
    assert!(svc.resolve(&a, &d1, &t1, T0 + 2).await.is_none());
    assert!(svc.resolve(&a, &d2, &t2, T0 + 2).await.is_some());

    let t3 = login(&svc, "dev-1", PW, T0 + 3).await.unwrap();
    assert_eq!(svc.logout_all(&a, "tanaka").await.unwrap(), 2);
    assert!(svc.resolve(&a, &d2, &t2, T0 + 4).await.is_none());
    assert!(svc.resolve(&a, &d1, &t3, T0 + 4).await.is_none());
}

async fn change_password(url: String) {
    let svc = setup(&url).await;
    let (a, d1, d2) = (city("city-a"), id("dev-1"), id("dev-2"));
    let t1 = login(&svc, "dev-1", PW, T0).await.unwrap();
    let t2 = login(&svc, "dev-2", PW, T0).await.unwrap();
    let s1 = svc.resolve(&a, &d1, &t1, T0 + 1).await.unwrap();

    let e = svc
        .change_password(
            &a,
            &s1,
            &"not-the-password".into(),
            &"a-new-password-1".into(),
            T0 + 2,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StaffError::WrongPassword), "{e:?}");
    // A wrong current password counts like a failed login.
    let staff = svc.store().get_staff(&a, "tanaka").await.unwrap().unwrap();
    assert_eq!(staff.failed_attempts, 1);

    for (new, want) in [
        ("short", PolicyViolation::TooShort(10)),
        ("TANAKA", PolicyViolation::TooShort(10)),
        ("password123", PolicyViolation::TooCommon),
        (PW, PolicyViolation::Unchanged),
    ] {
        match svc
            .change_password(&a, &s1, &PW.into(), &new.into(), T0 + 3)
            .await
            .unwrap_err()
        {
            StaffError::Policy(v) => assert_eq!(v, want, "{new}"),
            e => panic!("{new}: {e:?}"),
        }
    }
    add_staff(&svc, "city-a", "sato-ichiro01").await;
    let sato = svc
        .login(&a, &d1, "sato-ichiro01", &PW.into(), T0 + 4)
        .await
        .unwrap();
    let e = svc
        .change_password(
            &a,
            &sato.session,
            &PW.into(),
            &"Sato-Ichiro01".into(),
            T0 + 5,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, StaffError::Policy(PolicyViolation::SameAsLoginId)),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "ログインIDと同じパスワードは使えません");

    // Success: the other session (dev-2) ends, this one is kept.
    let ended = svc
        .change_password(&a, &s1, &PW.into(), &"yuki-no-hi-2027".into(), T0 + 6)
        .await
        .unwrap();
    assert_eq!(ended, 1);
    assert!(svc.resolve(&a, &d1, &t1, T0 + 7).await.is_some());
    assert!(svc.resolve(&a, &d2, &t2, T0 + 7).await.is_none());
    let e = login(&svc, "dev-1", PW, T0 + 8).await.unwrap_err();
    assert!(matches!(e, StaffError::InvalidCredentials), "{e:?}");
    login(&svc, "dev-1", "yuki-no-hi-2027", T0 + 9)
        .await
        .unwrap();
    let staff = svc.store().get_staff(&a, "tanaka").await.unwrap().unwrap();
    assert_eq!(staff.failed_attempts, 0);
    assert!(staff.password_hash.starts_with("$argon2id$v=19$"));
}

async fn must_change_password_session_has_no_permissions(url: String) {
    let svc = setup(&url).await;
    let a = city("city-a");
    let initial = "shoki-pass-0401";
    svc.create_staff(
        &a,
        &NewAccount {
            login_id: "suzuki".into(),
            display_name: "鈴木 一郎".into(),
            initial_password: initial.into(),
        },
        T0,
    )
    .await
    .unwrap();
    svc.add_member(&a, "madoguchi", "suzuki").await.unwrap();
    let ok = svc
        .login(&a, &id("dev-1"), "suzuki", &initial.into(), T0)
        .await
        .unwrap();
    assert!(ok.must_change_password);
    assert!(ok.session.permissions.is_empty());
    let s = svc
        .try_resolve(&a, &id("dev-1"), ok.token.expose(), T0 + 1)
        .await
        .unwrap()
        .unwrap();
    assert!(s.must_change_password);
    assert!(s.session.permissions.is_empty());

    svc.change_password(
        &a,
        &s.session,
        &initial.into(),
        &"atarashii-pass-1".into(),
        T0 + 2,
    )
    .await
    .unwrap();
    let s = svc
        .resolve(&a, &id("dev-1"), ok.token.expose(), T0 + 3)
        .await
        .unwrap();
    assert_eq!(
        s.permissions,
        perms(&["certificate.issue", "resident.view"])
    );

    // An administrator's reset forces a change again and ends every session.
    let ended = svc
        .reset_password(&a, "suzuki", &"reset-by-admin-9".into(), T0 + 4)
        .await
        .unwrap();
    assert_eq!(ended, 1);
    assert!(svc
        .resolve(&a, &id("dev-1"), ok.token.expose(), T0 + 5)
        .await
        .is_none());
    let ok = svc
        .login(
            &a,
            &id("dev-1"),
            "suzuki",
            &"reset-by-admin-9".into(),
            T0 + 6,
        )
        .await
        .unwrap();
    assert!(ok.must_change_password);
    // The reset password must meet the policy too.
    let e = svc
        .reset_password(&a, "suzuki", &"suzuki".into(), T0 + 7)
        .await
        .unwrap_err();
    assert!(matches!(e, StaffError::Policy(_)), "{e:?}");
}

async fn permissions_are_the_union_and_follow_membership(url: String) {
    let svc = setup(&url).await;
    let (a, d) = (city("city-a"), id("dev-1"));
    svc.put_group(
        &a,
        &Group {
            name: "kokuho".into(),
            description: "国保年金課".into(),
            permissions: perms(&[
                permissions::RESIDENT_VIEW,
                permissions::RESIDENT_VIEW_KOKUHO,
            ]),
        },
    )
    .await
    .unwrap();
    svc.add_member(&a, "kokuho", "tanaka").await.unwrap();
    let token = login(&svc, "dev-1", PW, T0).await.unwrap();
    let s = svc.resolve(&a, &d, &token, T0 + 1).await.unwrap();
    assert_eq!(
        s.permissions,
        perms(&["certificate.issue", "resident.view", "resident.view:kokuho"])
    );
    // Membership and group changes apply to the live session at its next request.
    assert!(svc.remove_member(&a, "madoguchi", "tanaka").await.unwrap());
    let s = svc.resolve(&a, &d, &token, T0 + 2).await.unwrap();
    assert_eq!(
        s.permissions,
        perms(&["resident.view", "resident.view:kokuho"])
    );
    svc.put_group(
        &a,
        &Group {
            name: "kokuho".into(),
            description: "国保年金課".into(),
            permissions: perms(&[permissions::RESIDENT_VIEW]),
        },
    )
    .await
    .unwrap();
    let s = svc.resolve(&a, &d, &token, T0 + 3).await.unwrap();
    assert_eq!(s.permissions, perms(&["resident.view"]));

    // Unknown permissions and bad names are refused.
    let e = svc
        .put_group(
            &a,
            &Group {
                name: "typo".into(),
                description: String::new(),
                permissions: perms(&["certificate.isue"]),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StaffError::UnknownPermission(p) if p == "certificate.isue"),
        "{e:?}"
    );
    let e = svc
        .add_member(&a, "no-such-group", "tanaka")
        .await
        .unwrap_err();
    assert!(matches!(e, StaffError::MemberNotFound), "{e:?}");
}

// ---------------------------------------------------------------------------------
// RPC

/// A method that needs `certificate.issue`, standing for any feature's handler.
struct IssueCertificate;

impl RpcHandler for IssueCertificate {
    fn method(&self) -> &'static str {
        "test.issue"
    }

    fn handle<'a>(&'a self, ctx: &'a RpcContext, _params: ciborium::Value) -> RpcFuture<'a> {
        Box::pin(async move {
            let s = ctx.require(permissions::CERTIFICATE_ISSUE)?;
            Ok(ciborium::Value::Text(s.staff_id.clone()))
        })
    }
}

async fn call<M: RpcMethod>(
    d: &Dispatcher,
    ctx: &RpcContext,
    req: &M::Request,
) -> Result<M::Response, RpcError> {
    let params = ciborium::Value::serialized(req).unwrap();
    d.dispatch(ctx, M::NAME, params)
        .await
        .map(|v| v.deserialized().unwrap())
}

async fn ctx(svc: &StaffService, device: &str, token: Option<&str>, now: i64) -> RpcContext {
    let session = match token {
        Some(t) => svc.resolve(&city("city-a"), &id(device), t, now).await,
        None => None,
    };
    RpcContext {
        tenant: city("city-a"),
        device: id(device),
        session,
        now_ms: now,
    }
}

async fn rpc_handlers_through_the_dispatcher(url: String) {
    let svc = setup(&url).await;
    add_staff(&svc, "city-a", "yamada").await; // in no group
    let mut d = Dispatcher::new();
    svc.register_rpc(&mut d);
    d.register(Arc::new(IssueCertificate));
    let methods: Vec<_> = d.methods().collect();
    for m in [
        "staff.login",
        "staff.logout",
        "staff.change-password",
        "staff.whoami",
    ] {
        assert!(methods.contains(&m), "{m}");
    }

    // Before login.
    let anon = ctx(&svc, "dev-1", None, T0).await;
    let e = call::<Whoami>(&d, &anon, &Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, "unauthenticated");
    let e = call::<Login>(
        &d,
        &anon,
        &LoginRequest {
            login_id: "tanaka".into(),
            password: "wrong-password-1".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "invalid-credentials");
    assert!(!e.message.contains("wrong-password-1"));
    // Parameters that do not decode: the message does not quote them.
    let bad = ciborium::Value::Map(vec![(
        ciborium::Value::Text("login_id".into()),
        ciborium::Value::Text("leaked-secret-value".into()),
    )]);
    let e = d.dispatch(&anon, "staff.login", bad).await.unwrap_err();
    assert_eq!(e.code, "invalid-params");
    assert!(!e.message.contains("leaked-secret-value"));

    // Login → token → whoami in session.
    let res: LoginResponse = call::<Login>(
        &d,
        &anon,
        &LoginRequest {
            login_id: "tanaka".into(),
            password: PW.into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        res.permissions,
        perms(&["certificate.issue", "resident.view"])
    );
    assert!(!res.must_change_password);
    assert!(!format!("{res:?}").contains(res.token.expose()));
    let token = res.token.expose().to_owned();
    let c = ctx(&svc, "dev-1", Some(&token), T0 + 1).await;
    let me: WhoamiResponse = call::<Whoami>(&d, &c, &Default::default()).await.unwrap();
    assert_eq!(
        (me.staff_id.as_str(), me.display_name.as_str()),
        ("tanaka", "田中 花子")
    );
    assert_eq!(me.session_id, res.session_id);
    // whoami with null params too.
    d.dispatch(&c, "staff.whoami", ciborium::Value::Null)
        .await
        .unwrap();
    // A handler needing a permission the session holds.
    assert_eq!(
        d.dispatch(&c, "test.issue", ciborium::Value::Null)
            .await
            .unwrap(),
        ciborium::Value::Text("tanaka".into())
    );
    // The token from another appliance: no session.
    let elsewhere = ctx(&svc, "dev-2", Some(&token), T0 + 1).await;
    assert!(elsewhere.session.is_none());
    assert_eq!(
        call::<Whoami>(&d, &elsewhere, &Default::default())
            .await
            .unwrap_err()
            .code,
        "unauthenticated"
    );

    // yamada has no permissions: forbidden.
    let y: LoginResponse = call::<Login>(
        &d,
        &anon,
        &LoginRequest {
            login_id: "yamada".into(),
            password: PW.into(),
        },
    )
    .await
    .unwrap();
    let cy = ctx(&svc, "dev-1", Some(y.token.expose()), T0 + 2).await;
    let e = d
        .dispatch(&cy, "test.issue", ciborium::Value::Null)
        .await
        .unwrap_err();
    assert_eq!(e.code, "forbidden");
    // … until given a group with it.
    svc.add_member(&city("city-a"), "madoguchi", "yamada")
        .await
        .unwrap();
    let cy = ctx(&svc, "dev-1", Some(y.token.expose()), T0 + 3).await;
    d.dispatch(&cy, "test.issue", ciborium::Value::Null)
        .await
        .unwrap();

    // change-password over RPC.
    let e = call::<ChangePassword>(
        &d,
        &c,
        &ChangePasswordRequest {
            old_password: PW.into(),
            new_password: "short".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "password-policy");
    assert!(e.message.contains("10文字以上"), "{}", e.message);
    let ok = call::<ChangePassword>(
        &d,
        &c,
        &ChangePasswordRequest {
            old_password: PW.into(),
            new_password: "natsu-matsuri-88".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(ok.other_sessions_ended, 0);

    // Logout ends this session only.
    let c = ctx(&svc, "dev-1", Some(&token), T0 + 4).await;
    let out = call::<Logout>(&d, &c, &LogoutRequest::default())
        .await
        .unwrap();
    assert_eq!(out.ended, 1);
    assert!(ctx(&svc, "dev-1", Some(&token), T0 + 5)
        .await
        .session
        .is_none());
    // Everywhere.
    let t2 = login(&svc, "dev-1", "natsu-matsuri-88", T0 + 6)
        .await
        .unwrap();
    let _t3 = login(&svc, "dev-2", "natsu-matsuri-88", T0 + 6)
        .await
        .unwrap();
    let c = ctx(&svc, "dev-1", Some(&t2), T0 + 7).await;
    let out = call::<Logout>(&d, &c, &LogoutRequest { everywhere: true })
        .await
        .unwrap();
    assert_eq!(out.ended, 2);
}

// ---------------------------------------------------------------------------------
// Backend-independent checks

#[test]
fn debug_output_shows_no_password_or_token() {
    let pw = "kono-password-wa-himitsu";
    let token = "ab".repeat(32);
    let req = LoginRequest {
        login_id: "tanaka".into(),
        password: pw.into(),
    };
    let change = ChangePasswordRequest {
        old_password: pw.into(),
        new_password: pw.into(),
    };
    let res = LoginResponse {
        token: Secret::new(token.clone()),
        session_id: "s1".into(),
        display_name: "田中 花子".into(),
        permissions: BTreeSet::new(),
        must_change_password: false,
        expires_at_ms: 0,
    };
    let account = NewAccount {
        login_id: "tanaka".into(),
        display_name: "田中 花子".into(),
        initial_password: pw.into(),
    };
    for text in [
        format!("{req:?}"),
        format!("{change:?}"),
        format!("{res:?}"),
        format!("{account:?}"),
        format!("{:?}", Secret::new(pw)),
        format!("{:?}", StaffError::Policy(PolicyViolation::TooCommon)),
    ] {
        assert!(!text.contains(pw), "{text}");
        assert!(!text.contains(&token), "{text}");
        assert!(!text.contains("田中"), "{text}");
    }
}

/// The production parameters: an OWASP argon2id PHC string, and an unknown id costs
/// about as much as a wrong password (both do one argon2 verification).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_hash_parameters_and_similar_timing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let store = Store::open(&url).await.unwrap();
    store
        .create_tenant(
            &Tenant {
                id: city("city-a"),
                name: "A市".into(),
            },
            T0,
        )
        .await
        .unwrap();
    let svc = StaffService::new(store, StaffPolicy::default());
    add_staff(&svc, "city-a", "tanaka").await;
    let phc = svc
        .store()
        .get_staff(&city("city-a"), "tanaka")
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");

    // Warm the dummy hash (made once, on first use).
    let _ = svc
        .login(
            &city("city-a"),
            &id("dev-1"),
            "nobody",
            &"x-wrong-password".into(),
            T0,
        )
        .await;
    let time = |login: &'static str| {
        let svc = svc.clone();
        async move {
            let start = Instant::now();
            let e = svc
                .login(
                    &city("city-a"),
                    &id("dev-1"),
                    login,
                    &"x-wrong-password".into(),
                    T0,
                )
                .await
                .unwrap_err();
            assert!(matches!(e, StaffError::InvalidCredentials));
            start.elapsed()
        }
    };
    let wrong = time("tanaka").await;
    let unknown = time("nobody").await;
    // Loose bounds: the CPU is shared with other builds; the point is that the unknown
    // id is not answered without the argon2 work.
    assert!(
        unknown * 3 > wrong,
        "unknown {unknown:?} vs wrong {wrong:?}"
    );
    assert!(
        wrong * 3 > unknown,
        "unknown {unknown:?} vs wrong {wrong:?}"
    );
}
