//! Verification of the audit log: every kind of tampering is detected and located at
//! the right `seq`; checkpoints and the checkpoint policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use kakanai_control_plane::audit::chain::{entry_hash, GENESIS};
use kakanai_control_plane::audit::{
    verify, AuditEntry, ChainPoint, Checkpoint, CheckpointDue, CheckpointPolicy, ProblemKind,
    Verifier, VerifyReport,
};
use kakanai_control_plane::model::{Actor, AuditRecord, Place, TenantId};
use kakanai_protocol::keys::{KeyId, SigningKey, VerifyingKey};

const T0: i64 = 1_743_433_200_000; // 2025-04-01T00:00 JST
const HOUR: i64 = 3_600_000;

fn tenant() -> TenantId {
    TenantId::new("city-a").unwrap()
}

fn record(tenant: &str, i: u64) -> AuditRecord {
    AuditRecord {
        tenant: tenant.into(),
        at_ms: T0 + i as i64 * 1000,
        actor: Actor::Staff(format!("s{:03}", i % 7)),
        action: "resident.view".into(),
        resident: Some(format!("{:06}", i % 1000)),
        place: Place::Appliance("counter-01".into()),
        outcome: "ok".into(),
        detail: serde_json::json!({"screen": "summary", "n": i}),
    }
}

/// Entries 1..=n of city-a, lazily (nothing is kept).
fn stream(n: u64) -> impl Iterator<Item = AuditEntry> {
    let mut prev = GENESIS;
    (1..=n).map(move |seq| {
        let record = record("city-a", seq);
        let hash = entry_hash(seq, &prev, &record);
        prev = hash;
        AuditEntry { seq, record, hash }
    })
}

fn log(n: u64) -> Vec<AuditEntry> {
    stream(n).collect()
}

/// Recomputes every hash from position `from` (an attacker with database access).
fn rehash(entries: &mut [AuditEntry], from: usize) {
    for i in from..entries.len() {
        let prev = if i == 0 { GENESIS } else { entries[i - 1].hash };
        entries[i].hash = entry_hash(entries[i].seq, &prev, &entries[i].record);
    }
}

fn key() -> SigningKey {
    SigningKey::from_seed(&[1; 32]).unwrap()
}

fn keys() -> Vec<VerifyingKey> {
    vec![key().verifying_key()]
}

fn checkpoint(entries: &[AuditEntry], seq: u64) -> Checkpoint {
    let e = &entries[(seq - 1) as usize];
    Checkpoint::sign(&tenant(), seq, &e.hash, e.record.at_ms + 1, &key())
}

fn problems(report: &VerifyReport) -> Vec<(Option<u64>, ProblemKind)> {
    report
        .problems
        .iter()
        .map(|p| (p.seq, p.kind.clone()))
        .collect()
}

#[test]
fn audit_a_clean_log_of_ten_thousand_entries_verifies() {
    let entries = log(10_000);
    let cps: Vec<_> = (1..=10).map(|i| checkpoint(&entries, i * 1000)).collect();
    drop(entries);
    // Streamed: the entries are generated as the verifier consumes them.
    let report = verify(&tenant(), stream(10_000), &cps, keys().as_slice());
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.entries_checked, 10_000);
    assert_eq!(report.checkpoints_total, 10);
    assert_eq!(report.checkpoints_valid, 10);
    assert_eq!(report.head.unwrap().seq, 10_000);
    // The report is JSON for the command line.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["checkpoints_valid"], 10);
}

#[test]
fn audit_an_empty_log_is_ok_unless_a_checkpoint_says_otherwise() {
    let report = verify(&tenant(), std::iter::empty(), &[], keys().as_slice());
    assert!(report.is_ok());
    assert_eq!(report.entries_checked, 0);
    let entries = log(3);
    let report = verify(
        &tenant(),
        std::iter::empty(),
        &[checkpoint(&entries, 3)],
        keys().as_slice(),
    );
    assert_eq!(
        problems(&report),
        vec![(
            Some(1),
            ProblemKind::Truncated {
                head: 0,
                checkpoint_seq: 3
            }
        )]
    );
}

#[test]
fn audit_a_changed_entry_is_located() {
    let mut entries = log(1000);
    entries[499].record.action = "print".into();
    let report = verify(&tenant(), entries, &[], keys().as_slice());
    assert_eq!(
        problems(&report),
        vec![(Some(500), ProblemKind::HashMismatch)]
    );
    assert_eq!(report.entries_checked, 1000);

    // Changing only the 宛名番号 or the detail is just as visible.
    let mut entries = log(1000);
    entries[9].record.resident = Some("999999".into());
    entries[19].record.detail = serde_json::json!({"screen": "summary", "n": 21});
    let report = verify(&tenant(), entries, &[], keys().as_slice());
    assert_eq!(
        problems(&report),
        vec![
            (Some(10), ProblemKind::HashMismatch),
            (Some(20), ProblemKind::HashMismatch)
        ]
    );
}

#[test]
fn audit_a_changed_entry_with_its_hash_recomputed_breaks_the_next_link() {
    let mut entries = log(1000);
    entries[499].record.outcome = "denied".into();
    rehash(&mut entries[..500], 499);
    let report = verify(&tenant(), entries, &[], keys().as_slice());
    assert_eq!(
        problems(&report),
        vec![(Some(501), ProblemKind::HashMismatch)]
    );
}

#[test]
fn audit_a_rewritten_log_is_caught_by_the_next_checkpoint() {
    let mut entries = log(2000);
    let cps = vec![checkpoint(&entries, 1000), checkpoint(&entries, 2000)];
    // Change entry 1500 and recompute every hash after it: all links hold.
    entries[1499].record.outcome = "denied".into();
    rehash(&mut entries, 1499);
    let report = verify(&tenant(), entries, &cps, keys().as_slice());
    assert_eq!(report.checkpoints_valid, 1);
    assert_eq!(problems(&report).len(), 1);
    assert_eq!(report.problems[0].seq, Some(2000));
    assert!(matches!(
        report.problems[0].kind,
        ProblemKind::CheckpointMismatch { .. }
    ));
}

#[test]
fn audit_a_removed_entry_is_located() {
    let mut entries = log(1000);
    entries.remove(499);
    let report = verify(&tenant(), entries, &[], keys().as_slice());
    assert_eq!(
        problems(&report),
        vec![(Some(501), ProblemKind::Missing { from: 500, to: 500 })]
    );

    // The first entries removed.
    let entries = log(10).split_off(3);
    let report = verify(&tenant(), entries, &[], keys().as_slice());
    assert_eq!(
        problems(&report),
        vec![(Some(4), ProblemKind::Missing { from: 1, to: 3 })]
    );
}

#[test]
fn audit_a_removed_entry_with_the_log_renumbered_and_rehashed_is_caught_by_checkpoints() {
    let mut entries = log(2000);
    let cps = vec![checkpoint(&entries, 1000), checkpoint(&entries, 2000)];
    entries.remove(499);
    for (i, e) in entries.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
    }
    rehash(&mut entries, 0);
    let report = verify(&tenant(), entries, &cps, keys().as_slice());
    assert_eq!(report.checkpoints_valid, 0);
    let found = problems(&report);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, Some(1000));
    assert!(matches!(found[0].1, ProblemKind::CheckpointMismatch { .. }));
    assert_eq!(
        found[1],
        (
            Some(2000),
            ProblemKind::Truncated {
                head: 1999,
                checkpoint_seq: 2000
            }
        )
    );
}

#[test]
fn audit_swapped_entries_are_located() {
    // Returned in the wrong order.
    let mut entries = log(1000);
    entries.swap(499, 500);
    let report = verify(&tenant(), entries, &[], keys().as_slice());
    assert_eq!(
        problems(&report),
        vec![
            (Some(501), ProblemKind::Missing { from: 500, to: 500 }),
            (Some(500), ProblemKind::OutOfOrder { previous: 501 }),
        ]
    );

    // Contents swapped under the numbers: the chain breaks at the first of them.
    let mut entries = log(1000);
    let (a, b) = (entries[499].record.clone(), entries[500].record.clone());
    entries[499].record = b;
    entries[500].record = a;
    let report = verify(&tenant(), entries, &[], keys().as_slice());
    assert_eq!(report.problems[0].seq, Some(500));
    assert_eq!(report.problems[0].kind, ProblemKind::HashMismatch);
    assert!(report.problems.iter().all(|p| p.seq >= Some(500)));

    // A duplicated entry.
    let mut entries = log(10);
    entries.insert(5, entries[4].clone());
    let report = verify(&tenant(), entries, &[], keys().as_slice());
    assert_eq!(
        problems(&report),
        vec![(Some(5), ProblemKind::OutOfOrder { previous: 5 })]
    );
}

#[test]
fn audit_a_tail_cut_after_a_checkpoint_is_located() {
    let mut entries = log(1000);
    let cps = vec![checkpoint(&entries, 500), checkpoint(&entries, 1000)];
    entries.truncate(990);
    let report = verify(&tenant(), entries, &cps, keys().as_slice());
    assert_eq!(report.checkpoints_valid, 1);
    assert_eq!(
        problems(&report),
        vec![(
            Some(991),
            ProblemKind::Truncated {
                head: 990,
                checkpoint_seq: 1000
            }
        )]
    );
}

#[test]
fn audit_a_forged_checkpoint_is_detected() {
    let entries = log(100);
    let real = checkpoint(&entries, 100);

    // Signed by another key but claiming ours.
    let attacker = SigningKey::from_seed(&[9; 32]).unwrap();
    let mut forged = Checkpoint::sign(&tenant(), 50, &entries[49].hash, T0, &attacker);
    forged.kid = real.kid.clone();
    // A real checkpoint moved to another head.
    let mut moved = real.clone();
    moved.seq = 90;
    moved.hash = entries[89].hash;
    let report = verify(
        &tenant(),
        entries,
        &[forged, moved, real.clone()],
        keys().as_slice(),
    );
    let kid = real.kid.to_hex();
    assert_eq!(
        problems(&report),
        vec![
            (
                Some(50),
                ProblemKind::BadCheckpointSignature { kid: kid.clone() }
            ),
            (Some(90), ProblemKind::BadCheckpointSignature { kid }),
        ]
    );
    assert_eq!(report.checkpoints_valid, 1);
    assert!(real.verify(&key().verifying_key()).is_ok());
    assert!(real.verify(&attacker.verifying_key()).is_err());
}

#[test]
fn audit_a_checkpoint_by_an_unknown_key_is_detected() {
    let entries = log(100);
    let other = SigningKey::from_seed(&[2; 32]).unwrap();
    let cp = Checkpoint::sign(&tenant(), 60, &entries[59].hash, T0, &other);
    let kid = KeyId::of_key(&other.verifying_key()).to_hex();
    let report = verify(
        &tenant(),
        entries.clone(),
        std::slice::from_ref(&cp),
        keys().as_slice(),
    );
    assert_eq!(
        problems(&report),
        vec![(Some(60), ProblemKind::UnknownCheckpointKey { kid })]
    );
    // Once the key is known (e.g. the previous key after a rotation), it verifies,
    // whichever form the key lookup takes.
    let mut map = HashMap::new();
    map.insert(cp.kid.clone(), other.verifying_key());
    assert!(verify(&tenant(), entries.clone(), std::slice::from_ref(&cp), &map).is_ok());
    let lookup = |kid: &KeyId| (*kid == cp.kid).then(|| other.verifying_key());
    assert!(verify(&tenant(), entries, std::slice::from_ref(&cp), &lookup).is_ok());
}

#[test]
fn audit_entries_of_another_tenant_are_located() {
    let mut entries = log(1000);
    // Another city's entry, with its own valid chain hash, slipped in.
    let foreign = record("city-b", 500);
    let hash = entry_hash(500, &GENESIS, &foreign);
    entries.insert(
        500,
        AuditEntry {
            seq: 500,
            record: foreign,
            hash,
        },
    );
    // And one of ours relabelled to the other city.
    entries[700].record.tenant = "city-b".into();
    let seq_relabelled = entries[700].seq;
    let other = TenantId::new("city-b").unwrap();
    let foreign_cp = Checkpoint::sign(&other, 10, &[0; 32], T0, &key());
    let report = verify(&tenant(), entries, &[foreign_cp], keys().as_slice());
    assert_eq!(
        problems(&report),
        vec![
            (Some(10), ProblemKind::CheckpointOfOtherTenant),
            (Some(500), ProblemKind::ForeignTenant),
            (Some(seq_relabelled), ProblemKind::ForeignTenant),
            (
                Some(seq_relabelled + 1),
                ProblemKind::Missing {
                    from: seq_relabelled,
                    to: seq_relabelled
                }
            ),
        ]
    );
}

#[test]
fn audit_verification_can_start_in_the_middle_at_a_signed_hash() {
    let entries = log(1000);
    let base = checkpoint(&entries, 400);
    let later = checkpoint(&entries, 1000);
    let mut v = Verifier::after(
        &tenant(),
        400,
        entries[399].hash,
        &[checkpoint(&entries, 100), base.clone(), later.clone()],
        keys().as_slice(),
    );
    for e in &entries[400..] {
        v.push(e);
    }
    assert_eq!(v.head(), (1000, entries[999].hash));
    let report = v.finish();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.checkpoints_valid, 2);

    // A wrong base hash is caught by the checkpoint at the base.
    let mut v = Verifier::after(&tenant(), 400, [7; 32], &[base], keys().as_slice());
    v.push(&entries[400]);
    let report = v.finish();
    assert!(report
        .at(400)
        .any(|k| matches!(k, ProblemKind::CheckpointMismatch { .. })));
    assert!(report.at(401).any(|k| *k == ProblemKind::HashMismatch));
}

#[test]
fn audit_checkpoint_signature_covers_every_field() {
    let t = tenant();
    let cp = Checkpoint::sign(&t, 42, &[3; 32], T0, &key());
    let vk = key().verifying_key();
    assert!(cp.verify(&vk).is_ok());
    assert_eq!(cp.kid, KeyId::of_key(&vk));
    let bytes = Checkpoint::signed_bytes(&t, 42, &[3; 32], T0);
    assert!(bytes.starts_with(b"kakanai-audit-checkpoint-v1"));

    let mut c = cp.clone();
    c.seq = 43;
    assert!(c.verify(&vk).is_err());
    let mut c = cp.clone();
    c.hash[0] ^= 1;
    assert!(c.verify(&vk).is_err());
    let mut c = cp.clone();
    c.signed_at_ms += 1;
    assert!(c.verify(&vk).is_err());
    let mut c = cp.clone();
    c.tenant = TenantId::new("city-b").unwrap();
    assert!(c.verify(&vk).is_err());
    let mut c = cp.clone();
    c.signature[10] ^= 1;
    assert!(c.verify(&vk).is_err());

    // Round trip through the JSON form used in archives.
    let back = cp.to_wire().into_checkpoint().unwrap();
    assert_eq!(back, cp);
}

#[test]
fn audit_checkpoints_are_due_hourly_and_at_fiscal_year_end() {
    let policy = CheckpointPolicy::default();
    assert_eq!(policy.interval_ms(), HOUR);
    assert!(CheckpointPolicy::new(2 * HOUR).is_err());
    assert!(CheckpointPolicy::new(0).is_err());
    let p = |seq, at_ms| Some(ChainPoint { seq, at_ms });

    // Empty log: nothing to sign.
    assert_eq!(policy.due(None, None, T0), None);
    // First entries.
    assert_eq!(policy.due(p(1, T0), None, T0), Some(CheckpointDue::First));
    // Within the hour: not yet; after: yes.
    assert_eq!(policy.due(p(10, T0 + 100), p(5, T0), T0 + HOUR - 1), None);
    assert_eq!(
        policy.due(p(10, T0 + 100), p(5, T0), T0 + HOUR),
        Some(CheckpointDue::Interval)
    );
    // Head already signed: nothing new to sign, however long ago.
    assert_eq!(policy.due(p(10, T0), p(10, T0), T0 + 10 * HOUR), None);

    // Fiscal-year end: the head is FY2025's last entry and the next entry (or the
    // timer) is in FY2026, even a minute after the last checkpoint.
    let fy2026 = 1_774_969_200_000;
    assert_eq!(
        policy.due(p(10, fy2026 - 1000), p(9, fy2026 - 60_000), fy2026),
        Some(CheckpointDue::FiscalYearEnd { fiscal_year: 2025 })
    );
    assert_eq!(
        policy.due(p(10, fy2026 - 1000), p(9, fy2026 - 60_000), fy2026 - 1),
        None
    );
    // The timer wakes at the year boundary at the latest.
    assert_eq!(policy.next_check_ms(fy2026 - 60_000), fy2026);
    assert_eq!(policy.next_check_ms(T0), T0 + HOUR);
    let short = CheckpointPolicy::new(60_000).unwrap();
    assert_eq!(
        short.due(p(2, T0), p(1, T0), T0 + 60_000),
        Some(CheckpointDue::Interval)
    );
}

#[test]
fn audit_appending_with_the_entry_constructor_matches_the_chain() {
    let a = AuditEntry::new(1, &GENESIS, record("city-a", 1));
    let b = AuditEntry::new(2, &a.hash, record("city-a", 2));
    assert!(b.links_to(&a.hash));
    assert!(!b.links_to(&GENESIS));
    let report = verify(&tenant(), [a, b], &[], keys().as_slice());
    assert!(report.is_ok());
    // Entries serialise with hex hashes (the store and archives rely on it).
    let entry = log(1).remove(0);
    let json = serde_json::to_value(&entry).unwrap();
    assert_eq!(json["hash"], hex::encode(entry.hash));
    let back: AuditEntry = serde_json::from_value(json).unwrap();
    assert_eq!(back, entry);
}
