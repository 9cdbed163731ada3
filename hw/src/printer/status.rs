//! The printer's state for the staff UI: IPP `printer-state` and `printer-state-reasons`
//! (RFC 8011 §5.4.11–12, PWG 5100.9) as typed values with Japanese labels.

use std::fmt;

/// IPP `printer-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrinterState {
    /// Ready, nothing to do.
    Idle,
    /// Printing.
    Processing,
    /// Stopped: needs attention (or paused by an operator).
    Stopped,
}

impl PrinterState {
    /// From the IPP enum value.
    pub fn from_ipp(value: i32) -> Option<Self> {
        Some(match value {
            3 => Self::Idle,
            4 => Self::Processing,
            5 => Self::Stopped,
            _ => return None,
        })
    }

    /// Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Idle => "待機中",
            Self::Processing => "印刷中",
            Self::Stopped => "停止中",
        }
    }
}

/// A `printer-state-reasons` keyword the staff can act on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PrinterCondition {
    /// `media-empty`: a tray is out of paper.
    MediaEmpty,
    /// `media-needed`: a job waits for paper.
    MediaNeeded,
    /// `media-low`.
    MediaLow,
    /// `media-jam`.
    MediaJam,
    /// `toner-empty` or `marker-supply-empty`.
    TonerEmpty,
    /// `toner-low` or `marker-supply-low`.
    TonerLow,
    /// `door-open` or `cover-open`.
    DoorOpen,
    /// `offline` or `shutdown`.
    Offline,
    /// `paused`, `moving-to-paused`, `stopped-partly` or `stopping`: an operator or the
    /// printer stopped printing.
    Paused,
    /// Any other keyword (including `other`), kept for diagnostics.
    Other(String),
}

impl PrinterCondition {
    /// From one `printer-state-reasons` keyword; `None` for `none`. The severity suffix
    /// (`-error`, `-warning`, `-report`) is dropped: the staff UI shows the condition,
    /// and whether it blocks printing is decided by [`Self::blocks_printing`].
    pub fn from_keyword(keyword: &str) -> Option<Self> {
        let base = ["-error", "-warning", "-report"]
            .iter()
            .find_map(|suffix| keyword.strip_suffix(suffix))
            .unwrap_or(keyword);
        Some(match base {
            "none" | "" => return None,
            "media-empty" => Self::MediaEmpty,
            "media-needed" => Self::MediaNeeded,
            "media-low" => Self::MediaLow,
            "media-jam" => Self::MediaJam,
            "toner-empty" | "marker-supply-empty" => Self::TonerEmpty,
            "toner-low" | "marker-supply-low" => Self::TonerLow,
            "door-open" | "cover-open" | "interlock-open" => Self::DoorOpen,
            "offline" | "shutdown" => Self::Offline,
            "paused" | "moving-to-paused" | "stopped-partly" | "stopping" => Self::Paused,
            other => Self::Other(other.to_owned()),
        })
    }

    /// Whether the printer cannot print until staff act.
    pub fn blocks_printing(&self) -> bool {
        !matches!(self, Self::MediaLow | Self::TonerLow | Self::Other(_))
    }

    /// Japanese label for the staff UI.
    pub fn label_ja(&self) -> &str {
        match self {
            Self::MediaEmpty => "用紙切れ",
            Self::MediaNeeded => "用紙を補給してください",
            Self::MediaLow => "用紙残りわずか",
            Self::MediaJam => "紙詰まり",
            Self::TonerEmpty => "トナー切れ",
            Self::TonerLow => "トナー残りわずか",
            Self::DoorOpen => "カバーが開いています",
            Self::Offline => "オフライン",
            Self::Paused => "一時停止中",
            Self::Other(keyword) => keyword,
        }
    }
}

/// What the printer is doing, for the staff UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrinterStatus {
    /// The printer answered.
    Online {
        /// `printer-state`.
        state: PrinterState,
        /// `printer-state-reasons`, without `none`, deduplicated, in the printer's order.
        conditions: Vec<PrinterCondition>,
    },
    /// No connection or no answer within the timeout: cable, power or network.
    Unreachable,
}

impl PrinterStatus {
    /// Builds a status from IPP values, ignoring `none` and duplicates.
    pub fn from_ipp<'a>(state: PrinterState, reasons: impl IntoIterator<Item = &'a str>) -> Self {
        let mut conditions: Vec<PrinterCondition> = Vec::new();
        for c in reasons
            .into_iter()
            .filter_map(PrinterCondition::from_keyword)
        {
            if !conditions.contains(&c) {
                conditions.push(c);
            }
        }
        Self::Online { state, conditions }
    }

    /// Whether the printer would print a job now.
    pub fn can_print(&self) -> bool {
        match self {
            Self::Online { state, conditions } => {
                *state != PrinterState::Stopped && !conditions.iter().any(|c| c.blocks_printing())
            }
            Self::Unreachable => false,
        }
    }

    /// Whether a condition is present.
    pub fn has(&self, condition: &PrinterCondition) -> bool {
        matches!(self, Self::Online { conditions, .. } if conditions.contains(condition))
    }

    /// The state, when the printer answered.
    pub fn state(&self) -> Option<PrinterState> {
        match self {
            Self::Online { state, .. } => Some(*state),
            Self::Unreachable => None,
        }
    }

    /// One line for the staff UI, e.g. `待機中（用紙切れ）` or `接続できません`.
    pub fn label_ja(&self) -> String {
        match self {
            Self::Unreachable => "接続できません".to_owned(),
            Self::Online { state, conditions } if conditions.is_empty() => {
                state.label_ja().to_owned()
            }
            Self::Online { state, conditions } => {
                let list: Vec<&str> = conditions.iter().map(PrinterCondition::label_ja).collect();
                format!("{}（{}）", state.label_ja(), list.join("・"))
            }
        }
    }
}

impl fmt::Display for PrinterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label_ja())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_map_with_suffixes_and_unknowns() {
        assert_eq!(
            PrinterCondition::from_keyword("media-empty-error"),
            Some(PrinterCondition::MediaEmpty)
        );
        assert_eq!(
            PrinterCondition::from_keyword("toner-low-report"),
            Some(PrinterCondition::TonerLow)
        );
        assert_eq!(PrinterCondition::from_keyword("none"), None);
        assert_eq!(
            PrinterCondition::from_keyword("spool-area-full"),
            Some(PrinterCondition::Other("spool-area-full".into()))
        );
    }

    #[test]
    fn status_dedups_and_labels() {
        let s = PrinterStatus::from_ipp(
            PrinterState::Idle,
            ["media-empty", "media-empty-warning", "none", "toner-low"],
        );
        assert_eq!(s.label_ja(), "待機中（用紙切れ・トナー残りわずか）");
        assert!(!s.can_print());
        assert!(PrinterStatus::from_ipp(PrinterState::Idle, ["toner-low"]).can_print());
        assert!(!PrinterStatus::Unreachable.can_print());
    }
}
