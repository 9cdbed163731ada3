//! The application record, its states and the transitions between them.
//!
//! ```text
//!  draft ──print──▶ printed ──accept──▶ accepted ──export──▶ exported ──complete──▶ completed
//!    │  ◀─reprint─┘   │                   │
//!    └──────cancel────┴───────cancel──────┘──▶ cancelled
//! ```
//!
//! `print` may repeat (a jammed or lost sheet is printed again; the last PDF's hash
//! and page count are kept). Nothing leaves `exported` but `complete`: the core system
//! has the data, so a cancellation there is the core system's business. Every other
//! move is refused with [`TransitionError::Illegal`] and changes nothing.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplicationState {
    /// 作成済み — filled, not printed yet.
    Draft,
    /// 印刷済み — printed, waiting for the resident's signature.
    Printed,
    /// 受付済み — signed and accepted at the counter (form's 2-D code scanned).
    Accepted,
    /// 連携済み — handed to the core systems in an export batch.
    Exported,
    /// 完了 — the core system has processed it.
    Completed,
    /// 取消 — cancelled before export.
    Cancelled,
}

impl ApplicationState {
    /// Every state.
    pub const ALL: [ApplicationState; 6] = [
        Self::Draft,
        Self::Printed,
        Self::Accepted,
        Self::Exported,
        Self::Completed,
        Self::Cancelled,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Printed => "printed",
            Self::Accepted => "accepted",
            Self::Exported => "exported",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The state with this stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Japanese label for screens.
    pub fn label(self) -> &'static str {
        match self {
            Self::Draft => "作成済み",
            Self::Printed => "印刷済み",
            Self::Accepted => "受付済み",
            Self::Exported => "連携済み",
            Self::Completed => "完了",
            Self::Cancelled => "取消",
        }
    }
}

impl fmt::Display for ApplicationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an application was cancelled. A code, not free text, because it goes into the
/// audit log, which must not hold names or addresses; a note for the file stays on
/// the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// 本人の取下げ — the resident withdrew.
    Withdrawn,
    /// 記載誤り — wrong data; a new application replaces it.
    WrongData,
    /// 重複 — a duplicate.
    Duplicate,
    /// 対象外 — the procedure turned out not to apply.
    NotApplicable,
    /// その他 (see the note).
    Other,
}

impl CancelReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Withdrawn => "withdrawn",
            Self::WrongData => "wrong_data",
            Self::Duplicate => "duplicate",
            Self::NotApplicable => "not_applicable",
            Self::Other => "other",
        }
    }

    /// The reason with this stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Withdrawn,
            Self::WrongData,
            Self::Duplicate,
            Self::NotApplicable,
            Self::Other,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Japanese label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Withdrawn => "本人取下げ",
            Self::WrongData => "記載誤り",
            Self::Duplicate => "重複",
            Self::NotApplicable => "対象外",
            Self::Other => "その他",
        }
    }
}

/// A change of state asked for by a member of staff. (`export` is not here: only the
/// export itself moves applications to `exported`, batch by batch.)
#[derive(Clone, PartialEq, Eq)]
pub enum Transition {
    /// The form was printed: the PDF's SHA-256 and page count.
    Print {
        /// SHA-256 of the PDF sent to the printer.
        pdf_sha256: [u8; 32],
        /// Its pages.
        pages: u32,
    },
    /// 受付: the resident signed; staff scanned the form's code.
    Accept,
    /// The core system processed it.
    Complete,
    /// Cancelled, with a reason code and an optional note kept on the application
    /// (never in the audit log).
    Cancel {
        /// Why.
        reason: CancelReason,
        /// Free text for the file (may be empty).
        note: String,
    },
}

impl fmt::Debug for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Print { pdf_sha256, pages } => f
                .debug_struct("Print")
                .field("pdf_sha256", &hex::encode(pdf_sha256))
                .field("pages", pages)
                .finish(),
            Self::Accept => f.write_str("Accept"),
            Self::Complete => f.write_str("Complete"),
            // The note is free text: it may name someone.
            Self::Cancel { reason, .. } => f
                .debug_struct("Cancel")
                .field("reason", reason)
                .finish_non_exhaustive(),
        }
    }
}

impl Transition {
    /// The audit action name (`application.print` …).
    pub fn action(&self) -> &'static str {
        match self {
            Self::Print { .. } => "application.print",
            Self::Accept => "application.accept",
            Self::Complete => "application.complete",
            Self::Cancel { .. } => "application.cancel",
        }
    }

    /// The state it leads to.
    pub fn target(&self) -> ApplicationState {
        match self {
            Self::Print { .. } => ApplicationState::Printed,
            Self::Accept => ApplicationState::Accepted,
            Self::Complete => ApplicationState::Completed,
            Self::Cancel { .. } => ApplicationState::Cancelled,
        }
    }

    /// Whether it may start from `from`.
    pub fn allowed_from(&self, from: ApplicationState) -> bool {
        use ApplicationState as S;
        match self {
            Self::Print { .. } => matches!(from, S::Draft | S::Printed),
            Self::Accept => from == S::Printed,
            Self::Complete => from == S::Exported,
            Self::Cancel { .. } => matches!(from, S::Draft | S::Printed | S::Accepted),
        }
    }
}

/// Why a transition was refused. Nothing changed in any case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The move is not allowed from the current state.
    #[error("an application that is {from} cannot become {to}")]
    Illegal {
        /// The current state.
        from: ApplicationState,
        /// The state asked for.
        to: ApplicationState,
    },
    /// The transition's own data is unusable (0 pages …).
    #[error("invalid transition: {0}")]
    Invalid(&'static str),
}
