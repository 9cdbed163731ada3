//! Per-message costs of the protocol on a 1 KiB message: encode, decode, sign,
//! verify, replay check, and the receiver's whole path (`Opener::open`: verify +
//! decode + topic check + replay window). Run with `cargo bench -p kakanai-protocol`.
//! Goal: `open` ≤ 60 µs on one core of the project's machines.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kakanai_protocol::catalogue::{Body, Ping, RpcRequest};
use kakanai_protocol::cose;
use kakanai_protocol::replay::ReplayGuard;
use kakanai_protocol::seal::{seal, Opener};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{Envelope, KeyId, Kind, SigningKey, Topic};

fn benches(c: &mut Criterion) {
    let key = SigningKey::from_seed(&[7; 32]).unwrap();
    let public = key.verifying_key();
    let kid = KeyId::of_key(&public);
    let topic = Topic::up(
        &Ident::new("city-a").unwrap(),
        &Ident::new("counter-01").unwrap(),
        Kind::RpcRequest,
    )
    .unwrap();
    let aad = topic.to_aad();
    let text = "x".repeat(950);
    let env = Envelope::new(
        1,
        1_795_000_000_000,
        Body::RpcRequest(RpcRequest::new::<Ping>(&text).unwrap()),
    )
    .unwrap();
    let payload = env.encode().unwrap();
    let signed = seal(&key, &kid, &topic, &env).unwrap();
    assert!(
        (1000..1100).contains(&payload.len()),
        "payload {} bytes",
        payload.len()
    );

    let mut g = c.benchmark_group("message_1KiB");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| b.iter(|| black_box(&env).encode().unwrap()));
    g.bench_function("decode", |b| {
        b.iter(|| Envelope::decode(black_box(&payload)).unwrap())
    });
    g.bench_function("sign", |b| {
        b.iter(|| cose::sign(&key, &kid, &aad, black_box(payload.clone())).unwrap())
    });
    g.bench_function("verify", |b| {
        b.iter(|| cose::verify(black_box(&signed), &aad, |_| Some(public)).unwrap())
    });
    g.bench_function("seal", |b| {
        b.iter(|| seal(&key, &kid, &topic, black_box(&env)).unwrap())
    });
    g.bench_function("replay_check", |b| {
        let mut guard = ReplayGuard::new();
        let mut seq = 0u64;
        b.iter(|| {
            // Mostly in order with some reordering, as after a reconnect.
            seq += 1;
            let s = if seq.is_multiple_of(8) { seq + 3 } else { seq };
            let _ = black_box(guard.accept(&kid, s));
        })
    });
    g.bench_function("open", |b| {
        b.iter_batched(
            Opener::new,
            |mut opener| {
                opener
                    .open(black_box(&signed), &topic, |_, _| Some(public))
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(protocol, benches);
criterion_main!(protocol);
