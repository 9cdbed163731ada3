//! The sender's sequence numbers: strictly increasing across restarts.
//!
//! The allocator reserves numbers in blocks through a [`SequenceStore`] the caller
//! provides (redb on the appliance, the database on the control plane), so a
//! durable write happens once per block, not once per message. After a crash the
//! unused rest of a block is skipped: numbers may have gaps, never repeats.

use crate::error::ProtocolError;

/// Durable storage of the highest reserved sequence number.
pub trait SequenceStore {
    /// The highest number reserved so far (0 when nothing was ever reserved).
    fn load_reserved(&mut self) -> Result<u64, ProtocolError>;
    /// Durably records that numbers up to `upto` are reserved. Must not return
    /// before the value would survive a power cut.
    fn store_reserved(&mut self, upto: u64) -> Result<(), ProtocolError>;
}

/// Hands out sequence numbers, starting at 1.
#[derive(Debug)]
pub struct SequenceAllocator<S> {
    store: S,
    next: u64,
    reserved: u64,
    block: u64,
}

impl<S: SequenceStore> SequenceAllocator<S> {
    /// An allocator continuing after what `store` has reserved, reserving `block`
    /// numbers per durable write.
    pub fn new(mut store: S, block: u64) -> Result<Self, ProtocolError> {
        let reserved = store.load_reserved()?;
        let next = reserved
            .checked_add(1)
            .ok_or_else(|| ProtocolError::Sequence("sequence numbers exhausted".into()))?;
        Ok(Self {
            store,
            next,
            reserved,
            block: block.max(1),
        })
    }

    /// The next number.
    pub fn next_seq(&mut self) -> Result<u64, ProtocolError> {
        if self.next > self.reserved {
            let upto = self
                .next
                .checked_add(self.block - 1)
                .ok_or_else(|| ProtocolError::Sequence("sequence numbers exhausted".into()))?;
            self.store.store_reserved(upto)?;
            self.reserved = upto;
        }
        let seq = self.next;
        self.next += 1;
        Ok(seq)
    }

    /// The store, e.g. to close it.
    pub fn into_store(self) -> S {
        self.store
    }
}

/// A store in memory, for tests and tools; it does not survive a restart.
#[derive(Debug, Default, Clone)]
pub struct MemorySequenceStore {
    /// The reserved value.
    pub reserved: u64,
    /// How many times it was written.
    pub writes: u64,
}

impl SequenceStore for MemorySequenceStore {
    fn load_reserved(&mut self) -> Result<u64, ProtocolError> {
        Ok(self.reserved)
    }

    fn store_reserved(&mut self, upto: u64) -> Result<(), ProtocolError> {
        self.reserved = upto;
        self.writes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_never_repeats_and_writes_once_per_block() {
        let mut a = SequenceAllocator::new(MemorySequenceStore::default(), 100).unwrap();
        let first: Vec<u64> = (0..150).map(|_| a.next_seq().unwrap()).collect();
        assert_eq!(first[0], 1);
        assert!(first.windows(2).all(|w| w[1] == w[0] + 1));
        let store = a.into_store();
        assert_eq!(store.writes, 2);
        // "Crash" and restart from what was stored.
        let mut b = SequenceAllocator::new(store, 100).unwrap();
        let after = b.next_seq().unwrap();
        assert!(after > 150, "{after} reuses a number");
    }

    #[test]
    fn exhaustion_is_an_error_not_a_wrap() {
        let store = MemorySequenceStore {
            reserved: u64::MAX - 1,
            writes: 0,
        };
        let mut a = SequenceAllocator::new(store, 10).unwrap();
        assert!(a.next_seq().is_err());
    }
}
