//! The counter flows' RPCs (issue 9) over a synthetic city on SQLite: what staff wait
//! for between putting a card on the reader and seeing the filled screen — the
//! moving-in lookup of the card and the determination of the family's 転入 — and
//! the visit's creation (one draft per form, the guide kept).
//!
//! `cargo bench -p kakanai-control-plane --bench counter` — the city has the
//! reference size (157,508 residents) unless `KAKANAI_BENCH_RESIDENTS` says
//! otherwise. Latency percentiles (p50 / p95 / p99) of each method through the
//! `Dispatcher` are printed first; the criterion groups that follow track them.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // criterion_group! makes an undocumented fn

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kakanai_control_plane::counter::CounterRpc;
use kakanai_control_plane::model::{Ident, TenantId};
use kakanai_control_plane::residents::gen::write_demo;
use kakanai_control_plane::residents::{gen_city, import_dir, ImportOptions, Mapping, MyNumberKey};
use kakanai_control_plane::rpc::{Dispatcher, RpcContext, StaffSession};
use kakanai_control_plane::rules::catalog::read_files;
use kakanai_control_plane::store::{Store, Tenant};
use kakanai_protocol::counter::{
    CreateVisitRequest, EventKind, MovingInResponse, PersonRef, VisitMember, VisitPlan,
};
use kakanai_protocol::personal::{CardFace, PersonalText, Sex};

/// 2025-04-08 10:00 JST, a week after the city's reference date.
const NOW: i64 = 1_744_074_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    d: Dispatcher,
    ctx: RpcContext,
    cards: Vec<CardFace>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn card(path: &Path) -> CardFace {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    CardFace {
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
    }
}

fn setup() -> Fixture {
    let residents: usize = std::env::var("KAKANAI_BENCH_RESIDENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(kakanai_control_plane::residents::gen::REFERENCE_RESIDENTS);
    let dir = tempfile::tempdir().unwrap();
    let city = dir.path().join("city");
    gen_city(&city, 1, residents).unwrap();
    let demo = write_demo(&city, 1, residents).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let store = rt.block_on(Store::open(&url)).unwrap();
    let tenant = TenantId::new("bench-city").unwrap();
    rt.block_on(store.create_tenant(
        &Tenant {
            id: tenant.clone(),
            name: "書無市".into(),
        },
        0,
    ))
    .unwrap();
    let options = ImportOptions {
        my_number_key: Some(MyNumberKey::new(&[1; 32])),
        now_ms: 0,
    };
    let t = Instant::now();
    let report = rt
        .block_on(import_dir(
            &store,
            &tenant,
            &city,
            &Mapping::reference(),
            &options,
        ))
        .unwrap();
    assert!(report.all_applied(), "{report}");
    println!(
        "city: {residents} residents imported in {:.2?}",
        t.elapsed()
    );
    let files = read_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog")).unwrap();
    rt.block_on(store.install_catalogue_versions(&tenant, &files, "bench", 0))
        .unwrap();
    let mut d = Dispatcher::new();
    CounterRpc::new(store, Some(MyNumberKey::new(&[1; 32]))).register(&mut d);
    let device = Ident::new("counter-01").unwrap();
    let ctx = RpcContext {
        tenant,
        device: device.clone(),
        session: Some(StaffSession {
            session_id: "s".into(),
            staff_id: "bench".into(),
            device,
            permissions: [
                "application.create",
                "application.view",
                "procedure.determine",
                "resident.view",
            ]
            .iter()
            .map(|p| (*p).to_owned())
            .collect(),
        }),
        now_ms: NOW,
    };
    let cards = demo
        .files
        .iter()
        .filter(|f| f.starts_with("family-"))
        .map(|f| card(&demo.dir.join(f)))
        .collect();
    Fixture {
        _dir: dir,
        rt,
        d,
        ctx,
        cards,
    }
}

fn call<P: serde::Serialize, R: serde::de::DeserializeOwned>(
    f: &Fixture,
    method: &str,
    p: &P,
) -> R {
    let v =
        f.rt.block_on(f.d.dispatch(&f.ctx, method, ciborium::Value::serialized(p).unwrap()))
            .unwrap();
    v.deserialized().unwrap()
}

fn plan(found: &MovingInResponse) -> VisitPlan {
    VisitPlan {
        event: EventKind::MoveIn,
        event_date: found.family[0].move_date.clone().unwrap(),
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
    }
}

fn latencies(f: &Fixture) -> VisitPlan {
    let n = 200;
    let (mut lookup, mut determine, mut both, mut create) = (vec![], vec![], vec![], vec![]);
    let mut last = None;
    for i in 0..n {
        let face = &f.cards[i % f.cards.len()];
        let t = Instant::now();
        let found: MovingInResponse = call(f, "counter.lookup-moving-in", face);
        let l = t.elapsed();
        let p = plan(&found);
        let t = Instant::now();
        let _: serde_json::Value = call(f, "counter.determine", &p);
        let dt = t.elapsed();
        lookup.push(l);
        determine.push(dt);
        both.push(l + dt);
        if i < 50 {
            let t = Instant::now();
            let _: serde_json::Value = call(
                f,
                "counter.create-visit",
                &CreateVisitRequest {
                    plan: p.clone(),
                    adjustments: vec![],
                },
            );
            create.push(t.elapsed());
        }
        last = Some(p);
    }
    for (what, v) in [
        ("counter.lookup-moving-in", &mut lookup),
        ("counter.determine (family of four, 転入)", &mut determine),
        ("card → determination (lookup + determine)", &mut both),
        ("counter.create-visit (family of four)", &mut create),
    ] {
        v.sort();
        println!(
            "{what}: n={} p50={:.2?} p95={:.2?} p99={:.2?}",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.95),
            percentile(v, 0.99)
        );
    }
    last.unwrap()
}

fn bench(c: &mut Criterion) {
    let f = setup();
    let p = latencies(&f);
    c.bench_function("counter/lookup_moving_in", |b| {
        b.iter(|| {
            let _: MovingInResponse = call(&f, "counter.lookup-moving-in", &f.cards[0]);
        })
    });
    c.bench_function("counter/determine_move_in_family", |b| {
        b.iter(|| {
            let _: serde_json::Value = call(&f, "counter.determine", &p);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
