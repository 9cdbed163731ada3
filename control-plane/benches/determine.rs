//! Determination throughput and latency for a 6-person household moving in (the
//! heaviest common case: every member is a subject, most areas apply).
//!
//! `cargo bench -p kakanai-control-plane --bench determine`
#![allow(clippy::unwrap_used, clippy::expect_used)]
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kakanai_control_plane::rules::{determine, CatalogueSet, DeterminationInput};
use serde_json::json;

fn six_person_move_in() -> DeterminationInput {
    let m = |id: &str, rel: &str, birth: &str, extra: serde_json::Value| {
        let mut v = json!({"id": id, "relationship": rel, "birth_date": birth});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    serde_json::from_value(json!({
        "event": {"kind": "move_in", "date": "2025-06-02", "subjects": ["p1","p2","p3","p4","p5","p6"],
                  "from": {"prefecture": "大阪府", "municipality": "大阪市"},
                  "to": {"prefecture": "兵庫県", "municipality": "西宮市", "elementary_district": "第二小学校区", "junior_high_district": "第一中学校区"},
                  "planned_move_out_date": "2025-05-30"},
        "household": {"members": [
            m("p1", "世帯主", "1980-05-01", json!({"insurance": "kokuho", "pension_category": 1, "my_number_card": true, "benefits": ["child_allowance"], "owns_dog": true})),
            m("p2", "妻", "1982-09-15", json!({"insurance": "kokuho", "pension_category": 1, "pregnant": true})),
            m("p3", "長女", "2014-08-20", json!({"insurance": "kokuho", "disability_handbooks": ["intellectual"], "benefits": ["special_child_rearing_allowance"]})),
            m("p4", "長男", "2011-11-01", json!({"insurance": "kokuho"})),
            m("p5", "次女", "2021-04-10", json!({"insurance": "kokuho"})),
            m("p6", "母", "1948-02-02", json!({"insurance": "koki", "care_level": "care2"}))
        ]}
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let set = CatalogueSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog")).unwrap();
    let input = six_person_move_in();
    let d = determine(&set, &input).unwrap();
    assert!(d.persons.iter().map(|p| p.procedures.len()).sum::<usize>() > 20);

    // Latency distribution (p50/p99) over single determinations, printed once.
    let mut samples: Vec<Duration> = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(determine(&set, std::hint::black_box(&input)).unwrap());
            t.elapsed()
        })
        .collect();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "determine (6 persons): p50 {:?}, p99 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        samples[samples.len() - 1]
    );

    let mut g = c.benchmark_group("determine");
    g.throughput(Throughput::Elements(1));
    g.bench_function("six_person_move_in", |b| {
        b.iter(|| determine(&set, std::hint::black_box(&input)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
