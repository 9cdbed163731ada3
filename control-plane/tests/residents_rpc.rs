//! The resident RPCs through the service's `Dispatcher`, on SQLite and on a real
//! PostgreSQL: a staff session without `resident.view` is refused (and the refusal
//! audited); a card lookup, a search, a resident and a household are returned and
//! the audit entry names every 宛名番号 returned and no name; data-area permissions
//! decide which records come back; another tenant's resident is never returned.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use kakanai_control_plane::model::{Actor, TenantId};
use kakanai_control_plane::residents::csvfile::{decode, parse, Record, Table};
use kakanai_control_plane::residents::mapping::Encoding;
use kakanai_control_plane::residents::rpc::{
    GetResponse, HouseholdResponse, LookupCardRequest, LookupCardResponse, ResidentsRpc,
    SearchResponse,
};
use kakanai_control_plane::residents::{gen_city, import_dir, ImportOptions, Mapping, MyNumberKey};
use kakanai_control_plane::rpc::{Dispatcher, RpcContext, StaffSession};
use kakanai_control_plane::store::{AuditEntry, Store, Tenant};
use kakanai_protocol::personal::{CardFace, PersonalText, Sex};
use kakanai_protocol::topic::Ident;

both_backends!("rr_";
    refused_without_permission_and_audited,
    views_are_audited_by_atena,
    data_areas_decide_the_records,
    other_tenants_residents_are_never_returned,
);

const T0: i64 = 1_800_000_000_000;

fn city() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        gen_city(dir.path(), 11, 800).unwrap();
        dir
    })
    .path()
}

fn jumin() -> Table {
    let bytes = std::fs::read(city().join("jumin.csv")).unwrap();
    parse(&decode(&bytes, Encoding::Utf8).unwrap()).unwrap()
}

fn field<'a>(t: &Table, r: &'a Record, name: &str) -> &'a str {
    &r.fields[t.header.iter().position(|h| h == name).unwrap()]
}

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

async fn store_with_city(url: &str) -> Store {
    let store = Store::open(url).await.unwrap();
    for t in ["city-a", "city-b"] {
        store
            .create_tenant(
                &Tenant {
                    id: tenant(t),
                    name: t.into(),
                },
                T0,
            )
            .await
            .unwrap();
    }
    let options = ImportOptions {
        my_number_key: Some(MyNumberKey::new(&[7; 32])),
        now_ms: T0,
    };
    let report = import_dir(
        &store,
        &tenant("city-a"),
        city(),
        &Mapping::reference(),
        &options,
    )
    .await
    .unwrap();
    assert!(report.all_applied(), "{report}");
    store
}

fn dispatcher(store: &Store) -> Dispatcher {
    let mut d = Dispatcher::new();
    ResidentsRpc::new(store.clone(), Arc::new(Mapping::reference())).register(&mut d);
    d
}

fn ctx(city: &str, permissions: &[&str]) -> RpcContext {
    RpcContext {
        tenant: tenant(city),
        device: Ident::new("counter-1").unwrap(),
        session: Some(StaffSession {
            session_id: "s1".into(),
            staff_id: "clerk-7".into(),
            device: Ident::new("counter-1").unwrap(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        }),
        now_ms: T0 + 1,
    }
}

fn card(t: &Table, r: &Record) -> CardFace {
    CardFace {
        name: PersonalText::new(field(t, r, "氏名")),
        address: PersonalText::new(match field(t, r, "方書") {
            "" => field(t, r, "住所").to_owned(),
            b => format!("{}\u{3000}{b}", field(t, r, "住所")),
        }),
        birth_date: PersonalText::new(field(t, r, "生年月日").replace('-', "")),
        sex: if field(t, r, "性別") == "1" {
            Sex::Male
        } else {
            Sex::Female
        },
        my_number: None,
        has_private_use_chars: false,
    }
}

fn value<T: serde::Serialize>(v: &T) -> ciborium::Value {
    ciborium::Value::serialized(v).unwrap()
}

fn decode_as<T: serde::de::DeserializeOwned>(v: ciborium::Value) -> T {
    v.deserialized().unwrap()
}

/// The `resident.view` audit entries of a tenant, in order.
async fn views(store: &Store, t: &str) -> Vec<AuditEntry> {
    store
        .audit_range(&tenant(t), 1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.record.action == "resident.view")
        .collect()
}

fn seen(e: &AuditEntry) -> Vec<String> {
    e.record.detail["residents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn living(t: &Table) -> Vec<&Record> {
    t.records
        .iter()
        .filter(|r| field(t, r, "状態") == "在住")
        .collect()
}

async fn refused_without_permission_and_audited(url: String) {
    let store = store_with_city(&url).await;
    let d = dispatcher(&store);
    let t = jumin();
    let r = living(&t)[3];
    let atena = field(&t, r, "宛名番号");
    let params = value(&serde_json::json!({ "atena": atena }));
    // A session without resident.view.
    let err = d
        .dispatch(
            &ctx("city-a", &["certificate.issue"]),
            "residents.get",
            params.clone(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, "forbidden");
    // No session at all.
    let mut anonymous = ctx("city-a", &[]);
    anonymous.session = None;
    let err = d
        .dispatch(
            &anonymous,
            "residents.search",
            value(&serde_json::json!({ "text": "ヤ" })),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, "unauthenticated");
    let entries = views(&store, "city-a").await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].record.outcome, "denied");
    assert_eq!(entries[0].record.actor, Actor::Staff("clerk-7".into()));
    assert_eq!(entries[0].record.detail["method"], "residents.get");
    assert!(seen(&entries[0]).is_empty());
    assert_eq!(entries[0].record.resident, None);
    assert_eq!(entries[1].record.outcome, "denied");
    assert_eq!(entries[1].record.actor, Actor::Device("counter-1".into()));
}

async fn views_are_audited_by_atena(url: String) {
    let store = store_with_city(&url).await;
    let d = dispatcher(&store);
    let t = jumin();
    let people = living(&t);
    let r = people[10];
    let atena = field(&t, r, "宛名番号");
    let name = field(&t, r, "氏名");
    let c = ctx("city-a", &["resident.view"]);

    // The card's face → exactly this resident, with the reason.
    let got: LookupCardResponse = decode_as(
        d.dispatch(
            &c,
            "residents.lookup-card",
            value(&LookupCardRequest { card: card(&t, r) }),
        )
        .await
        .unwrap(),
    );
    assert!(got.exact);
    assert_eq!(got.candidates[0].resident.atena, atena);
    assert_eq!(got.candidates[0].resident.name, name);
    assert_eq!(got.candidates[0].reason, "氏名・生年月日・住所・性別が一致");

    // A reading prefix with the birth date.
    let kana = field(&t, r, "氏名フリガナ");
    let prefix: String = kana.chars().take(3).collect();
    let found: SearchResponse = decode_as(
        d.dispatch(
            &c,
            "residents.search",
            value(&serde_json::json!({ "text": prefix, "birth_date": field(&t, r, "生年月日") })),
        )
        .await
        .unwrap(),
    );
    assert!(found.candidates.iter().any(|x| x.resident.atena == atena));

    // The resident with the household.
    let got: GetResponse = decode_as(
        d.dispatch(
            &c,
            "residents.get",
            value(&serde_json::json!({ "atena": atena })),
        )
        .await
        .unwrap(),
    );
    assert_eq!(got.resident.atena, atena);
    assert!(got.household.iter().any(|m| m.atena == atena));
    assert!(
        !got.fields.contains_key("my_number"),
        "個人番号 never returned"
    );
    let hh: HouseholdResponse = decode_as(
        d.dispatch(
            &c,
            "residents.household",
            value(&serde_json::json!({ "atena": atena })),
        )
        .await
        .unwrap(),
    );
    assert_eq!(hh.household, field(&t, r, "世帯番号"));

    let entries = views(&store, "city-a").await;
    assert_eq!(entries.len(), 4);
    assert!(entries.iter().all(|e| e.record.outcome == "ok"));
    assert_eq!(seen(&entries[0]), vec![atena.to_owned()]);
    assert_eq!(entries[0].record.resident.as_deref(), Some(atena));
    let searched: BTreeSet<String> = found
        .candidates
        .iter()
        .map(|x| x.resident.atena.clone())
        .collect();
    assert_eq!(
        seen(&entries[1]).into_iter().collect::<BTreeSet<_>>(),
        searched
    );
    // residents.get: the resident first, then the other members shown.
    let shown = seen(&entries[2]);
    assert_eq!(shown[0], atena);
    assert_eq!(shown.len(), got.household.len());
    let members: BTreeSet<String> = hh.members.iter().map(|m| m.atena.clone()).collect();
    assert_eq!(
        seen(&entries[3]).into_iter().collect::<BTreeSet<_>>(),
        members
    );
    // No name, reading or address in any entry.
    for e in &entries {
        let json = serde_json::to_string(&e.record).unwrap();
        let family = name.split('\u{3000}').next().unwrap();
        assert!(!json.contains(family), "a name in the audit log");
        assert!(!json.contains(field(&t, r, "住所")));
    }
}

async fn data_areas_decide_the_records(url: String) {
    let store = store_with_city(&url).await;
    let d = dispatcher(&store);
    // Someone with a 国保 record.
    let kokuho = std::fs::read(city().join("kokuho.csv")).unwrap();
    let k = parse(&decode(&kokuho, Encoding::Cp932).unwrap()).unwrap();
    let atena = field(&k, &k.records[0], "宛名番号").to_owned();
    let params = value(&serde_json::json!({ "atena": atena }));
    let basic: GetResponse = decode_as(
        d.dispatch(
            &ctx("city-a", &["resident.view"]),
            "residents.get",
            params.clone(),
        )
        .await
        .unwrap(),
    );
    assert!(basic.records.iter().all(|r| r.kind != "kokuho"));
    assert!(basic.withheld.contains(&"kokuho".to_owned()));
    let section: GetResponse = decode_as(
        d.dispatch(
            &ctx("city-a", &["resident.view", "resident.view:kokuho"]),
            "residents.get",
            params,
        )
        .await
        .unwrap(),
    );
    let record = section.records.iter().find(|r| r.kind == "kokuho").unwrap();
    assert_eq!(record.label, "国民健康保険");
    assert!(!section.withheld.contains(&"kokuho".to_owned()));
}

async fn other_tenants_residents_are_never_returned(url: String) {
    let store = store_with_city(&url).await;
    let d = dispatcher(&store);
    let t = jumin();
    let r = living(&t)[20];
    let atena = field(&t, r, "宛名番号");
    let b = ctx("city-b", &["resident.view", "resident.view:kokuho"]);
    for method in ["residents.get", "residents.household"] {
        let err = d
            .dispatch(&b, method, value(&serde_json::json!({ "atena": atena })))
            .await
            .unwrap_err();
        assert_eq!(err.code, "not-found");
    }
    let got: LookupCardResponse = decode_as(
        d.dispatch(
            &b,
            "residents.lookup-card",
            value(&LookupCardRequest { card: card(&t, r) }),
        )
        .await
        .unwrap(),
    );
    assert!(got.candidates.is_empty());
    let kana: String = field(&t, r, "氏名フリガナ").chars().take(2).collect();
    let found: SearchResponse = decode_as(
        d.dispatch(
            &b,
            "residents.search",
            value(&serde_json::json!({ "text": kana })),
        )
        .await
        .unwrap(),
    );
    assert!(found.candidates.is_empty());
    // City B's log says what B saw (nothing); city A's log has no entry from B.
    let entries = views(&store, "city-b").await;
    assert_eq!(entries.len(), 4);
    assert!(entries.iter().all(|e| seen(e).is_empty()));
    assert!(views(&store, "city-a").await.is_empty());
}
