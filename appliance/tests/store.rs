//! The appliance's durable store: what is queued survives restarts and crashes,
//! leaves only on ack, and sequence numbers never repeat.

// Test helpers outside #[test] functions are not covered by allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kakanai_appliance::store::{ApplianceStore, OutboxItem, StoreError};
use kakanai_protocol::sequence::SequenceAllocator;

fn item(n: u8) -> OutboxItem {
    OutboxItem {
        message_id: [n; 16],
        topic: "kakanai/v1/city-a/dev/counter-01/up/scan".into(),
        signed: vec![0xd2, 0x84, n, n, n],
        enqueued_ms: 1_795_000_000_000 + i64::from(n),
    }
}

#[test]
fn queued_messages_survive_a_restart_and_leave_only_on_ack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("appliance.redb");
    {
        let store = ApplianceStore::open(&path).unwrap();
        store.enqueue(&[item(1), item(2)]).unwrap();
        store.enqueue(&[item(3)]).unwrap();
        // The same message queued again (a caller's retry) stays once.
        assert!(store.enqueue(&[item(2)]).unwrap().is_empty());
        assert_eq!(store.pending_count().unwrap(), 3);
        assert!(store.ack(&[2; 16]).unwrap());
        assert!(!store.ack(&[2; 16]).unwrap(), "a second ack finds nothing");
        assert!(
            !store.ack(&[9; 16]).unwrap(),
            "an ack for a message we never sent"
        );
        // Dropped without a clean shutdown.
    }
    let store = ApplianceStore::open(&path).unwrap();
    let pending = store.pending(100).unwrap();
    let items: Vec<OutboxItem> = pending.iter().map(|(_, i)| i.clone()).collect();
    assert_eq!(
        items,
        vec![item(1), item(3)],
        "oldest first, the acked one gone"
    );
    assert!(pending[0].0 < pending[1].0);
    // New messages queue after the old ones.
    store.enqueue(&[item(4)]).unwrap();
    let last = store.pending(100).unwrap().pop().unwrap();
    assert_eq!(last.1, item(4));
    assert_eq!(store.pending(1).unwrap().len(), 1);
}

#[test]
fn boot_counter_and_sequence_numbers_only_go_up_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("appliance.redb");
    let mut last_seq = 0;
    for boot in 1..=3u64 {
        let store = std::sync::Arc::new(ApplianceStore::open(&path).unwrap());
        assert_eq!(store.boot().unwrap(), boot);
        let mut seq = SequenceAllocator::new(store.sequence_store(), 100).unwrap();
        for _ in 0..150 {
            let s = seq.next_seq().unwrap();
            assert!(s > last_seq, "sequence {s} after {last_seq}");
            last_seq = s;
        }
    }
}

#[test]
fn commands_are_executed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = ApplianceStore::open(&dir.path().join("a.redb")).unwrap();
    assert!(store.mark_command_seen(&[7; 16], 1000).unwrap());
    assert!(!store.mark_command_seen(&[7; 16], 2000).unwrap());
    assert!(store.mark_command_seen(&[8; 16], 5000).unwrap());
    assert_eq!(store.prune_seen_commands(3000).unwrap(), 1);
    assert!(!store.mark_command_seen(&[8; 16], 6000).unwrap());
}

#[test]
fn a_second_daemon_cannot_open_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let _first = ApplianceStore::open(&path).unwrap();
    assert!(matches!(
        ApplianceStore::open(&path),
        Err(StoreError::Locked)
    ));
}

#[test]
fn a_damaged_file_is_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    std::fs::write(&path, b"this is not a redb file, just some bytes").unwrap();
    assert!(ApplianceStore::open(&path).is_err());
}
