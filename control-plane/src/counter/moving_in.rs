//! People moving in (特例転入): the 転出証明書情報 the former city sent (kind
//! `tenshutsu`, key 住民票コード), found from the 基本4情報 of a card read at the
//! counter, with the household the former city declared (same 世帯主 and 前住所).
//!
//! Matching folds names and addresses as the resident lookup does
//! ([`crate::residents::fold`]): width, spaces, kana, IVS and 異体字 never stand
//! between a card and its record. A lookup ([`lookup`]) reads only the records born
//! on the card's birth date or with its folded name, and then the declared household
//! of the best one by its folded 世帯主, all through the search keys the importer
//! keeps on records (migration 0011), so its cost does not grow with how many people
//! the kind holds (N9).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;

use kakanai_protocol::counter::MovingInPerson;
use kakanai_protocol::personal::{CardFace, Sex};

use crate::model::TenantId;
use crate::residents::fold::{address_matches, fold, fold_address};
use crate::residents::import::parse_date;
use crate::rules::Date;
use crate::store::{Store, StoreError, StoredRecord};

/// The data kind of the 転出証明書情報.
pub const KIND: &str = "tenshutsu";

/// Most candidates a lookup returns.
pub const MAX_CANDIDATES: usize = 10;

/// One 転出証明書情報 record. `Debug` shows the 住民票コード only.
#[derive(Clone, PartialEq, Eq)]
pub struct Tenshutsu {
    /// 住民票コード (the record's key).
    pub code: String,
    /// 氏名.
    pub name: String,
    /// 氏名フリガナ.
    pub kana: String,
    /// 生年月日.
    pub birth_date: Option<Date>,
    /// 性別 code (`1`, `2`, `9`), as imported.
    pub sex: String,
    /// 前住所.
    pub previous_address: String,
    /// 転出予定日.
    pub move_date: Option<Date>,
    /// 転出先 as declared.
    pub destination: String,
    /// 世帯主.
    pub head_name: String,
    /// 続柄.
    pub relation: String,
    /// The sealed 個人番号, if the import kept one.
    pub my_number_sealed: Option<String>,
}

impl fmt::Debug for Tenshutsu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenshutsu")
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

impl Tenshutsu {
    /// The record as imported (fields named as in the reference mapping).
    pub fn from_record(r: &StoredRecord) -> Self {
        let fields: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&r.data).unwrap_or_default();
        let text = |k: &str| {
            fields
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let date = |k: &str| parse_date(&text(k));
        let sealed = text("my_number");
        Self {
            code: r.key.clone(),
            name: text("name"),
            kana: text("kana"),
            birth_date: date("birth_date"),
            sex: text("sex"),
            previous_address: text("previous_address"),
            move_date: date("move_date"),
            destination: text("destination"),
            head_name: text("head_name"),
            relation: text("relation"),
            my_number_sealed: (!sealed.is_empty()).then_some(sealed),
        }
    }

    /// The wire view.
    pub fn view(&self) -> MovingInPerson {
        MovingInPerson {
            juminhyo_code: self.code.clone(),
            name: self.name.clone(),
            kana: self.kana.clone(),
            birth_date: self.birth_date.map(|d| d.to_string()).unwrap_or_default(),
            sex: match self.sex.as_str() {
                "1" => "male",
                "2" => "female",
                _ => "",
            }
            .to_owned(),
            previous_address: self.previous_address.clone(),
            move_date: self.move_date.map(|d| d.to_string()),
            destination: self.destination.clone(),
            head_name: self.head_name.clone(),
            relation: self.relation.clone(),
        }
    }

    /// Whether this record is the head of its declared household.
    pub fn is_head(&self) -> bool {
        self.relation == "世帯主"
            || (!self.head_name.is_empty()
                && fold(&self.head_name) == fold(&self.name)
                && self.relation.is_empty())
    }

    /// Whether `other` belongs to the same declared household (same 世帯主 and 前住所).
    pub fn same_household(&self, other: &Tenshutsu) -> bool {
        !self.head_name.is_empty()
            && fold(&self.head_name) == fold(&other.head_name)
            && fold_address(&self.previous_address) == fold_address(&other.previous_address)
    }
}

/// Finds the 転出証明書情報 a card's face belongs to, as [`match_card`] does over
/// every record, but reading only those that can match: a candidate matches at least
/// two of name, birth date and address, so its birth date or its folded name is the
/// card's. The family is the best candidate's declared household (same folded 世帯主,
/// then same 前住所). `None` when the card's birth date is not a date.
pub async fn lookup(
    store: &Store,
    tenant: &TenantId,
    card: &CardFace,
) -> Result<Option<Found>, StoreError> {
    let Some(birth) = card_birth(card) else {
        return Ok(None);
    };
    let records: Vec<Tenshutsu> = store
        .records_matching(tenant, KIND, &birth.to_string(), &fold(card.name.expose()))
        .await?
        .iter()
        .map(Tenshutsu::from_record)
        .collect();
    let Some(mut found) = match_card(card, &records) else {
        return Ok(None);
    };
    if let Some(best) = found.candidates.first() {
        let mut household: Vec<Tenshutsu> = store
            .records_by_head(tenant, KIND, &fold(&best.head_name))
            .await?
            .iter()
            .map(Tenshutsu::from_record)
            .collect();
        if !household.iter().any(|r| r.code == best.code) {
            household.push(best.clone());
        }
        found.family = family_of(best, &household);
    }
    Ok(Some(found))
}

/// One record by 住民票コード.
pub async fn by_code(
    store: &Store,
    tenant: &TenantId,
    code: &str,
) -> Result<Option<Tenshutsu>, StoreError> {
    Ok(store
        .record(tenant, KIND, code)
        .await?
        .as_ref()
        .map(Tenshutsu::from_record))
}

/// What a card lookup found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Exactly one record matches name, birth date and sex.
    pub exact: bool,
    /// Candidates, best first.
    pub candidates: Vec<Tenshutsu>,
    /// The best candidate's declared household, head first.
    pub family: Vec<Tenshutsu>,
}

fn sex_code(sex: Sex) -> &'static str {
    match sex {
        Sex::Male => "1",
        Sex::Female => "2",
        Sex::NotApplicable => "9",
    }
}

/// Finds the records a card's face belongs to among `records`: those matching at
/// least two of name, birth date and address (the card shows the 前住所 until the
/// move is registered), best first; the family of the best one. `None` when the
/// card's birth date is not a date.
pub fn match_card(card: &CardFace, records: &[Tenshutsu]) -> Option<Found> {
    let birth = card_birth(card)?;
    let name = fold(card.name.expose());
    let address = fold_address(card.address.expose());
    let sex = sex_code(card.sex);
    let mut scored: Vec<(u8, bool, &Tenshutsu)> = records
        .iter()
        .filter_map(|r| {
            let n = !name.is_empty() && fold(&r.name) == name;
            let b = r.birth_date == Some(birth);
            let a = address_matches(&address, &fold_address(&r.previous_address));
            let s = r.sex == sex;
            let score = u8::from(n) + u8::from(b) + u8::from(a);
            (score >= 2).then_some((score + u8::from(s), n && b && (s || sex == "9"), r))
        })
        .collect();
    scored.sort_by_key(|(score, full, r)| (Reverse(*full), Reverse(*score), r.code.clone()));
    let exact = scored.iter().filter(|(_, full, _)| *full).count() == 1
        && scored.first().is_some_and(|(_, full, _)| *full);
    let candidates: Vec<Tenshutsu> = scored
        .iter()
        .take(MAX_CANDIDATES)
        .map(|(_, _, r)| (*r).clone())
        .collect();
    let family = candidates
        .first()
        .map(|best| family_of(best, records))
        .unwrap_or_default();
    Some(Found {
        exact,
        candidates,
        family,
    })
}

/// The card's birth date (full-width digits and spaces tolerated), if it is a date.
fn card_birth(card: &CardFace) -> Option<Date> {
    let digits: String = card
        .birth_date
        .expose()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .filter(|c| !c.is_whitespace())
        .collect();
    parse_date(&digits)
}

/// The declared household of `person` among `records` (including them): the head
/// first, then by birth date (oldest first), then by 住民票コード.
pub fn family_of(person: &Tenshutsu, records: &[Tenshutsu]) -> Vec<Tenshutsu> {
    let mut family: Vec<Tenshutsu> = records
        .iter()
        .filter(|r| r.code == person.code || person.same_household(r))
        .cloned()
        .collect();
    family.sort_by_key(|r| (!r.is_head(), r.birth_date, r.code.clone()));
    family
}

#[cfg(test)]
mod tests {
    use super::*;
    use kakanai_protocol::personal::PersonalText;

    fn record(code: &str, name: &str, birth: &str, relation: &str) -> Tenshutsu {
        Tenshutsu {
            code: code.into(),
            name: name.into(),
            kana: String::new(),
            birth_date: parse_date(birth),
            sex: "1".into(),
            previous_address: "架空県見本市本町1丁目2番3号".into(),
            move_date: None,
            destination: String::new(),
            head_name: "髙橋　太郎".into(),
            relation: relation.into(),
            my_number_sealed: None,
        }
    }

    #[test]
    fn a_card_finds_its_record_and_family_despite_variants_and_width() {
        let records = vec![
            record("30000000003", "髙橋　花", "2015-05-05", "子"),
            record("30000000001", "髙橋　太郎", "1980-01-02", "世帯主"),
            record("30000000002", "髙橋　次郎", "2012-03-04", "子"),
            Tenshutsu {
                head_name: "別人　一".into(),
                ..record("40000000000", "別人　一", "1980-01-02", "世帯主")
            },
        ];
        let card = CardFace {
            name: PersonalText::new("高橋 太郎"),
            address: PersonalText::new("架空県見本市本町１丁目２番３号"),
            birth_date: PersonalText::new("19800102"),
            sex: Sex::Male,
            my_number: None,
            has_private_use_chars: false,
        };
        let found = match_card(&card, &records).unwrap();
        assert!(found.exact);
        assert_eq!(found.candidates[0].code, "30000000001");
        let codes: Vec<&str> = found.family.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["30000000001", "30000000002", "30000000003"]);
    }
}
