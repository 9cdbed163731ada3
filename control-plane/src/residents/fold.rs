//! Folding (正規化) of names and addresses into search keys.
//!
//! Stored text is kept exactly as the core system wrote it (IVS selectors, characters
//! outside the BMP, 旧字体); only the *keys* used for matching are folded, and the
//! query is folded the same way, so "髙橋　太郎" on a card finds "高橋 太郎" in a file
//! and the other way round (DESIGN.md, "Dates, time and text").
//!
//! What folding does, in order:
//! - full-width ASCII (Ａ, １, －) → ASCII; U+3000 → space;
//! - half-width katakana (ｶﾞ) → full-width (ガ), hiragana → katakana, combining
//!   (semi-)voiced marks composed, small kana → large (ァ → ア) so a reading typed
//!   loosely still matches;
//! - ideographic variation selectors (U+E0100–E01EF) and standard variation selectors
//!   (U+FE00–FE0F) dropped;
//! - 旧字体 / 異体字 → the common form through [`variant_of`] (髙 → 高, 﨑 → 崎,
//!   邊/邉 → 辺, 齋 → 斎, 澤 → 沢, 𠮷 → 吉 …);
//! - spaces and middle dots dropped (family/given separators differ between sources).
//!
//! Addresses additionally get [`fold_address`]: kanji numerals before 丁目/番/号 become
//! digits, and 「1丁目2番3号」, 「1丁目2番地3」, 「1-2-3」, 「1の2の3」 all become `1-2-3`.

/// Maps a 旧字体 or 異体字 to the form used for matching. The table covers the variants
/// most common in family and place names; it only ever widens matches, so a missing
/// entry costs a candidate, never a wrong exact match.
pub fn variant_of(c: char) -> char {
    match c {
        '髙' => '高',
        '﨑' | '嵜' | '碕' => '崎',
        '邊' | '邉' => '辺',
        '齋' => '斎',
        '齊' => '斉',
        '澤' => '沢',
        '濱' | '濵' => '浜',
        '國' => '国',
        '櫻' => '桜',
        '廣' => '広',
        '德' => '徳',
        '惠' => '恵',
        '榮' => '栄',
        '藏' => '蔵',
        '壽' => '寿',
        '眞' => '真',
        '實' => '実',
        '學' => '学',
        '龍' => '竜',
        '𠮷' => '吉',
        '冨' => '富',
        '嶋' | '嶌' => '島',
        '槇' => '槙',
        '桒' => '桑',
        '曻' => '昇',
        '黑' => '黒',
        '靑' => '青',
        '萬' => '万',
        '瀨' => '瀬',
        '禮' => '礼',
        '峯' => '峰',
        '嶽' => '岳',
        '會' => '会',
        '來' => '来',
        '寶' => '宝',
        '淺' => '浅',
        '圓' => '円',
        '發' => '発',
        '驛' => '駅',
        '縣' => '県',
        '顯' => '顕',
        '戶' => '戸',
        _ => c,
    }
}

fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Half-width katakana U+FF66..=U+FF9D as full-width, in code order.
const HALF_KANA: &str = "ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン";

fn small_to_large(c: char) -> char {
    match c {
        'ァ' => 'ア',
        'ィ' => 'イ',
        'ゥ' => 'ウ',
        'ェ' => 'エ',
        'ォ' => 'オ',
        'ッ' => 'ツ',
        'ャ' => 'ヤ',
        'ュ' => 'ユ',
        'ョ' => 'ヨ',
        'ヮ' => 'ワ',
        'ヵ' => 'カ',
        'ヶ' => 'ケ',
        _ => c,
    }
}

/// Adds a voiced (゛) or semi-voiced (゜) mark to a katakana, if it takes one.
fn voiced(c: char, semi: bool) -> Option<char> {
    let u = u32::from(c);
    if semi {
        // ハヒフヘホ are every third code point from U+30CF.
        if (0x30CF..=0x30DB).contains(&u) && (u - 0x30CF) % 3 == 0 {
            return char::from_u32(u + 2);
        }
        return None;
    }
    if c == 'ウ' {
        return Some('ヴ');
    }
    let takes = matches!(c, 'カ'..='ト' | 'ハ'..='ホ')
        && match c {
            // カ..ト: the unvoiced ones sit at odd offsets from カ, except after ッ.
            'カ'..='チ' => (u - 0x30AB) % 2 == 0,
            'ツ' | 'テ' | 'ト' => true,
            'ハ'..='ホ' => (u - 0x30CF) % 3 == 0,
            _ => false,
        };
    if takes {
        char::from_u32(u + 1)
    } else {
        None
    }
}

/// Folds text for matching (see the module doc): width, kana, variation selectors,
/// 旧字体, spaces. Used for names and as the first step of [`fold_address`].
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let u = u32::from(c);
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(u - 0xFEE0).unwrap_or(c),
            '\u{3000}' | '\u{00A0}' | '\t' | ' ' => continue,
            '・' | '･' => continue,
            '\u{FF66}'..='\u{FF9D}' => HALF_KANA.chars().nth((u - 0xFF66) as usize).unwrap_or(c),
            '\u{3041}'..='\u{3096}' => char::from_u32(u + 0x60).unwrap_or(c),
            '\u{3099}' | '\u{FF9E}' | '\u{309B}' | '\u{309A}' | '\u{FF9F}' | '\u{309C}' => {
                let semi = matches!(c, '\u{309A}' | '\u{FF9F}' | '\u{309C}');
                if let Some(prev) = out.pop() {
                    match voiced(prev, semi) {
                        Some(v) => out.push(v),
                        None => out.push(prev),
                    }
                }
                continue;
            }
            c if is_variation_selector(c) => continue,
            c => c,
        };
        out.push(small_to_large(variant_of(c)));
    }
    out
}

/// The value of a kanji numeral digit, for 丁目/番地 numbers.
fn kanji_digit(c: char) -> Option<u32> {
    Some(match c {
        '〇' | '零' => 0,
        '一' => 1,
        '二' => 2,
        '三' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

/// Reads a kanji number (一, 十二, 二十三, 百五, 一〇五) as a value.
fn kanji_number(s: &[char]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    if !s.iter().any(|c| matches!(c, '十' | '百' | '千')) {
        // Positional (一〇五).
        return s
            .iter()
            .try_fold(0u32, |acc, &c| Some(acc * 10 + kanji_digit(c)?));
    }
    let mut total = 0u32;
    let mut digit: Option<u32> = None;
    for &c in s {
        let unit = match c {
            '十' => 10,
            '百' => 100,
            '千' => 1000,
            c => {
                digit = Some(kanji_digit(c)?);
                continue;
            }
        };
        total += digit.take().unwrap_or(1) * unit;
    }
    Some(total + digit.unwrap_or(0))
}

fn is_kanji_numeral(c: char) -> bool {
    kanji_digit(c).is_some() || matches!(c, '十' | '百' | '千')
}

fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '‐' | '‑' | '‒' | '–' | '—' | '―' | '−' | 'ー' | 'ｰ' | '─' | '━'
    )
}

/// Folds an address for matching: [`fold`], then block numbers in one notation
/// (`1-2-3`), so 「１丁目２番３号」, 「一丁目二番三号」, 「1丁目2番地3」 and 「1-2-3」 meet.
pub fn fold_address(text: &str) -> String {
    let chars: Vec<char> = fold(text).chars().collect();
    // Pass 1: kanji numerals directly before 丁目 / 番 / 号 / の+number become digits.
    // Only there: town names such as 三本木町 or 八幡町 keep their numerals.
    let mut pass1: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if is_kanji_numeral(chars[i]) {
            let start = i;
            while i < chars.len() && is_kanji_numeral(chars[i]) {
                i += 1;
            }
            let next = chars.get(i).copied();
            let before_marker = matches!(next, Some('丁' | '番' | '号'));
            // Or the last number of a block address: 「二十三番地の五」.
            let after_marker = ["番地ノ", "番地", "番", "ノ", "丁目", "-"].iter().any(|m| {
                let m: Vec<char> = m.chars().collect();
                pass1.ends_with(&m)
                    && pass1
                        .len()
                        .checked_sub(m.len() + 1)
                        .and_then(|j| pass1.get(j))
                        .is_some_and(char::is_ascii_digit)
            });
            match kanji_number(&chars[start..i]) {
                Some(n) if before_marker || after_marker => pass1.extend(n.to_string().chars()),
                _ => pass1.extend_from_slice(&chars[start..i]),
            }
            continue;
        }
        pass1.push(chars[i]);
        i += 1;
    }
    // Pass 2: markers after a digit become `-` (丁目, 番地, 番, の, dashes) or go (号).
    let mut out = String::with_capacity(pass1.len());
    let mut i = 0;
    let after_digit = |out: &String| out.chars().last().is_some_and(|c| c.is_ascii_digit());
    while i < pass1.len() {
        let c = pass1[i];
        let rest = &pass1[i..];
        if after_digit(&out) {
            let marker_len = if rest.starts_with(&['丁', '目']) || rest.starts_with(&['番', '地'])
            {
                Some(2)
            } else if matches!(c, '番' | 'の' | 'ノ' | '之') || is_dash(c) {
                Some(1)
            } else {
                None
            };
            if let Some(len) = marker_len {
                out.push('-');
                i += len;
                // 「番地の」: one separator, not two.
                if matches!(pass1.get(i), Some('の' | 'ノ')) {
                    i += 1;
                }
                continue;
            }
            if c == '号' {
                i += 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    // A trailing separator (「2番地」, 「1丁目」 alone) carries nothing.
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Whether a folded card address matches a folded stored address: equal, or the
/// card adds a 方書 (building, room) after the stored block number, or the stored one
/// omits the prefecture and city the card shows. A prefix must end at a block-number
/// boundary, so `1-2-3` does not match `1-2-30`.
pub fn address_matches(card: &str, stored: &str) -> bool {
    if card.is_empty() || stored.is_empty() {
        return false;
    }
    if card == stored {
        return true;
    }
    if let Some(rest) = card.strip_prefix(stored) {
        return !rest.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    }
    if let Some(head) = stored.strip_suffix(card) {
        // The stored address is longer at the front only (prefecture and city).
        return !head.ends_with(|c: char| c.is_ascii_digit());
    }
    false
}

/// Whether folded text is a reading (katakana and the long-vowel mark only), so a
/// prefix query goes to the kana key rather than the kanji key.
pub fn is_kana(folded: &str) -> bool {
    !folded.is_empty()
        && folded
            .chars()
            .all(|c| matches!(c, '\u{30A1}'..='\u{30FA}' | 'ー' | 'ヽ' | 'ヾ'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_width_space_kana_and_variants() {
        assert_eq!(fold("髙橋　太郎"), fold("高橋 太郎"));
        assert_eq!(fold("山﨑 花子"), "山崎花子");
        assert_eq!(fold("渡邉\u{E0111}　一"), "渡辺一");
        assert_eq!(fold("渡邊一"), "渡辺一");
        assert_eq!(fold("𠮷田"), "吉田");
        assert_eq!(fold("ﾔﾏﾀﾞ ﾀﾛｳ"), "ヤマダタロウ");
        assert_eq!(fold("やまだ　たろう"), "ヤマダタロウ");
        assert_eq!(fold("ｼﾞｮﾝ"), "ジヨン");
        assert_eq!(fold("ﾊﾟﾌﾞﾛ"), "パブロ");
        assert_eq!(fold("ｳﾞｨ"), "ヴイ");
        assert_eq!(fold("Ａｂｃ１２３"), "Abc123");
    }

    #[test]
    fn block_numbers_meet() {
        let a = fold_address("桜町１丁目２番３号");
        assert_eq!(a, "桜町1-2-3");
        assert_eq!(fold_address("桜町1-2-3"), a);
        assert_eq!(fold_address("桜町一丁目二番三号"), a);
        assert_eq!(fold_address("桜町1丁目2番地3"), a);
        assert_eq!(fold_address("桜町１－２－３"), a);
        assert_eq!(fold_address("桜町1ー2ー3"), a);
        assert_eq!(fold_address("桜町1の2の3"), a);
        assert_eq!(fold_address("三本木町12番地"), "三本木町12");
        assert_eq!(fold_address("桜町二十三番地の五"), "桜町23-5");
    }

    #[test]
    fn card_address_with_building_matches() {
        let stored = fold_address("A県B市桜町1丁目2番3号");
        assert!(address_matches(
            &fold_address("A県B市桜町１丁目２番３号　コーポ桜１０１号室"),
            &stored
        ));
        assert!(!address_matches(&fold_address("A県B市桜町1-2-30"), &stored));
        assert!(address_matches(&fold_address("桜町1-2-3"), &stored));
    }

    #[test]
    fn kana_detection() {
        assert!(is_kana(&fold("やまだ")));
        assert!(!is_kana(&fold("山田")));
    }
}
