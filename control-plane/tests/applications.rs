//! Application records and the RPA/data export (issue 8, items 4–5), on SQLite and on
//! a real PostgreSQL server (`both_backends!`; a case that cannot start PostgreSQL
//! fails, it never skips).
//!
//! The forms come from a real determination: the reference catalogue and the
//! `move_in_family_school` scenario (a family of five moving in), with names given as
//! the counter would (read from cards or typed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kakanai_control_plane::applications::certificate::{CertificateItem, Relationship};
use kakanai_control_plane::applications::export::{self, ExportMapping, JsonFile, Manifest};
use kakanai_control_plane::applications::fill::{EventDetails, Person, VisitData};
use kakanai_control_plane::applications::{
    self, Act, ApplicationError, ApplicationRecord, ApplicationState, CancelReason,
    CertificateRequest, Transition, TransitionError, Visit,
};
use kakanai_control_plane::model::{Actor, Place, TenantId};
use kakanai_control_plane::residents::csvfile;
use kakanai_control_plane::residents::mapping::Encoding;
use kakanai_control_plane::rules::{self, CatalogueSet, Date, Determination, DeterminationInput};
use kakanai_control_plane::store::applications::ApplicationStoreError;
use kakanai_control_plane::store::{AuditFilter, Store, Tenant};
use kakanai_protocol::VerifyingKey;

both_backends!("app_";
    illegal_transitions_are_refused_and_change_nothing,
    transitions_are_audited_without_names,
    certificate_requests_follow_the_catalogue,
    export_round_trips_in_utf8_and_cp932,
    exporting_twice_writes_nothing_and_again_rewrites,
    failed_write_leaves_applications_accepted,
    cp932_gaps_are_held_back_or_substituted,
    my_number_is_stored_sealed_only,
);

/// 2026-11-27 10:00 JST.
const NOW: i64 = 1_795_741_200_000;

fn city() -> TenantId {
    TenantId::new("city-a").unwrap()
}

fn staff() -> Actor {
    Actor::Staff("tanaka".into())
}

fn counter() -> Place {
    Place::Appliance("counter-1".into())
}

fn act(at_ms: i64) -> Act {
    Act::staff_at("tanaka", "counter-1", at_ms)
}

async fn open(url: &str) -> Store {
    let store = Store::open(url).await.unwrap();
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
    store
}

fn catalogue() -> CatalogueSet {
    CatalogueSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog")).unwrap()
}

fn scenario() -> (DeterminationInput, Determination) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios/move_in_family_school.input.json");
    let input: DeterminationInput =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let det = rules::determine(&catalogue(), &input).unwrap();
    (input, det)
}

const NAMES: &[(&str, &str, &str)] = &[
    ("山田 太郎", "ヤマダ タロウ", "男"),
    ("山田 花子", "ヤマダ ハナコ", "女"),
    ("山田 美咲", "ヤマダ ミサキ", "女"),
    ("山田 翔太", "ヤマダ ショウタ", "男"),
    ("山田 陽菜", "ヤマダ ヒナ", "女"),
];

fn visit_data(input: &DeterminationInput, names: &[(&str, &str, &str)]) -> VisitData {
    let mut people = BTreeMap::new();
    for (m, (name, kana, sex)) in input.household.members.iter().zip(names) {
        people.insert(
            m.id.clone(),
            Person {
                name: Some((*name).into()),
                kana: Some((*kana).into()),
                birth_date: Some(m.birth_date.to_string()),
                sex: Some((*sex).into()),
                relationship: Some(m.relationship.clone()),
                address: Some("大阪府大阪市北区梅田一丁目1番1号".into()),
                atena: None,
            },
        );
    }
    VisitData {
        city: "書無市".into(),
        created: Date::new(2026, 11, 27).unwrap(),
        event: EventDetails {
            previous_address: Some("大阪府大阪市北区梅田一丁目1番1号".into()),
            previous_address_code: None,
            new_address: Some("書無市本町二丁目3番4号".into()),
            new_address_code: Some("012003".into()),
            previous_municipality: Some("大阪府大阪市".into()),
            new_municipality: None,
        },
        people,
        applicant: Some("p1".into()),
        head: Some("p1".into()),
        household_address: Some("書無市本町二丁目3番4号".into()),
        answers: serde_json::Map::new(),
    }
}

async fn visit(store: &Store, kind: &str) -> Visit {
    applications::start_visit(store, &city(), "counter-1", "tanaka", kind, NOW)
        .await
        .unwrap()
}

/// The drafts of the family's move-in visit.
async fn move_in_drafts(store: &Store, names: &[(&str, &str, &str)]) -> Vec<ApplicationRecord> {
    let (input, det) = scenario();
    let v = visit(store, "move_in").await;
    applications::create_for_visit(
        store,
        &city(),
        &v,
        &det,
        &visit_data(&input, names),
        None,
        NOW,
    )
    .await
    .unwrap()
}

async fn print_and_accept(store: &Store, apps: &[ApplicationRecord]) {
    for a in apps {
        applications::record_printed(store, &city(), &a.id, [7; 32], 1, &act(NOW + 1))
            .await
            .unwrap();
        applications::accept_by_number(store, &city(), &a.number, &act(NOW + 2))
            .await
            .unwrap();
    }
}

fn mapping(encoding: &str, unencodable: &str) -> ExportMapping {
    let text = ExportMapping::reference_toml()
        .replace(
            "encoding = \"cp932\"",
            &format!("encoding = \"{encoding}\""),
        )
        .replace(
            "unencodable = \"refuse\"",
            &format!("unencodable = \"{unencodable}\""),
        );
    ExportMapping::from_toml(&text).unwrap()
}

async fn audit_len(store: &Store) -> u64 {
    store.audit_head(&city()).await.unwrap().seq
}

// ---------------------------------------------------------------------------------

/// Moves `app` to `state` through legal transitions (exported through a real export).
async fn bring_to(store: &Store, state: ApplicationState, out: &Path) -> ApplicationRecord {
    let v = visit(store, "move_in").await;
    let (input, det) = scenario();
    let apps = applications::create_for_visit(
        store,
        &city(),
        &v,
        &det,
        &visit_data(&input, NAMES),
        None,
        NOW,
    )
    .await
    .unwrap();
    let app = apps[0].clone();
    let t = |tr: Transition| {
        let id = app.id.clone();
        async move {
            store
                .transition_application(&city(), &id, &tr, &staff(), &counter(), NOW + 5)
                .await
                .unwrap()
        }
    };
    use ApplicationState as S;
    match state {
        S::Draft => {}
        S::Printed => {
            t(Transition::Print {
                pdf_sha256: [1; 32],
                pages: 2,
            })
            .await;
        }
        S::Accepted | S::Exported | S::Completed => {
            t(Transition::Print {
                pdf_sha256: [1; 32],
                pages: 2,
            })
            .await;
            t(Transition::Accept).await;
            if state != S::Accepted {
                export::export(
                    store,
                    &city(),
                    &ExportMapping::reference(),
                    out,
                    Some(&app.form),
                    NOW + 6,
                )
                .await
                .unwrap();
            }
            if state == S::Completed {
                t(Transition::Complete).await;
            }
        }
        S::Cancelled => {
            t(Transition::Cancel {
                reason: CancelReason::Withdrawn,
                note: String::new(),
            })
            .await;
        }
    }
    let got = store.application(&city(), &app.id).await.unwrap().unwrap();
    assert_eq!(got.state, state);
    got
}

fn all_transitions() -> Vec<Transition> {
    vec![
        Transition::Print {
            pdf_sha256: [9; 32],
            pages: 3,
        },
        Transition::Accept,
        Transition::Complete,
        Transition::Cancel {
            reason: CancelReason::WrongData,
            note: "記載誤り".into(),
        },
    ]
}

async fn illegal_transitions_are_refused_and_change_nothing(url: String) {
    let store = open(&url).await;
    let out = tempfile::tempdir().unwrap();
    use ApplicationState as S;
    let legal: &[(S, &[&str])] = &[
        (S::Draft, &["application.print", "application.cancel"]),
        (
            S::Printed,
            &[
                "application.print",
                "application.accept",
                "application.cancel",
            ],
        ),
        (S::Accepted, &["application.cancel"]),
        (S::Exported, &["application.complete"]),
        (S::Completed, &[]),
        (S::Cancelled, &[]),
    ];
    for (state, allowed) in legal {
        for tr in all_transitions() {
            let app = bring_to(&store, *state, out.path()).await;
            let log_before = audit_len(&store).await;
            let got = store
                .transition_application(&city(), &app.id, &tr, &staff(), &counter(), NOW + 100)
                .await;
            let after = store.application(&city(), &app.id).await.unwrap().unwrap();
            if allowed.contains(&tr.action()) {
                let got = got.unwrap_or_else(|e| panic!("{state} {tr:?}: {e}"));
                assert_eq!(got.state, tr.target());
                assert_eq!(after, got, "what was returned is what is stored");
                assert_eq!(audit_len(&store).await, log_before + 1, "one audit entry");
            } else {
                match got {
                    Err(ApplicationStoreError::Refused(TransitionError::Illegal { from, to })) => {
                        assert_eq!((from, to), (*state, tr.target()));
                    }
                    other => panic!("{state} {tr:?} should be refused, got {other:?}"),
                }
                assert_eq!(after, app, "a refused transition changes nothing");
                assert_eq!(audit_len(&store).await, log_before, "and logs nothing");
            }
        }
    }
    // Exported only through an export: a draft cannot be given a batch.
    let draft = bring_to(&store, S::Draft, out.path()).await;
    let refused = store
        .record_export(
            &city(),
            "manual-batch",
            "{}",
            std::slice::from_ref(&draft.id),
            NOW,
        )
        .await;
    assert!(matches!(refused, Err(ApplicationStoreError::Refused(_))));
    assert!(store
        .export_batch(&city(), "manual-batch")
        .await
        .unwrap()
        .is_none());
    // Zero pages is not a print.
    let bad = store
        .transition_application(
            &city(),
            &draft.id,
            &Transition::Print {
                pdf_sha256: [0; 32],
                pages: 0,
            },
            &staff(),
            &counter(),
            NOW,
        )
        .await;
    assert!(matches!(
        bad,
        Err(ApplicationStoreError::Refused(TransitionError::Invalid(_)))
    ));
    assert_eq!(
        store
            .application(&city(), &draft.id)
            .await
            .unwrap()
            .unwrap(),
        draft
    );
}

async fn transitions_are_audited_without_names(url: String) {
    let store = open(&url).await;
    let apps = move_in_drafts(&store, NAMES).await;
    assert!(!apps.is_empty());
    // Numbers: fiscal year 2026 (令和8年度), in order, unique.
    for (i, a) in apps.iter().enumerate() {
        assert_eq!(a.number, format!("2026-{:06}", i + 1));
        assert_eq!(a.data["application"]["number"], a.number.as_str());
    }
    let a = &apps[0];
    applications::record_printed(&store, &city(), &a.id, [0xab; 32], 2, &act(NOW + 10))
        .await
        .unwrap();
    let accepted = applications::accept_by_number(
        &store,
        &city(),
        &a.number,
        &Act::staff_at("suzuki", "counter-1", NOW + 20),
    )
    .await
    .unwrap();
    assert_eq!(
        accepted.pdf_sha256.as_deref(),
        Some(hex::encode([0xab; 32]).as_str())
    );
    assert_eq!(accepted.pdf_pages, Some(2));
    assert_eq!(accepted.printed.as_ref().unwrap().by, "tanaka");
    assert_eq!(accepted.accepted.as_ref().unwrap().by, "suzuki");
    let b = &apps[1];
    applications::cancel(
        &store,
        &city(),
        &b.id,
        CancelReason::Other,
        "山田 花子さんの申出",
        &act(NOW + 30),
    )
    .await
    .unwrap();

    let entries = store
        .audit_search(
            &city(),
            &AuditFilter {
                action_prefix: Some("application.".into()),
                ..Default::default()
            },
            1000,
        )
        .await
        .unwrap();
    let of = |number: &str| -> Vec<(String, String)> {
        entries
            .iter()
            .filter(|e| e.record.detail["application"] == number)
            .map(|e| (e.record.action.clone(), format!("{:?}", e.record.actor)))
            .collect()
    };
    assert_eq!(
        of(&a.number),
        vec![
            ("application.create".into(), "Staff(\"tanaka\")".into()),
            ("application.print".into(), "Staff(\"tanaka\")".into()),
            ("application.accept".into(), "Staff(\"suzuki\")".into()),
        ]
    );
    assert_eq!(of(&b.number).last().unwrap().0, "application.cancel");
    let cancel = entries
        .iter()
        .rev()
        .find(|e| e.record.action == "application.cancel")
        .unwrap();
    assert_eq!(cancel.record.detail["reason"], "other");
    assert_eq!(cancel.record.detail["from"], "draft");
    // No name, reading or address anywhere in the log.
    let log = serde_json::to_string(
        &store
            .audit_range(&city(), 1, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|e| &e.record)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for needle in ["山田", "ヤマダ", "梅田", "本町", "申出"] {
        assert!(!log.contains(needle), "the audit log holds {needle}");
    }
    // The chain written inside the application transactions verifies.
    let all = store.audit_range(&city(), 1, 10_000).await.unwrap();
    let report =
        kakanai_control_plane::audit::verify(&city(), all, &[], &Vec::<VerifyingKey>::new());
    assert!(report.is_ok(), "{report:?}");
}

fn juminhyo(copies: u32, fee: i64) -> CertificateItem {
    CertificateItem {
        certificate: "juminhyo".into(),
        options: vec!["続柄".into()],
        copies,
        fee,
    }
}

fn request(items: Vec<CertificateItem>, total: i64) -> CertificateRequest {
    let person = Person {
        name: Some("山田 太郎".into()),
        kana: Some("ヤマダ タロウ".into()),
        atena: Some("000000000101".into()),
        ..Person::default()
    };
    CertificateRequest {
        subject: person.clone(),
        requester: person,
        relationship: Relationship::Myself,
        purpose: "就職先への提出".into(),
        destination: "株式会社書無".into(),
        id_check: "マイナンバーカード".into(),
        items,
        fee_total: total,
    }
}

async fn certificate_requests_follow_the_catalogue(url: String) {
    let store = open(&url).await;
    let set = catalogue();
    let cat = set.for_date(Date::new(2026, 11, 27).unwrap()).unwrap();
    let v = visit(&store, "certificate").await;

    let ok = request(
        vec![
            juminhyo(2, 300),
            CertificateItem {
                certificate: "nozei_shomei".into(),
                options: vec!["軽自動車税（継続検査用）".into()],
                copies: 1,
                fee: 0,
            },
        ],
        600,
    );
    let apps =
        applications::create_certificate_request(&store, &city(), &v, &ok, cat, "書無市", NOW)
            .await
            .unwrap();
    // One request, two request forms: 住民票 and 税.
    let forms: Vec<&str> = apps.iter().map(|a| a.form.as_str()).collect();
    assert_eq!(forms, ["SHOMEI-JUMIN", "SHOMEI-ZEI"]);
    let app = &apps[0];
    assert_eq!(app.certificate.as_deref(), Some("juminhyo"));
    assert_eq!(app.subject.as_deref(), Some("000000000101"));
    let c = &app.data["certificate"];
    assert_eq!(c["fee_total"], 600);
    assert_eq!(c["relationship"], "本人");
    assert_eq!(c["purpose"], "就職先への提出");
    assert_eq!(c["items"][0]["name"], "住民票の写し（世帯全員・一部）");
    assert_eq!(c["items"][0]["copies"], 2);
    assert_eq!(app.data["office"]["department"], "市民課 住民記録係");
    assert_eq!(apps[1].certificate.as_deref(), Some("nozei_shomei"));
    assert_eq!(apps[1].data["certificate"]["fee_total"], 0);
    assert_eq!(apps[1].data["certificate"]["items"][0]["fee"], 0);

    let mut third_party_my_number = request(
        vec![CertificateItem {
            options: vec!["個人番号".into()],
            ..juminhyo(1, 300)
        }],
        300,
    );
    third_party_my_number.relationship = Relationship::ThirdParty;
    let mut no_purpose = request(vec![juminhyo(1, 300)], 300);
    no_purpose.purpose = "  ".into();
    let refused: Vec<(&str, CertificateRequest)> = vec![
        (
            "unknown certificate",
            request(
                vec![CertificateItem {
                    certificate: "passport".into(),
                    ..juminhyo(1, 300)
                }],
                300,
            ),
        ),
        (
            "unknown option",
            request(
                vec![CertificateItem {
                    options: vec!["写真付き".into()],
                    ..juminhyo(1, 300)
                }],
                300,
            ),
        ),
        ("0 copies", request(vec![juminhyo(0, 300)], 0)),
        ("21 copies", request(vec![juminhyo(21, 300)], 6300)),
        (
            "fee not the catalogue's",
            request(vec![juminhyo(1, 200)], 200),
        ),
        ("total not the sum", request(vec![juminhyo(2, 300)], 300)),
        (
            "free without the free option",
            request(
                vec![CertificateItem {
                    certificate: "nozei_shomei".into(),
                    options: vec![],
                    copies: 1,
                    fee: 0,
                }],
                0,
            ),
        ),
        ("個人番号 for a third party", third_party_my_number),
        ("no purpose", no_purpose),
        ("no items", request(vec![], 0)),
    ];
    for (what, r) in refused {
        let before = store
            .visit_applications(&city(), &v.id)
            .await
            .unwrap()
            .len();
        let log = audit_len(&store).await;
        let got =
            applications::create_certificate_request(&store, &city(), &v, &r, cat, "書無市", NOW)
                .await;
        assert!(
            matches!(got, Err(ApplicationError::Certificate(_))),
            "{what}: {got:?}"
        );
        assert_eq!(
            store
                .visit_applications(&city(), &v.id)
                .await
                .unwrap()
                .len(),
            before,
            "{what}: nothing stored"
        );
        assert_eq!(audit_len(&store).await, log, "{what}: nothing logged");
    }
}

/// Parses a batch's CSV for `form` in `encoding`: header and rows by 申請番号.
fn read_csv(
    dir: &Path,
    form: &str,
    encoding: Encoding,
) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let bytes = std::fs::read(dir.join(format!("{form}.csv"))).unwrap();
    let text = csvfile::decode(&bytes, encoding).unwrap();
    let table = csvfile::parse(&text).unwrap();
    let rows = table
        .records
        .into_iter()
        .map(|r| (r.fields[0].clone(), r.fields))
        .collect();
    (table.header, rows)
}

fn col<'a>(header: &[String], row: &'a [String], name: &str) -> &'a str {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    &row[i]
}

async fn check_round_trip(
    store: &Store,
    dir: &Path,
    encoding: Encoding,
    apps: &[ApplicationRecord],
    m: &ExportMapping,
) {
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.totals.applications, apps.len());
    for f in &manifest.files {
        let bytes = std::fs::read(dir.join(&f.name)).unwrap();
        assert_eq!(
            hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)),
            f.sha256,
            "{}",
            f.name
        );
    }
    let forms: std::collections::BTreeSet<&str> = apps.iter().map(|a| a.form.as_str()).collect();
    for form in forms {
        let (header, rows) = read_csv(dir, form, encoding);
        assert_eq!(header, m.header(form));
        let json: JsonFile =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{form}.json"))).unwrap())
                .unwrap();
        let of_form: Vec<&ApplicationRecord> = apps.iter().filter(|a| a.form == form).collect();
        assert_eq!(rows.len(), of_form.len(), "{form}: one row per application");
        for a in of_form {
            let stored = store.application(&city(), &a.id).await.unwrap().unwrap();
            let row = &rows[&a.number];
            // Every column reads back as the value the mapping takes from the data.
            assert_eq!(
                row,
                &m.row(form, &stored.data).unwrap(),
                "{form} {}",
                a.number
            );
            let j = json
                .applications
                .iter()
                .find(|j| j.number == a.number)
                .unwrap();
            assert_eq!(j.data, stored.data, "the JSON carries the data as filled");
            if form == "SHOMEI-JUMIN" {
                assert_eq!(col(&header, row, "請求者氏名"), "山田 太郎");
                assert_eq!(col(&header, row, "請求者との関係"), "本人");
                assert_eq!(col(&header, row, "使用目的"), "就職先への提出");
                assert_eq!(col(&header, row, "証明書1_ID"), "juminhyo");
                assert_eq!(col(&header, row, "証明書1_オプション"), "続柄");
                assert_eq!(col(&header, row, "証明書1_通数"), "2");
                assert_eq!(col(&header, row, "手数料合計"), "600");
            }
            if form == "JUKI-IDO" && a.procedure.as_deref() == Some("tennyu_todoke") {
                // Everything the core system needs to register the move.
                assert_eq!(col(&header, row, "異動事由コード"), "11");
                assert_eq!(col(&header, row, "異動日"), "2025-03-28");
                assert_eq!(col(&header, row, "届出日"), "2026-11-27");
                assert_eq!(col(&header, row, "届出人氏名"), "山田 太郎");
                assert_eq!(col(&header, row, "世帯主氏名"), "山田 太郎");
                assert_eq!(
                    col(&header, row, "前住所"),
                    "大阪府大阪市北区梅田一丁目1番1号"
                );
                assert_eq!(col(&header, row, "転入前市区町村"), "大阪府大阪市");
                assert_eq!(col(&header, row, "新住所"), "書無市本町二丁目3番4号");
                assert_eq!(col(&header, row, "新住所町字コード"), "012003");
                for (n, (name, kana, sex)) in NAMES.iter().enumerate() {
                    let n = n + 1;
                    assert_eq!(col(&header, row, &format!("異動者{n}_氏名")), *name);
                    assert_eq!(col(&header, row, &format!("異動者{n}_フリガナ")), *kana);
                    assert_eq!(
                        col(&header, row, &format!("異動者{n}_性別")),
                        if *sex == "男" { "1" } else { "2" }
                    );
                }
                assert_eq!(col(&header, row, "異動者2_続柄"), "妻");
                assert_eq!(col(&header, row, "異動者1_生年月日"), "1985-05-01");
                assert_eq!(col(&header, row, "異動者6_氏名"), "");
            }
        }
    }
}

async fn export_round_trips_in_utf8_and_cp932(url: String) {
    let store = open(&url).await;
    let out = tempfile::tempdir().unwrap();
    for (encoding, enc) in [("utf-8", Encoding::Utf8), ("cp932", Encoding::Cp932)] {
        let mut apps = move_in_drafts(&store, NAMES).await;
        let set = catalogue();
        let cat = set.for_date(Date::new(2026, 11, 27).unwrap()).unwrap();
        let v = visit(&store, "certificate").await;
        let certs = applications::create_certificate_request(
            &store,
            &city(),
            &v,
            &request(vec![juminhyo(2, 300)], 600),
            cat,
            "書無市",
            NOW,
        )
        .await
        .unwrap();
        apps.extend(certs);
        // One 住民異動届 carries all five movers; other forms are per person.
        let juki: Vec<_> = apps
            .iter()
            .filter(|a| a.procedure.as_deref() == Some("tennyu_todoke"))
            .collect();
        assert_eq!(juki.len(), 1);
        assert_eq!(juki[0].data["event"]["movers"].as_array().unwrap().len(), 5);
        print_and_accept(&store, &apps).await;
        let m = mapping(encoding, "refuse");
        let report = export::export(&store, &city(), &m, out.path(), None, NOW + 60_000)
            .await
            .unwrap();
        assert!(report.held_back.is_empty(), "{report}");
        let dir = report.dir.clone().unwrap();
        let batch = report.batch.clone().unwrap();
        assert_eq!(dir, out.path().join(&batch));
        check_round_trip(&store, &dir, enc, &apps, &m).await;
        for a in &apps {
            let s = store.application(&city(), &a.id).await.unwrap().unwrap();
            assert_eq!(s.state, ApplicationState::Exported);
            assert_eq!(s.export_batch.as_deref(), Some(batch.as_str()));
        }
        if enc == Encoding::Cp932 {
            // Really CP932: not valid UTF-8.
            let bytes = std::fs::read(dir.join("JUKI-IDO.csv")).unwrap();
            assert!(std::str::from_utf8(&bytes).is_err());
        }
    }
    // Nothing half-written is left behind.
    for e in std::fs::read_dir(out.path()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.starts_with('.'), "left over: {name}");
    }
}

fn files_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    for e in walk(dir) {
        all.insert(e.clone(), std::fs::read(&e).unwrap());
    }
    all
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

async fn exporting_twice_writes_nothing_and_again_rewrites(url: String) {
    let store = open(&url).await;
    let out = tempfile::tempdir().unwrap();
    let apps = move_in_drafts(&store, NAMES).await;
    print_and_accept(&store, &apps).await;
    let m = ExportMapping::reference();
    let first = export::export(&store, &city(), &m, out.path(), None, NOW + 60_000)
        .await
        .unwrap();
    let batch = first.batch.clone().unwrap();
    let written = files_of(out.path());
    let log = audit_len(&store).await;

    let second = export::export(&store, &city(), &m, out.path(), None, NOW + 120_000)
        .await
        .unwrap();
    assert_eq!(second.batch, None, "nothing accepted is left");
    assert_eq!(files_of(out.path()), written, "nothing new written");
    assert_eq!(audit_len(&store).await, log);

    // Someone deletes a file by mistake; --again writes the batch again, same content.
    std::fs::remove_file(out.path().join(&batch).join("JUKI-IDO.csv")).unwrap();
    let again = export::export_again(
        &store,
        &city(),
        &m,
        out.path(),
        &batch,
        &Actor::Admin("it".into()),
        NOW + 180_000,
    )
    .await
    .unwrap();
    assert_eq!(again.batch.as_deref(), Some(batch.as_str()));
    let rewritten = files_of(out.path());
    assert_eq!(rewritten.len(), written.len());
    for (path, bytes) in &written {
        if path.file_name().unwrap() != "manifest.json" {
            assert_eq!(
                rewritten.get(path),
                Some(bytes),
                "{path:?} rewritten identically"
            );
        }
    }
    let manifest: Manifest =
        serde_json::from_slice(&rewritten[&out.path().join(&batch).join("manifest.json")]).unwrap();
    assert_eq!(manifest.batch, batch);
    assert_eq!(manifest.totals.applications, apps.len());
    for a in &apps {
        let s = store.application(&city(), &a.id).await.unwrap().unwrap();
        assert_eq!(
            s.state,
            ApplicationState::Exported,
            "--again changes no state"
        );
    }
    assert_eq!(audit_len(&store).await, log + 1, "the re-export is audited");
    let unknown = export::export_again(
        &store,
        &city(),
        &m,
        out.path(),
        "no-such-batch",
        &Actor::System,
        NOW,
    )
    .await;
    assert!(matches!(unknown, Err(export::ExportError::UnknownBatch(_))));
}

async fn failed_write_leaves_applications_accepted(url: String) {
    let store = open(&url).await;
    let apps = move_in_drafts(&store, NAMES).await;
    print_and_accept(&store, &apps).await;
    let tmp = tempfile::tempdir().unwrap();
    // A read-only export directory. The tests run as root, which ignores mode bits,
    // so the directory sits under a regular file: no one can write there.
    let blocker = tmp.path().join("share");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let out = blocker.join("export");
    let log = audit_len(&store).await;
    let got = export::export(
        &store,
        &city(),
        &ExportMapping::reference(),
        &out,
        None,
        NOW + 60_000,
    )
    .await;
    assert!(
        matches!(got, Err(export::ExportError::Io { .. })),
        "{got:?}"
    );
    for a in &apps {
        let s = store.application(&city(), &a.id).await.unwrap().unwrap();
        assert_eq!(s.state, ApplicationState::Accepted);
        assert_eq!(s.export_batch, None);
    }
    assert_eq!(audit_len(&store).await, log);
    // And a mode-555 directory, which refuses a non-root user.
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&ro).unwrap().permissions(),
        0o555,
    );
    std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    if !is_root {
        let got = export::export(
            &store,
            &city(),
            &ExportMapping::reference(),
            &ro,
            None,
            NOW + 60_000,
        )
        .await;
        assert!(
            matches!(got, Err(export::ExportError::Io { .. })),
            "{got:?}"
        );
    }
    // Once the location is writable the same applications go out.
    let good = tmp.path().join("good");
    let report = export::export(
        &store,
        &city(),
        &ExportMapping::reference(),
        &good,
        None,
        NOW + 120_000,
    )
    .await
    .unwrap();
    assert_eq!(report.manifest.unwrap().totals.applications, apps.len());
}

async fn cp932_gaps_are_held_back_or_substituted(url: String) {
    let store = open(&url).await;
    let out = tempfile::tempdir().unwrap();
    // 邉 with an IVS selector (Moji_Joho) and 𠮷 (outside the BMP, no CP932 code).
    let mut names = NAMES.to_vec();
    names[3] = ("渡邉\u{E0111} 翔太", "ワタナベ ショウタ", "男");
    names[4] = ("𠮷田 陽菜", "ヨシダ ヒナ", "女");
    let apps = move_in_drafts(&store, &names).await;
    print_and_accept(&store, &apps).await;

    let report = export::export(
        &store,
        &city(),
        &mapping("cp932", "refuse"),
        out.path(),
        None,
        NOW + 60_000,
    )
    .await
    .unwrap();
    let held: Vec<&str> = report
        .held_back
        .iter()
        .map(|h| h.application.as_str())
        .collect();
    let juki = apps
        .iter()
        .find(|a| a.procedure.as_deref() == Some("tennyu_todoke"))
        .unwrap();
    assert!(held.contains(&juki.number.as_str()), "{report}");
    let h = report
        .held_back
        .iter()
        .find(|h| h.application == juki.number)
        .unwrap();
    assert_eq!(
        h.column, "異動者4_氏名",
        "the first column that cannot be written"
    );
    assert!(
        !report.to_string().contains("渡邉"),
        "the report names no one"
    );
    let manifest = report.manifest.unwrap();
    assert_eq!(manifest.held_back, report.held_back);
    let s = store.application(&city(), &juki.id).await.unwrap().unwrap();
    assert_eq!(
        s.state,
        ApplicationState::Accepted,
        "held back, still accepted"
    );
    // Applications with writable data went out.
    assert!(manifest.totals.applications > 0);
    assert_eq!(
        manifest.totals.applications + report.held_back.len(),
        apps.len()
    );

    // Substitution, flagged in the manifest.
    let report = export::export(
        &store,
        &city(),
        &mapping("cp932", "substitute"),
        out.path(),
        None,
        NOW + 120_000,
    )
    .await
    .unwrap();
    assert!(report.held_back.is_empty());
    let dir = report.dir.unwrap();
    let (header, rows) = read_csv(&dir, "JUKI-IDO", Encoding::Cp932);
    let row = &rows[&juki.number];
    assert_eq!(col(&header, row, "異動者4_氏名"), "渡邉 翔太");
    assert_eq!(col(&header, row, "異動者5_氏名"), "〓田 陽菜");
    let manifest = report.manifest.unwrap();
    let flagged: Vec<&str> = manifest
        .substitutions
        .iter()
        .filter(|s| s.application == juki.number)
        .map(|s| s.column.as_str())
        .collect();
    assert!(
        flagged.contains(&"異動者4_氏名") && flagged.contains(&"異動者5_氏名"),
        "{flagged:?}"
    );
    // The JSON keeps the exact characters.
    let json: JsonFile =
        serde_json::from_slice(&std::fs::read(dir.join("JUKI-IDO.json")).unwrap()).unwrap();
    let j = json
        .applications
        .iter()
        .find(|j| j.number == juki.number)
        .unwrap();
    assert_eq!(j.data["event"]["movers"][3]["name"], "渡邉\u{E0111} 翔太");
}

async fn my_number_is_stored_sealed_only(url: String) {
    let store = open(&url).await;
    let (input, det) = scenario();
    let v = visit(&store, "move_in").await;
    let key = kakanai_control_plane::residents::MyNumberKey::new(&[9; 32]);
    let numbers: BTreeMap<String, String> = [("p1".to_owned(), "123456789018".to_owned())].into();
    let forms = ["JUKI-IDO"];
    let my = applications::MyNumbers {
        key: &key,
        forms: &forms,
        numbers: &numbers,
    };
    let apps = applications::create_for_visit(
        &store,
        &city(),
        &v,
        &det,
        &visit_data(&input, NAMES),
        Some(&my),
        NOW,
    )
    .await
    .unwrap();
    let juki = apps
        .iter()
        .find(|a| a.procedure.as_deref() == Some("tennyu_todoke"))
        .unwrap();
    let stored = store.application(&city(), &juki.id).await.unwrap().unwrap();
    let sealed = stored.my_number_sealed.as_deref().unwrap();
    assert!(!sealed.contains("123456789018"));
    assert!(!stored.data.to_string().contains("123456789018"));
    assert_eq!(
        applications::open_my_number(&key, &city(), &stored).as_deref(),
        Some("123456789018")
    );
    // Bound to its application: the same sealed text on another one does not open.
    let mut other = store
        .application(&city(), &apps.iter().find(|a| a.id != juki.id).unwrap().id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        other.my_number_sealed, None,
        "only the forms asked for keep one"
    );
    other.my_number_sealed = Some(sealed.to_owned());
    assert_eq!(applications::open_my_number(&key, &city(), &other), None);
    // Neither the audit log nor the record's Debug shows it.
    let log = serde_json::to_string(
        &store
            .audit_range(&city(), 1, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|e| &e.record)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!log.contains("123456789018") && !log.contains(sealed));
    assert!(!format!("{stored:?}").contains(sealed));
}
