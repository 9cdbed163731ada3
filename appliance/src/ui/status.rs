//! What the status strip shows and the events pushed to the tablet.
//!
//! [`Status`] is the appliance's view of the counter: link to the control plane,
//! card reader, printer, scanner, and the lights pattern. Every change is pushed to
//! every open page as a Server-Sent Event ([`UiEvent`]). Events never carry personal
//! data: "the card screen changed" is all a page learns from `/events`; it then
//! fetches the screen over a normal authenticated request.

use std::collections::BTreeSet;

use kakanai_hw::lights::Pattern;
use kakanai_hw::printer::PrinterStatus;
use serde::Serialize;

use super::lights::{pattern_name, Signals};

/// A device's state as the strip shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Ready.
    Ok(String),
    /// Works, but staff should know (e.g. paper low).
    Warn(String),
    /// Does not work.
    Bad(String),
    /// Not part of this counter.
    None(String),
}

impl Health {
    fn tone(&self) -> &'static str {
        match self {
            Health::Ok(_) => "ok",
            Health::Warn(_) => "warn",
            Health::Bad(_) => "bad",
            Health::None(_) => "none",
        }
    }

    fn label(&self) -> &str {
        match self {
            Health::Ok(l) | Health::Warn(l) | Health::Bad(l) | Health::None(l) => l,
        }
    }
}

/// The printer as the appliance knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrinterView {
    /// No printer configured.
    NotConfigured,
    /// Not asked yet.
    Unknown,
    /// What it said last.
    Known(PrinterStatus),
}

/// The counter's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The link to the control plane is up.
    pub online: bool,
    /// Whether a reader is configured.
    pub reader_configured: bool,
    /// Readers attached now.
    pub readers: BTreeSet<String>,
    /// The reader watch is failing (restarting).
    pub reader_fault: bool,
    /// A card is on a reader.
    pub card_present: bool,
    /// A card is being identified or read.
    pub card_busy: bool,
    /// The printer.
    pub printer: PrinterView,
    /// Print jobs in progress (ids).
    pub printing: BTreeSet<String>,
    /// Whether a scanner is configured.
    pub scanner_configured: bool,
    /// The scanner is connected.
    pub scanner_connected: bool,
    /// The lights' pattern.
    pub lights: Pattern,
}

impl Status {
    /// The starting state: offline, nothing attached yet.
    pub fn new(
        reader_configured: bool,
        printer_configured: bool,
        scanner_configured: bool,
    ) -> Self {
        Self {
            online: false,
            reader_configured,
            readers: BTreeSet::new(),
            reader_fault: false,
            card_present: false,
            card_busy: false,
            printer: if printer_configured {
                PrinterView::Unknown
            } else {
                PrinterView::NotConfigured
            },
            printing: BTreeSet::new(),
            scanner_configured,
            scanner_connected: false,
            lights: Pattern::Off,
        }
    }

    /// What the lights depend on.
    pub fn signals(&self) -> Signals {
        let printer_fault = matches!(&self.printer, PrinterView::Known(p) if !p.can_print());
        Signals {
            online: self.online,
            device_fault: printer_fault || self.reader_fault,
            busy: self.card_busy || !self.printing.is_empty(),
            card_present: self.card_present,
        }
    }

    /// The link to the control plane.
    pub fn link(&self) -> Health {
        if self.online {
            Health::Ok("接続中".into())
        } else {
            Health::Bad("通信切断".into())
        }
    }

    /// The card reader.
    pub fn reader(&self) -> Health {
        if !self.reader_configured {
            Health::None("なし".into())
        } else if self.reader_fault {
            Health::Bad("エラー".into())
        } else if self.readers.is_empty() {
            Health::Bad("未接続".into())
        } else if self.card_busy {
            Health::Ok("読み取り中".into())
        } else if self.card_present {
            Health::Ok("カードあり".into())
        } else {
            Health::Ok("準備完了".into())
        }
    }

    /// The printer.
    pub fn printer(&self) -> Health {
        match &self.printer {
            PrinterView::NotConfigured => Health::None("なし".into()),
            PrinterView::Unknown => Health::Warn("確認中".into()),
            PrinterView::Known(p) if !p.can_print() => Health::Bad(p.label_ja()),
            PrinterView::Known(_) if !self.printing.is_empty() => Health::Ok("印刷中".into()),
            PrinterView::Known(p @ PrinterStatus::Online { conditions, .. })
                if !conditions.is_empty() =>
            {
                Health::Warn(p.label_ja())
            }
            PrinterView::Known(p) => Health::Ok(p.label_ja()),
        }
    }

    /// The scanner.
    pub fn scanner(&self) -> Health {
        if !self.scanner_configured {
            Health::None("なし".into())
        } else if self.scanner_connected {
            Health::Ok("準備完了".into())
        } else {
            Health::Bad("未接続".into())
        }
    }

    /// The strip's items: (id, name, health).
    pub fn items(&self) -> [(&'static str, &'static str, Health); 4] {
        [
            ("link", "本庁", self.link()),
            ("reader", "カードリーダー", self.reader()),
            ("printer", "プリンタ", self.printer()),
            ("scanner", "スキャナ", self.scanner()),
        ]
    }

    /// The JSON pushed as the `status` event; `now_ms` (ms since the epoch, with
    /// fractions) lets a page measure the delivery time.
    pub fn to_json(&self, now_ms: f64) -> String {
        #[derive(Serialize)]
        struct Item<'a> {
            id: &'a str,
            tone: &'a str,
            label: &'a str,
        }
        #[derive(Serialize)]
        struct Json<'a> {
            online: bool,
            lights: &'a str,
            items: Vec<Item<'a>>,
            t: f64,
        }
        let items = self.items();
        let json = Json {
            online: self.online,
            lights: pattern_name(self.lights),
            items: items
                .iter()
                .map(|(id, _, h)| Item {
                    id,
                    tone: h.tone(),
                    label: h.label(),
                })
                .collect(),
            t: now_ms,
        };
        serde_json::to_string(&json).unwrap_or_else(|_| "{}".into())
    }
}

/// The tone class of a health value (for the HTML).
pub fn tone(h: &Health) -> &'static str {
    h.tone()
}

/// The label of a health value (for the HTML).
pub fn label(h: &Health) -> &str {
    h.label()
}

/// One Server-Sent Event: its name and JSON data (never personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiEvent {
    /// `status`, `card`, `print` or `scan`.
    pub name: &'static str,
    /// JSON.
    pub data: String,
}
