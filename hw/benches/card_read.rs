//! The software time to read a card through the real PC/SC stack: pcscd with the
//! vpcd driver and our virtual card (`kakanai_hw::vcard`) answering over vpcd's
//! socket. Each iteration is a whole read as the appliance does it: connect
//! exclusively, select, retry query, verify, read, power down.
//! Run with `cargo bench -p kakanai-hw --bench card_read`. Goal: ≤ 10 ms per read.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use kakanai_hw::card::{self, link, Credential, ReadScope, ReaderEvent, ReaderWatcher};
use kakanai_hw::vcard::{VirtualCard, VpcdLink};
use kakanai_test_peers::Pcscd;

fn benches(c: &mut Criterion) {
    let pcscd = Pcscd::start().expect("pcscd with vpcd");
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/mynumber-sample.json");
    let card = VirtualCard::from_file(&profile).unwrap();
    let _link = VpcdLink::connect(("127.0.0.1", pcscd.vpcd_port(0)), card).unwrap();
    let ctx = link::context().unwrap();
    let reader = pcscd.reader_name(0);
    let mut w = ReaderWatcher::new(ctx.clone(), Some(&reader));
    while !matches!(
        w.next_event(Duration::from_secs(5)).unwrap(),
        Some(ReaderEvent::CardInserted { .. })
    ) {}

    let pin = Credential::pin("1234").unwrap();
    let code_b = Credential::code_b("60040120355678").unwrap();
    let mut g = c.benchmark_group("card_read_via_pcscd");
    g.bench_function("face_and_my_number_with_pin", |b| {
        b.iter(|| card::read_my_number_card(&ctx, &reader, &pin, ReadScope::WithMyNumber).unwrap())
    });
    g.bench_function("face_with_code_b", |b| {
        b.iter(|| card::read_my_number_card(&ctx, &reader, &code_b, ReadScope::FaceOnly).unwrap())
    });
    g.bench_function("identify", |b| {
        b.iter(|| card::identify(&ctx, &reader).unwrap())
    });
    g.finish();
}

criterion_group!(card_read, benches);
criterion_main!(card_read);
