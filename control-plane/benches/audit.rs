//! Audit log throughput: appending (one chain hash per entry) and streamed
//! verification of 1,000,000 entries.
//!
//! `cargo bench -p kakanai-control-plane --bench audit`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // criterion_group! makes an undocumented fn

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kakanai_control_plane::audit::chain::{entry_hash, GENESIS, HASH_LEN};
use kakanai_control_plane::audit::{verify, AuditEntry, Checkpoint};
use kakanai_control_plane::model::{Actor, AuditRecord, Place, TenantId};
use kakanai_protocol::keys::SigningKey;

const MILLION: u64 = 1_000_000;
const T0: i64 = 1_743_433_200_000;

/// A typical record: staff at a counter viewing a resident.
fn record(i: u64) -> AuditRecord {
    AuditRecord {
        tenant: "city-a".into(),
        at_ms: T0 + i as i64 * 100,
        actor: Actor::Staff("s001".into()),
        action: "rpc:certificate.request".into(),
        resident: Some(format!("{:010}", i % 100_000)),
        place: Place::Appliance("counter-01".into()),
        outcome: "ok".into(),
        detail: serde_json::json!({"form": "juminhyo", "copies": 1, "fee": 300}),
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1));
    let mut prev = GENESIS;
    let mut seq = 0u64;
    group.bench_function("append (hash one entry)", |b| {
        b.iter_batched(
            // The record is built outside the measurement: only the hash is timed.
            || record(7),
            |r| {
                seq += 1;
                let e = AuditEntry::new(seq, &prev, r);
                prev = e.hash;
                black_box(e)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn verify_million(c: &mut Criterion) {
    // Only the hashes are kept (32 MB); records are rebuilt as the verifier pulls
    // them, as rows would stream from the database.
    let mut hashes: Vec<[u8; HASH_LEN]> = Vec::with_capacity(MILLION as usize);
    let mut prev = GENESIS;
    for seq in 1..=MILLION {
        prev = entry_hash(seq, &prev, &record(seq));
        hashes.push(prev);
    }
    let key = SigningKey::from_seed(&[1; 32]).unwrap();
    let tenant = TenantId::new("city-a").unwrap();
    // Hourly checkpoints at ~36,000 entries an hour.
    let cps: Vec<Checkpoint> = (1..=MILLION / 36_000)
        .map(|i| {
            let seq = i * 36_000;
            Checkpoint::sign(&tenant, seq, &hashes[seq as usize - 1], T0, &key)
        })
        .collect();
    let keys = vec![key.verifying_key()];

    let mut group = c.benchmark_group("audit");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(MILLION));
    group.bench_function("verify 1,000,000 entries (streamed)", |b| {
        b.iter(|| {
            let entries = (1..=MILLION).map(|seq| AuditEntry {
                seq,
                record: record(seq),
                hash: hashes[seq as usize - 1],
            });
            let report = verify(&tenant, entries, &cps, keys.as_slice());
            assert!(report.is_ok());
            black_box(report)
        })
    });
    group.finish();
}

criterion_group!(benches, append, verify_million);
criterion_main!(benches);
