//! Applications on SQLite: creating the drafts of a visit, one state transition with
//! its audit entry, and the export of a day's applications (CSV in CP932 and UTF-8,
//! JSON, manifest, written atomically).
//!
//! `cargo bench -p kakanai-control-plane --bench applications` — one-shot figures
//! first (a family-of-five move-in visit's drafts, an export batch of
//! `KAKANAI_BENCH_APPLICATIONS` applications, default 1,000), then criterion groups.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // criterion_group! makes an undocumented fn

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use kakanai_control_plane::applications::export::{export, export_again, ExportMapping};
use kakanai_control_plane::applications::fill::{EventDetails, Person, VisitData};
use kakanai_control_plane::applications::{self, Act, ApplicationRecord, Transition};
use kakanai_control_plane::model::{Actor, TenantId};
use kakanai_control_plane::rules::{self, CatalogueSet, Date, Determination, DeterminationInput};
use kakanai_control_plane::store::{Store, Tenant};

const NOW: i64 = 1_795_741_200_000;

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    store: Store,
    tenant: TenantId,
    det: Determination,
    data: VisitData,
}

fn scenario() -> (DeterminationInput, Determination) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let set = CatalogueSet::load(&root.join("catalog")).unwrap();
    let text =
        std::fs::read_to_string(root.join("tests/scenarios/move_in_family_school.input.json"))
            .unwrap();
    let input: DeterminationInput = serde_json::from_str(&text).unwrap();
    let det = rules::determine(&set, &input).unwrap();
    (input, det)
}

fn setup() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
    let tenant = TenantId::new("city-a").unwrap();
    let store = rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        store
            .create_tenant(
                &Tenant {
                    id: tenant.clone(),
                    name: "書無市".into(),
                },
                NOW,
            )
            .await
            .unwrap();
        store
    });
    let (input, det) = scenario();
    let names = [
        "山田 太郎",
        "山田 花子",
        "山田 美咲",
        "山田 翔太",
        "山田 陽菜",
    ];
    let people: BTreeMap<String, Person> = input
        .household
        .members
        .iter()
        .zip(names)
        .map(|(m, n)| {
            (
                m.id.clone(),
                Person {
                    name: Some(n.into()),
                    kana: Some("ヤマダ".into()),
                    birth_date: Some(m.birth_date.to_string()),
                    sex: Some("男".into()),
                    relationship: Some(m.relationship.clone()),
                    address: Some("大阪府大阪市北区梅田一丁目1番1号".into()),
                    atena: None,
                },
            )
        })
        .collect();
    let data = VisitData {
        city: "書無市".into(),
        created: Date::new(2026, 11, 27).unwrap(),
        event: EventDetails {
            new_address: Some("書無市本町二丁目3番4号".into()),
            new_address_code: Some("012003".into()),
            previous_municipality: Some("大阪府大阪市".into()),
            ..EventDetails::default()
        },
        people,
        applicant: Some("p1".into()),
        head: Some("p1".into()),
        household_address: Some("書無市本町二丁目3番4号".into()),
        answers: serde_json::Map::new(),
    };
    Fixture {
        _dir: dir,
        rt,
        store,
        tenant,
        det,
        data,
    }
}

impl Fixture {
    async fn visit_drafts(&self) -> Vec<ApplicationRecord> {
        let v = applications::start_visit(
            &self.store,
            &self.tenant,
            "counter-1",
            "tanaka",
            "move_in",
            NOW,
        )
        .await
        .unwrap();
        applications::create_for_visit(
            &self.store,
            &self.tenant,
            &v,
            &self.det,
            &self.data,
            None,
            NOW,
        )
        .await
        .unwrap()
    }

    async fn accepted(&self, at_least: usize) -> usize {
        let act = Act::staff_at("tanaka", "counter-1", NOW);
        let mut n = 0;
        while n < at_least {
            for a in self.visit_drafts().await {
                applications::record_printed(&self.store, &self.tenant, &a.id, [1; 32], 1, &act)
                    .await
                    .unwrap();
                applications::accept_by_number(&self.store, &self.tenant, &a.number, &act)
                    .await
                    .unwrap();
                n += 1;
            }
        }
        n
    }
}

fn mapping(encoding: &str) -> ExportMapping {
    ExportMapping::from_toml(&ExportMapping::reference_toml().replace(
        "encoding = \"cp932\"",
        &format!("encoding = \"{encoding}\""),
    ))
    .unwrap()
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn one_shot(f: &Fixture) -> String {
    let count: usize = std::env::var("KAKANAI_BENCH_APPLICATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let t = Instant::now();
    let drafts = f.rt.block_on(f.visit_drafts());
    println!(
        "create_for_visit (family of five, move-in): {} drafts in {:.2?}",
        drafts.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let n = f.rt.block_on(f.accepted(count));
    println!(
        "{n} applications created, printed and accepted in {:.2?}",
        t.elapsed()
    );
    let out = f._dir.path().join("export");
    let t = Instant::now();
    let report =
        f.rt.block_on(export(
            &f.store,
            &f.tenant,
            &mapping("cp932"),
            &out,
            None,
            NOW + 1,
        ))
        .unwrap();
    let batch = report.batch.unwrap();
    let m = report.manifest.unwrap();
    println!(
        "export (CP932 + JSON): {} applications, {} files, {} bytes in {:.2?}",
        m.totals.applications,
        m.totals.files,
        dir_size(&out.join(&batch)),
        t.elapsed()
    );
    let t = Instant::now();
    f.rt.block_on(export_again(
        &f.store,
        &f.tenant,
        &mapping("utf-8"),
        &out,
        &batch,
        &Actor::System,
        NOW + 2,
    ))
    .unwrap();
    println!(
        "export --again (UTF-8 + JSON) of the same batch: {} bytes in {:.2?}",
        dir_size(&out.join(&batch)),
        t.elapsed()
    );
    batch
}

fn benches(c: &mut Criterion) {
    let f = setup();
    let batch = one_shot(&f);
    let out = f._dir.path().join("export");
    let mut g = c.benchmark_group("applications");
    g.sample_size(10);
    let cp932 = mapping("cp932");
    g.bench_function("export_again_batch_cp932", |b| {
        b.iter(|| {
            f.rt.block_on(export_again(
                &f.store,
                &f.tenant,
                &cp932,
                &out,
                &batch,
                &Actor::System,
                NOW,
            ))
            .unwrap()
        })
    });
    g.sample_size(30);
    g.bench_function("transition_accept_with_audit", |b| {
        b.iter_batched(
            || {
                f.rt.block_on(async {
                    let a = f.visit_drafts().await.remove(0);
                    let act = Act::staff_at("tanaka", "counter-1", NOW);
                    applications::record_printed(&f.store, &f.tenant, &a.id, [1; 32], 1, &act)
                        .await
                        .unwrap();
                    a
                })
            },
            |a| {
                f.rt.block_on(f.store.transition_application(
                    &f.tenant,
                    &a.id,
                    &Transition::Accept,
                    &Actor::Staff("tanaka".into()),
                    &kakanai_control_plane::model::Place::Internal,
                    NOW,
                ))
                .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("create_for_visit_family_of_five", |b| {
        b.iter(|| f.rt.block_on(f.visit_drafts()))
    });
    g.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
