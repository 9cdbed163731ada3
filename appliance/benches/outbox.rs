//! Durable outbox throughput: messages queued per second when each commit (fsync)
//! carries one message, and when a burst is queued as one batch.
//! Run with `cargo bench -p kakanai-appliance --bench outbox`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kakanai_appliance::store::{ApplianceStore, OutboxItem};

fn items(start: u64, n: u64) -> Vec<OutboxItem> {
    (start..start + n)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&i.to_be_bytes());
            OutboxItem {
                message_id: id,
                topic: "kakanai/v1/city-a/dev/counter-01/up/device-state".into(),
                signed: vec![0x5a; 300],
                enqueued_ms: 0,
            }
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = ApplianceStore::open(&dir.path().join("bench.redb")).unwrap();
    let mut next = 0u64;
    let mut g = c.benchmark_group("outbox_durable");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    g.bench_function("enqueue_1_per_commit", |b| {
        b.iter_batched(
            || {
                next += 1;
                items(next * 1000, 1)
            },
            |batch| store.enqueue(&batch).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("enqueue_100_per_commit", |b| {
        b.iter_batched(
            || {
                next += 1;
                items(next * 1000, 100)
            },
            |batch| store.enqueue(&batch).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(outbox, benches);
criterion_main!(outbox);
