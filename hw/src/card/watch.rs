//! Readers and cards coming and going, from PC/SC status-change events.
//!
//! [`ReaderWatcher::next_event`] blocks in `SCardGetStatusChange` (with the
//! `\\?PnP?\Notification` pseudo-reader for readers appearing), so nothing polls.
//! [`ReaderWatcher::canceler`] gives a context whose `cancel()` wakes it from another
//! thread.

use std::ffi::CString;
use std::time::Duration;

use crate::card::link::list_readers;
use crate::card::CardError;

/// Something that happened on the readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderEvent {
    /// A reader was attached.
    ReaderAdded(String),
    /// A reader was detached.
    ReaderRemoved(String),
    /// A card was put on a reader.
    CardInserted {
        /// The reader.
        reader: String,
        /// The card's answer to reset.
        atr: Vec<u8>,
    },
    /// The card was taken off a reader.
    CardRemoved {
        /// The reader.
        reader: String,
    },
}

struct Watched {
    name: String,
    present: bool,
    /// The last state PC/SC reported (with pcsc-lite's event counter in its high
    /// bits); passed back as the current state, so the next call blocks until
    /// something differs.
    known: pcsc::State,
}

/// Watches every reader, or only the one named.
pub struct ReaderWatcher {
    ctx: pcsc::Context,
    only: Option<String>,
    readers: Vec<Watched>,
    pnp_known: pcsc::State,
    pending: std::collections::VecDeque<ReaderEvent>,
}

impl ReaderWatcher {
    /// A watcher; the first events report the readers and cards present now.
    pub fn new(ctx: pcsc::Context, only: Option<&str>) -> Self {
        Self {
            ctx,
            only: only.map(str::to_owned),
            readers: Vec::new(),
            pnp_known: pcsc::State::UNAWARE,
            pending: std::collections::VecDeque::new(),
        }
    }

    /// A handle whose `cancel()` wakes a blocked [`next_event`](Self::next_event) from
    /// another thread (PC/SC contexts are shared handles).
    pub fn canceler(&self) -> pcsc::Context {
        self.ctx.clone()
    }

    /// The next event, or `None` after `timeout` (or when cancelled).
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<ReaderEvent>, CardError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            self.sync_readers()?;
            if !self.pending.is_empty() {
                continue;
            }
            let mut states: Vec<pcsc::ReaderState> = Vec::with_capacity(self.readers.len() + 1);
            states.push(pcsc::ReaderState::new(
                pcsc::PNP_NOTIFICATION(),
                self.pnp_known,
            ));
            for r in &self.readers {
                if let Ok(name) = CString::new(r.name.clone()) {
                    states.push(pcsc::ReaderState::new(name, r.known));
                }
            }
            match self.ctx.get_status_change(timeout, &mut states) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout | pcsc::Error::Cancelled) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            self.pnp_known = known(&states.remove(0));
            for (watched, state) in self.readers.iter_mut().zip(states) {
                let now = state.event_state();
                let present = now.contains(pcsc::State::PRESENT);
                if present != watched.present {
                    watched.present = present;
                    self.pending.push_back(if present {
                        ReaderEvent::CardInserted {
                            reader: watched.name.clone(),
                            atr: state.atr().to_vec(),
                        }
                    } else {
                        ReaderEvent::CardRemoved {
                            reader: watched.name.clone(),
                        }
                    });
                }
                watched.known = known(&state);
            }
        }
    }

    fn sync_readers(&mut self) -> Result<(), CardError> {
        let names: Vec<String> = list_readers(&self.ctx)?
            .into_iter()
            .filter(|n| self.only.as_ref().is_none_or(|o| o == n))
            .collect();
        let mut removed = Vec::new();
        self.readers.retain(|r| {
            let keep = names.contains(&r.name);
            if !keep {
                removed.push(r.name.clone());
            }
            keep
        });
        for name in removed {
            self.pending.push_back(ReaderEvent::ReaderRemoved(name));
        }
        for name in names {
            if self.readers.iter().any(|r| r.name == name) {
                continue;
            }
            let Ok(c) = CString::new(name.clone()) else {
                continue;
            };
            let mut states = [pcsc::ReaderState::new(c, pcsc::State::UNAWARE)];
            // A zero timeout reads the current state without waiting.
            match self.ctx.get_status_change(Duration::ZERO, &mut states) {
                Ok(()) | Err(pcsc::Error::Timeout) => {}
                Err(pcsc::Error::UnknownReader) => continue,
                Err(e) => return Err(e.into()),
            }
            let [state] = states;
            let present = state.event_state().contains(pcsc::State::PRESENT);
            self.pending
                .push_back(ReaderEvent::ReaderAdded(name.clone()));
            if present {
                self.pending.push_back(ReaderEvent::CardInserted {
                    reader: name.clone(),
                    atr: state.atr().to_vec(),
                });
            }
            self.readers.push(Watched {
                name,
                present,
                known: known(&state),
            });
        }
        Ok(())
    }
}

fn known(state: &pcsc::ReaderState) -> pcsc::State {
    state.event_state() - pcsc::State::CHANGED
}
