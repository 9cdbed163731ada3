//! The typed model the rules read: the determination input (JSON, documented below),
//! and the facts derived from it that rule expressions may name.
//!
//! # Input format (JSON)
//!
//! ```json
//! {
//!   "event": {
//!     "kind": "move_in",              // move_in | move_within | move_out | birth | death | marriage | divorce
//!     "date": "2025-04-07",           // the day of the move / birth / death / notification
//!     "subjects": ["p1", "p2"],       // members the event is about (movers, newborn, deceased, spouses)
//!     "from": {"prefecture": "大阪府", "municipality": "大阪市",
//!              "elementary_district": "…", "junior_high_district": "…"},
//!     "to":   {"prefecture": "兵庫県", "municipality": "西宮市",
//!              "elementary_district": "第二小学校区", "junior_high_district": "第一中学校区"},
//!     "planned_move_out_date": "2025-03-31",  // 転出予定日 (転出証明書), optional
//!     "divorce_type": "agreement",     // agreement (協議) | court (裁判), divorce only
//!     "surname_changes": ["p2"],       // members whose 氏 changes (marriage / divorce)
//!     "into_care_facility": false      // registration moved into a 住所地特例 facility
//!   },
//!   "household": {
//!     "single_parent": false, "low_income": false,
//!     "members": [ { "id": "p1", "relationship": "世帯主", "birth_date": "1985-06-01",
//!                    "sex": "male", "nationality": "JP", "insurance": "shaho",
//!                    "care_level": "none", "disability_handbooks": [], "school": "none",
//!                    "nursery": "none", "seal_registered": true, "my_number_card": true,
//!                    "pension_category": 2, "benefits": ["child_allowance"],
//!                    "pregnant": false, "public_servant": false, "spouse": "p2",
//!                    "answers": {"joins_employer_insurance": true} } ]
//!   },
//!   "answers": {"low_income_declared": false}   // household-level answers to questions
//! }
//! ```
//!
//! `household.members` is the household as it is known at the counter: for a move-in,
//! the movers plus anyone already registered at the new address; for a birth it
//! includes the newborn. Who is left after the event follows from the event kind: the
//! subjects of a move-out or a death leave, everyone else stays.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::calendar::{age_at_fiscal_year_end, age_on, Date};

/// Defines a closed string enumeration used both in the JSON input and as the allowed
/// values of a string fact (so a rule comparing with a misspelt value fails to load).
macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $variant),+
        }
        impl $name {
            /// Every value as written in JSON and in rules.
            pub const ALL: &'static [&'static str] = &[$($text),+];
            /// The value as written in JSON and in rules.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
    };
}

str_enum! {
    /// The life event (異動事由 / 届出).
    EventKind {
        /// 転入 — moving in from another municipality.
        #[default] MoveIn = "move_in",
        /// 転居 — moving within the city.
        MoveWithin = "move_within",
        /// 転出 — moving out to another municipality.
        MoveOut = "move_out",
        /// 出生 — birth.
        Birth = "birth",
        /// 死亡 — death.
        Death = "death",
        /// 婚姻 — marriage.
        Marriage = "marriage",
        /// 離婚 — divorce.
        Divorce = "divorce",
    }
}

str_enum! {
    /// Sex as recorded in the resident register.
    Sex {
        /// Female.
        #[default] Female = "female",
        /// Male.
        Male = "male",
    }
}

str_enum! {
    /// Public health insurance the person is in.
    Insurance {
        /// 国民健康保険.
        Kokuho = "kokuho",
        /// 被用者保険 (社保) — an employer's insurance, as insured or dependant.
        Shaho = "shaho",
        /// 後期高齢者医療.
        Koki = "koki",
        /// None (e.g. 生活保護) or unknown.
        #[default] None = "none",
    }
}

str_enum! {
    /// 要介護・要支援認定 level.
    CareLevel {
        /// Not certified.
        #[default] None = "none",
        /// 要支援1.
        Support1 = "support1",
        /// 要支援2.
        Support2 = "support2",
        /// 要介護1.
        Care1 = "care1",
        /// 要介護2.
        Care2 = "care2",
        /// 要介護3.
        Care3 = "care3",
        /// 要介護4.
        Care4 = "care4",
        /// 要介護5.
        Care5 = "care5",
    }
}

str_enum! {
    /// Disability handbooks (障害者手帳).
    Handbook {
        /// 身体障害者手帳.
        #[default] Physical = "physical",
        /// 療育手帳.
        Intellectual = "intellectual",
        /// 精神障害者保健福祉手帳.
        Mental = "mental",
    }
}

str_enum! {
    /// School the person currently attends.
    School {
        /// Not at school.
        #[default] None = "none",
        /// 小学校.
        Elementary = "elementary",
        /// 中学校.
        JuniorHigh = "junior_high",
        /// 高等学校.
        High = "high",
        /// Other (university, special needs school …).
        Other = "other",
    }
}

str_enum! {
    /// Nursery or kindergarten attended.
    Nursery {
        /// None.
        #[default] None = "none",
        /// 保育所・保育園.
        Nursery = "nursery",
        /// 幼稚園.
        Kindergarten = "kindergarten",
        /// 認定こども園.
        Certified = "certified",
    }
}

str_enum! {
    /// Benefits and subsidies the person receives (as recipient, 受給者).
    Benefit {
        /// 児童手当.
        #[default] ChildAllowance = "child_allowance",
        /// 児童扶養手当.
        ChildRearingAllowance = "child_rearing_allowance",
        /// 特別児童扶養手当.
        SpecialChildRearingAllowance = "special_child_rearing_allowance",
        /// こども医療費助成.
        ChildMedical = "child_medical",
        /// ひとり親家庭等医療費助成.
        SingleParentMedical = "single_parent_medical",
        /// 重度心身障害者医療費助成.
        SevereDisabilityMedical = "severe_disability_medical",
        /// 就学援助.
        SchoolAid = "school_aid",
        /// 障害福祉サービス.
        DisabilityServices = "disability_services",
        /// 自立支援医療.
        IndependenceSupportMedical = "independence_support_medical",
        /// 特別障害者手当・障害児福祉手当.
        DisabilityAllowance = "disability_allowance",
        /// 公的年金 (老齢・障害・遺族).
        PublicPension = "public_pension",
    }
}

str_enum! {
    /// Kind of divorce (離婚届の種類).
    DivorceType {
        /// Not a divorce.
        #[default] None = "none",
        /// 協議離婚 — by agreement, no deadline.
        Agreement = "agreement",
        /// 裁判離婚 (調停・審判・判決) — within 10 days.
        Court = "court",
    }
}

/// An address with the school districts (学校区) of the address master.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Address {
    /// 都道府県.
    pub prefecture: String,
    /// 市区町村.
    pub municipality: String,
    /// 小学校区.
    pub elementary_district: String,
    /// 中学校区.
    pub junior_high_district: String,
}

/// The life event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The day of the move, birth, death or notification.
    pub date: Date,
    /// Member ids the event is about.
    pub subjects: Vec<String>,
    /// Former address (moves).
    #[serde(default)]
    pub from: Option<Address>,
    /// New address (moves).
    #[serde(default)]
    pub to: Option<Address>,
    /// 転出予定日 from the 転出証明書 (move-in): start of the 15日特例 and the
    /// 特例転入 window.
    #[serde(default)]
    pub planned_move_out_date: Option<Date>,
    /// 協議 or 裁判 (divorce).
    #[serde(default)]
    pub divorce_type: DivorceType,
    /// Members whose 氏 changes with this event.
    #[serde(default)]
    pub surname_changes: Vec<String>,
    /// The registration moves into a facility under 住所地特例.
    #[serde(default)]
    pub into_care_facility: bool,
}

/// A household member with the records of the core systems (R8).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Identifier within this input (not a resident number).
    pub id: String,
    /// 続柄 — relationship to the head (世帯主, 妻, 長女 …).
    pub relationship: String,
    /// 生年月日.
    pub birth_date: Date,
    /// 性別.
    #[serde(default)]
    pub sex: Sex,
    /// Nationality, ISO 3166 alpha-2; anything but `JP` is a foreign resident (在留カード).
    #[serde(default = "default_nationality")]
    pub nationality: String,
    /// Health insurance.
    #[serde(default)]
    pub insurance: Insurance,
    /// 要介護・要支援認定.
    #[serde(default)]
    pub care_level: CareLevel,
    /// 障害者手帳.
    #[serde(default)]
    pub disability_handbooks: Vec<Handbook>,
    /// School attended.
    #[serde(default)]
    pub school: School,
    /// Attends a private (or national) school, so no 転入学通知 from the city.
    #[serde(default)]
    pub private_school: bool,
    /// Nursery attended.
    #[serde(default)]
    pub nursery: Nursery,
    /// 印鑑登録 in this city (or, on move-in, in the former one).
    #[serde(default)]
    pub seal_registered: bool,
    /// Holds a My Number card.
    #[serde(default)]
    pub my_number_card: bool,
    /// 国民年金 被保険者種別 (1, 2, 3; 0 = none).
    #[serde(default)]
    pub pension_category: u8,
    /// Benefits received as recipient.
    #[serde(default)]
    pub benefits: Vec<Benefit>,
    /// Pregnant (母子健康手帳 issued).
    #[serde(default)]
    pub pregnant: bool,
    /// 公務員 (児童手当 is paid by the employer).
    #[serde(default)]
    pub public_servant: bool,
    /// Birth weight in grams (newborns; 低体重児届 under 2,500 g).
    #[serde(default)]
    pub birth_weight_g: Option<u32>,
    /// Member id of the spouse.
    #[serde(default)]
    pub spouse: Option<String>,
    /// Owns a registered dog (犬の登録).
    #[serde(default)]
    pub owns_dog: bool,
    /// Owns a moped with a city plate (原動機付自転車 標識).
    #[serde(default)]
    pub owns_moped: bool,
    /// Staff's answers to person-level questions.
    #[serde(default)]
    pub answers: BTreeMap<String, bool>,
}

fn default_nationality() -> String {
    "JP".to_owned()
}

/// The household.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Household {
    /// ひとり親世帯.
    #[serde(default)]
    pub single_parent: bool,
    /// Low income as known from 個人住民税 (就学援助 screening).
    #[serde(default)]
    pub low_income: bool,
    /// Members (see the module docs for who is listed).
    pub members: Vec<Member>,
}

/// What the engine is asked to determine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeterminationInput {
    /// Free text describing the case (ignored by the engine).
    #[serde(default)]
    pub title: Option<String>,
    /// The life event.
    pub event: Event,
    /// The household.
    pub household: Household,
    /// Staff's answers to household-level questions.
    #[serde(default)]
    pub answers: BTreeMap<String, bool>,
}

/// Type of a fact or expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// true / false.
    Bool,
    /// Integer.
    Int,
    /// Text.
    Str,
    /// List of texts.
    List,
}

impl Type {
    /// Name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Type::Bool => "bool",
            Type::Int => "int",
            Type::Str => "string",
            Type::List => "list",
        }
    }
}

/// Where a fact lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `person.*` — only in per-person rules.
    Person,
    /// `household.*`.
    Household,
    /// `event.*`.
    Event,
}

/// Declares the fact table: name, scope, type, allowed string values, doc.
macro_rules! facts {
    ($($variant:ident => $name:literal, $scope:ident, $ty:ident, $allowed:expr, $doc:literal;)+) => {
        /// A fact a rule can read.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Fact { $(#[doc = $doc] $variant),+ }
        /// Every fact: (fact, name in rules, scope, type, allowed string values, doc).
        pub const FACTS: &[(Fact, &str, Scope, Type, Option<&[&str]>, &str)] = &[
            $((Fact::$variant, $name, Scope::$scope, Type::$ty, $allowed, $doc)),+
        ];
    };
}

facts! {
    PersonId => "person.id", Person, Str, None, "member id";
    Relationship => "person.relationship", Person, Str, None, "続柄 (世帯主, 妻, 長女 …)";
    Age => "person.age", Person, Int, None, "age on the event date (Japanese counting)";
    AgeAtFyEnd => "person.age_at_fy_end", Person, Int, None, "age on March 31 ending the event's fiscal year (grade = this - 6)";
    SchoolStage => "person.school_stage", Person, Str, Some(&["preschool", "elementary", "junior_high", "none"]), "school stage by age: preschool ≤6, elementary 7–12, junior_high 13–15 at the fiscal year end";
    PersonSex => "person.sex", Person, Str, Some(Sex::ALL), "sex";
    Nationality => "person.nationality", Person, Str, None, "nationality (ISO alpha-2)";
    ForeignResident => "person.foreign_resident", Person, Bool, None, "foreign resident (在留カード・特別永住者証明書)";
    PersonInsurance => "person.insurance", Person, Str, Some(Insurance::ALL), "health insurance";
    PersonCareLevel => "person.care_level", Person, Str, Some(CareLevel::ALL), "要介護・要支援 level";
    HasCareCertification => "person.has_care_certification", Person, Bool, None, "has a 要介護・要支援認定";
    Handbooks => "person.handbooks", Person, List, Some(Handbook::ALL), "disability handbooks held";
    HasDisabilityHandbook => "person.has_disability_handbook", Person, Bool, None, "holds any disability handbook";
    PersonSchool => "person.school", Person, Str, Some(School::ALL), "school attended";
    PrivateSchool => "person.private_school", Person, Bool, None, "attends a private/national school";
    PersonNursery => "person.nursery", Person, Str, Some(Nursery::ALL), "nursery attended";
    SealRegistered => "person.seal_registered", Person, Bool, None, "印鑑登録 exists";
    MyNumberCard => "person.my_number_card", Person, Bool, None, "holds a My Number card";
    PensionCategory => "person.pension_category", Person, Int, None, "国民年金 種別 (0 none, 1, 2, 3)";
    Benefits => "person.benefits", Person, List, Some(Benefit::ALL), "benefits received";
    Pregnant => "person.pregnant", Person, Bool, None, "pregnant";
    PublicServant => "person.public_servant", Person, Bool, None, "公務員";
    BirthWeight => "person.birth_weight_g", Person, Int, None, "birth weight in grams (0 unknown)";
    OwnsDog => "person.owns_dog", Person, Bool, None, "owns a registered dog";
    OwnsMoped => "person.owns_moped", Person, Bool, None, "owns a moped with a city plate";
    IsSubject => "person.is_subject", Person, Bool, None, "the event is about this person";
    IsHead => "person.is_head", Person, Bool, None, "世帯主 (relationship 世帯主) before the event";
    Remains => "person.remains", Person, Bool, None, "still in the household after the event";
    SurnameChanges => "person.surname_changes", Person, Bool, None, "氏 changes with the event";
    SpouseOfSubject => "person.spouse_of_subject", Person, Bool, None, "spouse of a subject of the event";
    HouseholdSize => "household.size", Household, Int, None, "members after the event";
    SingleParent => "household.single_parent", Household, Bool, None, "ひとり親世帯";
    LowIncome => "household.low_income", Household, Bool, None, "low income (就学援助 screening)";
    AnyKokuho => "household.any_kokuho", Household, Bool, None, "a remaining member is in 国保";
    HeadIsSubject => "household.head_is_subject", Household, Bool, None, "the 世帯主 is a subject of the event";
    ReceivesChildAllowance => "household.receives_child_allowance", Household, Bool, None, "a remaining member receives 児童手当";
    HasChildUnder => "household.has_child_under", Household, Bool, None, "household.has_child_under(n): a remaining member younger than n";
    CountAgedAtLeast => "household.count_aged_at_least", Household, Int, None, "household.count_aged_at_least(n): remaining members aged n or more";
    Kind => "event.kind", Event, Str, Some(EventKind::ALL), "event kind";
    WithinPrefecture => "event.within_prefecture", Event, Bool, None, "from and to are in the same prefecture";
    SchoolDistrictChanged => "event.school_district_changed", Event, Bool, None, "小学校区 or 中学校区 differs between from and to";
    ToElementaryDistrict => "event.to_elementary_district", Event, Str, None, "小学校区 of the new address";
    ToJuniorHighDistrict => "event.to_junior_high_district", Event, Str, None, "中学校区 of the new address";
    FromMunicipality => "event.from_municipality", Event, Str, None, "former municipality";
    ToMunicipality => "event.to_municipality", Event, Str, None, "new municipality";
    EventDivorceType => "event.divorce_type", Event, Str, Some(DivorceType::ALL), "協議 or 裁判";
    IntoCareFacility => "event.into_care_facility", Event, Bool, None, "registration moves into a 住所地特例 facility";
}

impl Fact {
    /// Facts that are functions taking one integer argument.
    pub fn takes_int_arg(self) -> bool {
        matches!(self, Fact::HasChildUnder | Fact::CountAgedAtLeast)
    }
}

/// Per-person facts, computed once per determination.
#[derive(Debug)]
pub struct PersonFacts<'a> {
    /// The member record.
    pub member: &'a Member,
    /// Age on the event date.
    pub age: i64,
    /// Age at the end of the fiscal year.
    pub age_at_fy_end: i64,
    /// Subject of the event.
    pub is_subject: bool,
    /// In the household after the event.
    pub remains: bool,
    /// 氏 changes.
    pub surname_changes: bool,
    /// Spouse of a subject.
    pub spouse_of_subject: bool,
    /// Handbooks as strings.
    pub handbooks: Vec<&'static str>,
    /// Benefits as strings.
    pub benefits: Vec<&'static str>,
    /// Answers to person questions, by question index.
    pub answers: Vec<Option<bool>>,
}

impl PersonFacts<'_> {
    /// School stage by age at the fiscal year end.
    pub fn school_stage(&self) -> &'static str {
        match self.age_at_fy_end {
            ..=6 => "preschool",
            7..=12 => "elementary",
            13..=15 => "junior_high",
            _ => "none",
        }
    }
}

/// Household- and event-level facts.
#[derive(Debug)]
pub struct SharedFacts<'a> {
    /// The input.
    pub input: &'a DeterminationInput,
    /// Ages of the members remaining after the event.
    pub remaining_ages: Vec<i64>,
    /// Answers to household questions, by question index.
    pub answers: Vec<Option<bool>>,
}

/// Build the facts of every member and of the household.
pub fn derive_facts<'a>(input: &'a DeterminationInput) -> (Vec<PersonFacts<'a>>, Vec<i64>) {
    let ev = &input.event;
    let leaves = matches!(ev.kind, EventKind::MoveOut | EventKind::Death);
    let is_subject = |id: &str| ev.subjects.iter().any(|s| s == id);
    let persons: Vec<PersonFacts<'a>> = input
        .household
        .members
        .iter()
        .map(|m| {
            let subject = is_subject(&m.id);
            PersonFacts {
                member: m,
                age: age_on(m.birth_date, ev.date),
                age_at_fy_end: age_at_fiscal_year_end(m.birth_date, ev.date),
                is_subject: subject,
                remains: !(leaves && subject),
                surname_changes: ev.surname_changes.contains(&m.id),
                spouse_of_subject: m.spouse.as_deref().is_some_and(is_subject),
                handbooks: m.disability_handbooks.iter().map(|h| h.as_str()).collect(),
                benefits: m.benefits.iter().map(|b| b.as_str()).collect(),
                answers: Vec::new(),
            }
        })
        .collect();
    let remaining = persons
        .iter()
        .filter(|p| p.remains)
        .map(|p| p.age)
        .collect();
    (persons, remaining)
}
