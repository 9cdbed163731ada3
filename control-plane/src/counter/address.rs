//! Placing an address in the city's address master (kind `address_master`: 町字コード,
//! 町字名, 丁目, 番地 range, 小学校区, 中学校区), so a move knows its school districts.
//!
//! An address is matched on folded text ([`fold_address`]: 「2丁目3番4号」,
//! 「二丁目三番四号」 and 「2-3-4」 meet): the 町字名 without its 丁目 must follow the
//! municipality (or start the text), then the 丁目 (when the 町字 has them) and a
//! 番地 inside the row's range. Longer 町字名 are tried first, so 「山本町」 is never
//! taken for 「本町」. No match is an answer, not a guess: the caller asks staff to
//! choose the address.

use std::collections::BTreeMap;

use crate::model::TenantId;
use crate::residents::fold::fold_address;
use crate::store::{Store, StoreError};

/// The data kind of the address master.
pub const KIND: &str = "address_master";

/// One row of the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterRow {
    /// 町字コード.
    pub machiaza: String,
    /// 町字名 as written (with its 丁目).
    pub name: String,
    /// 町字カナ.
    pub kana: String,
    /// The folded 町字名 without its 丁目.
    base: String,
    /// 丁目 (0: none).
    pub chome: u32,
    /// First 番地 of the range.
    pub banchi_from: u32,
    /// Last 番地 of the range.
    pub banchi_to: u32,
    /// 小学校区.
    pub elementary: String,
    /// 中学校区.
    pub junior_high: String,
    /// 郵便番号.
    pub postal_code: String,
}

/// The city's address master.
#[derive(Debug, Clone, Default)]
pub struct AddressMaster {
    /// Rows, longest base name first.
    rows: Vec<MasterRow>,
}

/// Leading ASCII digits of `s` as a number, and the rest.
fn number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// Whether `c` may end what comes before a 町字名 (a municipality or prefecture).
fn ends_place(c: char) -> bool {
    matches!(
        c,
        '市' | '区' | '町' | '村' | '郡' | '県' | '都' | '道' | '府'
    )
}

impl AddressMaster {
    /// A master from its rows (as imported: every field text).
    pub fn from_rows(rows: Vec<BTreeMap<String, String>>) -> Self {
        let mut out: Vec<MasterRow> = rows
            .into_iter()
            .filter_map(|f| {
                let get = |k: &str| f.get(k).map(|s| s.trim().to_owned()).unwrap_or_default();
                let int = |k: &str| get(k).parse::<u32>().ok();
                let name = get("name");
                let chome = int("chome").unwrap_or(0);
                // 「緑町2丁目」, 「緑町二丁目」 and 「緑町２丁目」 all fold to 「緑町2」.
                let mut base = fold_address(&name);
                if chome > 0 {
                    if let Some(b) = base.strip_suffix(chome.to_string().as_str()) {
                        base = b.trim_end_matches('-').to_owned();
                    }
                }
                if base.is_empty() {
                    return None;
                }
                Some(MasterRow {
                    machiaza: get("machiaza"),
                    name,
                    kana: get("kana"),
                    base,
                    chome,
                    banchi_from: int("banchi_from").unwrap_or(0),
                    banchi_to: int("banchi_to")?,
                    elementary: get("elementary_school"),
                    junior_high: get("junior_high_school"),
                    postal_code: get("postal_code"),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.base
                .chars()
                .count()
                .cmp(&a.base.chars().count())
                .then_with(|| a.machiaza.cmp(&b.machiaza))
                .then_with(|| a.banchi_from.cmp(&b.banchi_from))
        });
        Self { rows: out }
    }

    /// The tenant's master as imported.
    pub async fn load(store: &Store, tenant: &TenantId) -> Result<Self, StoreError> {
        let records = store.records_of_kind(tenant, KIND).await?;
        Ok(Self::from_rows(
            records
                .iter()
                .map(|r| {
                    let v: BTreeMap<String, serde_json::Value> =
                        serde_json::from_str(&r.data).unwrap_or_default();
                    v.into_iter()
                        .map(|(k, v)| {
                            let s = match v {
                                serde_json::Value::String(s) => s,
                                other => other.to_string(),
                            };
                            (k, s)
                        })
                        .collect()
                })
                .collect(),
        ))
    }

    /// Each 町字 once (code, 町字名, カナ), by 町字コード.
    pub fn machiaza(&self) -> Vec<(&str, &str, &str)> {
        let mut out: Vec<(&str, &str, &str)> = self
            .rows
            .iter()
            .map(|r| (r.machiaza.as_str(), r.name.as_str(), r.kana.as_str()))
            .collect();
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// Whether the master has no rows (not imported yet).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row an address falls in, if exactly placed (町字, 丁目 and 番地 range).
    pub fn locate(&self, address: &str) -> Option<&MasterRow> {
        self.locate_where(address, |_| true)
    }

    /// The row of 町字コード `machiaza` the address falls in; if the text gives no
    /// usable 番地, the first row of that 町字 whose districts all its rows share.
    pub fn locate_in(&self, machiaza: &str, address: &str) -> Option<&MasterRow> {
        if let Some(r) = self.locate_where(address, |r| r.machiaza == machiaza) {
            return Some(r);
        }
        let rows: Vec<&MasterRow> = self
            .rows
            .iter()
            .filter(|r| r.machiaza == machiaza)
            .collect();
        let first = rows.first()?;
        rows.iter()
            .all(|r| r.elementary == first.elementary && r.junior_high == first.junior_high)
            .then_some(*first)
    }

    fn locate_where(&self, address: &str, keep: impl Fn(&MasterRow) -> bool) -> Option<&MasterRow> {
        let folded = fold_address(address);
        for row in self.rows.iter().filter(|r| keep(r)) {
            for (pos, _) in folded.match_indices(row.base.as_str()) {
                let before_ok = folded[..pos].chars().next_back().is_none_or(ends_place);
                if !before_ok {
                    continue;
                }
                let rest = &folded[pos + row.base.len()..];
                let banchi = if row.chome > 0 {
                    match number(rest) {
                        Some((c, tail)) if c == row.chome => {
                            tail.strip_prefix('-').and_then(number).map(|(b, _)| b)
                        }
                        _ => None,
                    }
                } else {
                    number(rest).map(|(b, _)| b)
                };
                if banchi.is_some_and(|b| (row.banchi_from..=row.banchi_to).contains(&b)) {
                    return Some(row);
                }
            }
        }
        None
    }
}

/// Splits 「見本県書無市山﨑町…」 into (都道府県, 市区町村) when the text starts with
/// them; a 郡 is kept with its 町村, a 政令市's 区 is left to the rest.
pub fn municipality_of(address: &str) -> (Option<String>, Option<String>) {
    let chars: Vec<char> = address.trim().chars().collect();
    let pref_end = if chars.starts_with(&['北', '海', '道']) {
        Some(3)
    } else {
        chars
            .iter()
            .take(4)
            .position(|c| matches!(c, '都' | '府' | '県'))
            .map(|i| i + 1)
    };
    let start = pref_end.unwrap_or(0);
    let prefecture = pref_end.map(|e| chars[..e].iter().collect::<String>());
    let mut muni_end = None;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '郡' => {}
            '市' | '区' | '町' | '村' if i > start => {
                muni_end = Some(i + 1);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let municipality = muni_end.map(|e| chars[start..e].iter().collect::<String>());
    (prefecture, municipality)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        code: &str,
        name: &str,
        chome: u32,
        from: u32,
        to: u32,
        school: &str,
    ) -> BTreeMap<String, String> {
        [
            ("machiaza", code.to_owned()),
            ("name", name.to_owned()),
            ("chome", chome.to_string()),
            ("banchi_from", from.to_string()),
            ("banchi_to", to.to_string()),
            ("elementary_school", school.to_owned()),
            ("junior_high_school", "第一中".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn master() -> AddressMaster {
        AddressMaster::from_rows(vec![
            row("0001002", "山﨑町2丁目", 2, 1, 10, "山崎小"),
            row("0001002", "山﨑町2丁目", 2, 11, 30, "東小"),
            row("0002000", "本町", 0, 1, 30, "本町小"),
            row("0003000", "山本町", 0, 1, 30, "山本小"),
            row("0004003", "緑町三丁目", 3, 1, 30, "緑小"),
        ])
    }

    #[test]
    fn addresses_find_their_row_in_any_notation() {
        let m = master();
        let r = m.locate("見本県書無市山崎町二丁目十二番三号").unwrap();
        assert_eq!(
            (r.machiaza.as_str(), r.elementary.as_str()),
            ("0001002", "東小")
        );
        let r = m
            .locate("見本県書無市山﨑町２丁目３番４号　見本ハイツ101")
            .unwrap();
        assert_eq!(r.elementary, "山崎小");
        assert_eq!(m.locate("書無市山本町5番地6").unwrap().elementary, "山本小");
        assert_eq!(m.locate("書無市本町5番地6").unwrap().elementary, "本町小");
        assert!(
            m.locate("書無市山﨑町3丁目1番1号").is_none(),
            "no such 丁目"
        );
        assert!(
            m.locate("書無市本町45番地").is_none(),
            "outside every range"
        );
        assert!(m.locate("別県別市北町1番地").is_none());
        assert_eq!(m.locate("書無市緑町3-5-1").unwrap().elementary, "緑小");
        assert_eq!(
            m.locate_in("0004003", "書無市緑町三丁目7番地")
                .unwrap()
                .machiaza,
            "0004003"
        );
        assert_eq!(m.machiaza().len(), 4);
    }

    #[test]
    fn municipalities_split_off() {
        assert_eq!(
            municipality_of("見本県書無市本町1番地"),
            (Some("見本県".into()), Some("書無市".into()))
        );
        assert_eq!(
            municipality_of("北海道札幌市中央区北1条"),
            (Some("北海道".into()), Some("札幌市".into()))
        );
        assert_eq!(
            municipality_of("長野県北佐久郡軽井沢町1"),
            (Some("長野県".into()), Some("北佐久郡軽井沢町".into()))
        );
    }
}
