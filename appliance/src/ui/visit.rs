//! The visit (受付) in progress at the counter: one per staff session, a state machine
//! the visit screens render and the routes, the scanner and the printer drive.
//!
//! A visit is a certificate request or a life event. Its steps:
//!
//! - certificate: `people` → `certificates` → `details` → `print` → `scan` → `done`;
//! - life event: `people` → `date` → `questions` (only when the determination asks)
//!   → `procedures` → `print` → `scan` → `done`.
//!
//! Everything the visit knows stays in the appliance's memory, keyed by the staff
//! session: the people (from card reads, searches, the 転出証明書情報, or typed for a
//! newborn), the choices, the determination, the control plane's visit and its
//! applications. A step that needs the control plane runs in the background with the
//! visit marked busy (the screen shows what it waits for); when the call fails the
//! state is kept as it was and the step says what to do, so nothing typed or chosen
//! is lost. The visit ends at "受付を終了", at the session's logout, or when the
//! session has been idle for the session idle time.
//!
//! Print progress arrives as the appliance's own print events under the job id the
//! control plane returned (events that arrive before the answer are remembered), and
//! scanned codes go to the visit waiting for signed forms (the most recently used
//! one): a code that is no application of the visit is refused on the spot with a
//! plain warning, the others go to `counter.accept`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::Instant;

use kakanai_protocol::catalogue::{PrintState, PrintStatus, RpcError, RpcMethod, ScanResult};
use kakanai_protocol::counter::{
    Accept, AcceptRequest, AddressMenu, Addresses, Adjustment, ApplicationState, CertificateMenu,
    CertificateOrder, Certificates, CreateVisit, CreateVisitRequest, Destination,
    DeterminationView, Determine, EventKind, GivenPerson, LookupMovingIn, MachiazaOption,
    MovingInPerson, OrderItem, PersonRef, PrintVisit, PrintVisitRequest, Relationship,
    RequestCertificates, VisitMember, VisitPlan, VisitView,
};
use kakanai_protocol::personal::CardFace;
use serde::Deserialize;

use super::card::{CardScreen, Lookup, Notice};
use super::layout::OFFLINE_TITLE;
use super::staff::Secret;
use super::Ui;

// ---------------------------------------------------------------- residents RPCs

pub use kakanai_protocol::residents::{
    CandidateView as SearchCandidate, Household, HouseholdRequest, HouseholdResponse, ResidentView,
    Search as SearchResidents, SearchRequest, SearchResponse,
};

// ---------------------------------------------------------------- dates

/// Days since 1970-01-01 of a Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Gregorian date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Today in Japan (the counter's day), as days since 1970-01-01.
pub fn today_jst() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    (secs + 9 * 3600).div_euclid(86_400)
}

/// `YYYY-MM-DD` of a day count.
pub fn iso(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day count of a `YYYY-MM-DD` date that exists.
pub fn parse_iso(s: &str) -> Option<i64> {
    let compact = s.replace('-', "");
    super::wareki::Date::parse_yyyymmdd(&compact)?;
    let y: i64 = compact[..4].parse().ok()?;
    let m: u32 = compact[4..6].parse().ok()?;
    let d: u32 = compact[6..].parse().ok()?;
    Some(days_from_civil(y, m, d))
}

/// `令和8年11月27日` for an ISO date (the text as given when it is not one).
pub fn wareki_iso(s: &str) -> String {
    super::wareki::Date::parse_yyyymmdd(&s.replace('-', ""))
        .and_then(super::wareki::Date::wareki)
        .unwrap_or_else(|| s.to_owned())
}

/// Days in a month.
pub fn month_len(y: i64, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    u32::try_from(days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)).unwrap_or(30)
}

// ---------------------------------------------------------------- the visit

/// What the visit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitKind {
    /// 証明書の請求.
    Certificate,
    /// A life event.
    Event(EventKind),
}

impl VisitKind {
    /// `certificate` or the event's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Certificate => "certificate",
            Self::Event(e) => e.as_str(),
        }
    }

    /// From [`VisitKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        if s == "certificate" {
            Some(Self::Certificate)
        } else {
            EventKind::parse(s).map(Self::Event)
        }
    }

    /// Japanese label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Certificate => "証明書の請求",
            Self::Event(e) => e.label(),
        }
    }

    fn event(self) -> Option<EventKind> {
        match self {
            Self::Certificate => None,
            Self::Event(e) => Some(e),
        }
    }
}

/// A step of the visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Who comes (card, search, 転出証明書情報, newborn).
    People,
    /// Which certificates.
    Certificates,
    /// Requester, purpose, destination, ID check, fee.
    Details,
    /// The event date.
    Date,
    /// The determination's questions.
    Questions,
    /// The procedure list.
    Procedures,
    /// Printing.
    Print,
    /// Waiting for the signed forms.
    Scan,
    /// Every form accepted.
    Done,
}

impl Step {
    /// The step's name (`data-step`).
    pub fn name(self) -> &'static str {
        match self {
            Self::People => "people",
            Self::Certificates => "certificates",
            Self::Details => "details",
            Self::Date => "date",
            Self::Questions => "questions",
            Self::Procedures => "procedures",
            Self::Print => "print",
            Self::Scan => "scan",
            Self::Done => "done",
        }
    }

    /// Japanese label (the step list).
    pub fn label(self) -> &'static str {
        match self {
            Self::People => "来庁者",
            Self::Certificates => "証明書",
            Self::Details => "請求内容",
            Self::Date => "届出日",
            Self::Questions => "確認事項",
            Self::Procedures => "手続一覧",
            Self::Print => "印刷",
            Self::Scan => "申請書の読取",
            Self::Done => "受付完了",
        }
    }

    /// The steps of a kind of visit, in order.
    pub fn all(kind: VisitKind) -> &'static [Step] {
        match kind {
            VisitKind::Certificate => &[
                Self::People,
                Self::Certificates,
                Self::Details,
                Self::Print,
                Self::Scan,
                Self::Done,
            ],
            VisitKind::Event(_) => &[
                Self::People,
                Self::Date,
                Self::Questions,
                Self::Procedures,
                Self::Print,
                Self::Scan,
                Self::Done,
            ],
        }
    }
}

/// One person of the visit (personal data: `Debug` shows the kind of reference).
#[derive(Clone)]
pub struct Member {
    /// Who, for the control plane.
    pub person: PersonRef,
    /// 氏名.
    pub name: String,
    /// 氏名フリガナ.
    pub kana: String,
    /// 生年月日 `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    /// `male` / `female`.
    pub sex: Option<String>,
    /// 住所 (or 前住所 when moving in).
    pub address: String,
    /// 続柄.
    pub relationship: String,
    /// The event is about them.
    pub subject: bool,
    /// Their card was read here.
    pub card_read: bool,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("person", &self.person)
            .field("subject", &self.subject)
            .field("card_read", &self.card_read)
            .finish_non_exhaustive()
    }
}

impl Member {
    fn resident(r: &ResidentView, card_read: bool) -> Self {
        Self {
            person: PersonRef::Resident {
                atena: r.atena.clone(),
            },
            name: r.name.clone(),
            kana: r.kana.clone(),
            birth_date: Some(r.birth_date.clone()),
            sex: sex_from_code(&r.sex),
            address: r.address.clone(),
            relationship: r.relation.clone(),
            subject: true,
            card_read,
        }
    }

    fn moving_in(p: &MovingInPerson, card_read: bool) -> Self {
        Self {
            person: PersonRef::MovingIn {
                juminhyo_code: p.juminhyo_code.clone(),
            },
            name: p.name.clone(),
            kana: p.kana.clone(),
            birth_date: Some(p.birth_date.clone()),
            sex: Some(p.sex.clone()),
            address: p.previous_address.clone(),
            relationship: p.relation.clone(),
            subject: true,
            card_read,
        }
    }

    /// The 宛名番号 of a resident.
    pub fn atena(&self) -> Option<&str> {
        match &self.person {
            PersonRef::Resident { atena } => Some(atena),
            _ => None,
        }
    }

    fn same_person(&self, other: &PersonRef) -> bool {
        match (&self.person, other) {
            (PersonRef::Resident { atena: a }, PersonRef::Resident { atena: b }) => a == b,
            (
                PersonRef::MovingIn { juminhyo_code: a },
                PersonRef::MovingIn { juminhyo_code: b },
            ) => a == b,
            _ => false,
        }
    }
}

fn sex_from_code(code: &str) -> Option<String> {
    match code {
        "1" | "male" => Some("male".into()),
        "2" | "female" => Some("female".into()),
        _ => None,
    }
}

/// 男 / 女 for `male` / `female`.
pub fn sex_label(sex: Option<&str>) -> &'static str {
    match sex {
        Some("male") => "男",
        Some("female") => "女",
        _ => "",
    }
}

/// The person search on the people step.
#[derive(Clone, Default)]
pub struct Search {
    /// What was searched.
    pub text: String,
    /// The birth date searched with.
    pub birth_date: Option<String>,
    /// The answer (`None`: not searched yet).
    pub results: Option<Vec<SearchCandidate>>,
}

/// A newborn being entered (出生).
#[derive(Clone, Default)]
pub struct Newborn {
    /// The birth date chosen.
    pub birth_date: Option<String>,
    /// `male` / `female`.
    pub sex: Option<String>,
}

/// The certificate request being put together.
#[derive(Clone)]
pub struct CertDraft {
    /// The catalogue's offer.
    pub menu: Option<CertificateMenu>,
    /// Index in the members of the person the certificates are about.
    pub subject: usize,
    /// Their household (from the core data).
    pub household: Vec<ResidentView>,
    /// The certificates chosen.
    pub items: Vec<OrderItem>,
    /// Who asks.
    pub relationship: Relationship,
    /// For 同一世帯: the requester's 宛名番号.
    pub requester_atena: Option<String>,
    /// For 代理人 / 第三者: the requester's name.
    pub requester_name: String,
    /// 使用目的.
    pub purpose: Option<String>,
    /// "その他" was chosen: the purpose is typed.
    pub purpose_other: bool,
    /// 提出先.
    pub destination: String,
    /// 本人確認書類.
    pub id_check: Option<String>,
}

impl Default for CertDraft {
    fn default() -> Self {
        Self {
            menu: None,
            subject: 0,
            household: Vec::new(),
            items: Vec::new(),
            relationship: Relationship::Myself,
            requester_atena: None,
            requester_name: String::new(),
            purpose: None,
            purpose_other: false,
            destination: String::new(),
            id_check: None,
        }
    }
}

impl CertDraft {
    /// Σ fee × copies.
    pub fn fee_total(&self) -> i64 {
        self.items.iter().map(|i| i.fee * i64::from(i.copies)).sum()
    }
}

/// The life event being put together.
#[derive(Clone)]
pub struct EventDraft {
    /// The event date.
    pub date: String,
    /// The month the date picker shows (`YYYY-MM-01` as a day count).
    pub picker: i64,
    /// Answers so far.
    pub answers: BTreeMap<String, bool>,
    /// The last determination.
    pub determination: Option<DeterminationView>,
    /// Staff's changes to the list.
    pub adjustments: Vec<Adjustment>,
    /// Where to (転出: another municipality), as typed.
    pub destination: String,
    /// The new address in the city chosen from the address master (転居; 転入 when
    /// its 転出先 could not be placed).
    pub address: AddressPick,
}

/// The address picker: a 町字 from the master's list and a 番地 from a keypad.
#[derive(Clone, Default)]
pub struct AddressPick {
    /// Shown.
    pub open: bool,
    /// The master's 町字.
    pub menu: Option<AddressMenu>,
    /// The 町字 chosen.
    pub machiaza: Option<MachiazaOption>,
    /// The 番地 keyed in (digits and `-`).
    pub banchi: String,
    /// The destination set.
    pub chosen: Option<Destination>,
}

impl fmt::Debug for AddressPick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddressPick")
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

/// `8-1` → `8番1号`; `12` → `12番地`; `3-4-5` → `3番4号5`.
pub fn banchi_text(keyed: &str) -> String {
    let parts: Vec<&str> = keyed.split('-').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [] => String::new(),
        [a] => format!("{a}番地"),
        [a, b] => format!("{a}番{b}号"),
        [a, b, rest @ ..] => format!("{a}番{b}号{}", rest.join("-")),
    }
}

impl EventDraft {
    fn new() -> Self {
        let today = today_jst();
        Self {
            date: iso(today),
            picker: first_of_month(today),
            answers: BTreeMap::new(),
            determination: None,
            adjustments: Vec::new(),
            destination: String::new(),
            address: AddressPick::default(),
        }
    }

    /// Whether a procedure is in the list, with staff's changes applied.
    pub fn included(&self, member: Option<&str>, procedure: &str, determined: bool) -> bool {
        self.adjustments
            .iter()
            .rev()
            .find(|a| a.member.as_deref() == member && a.procedure == procedure)
            .map_or(determined, |a| a.include)
    }
}

/// The first day of the month of a day count.
pub fn first_of_month(days: i64) -> i64 {
    let (y, m, _) = civil_from_days(days);
    days_from_civil(y, m, 1)
}

/// Where a print job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrintPhase {
    /// Asked the control plane; no job yet.
    Sending,
    /// At the appliance, waiting for the printer.
    Queued,
    /// Printing.
    Printing,
    /// Printed.
    Completed,
    /// Failed (the reason for staff).
    Failed(String),
}

impl PrintPhase {
    /// The phase's name (`data-print`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Queued => "queued",
            Self::Printing => "printing",
            Self::Completed => "completed",
            Self::Failed(_) => "failed",
        }
    }

    fn from_state(s: &PrintState) -> Self {
        match s {
            PrintState::Queued => Self::Queued,
            PrintState::Printing => Self::Printing,
            PrintState::Completed { .. } => Self::Completed,
            PrintState::Failed { reason } => Self::Failed(plain_print_failure(reason)),
            PrintState::Cancelled => Self::Failed("印刷が取り消されました。".into()),
        }
    }
}

/// A print failure in staff's words: the printer's IPP keywords in the reason
/// (`(aborted-by-system): media-empty`) become 用紙切れ, 紙詰まり …; a reason without a
/// known keyword is said plainly, without IPP jargon.
pub fn plain_print_failure(reason: &str) -> String {
    use kakanai_hw::printer::status::PrinterCondition;
    let known: Vec<String> = reason
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter_map(PrinterCondition::from_keyword)
        .filter(|c| !matches!(c, PrinterCondition::Other(_)))
        .map(|c| c.label_ja().to_owned())
        .collect();
    if !known.is_empty() {
        known.join("・")
    } else if reason.is_ascii() {
        "プリンタが印刷を中止しました".into()
    } else {
        // Already in Japanese (the appliance's own messages).
        reason.to_owned()
    }
}

/// The print of the visit's forms.
#[derive(Debug, Clone)]
pub struct PrintProgress {
    /// The job, once the control plane sent it.
    pub job: Option<String>,
    /// Where it stands.
    pub phase: PrintPhase,
    /// Pages.
    pub pages: usize,
    /// The applications in the job.
    pub numbers: Vec<String>,
}

impl Visit {
    /// The job's forms are on paper: they wait for their signature (the control
    /// plane marks them printed from the same report; shown here at once).
    fn mark_printed(&mut self) {
        let numbers = self
            .print
            .as_ref()
            .map(|p| p.numbers.clone())
            .unwrap_or_default();
        if let Some(server) = &mut self.server {
            for a in &mut server.applications {
                if a.state == ApplicationState::Draft && numbers.contains(&a.number) {
                    a.state = ApplicationState::Printed;
                }
            }
        }
    }
}

/// A message on the step and its tone (`warn`, `bad`, `ok`).
#[derive(Debug, Clone)]
pub struct StepNotice {
    /// The message.
    pub notice: Notice,
    /// Its tone.
    pub tone: &'static str,
}

/// One visit.
#[derive(Debug)]
pub struct Visit {
    /// A number of this appliance's run (late answers of an ended visit are dropped).
    pub serial: u64,
    /// What for.
    pub kind: VisitKind,
    /// Where it stands.
    pub step: Step,
    /// The people.
    pub members: Vec<Member>,
    /// 転入: the family the 転出証明書情報 declares, waiting for staff's confirmation.
    pub family_offer: Option<FamilyOffer>,
    /// The search.
    pub search: Search,
    /// The newborn being entered.
    pub newborn: Newborn,
    /// Certificate request.
    pub cert: CertDraft,
    /// Life event.
    pub event: EventDraft,
    /// The control plane's visit, once created.
    pub server: Option<VisitView>,
    /// The print.
    pub print: Option<PrintProgress>,
    /// What the visit waits for (shown with a spinner).
    pub busy: Option<String>,
    /// A message on the step.
    pub notice: Option<StepNotice>,
    /// The last scan's outcome.
    pub scan_notice: Option<StepNotice>,
    /// Codes scanned while the control plane could not be reached.
    pub pending_codes: Vec<String>,
    /// A card read was taken into this visit without a tap (a 転入: every card read
    /// is for the visit); the card screen goes back to the visit once.
    pub card_taken: bool,
    /// Last used.
    touched: Instant,
}

impl fmt::Debug for Search {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Search(<redacted>)")
    }
}
impl fmt::Debug for Newborn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Newborn(<redacted>)")
    }
}
impl fmt::Debug for CertDraft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertDraft")
            .field("items", &self.items)
            .field("relationship", &self.relationship)
            .finish_non_exhaustive()
    }
}
impl fmt::Debug for EventDraft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventDraft")
            .field("answers", &self.answers)
            .field("adjustments", &self.adjustments)
            .finish_non_exhaustive()
    }
}

/// The family the 転出証明書情報 declares.
#[derive(Clone)]
pub struct FamilyOffer {
    /// Its members, head first.
    pub family: Vec<MovingInPerson>,
    /// The 住民票コード of the person whose card was read, when it matched exactly.
    pub card_code: Option<String>,
    /// Whether the card matched exactly one record.
    pub exact: bool,
}

impl fmt::Debug for FamilyOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FamilyOffer")
            .field("members", &self.family.len())
            .field("exact", &self.exact)
            .finish_non_exhaustive()
    }
}

impl Visit {
    fn new(serial: u64, kind: VisitKind) -> Self {
        Self {
            serial,
            kind,
            step: Step::People,
            members: Vec::new(),
            family_offer: None,
            search: Search::default(),
            newborn: Newborn::default(),
            cert: CertDraft::default(),
            event: EventDraft::new(),
            server: None,
            print: None,
            busy: None,
            notice: None,
            scan_notice: None,
            pending_codes: Vec::new(),
            card_taken: false,
            touched: Instant::now(),
        }
    }

    /// The plan as the control plane wants it.
    pub fn plan(&self) -> Option<VisitPlan> {
        let event = self.kind.event()?;
        let applicant = self
            .members
            .iter()
            .position(|m| m.card_read && m.subject)
            .or_else(|| self.members.iter().position(|m| m.card_read));
        let destination = match event {
            EventKind::MoveIn | EventKind::MoveWithin if self.event.address.chosen.is_some() => {
                self.event.address.chosen.clone()
            }
            EventKind::MoveOut if !self.event.destination.is_empty() => Some(Destination {
                address: self.event.destination.clone(),
                machiaza: None,
                prefecture: None,
                municipality: None,
            }),
            _ => None,
        };
        Some(VisitPlan {
            event,
            event_date: self.event.date.clone(),
            members: self
                .members
                .iter()
                .map(|m| VisitMember {
                    person: m.person.clone(),
                    relationship: m.relationship.clone(),
                    subject: m.subject,
                    card_read: m.card_read,
                })
                .collect(),
            applicant,
            destination,
            answers: self.event.answers.clone(),
        })
    }

    /// The certificate order as staff put it together, or what is missing.
    pub fn order(&self) -> Result<CertificateOrder, Notice> {
        let c = &self.cert;
        let subject = self
            .members
            .get(c.subject)
            .and_then(Member::atena)
            .ok_or_else(|| {
                notice(
                    "証明書の対象の方が決まっていません。",
                    "来庁者の画面で、カードを読み取るか検索してください。",
                )
            })?;
        if c.items.is_empty() {
            return Err(notice(
                "証明書が選ばれていません。",
                "「証明書」の画面で、請求する証明書を選んでください。",
            ));
        }
        let purpose = c
            .purpose
            .clone()
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| {
                notice(
                    "使用目的が選ばれていません。",
                    "使用目的のボタンを押してください。",
                )
            })?;
        let id_check = c.id_check.clone().ok_or_else(|| {
            notice(
                "本人確認書類が選ばれていません。",
                "確認した書類のボタンを押してください。",
            )
        })?;
        let requester = match c.relationship {
            Relationship::Agent | Relationship::ThirdParty => {
                if c.requester_name.trim().is_empty() {
                    return Err(notice(
                        "請求者の氏名が入力されていません。",
                        "代理人・第三者の氏名を入力して「設定」を押してください。",
                    ));
                }
                Some(GivenPerson {
                    name: c.requester_name.trim().to_owned(),
                    kana: String::new(),
                    birth_date: None,
                    sex: None,
                    address: None,
                })
            }
            _ => None,
        };
        if c.relationship == Relationship::Household && c.requester_atena.is_none() {
            return Err(notice(
                "請求者（同一世帯の方）が選ばれていません。",
                "世帯員の中から請求者を押してください。",
            ));
        }
        Ok(CertificateOrder {
            visit: None,
            subject: subject.to_owned(),
            relationship: c.relationship,
            requester_atena: if c.relationship == Relationship::Household {
                c.requester_atena.clone()
            } else {
                None
            },
            requester,
            purpose,
            destination: c.destination.trim().to_owned(),
            id_check,
            items: c.items.clone(),
            fee_total: c.fee_total(),
        })
    }

    /// Whether every application is accepted (or further along).
    pub fn all_accepted(&self) -> bool {
        self.server.as_ref().is_some_and(|v| {
            let live: Vec<_> = v
                .applications
                .iter()
                .filter(|a| a.state != ApplicationState::Cancelled)
                .collect();
            !live.is_empty()
                && live.iter().all(|a| {
                    matches!(
                        a.state,
                        ApplicationState::Accepted
                            | ApplicationState::Exported
                            | ApplicationState::Completed
                    )
                })
        })
    }

    /// The steps this visit shows (questions only when there are some or were some).
    pub fn steps(&self) -> Vec<Step> {
        Step::all(self.kind)
            .iter()
            .copied()
            .filter(|s| {
                *s != Step::Questions
                    || self.step == Step::Questions
                    || !self.event.answers.is_empty()
            })
            .collect()
    }
}

fn notice(title: impl Into<String>, next: impl Into<String>) -> Notice {
    Notice {
        title: title.into(),
        next: next.into(),
    }
}

fn warn(n: Notice) -> StepNotice {
    StepNotice {
        notice: n,
        tone: "warn",
    }
}

fn bad(n: Notice) -> StepNotice {
    StepNotice {
        notice: n,
        tone: "bad",
    }
}

/// The visits of this appliance, by staff session.
#[derive(Debug, Default)]
pub struct Visits {
    visits: HashMap<String, Visit>,
    serial: u64,
    /// Print outcomes seen for jobs no visit knows yet (the event may beat the
    /// control plane's answer).
    recent_prints: VecDeque<(String, PrintPhase)>,
}

/// What a visit action asks for.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Action {
    /// The action's name.
    pub action: String,
    /// Its argument (an id, an index, a date, a count …).
    #[serde(default)]
    pub value: Option<String>,
    /// A second argument.
    #[serde(default)]
    pub extra: Option<String>,
    /// Text typed by staff (a kana prefix, a name, a purpose …).
    #[serde(default)]
    pub text: Option<String>,
    /// A second text (kana of a newborn).
    #[serde(default)]
    pub text2: Option<String>,
}

/// What a call to the control plane ended in, as staff are told.
fn rpc_notice(e: &RpcError) -> Notice {
    match e.code.as_str() {
        "forbidden" => notice(
            "この操作をする権限がありません。",
            "権限のある職員に交代するか、管理者に連絡してください。",
        ),
        "unknown-method" => notice(
            "本庁のシステムがこの操作にまだ対応していません。",
            "情報システム担当に連絡してください。",
        ),
        "unknown-code" => notice(
            "この受付の申請書ではありません。",
            "お渡しした申請書かどうか確認して、もう一度読み取ってください。",
        ),
        "printer-unreachable" => notice(
            "プリンタに送れませんでした。",
            "プリンタの電源と用紙を確認してから「もう一度印刷」を押してください。",
        ),
        "no-catalogue" => notice(
            "手続の定義が登録されていません。",
            "管理者に連絡してください。",
        ),
        "address-unknown" => notice(
            "新しい住所が住所マスタで見つかりません。",
            "下の一覧から町字を選び、番地を入力して「この住所にする」を押してから「次へ」を押してください。",
        ),
        _ => notice(
            format!("本庁のシステムが受け付けませんでした（{}）。", e.message),
            "内容を確認して、もう一度操作してください。",
        ),
    }
}

fn unreachable_notice() -> Notice {
    notice(
        OFFLINE_TITLE,
        "入力した内容はこの端末に残っています。通信が回復したら、もう一度同じボタンを押してください。",
    )
}

/// Why a call failed.
enum CallError {
    /// Not reached or no answer in time.
    Unreachable,
    /// The session is no longer valid: staff go to the login page.
    Unauthenticated,
    /// Refused.
    Refused(RpcError),
}

impl CallError {
    fn notice(&self) -> Notice {
        match self {
            Self::Unreachable => unreachable_notice(),
            Self::Unauthenticated => notice(
                "ログインの有効期限が切れました。",
                "もう一度ログインしてください。",
            ),
            Self::Refused(e) => rpc_notice(e),
        }
    }
}

impl Ui {
    fn visits(&self) -> std::sync::MutexGuard<'_, Visits> {
        self.inner
            .visits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the visit of session `id` (when there is one), then tells the
    /// pages that it changed.
    pub(crate) fn with_visit<R>(&self, id: &str, f: impl FnOnce(&mut Visit) -> R) -> Option<R> {
        let (r, step) = {
            let mut visits = self.visits();
            let v = visits.visits.get_mut(id)?;
            v.touched = Instant::now();
            let r = f(v);
            (r, v.step.name())
        };
        self.publish(
            "visit",
            format!("{{\"step\":\"{step}\",\"t\":{}}}", super::now_ms()),
        );
        Some(r)
    }

    /// Runs `f` on the visit numbered `serial` of session `id`, if it still exists.
    fn with_serial(&self, id: &str, serial: u64, f: impl FnOnce(&mut Visit)) {
        self.with_visit(id, |v| {
            if v.serial == serial {
                f(v);
            }
        });
    }

    /// Looks at the visit of session `id` without changing it.
    pub(crate) fn visit_view<R>(&self, id: &str, f: impl FnOnce(Option<&Visit>) -> R) -> R {
        let idle = self.inner.config.session_idle;
        let mut visits = self.visits();
        visits.visits.retain(|_, v| v.touched.elapsed() <= idle);
        f(visits.visits.get(id))
    }

    /// Opens a visit for session `id`; refused while another is open.
    pub(crate) fn visit_start(&self, id: &str, kind: VisitKind) -> Result<(), Notice> {
        {
            let mut visits = self.visits();
            let idle = self.inner.config.session_idle;
            visits.visits.retain(|_, v| v.touched.elapsed() <= idle);
            if let Some(v) = visits.visits.get(id) {
                return Err(notice(
                    format!("{}の受付が終わっていません。", v.kind.label()),
                    "続けるか、「受付を終了」を押してから始めてください。",
                ));
            }
            visits.serial += 1;
            let serial = visits.serial;
            visits
                .visits
                .insert(id.to_owned(), Visit::new(serial, kind));
        }
        self.publish(
            "visit",
            format!("{{\"step\":\"people\",\"t\":{}}}", super::now_ms()),
        );
        Ok(())
    }

    /// Ends the visit of session `id` (受付を終了, logout): everything it held goes.
    pub(crate) fn visit_end(&self, id: &str) {
        let ended = self.visits().visits.remove(id).is_some();
        if ended {
            self.publish(
                "visit",
                format!("{{\"step\":\"none\",\"t\":{}}}", super::now_ms()),
            );
        }
    }

    async fn call<M: RpcMethod>(
        &self,
        session: &str,
        token: &Secret,
        request: &M::Request,
    ) -> Result<M::Response, CallError> {
        if !self.inner.link.is_online() {
            return Err(CallError::Unreachable);
        }
        match self
            .inner
            .link
            .rpc_in_session::<M>(token.expose(), request, self.inner.config.rpc_timeout)
            .await
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) if e.code == "unauthenticated" => {
                self.inner
                    .sessions
                    .logout(session, Some(super::session::EXPIRED));
                self.card_forget(session);
                Err(CallError::Unauthenticated)
            }
            Ok(Err(e)) => {
                tracing::info!(method = M::NAME, code = %e.code, "counter call refused");
                Err(CallError::Refused(e))
            }
            Err(e) => {
                tracing::warn!(method = M::NAME, error = %e, "counter call failed");
                Err(CallError::Unreachable)
            }
        }
    }

    /// Marks the visit busy with `what`; refused (with a notice) when it already is.
    fn begin(&self, id: &str, what: &str) -> Option<u64> {
        self.with_visit(id, |v| {
            if v.busy.is_some() {
                return None;
            }
            v.busy = Some(what.to_owned());
            v.notice = None;
            Some(v.serial)
        })
        .flatten()
    }

    /// Runs one action of staff on the visit of session `id`. Quick changes are made
    /// at once; calls to the control plane run in the background (the visit shows
    /// what it waits for). Refused (with what to tell staff) when the action does not
    /// fit the visit.
    pub(crate) fn visit_act(&self, id: &str, token: &Secret, a: &Action) -> Result<(), Notice> {
        let value = a.value.clone().unwrap_or_default();
        let text = a.text.clone().unwrap_or_default();
        let busy = self.visit_view(id, |v| v.map(|v| v.busy.is_some()));
        let Some(busy) = busy else {
            return Err(notice(
                "受付が始まっていません。",
                "メニューから手続を選んでください。",
            ));
        };
        if busy && !matches!(a.action.as_str(), "end") {
            return Err(notice("処理中です。", "終わるまでお待ちください。"));
        }
        match a.action.as_str() {
            "card-person" => self.take_card_person(id, token, &value),
            "search" => {
                let birth = a.extra.clone().filter(|s| !s.is_empty());
                if text.trim().is_empty() {
                    return Err(notice(
                        "検索する氏名（カナ）が入力されていません。",
                        "氏名の最初の数文字をカタカナで入力してください。",
                    ));
                }
                if let Some(b) = &birth {
                    if parse_iso(b).is_none() {
                        return Err(notice(
                            "生年月日が正しくありません。",
                            "選び直してください。",
                        ));
                    }
                }
                self.spawn_search(id, token, text.trim().to_owned(), birth);
                Ok(())
            }
            "pick" => self.pick_resident(id, token, &value),
            "confirm-family" => self.confirm_family(id),
            "remove" => self.edit(id, |v| {
                let i = index(&value, v.members.len())?;
                v.members.remove(i);
                v.cert.subject = 0;
                v.event.determination = None;
                Ok(())
            }),
            "toggle-subject" => self.edit(id, |v| {
                let i = index(&value, v.members.len())?;
                v.members[i].subject = !v.members[i].subject;
                v.event.determination = None;
                Ok(())
            }),
            "newborn-date" => self.edit(id, |v| {
                let d = parse_iso(&value).ok_or_else(bad_date)?;
                if d > today_jst() {
                    return Err(notice(
                        "未来の日付は選べません。",
                        "生まれた日を選んでください。",
                    ));
                }
                v.newborn.birth_date = Some(iso(d));
                Ok(())
            }),
            "newborn-sex" => self.edit(id, |v| {
                v.newborn.sex = sex_from_code(&value);
                Ok(())
            }),
            "newborn-add" => self.edit(id, |v| {
                let name = text.trim();
                let kana = a.text2.clone().unwrap_or_default();
                let kana = kana.trim();
                if name.is_empty() || kana.is_empty() {
                    return Err(notice(
                        "氏名とフリガナを入力してください。",
                        "入力してから「追加」を押してください。",
                    ));
                }
                let birth = v.newborn.birth_date.clone().ok_or_else(|| {
                    notice(
                        "生年月日が選ばれていません。",
                        "カレンダーから生まれた日を押してください。",
                    )
                })?;
                let sex = v.newborn.sex.clone().ok_or_else(|| {
                    notice(
                        "性別が選ばれていません。",
                        "「男」か「女」を押してください。",
                    )
                })?;
                v.members.push(Member {
                    person: PersonRef::New {
                        person: GivenPerson {
                            name: name.to_owned(),
                            kana: kana.to_owned(),
                            birth_date: Some(birth.clone()),
                            sex: Some(sex.clone()),
                            address: None,
                        },
                    },
                    name: name.to_owned(),
                    kana: kana.to_owned(),
                    birth_date: Some(birth),
                    sex: Some(sex),
                    address: String::new(),
                    relationship: "子".into(),
                    subject: true,
                    card_read: false,
                });
                v.newborn = Newborn::default();
                Ok(())
            }),
            "picker" => self.edit(id, |v| {
                let (y, m, _) = civil_from_days(v.event.picker);
                let (y, m) = match value.as_str() {
                    "prev" if m == 1 => (y - 1, 12),
                    "prev" => (y, m - 1),
                    "next" if m == 12 => (y + 1, 1),
                    "next" => (y, m + 1),
                    _ => (y, m),
                };
                let first = days_from_civil(y, m, 1);
                if first > today_jst() {
                    return Err(notice(
                        "未来の月は選べません。",
                        "今月以前の日付を選んでください。",
                    ));
                }
                v.event.picker = first;
                Ok(())
            }),
            "date" => self.edit(id, |v| {
                let d = parse_iso(&value).ok_or_else(bad_date)?;
                if d > today_jst() {
                    return Err(notice(
                        "未来の日付は選べません。",
                        "今日以前の日付を選んでください。",
                    ));
                }
                v.event.date = iso(d);
                v.event.picker = first_of_month(d);
                v.event.determination = None;
                Ok(())
            }),
            "destination" => self.edit(id, |v| {
                v.event.destination = text.trim().to_owned();
                v.cert.destination = text.trim().to_owned();
                Ok(())
            }),
            "goto" => self.goto(id, token, &value),
            "machiaza" => self.edit(id, |v| {
                let m = v
                    .event
                    .address
                    .menu
                    .as_ref()
                    .and_then(|m| m.machiaza.iter().find(|x| x.code == value))
                    .cloned()
                    .ok_or_else(|| {
                        notice(
                            "その町字は住所マスタにありません。",
                            "一覧から選んでください。",
                        )
                    })?;
                v.event.address.machiaza = Some(m);
                v.event.address.banchi.clear();
                Ok(())
            }),
            "banchi-key" => self.edit(id, |v| {
                let b = &mut v.event.address.banchi;
                match value.as_str() {
                    "back" => {
                        b.pop();
                    }
                    "-" if !b.is_empty() && !b.ends_with('-') && b.matches('-').count() < 2 => {
                        b.push('-')
                    }
                    d if d.len() == 1 && d.bytes().all(|c| c.is_ascii_digit()) && b.len() < 12 => {
                        b.push_str(d)
                    }
                    _ => {}
                }
                Ok(())
            }),
            "address-set" => self.edit(id, |v| {
                let a = &mut v.event.address;
                let m = a.machiaza.clone().ok_or_else(|| {
                    notice("町字が選ばれていません。", "町字のボタンを押してください。")
                })?;
                if a.banchi.is_empty() || a.banchi.ends_with('-') {
                    return Err(notice(
                        "番地が入力されていません。",
                        "数字のボタンで番地を入力してください（番地と号の間は「-」）。",
                    ));
                }
                let city = a.menu.as_ref().map(|m| m.city.clone()).unwrap_or_default();
                a.chosen = Some(Destination {
                    address: format!("{city}{}{}", m.name, banchi_text(&a.banchi)),
                    machiaza: Some(m.code.clone()),
                    prefecture: None,
                    municipality: None,
                });
                v.event.determination = None;
                Ok(())
            }),
            "answer" => {
                let yes = match a.extra.as_deref() {
                    Some("yes") => true,
                    Some("no") => false,
                    _ => {
                        return Err(notice(
                            "回答が正しくありません。",
                            "「はい」か「いいえ」を押してください。",
                        ))
                    }
                };
                self.edit(id, |v| {
                    let asked = v
                        .event
                        .determination
                        .as_ref()
                        .is_some_and(|d| d.questions.iter().any(|q| q.key == value));
                    if !asked {
                        return Err(notice(
                            "この質問は今は必要ありません。",
                            "画面の質問に答えてください。",
                        ));
                    }
                    v.event.answers.insert(value.clone(), yes);
                    Ok(())
                })?;
                self.spawn_determine(id, token);
                Ok(())
            }
            "adjust" => self.edit(id, |v| {
                let member = a.extra.clone().filter(|m| !m.is_empty());
                let d = v.event.determination.as_ref().ok_or_else(|| {
                    notice(
                        "手続一覧がまだありません。",
                        "「次へ」で手続を判定してください。",
                    )
                })?;
                let determined = match &member {
                    Some(m) => d
                        .members
                        .iter()
                        .find(|x| &x.member == m)
                        .and_then(|x| x.procedures.iter().find(|p| p.id == value)),
                    None => d.household.iter().find(|p| p.id == value),
                }
                .map(|p| p.included)
                .ok_or_else(|| {
                    notice("その手続は一覧にありません。", "画面を確認してください。")
                })?;
                let now = v.event.included(member.as_deref(), &value, determined);
                v.event
                    .adjustments
                    .retain(|x| !(x.member == member && x.procedure == value));
                // Back to what the rules say is no adjustment.
                if now == determined {
                    v.event.adjustments.push(Adjustment {
                        member,
                        procedure: value.clone(),
                        include: !now,
                    });
                }
                Ok(())
            }),
            // Certificates.
            "cert-subject" => self.edit(id, |v| {
                let i = index(&value, v.members.len())?;
                if v.members[i].atena().is_none() {
                    return Err(notice(
                        "この方の証明書は発行できません。",
                        "住民の方を選んでください。",
                    ));
                }
                v.cert.subject = i;
                Ok(())
            }),
            "cert-toggle" => self.edit(id, |v| {
                let offer = v
                    .cert
                    .menu
                    .as_ref()
                    .and_then(|m| m.certificates.iter().find(|c| c.id == value))
                    .cloned()
                    .ok_or_else(|| {
                        notice("その証明書はありません。", "一覧から選んでください。")
                    })?;
                if let Some(pos) = v.cert.items.iter().position(|i| i.certificate == value) {
                    v.cert.items.remove(pos);
                } else {
                    v.cert.items.push(OrderItem {
                        certificate: offer.id,
                        options: Vec::new(),
                        copies: 1,
                        fee: offer.fee,
                    });
                }
                Ok(())
            }),
            "cert-copies" => self.edit(id, |v| {
                let max = v.cert.menu.as_ref().map_or(10, |m| m.max_copies.max(1));
                let item = v
                    .cert
                    .items
                    .iter_mut()
                    .find(|i| i.certificate == value)
                    .ok_or_else(|| {
                        notice(
                            "その証明書は選ばれていません。",
                            "先に証明書を選んでください。",
                        )
                    })?;
                match a.extra.as_deref() {
                    Some("+") if item.copies < max => item.copies += 1,
                    Some("-") if item.copies > 1 => item.copies -= 1,
                    Some("+") => {
                        return Err(notice(
                            format!("1回に請求できるのは{max}通までです。"),
                            "通数を確認してください。",
                        ))
                    }
                    _ => {}
                }
                Ok(())
            }),
            "cert-option" => self.edit(id, |v| {
                let option = a.extra.clone().unwrap_or_default();
                let offer = v
                    .cert
                    .menu
                    .as_ref()
                    .and_then(|m| m.certificates.iter().find(|c| c.id == value))
                    .cloned();
                let valid = offer.as_ref().is_some_and(|o| {
                    o.options.contains(&option)
                        || o.restricted_options.contains(&option)
                        || o.free_options.contains(&option)
                });
                if !valid {
                    return Err(notice(
                        "その項目は選べません。",
                        "画面の項目から選んでください。",
                    ));
                }
                let item = v
                    .cert
                    .items
                    .iter_mut()
                    .find(|i| i.certificate == value)
                    .ok_or_else(|| {
                        notice(
                            "その証明書は選ばれていません。",
                            "先に証明書を選んでください。",
                        )
                    })?;
                if let Some(p) = item.options.iter().position(|o| *o == option) {
                    item.options.remove(p);
                } else {
                    item.options.push(option.clone());
                }
                let free =
                    offer.is_some_and(|o| item.options.iter().any(|x| o.free_options.contains(x)));
                item.fee = if free {
                    0
                } else {
                    v.cert
                        .menu
                        .as_ref()
                        .and_then(|m| m.certificates.iter().find(|c| c.id == value))
                        .map_or(item.fee, |c| c.fee)
                };
                Ok(())
            }),
            "requester" => self.edit(id, |v| {
                v.cert.relationship = match value.as_str() {
                    "self" => Relationship::Myself,
                    "household" => Relationship::Household,
                    "agent" => Relationship::Agent,
                    "third_party" => Relationship::ThirdParty,
                    _ => {
                        return Err(notice(
                            "請求者の区分が正しくありません。",
                            "ボタンから選んでください。",
                        ))
                    }
                };
                if v.cert.relationship == Relationship::Household {
                    let subject = v
                        .members
                        .get(v.cert.subject)
                        .and_then(Member::atena)
                        .map(str::to_owned);
                    v.cert.requester_atena = v
                        .members
                        .iter()
                        .filter_map(Member::atena)
                        .find(|a| Some(*a) != subject.as_deref())
                        .map(str::to_owned);
                }
                Ok(())
            }),
            "requester-member" => self.edit(id, |v| {
                if !v.cert.household.iter().any(|r| r.atena == value) {
                    return Err(notice(
                        "その方は同一世帯にいません。",
                        "世帯員から選んでください。",
                    ));
                }
                v.cert.relationship = Relationship::Household;
                v.cert.requester_atena = Some(value.clone());
                Ok(())
            }),
            "requester-name" => self.edit(id, |v| {
                v.cert.requester_name = text.trim().to_owned();
                Ok(())
            }),
            "purpose" => self.edit(id, |v| {
                let menu = v
                    .cert
                    .menu
                    .as_ref()
                    .map(|m| m.purposes.clone())
                    .unwrap_or_default();
                if value == "other" {
                    v.cert.purpose_other = true;
                    v.cert.purpose = None;
                } else if menu.contains(&value) {
                    v.cert.purpose_other = false;
                    v.cert.purpose = Some(value.clone());
                } else {
                    return Err(notice(
                        "その使用目的は選べません。",
                        "ボタンから選んでください。",
                    ));
                }
                Ok(())
            }),
            "purpose-text" => self.edit(id, |v| {
                if text.trim().is_empty() {
                    return Err(notice(
                        "使用目的が入力されていません。",
                        "入力してから「設定」を押してください。",
                    ));
                }
                v.cert.purpose_other = true;
                v.cert.purpose = Some(text.trim().to_owned());
                Ok(())
            }),
            "id-check" => self.edit(id, |v| {
                let menu = v
                    .cert
                    .menu
                    .as_ref()
                    .map(|m| m.id_checks.clone())
                    .unwrap_or_default();
                if !menu.contains(&value) {
                    return Err(notice(
                        "その書類は選べません。",
                        "ボタンから選んでください。",
                    ));
                }
                v.cert.id_check = Some(value.clone());
                Ok(())
            }),
            "print" => {
                self.spawn_print(id, token, false);
                Ok(())
            }
            "reprint" => {
                self.spawn_print(id, token, true);
                Ok(())
            }
            "resend-codes" => {
                let codes = self
                    .with_visit(id, |v| std::mem::take(&mut v.pending_codes))
                    .unwrap_or_default();
                for code in codes {
                    self.spawn_accept(id, token, code);
                }
                Ok(())
            }
            "reload" => {
                self.spawn_reload(id, token);
                Ok(())
            }
            "end" => {
                self.visit_end(id);
                Ok(())
            }
            _ => Err(notice(
                "この操作はできません。",
                "画面を読み込み直してください。",
            )),
        }
    }

    fn edit(
        &self,
        id: &str,
        f: impl FnOnce(&mut Visit) -> Result<(), Notice>,
    ) -> Result<(), Notice> {
        self.with_visit(id, |v| {
            let r = f(v);
            if r.is_ok() {
                v.notice = None;
            }
            r
        })
        .unwrap_or_else(|| {
            Err(notice(
                "受付が始まっていません。",
                "メニューから手続を選んでください。",
            ))
        })
    }

    /// Moves to a step (`next` / `back` / a step name), checking what it needs.
    fn goto(&self, id: &str, token: &Secret, to: &str) -> Result<(), Notice> {
        let target = self.visit_view(id, |v| {
            let v = v.ok_or_else(|| {
                notice(
                    "受付が始まっていません。",
                    "メニューから手続を選んでください。",
                )
            })?;
            let steps = Step::all(v.kind);
            let at = steps.iter().position(|s| *s == v.step).unwrap_or(0);
            let target = match to {
                "next" => steps.get(at + 1).copied(),
                "back" => at
                    .checked_sub(1)
                    .and_then(|i| steps.get(i))
                    .copied()
                    .map(|s| {
                        // Questions are skipped going back when none are open.
                        if s == Step::Questions
                            && v.event
                                .determination
                                .as_ref()
                                .is_none_or(|d| d.questions.is_empty())
                        {
                            Step::Date
                        } else {
                            s
                        }
                    }),
                other => steps.iter().copied().find(|s| s.name() == other),
            }
            .ok_or_else(|| notice("その画面には進めません。", "画面のボタンを使ってください。"))?;
            let target_at = steps.iter().position(|s| *s == target).unwrap_or(0);
            if v.server.is_some()
                && target_at < steps.iter().position(|s| *s == Step::Print).unwrap_or(0)
            {
                return Err(notice(
                    "申請書を印刷したので、内容は変更できません。",
                    "変更する場合は「受付を終了」してから、最初から受付してください。",
                ));
            }
            if target_at > at + 1 {
                return Err(notice(
                    "前の画面を先に済ませてください。",
                    "「次へ」で進んでください。",
                ));
            }
            if target_at > at {
                match v.step {
                    Step::People if v.members.is_empty() => {
                        return Err(notice(
                            "来庁者が決まっていません。",
                            "カードを読み取るか、氏名で検索して、対象の方を追加してください。",
                        ))
                    }
                    Step::People
                        if v.kind == VisitKind::Certificate
                            && v.members
                                .get(v.cert.subject)
                                .and_then(Member::atena)
                                .is_none() =>
                    {
                        return Err(notice(
                            "証明書の対象の方が住民記録にありません。",
                            "住民の方を選んでください。",
                        ))
                    }
                    Step::People
                        if v.kind != VisitKind::Certificate
                            && !v.members.iter().any(|m| m.subject) =>
                    {
                        return Err(notice(
                            "届出の対象の方がいません。",
                            "対象の方の「対象外」を押して「対象」にしてください。",
                        ))
                    }
                    Step::Date
                        if v.kind == VisitKind::Event(EventKind::MoveWithin)
                            && v.event.address.chosen.is_none() =>
                    {
                        return Err(notice(
                            "転居先の住所が決まっていません。",
                            "町字を選び、番地を入力して「この住所にする」を押してください。",
                        ))
                    }
                    Step::Certificates if v.cert.items.is_empty() => {
                        return Err(notice(
                            "証明書が選ばれていません。",
                            "請求する証明書を押してください。",
                        ))
                    }
                    _ => {}
                }
            }
            Ok(target)
        })?;
        match target {
            // Leaving the date step: determine (questions or the list follow).
            Step::Questions | Step::Procedures => {
                self.spawn_determine(id, token);
                Ok(())
            }
            Step::Date => {
                let picker = self.edit(id, |v| {
                    if v.kind == VisitKind::Event(EventKind::MoveWithin) {
                        v.event.address.open = true;
                    }
                    v.step = Step::Date;
                    Ok(())
                });
                self.spawn_addresses(id, token);
                picker
            }
            Step::Details => self.edit(id, |v| {
                if v.cert.id_check.is_none() && v.members.iter().any(|m| m.card_read) {
                    v.cert.id_check = v.cert.menu.as_ref().and_then(|m| {
                        m.id_checks
                            .iter()
                            .find(|c| c.contains("マイナンバーカード"))
                            .cloned()
                    });
                }
                v.step = Step::Details;
                Ok(())
            }),
            other => self.edit(id, |v| {
                v.step = other;
                Ok(())
            }),
        }
    }

    // ------------------------------------------------------------ people

    /// Takes the person whose card was read (candidate `value` of the lookup; for
    /// 転入, the 転出証明書情報 matching the card).
    fn take_card_person(&self, id: &str, token: &Secret, value: &str) -> Result<(), Notice> {
        let (face, candidates) = self
            .card_view(id, |screen, mine| match screen {
                CardScreen::Read { face, lookup, .. } if mine => {
                    let c = match lookup {
                        Lookup::Answered { candidates, .. } => candidates.clone(),
                        _ => Vec::new(),
                    };
                    Some(((**face).clone(), c))
                }
                _ => None,
            })
            .ok_or_else(|| {
                notice(
                    "読み取ったカードがありません。",
                    "カードを読み取ってから押してください。",
                )
            })?;
        let kind = self.visit_view(id, |v| v.map(|v| v.kind));
        match kind {
            Some(VisitKind::Event(EventKind::MoveIn)) => {
                self.spawn_moving_in(id, token, face);
                self.card_reset();
                Ok(())
            }
            Some(kind) => {
                let i = index(value, candidates.len())?;
                let c = &candidates[i];
                let r = c.resident.clone();
                let first = self.add_resident(id, &r, true, kind);
                self.card_reset();
                if first {
                    self.spawn_household(id, token, r.atena.clone());
                }
                Ok(())
            }
            None => Err(notice(
                "受付が始まっていません。",
                "メニューから手続を選んでください。",
            )),
        }
    }

    /// After a card read in a 転入 visit: the card is taken into the visit at once
    /// (the 転出証明書情報 looked up for the first card, the member marked カード確認済
    /// for the others) and the card screen returns to the visit, without a tap — every
    /// card read during a 転入 is for it. Other visits keep the explicit choice among
    /// the register's candidates.
    pub(crate) fn auto_take_card(&self, id: &str, token: &Secret) {
        let move_in = self.visit_view(id, |v| {
            v.is_some_and(|v| v.kind == VisitKind::Event(EventKind::MoveIn))
        });
        if !move_in {
            return;
        }
        // Marked before the card screen is reset: the reset makes the card screen
        // refresh at once (a new identification), and that refresh must already find
        // the mark. Marked after, it came too late whenever the identification was
        // quick, and the visit's own event is not heard while a PIN keypad is shown:
        // the screen stayed on the card.
        self.with_visit(id, |v| v.card_taken = true);
        if self.take_card_person(id, token, "0").is_err() {
            self.with_visit(id, |v| v.card_taken = false);
        }
    }

    /// Whether the card screen should go back to the visit (once).
    pub(crate) fn take_card_taken(&self, id: &str) -> bool {
        let mut visits = self.visits();
        visits
            .visits
            .get_mut(id)
            .is_some_and(|v| std::mem::take(&mut v.card_taken))
    }

    /// Adds a resident (or marks their card read); true when they are the first.
    fn add_resident(&self, id: &str, r: &ResidentView, card_read: bool, kind: VisitKind) -> bool {
        self.with_visit(id, |v| {
            let person = PersonRef::Resident {
                atena: r.atena.clone(),
            };
            let first = v.members.is_empty();
            if let Some(m) = v.members.iter_mut().find(|m| m.same_person(&person)) {
                m.card_read |= card_read;
            } else {
                let mut m = Member::resident(r, card_read);
                // A birth is about the newborn; the parents file it.
                if kind == VisitKind::Event(EventKind::Birth) {
                    m.subject = false;
                }
                v.members.push(m);
            }
            v.search = Search::default();
            v.notice = None;
            v.event.determination = None;
            first
        })
        .unwrap_or(false)
    }

    fn pick_resident(&self, id: &str, token: &Secret, atena: &str) -> Result<(), Notice> {
        let found = self.visit_view(id, |v| {
            v.and_then(|v| {
                v.search
                    .results
                    .as_ref()?
                    .iter()
                    .find(|c| c.resident.atena == atena)
                    .map(|c| (c.resident.clone(), v.kind))
            })
        });
        let (r, kind) = found.ok_or_else(|| {
            notice(
                "その方は検索結果にありません。",
                "もう一度検索してください。",
            )
        })?;
        let first = self.add_resident(id, &r, false, kind);
        if first {
            self.spawn_household(id, token, r.atena);
        }
        Ok(())
    }

    fn confirm_family(&self, id: &str) -> Result<(), Notice> {
        self.edit(id, |v| {
            let offer = v.family_offer.take().ok_or_else(|| {
                notice(
                    "確認する世帯がありません。",
                    "転入される方のカードを読み取ってください。",
                )
            })?;
            for p in &offer.family {
                let card = offer.card_code.as_deref() == Some(p.juminhyo_code.as_str());
                let person = PersonRef::MovingIn {
                    juminhyo_code: p.juminhyo_code.clone(),
                };
                if let Some(m) = v.members.iter_mut().find(|m| m.same_person(&person)) {
                    m.card_read |= card;
                } else {
                    v.members.push(Member::moving_in(p, card));
                }
            }
            Ok(())
        })
    }

    fn spawn_search(&self, id: &str, token: &Secret, text: String, birth: Option<String>) {
        let Some(serial) = self.begin(id, "住民記録を検索しています…") else {
            return;
        };
        let (ui, id, token) = (self.clone(), id.to_owned(), token.clone());
        tokio::spawn(async move {
            let req = SearchRequest {
                text: text.clone(),
                birth_date: birth.clone(),
                limit: Some(20),
            };
            let r = ui.call::<SearchResidents>(&id, &token, &req).await;
            ui.with_serial(&id, serial, |v| {
                v.busy = None;
                match r {
                    Ok(answer) => {
                        v.search = Search {
                            text,
                            birth_date: birth,
                            results: Some(answer.candidates),
                        };
                    }
                    Err(e) => v.notice = Some(bad(e.notice())),
                }
            });
        });
    }

    fn spawn_household(&self, id: &str, token: &Secret, atena: String) {
        let Some(serial) = self.begin(id, "世帯の情報を取得しています…") else {
            return;
        };
        let (ui, id, token) = (self.clone(), id.to_owned(), token.clone());
        tokio::spawn(async move {
            let household = ui
                .call::<Household>(
                    &id,
                    &token,
                    &HouseholdRequest {
                        atena: atena.clone(),
                    },
                )
                .await;
            let kind = ui.visit_view(&id, |v| v.map(|v| v.kind));
            let menu = if kind == Some(VisitKind::Certificate) {
                Some(ui.call::<Certificates>(&id, &token, &()).await)
            } else {
                None
            };
            ui.with_serial(&id, serial, |v| {
                v.busy = None;
                match household {
                    Ok(h) => {
                        // The person found first: complete their record (続柄, 性別).
                        for r in &h.members {
                            let person = PersonRef::Resident {
                                atena: r.atena.clone(),
                            };
                            if let Some(m) = v.members.iter_mut().find(|m| m.same_person(&person)) {
                                m.relationship = r.relation.clone();
                                m.sex = sex_from_code(&r.sex).or(m.sex.take());
                            } else if v.kind != VisitKind::Certificate && r.status == "在住" {
                                // The household joins a life event; only movers are
                                // its subjects by default.
                                let mut m = Member::resident(r, false);
                                m.subject = matches!(
                                    v.kind,
                                    VisitKind::Event(EventKind::MoveWithin | EventKind::MoveOut)
                                );
                                v.members.push(m);
                            }
                        }
                        v.cert.household = h.members;
                    }
                    Err(e) => v.notice = Some(warn(e.notice())),
                }
                match menu {
                    Some(Ok(m)) => v.cert.menu = Some(m),
                    Some(Err(e)) => v.notice = Some(bad(e.notice())),
                    None => {}
                }
            });
        });
    }

    fn spawn_moving_in(&self, id: &str, token: &Secret, face: CardFace) {
        let Some(serial) = self.begin(id, "転出証明書情報を照会しています…")
        else {
            return;
        };
        let (ui, id, token) = (self.clone(), id.to_owned(), token.clone());
        tokio::spawn(async move {
            let r = ui.call::<LookupMovingIn>(&id, &token, &face).await;
            ui.with_serial(&id, serial, |v| {
                v.busy = None;
                match r {
                    Ok(answer) if answer.candidates.is_empty() => {
                        v.notice = Some(warn(notice(
                            "この方の転出証明書情報が見つかりません。",
                            "転出証明書（紙）をお持ちか確認してください。特例転入でない場合は、氏名で検索するか紙の届出で受け付けてください。",
                        )));
                    }
                    Ok(answer) => {
                        let card_code = answer
                            .exact
                            .then(|| answer.candidates[0].juminhyo_code.clone());
                        // A family member of a family already confirmed: their card is checked.
                        let known = card_code.as_ref().and_then(|code| {
                            v.members.iter_mut().find(|m| {
                                matches!(&m.person, PersonRef::MovingIn { juminhyo_code } if juminhyo_code == code)
                            })
                        });
                        if let Some(m) = known {
                            m.card_read = true;
                            v.notice = Some(StepNotice {
                                notice: notice(format!("{}さんのカードを確認しました。", m.name), "ほかの方のカードも読み取れます。終わったら「次へ」を押してください。"),
                                tone: "ok",
                            });
                        } else {
                            let family = if answer.family.is_empty() {
                                answer.candidates.clone()
                            } else {
                                answer.family.clone()
                            };
                            v.family_offer = Some(FamilyOffer { family, card_code, exact: answer.exact });
                        }
                    }
                    Err(e) => v.notice = Some(bad(e.notice())),
                }
            });
        });
    }

    // ------------------------------------------------------------ determination

    fn spawn_determine(&self, id: &str, token: &Secret) {
        let Some(plan) = self.visit_view(id, |v| v.and_then(Visit::plan)) else {
            return;
        };
        let Some(serial) = self.begin(id, "手続を判定しています…") else {
            return;
        };
        let (ui, id, token) = (self.clone(), id.to_owned(), token.clone());
        tokio::spawn(async move {
            let r = ui.call::<Determine>(&id, &token, &plan).await;
            let unknown = matches!(&r, Err(CallError::Refused(e)) if e.code == "address-unknown");
            ui.with_serial(&id, serial, |v| {
                v.busy = None;
                match r {
                    Ok(d) => {
                        v.step = if d.questions.is_empty() {
                            Step::Procedures
                        } else {
                            Step::Questions
                        };
                        v.event.determination = Some(d);
                    }
                    Err(e) if unknown => {
                        v.event.address.open = true;
                        v.event.address.chosen = None;
                        v.notice = Some(warn(e.notice()));
                    }
                    Err(e) => v.notice = Some(bad(e.notice())),
                }
            });
            if unknown {
                ui.spawn_addresses(&id, &token);
            }
        });
    }

    /// Fetches the address master's 町字 for the picker (once per visit).
    fn spawn_addresses(&self, id: &str, token: &Secret) {
        let needed = self.visit_view(id, |v| {
            v.is_some_and(|v| v.event.address.open && v.event.address.menu.is_none())
        });
        if !needed {
            return;
        }
        let Some(serial) = self.begin(id, "住所の一覧を取得しています…") else {
            return;
        };
        let (ui, id, token) = (self.clone(), id.to_owned(), token.clone());
        tokio::spawn(async move {
            let r = ui.call::<Addresses>(&id, &token, &()).await;
            ui.with_serial(&id, serial, |v| {
                v.busy = None;
                match r {
                    Ok(menu) => v.event.address.menu = Some(menu),
                    Err(e) => v.notice = Some(bad(e.notice())),
                }
            });
        });
    }

    // ------------------------------------------------------------ print and accept

    fn spawn_print(&self, id: &str, token: &Secret, again: bool) {
        let prepared = self.visit_view(id, |v| {
            let v = v.ok_or_else(|| {
                notice(
                    "受付が始まっていません。",
                    "メニューから手続を選んでください。",
                )
            })?;
            if again && v.server.is_none() {
                return Err(notice(
                    "まだ印刷していません。",
                    "「印刷」を押してください。",
                ));
            }
            let request = match (&v.server, v.kind) {
                (Some(_), _) => None,
                (None, VisitKind::Certificate) => Some(Ok(v.order()?)),
                (None, VisitKind::Event(_)) => {
                    let plan = v.plan().ok_or_else(|| {
                        notice("届出の内容がありません。", "最初からやり直してください。")
                    })?;
                    if v.event.determination.is_none() {
                        return Err(notice(
                            "手続一覧がまだありません。",
                            "「次へ」で手続を判定してください。",
                        ));
                    }
                    Some(Err(CreateVisitRequest {
                        plan,
                        adjustments: v.event.adjustments.clone(),
                    }))
                }
            };
            Ok((request, v.server.as_ref().map(|s| s.visit.clone()), v.kind))
        });
        let (request, existing, kind) = match prepared {
            Ok(p) => p,
            Err(n) => {
                self.with_visit(id, |v| v.notice = Some(warn(n)));
                return;
            }
        };
        let Some(serial) = self.begin(id, "申請書を作成しています…") else {
            return;
        };
        self.with_visit(id, |v| {
            v.step = Step::Print;
            v.print = Some(PrintProgress {
                job: None,
                phase: PrintPhase::Sending,
                pages: 0,
                numbers: Vec::new(),
            });
        });
        let (ui, id, token) = (self.clone(), id.to_owned(), token.clone());
        tokio::spawn(async move {
            let visit_id = match (existing, request) {
                (Some(visit), _) => visit,
                (None, Some(Ok(order))) => {
                    match ui.call::<RequestCertificates>(&id, &token, &order).await {
                        Ok(view) => {
                            let visit = view.visit.clone();
                            ui.with_serial(&id, serial, |v| v.server = Some(view));
                            visit
                        }
                        Err(e) => return ui.print_failed(&id, serial, &e, true),
                    }
                }
                (None, Some(Err(create))) => {
                    match ui.call::<CreateVisit>(&id, &token, &create).await {
                        Ok(view) => {
                            let visit = view.visit.clone();
                            ui.with_serial(&id, serial, |v| v.server = Some(view));
                            visit
                        }
                        Err(e) => return ui.print_failed(&id, serial, &e, true),
                    }
                }
                (None, None) => return,
            };
            ui.with_serial(&id, serial, |v| {
                v.busy = Some("プリンタに送っています…".into())
            });
            let req = PrintVisitRequest {
                visit: visit_id,
                numbers: Vec::new(),
                guide: matches!(kind, VisitKind::Event(_)),
            };
            match ui.call::<PrintVisit>(&id, &token, &req).await {
                Ok(answer) => {
                    let seen = {
                        let visits = ui.visits();
                        visits
                            .recent_prints
                            .iter()
                            .rev()
                            .find(|(j, _)| *j == answer.job_id)
                            .map(|(_, p)| p.clone())
                    };
                    ui.with_serial(&id, serial, |v| {
                        v.busy = None;
                        let phase = seen.unwrap_or(PrintPhase::Queued);
                        if phase == PrintPhase::Completed && v.step == Step::Print {
                            v.step = Step::Scan;
                        }
                        let done = phase == PrintPhase::Completed;
                        v.print = Some(PrintProgress {
                            job: Some(answer.job_id),
                            phase,
                            pages: answer.pages,
                            numbers: answer.numbers,
                        });
                        if done {
                            v.mark_printed();
                        }
                    });
                }
                Err(e) => ui.print_failed(&id, serial, &e, false),
            }
        });
    }

    fn print_failed(&self, id: &str, serial: u64, e: &CallError, before_visit: bool) {
        self.with_serial(id, serial, |v| {
            v.busy = None;
            v.notice = Some(bad(e.notice()));
            if before_visit {
                // Nothing was created: back to where staff were, everything kept.
                v.print = None;
                v.step = match v.kind {
                    VisitKind::Certificate => Step::Details,
                    VisitKind::Event(_) => Step::Procedures,
                };
            } else if let Some(p) = &mut v.print {
                p.phase = PrintPhase::Failed(e.notice().title);
            }
        });
    }

    /// A print outcome of the appliance's printer.
    pub(crate) fn visit_on_print(&self, status: &PrintStatus) {
        let phase = PrintPhase::from_state(&status.state);
        let owners: Vec<String> = {
            let mut visits = self.visits();
            visits
                .recent_prints
                .push_back((status.job_id.clone(), phase.clone()));
            while visits.recent_prints.len() > 32 {
                visits.recent_prints.pop_front();
            }
            visits
                .visits
                .iter()
                .filter(|(_, v)| {
                    v.print.as_ref().and_then(|p| p.job.as_deref()) == Some(status.job_id.as_str())
                })
                .map(|(k, _)| k.clone())
                .collect()
        };
        for id in owners {
            self.with_visit(&id, |v| {
                if let Some(p) = &mut v.print {
                    p.phase = phase.clone();
                }
                if phase == PrintPhase::Completed {
                    v.mark_printed();
                    if v.step == Step::Print {
                        v.step = Step::Scan;
                    }
                }
            });
        }
    }

    /// A code the scanner read: it goes to the visit waiting for signed forms.
    pub(crate) fn visit_on_scan(&self, scan: &ScanResult) {
        let code = String::from_utf8_lossy(&scan.data).trim().to_owned();
        let target = {
            let visits = self.visits();
            visits
                .visits
                .iter()
                .filter(|(_, v)| {
                    v.server.is_some() && matches!(v.step, Step::Print | Step::Scan | Step::Done)
                })
                .max_by_key(|(_, v)| v.touched)
                .map(|(k, _)| k.clone())
        };
        let Some(id) = target else { return };
        let Some(token) = self
            .inner
            .sessions
            .get(&id)
            .and_then(|s| s.staff.map(|s| s.token))
        else {
            return;
        };
        self.spawn_accept(&id, &token, code);
    }

    fn spawn_accept(&self, id: &str, token: &Secret, code: String) {
        let check = self.with_visit(id, |v| {
            let server = v.server.as_ref()?;
            let app = server.applications.iter().find(|a| a.number == code);
            match app {
                None => {
                    v.scan_notice = Some(warn(notice(
                        "この受付の申請書ではありません。",
                        "読み取った二次元コードは、この受付で印刷した申請書のものではありません。お渡しした申請書か確認してください。",
                    )));
                    None
                }
                Some(a) if matches!(a.state, ApplicationState::Accepted | ApplicationState::Exported | ApplicationState::Completed) => {
                    v.scan_notice = Some(StepNotice {
                        notice: notice(format!("{}は受付済みです。", a.title), "ほかの申請書を読み取ってください。"),
                        tone: "ok",
                    });
                    None
                }
                Some(_) => Some((server.visit.clone(), v.serial)),
            }
        });
        let Some(Some((visit, serial))) = check else {
            return;
        };
        let (ui, id, token) = (self.clone(), id.to_owned(), token.clone());
        tokio::spawn(async move {
            let req = AcceptRequest {
                visit,
                code: code.clone(),
            };
            let r = ui.call::<Accept>(&id, &token, &req).await;
            ui.with_serial(&id, serial, |v| match r {
                Ok(view) => {
                    let title = view
                        .applications
                        .iter()
                        .find(|a| a.number == code)
                        .map(|a| a.title.clone())
                        .unwrap_or_default();
                    v.server = Some(view);
                    v.scan_notice = Some(StepNotice {
                        notice: notice(
                            format!("{title}を受け付けました。"),
                            "次の申請書を読み取ってください。",
                        ),
                        tone: "ok",
                    });
                    if v.all_accepted() {
                        v.step = Step::Done;
                        v.scan_notice = None;
                    } else if v.step == Step::Print {
                        v.step = Step::Scan;
                    }
                }
                Err(CallError::Unreachable) => {
                    if !v.pending_codes.contains(&code) {
                        v.pending_codes.push(code);
                    }
                    v.scan_notice = Some(bad(unreachable_notice()));
                }
                Err(e) => v.scan_notice = Some(warn(e.notice())),
            });
        });
    }

    fn spawn_reload(&self, id: &str, token: &Secret) {
        let Some(visit) = self.visit_view(id, |v| {
            v.and_then(|v| v.server.as_ref().map(|s| s.visit.clone()))
        }) else {
            return;
        };
        let Some(serial) = self.begin(id, "受付の状態を確認しています…") else {
            return;
        };
        let (ui, id, token) = (self.clone(), id.to_owned(), token.clone());
        tokio::spawn(async move {
            let r = ui
                .call::<kakanai_protocol::counter::GetVisit>(
                    &id,
                    &token,
                    &kakanai_protocol::counter::VisitRef { visit },
                )
                .await;
            ui.with_serial(&id, serial, |v| {
                v.busy = None;
                match r {
                    Ok(view) => {
                        v.server = Some(view);
                        if v.all_accepted() {
                            v.step = Step::Done;
                        }
                    }
                    Err(e) => v.notice = Some(bad(e.notice())),
                }
            });
        });
    }
}

fn bad_date() -> Notice {
    notice(
        "日付が正しくありません。",
        "カレンダーから選び直してください。",
    )
}

fn index(value: &str, len: usize) -> Result<usize, Notice> {
    value
        .parse::<usize>()
        .ok()
        .filter(|i| *i < len)
        .ok_or_else(|| {
            notice(
                "選んだ方が見つかりません。",
                "画面を読み込み直してから選んでください。",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_failures_are_said_in_staff_words() {
        assert_eq!(
            plain_print_failure("(aborted-by-system): media-empty"),
            "用紙切れ"
        );
        assert_eq!(
            plain_print_failure("media-jam-error, door-open-warning"),
            "紙詰まり・カバーが開いています"
        );
        assert_eq!(
            plain_print_failure("(aborted-by-system)"),
            "プリンタが印刷を中止しました"
        );
        assert_eq!(
            plain_print_failure("印刷が取り消されました。"),
            "印刷が取り消されました。"
        );
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(iso(days_from_civil(2026, 11, 27) + 5), "2026-12-02");
        assert_eq!(parse_iso("2026-02-29"), None);
        assert_eq!(month_len(2024, 2), 29);
        assert_eq!(month_len(2026, 12), 31);
        assert_eq!(wareki_iso("2026-11-27"), "令和8年11月27日");
    }

    #[test]
    fn banchi_keys_become_the_printed_form() {
        assert_eq!(banchi_text(""), "");
        assert_eq!(banchi_text("12"), "12番地");
        assert_eq!(banchi_text("8-1"), "8番1号");
        assert_eq!(banchi_text("3-4-5"), "3番4号5");
    }

    #[test]
    fn an_adjustment_back_to_the_rules_is_no_adjustment() {
        let mut e = EventDraft::new();
        assert!(e.included(Some("m1"), "p", true));
        e.adjustments.push(Adjustment {
            member: Some("m1".into()),
            procedure: "p".into(),
            include: false,
        });
        assert!(!e.included(Some("m1"), "p", true));
        assert!(e.included(None, "p", true));
    }

    #[test]
    fn an_order_says_what_is_missing() {
        let mut v = Visit::new(1, VisitKind::Certificate);
        assert!(v.order().is_err());
        v.members.push(Member::resident(
            &ResidentView {
                atena: "1".into(),
                household: "h".into(),
                name: "見本　花子".into(),
                kana: "ミホン　ハナコ".into(),
                birth_date: "1985-04-01".into(),
                sex: "2".into(),
                relation: "世帯主".into(),
                machiaza: "001".into(),
                address: "本町".into(),
                status: "在住".into(),
            },
            true,
        ));
        v.cert.items.push(OrderItem {
            certificate: "juminhyo".into(),
            options: vec![],
            copies: 2,
            fee: 300,
        });
        let e = v.order().unwrap_err();
        assert!(e.title.contains("使用目的"));
        v.cert.purpose = Some("就職".into());
        v.cert.id_check = Some("マイナンバーカード".into());
        let o = v.order().unwrap();
        assert_eq!(o.fee_total, 600);
        assert_eq!(o.subject, "1");
        assert!(!format!("{v:?}").contains("見本"));
    }
}
