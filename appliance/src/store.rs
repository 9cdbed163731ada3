//! The appliance's durable state in redb: the outbox, sequence numbers, the boot
//! counter and the ids of commands already executed.
//!
//! Every message to the control plane is written here (signed, with its topic)
//! before it is published, and removed only when the control plane's ack names its
//! message id; after a reconnect or a restart, [`ApplianceStore::pending`] gives what
//! to send again, oldest first. redb commits durably by default; a batch of messages
//! is one commit, so the fsync cost is paid per batch, not per message.
//!
//! A full disk: redb never overwrites a page in place, so even removing an
//! acknowledged message needs a little free space. Without care, a disk filled by the
//! outbox would stop acks from being applied and the outbox could never drain. The
//! store therefore keeps a small reserve file (`NAME.reserve`, [`RESERVE_BYTES`])
//! beside the database: when an ack or the start-up meets a full disk, the reserve is
//! given up and the write retried; new messages are refused with
//! [`StoreError::DiskFull`] until the reserve can be set aside again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use kakanai_protocol::sequence::SequenceStore;
use kakanai_protocol::ProtocolError;

/// Outbox position → the queued message.
const OUTBOX: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("outbox");
/// Message id → outbox position, to remove a message when its ack arrives.
const OUTBOX_BY_ID: TableDefinition<'_, &[u8; 16], u64> = TableDefinition::new("outbox_by_id");
/// Counters.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// Command message id → when it was executed (ms), to execute each command once.
const SEEN_COMMANDS: TableDefinition<'_, &[u8; 16], i64> = TableDefinition::new("seen_commands");

const NEXT_POSITION: &str = "next_outbox_position";
const SEQ_RESERVED: &str = "sequence_reserved";
const BOOT_COUNTER: &str = "boot_counter";

/// What went wrong with the appliance's store. Never carries message contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk is full: nothing new can be queued until space is freed; what is
    /// already queued is intact.
    #[error("the disk is full; the outbox cannot take more messages")]
    DiskFull,
    /// An earlier write failed (a full disk) and redb refuses the file until it is
    /// opened again; the store reopens it and retries.
    #[error("an earlier write failed; the store must be reopened")]
    Interrupted,
    /// The store is locked by another process (a second appliance daemon?).
    #[error("the store is in use by another process")]
    Locked,
    /// The file is damaged.
    #[error("the store is damaged: {0}")]
    Corrupted(String),
    /// Another storage failure.
    #[error("store: {0}")]
    Storage(String),
    /// A queued item could not be decoded.
    #[error("a queued message is unreadable: {0}")]
    Decode(String),
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::DatabaseAlreadyOpen => StoreError::Locked,
            redb::Error::Corrupted(m) => StoreError::Corrupted(m),
            redb::Error::Io(io) if io.raw_os_error() == Some(28) => StoreError::DiskFull,
            redb::Error::PreviousIo => StoreError::Interrupted,
            other => StoreError::Storage(other.to_string()),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                redb::Error::from(e).into()
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A message waiting for the control plane's ack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// The message id (from the signed envelope), which the ack names.
    pub message_id: [u8; 16],
    /// The MQTT topic it is published on (also its signature's external AAD).
    pub topic: String,
    /// The signed COSE_Sign1 bytes, sent as they are on every attempt.
    #[serde(with = "bytes")]
    pub signed: Vec<u8>,
    /// When it was queued, ms since the epoch.
    pub enqueued_ms: i64,
}

mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let v: ciborium::Value = Deserialize::deserialize(d)?;
        v.into_bytes()
            .map_err(|_| serde::de::Error::custom("expected a byte string"))
    }
}

/// Space kept free beside the database so acks can always be applied (see the module
/// docs).
pub const RESERVE_BYTES: usize = 256 * 1024;

/// The appliance's store.
pub struct ApplianceStore {
    /// `None` only while it is reopened (see [`ApplianceStore::reopen`]).
    db: RwLock<Option<Database>>,
    path: PathBuf,
    reserve: PathBuf,
}

/// The open database, held for the length of one operation.
struct Db<'a>(RwLockReadGuard<'a, Option<Database>>);

impl std::ops::Deref for Db<'_> {
    type Target = Database;
    fn deref(&self) -> &Database {
        // `db()` hands out only a guard over `Some`.
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::fmt::Debug for ApplianceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplianceStore").finish_non_exhaustive()
    }
}

impl ApplianceStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let store = Self {
            db: RwLock::new(None),
            path: path.to_owned(),
            reserve: path.with_extension("reserve"),
        };
        // Opening on a full disk gives up the reserve (see `reopen`).
        store.reopen()?;
        // Best effort: on a full disk the outbox refuses new messages until the
        // reserve can be set aside.
        let _ = store.keep_reserve();
        Ok(store)
    }

    fn open_db(path: &Path) -> Result<Database, StoreError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        {
            tx.open_table(OUTBOX)?;
            tx.open_table(OUTBOX_BY_ID)?;
            tx.open_table(META)?;
            tx.open_table(SEEN_COMMANDS)?;
        }
        tx.commit()?;
        Ok(db)
    }

    /// Sets the reserve aside if it is not there (a file of [`RESERVE_BYTES`] written
    /// out, so its blocks are really taken); [`StoreError::DiskFull`] if the disk has
    /// no room for it.
    fn keep_reserve(&self) -> Result<(), StoreError> {
        if std::fs::metadata(&self.reserve).is_ok_and(|m| m.len() == RESERVE_BYTES as u64) {
            return Ok(());
        }
        if self.write_reserve().is_ok() {
            return Ok(());
        }
        // redb keeps the pages acked messages freed inside its file: compacting gives
        // them back to the disk, which may make room for the reserve again.
        {
            let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(db) = slot.as_mut() {
                if let Err(e) = db.compact() {
                    tracing::warn!(error = %e, "cannot compact the store");
                }
            }
        }
        self.write_reserve()
    }

    /// Writes the reserve file out (so its blocks are really taken).
    fn write_reserve(&self) -> Result<(), StoreError> {
        let written = std::fs::write(&self.reserve, vec![0u8; RESERVE_BYTES])
            .and_then(|()| std::fs::File::open(&self.reserve)?.sync_all());
        match written {
            Ok(()) => Ok(()),
            Err(e) => {
                release(&self.reserve);
                if e.raw_os_error() == Some(28) {
                    Err(StoreError::DiskFull)
                } else {
                    Err(StoreError::Storage(format!("reserve file: {e}")))
                }
            }
        }
    }

    fn db(&self) -> Result<Db<'_>, StoreError> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            return Err(StoreError::Storage(
                "the store could not be reopened".into(),
            ));
        }
        Ok(Db(guard))
    }

    /// Closes and opens the database again: redb refuses every operation after a
    /// failed write until then. On a full disk the reserve is given up for it.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // The old handle first: redb allows one per file.
        drop(slot.take());
        let db = match Self::open_db(&self.path) {
            Err(StoreError::DiskFull) => {
                release(&self.reserve);
                Self::open_db(&self.path)?
            }
            other => other?,
        };
        *slot = Some(db);
        Ok(())
    }

    /// Runs `op`; after a failed write, reopens the database and runs it once more.
    /// A full disk is final for anything but `ack` (`release_reserve`), which gives up
    /// the reserve to be applied.
    fn recover<T>(
        &self,
        release_reserve: bool,
        op: impl Fn() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match op() {
            Err(StoreError::Interrupted) => {
                self.reopen()?;
                op()
            }
            Err(StoreError::DiskFull) if release_reserve => {
                tracing::warn!("disk full: the outbox's reserve is released to apply acks");
                release(&self.reserve);
                self.reopen()?;
                op()
            }
            Err(StoreError::DiskFull) => {
                // Clears redb's failed state, so the next operation can work.
                self.reopen()?;
                Err(StoreError::DiskFull)
            }
            other => other,
        }
    }

    /// Counts this start: increments and returns the boot counter.
    pub fn boot(&self) -> Result<u64, StoreError> {
        self.recover(false, || self.boot_once())
    }

    fn boot_once(&self) -> Result<u64, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write()?;
        let boot = {
            let mut meta = tx.open_table(META)?;
            let boot = meta.get(BOOT_COUNTER)?.map_or(0, |v| v.value()) + 1;
            meta.insert(BOOT_COUNTER, boot)?;
            boot
        };
        tx.commit()?;
        Ok(boot)
    }

    /// Queues messages in one durable commit; returns their positions.
    pub fn enqueue(&self, items: &[OutboxItem]) -> Result<Vec<u64>, StoreError> {
        // New messages only while the reserve for acks is there.
        self.keep_reserve()?;
        self.recover(false, || self.enqueue_once(items))
    }

    fn enqueue_once(&self, items: &[OutboxItem]) -> Result<Vec<u64>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write()?;
        let mut positions = Vec::with_capacity(items.len());
        {
            let mut meta = tx.open_table(META)?;
            let mut outbox = tx.open_table(OUTBOX)?;
            let mut by_id = tx.open_table(OUTBOX_BY_ID)?;
            let mut next = meta.get(NEXT_POSITION)?.map_or(1, |v| v.value());
            for item in items {
                // The same message queued twice (a retry by the caller) stays once.
                if by_id.get(&item.message_id)?.is_some() {
                    continue;
                }
                let mut encoded = Vec::with_capacity(item.signed.len() + 64);
                ciborium::into_writer(item, &mut encoded)
                    .map_err(|e| StoreError::Storage(e.to_string()))?;
                outbox.insert(next, encoded.as_slice())?;
                by_id.insert(&item.message_id, next)?;
                positions.push(next);
                next += 1;
            }
            meta.insert(NEXT_POSITION, next)?;
        }
        tx.commit()?;
        Ok(positions)
    }

    /// Removes the message the control plane acknowledged; false if it was not
    /// queued (already acked, or never ours).
    pub fn ack(&self, message_id: &[u8; 16]) -> Result<bool, StoreError> {
        Ok(self.ack_all(&[*message_id])?.first() == Some(&true))
    }

    /// Removes every message one ack names, in one transaction; per id, whether it
    /// was queued.
    pub fn ack_all(&self, message_ids: &[[u8; 16]]) -> Result<Vec<bool>, StoreError> {
        // The reserve is there for this: on a full disk it is given up.
        self.recover(true, || self.remove_acked(message_ids))
    }

    fn remove_acked(&self, message_ids: &[[u8; 16]]) -> Result<Vec<bool>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write()?;
        let removed = {
            let mut by_id = tx.open_table(OUTBOX_BY_ID)?;
            let mut outbox = tx.open_table(OUTBOX)?;
            let mut removed = Vec::with_capacity(message_ids.len());
            for id in message_ids {
                let position = by_id.remove(id)?.map(|v| v.value());
                if let Some(p) = position {
                    outbox.remove(p)?;
                }
                removed.push(position.is_some());
            }
            removed
        };
        tx.commit()?;
        Ok(removed)
    }

    /// Up to `limit` queued messages, oldest first.
    pub fn pending(&self, limit: usize) -> Result<Vec<(u64, OutboxItem)>, StoreError> {
        self.recover(false, || self.pending_once(limit))
    }

    fn pending_once(&self, limit: usize) -> Result<Vec<(u64, OutboxItem)>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read()?;
        let outbox = tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in outbox.iter()?.take(limit) {
            let (k, v) = entry?;
            let item: OutboxItem =
                ciborium::from_reader(v.value()).map_err(|e| StoreError::Decode(e.to_string()))?;
            out.push((k.value(), item));
        }
        Ok(out)
    }

    /// Up to `limit` queued messages after position `after`, oldest first (for
    /// re-sending the outbox in batches).
    pub fn pending_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxItem)>, StoreError> {
        self.recover(false, || self.pending_after_once(after, limit))
    }

    fn pending_after_once(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxItem)>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read()?;
        let outbox = tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in outbox.range(after.saturating_add(1)..)?.take(limit) {
            let (k, v) = entry?;
            let item: OutboxItem =
                ciborium::from_reader(v.value()).map_err(|e| StoreError::Decode(e.to_string()))?;
            out.push((k.value(), item));
        }
        Ok(out)
    }

    /// Whether message `message_id` is still in the outbox (not yet acknowledged).
    pub fn is_pending(&self, message_id: &[u8; 16]) -> Result<bool, StoreError> {
        self.recover(false, || {
            let db = self.db()?;
            let tx = db.begin_read()?;
            Ok(tx.open_table(OUTBOX_BY_ID)?.get(message_id)?.is_some())
        })
    }

    /// How many messages wait for an ack.
    pub fn pending_count(&self) -> Result<u64, StoreError> {
        self.recover(false, || {
            let db = self.db()?;
            let tx = db.begin_read()?;
            Ok(tx.open_table(OUTBOX)?.len()?)
        })
    }

    /// Records that the command `message_id` is executed; false if it was already.
    pub fn mark_command_seen(
        &self,
        message_id: &[u8; 16],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.recover(false, || self.mark_command_seen_once(message_id, now_ms))
    }

    fn mark_command_seen_once(
        &self,
        message_id: &[u8; 16],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write()?;
        let new = {
            let mut seen = tx.open_table(SEEN_COMMANDS)?;
            if seen.get(message_id)?.is_some() {
                false
            } else {
                seen.insert(message_id, now_ms)?;
                true
            }
        };
        tx.commit()?;
        Ok(new)
    }

    /// Forgets executed commands older than `before_ms` (their expiry has passed, so
    /// a replay is refused by expiry instead).
    pub fn prune_seen_commands(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.recover(false, || self.prune_seen_commands_once(before_ms))
    }

    fn prune_seen_commands_once(&self, before_ms: i64) -> Result<u64, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write()?;
        let removed = {
            let mut seen = tx.open_table(SEEN_COMMANDS)?;
            let old: Vec<[u8; 16]> = seen
                .iter()?
                .filter_map(Result::ok)
                .filter(|(_, at)| at.value() < before_ms)
                .map(|(id, _)| *id.value())
                .collect();
            for id in &old {
                seen.remove(id)?;
            }
            old.len() as u64
        };
        tx.commit()?;
        Ok(removed)
    }

    /// The sequence-number store for [`kakanai_protocol::sequence::SequenceAllocator`].
    pub fn sequence_store(self: &Arc<Self>) -> SequenceCounter {
        SequenceCounter {
            store: Arc::clone(self),
        }
    }
}

/// The sender's reserved sequence numbers, kept in the appliance's store.
#[derive(Debug)]
pub struct SequenceCounter {
    store: Arc<ApplianceStore>,
}

impl SequenceStore for SequenceCounter {
    fn load_reserved(&mut self) -> Result<u64, ProtocolError> {
        let store = &self.store;
        let read = || -> Result<u64, StoreError> {
            let db = store.db()?;
            let tx = db.begin_read()?;
            let meta = tx.open_table(META)?;
            Ok(meta.get(SEQ_RESERVED)?.map_or(0, |v| v.value()))
        };
        store
            .recover(false, read)
            .map_err(|e| ProtocolError::Sequence(e.to_string()))
    }

    fn store_reserved(&mut self, upto: u64) -> Result<(), ProtocolError> {
        let store = &self.store;
        let write = || -> Result<(), StoreError> {
            let db = store.db()?;
            let tx = db.begin_write()?;
            tx.open_table(META)?.insert(SEQ_RESERVED, upto)?;
            tx.commit()?;
            Ok(())
        };
        store
            .recover(false, write)
            .map_err(|e| ProtocolError::Sequence(e.to_string()))
    }
}

fn release(reserve: &Path) {
    let _ = std::fs::remove_file(reserve);
}
