//! Archives of closed fiscal years: round trip, and every change to the file is
//! detected (changed byte, removed / reordered / appended line, wrong key).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kakanai_control_plane::audit::chain::{entry_hash, GENESIS};
use kakanai_control_plane::audit::{
    export_archive, fiscal_year_bounds, verify_archive, ArchiveSpec, AuditEntry, AuditError,
    Checkpoint, ProblemKind, VerifyReport,
};
use kakanai_control_plane::model::{Actor, AuditRecord, Place, TenantId};
use kakanai_protocol::keys::{SigningKey, VerifyingKey};

const HOUR: i64 = 3_600_000;

fn tenant() -> TenantId {
    TenantId::new("city-a").unwrap()
}

fn key() -> SigningKey {
    SigningKey::from_seed(&[1; 32]).unwrap()
}

fn keys() -> Vec<VerifyingKey> {
    vec![key().verifying_key()]
}

/// After FY2025 closed.
fn now() -> i64 {
    fiscal_year_bounds(2026).0 + 30 * 24 * HOUR
}

/// `per_year` entries in each of FY2024 and FY2025, with a checkpoint at every
/// 10th entry and at each year's last entry (the year-end checkpoint).
fn two_years(per_year: u64) -> (Vec<AuditEntry>, Vec<Checkpoint>) {
    let mut entries = Vec::new();
    let mut prev = GENESIS;
    for (y, fy) in [2024u16, 2025].into_iter().enumerate() {
        let start = fiscal_year_bounds(fy).0;
        for i in 0..per_year {
            let seq = y as u64 * per_year + i + 1;
            let record = AuditRecord {
                tenant: "city-a".into(),
                at_ms: start + i as i64 * HOUR,
                actor: Actor::Staff("s001".into()),
                action: if i % 2 == 0 { "resident.view" } else { "print" }.into(),
                resident: Some(format!("{:06}", 100 + i)),
                place: Place::Ip("192.0.2.10".into()),
                outcome: "ok".into(),
                detail: serde_json::json!({"form": "juminhyo", "copies": 1}),
            };
            let hash = entry_hash(seq, &prev, &record);
            prev = hash;
            entries.push(AuditEntry { seq, record, hash });
        }
    }
    let cps = entries
        .iter()
        .filter(|e| e.seq % 10 == 0 || e.seq % per_year == 0)
        .map(|e| Checkpoint::sign(&tenant(), e.seq, &e.hash, e.record.at_ms + 1, &key()))
        .collect();
    (entries, cps)
}

/// The FY2025 archive of `two_years(per_year)`.
fn archive(per_year: u64) -> (Vec<u8>, Vec<AuditEntry>) {
    let (entries, cps) = two_years(per_year);
    let spec = ArchiveSpec {
        tenant: tenant(),
        fiscal_year: 2025,
        prev_seq: per_year,
        prev_hash: entries[per_year as usize - 1].hash,
        count: per_year,
    };
    let year: Vec<_> = entries[per_year as usize..].to_vec();
    let mut out = Vec::new();
    let summary = export_archive(&spec, year.clone(), &cps, &key(), now(), &mut out).unwrap();
    assert_eq!(summary.count, per_year);
    assert_eq!(summary.last_seq, 2 * per_year);
    assert_eq!(summary.final_hash, entries.last().unwrap().hash);
    assert_eq!(summary.bytes, out.len() as u64);
    (out, year)
}

fn lines(file: &[u8]) -> Vec<Vec<u8>> {
    file.split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn check(file: &[u8]) -> VerifyReport {
    verify_archive(file, keys().as_slice())
}

#[test]
fn audit_an_archive_round_trips_and_verifies_on_its_own() {
    let (file, year) = archive(100);
    let report = check(&file);
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.tenant, "city-a");
    assert_eq!(report.entries_checked, 100);
    // The year-end checkpoint of FY2024 (authenticating prev_hash), every 10th entry
    // of FY2025, and its own year-end checkpoint at 200.
    assert_eq!(report.checkpoints_total, 11);
    assert_eq!(report.checkpoints_valid, 11);
    assert_eq!(report.head.unwrap().seq, 200);

    let text = String::from_utf8(file.clone()).unwrap();
    let all: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all[0]["type"], "header");
    assert_eq!(all[0]["format"], "kakanai-audit-archive-v1");
    assert_eq!(all[0]["fiscal_year"], 2025);
    assert_eq!(all[0]["first_seq"], 101);
    assert_eq!(all[0]["last_seq"], 200);
    assert_eq!(all[0]["count"], 100);
    assert_eq!(all[1]["type"], "checkpoint");
    assert_eq!(all[12]["type"], "entry");
    assert_eq!(all.last().unwrap()["type"], "trailer");
    // The entries read back are exactly those archived.
    let back: Vec<AuditEntry> = all[12..all.len() - 1]
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    assert_eq!(back, year);
}

#[test]
fn audit_the_first_year_and_an_empty_year_archive_too() {
    let (entries, cps) = two_years(20);
    let spec = ArchiveSpec {
        tenant: tenant(),
        fiscal_year: 2024,
        prev_seq: 0,
        prev_hash: GENESIS,
        count: 20,
    };
    let mut out = Vec::new();
    export_archive(&spec, entries[..20].to_vec(), &cps, &key(), now(), &mut out).unwrap();
    let report = check(&out);
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.entries_checked, 20);

    // A year without operations: header, the previous year-end checkpoint, trailer.
    let spec = ArchiveSpec {
        tenant: tenant(),
        fiscal_year: 2023,
        prev_seq: 0,
        prev_hash: GENESIS,
        count: 0,
    };
    let mut out = Vec::new();
    export_archive(&spec, Vec::new(), &[], &key(), now(), &mut out).unwrap();
    let report = check(&out);
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(lines(&out).len(), 2);
}

#[test]
fn audit_any_changed_byte_is_detected() {
    let (file, _) = archive(5);
    for i in 0..file.len() {
        for flip in [0x01u8, 0x20] {
            let mut bad = file.clone();
            bad[i] ^= flip;
            let report = check(&bad);
            assert!(
                !report.is_ok(),
                "byte {i} ^ {flip:#x} ({:?}) undetected",
                char::from(file[i])
            );
        }
    }
}

#[test]
fn audit_a_changed_entry_is_located_by_line_and_seq() {
    let (file, _) = archive(100);
    let text = String::from_utf8(file).unwrap();
    // Line 1 header, 2..=12 checkpoints, 13.. entries: entry 150 is line 62.
    let bad = text.replacen("\"resident\":\"000149\"", "\"resident\":\"000999\"", 1);
    assert_ne!(bad, text);
    let report = check(bad.as_bytes());
    let changed = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::HashMismatch)
        .unwrap();
    assert_eq!((changed.seq, changed.line), (Some(150), Some(62)));
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::ContentChanged));
    // No record content in the report.
    let shown = serde_json::to_string(&report).unwrap();
    assert!(!shown.contains("000999"));
}

#[test]
fn audit_any_removed_line_is_detected() {
    let (file, _) = archive(20);
    let all = lines(&file);
    for skip in 0..all.len() {
        let bad: Vec<u8> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .flat_map(|(_, l)| l.clone())
            .collect();
        assert!(!check(&bad).is_ok(), "line {} removed undetected", skip + 1);
    }
    // Removing entry 25 (line 1 header + 4 checkpoints (20, 30, 40) ... ) is located.
    let at = all
        .iter()
        .position(|l| l.starts_with(b"{\"type\":\"entry\",\"seq\":25,"))
        .unwrap();
    let bad: Vec<u8> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != at)
        .flat_map(|(_, l)| l.clone())
        .collect();
    let report = check(&bad);
    assert!(report
        .at(26)
        .any(|k| *k == ProblemKind::Missing { from: 25, to: 25 }));
}

#[test]
fn audit_reordered_lines_are_detected() {
    let (file, _) = archive(20);
    let all = lines(&file);
    for i in 1..all.len() - 2 {
        let mut bad = all.clone();
        bad.swap(i, i + 1);
        let report = check(&bad.concat());
        assert!(
            !report.is_ok(),
            "lines {} and {} swapped undetected",
            i + 1,
            i + 2
        );
    }
    // Two entries swapped: located at their numbers.
    let at = all
        .iter()
        .position(|l| l.starts_with(b"{\"type\":\"entry\",\"seq\":30,"))
        .unwrap();
    let mut bad = all.clone();
    bad.swap(at, at + 1);
    let report = check(&bad.concat());
    assert!(report
        .at(31)
        .any(|k| *k == ProblemKind::Missing { from: 30, to: 30 }));
    assert!(report
        .at(30)
        .any(|k| *k == ProblemKind::OutOfOrder { previous: 31 }));
}

#[test]
fn audit_appended_lines_are_detected() {
    let (file, _) = archive(20);
    let all = lines(&file);
    let last_entry = all[all.len() - 2].clone();

    // After the trailer.
    let mut bad = file.clone();
    bad.extend_from_slice(&last_entry);
    let report = check(&bad);
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::TrailingData && p.line == Some(all.len() as u64 + 1)));
    // Even an empty line.
    let mut bad = file.clone();
    bad.push(b'\n');
    assert!(!check(&bad).is_ok());

    // Before the trailer: a new, correctly chained entry 41 (the attacker can compute
    // hashes, but not the trailer's signature).
    let prev: AuditEntry = serde_json::from_slice(&last_entry[..last_entry.len() - 1]).unwrap();
    let mut record = prev.record.clone();
    record.at_ms += 1;
    let extra = AuditEntry::new(41, &prev.hash, record);
    let mut line = serde_json::to_vec(&serde_json::json!({
        "type": "entry", "seq": 41, "hash": hex::encode(extra.hash), "record": extra.record,
    }))
    .unwrap();
    line.push(b'\n');
    let mut bad = all.clone();
    bad.insert(all.len() - 1, line);
    let report = check(&bad.concat());
    assert!(report
        .at(41)
        .any(|k| matches!(k, ProblemKind::HeaderMismatch { .. })));
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::ContentChanged));
}

#[test]
fn audit_a_cut_archive_is_detected() {
    let (file, _) = archive(20);
    for len in [0, 10, file.len() / 2, file.len() - 1] {
        assert!(!check(&file[..len]).is_ok(), "cut at {len} undetected");
    }
    let all = lines(&file);
    let report = check(&all[..all.len() - 1].concat());
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::MissingTrailer));
}

#[test]
fn audit_the_wrong_key_is_detected() {
    let (file, _) = archive(20);
    let other = SigningKey::from_seed(&[5; 32]).unwrap();
    let report = verify_archive(file.as_slice(), &[other.verifying_key()]);
    assert!(report
        .problems
        .iter()
        .any(|p| matches!(p.kind, ProblemKind::UnknownTrailerKey { .. })));
    assert!(report
        .problems
        .iter()
        .any(|p| matches!(p.kind, ProblemKind::UnknownCheckpointKey { .. })));

    // Re-exported by someone holding another key (a rewritten year): not ours.
    let (entries, cps) = two_years(20);
    let spec = ArchiveSpec {
        tenant: tenant(),
        fiscal_year: 2025,
        prev_seq: 20,
        prev_hash: entries[19].hash,
        count: 20,
    };
    let mut out = Vec::new();
    export_archive(&spec, entries[20..].to_vec(), &cps, &other, now(), &mut out).unwrap();
    let report = check(&out);
    assert!(report
        .problems
        .iter()
        .any(|p| matches!(p.kind, ProblemKind::UnknownTrailerKey { .. })));
    // The same bytes verify with that key listed, so the failure is the key alone.
    let both = vec![key().verifying_key(), other.verifying_key()];
    assert!(verify_archive(out.as_slice(), &both).is_ok());
}

#[test]
fn audit_export_refuses_an_open_year_or_a_broken_chain() {
    let (entries, cps) = two_years(20);
    let spec = ArchiveSpec {
        tenant: tenant(),
        fiscal_year: 2025,
        prev_seq: 20,
        prev_hash: entries[19].hash,
        count: 20,
    };
    let year = entries[20..].to_vec();
    let sink = || Vec::new();

    // FY2025 is still open on its last millisecond.
    let open = fiscal_year_bounds(2026).0 - 1;
    assert!(matches!(
        export_archive(&spec, year.clone(), &cps, &key(), open, sink()),
        Err(AuditError::YearNotClosed { fiscal_year: 2025 })
    ));
    let mut changed = year.clone();
    changed[5].record.outcome = "error".into();
    assert!(matches!(
        export_archive(&spec, changed, &cps, &key(), now(), sink()),
        Err(AuditError::Export { seq: 26, .. })
    ));
    let mut gap = year.clone();
    gap.remove(3);
    assert!(matches!(
        export_archive(&spec, gap, &cps, &key(), now(), sink()),
        Err(AuditError::Export { seq: 25, .. })
    ));
    assert!(matches!(
        export_archive(&spec, year[..19].to_vec(), &cps, &key(), now(), sink()),
        Err(AuditError::ExportCount { expected: 20 })
    ));
    // FY2024's entries are not FY2025's.
    let wrong_year = ArchiveSpec {
        prev_seq: 0,
        prev_hash: GENESIS,
        ..spec.clone()
    };
    assert!(matches!(
        export_archive(
            &wrong_year,
            entries[..20].to_vec(),
            &cps,
            &key(),
            now(),
            sink()
        ),
        Err(AuditError::Export { seq: 1, .. })
    ));
}
