//! From a [`VisitPlan`] to the rules engine's [`DeterminationInput`]: who takes part
//! (residents by 宛名番号, people moving in by the 住民票コード of their
//! 転出証明書情報, people staff typed in), what the core data says about each of them,
//! and where the move goes.
//!
//! What comes from where (data-linkage.md, R8):
//!
//! | fact | source |
//! | --- | --- |
//! | 続柄, 生年月日, 性別, 国籍 | 住民記録 (`jumin`); 転出証明書情報 for people moving in; staff for new people |
//! | insurance | 国保 (`kokuho`, not lost) → `kokuho`; 後期高齢 (`kouki`) → `koki`; otherwise unknown (`none`), so the engine asks whether they join an employer's insurance |
//! | care level | 介護保険 (`kaigo`) 要介護度 |
//! | benefits | 児童手当, 児童扶養手当 (as recipient), 福祉医療 (種別), 就学援助 (認定) |
//! | nursery | 幼稚園・保育園 (`hoiku`): 幼稚園 / こども園 / 保育園 by the facility's name |
//! | seal registered | 印鑑登録 (`inkan`, 登録) |
//! | My Number card | マイナンバーカード情報 (交付済, not expired on the event date); for someone moving in: their card was read at the counter |
//! | school | the age (小学校 7–12, 中学校 13–15 at the fiscal year's end) |
//! | 国民年金 種別 | 1 for a 国保 member aged 20–59; otherwise unknown (0) |
//! | low income | the 世帯主's 個人住民税 非課税 |
//! | single parent | 児童扶養手当 or ひとり親 医療費助成 in the household, or a household of a head and children only |
//! | spouse | 続柄 妻 / 夫 is the 世帯主's spouse |
//!
//! Nothing is guessed beyond this table: what the data cannot give stays unknown,
//! and the catalogue's questions ask staff. Every record is read for the facts,
//! whatever data areas the session may *view*: the answer carries procedures, not
//! the records.
//!
//! Addresses: the event's `to` and `from` carry 都道府県, 市区町村 and the school
//! districts of the address master ([`super::address`]). For 転入 without a
//! destination the 転出先 of the 転出証明書情報 is placed in the master; if it cannot
//! be placed (or a destination given names no 町字 of the master) the answer is
//! [`PrepareError::AddressUnknown`], and staff choose the address.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kakanai_protocol::counter::{
    Destination, EventKind as WireEvent, GivenPerson, PersonRef, VisitPlan,
};

use super::address::{municipality_of, AddressMaster, MasterRow};
use super::moving_in::{self, Tenshutsu};
use crate::applications::fill::{sex_label, EventDetails, Person};
use crate::model::TenantId;
use crate::residents::import::parse_date;
use crate::rules::calendar::{age_at_fiscal_year_end, age_on};
use crate::rules::model::{
    Address, Benefit, CareLevel, DivorceType, Event, EventKind, Household, Insurance, Member,
    Nursery, School, Sex,
};
use crate::rules::{Date, DeterminationInput};
use crate::store::{Store, StoreError, StoredRecord, StoredResident};

/// Why a plan cannot be turned into an input. Messages name fields and members,
/// never a person's data.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The plan is inconsistent (`invalid-params`).
    #[error("{0}")]
    Invalid(String),
    /// A person named does not exist here (`not-found`).
    #[error("{0}")]
    NotFound(String),
    /// The new address is not in the address master (`address-unknown`).
    #[error("the new address is not in the address master")]
    AddressUnknown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a participant's data comes from.
#[derive(Clone)]
pub enum Source {
    /// A resident of the city.
    Resident(Box<StoredResident>),
    /// Someone moving in.
    MovingIn(Box<Tenshutsu>),
    /// Someone staff entered.
    New,
}

/// One member of the plan, resolved. `Debug` shows ids only.
#[derive(Clone)]
pub struct Participant {
    /// Member id (`m1` …).
    pub id: String,
    /// The event is about them.
    pub subject: bool,
    /// Their card was read at the counter.
    pub card_read: bool,
    /// Where their data comes from.
    pub source: Source,
    /// The engine's member.
    pub member: Member,
    /// The person as printed on forms.
    pub person: Person,
}

impl fmt::Debug for Participant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Participant")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Participant {
    /// 宛名番号, for residents.
    pub fn atena(&self) -> Option<&str> {
        match &self.source {
            Source::Resident(r) => Some(&r.atena),
            _ => None,
        }
    }
}

/// A plan made ready for the engine. `Debug` shows ids only.
#[derive(Clone)]
pub struct Prepared {
    /// The engine's input.
    pub input: DeterminationInput,
    /// The participants in plan order.
    pub people: Vec<Participant>,
    /// The event's addresses as printed.
    pub details: EventDetails,
    /// The household's address after the event.
    pub household_address: Option<String>,
    /// 宛名番号 read.
    pub residents_seen: Vec<String>,
    /// 住民票コード read.
    pub moving_in_seen: Vec<String>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("people", &self.people)
            .finish_non_exhaustive()
    }
}

/// The rules' event kind for the wire's.
pub fn rules_event(kind: WireEvent) -> EventKind {
    match kind {
        WireEvent::MoveIn => EventKind::MoveIn,
        WireEvent::MoveWithin => EventKind::MoveWithin,
        WireEvent::MoveOut => EventKind::MoveOut,
        WireEvent::Birth => EventKind::Birth,
        WireEvent::Death => EventKind::Death,
        WireEvent::Marriage => EventKind::Marriage,
        WireEvent::Divorce => EventKind::Divorce,
    }
}

/// Member id of the plan's `index`-th member.
pub fn member_id(index: usize) -> String {
    format!("m{}", index + 1)
}

/// ISO-3166 alpha-2 for the 国籍 the core system writes (Japanese names); anything
/// else not Japanese becomes `ZZ` (a foreign resident of unknown country).
fn nationality_code(text: &str) -> String {
    match text.trim() {
        "" | "日本" | "JP" | "JPN" => "JP",
        "中国" | "中華人民共和国" => "CN",
        "韓国" | "大韓民国" | "朝鮮" => "KR",
        "ベトナム" => "VN",
        "フィリピン" => "PH",
        "ブラジル" => "BR",
        "ネパール" => "NP",
        "インドネシア" => "ID",
        "米国" | "アメリカ合衆国" | "アメリカ" => "US",
        t if t.len() == 2 && t.bytes().all(|b| b.is_ascii_uppercase()) => t,
        _ => "ZZ",
    }
    .to_owned()
}

fn fields(data: &str) -> BTreeMap<String, String> {
    let v: BTreeMap<String, serde_json::Value> = serde_json::from_str(data).unwrap_or_default();
    v.into_iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, s.trim().to_owned())
        })
        .collect()
}

fn sex_of(code: &str) -> Sex {
    match code.trim() {
        "1" | "male" | "男" => Sex::Male,
        _ => Sex::Female,
    }
}

/// A new member with only what every person has; the rest unknown.
fn bare_member(id: &str, relationship: &str, birth: Date, sex: Sex) -> Member {
    Member {
        id: id.to_owned(),
        relationship: relationship.to_owned(),
        birth_date: birth,
        sex,
        nationality: "JP".to_owned(),
        insurance: Insurance::None,
        care_level: CareLevel::None,
        disability_handbooks: Vec::new(),
        school: School::None,
        private_school: false,
        nursery: Nursery::None,
        seal_registered: false,
        my_number_card: false,
        pension_category: 0,
        benefits: Vec::new(),
        pregnant: false,
        public_servant: false,
        birth_weight_g: None,
        spouse: None,
        owns_dog: false,
        owns_moped: false,
        answers: BTreeMap::new(),
    }
}

fn school_by_age(birth: Date, on: Date) -> School {
    match age_at_fiscal_year_end(birth, on) {
        7..=12 => School::Elementary,
        13..=15 => School::JuniorHigh,
        _ => School::None,
    }
}

/// Whether a record's 有効/喪失 date leaves it in force on `on`.
fn in_force(until: &str, on: Date) -> bool {
    match parse_date(until) {
        Some(d) => d >= on,
        None => true,
    }
}

/// Applies the records of the other kinds (the table in the module docs).
fn apply_records(member: &mut Member, records: &[StoredRecord], on: Date) {
    let age = age_on(member.birth_date, on);
    let mut benefits = BTreeSet::new();
    for r in records {
        let f = fields(&r.data);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
        match r.kind.as_str() {
            "kokuho" if in_force(get("lost_on"), on) => member.insurance = Insurance::Kokuho,
            "kouki" if in_force(get("lost_on"), on) => member.insurance = Insurance::Koki,
            "kaigo" => {
                member.care_level = match get("care_level") {
                    "要支援1" => CareLevel::Support1,
                    "要支援2" => CareLevel::Support2,
                    "要介護1" => CareLevel::Care1,
                    "要介護2" => CareLevel::Care2,
                    "要介護3" => CareLevel::Care3,
                    "要介護4" => CareLevel::Care4,
                    "要介護5" => CareLevel::Care5,
                    _ => member.care_level,
                }
            }
            "jidou_teate" if !matches!(get("status"), "消滅" | "停止") => {
                benefits.insert(Benefit::ChildAllowance.as_str());
            }
            "jidou_fuyou" if !matches!(get("status"), "消滅" | "停止") => {
                benefits.insert(Benefit::ChildRearingAllowance.as_str());
            }
            "fukushi_iryo" if in_force(get("valid_until"), on) => {
                let kind = get("kind");
                let b = if kind.contains("ひとり親") {
                    Some(Benefit::SingleParentMedical)
                } else if kind.contains("重度") {
                    Some(Benefit::SevereDisabilityMedical)
                } else if kind.contains("こども")
                    || kind.contains("子ども")
                    || kind.contains("乳幼児")
                {
                    Some(Benefit::ChildMedical)
                } else {
                    None
                };
                if let Some(b) = b {
                    benefits.insert(b.as_str());
                }
            }
            "shugaku_enjo" if get("status") == "認定" => {
                benefits.insert(Benefit::SchoolAid.as_str());
            }
            "hoiku" if in_force(get("leaves_on"), on) => {
                let facility = get("facility");
                member.nursery = if facility.contains("こども園") {
                    Nursery::Certified
                } else if facility.contains("幼稚園") {
                    Nursery::Kindergarten
                } else {
                    Nursery::Nursery
                };
            }
            "inkan" if get("status") == "登録" => member.seal_registered = true,
            "mynumber_card"
                if matches!(get("status"), "" | "交付済")
                    && in_force(get("card_expires_on"), on) =>
            {
                member.my_number_card = true;
            }
            _ => {}
        }
    }
    member.benefits = all_benefits()
        .into_iter()
        .filter(|b| benefits.contains(b.as_str()))
        .collect();
    if member.insurance == Insurance::Kokuho && (20..60).contains(&age) {
        member.pension_category = 1;
    }
}

fn all_benefits() -> [Benefit; 11] {
    [
        Benefit::ChildAllowance,
        Benefit::ChildRearingAllowance,
        Benefit::SpecialChildRearingAllowance,
        Benefit::ChildMedical,
        Benefit::SingleParentMedical,
        Benefit::SevereDisabilityMedical,
        Benefit::SchoolAid,
        Benefit::DisabilityServices,
        Benefit::IndependenceSupportMedical,
        Benefit::DisabilityAllowance,
        Benefit::PublicPension,
    ]
}

fn wire_sex(s: Option<&str>) -> Sex {
    match s.map(str::trim) {
        Some("male" | "1" | "男") => Sex::Male,
        _ => Sex::Female,
    }
}

fn some(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_owned())
}

fn place_address(row: &MasterRow, prefecture: &str, municipality: &str) -> Address {
    Address {
        prefecture: prefecture.to_owned(),
        municipality: municipality.to_owned(),
        elementary_district: row.elementary.clone(),
        junior_high_district: row.junior_high.clone(),
    }
}

/// The city's own 都道府県 and 市区町村: from the destination's fields, else from its
/// text, else from a resident's address, else the tenant's name.
fn own_city(dest: Option<&Destination>, text: Option<&str>, fallback: &str) -> (String, String) {
    let (mut p, mut m) = (
        dest.and_then(|d| d.prefecture.clone()),
        dest.and_then(|d| d.municipality.clone()),
    );
    if let Some(t) = text {
        let (tp, tm) = municipality_of(t);
        p = p.or(tp);
        m = m.or(tm);
    }
    (
        p.unwrap_or_default(),
        m.unwrap_or_else(|| fallback.to_owned()),
    )
}

/// The `event.*` answer keys: facts of the event the [`VisitPlan`] has no field for.
///
/// | key | meaning |
/// | --- | --- |
/// | `event.divorce_court` | 離婚: true 裁判離婚 (調停・審判・判決), false 協議離婚; absent: unknown |
/// | `event.surname_changes@<member>` | the member's 氏 changes with the event (婚姻, 離婚) |
/// | `event.into_care_facility` | the registration moves into a 住所地特例 facility |
pub const EVENT_KEYS: &[&str] = &[
    "event.divorce_court",
    "event.surname_changes@<member>",
    "event.into_care_facility",
];

#[derive(Default)]
struct EventFacts {
    divorce_court: Option<bool>,
    surname_changes: Vec<String>,
    into_care_facility: bool,
}

impl EventFacts {
    fn set(&mut self, fact: &str, value: bool, people: &[Participant]) -> Result<(), PrepareError> {
        match fact.split_once('@') {
            None if fact == "divorce_court" => self.divorce_court = Some(value),
            None if fact == "into_care_facility" => self.into_care_facility = value,
            Some(("surname_changes", m)) => {
                if !people.iter().any(|p| p.id == m) {
                    return Err(PrepareError::Invalid(
                        "answers: @ の後が members のどの人でもありません".into(),
                    ));
                }
                if value && !self.surname_changes.iter().any(|s| s == m) {
                    self.surname_changes.push(m.to_owned());
                }
            }
            _ => {
                return Err(PrepareError::Invalid(
                    "answers: 不明な event.* のキーです".into(),
                ))
            }
        }
        Ok(())
    }
}

/// Resolves the plan's people and builds the engine's input. `city` is the tenant's
/// name (書無市), used when no address says which municipality this is.
pub async fn prepare(
    store: &Store,
    tenant: &TenantId,
    plan: &VisitPlan,
    city: &str,
) -> Result<Prepared, PrepareError> {
    let date = parse_date(&plan.event_date).ok_or_else(|| {
        PrepareError::Invalid("event_date は YYYY-MM-DD で指定してください".into())
    })?;
    if plan.members.is_empty() {
        return Err(PrepareError::Invalid("members が空です".into()));
    }
    if plan.members.len() > 20 {
        return Err(PrepareError::Invalid("members が多すぎます".into()));
    }
    if !plan.members.iter().any(|m| m.subject) {
        return Err(PrepareError::Invalid(
            "届出の対象者（subject）がいません".into(),
        ));
    }
    if let Some(a) = plan.applicant {
        if a >= plan.members.len() {
            return Err(PrepareError::Invalid(
                "applicant が members の範囲外です".into(),
            ));
        }
    }
    let kind = rules_event(plan.event);
    let mut people = Vec::with_capacity(plan.members.len());
    let mut residents_seen = Vec::new();
    let mut moving_in_seen = Vec::new();
    let mut seen_refs = BTreeSet::new();
    for (i, vm) in plan.members.iter().enumerate() {
        let id = member_id(i);
        let given_rel = vm.relationship.trim();
        let (source, mut member, person) = match &vm.person {
            PersonRef::Resident { atena } => {
                if !seen_refs.insert(format!("r:{atena}")) {
                    return Err(PrepareError::Invalid(format!(
                        "{id}: 同じ人が二度指定されています"
                    )));
                }
                let r = store.resident(tenant, atena).await?.ok_or_else(|| {
                    PrepareError::NotFound(format!("{id}: 該当する住民が見つかりません"))
                })?;
                residents_seen.push(r.atena.clone());
                let birth = parse_date(&r.birth_date).ok_or_else(|| {
                    PrepareError::Invalid(format!("{id}: 住民記録の生年月日が読めません"))
                })?;
                let rel = if given_rel.is_empty() {
                    r.relation.as_str()
                } else {
                    given_rel
                };
                let mut m = bare_member(&id, rel, birth, sex_of(&r.sex));
                let jf = fields(&r.data);
                m.nationality =
                    nationality_code(jf.get("nationality").map(String::as_str).unwrap_or(""));
                let records = store.records_of(tenant, &r.atena, None).await?;
                apply_records(&mut m, &records, date);
                let mut p = Person::from_resident(&r);
                p.relationship = some(rel);
                (Source::Resident(Box::new(r)), m, p)
            }
            PersonRef::MovingIn { juminhyo_code } => {
                if !seen_refs.insert(format!("t:{juminhyo_code}")) {
                    return Err(PrepareError::Invalid(format!(
                        "{id}: 同じ人が二度指定されています"
                    )));
                }
                let t = moving_in::by_code(store, tenant, juminhyo_code)
                    .await?
                    .ok_or_else(|| {
                        PrepareError::NotFound(format!("{id}: 転出証明書情報が見つかりません"))
                    })?;
                moving_in_seen.push(t.code.clone());
                let birth = t.birth_date.ok_or_else(|| {
                    PrepareError::Invalid(format!("{id}: 転出証明書情報の生年月日が読めません"))
                })?;
                let rel = if given_rel.is_empty() {
                    t.relation.as_str()
                } else {
                    given_rel
                };
                let mut m = bare_member(&id, rel, birth, sex_of(&t.sex));
                // The card read at the counter for a move-in is the My Number card
                // the lookup matched (counter.lookup-moving-in).
                m.my_number_card = vm.card_read;
                let p = Person {
                    name: some(&t.name),
                    kana: some(&t.kana),
                    birth_date: Some(birth.to_string()),
                    sex: sex_label(&t.sex).map(str::to_owned),
                    relationship: some(rel),
                    address: None,
                    atena: None,
                };
                (Source::MovingIn(Box::new(t)), m, p)
            }
            PersonRef::New { person } => {
                let GivenPerson {
                    name,
                    kana,
                    birth_date,
                    sex,
                    address,
                } = person;
                if name.trim().is_empty() {
                    return Err(PrepareError::Invalid(format!(
                        "{id}: 氏名を入力してください"
                    )));
                }
                let birth = birth_date.as_deref().and_then(parse_date).ok_or_else(|| {
                    PrepareError::Invalid(format!("{id}: 生年月日を入力してください"))
                })?;
                if given_rel.is_empty() {
                    return Err(PrepareError::Invalid(format!(
                        "{id}: 続柄を入力してください"
                    )));
                }
                let m = bare_member(&id, given_rel, birth, wire_sex(sex.as_deref()));
                let p = Person {
                    name: some(name),
                    kana: some(kana),
                    birth_date: Some(birth.to_string()),
                    sex: sex_label(sex.as_deref().unwrap_or("")).map(str::to_owned),
                    relationship: some(given_rel),
                    address: address.as_deref().and_then(some),
                    atena: None,
                };
                (Source::New, m, p)
            }
        };
        member.school = school_by_age(member.birth_date, date);
        people.push(Participant {
            id,
            subject: vm.subject,
            card_read: vm.card_read,
            source,
            member,
            person,
        });
    }

    // Spouses: 妻 / 夫 is the 世帯主's spouse.
    let head = people
        .iter()
        .position(|p| p.member.relationship == "世帯主");
    if let Some(h) = head {
        if let Some(s) = people
            .iter()
            .position(|p| matches!(p.member.relationship.as_str(), "妻" | "夫"))
        {
            let (hid, sid) = (people[h].id.clone(), people[s].id.clone());
            people[h].member.spouse = Some(sid);
            people[s].member.spouse = Some(hid);
        }
    }

    // Answers: `<question>@<member>` for a person, `<question>` for the household;
    // `event.*` keys carry what the plan has no field for (see EVENT_KEYS).
    let mut household_answers = BTreeMap::new();
    let mut event_facts = EventFacts::default();
    for (key, value) in &plan.answers {
        if let Some(fact) = key.strip_prefix("event.") {
            event_facts.set(fact, *value, &people)?;
            continue;
        }
        match key.split_once('@') {
            Some((q, m)) => {
                let p = people.iter_mut().find(|p| p.id == m).ok_or_else(|| {
                    PrepareError::Invalid("answers: @ の後が members のどの人でもありません".into())
                })?;
                p.member.answers.insert(q.to_owned(), *value);
            }
            None => {
                household_answers.insert(key.clone(), *value);
            }
        }
    }

    // Household facts.
    let low_income =
        match people
            .iter()
            .find_map(|p| match (&p.source, p.member.relationship == "世帯主") {
                (Source::Resident(r), true) => Some(r.atena.clone()),
                _ => None,
            }) {
            Some(atena) => store
                .records_of(tenant, &atena, Some("juminzei"))
                .await?
                .iter()
                .max_by_key(|r| {
                    fields(&r.data)
                        .get("fiscal_year")
                        .cloned()
                        .unwrap_or_default()
                })
                .is_some_and(|r| {
                    fields(&r.data).get("taxed").map(String::as_str) == Some("非課税")
                }),
            None => false,
        };
    let by_record = people.iter().any(|p| {
        p.member.benefits.iter().any(|b| {
            matches!(
                b,
                Benefit::ChildRearingAllowance | Benefit::SingleParentMedical
            )
        })
    });
    let is_child = |rel: &str| rel.contains('子') || rel.ends_with('女') || rel.ends_with('男');
    let composition = head.is_some()
        && people
            .iter()
            .all(|p| p.member.relationship == "世帯主" || is_child(&p.member.relationship))
        && people
            .iter()
            .any(|p| p.member.relationship != "世帯主" && age_on(p.member.birth_date, date) < 18)
        && !people
            .iter()
            .any(|p| matches!(p.member.relationship.as_str(), "妻" | "夫"));
    let single_parent = by_record || composition;

    // Addresses.
    let master = AddressMaster::load(store, tenant).await?;
    let subject_resident = people.iter().find_map(|p| match (&p.source, p.subject) {
        (Source::Resident(r), true) => Some(r.as_ref().clone()),
        _ => None,
    });
    let first_mover = people.iter().find_map(|p| match (&p.source, p.subject) {
        (Source::MovingIn(t), true) => Some(t.as_ref().clone()),
        _ => None,
    });
    let mut details = EventDetails::default();
    let mut from = None;
    let mut to = None;
    let mut planned_move_out_date = None;
    let household_address;
    let current = |r: &StoredResident| -> (Address, Option<String>) {
        let (p, m) = municipality_of(&r.address);
        let row = master.locate_in(&r.machiaza, &r.address);
        (
            Address {
                prefecture: p.unwrap_or_default(),
                municipality: m.unwrap_or_else(|| city.to_owned()),
                elementary_district: row.map(|r| r.elementary.clone()).unwrap_or_default(),
                junior_high_district: row.map(|r| r.junior_high.clone()).unwrap_or_default(),
            },
            some(&r.machiaza),
        )
    };
    match kind {
        EventKind::MoveIn | EventKind::MoveWithin => {
            let dest = plan.destination.as_ref();
            let text = match dest {
                Some(d) => d.address.trim().to_owned(),
                None if kind == EventKind::MoveIn => first_mover
                    .as_ref()
                    .map(|t| t.destination.clone())
                    .unwrap_or_default(),
                None => String::new(),
            };
            if text.is_empty() {
                return Err(PrepareError::AddressUnknown);
            }
            let row = match dest.and_then(|d| d.machiaza.as_deref()) {
                Some(code) => master.locate_in(code, &text),
                None => master.locate(&text),
            }
            .ok_or(PrepareError::AddressUnknown)?;
            let (pref, muni) = own_city(dest, Some(&text), city);
            to = Some(place_address(row, &pref, &muni));
            details.new_address = Some(text.clone());
            details.new_address_code = Some(row.machiaza.clone());
            household_address = Some(text);
            if kind == EventKind::MoveIn {
                if let Some(t) = &first_mover {
                    let (p, m) = municipality_of(&t.previous_address);
                    from = Some(Address {
                        prefecture: p.unwrap_or_default(),
                        municipality: m.unwrap_or_default(),
                        ..Address::default()
                    });
                    details.previous_address = some(&t.previous_address);
                    details.previous_municipality = match municipality_of(&t.previous_address) {
                        (Some(p), Some(m)) => Some(format!("{p}{m}")),
                        (None, Some(m)) => Some(m),
                        _ => None,
                    };
                    planned_move_out_date = t.move_date;
                }
            } else if let Some(r) = &subject_resident {
                let (a, code) = current(r);
                from = Some(a);
                details.previous_address = some(&r.address);
                details.previous_address_code = code;
            }
        }
        EventKind::MoveOut => {
            if let Some(r) = &subject_resident {
                let (a, code) = current(r);
                from = Some(a);
                details.previous_address = some(&r.address);
                details.previous_address_code = code;
            }
            if let Some(d) = &plan.destination {
                let (tp, tm) = municipality_of(&d.address);
                let pref = d.prefecture.clone().or(tp).unwrap_or_default();
                let muni = d.municipality.clone().or(tm).unwrap_or_default();
                details.new_address = some(&d.address);
                details.new_municipality = some(&format!("{pref}{muni}"));
                to = Some(Address {
                    prefecture: pref,
                    municipality: muni,
                    ..Address::default()
                });
            }
            household_address = subject_resident.as_ref().map(|r| r.address.clone());
        }
        _ => {
            household_address = people
                .iter()
                .find_map(|p| match &p.source {
                    Source::Resident(r) if p.member.relationship == "世帯主" => {
                        Some(r.address.clone())
                    }
                    _ => None,
                })
                .or_else(|| subject_resident.as_ref().map(|r| r.address.clone()));
        }
    }
    // On forms, those who move live at the new address.
    if let Some(new) = &details.new_address {
        if matches!(kind, EventKind::MoveIn | EventKind::MoveWithin) {
            for p in people.iter_mut().filter(|p| p.subject) {
                p.person.address = Some(new.clone());
            }
        }
    }

    let input = DeterminationInput {
        title: None,
        event: Event {
            kind,
            date,
            subjects: people
                .iter()
                .filter(|p| p.subject)
                .map(|p| p.id.clone())
                .collect(),
            from,
            to,
            planned_move_out_date,
            divorce_type: match (kind, event_facts.divorce_court) {
                (EventKind::Divorce, Some(true)) => DivorceType::Court,
                (EventKind::Divorce, Some(false)) => DivorceType::Agreement,
                _ => DivorceType::None,
            },
            surname_changes: event_facts.surname_changes,
            into_care_facility: event_facts.into_care_facility,
        },
        household: Household {
            single_parent,
            low_income,
            members: people.iter().map(|p| p.member.clone()).collect(),
        },
        answers: household_answers,
    };
    Ok(Prepared {
        input,
        people,
        details,
        household_address,
        residents_seen,
        moving_in_seen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nationalities_map_to_codes() {
        assert_eq!(nationality_code(""), "JP");
        assert_eq!(nationality_code("ベトナム"), "VN");
        assert_eq!(nationality_code("どこか"), "ZZ");
    }

    #[test]
    fn records_give_the_facts() {
        let birth = Date::new(1990, 1, 1).unwrap();
        let on = Date::new(2025, 4, 1).unwrap();
        let mut m = bare_member("m1", "世帯主", birth, Sex::Male);
        let rec = |kind: &str, data: serde_json::Value| StoredRecord {
            kind: kind.into(),
            key: "k".into(),
            atena: Some("1".into()),
            data: data.to_string(),
        };
        apply_records(
            &mut m,
            &[
                rec("kokuho", serde_json::json!({"number": "1", "lost_on": ""})),
                rec("jidou_teate", serde_json::json!({"status": "支給中"})),
                rec("inkan", serde_json::json!({"status": "登録"})),
                rec(
                    "mynumber_card",
                    serde_json::json!({"status": "交付済", "card_expires_on": "2030-01-01"}),
                ),
                rec(
                    "fukushi_iryo",
                    serde_json::json!({"kind": "ひとり親", "valid_until": "2024-01-01"}),
                ),
            ],
            on,
        );
        assert_eq!(m.insurance, Insurance::Kokuho);
        assert_eq!(m.pension_category, 1);
        assert_eq!(
            m.benefits,
            vec![Benefit::ChildAllowance],
            "an expired 医療費助成 is not a benefit"
        );
        assert!(m.seal_registered && m.my_number_card);
    }
}
