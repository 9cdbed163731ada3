//! Text read from a card that staff must check before it is used.
//!
//! Names on cards may hold characters outside the common sets: 外字 references on a
//! driver's licence, private-use code points where a card's issuer had no standard
//! character. Such text is kept exactly as read and flagged; nothing is guessed.

/// Whether `c` is a private-use code point (BMP or the two supplementary planes).
pub fn is_private_use(c: char) -> bool {
    matches!(c, '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{FFFFD}' | '\u{100000}'..='\u{10FFFD}')
}

/// Whether any of `texts` holds a character staff must check.
pub fn needs_check<'a>(texts: impl IntoIterator<Item = &'a str>) -> bool {
    texts
        .into_iter()
        .any(|t| t.chars().any(|c| is_private_use(c) || c == '\u{FFFD}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_private_use_but_not_ivs_or_non_bmp_kanji() {
        assert!(needs_check(["山\u{E000}"]));
        assert!(!needs_check(["邉\u{E0111}", "𠮷野"]));
    }
}
