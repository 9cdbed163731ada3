//! Finding a resident (住民検索): from the card's face (基本4情報 as the My Number
//! card shows them), from a name or reading prefix, from the 宛名番号, and the
//! household of a resident. Every candidate carries the reason it was found
//! (「氏名・生年月日・住所が一致」), so staff see why, and a card lookup says whether it
//! found exactly one person matching everything (the usual case).
//!
//! Matching is on folded keys ([`super::fold`]): width, spaces, kana, IVS, 旧字体 and
//! block-number notation never stand between a card and its record. All reads go
//! through indexes (birth date, folded name, reading, household), so the cost does not
//! grow with the city (N9).

use std::collections::BTreeMap;

use kakanai_protocol::personal::{CardFace, Sex};

use super::fold::{address_matches, fold, fold_address, is_kana};
use super::import::parse_date;
use crate::model::TenantId;
use crate::store::{NameKey, Store, StoreError, StoredHousehold, StoredResident};

/// Why a lookup failed. Never carries the query's text.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The birth date is not a date.
    #[error("the birth date is not a date (YYYYMMDD or YYYY-MM-DD)")]
    BirthDate,
}

/// The card's face, as read (name with U+3000 between family and given name, the
/// address with full-width block numbers, the birth date `YYYYMMDD`).
#[derive(Clone, Copy)]
pub struct CardQuery<'a> {
    /// 氏名.
    pub name: &'a str,
    /// 住所.
    pub address: &'a str,
    /// 生年月日: `YYYYMMDD`, `YYYY-MM-DD` or `YYYY/MM/DD` (full-width digits too).
    pub birth_date: &'a str,
    /// 性別, if known.
    pub sex: Option<Sex>,
}

impl std::fmt::Debug for CardQuery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardQuery([redacted])")
    }
}

impl<'a> CardQuery<'a> {
    /// The query for a card read by the appliance.
    pub fn from_card(card: &'a CardFace) -> Self {
        Self {
            name: card.name.expose(),
            address: card.address.expose(),
            birth_date: card.birth_date.expose(),
            sex: Some(card.sex),
        }
    }
}

/// Which parts of a query a candidate matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Matched {
    /// 氏名 (folded) equal.
    pub name: bool,
    /// 生年月日 equal.
    pub birth_date: bool,
    /// 住所 (folded, 方書 tolerated) equal.
    pub address: bool,
    /// 性別 equal (false when the query has none).
    pub sex: bool,
    /// The name or reading starts with the searched prefix.
    pub prefix: bool,
}

/// A resident found, with why.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The resident.
    pub resident: StoredResident,
    /// What matched.
    pub matched: Matched,
    /// The reason in Japanese, e.g. 「氏名・生年月日・住所が一致」.
    pub reason: String,
}

/// The result of a card lookup.
#[derive(Debug, Clone, Default)]
pub struct CardLookup {
    /// Candidates, best first (everything matching, then 在住 before others).
    pub candidates: Vec<Candidate>,
    /// Whether exactly one candidate matches name, birth date, address (and sex when
    /// given): then it is `candidates[0]`.
    pub exact: bool,
}

/// A household with its members.
#[derive(Debug, Clone)]
pub struct Household {
    /// The household (derived from those living in it), if anyone lives in it.
    pub household: Option<StoredHousehold>,
    /// Every member (every 状態), head first, then by 宛名番号.
    pub members: Vec<StoredResident>,
}

fn sex_code(sex: Sex) -> &'static str {
    match sex {
        Sex::Male => "1",
        Sex::Female => "2",
        Sex::NotApplicable => "9",
    }
}

fn reason(m: &Matched, has_sex: bool, status: &str) -> String {
    let mut hit = Vec::new();
    let mut miss = Vec::new();
    for (ok, label) in [
        (m.name, "氏名"),
        (m.birth_date, "生年月日"),
        (m.address, "住所"),
    ] {
        if ok {
            hit.push(label);
        } else {
            miss.push(label);
        }
    }
    if has_sex {
        if m.sex {
            hit.push("性別");
        } else {
            miss.push("性別");
        }
    }
    let mut s = format!("{}が一致", hit.join("・"));
    if !miss.is_empty() {
        s.push_str(&format!("（{}は不一致）", miss.join("・")));
    }
    if status != "在住" {
        s.push_str(&format!("（状態: {status}）"));
    }
    s
}

/// Finds the resident a card belongs to. Reads the residents born that day and those
/// with the same folded name and a matching address (both through indexes), and keeps
/// those matching at least two of name, birth date and address, best first.
pub async fn lookup_card(
    store: &Store,
    tenant: &TenantId,
    query: &CardQuery<'_>,
) -> Result<CardLookup, LookupError> {
    let birth = parse_date(&ascii_digits(query.birth_date))
        .ok_or(LookupError::BirthDate)?
        .to_string();
    let name_key = fold(query.name);
    let address_key = fold_address(query.address);
    let mut found: BTreeMap<String, StoredResident> = BTreeMap::new();
    // Only narrow rows (宛名番号, folded name and address, from the indexes alone) are
    // read for everyone born that day and everyone of the same name; the full rows
    // only of those matching at least two of name, birth date and address. Reading
    // every such row in full would grow with the city: at 10⁷ residents a birth date
    // has hundreds of people, and common names repeat.
    let mut wanted: Vec<String> = Vec::new();
    for (atena, stored_name, stored_address) in store.resident_keys_born_on(tenant, &birth).await? {
        if (!name_key.is_empty() && stored_name == name_key)
            || address_matches(&address_key, &stored_address)
        {
            wanted.push(atena);
        }
    }
    if !name_key.is_empty() {
        for (atena, stored_address) in store.resident_addresses_by_name(tenant, &name_key).await? {
            if address_matches(&address_key, &stored_address) && !wanted.contains(&atena) {
                wanted.push(atena);
            }
        }
    }
    for atena in wanted {
        if let Some(r) = store.resident(tenant, &atena).await? {
            found.insert(atena, r);
        }
    }
    let has_sex = query.sex.is_some();
    let mut candidates: Vec<Candidate> = found
        .into_values()
        .filter_map(|r| {
            let m = Matched {
                name: fold(&r.name) == name_key,
                birth_date: r.birth_date == birth,
                address: address_matches(&address_key, &fold_address(&r.address)),
                sex: query.sex.is_some_and(|s| sex_code(s) == r.sex),
                prefix: false,
            };
            let score = u8::from(m.name) + u8::from(m.birth_date) + u8::from(m.address);
            (score >= 2).then(|| Candidate {
                reason: reason(&m, has_sex, &r.status),
                resident: r,
                matched: m,
            })
        })
        .collect();
    let rank = |c: &Candidate| {
        let m = &c.matched;
        (
            std::cmp::Reverse(
                u8::from(m.name) + u8::from(m.birth_date) + u8::from(m.address) + u8::from(m.sex),
            ),
            c.resident.status != "在住",
            c.resident.atena.clone(),
        )
    };
    candidates.sort_by_key(rank);
    let full = |c: &Candidate| {
        let m = &c.matched;
        m.name && m.birth_date && m.address && (m.sex || !has_sex)
    };
    let exact =
        candidates.iter().filter(|c| full(c)).count() == 1 && candidates.first().is_some_and(full);
    Ok(CardLookup { candidates, exact })
}

fn ascii_digits(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            '／' => '/',
            '－' => '-',
            c => c,
        })
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// Residents whose name (kanji) or reading (kana, when the query is all kana) starts
/// with `text`, optionally born on `birth_date`; at most `limit` (≤ [`SEARCH_LIMIT`]).
pub async fn search_name(
    store: &Store,
    tenant: &TenantId,
    text: &str,
    birth_date: Option<&str>,
    limit: u32,
) -> Result<Vec<Candidate>, LookupError> {
    let key = fold(text);
    let birth = match birth_date {
        Some(b) => Some(
            parse_date(&ascii_digits(b))
                .ok_or(LookupError::BirthDate)?
                .to_string(),
        ),
        None => None,
    };
    let (which, label) = if is_kana(&key) {
        (NameKey::Kana, "フリガナが前方一致")
    } else {
        (NameKey::Kanji, "氏名が前方一致")
    };
    let rows = store
        .residents_by_prefix(tenant, which, &key, birth.as_deref(), limit)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut reason = label.to_owned();
            if birth.is_some() {
                reason.push_str("・生年月日が一致");
            }
            if r.status != "在住" {
                reason.push_str(&format!("（状態: {}）", r.status));
            }
            Candidate {
                matched: Matched {
                    prefix: true,
                    birth_date: birth.is_some(),
                    ..Matched::default()
                },
                reason,
                resident: r,
            }
        })
        .collect())
}

/// The resident with this 宛名番号.
pub async fn by_atena(
    store: &Store,
    tenant: &TenantId,
    atena: &str,
) -> Result<Option<StoredResident>, LookupError> {
    Ok(store.resident(tenant, atena).await?)
}

/// The household of a resident: the household row and every member, head first.
pub async fn household_of(
    store: &Store,
    tenant: &TenantId,
    atena: &str,
) -> Result<Option<Household>, LookupError> {
    let Some(r) = store.resident(tenant, atena).await? else {
        return Ok(None);
    };
    let household = store.household(tenant, &r.household).await?;
    let mut members = store.household_members(tenant, &r.household).await?;
    members.sort_by_key(|m| (m.relation != "世帯主", m.atena.clone()));
    Ok(Some(Household { household, members }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_naturally() {
        let all = Matched {
            name: true,
            birth_date: true,
            address: true,
            sex: true,
            prefix: false,
        };
        assert_eq!(
            reason(&all, true, "在住"),
            "氏名・生年月日・住所・性別が一致"
        );
        let moved = Matched {
            address: false,
            ..all
        };
        assert_eq!(
            reason(&moved, false, "転出"),
            "氏名・生年月日が一致（住所は不一致）（状態: 転出）"
        );
    }
}
