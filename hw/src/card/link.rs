//! One connection to a card, powered down when it ends.
//!
//! A verified PIN stays in force until the card loses power, so every read ends with
//! `SCardDisconnect(SCARD_UNPOWER_CARD)`, on success, on error and on panic (the
//! [`Drop`] of [`CardLink`]). Connections are exclusive while a PIN may be presented,
//! so no other program can use the unlocked card in between.

use std::ffi::CString;

use crate::card::CardError;

/// An open connection to the card on one reader.
pub struct CardLink {
    ctx: pcsc::Context,
    reader: CString,
    card: Option<pcsc::Card>,
    buffer: Vec<u8>,
    apdus: u32,
}

impl CardLink {
    /// Connects exclusively to the card on `reader`.
    pub fn open(ctx: &pcsc::Context, reader: &str) -> Result<Self, CardError> {
        let name = CString::new(reader).map_err(|_| CardError::ReaderNotFound(reader.into()))?;
        let card = ctx
            .connect(&name, pcsc::ShareMode::Exclusive, pcsc::Protocols::ANY)
            .map_err(|e| match CardError::from(e) {
                CardError::ReaderNotFound(_) => CardError::ReaderNotFound(reader.into()),
                other => other,
            })?;
        Ok(Self {
            ctx: ctx.clone(),
            reader: name,
            card: Some(card),
            buffer: vec![0; pcsc::MAX_BUFFER_SIZE_EXTENDED],
            apdus: 0,
        })
    }

    /// APDUs exchanged so far (diagnostics and tests).
    pub fn apdus(&self) -> u32 {
        self.apdus
    }

    /// Powers the card down and closes the connection.
    pub fn close(mut self) -> Result<(), CardError> {
        self.unpower()
    }

    fn unpower(&mut self) -> Result<(), CardError> {
        match self.card.take() {
            Some(card) => card
                .disconnect(pcsc::Disposition::UnpowerCard)
                .map_err(|(_, e)| CardError::from(e)),
            None => Ok(()),
        }
    }
}

impl Drop for CardLink {
    fn drop(&mut self) {
        if let Err(e) = self.unpower() {
            tracing::warn!(error = %e, "could not power the card down");
        }
    }
}

impl myna_card::Transmit for CardLink {
    fn transmit(&mut self, command: &[u8]) -> myna_card::Result<Vec<u8>> {
        let card = self
            .card
            .as_ref()
            .ok_or(myna_card::Error::Pcsc(pcsc::Error::InvalidHandle))?;
        self.apdus += 1;
        match card.transmit(command, &mut self.buffer) {
            Ok(resp) => Ok(resp.to_vec()),
            // pcscd reports a card pulled out mid-exchange as a failed transaction;
            // ask the reader whether the card is still there to tell the two apart.
            Err(e @ (pcsc::Error::NotTransacted | pcsc::Error::CommError)) => Err(
                myna_card::Error::Pcsc(if card_gone(&self.ctx, &self.reader) {
                    pcsc::Error::RemovedCard
                } else {
                    e
                }),
            ),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether the card left `reader`. pcscd learns of a removal from its reader
/// polling, a moment after the failed exchange, so this waits up to ~1.5 s for the
/// reader to report it (an error path only).
fn card_gone(ctx: &pcsc::Context, reader: &CString) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    let mut known = pcsc::State::UNAWARE;
    loop {
        let mut states = [pcsc::ReaderState::new(reader.clone(), known)];
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        match ctx.get_status_change(wait, &mut states) {
            Ok(()) => {}
            Err(pcsc::Error::Timeout) => return false,
            Err(_) => return true,
        }
        let now = states[0].event_state();
        if !now.contains(pcsc::State::PRESENT) {
            return true;
        }
        known = now - pcsc::State::CHANGED;
    }
}

/// A PC/SC context for this process.
pub fn context() -> Result<pcsc::Context, CardError> {
    pcsc::Context::establish(pcsc::Scope::User).map_err(CardError::from)
}

/// The readers attached now.
pub fn list_readers(ctx: &pcsc::Context) -> Result<Vec<String>, CardError> {
    match ctx.list_readers_owned() {
        Ok(names) => Ok(names
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}
