//! Replay protection: a sliding window over each sender's sequence numbers.
//!
//! The window remembers the highest sequence number accepted and which of the
//! [`WINDOW`] numbers below it were seen, so messages may arrive out of order (QoS 1
//! redelivery, reconnects) but none is taken twice. [`ReplayGuard::check`] does not
//! change anything; [`ReplayGuard::accept`] is called only after the signature
//! verified, so forged messages cannot move a sender's window.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;
use crate::keys::KeyId;

/// How many sequence numbers below the highest one the window remembers.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// One sender's window. Bit `i` stands for sequence number `highest - i`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplayWindow {
    highest: Option<u64>,
    seen: [u64; WORDS],
}

impl ReplayWindow {
    /// Whether `seq` would be accepted now.
    pub fn check(&self, seq: u64) -> Result<(), ProtocolError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if seq > highest {
            return Ok(());
        }
        let age = highest - seq;
        if age >= WINDOW || self.bit(age) {
            return Err(ProtocolError::Replay { seq });
        }
        Ok(())
    }

    /// Records `seq` as seen, if [`check`](Self::check) allows it.
    pub fn accept(&mut self, seq: u64) -> Result<(), ProtocolError> {
        self.check(seq)?;
        match self.highest {
            Some(highest) if seq <= highest => self.set(highest - seq),
            Some(highest) => {
                self.shift(seq - highest);
                self.highest = Some(seq);
                self.set(0);
            }
            None => {
                self.highest = Some(seq);
                self.set(0);
            }
        }
        Ok(())
    }

    /// The highest sequence number accepted so far.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn bit(&self, age: u64) -> bool {
        self.seen[(age / 64) as usize] & (1 << (age % 64)) != 0
    }

    fn set(&mut self, age: u64) {
        self.seen[(age / 64) as usize] |= 1 << (age % 64);
    }

    /// Ages every bit by `n`.
    fn shift(&mut self, n: u64) {
        if n >= WINDOW {
            self.seen = [0; WORDS];
            return;
        }
        let words = (n / 64) as usize;
        let bits = (n % 64) as u32;
        for i in (0..WORDS).rev() {
            let src = i.checked_sub(words);
            let hi = src.map_or(0, |s| self.seen[s] << bits);
            let lo = match src.and_then(|s| s.checked_sub(1)) {
                Some(s) if bits > 0 => self.seen[s] >> (64 - bits),
                _ => 0,
            };
            self.seen[i] = hi | lo;
        }
    }
}

/// Windows for every sender, keyed by the sender's key id.
#[derive(Debug, Default, Clone)]
pub struct ReplayGuard {
    windows: HashMap<KeyId, ReplayWindow>,
}

impl ReplayGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `seq` from `sender` would be accepted now (changes nothing).
    pub fn check(&self, sender: &KeyId, seq: u64) -> Result<(), ProtocolError> {
        self.windows.get(sender).map_or(Ok(()), |w| w.check(seq))
    }

    /// Records `seq` from `sender`; call only after its signature verified.
    pub fn accept(&mut self, sender: &KeyId, seq: u64) -> Result<(), ProtocolError> {
        match self.windows.get_mut(sender) {
            Some(w) => w.accept(seq),
            None => {
                let mut w = ReplayWindow::default();
                w.accept(seq)?;
                self.windows.insert(sender.clone(), w);
                Ok(())
            }
        }
    }

    /// The window of one sender, to persist it.
    pub fn window(&self, sender: &KeyId) -> Option<&ReplayWindow> {
        self.windows.get(sender)
    }

    /// Restores a persisted window.
    pub fn restore(&mut self, sender: KeyId, window: ReplayWindow) {
        self.windows.insert(sender, window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn duplicates_and_stale_are_refused_out_of_order_is_fine() {
        let mut w = ReplayWindow::default();
        w.accept(10).unwrap();
        assert!(w.accept(10).is_err());
        w.accept(12).unwrap();
        w.accept(11).unwrap();
        assert!(w.accept(11).is_err());
        w.accept(5000).unwrap();
        assert!(w.accept(5000 - WINDOW).is_err(), "too old");
        w.accept(5000 - WINDOW + 1).unwrap();
        assert!(w.accept(12).is_err());
    }

    #[test]
    fn check_changes_nothing() {
        let mut g = ReplayGuard::new();
        let kid = KeyId::new(vec![1]).unwrap();
        g.check(&kid, 7).unwrap();
        g.check(&kid, 7).unwrap();
        g.accept(&kid, 7).unwrap();
        assert!(g.check(&kid, 7).is_err());
        // Another sender has its own window.
        g.accept(&KeyId::new(vec![2]).unwrap(), 7).unwrap();
    }

    proptest! {
        /// The window agrees with a model that remembers everything, within the
        /// window; older numbers are always refused.
        #[test]
        fn matches_a_set_model(seqs in proptest::collection::vec(0u64..3000, 1..400)) {
            let mut w = ReplayWindow::default();
            let mut seen = BTreeSet::new();
            for s in seqs {
                let highest = seen.iter().next_back().copied();
                let model_ok = match highest {
                    None => true,
                    Some(h) => !seen.contains(&s) && (s > h || h - s < WINDOW),
                };
                prop_assert_eq!(w.accept(s).is_ok(), model_ok, "seq {}", s);
                if model_ok { seen.insert(s); }
            }
        }
    }
}
