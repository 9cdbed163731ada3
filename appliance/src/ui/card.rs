//! The card-read flow at the counter, as a state machine the screens render.
//!
//! One reader per counter, so one flow per appliance: waiting for a card → the card
//! identified without spending a PIN try (and the tries left read) → the resident
//! types the PIN on the tablet's keypad, or staff type 照合番号B → reading → the
//! 基本4情報 shown for staff to confirm, while the face is sent to the control plane
//! for the resident lookup. A wrong PIN goes back to the keypad with the tries left
//! (never retried automatically); a locked PIN, a card pulled mid-read, a card of
//! another kind each end in a plain message with the next step.
//!
//! The PIN goes from the request straight to the card driver and is dropped there:
//! it is not stored, logged, or sent anywhere else. The face read is kept only while
//! its screen is shown, only for the session that asked for the read, and is cleared
//! by the next card, a reset, or that session's logout.

use kakanai_hw::card::{CardError, CardKind, Credential, ReadScope};
use kakanai_protocol::personal::CardFace;

use super::session::SessionView;
use super::staff::{LookupCard, LookupCardRequest, Secret};
use super::Ui;

/// How the card is unlocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// 暗証番号 typed by the resident.
    Pin,
    /// 照合番号B typed by staff.
    CodeB,
}

/// A message with what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What happened.
    pub title: String,
    /// What to do now.
    pub next: String,
}

fn notice(title: impl Into<String>, next: impl Into<String>) -> Notice {
    Notice {
        title: title.into(),
        next: next.into(),
    }
}

/// Where the resident lookup stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Asked; no answer yet.
    Pending,
    /// Answered: the candidates, best first, and whether the first matches exactly.
    Answered {
        /// Exactly one candidate matches everything.
        exact: bool,
        /// The candidates (personal data).
        candidates: Vec<super::staff::Candidate>,
    },
    /// The control plane does not offer the lookup (yet).
    NotAvailable,
    /// The control plane cannot be reached.
    Unreachable,
    /// Refused or failed, with the control plane's reason.
    Failed(String),
}

/// What the card screen shows.
#[derive(Debug, Clone)]
pub enum CardScreen {
    /// No card on the reader.
    Waiting,
    /// A card was put on the reader; finding out which.
    Identifying,
    /// A My Number card, ready for the PIN or 照合番号B.
    Ready {
        /// Tries left on the PIN (0 = locked).
        pin_tries: u8,
        /// Why the previous attempt failed.
        notice: Option<Notice>,
    },
    /// Reading.
    Reading(Entry),
    /// The card was read.
    Read {
        /// The face (personal data).
        face: Box<CardFace>,
        /// The resident lookup.
        lookup: Lookup,
        /// The card has been taken off the reader since.
        card_removed: bool,
    },
    /// Something needs the staff's attention.
    Problem(Notice),
}

impl CardScreen {
    /// The state's name in the `card` event (no personal data).
    pub fn name(&self) -> &'static str {
        match self {
            CardScreen::Waiting => "waiting",
            CardScreen::Identifying => "identifying",
            CardScreen::Ready { .. } => "ready",
            CardScreen::Reading(_) => "reading",
            CardScreen::Read { .. } => "read",
            CardScreen::Problem(_) => "problem",
        }
    }
}

/// The flow's state.
#[derive(Debug)]
pub struct CardState {
    /// The screen.
    pub screen: CardScreen,
    /// The reader the card is on.
    pub reader: Option<String>,
    /// A card is on the reader.
    pub present: bool,
    /// Bumped by every card put on the reader and every reset: late results of an
    /// older card are dropped.
    pub epoch: u64,
    /// The session that asked for the read (only it sees the face).
    pub owner: Option<String>,
}

impl Default for CardState {
    fn default() -> Self {
        Self {
            screen: CardScreen::Waiting,
            reader: None,
            present: false,
            epoch: 0,
            owner: None,
        }
    }
}

fn reader_problem(e: &CardError) -> Notice {
    match e {
        CardError::NoReader | CardError::ReaderNotFound(_) => notice(
            "カードリーダーが見つかりません。",
            "カードリーダーのケーブルを確認してください。直らない場合は情報システム担当に連絡してください。",
        ),
        CardError::Busy => notice(
            "カードを別の処理が使用中です。",
            "少し待ってから「最初からやり直す」を押してください。",
        ),
        _ => notice(
            "カードを読み取れませんでした。",
            "カードをいったん取り外し、置き直してください。続く場合はカードリーダーの接続を確認してください。",
        ),
    }
}

fn removed_mid_read() -> Notice {
    notice(
        "読み取りの途中でカードが外されました。",
        "カードをもう一度カードリーダーに置いてください。暗証番号の回数は減っていません。",
    )
}

fn kind_problem(kind: CardKind) -> Notice {
    match kind {
        CardKind::JukiCard => notice(
            "住民基本台帳カードは読み取りに対応していません。",
            "マイナンバーカードをお持ちでないか確認してください。",
        ),
        CardKind::DriversLicence => notice(
            "運転免許証はこの画面では読み取れません。",
            "マイナンバーカードを置いてください。",
        ),
        _ => notice(
            "このカードは読み取れません。",
            "マイナンバーカードを置いてください。カードの向きと裏表も確認してください。",
        ),
    }
}

fn pin_locked() -> Notice {
    notice(
        "暗証番号がロックされています。",
        "暗証番号の再設定は市民課の窓口で行えます。職員が照合番号Bを入力して読み取ることはできます。",
    )
}

impl Ui {
    fn card_lock(&self) -> std::sync::MutexGuard<'_, CardState> {
        self.inner
            .card
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the card state, then tells the pages and the lights.
    fn with_card<R>(&self, f: impl FnOnce(&mut CardState) -> R) -> R {
        let (result, name) = {
            let mut state = self.card_lock();
            let r = f(&mut state);
            let busy = matches!(
                state.screen,
                CardScreen::Identifying | CardScreen::Reading(_)
            );
            let present = state.present;
            // Still under the card lock: the status strip follows the card state in
            // the order it changed. Updated after the lock, a task that changed the
            // card first but got here last would put back an older state (a strip
            // stuck on 読み取り中 after a read that failed).
            self.update_status(|s| {
                s.card_busy = busy;
                s.card_present = present;
            });
            (r, state.screen.name())
        };
        self.publish(
            "card",
            format!("{{\"state\":\"{name}\",\"t\":{}}}", super::now_ms()),
        );
        result
    }

    /// A card was put on `reader`.
    pub(crate) fn card_inserted(&self, reader: String) {
        let epoch = self.with_card(|s| {
            s.epoch += 1;
            s.reader = Some(reader.clone());
            s.present = true;
            s.owner = None;
            s.screen = CardScreen::Identifying;
            s.epoch
        });
        self.spawn_identify(reader, epoch);
    }

    fn spawn_identify(&self, reader: String, epoch: u64) {
        let ui = self.clone();
        tokio::spawn(async move {
            let devices = &ui.inner.devices;
            let screen = match devices.identify_card(reader.clone()).await {
                Ok(CardKind::MyNumberCard) => match devices.pin_tries(reader).await {
                    Ok(0) => CardScreen::Ready {
                        pin_tries: 0,
                        notice: Some(pin_locked()),
                    },
                    Ok(n) => CardScreen::Ready {
                        pin_tries: n,
                        notice: None,
                    },
                    Err(CardError::CardRemoved | CardError::NoCard) => CardScreen::Waiting,
                    Err(e) => CardScreen::Problem(reader_problem(&e)),
                },
                Ok(kind) => CardScreen::Problem(kind_problem(kind)),
                Err(CardError::CardRemoved | CardError::NoCard) => CardScreen::Waiting,
                Err(e) => {
                    tracing::warn!(error = %e, "card not identified");
                    CardScreen::Problem(reader_problem(&e))
                }
            };
            ui.with_card(|s| {
                if s.epoch == epoch {
                    s.screen = screen;
                }
            });
        });
    }

    /// The card was taken off `reader`.
    pub(crate) fn card_removed(&self, reader: &str) {
        self.with_card(|s| {
            if s.reader.as_deref() != Some(reader) {
                return;
            }
            s.present = false;
            match &mut s.screen {
                CardScreen::Read { card_removed, .. } => *card_removed = true,
                // The read itself reports the removal.
                CardScreen::Reading(_) => {}
                CardScreen::Problem(_) => {}
                _ => s.screen = CardScreen::Waiting,
            }
        });
    }

    /// Reads the card with what the resident or staff typed, for `session`. Refused
    /// (with the message to show) when no card is ready for it.
    pub(crate) fn card_submit(
        &self,
        session: &SessionView,
        token: Secret,
        entry: Entry,
        credential: Credential,
    ) -> Result<(), Notice> {
        let (reader, epoch) = self.with_card(|s| {
            match &s.screen {
                CardScreen::Ready { pin_tries: 0, .. } if entry == Entry::Pin => {
                    return Err(pin_locked())
                }
                CardScreen::Ready { .. } => {}
                CardScreen::Reading(_) | CardScreen::Identifying => {
                    return Err(notice("読み取り中です。", "そのままお待ちください。"))
                }
                _ => {
                    return Err(notice(
                        "読み取れるカードがありません。",
                        "マイナンバーカードをカードリーダーに置いてください。",
                    ))
                }
            }
            let reader = s.reader.clone().ok_or_else(|| {
                notice(
                    "カードリーダーが見つかりません。",
                    "カードを置き直してください。",
                )
            })?;
            s.screen = CardScreen::Reading(entry);
            s.owner = Some(session.id.clone());
            Ok((reader, s.epoch))
        })?;
        let ui = self.clone();
        let owner = session.id.clone();
        tokio::spawn(async move {
            let read = ui
                .inner
                .devices
                .read_my_number_card(reader, credential, ReadScope::FaceOnly)
                .await;
            let mut face_for_lookup = None;
            ui.with_card(|s| {
                if s.epoch != epoch {
                    return;
                }
                let tries = match &s.screen {
                    CardScreen::Ready { pin_tries, .. } => *pin_tries,
                    _ => 3,
                };
                s.screen = match read {
                    Ok(read) => {
                        face_for_lookup = Some(read.face.clone());
                        CardScreen::Read {
                            face: Box::new(read.face),
                            lookup: Lookup::Pending,
                            card_removed: !s.present,
                        }
                    }
                    Err(CardError::PinIncorrect { remaining }) => {
                        let (what, pin_tries) = match entry {
                            Entry::Pin => ("暗証番号", remaining),
                            Entry::CodeB => ("照合番号B", tries),
                        };
                        let next = if remaining == 1 {
                            format!("残り{remaining}回です。あと1回間違えるとロックされます。確認してから入力してください。")
                        } else {
                            format!("残り{remaining}回です。もう一度入力してください。")
                        };
                        CardScreen::Ready {
                            pin_tries,
                            notice: Some(notice(format!("{what}が違います。"), next)),
                        }
                    }
                    Err(CardError::PinLocked) => match entry {
                        Entry::Pin => CardScreen::Ready {
                            pin_tries: 0,
                            notice: Some(pin_locked()),
                        },
                        Entry::CodeB => CardScreen::Problem(notice(
                            "照合番号Bがロックされています。",
                            "住民の方に暗証番号を入力していただくか、市民課の窓口を案内してください。",
                        )),
                    },
                    Err(CardError::CardRemoved | CardError::NoCard) => {
                        CardScreen::Problem(removed_mid_read())
                    }
                    Err(CardError::WrongCard { .. }) => {
                        CardScreen::Problem(kind_problem(CardKind::Unknown))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "card read failed");
                        CardScreen::Problem(reader_problem(&e))
                    }
                };
            });
            if let Some(face) = face_for_lookup {
                ui.lookup(owner, token, face, epoch).await;
            }
        });
        Ok(())
    }

    async fn lookup(&self, owner: String, token: Secret, face: CardFace, epoch: u64) {
        let lookup = if self.inner.link.is_online() {
            let request = LookupCardRequest { card: face };
            let timeout = self.inner.config.rpc_timeout;
            match self
                .inner
                .link
                .rpc_in_session::<LookupCard>(token.expose(), &request, timeout)
                .await
            {
                Ok(Ok(answer)) => Lookup::Answered {
                    exact: answer.exact,
                    candidates: answer.candidates,
                },
                Ok(Err(e)) if e.code == "unknown-method" => Lookup::NotAvailable,
                Ok(Err(e)) if e.code == "unauthenticated" => {
                    self.inner
                        .sessions
                        .logout(&owner, Some(super::session::EXPIRED));
                    Lookup::Failed("ログインの有効期限が切れました。".into())
                }
                Ok(Err(e)) if e.code == "forbidden" => {
                    Lookup::Failed("住民情報を照会する権限がありません。".into())
                }
                Ok(Err(e)) => Lookup::Failed(e.message),
                Err(_) => Lookup::Unreachable,
            }
        } else {
            Lookup::Unreachable
        };
        let current = self.with_card(|s| {
            if s.epoch != epoch {
                return false;
            }
            if let CardScreen::Read { lookup: l, .. } = &mut s.screen {
                *l = lookup;
            }
            true
        });
        if current {
            self.auto_take_card(&owner, &token);
        }
    }

    /// Starts over: the face is forgotten; a card still on the reader is checked again.
    pub(crate) fn card_reset(&self) {
        let again = self.with_card(|s| {
            s.epoch += 1;
            s.owner = None;
            match (&s.reader, s.present) {
                (Some(reader), true) => {
                    s.screen = CardScreen::Identifying;
                    Some((reader.clone(), s.epoch))
                }
                _ => {
                    s.screen = CardScreen::Waiting;
                    None
                }
            }
        });
        if let Some((reader, epoch)) = again {
            self.spawn_identify(reader, epoch);
        }
    }

    /// Forgets what session `id` read (at its logout), and its visit.
    pub(crate) fn card_forget(&self, id: &str) {
        let owned = self.card_lock().owner.as_deref() == Some(id);
        if owned {
            self.card_reset();
        }
        self.visit_end(id);
    }

    /// Runs `f` on the screen as session `id` may see it: the face only for the
    /// session that asked for the read.
    pub(crate) fn card_view<R>(&self, id: &str, f: impl FnOnce(&CardScreen, bool) -> R) -> R {
        let state = self.card_lock();
        let mine = state.owner.as_deref().is_none_or(|o| o == id);
        f(&state.screen, mine)
    }
}
