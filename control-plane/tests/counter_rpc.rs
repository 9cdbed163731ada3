//! The counter flows' `counter.*` RPCs through the `Dispatcher`, on SQLite and on a
//! real PostgreSQL, over a small generated city (imported, 個人番号 sealed) and the
//! reference catalogue: a family of four moving in is found from one card with its
//! family; the determination lists 転入届 for all four, asks the insurance question
//! while it is unknown, and with the answers brings 国保, 児童手当 and 転入学 where the
//! data says so; the visit's drafts carry names, the new address and dates, and the
//! 個人番号 only where the form needs it; accepting refuses a code of another visit
//! and a draft; a certificate order with a wrong fee is refused and stores nothing;
//! a session without the permission gets `forbidden` (and the refusal is audited).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kakanai_control_plane::applications::{self, Act, ApplicationState};
use kakanai_control_plane::counter::CounterRpc;
use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::residents::csvfile::{decode, parse, Table};
use kakanai_control_plane::residents::gen::write_demo;
use kakanai_control_plane::residents::mapping::Encoding;
use kakanai_control_plane::residents::{
    gen_city, import_dir, import_file, DataKind, FileSpec, ImportMode, ImportOptions, Mapping,
    MyNumberKey, Outcome,
};
use kakanai_control_plane::rpc::{Dispatcher, RpcContext, StaffSession};
use kakanai_control_plane::rules::catalog::read_files;
use kakanai_control_plane::store::{Store, Tenant};
use kakanai_protocol::catalogue::RpcError;
use kakanai_protocol::counter::{
    CreateVisitRequest, DeterminationView, EventKind, MovingInResponse, PersonRef, VisitMember,
    VisitPlan, VisitView,
};
use kakanai_protocol::personal::{CardFace, PersonalText, Sex};
use kakanai_protocol::topic::Ident;
use serde_json::{json, Value};

both_backends!("crpc_";
    family_moving_in_from_one_card_to_accepted_forms,
    certificate_orders_are_checked_before_anything_is_stored,
    unplaceable_addresses_and_forbidden_sessions,
    residents_moving_within_bring_what_their_records_say,
    moving_in_is_found_among_many_announced,
);

const SEED: u64 = 5;
const RESIDENTS: usize = 1_200;
/// 2025-04-08 10:00 JST: a week after the generated city's reference date, while
/// the families announced in its 転出証明書情報 arrive.
const NOW: i64 = 1_744_074_000_000;
const KEY: [u8; 32] = [7; 32];

fn city_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        gen_city(dir.path(), SEED, RESIDENTS).unwrap();
        write_demo(dir.path(), SEED, RESIDENTS).unwrap();
        dir
    })
    .path()
}

fn tenant() -> TenantId {
    TenantId::new("city-a").unwrap()
}

async fn store_with_city(url: &str) -> Store {
    let store = Store::open(url).await.unwrap();
    store
        .create_tenant(
            &Tenant {
                id: tenant(),
                name: "書無市".into(),
            },
            NOW - 86_400_000,
        )
        .await
        .unwrap();
    let options = ImportOptions {
        my_number_key: Some(MyNumberKey::new(&KEY)),
        now_ms: NOW - 86_400_000,
    };
    let report = import_dir(
        &store,
        &tenant(),
        city_dir(),
        &Mapping::reference(),
        &options,
    )
    .await
    .unwrap();
    assert!(report.all_applied(), "{report}");
    let files = read_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog")).unwrap();
    store
        .install_catalogue_versions(&tenant(), &files, "admin01", NOW - 86_400_000)
        .await
        .unwrap();
    store
}

fn dispatcher(store: &Store) -> Dispatcher {
    let mut d = Dispatcher::new();
    CounterRpc::new(store.clone(), Some(MyNumberKey::new(&KEY))).register(&mut d);
    d
}

fn ctx(permissions: &[&str]) -> RpcContext {
    let device = Ident::new("counter-01").unwrap();
    RpcContext {
        tenant: tenant(),
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

fn staff() -> RpcContext {
    ctx(&[
        "application.create",
        "application.view",
        "procedure.determine",
        "resident.view",
    ])
}

async fn call<P: serde::Serialize, R: serde::de::DeserializeOwned>(
    d: &Dispatcher,
    ctx: &RpcContext,
    method: &str,
    params: &P,
) -> Result<R, RpcError> {
    let p = ciborium::Value::serialized(params).unwrap();
    d.dispatch(ctx, method, p)
        .await
        .map(|v| v.deserialized::<R>().unwrap())
}

/// A demo card profile as the card reader would return its face.
fn card(file: &str) -> (CardFace, Value) {
    let path: PathBuf = city_dir().join("demo").join(file);
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let face = CardFace {
        name: PersonalText::new(v["name"].as_str().unwrap()),
        address: PersonalText::new(v["address"].as_str().unwrap()),
        birth_date: PersonalText::new(v["birth_date"].as_str().unwrap().replace('-', "")),
        sex: if v["sex"] == "1" {
            Sex::Male
        } else {
            Sex::Female
        },
        my_number: None,
        has_private_use_chars: false,
    };
    (face, v)
}

fn table(file: &str, enc: Encoding) -> Table {
    parse(&decode(&std::fs::read(city_dir().join(file)).unwrap(), enc).unwrap()).unwrap()
}

fn member(view: &DeterminationView, id: &str) -> Vec<String> {
    view.members
        .iter()
        .find(|m| m.member == id)
        .unwrap()
        .procedures
        .iter()
        .filter(|p| p.included)
        .map(|p| p.id.clone())
        .collect()
}

async fn drafts(store: &Store) -> usize {
    store
        .applications_in_state(&tenant(), ApplicationState::Draft, None, 10_000)
        .await
        .unwrap()
        .len()
}

async fn family_moving_in_from_one_card_to_accepted_forms(url: String) {
    let store = store_with_city(&url).await;
    let d = dispatcher(&store);
    let staff = staff();

    // The mother's card finds her record and the whole declared family, head first.
    let (face, profile) = card("family-2.json");
    let found: MovingInResponse = call(&d, &staff, "counter.lookup-moving-in", &face)
        .await
        .unwrap();
    assert!(found.exact);
    assert_eq!(found.candidates[0].name, profile["name"].as_str().unwrap());
    assert_eq!(found.family.len(), 4);
    assert_eq!(found.family[0].relation, "世帯主");
    let (head_face, _) = card("family-1.json");
    assert_eq!(found.family[0].name, head_face.name.expose());
    let destination = found.family[0].destination.clone();
    assert!(
        destination.starts_with("見本県書無市"),
        "an address of this city"
    );
    assert!(found
        .family
        .iter()
        .all(|p| p.destination == destination
            && p.previous_address == found.family[0].previous_address));
    // A card read with full-width digits and a half-width space still finds her.
    let loose = CardFace {
        name: PersonalText::new(face.name.expose().replace('\u{3000}', " ")),
        address: PersonalText::new(
            face.address
                .expose()
                .chars()
                .map(|c| {
                    if c.is_ascii_digit() {
                        char::from_u32(c as u32 + 0xFEE0).unwrap()
                    } else {
                        c
                    }
                })
                .collect::<String>(),
        ),
        ..face.clone()
    };
    let again: MovingInResponse = call(&d, &staff, "counter.lookup-moving-in", &loose)
        .await
        .unwrap();
    assert_eq!(
        again.candidates[0].juminhyo_code,
        found.candidates[0].juminhyo_code
    );

    // The plan: all four move in; no destination given, so the 転出先 is used.
    let event_date = found.family[0].move_date.clone().unwrap();
    let mut plan = VisitPlan {
        event: EventKind::MoveIn,
        event_date: event_date.clone(),
        members: found
            .family
            .iter()
            .map(|p| VisitMember {
                person: PersonRef::MovingIn {
                    juminhyo_code: p.juminhyo_code.clone(),
                },
                relationship: String::new(),
                subject: true,
                card_read: true,
            })
            .collect(),
        applicant: None,
        destination: None,
        answers: Default::default(),
    };
    let view: DeterminationView = call(&d, &staff, "counter.determine", &plan).await.unwrap();
    assert_eq!(view.destination.as_deref(), Some(destination.as_str()));
    assert_eq!(view.members.len(), 4);
    for (m, p) in view.members.iter().zip(&found.family) {
        assert_eq!(m.name, p.name, "names from the data");
        assert_eq!(m.birth_date.as_deref(), Some(p.birth_date.as_str()));
        assert!(
            member(&view, &m.member).contains(&"tennyu_todoke".to_owned()),
            "{} 転入届",
            m.member
        );
    }
    // Insurance is not in the data: the engine asks, per person, instead of guessing.
    for id in ["m1", "m2", "m3", "m4"] {
        let key = format!("joins_employer_insurance@{id}");
        let q = view
            .questions
            .iter()
            .find(|q| q.key == key)
            .unwrap_or_else(|| panic!("{key} asked"));
        assert!(q.affects.iter().any(|a| a.contains("国民健康保険")));
        assert!(!member(&view, id).contains(&"kokuho_shutoku".to_owned()));
    }
    // Children: 児童手当 for the head, 転入学 for the child of school age.
    assert!(member(&view, "m1").contains(&"jido_teate_nintei".to_owned()));
    let school_child = view
        .members
        .iter()
        .find(|m| member(&view, &m.member).contains(&"tennyugaku".to_owned()))
        .expect("a child at 小学校 gets 転入学");
    assert!(school_child.age >= 6 && school_child.age <= 12);
    assert!(!view.visit_order.is_empty());

    // Answers: the head joins his employer's insurance, the others are in 国保.
    plan.answers
        .insert("joins_employer_insurance@m1".into(), true);
    for id in ["m2", "m3", "m4"] {
        plan.answers
            .insert(format!("joins_employer_insurance@{id}"), false);
    }
    let view: DeterminationView = call(&d, &staff, "counter.determine", &plan).await.unwrap();
    assert!(!view
        .questions
        .iter()
        .any(|q| q.key.starts_with("joins_employer_insurance")));
    assert!(!member(&view, "m1").contains(&"kokuho_shutoku".to_owned()));
    for id in ["m2", "m3", "m4"] {
        assert!(
            member(&view, id).contains(&"kokuho_shutoku".to_owned()),
            "{id} 国保"
        );
    }
    // Determining stores nothing.
    assert_eq!(drafts(&store).await, 0);

    // An adjustment naming no procedure is refused whole.
    let bad = CreateVisitRequest {
        plan: plan.clone(),
        adjustments: vec![kakanai_protocol::counter::Adjustment {
            member: Some("m1".into()),
            procedure: "no_such_procedure".into(),
            include: true,
        }],
    };
    let e = call::<_, VisitView>(&d, &staff, "counter.create-visit", &bad)
        .await
        .unwrap_err();
    assert_eq!(e.code, "invalid-params");
    assert_eq!(drafts(&store).await, 0, "nothing stored");

    // The visit: staff take 転入学 out for the school child (a private school).
    let req = CreateVisitRequest {
        plan: plan.clone(),
        adjustments: vec![kakanai_protocol::counter::Adjustment {
            member: Some(school_child.member.clone()),
            procedure: "tennyugaku".into(),
            include: false,
        }],
    };
    let visit: VisitView = call(&d, &staff, "counter.create-visit", &req)
        .await
        .unwrap();
    assert_eq!(visit.kind, "move_in");
    assert!(visit.has_guide);
    assert!(visit
        .applications
        .iter()
        .all(|a| a.state == kakanai_protocol::counter::ApplicationState::Draft));
    assert!(
        !visit.applications.iter().any(|a| a.form == "GAKUMU-TENNYU"),
        "taken out"
    );
    let apps = store
        .visit_applications(&tenant(), &visit.visit)
        .await
        .unwrap();
    let juki: Vec<_> = apps.iter().filter(|a| a.form == "JUKI-IDO").collect();
    assert_eq!(juki.len(), 1, "one 住民異動届 for the household");
    let data = &juki[0].data;
    let movers: Vec<&str> = data["event"]["movers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let names: Vec<&str> = found.family.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(movers, names);
    assert_eq!(data["event"]["new_address"], destination.as_str());
    assert_eq!(
        data["event"]["previous_address"],
        found.family[0].previous_address.as_str()
    );
    assert_eq!(data["event"]["date"], event_date.as_str());
    assert_eq!(data["event"]["label"], "転入");
    assert_eq!(data["subject"]["address"], destination.as_str());
    assert_eq!(data["applicant"]["name"], found.family[0].name.as_str());
    assert_eq!(data["office"]["city"], "書無市");
    let kokuho: Vec<_> = apps.iter().filter(|a| a.form == "KOKUHO-SHUTOKU").collect();
    assert_eq!(kokuho.len(), 3, "the three in 国保");
    // The 個人番号 travels sealed, only on forms that print one: the mother's is the
    // one her card holds.
    let key = MyNumberKey::new(&KEY);
    let mother = kokuho
        .iter()
        .find(|a| a.data["subject"]["name"] == found.family[1].name.as_str())
        .unwrap();
    assert_eq!(
        applications::open_my_number(&key, &tenant(), mother).as_deref(),
        profile["my_number"].as_str()
    );
    assert!(apps
        .iter()
        .filter(
            |a| !["JUKI-IDO", "KOKUHO-SHUTOKU", "JIDO-NINTEI", "JIFU-NINTEI"]
                .contains(&a.form.as_str())
        )
        .all(|a| a.my_number_sealed.is_none()));
    // The guide is kept: every member with their procedures, forms or not.
    let guide = store
        .counter_guide(&tenant(), &visit.visit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(guide["people"].as_array().unwrap().len(), 4);
    assert_eq!(guide["event"]["date"], event_date.as_str());
    assert!(guide["people"][0]["procedures"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "転入届"));

    // What counter.print sends renders: the guide first, then every form.
    let engine =
        kakanai_documents::Engine::new(kakanai_documents::EngineConfig::default()).unwrap();
    let mut bundle = vec![kakanai_documents::DocumentRequest::Guide(&guide)];
    for a in &apps {
        bundle.push(kakanai_documents::DocumentRequest::Form {
            id: &a.form,
            data: &a.data,
        });
    }
    let pdf = engine.render_bundle(&bundle).unwrap();
    assert!(
        pdf.pages > apps.len(),
        "{} pages for {} forms and the guide",
        pdf.pages,
        apps.len()
    );

    // counter.visit shows the same.
    let shown: VisitView = call(&d, &staff, "counter.visit", &json!({"visit": visit.visit}))
        .await
        .unwrap();
    assert_eq!(shown, visit);

    // Accepting: a draft is refused with a word to print first; a code of another
    // visit is unknown and changes nothing; a printed form is accepted, twice is fine.
    let number = juki[0].number.clone();
    let e = call::<_, VisitView>(
        &d,
        &staff,
        "counter.accept",
        &json!({"visit": visit.visit, "code": number}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "illegal-transition");
    assert!(e.message.contains("印刷"));
    let other: VisitView = call(
        &d,
        &staff,
        "counter.create-visit",
        &CreateVisitRequest {
            plan: plan.clone(),
            adjustments: vec![],
        },
    )
    .await
    .unwrap();
    let foreign = other.applications[0].number.clone();
    applications::record_printed(
        &store,
        &tenant(),
        &apps.iter().find(|a| a.number == number).unwrap().id,
        [1; 32],
        1,
        &Act::staff_at("staff01", "counter-01", NOW),
    )
    .await
    .unwrap();
    let other_app = store
        .application_by_number(&tenant(), &foreign)
        .await
        .unwrap()
        .unwrap();
    applications::record_printed(
        &store,
        &tenant(),
        &other_app.id,
        [2; 32],
        1,
        &Act::staff_at("staff01", "counter-01", NOW),
    )
    .await
    .unwrap();
    let e = call::<_, VisitView>(
        &d,
        &staff,
        "counter.accept",
        &json!({"visit": visit.visit, "code": foreign}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "unknown-code");
    assert_eq!(
        store
            .application_by_number(&tenant(), &foreign)
            .await
            .unwrap()
            .unwrap()
            .state,
        ApplicationState::Printed,
        "the other visit's form is untouched"
    );
    for _ in 0..2 {
        let v: VisitView = call(
            &d,
            &staff,
            "counter.accept",
            &json!({"visit": visit.visit, "code": format!(" {number}\r\n")}),
        )
        .await
        .unwrap();
        let a = v.applications.iter().find(|a| a.number == number).unwrap();
        assert_eq!(
            a.state,
            kakanai_protocol::counter::ApplicationState::Accepted
        );
    }

    // Printing needs the running service (covered by the cross-process test).
    let e = call::<_, Value>(
        &d,
        &staff,
        "counter.print",
        &json!({"visit": visit.visit, "guide": true}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "printing-unavailable");

    // The reads were audited with 住民票コード only, never a name.
    let entries = store.audit_range(&tenant(), 1, 10_000).await.unwrap();
    let views: Vec<_> = entries
        .iter()
        .filter(|e| e.record.action == "resident.view")
        .collect();
    assert!(views.len() >= 4);
    for e in &views {
        let text = serde_json::to_string(&e.record.detail).unwrap();
        for p in &found.family {
            assert!(!text.contains(&p.name), "no names in the audit log");
        }
    }
    assert!(views.iter().any(|e| e.record.detail["moving_in"]
        .as_array()
        .is_some_and(|a| a.len() == 4)));
}

async fn certificate_orders_are_checked_before_anything_is_stored(url: String) {
    let store = store_with_city(&url).await;
    let d = dispatcher(&store);
    let staff = staff();

    let menu: Value = call(&d, &staff, "counter.certificates", &()).await.unwrap();
    let juminhyo = menu["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "juminhyo")
        .unwrap();
    let fee = juminhyo["fee"].as_i64().unwrap();
    assert!(fee > 0);
    assert!(juminhyo["restricted_options"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "個人番号"));
    assert_eq!(menu["max_copies"], 20);
    assert!(menu["purposes"].as_array().unwrap().len() >= 5);
    assert!(menu["id_checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "マイナンバーカード"));

    // The demo resident and someone of another household.
    let (_, profile) = card("resident.json");
    let jumin = table("jumin.csv", Encoding::Utf8);
    let col = |n: &str| jumin.header.iter().position(|h| h == n).unwrap();
    let me = jumin
        .records
        .iter()
        .find(|r| {
            r.fields[col("氏名")] == profile["name"].as_str().unwrap()
                && r.fields[col("生年月日")] == profile["birth_date"].as_str().unwrap()
        })
        .unwrap();
    let atena = me.fields[col("宛名番号")].clone();
    let stranger = jumin
        .records
        .iter()
        .find(|r| {
            r.fields[col("世帯番号")] != me.fields[col("世帯番号")]
                && r.fields[col("状態")] == "在住"
        })
        .unwrap()
        .fields[col("宛名番号")]
    .clone();
    let order = |fee_total: i64| {
        json!({
            "subject": atena,
            "relationship": "self",
            "purpose": "就職",
            "destination": "株式会社書無",
            "id_check": "マイナンバーカード",
            "items": [{"certificate": "juminhyo", "options": ["続柄"], "copies": 2, "fee": fee}],
            "fee_total": fee_total,
        })
    };
    let visits_before = store.audit_head(&tenant()).await.unwrap().seq;
    let e = call::<_, VisitView>(
        &d,
        &staff,
        "counter.request-certificates",
        &order(fee * 2 - 10),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "invalid-certificate-request");
    assert_eq!(drafts(&store).await, 0, "a refused order stores nothing");
    let after = store
        .audit_range(&tenant(), visits_before + 1, 100)
        .await
        .unwrap();
    assert!(
        after
            .iter()
            .all(|e| !e.record.action.starts_with("application.")
                && !e.record.action.starts_with("visit")),
        "no visit or application was made"
    );

    // A household requester must be of the subject's household.
    let mut wrong = order(fee * 2);
    wrong["relationship"] = json!("household");
    wrong["requester_atena"] = json!(stranger);
    let e = call::<_, VisitView>(&d, &staff, "counter.request-certificates", &wrong)
        .await
        .unwrap_err();
    assert_eq!(e.code, "invalid-certificate-request");
    assert_eq!(drafts(&store).await, 0);

    let visit: VisitView = call(&d, &staff, "counter.request-certificates", &order(fee * 2))
        .await
        .unwrap();
    assert_eq!(visit.kind, "certificate");
    assert!(!visit.has_guide);
    assert_eq!(visit.applications.len(), 1);
    let app = &visit.applications[0];
    assert_eq!(app.form, "SHOMEI-JUMIN");
    assert_eq!(app.fee, fee * 2);
    assert_eq!(app.certificates, vec!["juminhyo".to_owned()]);
    assert_eq!(app.subject_name.as_deref(), profile["name"].as_str());
    let stored = store
        .application_by_number(&tenant(), &app.number)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.subject.as_deref(), Some(atena.as_str()));
    assert_eq!(stored.data["applicant"]["name"], profile["name"]);

    // A second order joins the same visit.
    let mut more = order(fee);
    more["visit"] = json!(visit.visit);
    more["items"][0]["copies"] = json!(1);
    let joined: VisitView = call(&d, &staff, "counter.request-certificates", &more)
        .await
        .unwrap();
    assert_eq!(joined.visit, visit.visit);
    assert_eq!(joined.applications.len(), 2);
}

async fn unplaceable_addresses_and_forbidden_sessions(url: String) {
    let store = store_with_city(&url).await;
    let d = dispatcher(&store);
    let staff = staff();
    let (face, _) = card("family-1.json");
    let found: MovingInResponse = call(&d, &staff, "counter.lookup-moving-in", &face)
        .await
        .unwrap();
    let plan = |destination: Option<&str>| {
        json!({
            "event": "move_in",
            "event_date": "2025-04-08",
            "members": [{"person": {"source": "moving_in", "juminhyo_code": found.family[0].juminhyo_code}, "subject": true}],
            "destination": destination.map(|a| json!({"address": a})),
        })
    };
    let e = call::<_, Value>(
        &d,
        &staff,
        "counter.determine",
        &plan(Some("どこか県どこか市北町1番地")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "address-unknown");
    assert!(!e.message.contains("どこか"), "the address is not quoted");
    // A destination the master knows is used as given.
    let v: DeterminationView = call(
        &d,
        &staff,
        "counter.determine",
        &plan(Some(&found.family[0].destination)),
    )
    .await
    .unwrap();
    assert_eq!(
        v.destination.as_deref(),
        Some(found.family[0].destination.as_str())
    );
    // Staff choose the address from the master instead: 町字 from the menu, 番地 typed.
    let menu: Value = call(&d, &staff, "counter.addresses", &()).await.unwrap();
    assert_eq!(menu["city"], "見本県書無市");
    let choices = menu["machiaza"].as_array().unwrap();
    assert!(choices.len() >= 40, "every 町字 of the master");
    let last = choices.last().unwrap();
    let chosen = format!(
        "{}{}1番1号",
        menu["city"].as_str().unwrap(),
        last["name"].as_str().unwrap()
    );
    let mut with_code = plan(Some(&chosen));
    with_code["destination"]["machiaza"] = last["code"].clone();
    let v: DeterminationView = call(&d, &staff, "counter.determine", &with_code)
        .await
        .unwrap();
    assert_eq!(v.destination.as_deref(), Some(chosen.as_str()));

    // Someone who is nobody here.
    let e = call::<_, Value>(
        &d,
        &staff,
        "counter.determine",
        &json!({
            "event": "move_within", "event_date": "2025-04-08",
            "members": [{"person": {"source": "resident", "atena": "9999999999"}, "subject": true}],
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "not-found");

    // Without the permissions: forbidden, and audited as denied.
    let viewer = ctx(&["application.view"]);
    for (method, params) in [
        (
            "counter.lookup-moving-in",
            serde_json::to_value(&face).unwrap(),
        ),
        ("counter.determine", plan(None)),
        ("counter.create-visit", json!({"plan": plan(None)})),
        ("counter.certificates", Value::Null),
        ("counter.addresses", Value::Null),
        ("counter.accept", json!({"visit": "x", "code": "y"})),
    ] {
        let e = call::<_, Value>(&d, &viewer, method, &params)
            .await
            .unwrap_err();
        assert_eq!(e.code, "forbidden", "{method}");
    }
    let e = call::<_, Value>(&d, &ctx(&[]), "counter.visit", &json!({"visit": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "forbidden");
    let mut anonymous = staff.clone();
    anonymous.session = None;
    let e = call::<_, Value>(&d, &anonymous, "counter.visit", &json!({"visit": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "unauthenticated");
    let entries = store.audit_range(&tenant(), 1, 10_000).await.unwrap();
    assert!(entries
        .iter()
        .any(|e| e.record.action == "resident.view" && e.record.outcome == "denied"));
    // Unreadable parameters are refused without quoting them.
    let e = call::<_, Value>(
        &d,
        &staff,
        "counter.determine",
        &json!({"event": "山田太郎"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "invalid-params");
    assert!(!e.message.contains("山田"));
}

/// A city that was announced many more people moving in than the 20,000 the lookup
/// once read whole (it read them in 住民票コード order and stopped there): a family
/// whose codes sort after all of them is still found from the mother's card, with
/// the whole declared household, and a card of nobody announced finds no one.
async fn moving_in_is_found_among_many_announced(url: String) {
    const OTHERS: usize = 20_500;
    let store = Store::open(&url).await.unwrap();
    store
        .create_tenant(
            &Tenant {
                id: tenant(),
                name: "書無市".into(),
            },
            NOW,
        )
        .await
        .unwrap();
    let mapping = Mapping::reference();
    let km = mapping.kind(DataKind::Tenshutsu).unwrap();
    let header = table("tenshutsu.csv", Encoding::Utf8).header.join(",");
    let mut csv = format!("{header}\n");
    let from = "架空県見本市本町1丁目2番3号";
    for i in 0..OTHERS {
        // Others: spread over birth dates and names, each the head of their own.
        let name = format!(
            "見本　{}",
            char::from_u32(0x4E00 + (i % 5_000) as u32).unwrap()
        );
        csv.push_str(&format!(
            "1{i:010},{name},ミホン,19{:02}-{:02}-{:02},1,{from}{i}番地,2025-04-10,見本県書無市本町1番地,{name},世帯主,\n",
            50 + i % 50,
            1 + i % 12,
            1 + i % 28
        ));
    }
    // The family, with the largest codes: head, wife, child.
    for (code, name, birth, sex, relation) in [
        ("99999999991", "髙橋　太郎", "1980-01-02", "1", "世帯主"),
        ("99999999992", "髙橋　花子", "1982-03-04", "2", "妻"),
        ("99999999993", "髙橋　一郎", "2015-05-06", "1", "子"),
    ] {
        csv.push_str(&format!(
            "{code},{name},タカハシ,{birth},{sex},東京都架空区本町1丁目2番3号,2025-04-10,見本県書無市本町1番地,髙橋　太郎,{relation},\n"
        ));
    }
    let options = ImportOptions {
        my_number_key: Some(MyNumberKey::new(&KEY)),
        now_ms: NOW,
    };
    let spec = FileSpec {
        kind: DataKind::Tenshutsu,
        mode: ImportMode::Full,
        file: "tenshutsu.csv".into(),
        as_of: None,
    };
    let report = import_file(
        &store,
        &tenant(),
        &mapping.delta,
        km,
        &spec,
        csv.as_bytes(),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Applied, "{report}");
    assert_eq!(report.added, OTHERS + 3);

    let d = dispatcher(&store);
    let staff = staff();
    // The mother's card: 高 for 髙, full-width digits, a half-width space.
    let face = CardFace {
        name: PersonalText::new("高橋 花子"),
        address: PersonalText::new("東京都架空区本町１丁目２番３号"),
        birth_date: PersonalText::new("19820304"),
        sex: Sex::Female,
        my_number: None,
        has_private_use_chars: false,
    };
    let found: MovingInResponse = call(&d, &staff, "counter.lookup-moving-in", &face)
        .await
        .unwrap();
    assert!(found.exact);
    assert_eq!(found.candidates[0].juminhyo_code, "99999999992");
    let family: Vec<&str> = found
        .family
        .iter()
        .map(|p| p.juminhyo_code.as_str())
        .collect();
    assert_eq!(family, ["99999999991", "99999999992", "99999999993"]);

    let nobody = CardFace {
        name: PersonalText::new("誰也　無"),
        address: PersonalText::new("北海道どこか町1番地"),
        birth_date: PersonalText::new("20010101"),
        ..face
    };
    let found: MovingInResponse = call(&d, &staff, "counter.lookup-moving-in", &nobody)
        .await
        .unwrap();
    assert!(!found.exact);
    assert!(found.candidates.is_empty() && found.family.is_empty());
}

/// The demo cards are virtual cards `kakanai-vcard` loads, and the README's PIN and
/// 照合番号B open them (raw APDUs to the card's 券面事項入力補助AP).
#[test]
fn demo_cards_open_with_the_pin_and_code_b_the_readme_gives() {
    use kakanai_hw::vcard::VirtualCard;
    let demo = city_dir().join("demo");
    let readme = std::fs::read_to_string(demo.join("README.txt")).unwrap();
    let mut checked = 0;
    for block in readme.split("\r\n\r\n").skip(1) {
        let mut lines = block.lines();
        let Some(file) = lines.next().filter(|f| f.ends_with(".json")) else {
            continue;
        };
        let code_b = block
            .split("照合番号B ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap();
        let mut card = VirtualCard::from_file(&demo.join(file)).unwrap();
        card.power_on();
        let aid = [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08];
        let mut select = vec![0x00, 0xA4, 0x04, 0x0C, aid.len() as u8];
        select.extend(aid);
        assert_eq!(card.process_apdu(&select), [0x90, 0x00]);
        for (ef, secret) in [(0x15u8, code_b.as_bytes()), (0x11, b"1234".as_slice())] {
            assert_eq!(
                card.process_apdu(&[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, ef]),
                [0x90, 0x00]
            );
            let mut verify = vec![0x00, 0x20, 0x00, 0x80, secret.len() as u8];
            verify.extend_from_slice(secret);
            assert_eq!(
                card.process_apdu(&verify),
                [0x90, 0x00],
                "{file}: EF{ef:02X}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 5, "resident.json and family-1..4.json");
}

async fn residents_moving_within_bring_what_their_records_say(url: String) {
    let store = store_with_city(&url).await;
    let d = dispatcher(&store);
    let staff = staff();
    let jumin = table("jumin.csv", Encoding::Utf8);
    let col = |t: &Table, n: &str| t.header.iter().position(|h| h == n).unwrap();
    let kokuho = table("kokuho.csv", Encoding::Cp932);
    let in_kokuho = |atena: &str| {
        kokuho.records.iter().any(|r| {
            r.fields[col(&kokuho, "宛名番号")] == atena
                && r.fields[col(&kokuho, "資格喪失日")].is_empty()
        })
    };
    let living_in = |household: &str| -> Vec<String> {
        jumin
            .records
            .iter()
            .filter(|r| {
                r.fields[col(&jumin, "世帯番号")] == household
                    && r.fields[col(&jumin, "状態")] == "在住"
            })
            .map(|r| r.fields[col(&jumin, "宛名番号")].clone())
            .collect()
    };
    // A household whose 児童手当 recipient lives here and someone is in 国保.
    let teate = table("jidou_teate.csv", Encoding::Cp932);
    let (recipient, members) = teate
        .records
        .iter()
        .find_map(|t| {
            let recipient = t.fields[col(&teate, "受給者宛名番号")].clone();
            let household = jumin
                .records
                .iter()
                .find(|r| r.fields[col(&jumin, "宛名番号")] == recipient)?
                .fields[col(&jumin, "世帯番号")]
            .clone();
            let members = living_in(&household);
            (members.len() >= 2 && members.iter().any(|a| in_kokuho(a)))
                .then_some((recipient, members))
        })
        .expect("the generated city has such a household");
    // The new address: the first block of a 町字 of the master.
    let master = table("address_master.csv", Encoding::Cp932);
    let row = &master.records[0].fields;
    let chome = &row[col(&master, "丁目")];
    let name = &row[col(&master, "町字名")];
    let from = &row[col(&master, "番地開始")];
    let address = if chome == "0" {
        format!("見本県書無市{name}{from}番地1")
    } else {
        format!("見本県書無市{name}{from}番1号")
    };
    let plan = json!({
        "event": "move_within",
        "event_date": "2025-04-08",
        "members": members.iter().map(|a| json!({"person": {"source": "resident", "atena": a}, "subject": true})).collect::<Vec<_>>(),
        "destination": {"address": address},
    });
    let view: DeterminationView = call(&d, &staff, "counter.determine", &plan).await.unwrap();
    assert_eq!(view.destination.as_deref(), Some(address.as_str()));
    for (i, atena) in members.iter().enumerate() {
        let procs = member(&view, &format!("m{}", i + 1));
        assert!(
            procs.contains(&"tenkyo_todoke".to_owned()),
            "転居届 for m{}",
            i + 1
        );
        assert_eq!(
            procs.contains(&"kokuho_henko".to_owned()),
            in_kokuho(atena),
            "国保 as the data says (m{})",
            i + 1
        );
        if *atena == recipient {
            assert!(
                procs.contains(&"jido_teate_henko".to_owned()),
                "児童手当 住所変更 for the recipient"
            );
        }
    }
    // 婚姻: whose 氏 changes is an `event.*` answer; with it, the 国保 member's
    // 氏名変更 follows (unless she joins her spouse's insurance).
    let insured = members.iter().find(|a| in_kokuho(a)).unwrap();
    let marriage = |answers: Value| {
        json!({
            "event": "marriage",
            "event_date": "2025-04-08",
            "members": [
                {"person": {"source": "resident", "atena": insured}, "subject": true},
                {"person": {"source": "new", "person": {"name": "見本　一郎", "birth_date": "1990-01-01", "sex": "male"}},
                 "relationship": "夫", "subject": true},
            ],
            "answers": answers,
        })
    };
    let plain: DeterminationView = call(
        &d,
        &staff,
        "counter.determine",
        &marriage(json!({"joins_spouse_insurance@m1": false})),
    )
    .await
    .unwrap();
    assert!(!member(&plain, "m1").contains(&"kokuho_henko".to_owned()));
    assert_eq!(
        plain.members[1].name, "見本　一郎",
        "a new person as staff gave them"
    );
    let renamed: DeterminationView = call(
        &d,
        &staff,
        "counter.determine",
        &marriage(json!({"joins_spouse_insurance@m1": false, "event.surname_changes@m1": true})),
    )
    .await
    .unwrap();
    assert!(member(&renamed, "m1").contains(&"kokuho_henko".to_owned()));
    let e = call::<_, Value>(
        &d,
        &staff,
        "counter.determine",
        &marriage(json!({"event.honeymoon": true})),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "invalid-params");

    // The audit entry of the 転居 determination names the 宛名番号 read.
    let entries = store.audit_range(&tenant(), 1, 10_000).await.unwrap();
    let expected: Vec<Value> = members.iter().map(|a| json!(a)).collect();
    assert!(entries.iter().any(|e| e.record.action == "resident.view"
        && e.record.outcome == "ok"
        && e.record.detail["residents"].as_array() == Some(&expected)));
}
