//! Render times and PDF sizes: one form, and a family of four's move-in bundle (the
//! procedure guide and twelve forms in one PDF, one print job).
//!
//! Every iteration renders with a new application number (new data, new QR code), as
//! at the counter; fonts are loaded once and the layout library stays cached.
//!
//! `cargo bench -p kakanai-documents --bench render`
#![allow(clippy::unwrap_used, clippy::expect_used)]
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use kakanai_documents::{sample, DocumentRequest, Engine, EngineConfig};
use serde_json::Value;

fn renders(c: &mut Criterion) {
    let engine = Engine::new(EngineConfig::default()).expect("engine (fonts installed?)");
    let counter = AtomicU32::new(1);

    let (guide, forms) = sample::move_in_visit(1);
    let form_data = |n: u32| -> Value {
        let mut data = forms[5].1.clone();
        data["application"]["number"] = Value::String(format!("2026-{n:06}"));
        data
    };
    let one = engine
        .render_form("KOKUHO-SHUTOKU", &form_data(0))
        .expect("form");
    let requests =
        |forms: &[(&'static str, Value)]| -> Vec<(&'static str, Value)> { forms.to_vec() };
    let bundle_forms = requests(&forms);
    let mut documents = vec![DocumentRequest::Guide(&guide)];
    documents.extend(
        bundle_forms
            .iter()
            .map(|(id, data)| DocumentRequest::Form { id, data }),
    );
    let bundle = engine.render_bundle(&documents).expect("bundle");
    eprintln!(
        "sizes: one form {} bytes ({} page), move-in bundle {} bytes ({} pages, guide + {} forms)",
        one.bytes.len(),
        one.pages,
        bundle.bytes.len(),
        bundle.pages,
        bundle_forms.len()
    );

    // Criterion measures wall time, which other processes on a shared machine
    // inflate; the process's CPU time (all threads, from /proc) is the work done.
    let cpu = |runs: u32, work: &dyn Fn(u32)| -> Option<f64> {
        let before = cpu_ms()?;
        for i in 0..runs {
            work(i);
        }
        Some((cpu_ms()? - before) / f64::from(runs))
    };
    let form_cpu = cpu(200, &|i| {
        engine
            .render_form("KOKUHO-SHUTOKU", &form_data(1_000_000 + i))
            .expect("form");
    });
    let bundle_cpu = cpu(20, &|i| {
        let (guide, forms) = sample::move_in_visit(2_000_000 + i * 20);
        let mut documents = vec![DocumentRequest::Guide(&guide)];
        documents.extend(
            forms
                .iter()
                .map(|(id, data)| DocumentRequest::Form { id, data }),
        );
        engine.render_bundle(&documents).expect("bundle");
    });
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1} ms"));
    eprintln!(
        "cpu time per render: one form {}, move-in bundle {}",
        show(form_cpu),
        show(bundle_cpu)
    );

    c.bench_function("render one form (KOKUHO-SHUTOKU)", |b| {
        b.iter(|| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            engine
                .render_form("KOKUHO-SHUTOKU", &form_data(n))
                .expect("form")
        })
    });

    let mut group = c.benchmark_group("bundle");
    group.sample_size(20);
    group.bench_function("move-in bundle, family of four (guide + 12 forms)", |b| {
        b.iter(|| {
            let n = counter.fetch_add(20, Ordering::Relaxed);
            let (guide, forms) = sample::move_in_visit(n);
            let mut documents = vec![DocumentRequest::Guide(&guide)];
            documents.extend(
                forms
                    .iter()
                    .map(|(id, data)| DocumentRequest::Form { id, data }),
            );
            engine.render_bundle(&documents).expect("bundle")
        })
    });
    group.bench_function("move-in visit as 13 separate PDFs", |b| {
        b.iter(|| {
            let n = counter.fetch_add(20, Ordering::Relaxed);
            let (guide, forms) = sample::move_in_visit(n);
            let mut pdfs = vec![engine.render_guide(&guide).expect("guide")];
            for (id, data) in &forms {
                pdfs.push(engine.render_form(id, data).expect("form"));
            }
            pdfs
        })
    });
    group.finish();
}

/// User + system CPU time of this process (every thread) in milliseconds, from
/// `/proc/self/stat` (clock ticks of 10 ms: read it over many renders).
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

criterion_group!(benches, renders);
criterion_main!(benches);
