//! What the in-memory log ring (`kakanai_appliance::ops`) costs: one log event
//! through the `tracing` layer into a full ring, and answering a `logs` operation
//! for the whole ring (select, fit to one message, seal and sign it as the link does).
//! Run with `cargo bench -p kakanai-appliance --bench log_ring`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kakanai_appliance::ops::{LogRing, DEFAULT_LOG_LINES};
use kakanai_protocol::catalogue::{
    fit_log_excerpt, Body, OperationResult, OperationStatus, MAX_LOG_LINES,
};
use kakanai_protocol::seal::seal;
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{Envelope, KeyId, Kind, MessageId, SigningKey, Topic};
use tracing_subscriber::layer::SubscriberExt as _;

fn benches(c: &mut Criterion) {
    let ring = LogRing::new(DEFAULT_LOG_LINES);
    let subscriber = tracing_subscriber::registry().with(ring.layer());
    let dispatch = tracing::Dispatch::new(subscriber);
    // A full ring of lines like the daemon's.
    tracing::dispatcher::with_default(&dispatch, || {
        for n in 0..DEFAULT_LOG_LINES {
            tracing::info!(event = "acked", n, "link event");
        }
    });

    let mut g = c.benchmark_group("log_ring");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_event_into_a_full_ring", |b| {
        tracing::dispatcher::with_default(&dispatch, || {
            b.iter(|| {
                tracing::warn!(
                    error = "connection reset by peer",
                    attempt = 3,
                    "link to the broker lost"
                )
            });
        });
    });
    g.finish();

    let key = SigningKey::from_seed(&[0x11; 32]).unwrap();
    let kid = KeyId::of_key(&key.verifying_key());
    let topic = Topic::up(
        &Ident::new("city-a").unwrap(),
        &Ident::new("counter-01").unwrap(),
        Kind::OperationResult,
    )
    .unwrap();
    let mut g = c.benchmark_group("logs_operation");
    g.sample_size(30);
    g.bench_function("whole_ring_to_a_signed_result", |b| {
        b.iter(|| {
            let (lines, lost) = ring.recent(None, MAX_LOG_LINES as usize);
            let (lines, cut) = fit_log_excerpt(lines);
            let body = Body::OperationResult(OperationResult {
                command_id: MessageId::from_bytes([1; 16]),
                status: OperationStatus::Done,
                logs: lines,
                truncated: lost || cut,
                message: String::new(),
            });
            let env = Envelope::new(1, 0, body).unwrap();
            seal(&key, &kid, &topic, &env).unwrap().len()
        });
    });
    g.finish();
}

criterion_group!(log_ring, benches);
criterion_main!(log_ring);
