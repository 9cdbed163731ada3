//! The counter UI's `applications.*` RPC methods through the dispatcher, over the
//! reference catalogue installed for the tenant, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::path::Path;

use kakanai_control_plane::applications::{self, ApplicationState};
use kakanai_control_plane::model::{Ident, TenantId};
use kakanai_control_plane::rpc::{Dispatcher, RpcContext, StaffSession};
use kakanai_control_plane::rules::catalog::read_files;
use kakanai_control_plane::store::{Store, Tenant};
use kakanai_protocol::catalogue::RpcError;

both_backends!("apprpc_"; counter_flow_over_rpc);

const NOW: i64 = 1_795_741_200_000;

fn city() -> TenantId {
    TenantId::new("city-a").unwrap()
}

fn context(permissions: &[&str]) -> RpcContext {
    let device = Ident::new("counter-01").unwrap();
    RpcContext {
        tenant: city(),
        device: device.clone(),
        session: Some(StaffSession {
            session_id: "s1".into(),
            staff_id: "staff01".into(),
            device,
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        }),
        now_ms: NOW,
    }
}

async fn call(
    d: &Dispatcher,
    ctx: &RpcContext,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, RpcError> {
    let p = ciborium::Value::serialized(&params).unwrap();
    d.dispatch(ctx, method, p)
        .await
        .map(|v| v.deserialized::<serde_json::Value>().unwrap())
}

fn request(copies: u32, fee_total: i64) -> serde_json::Value {
    serde_json::json!({
        "request": {
            "subject": {"name": "山田 太郎", "atena": "000000000101"},
            "requester": {"name": "山田 太郎", "atena": "000000000101"},
            "relationship": "self",
            "purpose": "就職先への提出",
            "destination": "株式会社書無",
            "id_check": "マイナンバーカード",
            "items": [{"certificate": "juminhyo", "options": ["続柄"], "copies": copies, "fee": 300}],
            "fee_total": fee_total
        }
    })
}

async fn counter_flow_over_rpc(url: String) {
    let store = Store::open(&url).await.unwrap();
    store
        .create_tenant(
            &Tenant {
                id: city(),
                name: "書無市".into(),
            },
            NOW,
        )
        .await
        .unwrap();
    let files = read_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog")).unwrap();
    store
        .install_catalogue_versions(&city(), &files, "admin01", NOW)
        .await
        .unwrap();
    let mut d = Dispatcher::new();
    applications::rpc::register(&mut d, store.clone());
    let staff = context(&["application.create", "application.view"]);

    // Permissions and sessions.
    let viewer = context(&["application.view"]);
    let e = call(
        &d,
        &viewer,
        "applications.create-certificate-request",
        request(1, 300),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "forbidden");
    let mut anonymous = staff.clone();
    anonymous.session = None;
    let e = call(
        &d,
        &anonymous,
        "applications.list",
        serde_json::json!({"visit": "x"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "unauthenticated");

    // A certificate request: a new visit, one draft.
    let created = call(
        &d,
        &staff,
        "applications.create-certificate-request",
        request(2, 600),
    )
    .await
    .unwrap();
    let app = &created["applications"][0];
    assert_eq!(app["form"], "SHOMEI-JUMIN");
    assert_eq!(app["state"], "draft");
    assert_eq!(app["created"]["by"], "staff01");
    assert_eq!(app["data"]["office"]["city"], "書無市");
    let number = app["number"].as_str().unwrap().to_owned();
    let visit = app["visit"].as_str().unwrap().to_owned();
    assert_eq!(
        store.visit(&city(), &visit).await.unwrap().unwrap().device,
        "counter-01"
    );

    // Refused: wrong fee total, nothing stored (not even a visit: nothing is logged);
    // unreadable params never quoted.
    let log = store.audit_head(&city()).await.unwrap().seq;
    let e = call(
        &d,
        &staff,
        "applications.create-certificate-request",
        request(2, 500),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "invalid-certificate-request");
    assert!(e.message.contains("手数料の合計"), "{}", e.message);
    assert_eq!(store.audit_head(&city()).await.unwrap().seq, log);
    let e = call(
        &d,
        &staff,
        "applications.create-certificate-request",
        serde_json::json!({"request": {"subject": "山田"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "invalid-params");
    assert!(!e.message.contains("山田"));

    // 受付 needs the form printed first.
    let e = call(
        &d,
        &staff,
        "applications.accept",
        serde_json::json!({"number": number}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "illegal-transition");
    let id = app["id"].as_str().unwrap();
    applications::record_printed(
        &store,
        &city(),
        id,
        [5; 32],
        1,
        &applications::Act::staff_at("staff01", "counter-01", NOW),
    )
    .await
    .unwrap();
    let accepted = call(
        &d,
        &staff,
        "applications.accept",
        serde_json::json!({"number": number}),
    )
    .await
    .unwrap();
    assert_eq!(accepted["state"], "accepted");
    let e = call(
        &d,
        &staff,
        "applications.accept",
        serde_json::json!({"number": "2026-999999"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "not-found");

    // A second request in the same visit, then cancelled.
    let mut second = request(1, 300);
    second["visit"] = serde_json::Value::String(visit.clone());
    let created = call(
        &d,
        &staff,
        "applications.create-certificate-request",
        second,
    )
    .await
    .unwrap();
    let n2 = created["applications"][0]["number"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancelled = call(
        &d,
        &staff,
        "applications.cancel",
        serde_json::json!({"number": n2, "reason": "withdrawn", "note": ""}),
    )
    .await
    .unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "withdrawn");

    let listed = call(
        &d,
        &viewer,
        "applications.list",
        serde_json::json!({"visit": visit}),
    )
    .await
    .unwrap();
    let states: Vec<&str> = listed["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["accepted", "cancelled"]);
    assert_eq!(
        store
            .application_by_number(&city(), &number)
            .await
            .unwrap()
            .unwrap()
            .state,
        ApplicationState::Accepted
    );
}
