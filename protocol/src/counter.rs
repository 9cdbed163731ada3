//! The counter flows' RPC methods (issue 9): what the staff UI on the appliance asks
//! the control plane while a resident is at the counter — the certificate catalogue,
//! the people moving in, the determination of a life event, the visit's applications,
//! printing them with the procedure guide, and accepting the signed forms.
//!
//! One definition for both ends: the control plane's handlers deserialise these
//! requests and serialise these responses, the appliance the other way round. Every
//! type that carries personal data shows nothing of it in `Debug`.
//!
//! | method | request | response | permission |
//! | --- | --- | --- | --- |
//! | [`Certificates`] `counter.certificates` | `()` | [`CertificateMenu`] | `application.create` |
//! | [`LookupMovingIn`] `counter.lookup-moving-in` | [`CardFace`] | [`MovingInResponse`] | `resident.view` |
//! | [`Determine`] `counter.determine` | [`VisitPlan`] | [`DeterminationView`] | `procedure.determine` |
//! | [`CreateVisit`] `counter.create-visit` | [`CreateVisitRequest`] | [`VisitView`] | `application.create` |
//! | [`RequestCertificates`] `counter.request-certificates` | [`CertificateOrder`] | [`VisitView`] | `application.create` |
//! | [`PrintVisit`] `counter.print` | [`PrintVisitRequest`] | [`PrintVisitResponse`] | `application.create` |
//! | [`Accept`] `counter.accept` | [`AcceptRequest`] (the scanned code) | [`VisitView`] | `application.create` |
//! | [`GetVisit`] `counter.visit` | [`VisitRef`] | [`VisitView`] | `application.view` |
//! | [`Addresses`] `counter.addresses` | `()` | [`AddressMenu`] | `procedure.determine` |
//!
//! Dates are ISO `YYYY-MM-DD` strings (the UI shows them in 和暦). Error codes are
//! those of the other RPCs: `invalid-params`, `forbidden`, `not-found`,
//! `illegal-transition`, `invalid-certificate-request`, `no-catalogue`,
//! `printer-unreachable`, `internal`; plus `unknown-code` for a scanned code that is no
//! application of this visit.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalogue::RpcMethod;
use crate::personal::CardFace;

/// Implements `Debug` as the type name and the listed non-personal fields only.
macro_rules! quiet_debug {
    ($ty:ty $(, $field:ident)*) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    .finish_non_exhaustive()
            }
        }
    };
}

// ---------------------------------------------------------------- certificates

/// `counter.certificates`: the certificates the counter can issue today (the
/// catalogue version in force), with fees and options, and the choices the request
/// screen offers.
#[derive(Debug)]
pub struct Certificates;

impl RpcMethod for Certificates {
    const NAME: &'static str = "counter.certificates";
    type Request = ();
    type Response = CertificateMenu;
}

/// One certificate on offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateOffer {
    /// Catalogue id (`juminhyo` …).
    pub id: String,
    /// Name (住民票の写し …).
    pub name: String,
    /// Fee per copy in yen.
    pub fee: i64,
    /// Options the requester may choose.
    pub options: Vec<String>,
    /// Options only the person or their household may get (個人番号, 住民票コード).
    pub restricted_options: Vec<String>,
    /// Options that make it free (軽自動車税（継続検査用）).
    pub free_options: Vec<String>,
    /// What the requester must show or hold.
    pub requires: Vec<String>,
    /// Notes for staff.
    pub notes: String,
}

/// `counter.certificates` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateMenu {
    /// The certificates, in catalogue order.
    pub certificates: Vec<CertificateOffer>,
    /// 使用目的 choices (the UI lets staff type another).
    pub purposes: Vec<String>,
    /// 本人確認書類 choices.
    pub id_checks: Vec<String>,
    /// Most copies of one certificate.
    pub max_copies: u32,
}

/// Who asks for a certificate, relative to the person it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relationship {
    /// 本人.
    #[serde(rename = "self")]
    Myself,
    /// 同一世帯.
    Household,
    /// 代理人 (with a 委任状).
    Agent,
    /// 第三者 (with a reason).
    ThirdParty,
}

/// One certificate in an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    /// Catalogue id.
    pub certificate: String,
    /// Options chosen.
    #[serde(default)]
    pub options: Vec<String>,
    /// Copies.
    pub copies: u32,
    /// Fee per copy in yen as shown to the resident (checked against the catalogue).
    pub fee: i64,
}

/// Someone not in the register (an agent, a third party), as staff entered them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GivenPerson {
    /// 氏名.
    pub name: String,
    /// 氏名フリガナ.
    #[serde(default)]
    pub kana: String,
    /// 生年月日, `YYYY-MM-DD`, when known.
    #[serde(default)]
    pub birth_date: Option<String>,
    /// `male` / `female`, when known.
    #[serde(default)]
    pub sex: Option<String>,
    /// 住所, when known.
    #[serde(default)]
    pub address: Option<String>,
}
quiet_debug!(GivenPerson);

/// `counter.request-certificates` request: a certificate request for a resident.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateOrder {
    /// The visit it joins; absent: a new certificate visit.
    #[serde(default)]
    pub visit: Option<String>,
    /// 宛名番号 of the person the certificates are about.
    pub subject: String,
    /// The requester's relationship to them.
    pub relationship: Relationship,
    /// For [`Relationship::Household`]: the requester's 宛名番号 (a member of the
    /// subject's household).
    #[serde(default)]
    pub requester_atena: Option<String>,
    /// For an agent or third party: who they are.
    #[serde(default)]
    pub requester: Option<GivenPerson>,
    /// 使用目的.
    pub purpose: String,
    /// 提出先.
    pub destination: String,
    /// 本人確認書類.
    pub id_check: String,
    /// The certificates.
    pub items: Vec<OrderItem>,
    /// Σ fee × copies as shown to the resident (checked).
    pub fee_total: i64,
}
quiet_debug!(CertificateOrder, visit, relationship, items, fee_total);

// ---------------------------------------------------------------- people

/// Someone moving in, from the 転出証明書情報 the former city sent (特例転入).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovingInPerson {
    /// 住民票コード: the record's key.
    pub juminhyo_code: String,
    /// 氏名.
    pub name: String,
    /// 氏名フリガナ.
    pub kana: String,
    /// 生年月日.
    pub birth_date: String,
    /// `male` / `female`.
    pub sex: String,
    /// 前住所.
    pub previous_address: String,
    /// 転出予定日.
    pub move_date: Option<String>,
    /// 転出先 (the new address in this city, as declared).
    pub destination: String,
    /// 世帯主.
    pub head_name: String,
    /// 続柄.
    pub relation: String,
}
quiet_debug!(MovingInPerson, juminhyo_code);

/// `counter.lookup-moving-in` result.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovingInResponse {
    /// Whether exactly one record matches the card on name, birth date and sex.
    pub exact: bool,
    /// Matching records, best first (at most 10).
    pub candidates: Vec<MovingInPerson>,
    /// The best candidate's household as the former city declared it: every record
    /// with the same 世帯主 and 前住所, the head first (includes the candidate).
    pub family: Vec<MovingInPerson>,
}
quiet_debug!(MovingInResponse, exact);

/// A person taking part in a visit.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum PersonRef {
    /// A resident of the city, by 宛名番号.
    Resident {
        /// 宛名番号.
        atena: String,
    },
    /// Someone moving in, by the 住民票コード of their 転出証明書情報.
    MovingIn {
        /// 住民票コード.
        juminhyo_code: String,
    },
    /// Someone the data does not hold (a newborn, a spouse from elsewhere).
    New {
        /// Who they are.
        person: GivenPerson,
    },
}

impl fmt::Debug for PersonRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resident { atena } => f.debug_struct("Resident").field("atena", atena).finish(),
            Self::MovingIn { juminhyo_code } => f
                .debug_struct("MovingIn")
                .field("juminhyo_code", juminhyo_code)
                .finish(),
            Self::New { .. } => f.write_str("New(<redacted>)"),
        }
    }
}

/// One member of the visit's household.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitMember {
    /// Who.
    pub person: PersonRef,
    /// 続柄 to the head after the event (世帯主, 妻, 子 …); empty: from the data.
    #[serde(default)]
    pub relationship: String,
    /// Whether the event is about them (they move, are born, die, marry …).
    pub subject: bool,
    /// Whether their card was read at the counter (identity checked).
    #[serde(default)]
    pub card_read: bool,
}

// ---------------------------------------------------------------- determination

/// The life event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// 転入.
    MoveIn,
    /// 転居.
    MoveWithin,
    /// 転出.
    MoveOut,
    /// 出生.
    Birth,
    /// 死亡.
    Death,
    /// 婚姻.
    Marriage,
    /// 離婚.
    Divorce,
}

impl EventKind {
    /// Every kind, in the order the menu shows them.
    pub const ALL: &'static [EventKind] = &[
        Self::MoveIn,
        Self::MoveWithin,
        Self::MoveOut,
        Self::Birth,
        Self::Death,
        Self::Marriage,
        Self::Divorce,
    ];

    /// Wire name (`move_in` …), also used in the UI's URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MoveIn => "move_in",
            Self::MoveWithin => "move_within",
            Self::MoveOut => "move_out",
            Self::Birth => "birth",
            Self::Death => "death",
            Self::Marriage => "marriage",
            Self::Divorce => "divorce",
        }
    }

    /// From the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Japanese label (転入 …).
    pub fn label(self) -> &'static str {
        match self {
            Self::MoveIn => "転入",
            Self::MoveWithin => "転居",
            Self::MoveOut => "転出",
            Self::Birth => "出生",
            Self::Death => "死亡",
            Self::Marriage => "婚姻",
            Self::Divorce => "離婚",
        }
    }
}

/// Where the household moves to, for 転入 and 転居 (an address of the city's master,
/// so the school district is known) or 転出 (another municipality, as text).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// The address as printed.
    pub address: String,
    /// 町字コード, for an address in the city.
    #[serde(default)]
    pub machiaza: Option<String>,
    /// 都道府県 (for 転出; the city's own for moves in and within).
    #[serde(default)]
    pub prefecture: Option<String>,
    /// 市区町村 (for 転出).
    #[serde(default)]
    pub municipality: Option<String>,
}
quiet_debug!(Destination, machiaza);

/// What staff know about the event: enough to determine the procedures.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitPlan {
    /// The event.
    pub event: EventKind,
    /// The day it happened (moved, born, died) or the notification day.
    pub event_date: String,
    /// The household after the event (for 転出 and 死亡, the one before), the head
    /// first. For 転入 the members moving in; residents joining them may be listed too.
    pub members: Vec<VisitMember>,
    /// Index in `members` of the one who files (届出人); absent: the first subject.
    #[serde(default)]
    pub applicant: Option<usize>,
    /// Where to (転入, 転居, 転出); for 転入 absent means the 転出先 of the
    /// 転出証明書情報.
    #[serde(default)]
    pub destination: Option<Destination>,
    /// Answers so far: question id (per-person questions: `<id>@<member id>`) → yes/no.
    #[serde(default)]
    pub answers: BTreeMap<String, bool>,
}
quiet_debug!(VisitPlan, event, members, applicant, answers);

/// A question whose answer would change the procedures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionView {
    /// The key to answer it under in [`VisitPlan::answers`].
    pub key: String,
    /// The question in Japanese (with the person's name for person questions).
    pub text: String,
    /// Member id it is about.
    pub member: Option<String>,
    /// Names of the procedures that depend on it.
    pub affects: Vec<String>,
}

/// One procedure someone needs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcedureView {
    /// Procedure id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Area (R7).
    pub area: String,
    /// Department.
    pub department: String,
    /// Counter.
    pub counter: String,
    /// Why it applies (may name the person: personal).
    pub reason: String,
    /// Last day, when dated.
    pub deadline: Option<String>,
    /// Deadline text (転出前, 随時 …).
    pub deadline_note: Option<String>,
    /// Documents to bring.
    pub documents: Vec<String>,
    /// Fee in yen.
    pub fee: i64,
    /// Whether a pre-filled form is printed for it.
    pub has_form: bool,
    /// Whether it is in the list: staff may take a determined procedure out or put
    /// one the catalogue offers for the event in ([`Adjustment`]).
    pub included: bool,
    /// Whether staff changed it (not what the rules say).
    pub adjusted: bool,
}
quiet_debug!(ProcedureView, id, included, adjusted);

/// One member's result.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Member id (`m1`, `m2` … in the order of [`VisitPlan::members`]).
    pub member: String,
    /// 氏名.
    pub name: String,
    /// 氏名フリガナ.
    pub kana: String,
    /// 生年月日.
    pub birth_date: Option<String>,
    /// 続柄.
    pub relationship: String,
    /// Age on the event date.
    pub age: i64,
    /// Their procedures, in visit order.
    pub procedures: Vec<ProcedureView>,
}
quiet_debug!(MemberView, member, procedures);

/// One counter to visit, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopView {
    /// Department name.
    pub department: String,
    /// Counter.
    pub counter: String,
    /// How many procedures there.
    pub procedures: usize,
}

/// `counter.determine` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeterminationView {
    /// Catalogue version used.
    pub catalogue_version: String,
    /// Unanswered questions that would change the result (ask them first).
    pub questions: Vec<QuestionView>,
    /// Per member.
    pub members: Vec<MemberView>,
    /// Household procedures (世帯主変更 …).
    pub household: Vec<ProcedureView>,
    /// Counters in visit order.
    pub visit_order: Vec<StopView>,
    /// The new address used (for 転入 from the 転出証明書情報), when there is one.
    pub destination: Option<String>,
}

/// A staff change to the determined list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    /// Member id; absent: a household procedure.
    #[serde(default)]
    pub member: Option<String>,
    /// Procedure id.
    pub procedure: String,
    /// In (added) or out (removed).
    pub include: bool,
}

/// `counter.create-visit` request: the plan as determined, with staff's changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVisitRequest {
    /// The plan (answers included); the determination is made again from it.
    pub plan: VisitPlan,
    /// Staff's changes.
    #[serde(default)]
    pub adjustments: Vec<Adjustment>,
}

// ---------------------------------------------------------------- visits

/// An application's state as the counter shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationState {
    /// Filled, not printed.
    Draft,
    /// Printed, waiting for the signed form.
    Printed,
    /// The signed form was scanned: accepted.
    Accepted,
    /// Handed to the core systems.
    Exported,
    /// Done.
    Completed,
    /// Cancelled.
    Cancelled,
}

/// One application of the visit.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationView {
    /// Application number (also in the form's 2-D code).
    pub number: String,
    /// Form id.
    pub form: String,
    /// Form title (転入届 …).
    pub title: String,
    /// Procedure id, for procedure forms.
    pub procedure: Option<String>,
    /// Certificate ids, for certificate requests.
    pub certificates: Vec<String>,
    /// Whom it is about (氏名), when one person.
    pub subject_name: Option<String>,
    /// State.
    pub state: ApplicationState,
    /// Fee total in yen (certificate requests).
    pub fee: i64,
}
quiet_debug!(ApplicationView, number, form, state);

/// A visit (受付) and its applications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitView {
    /// Visit id.
    pub visit: String,
    /// `certificate` or an event kind's wire name.
    pub kind: String,
    /// Its applications, by number.
    pub applications: Vec<ApplicationView>,
    /// Whether a procedure guide is printed with it.
    pub has_guide: bool,
}

/// `counter.visit` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitRef {
    /// Visit id.
    pub visit: String,
}

/// `counter.print` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintVisitRequest {
    /// Visit id.
    pub visit: String,
    /// Application numbers to print; empty: every draft and printed one of the visit.
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Print the procedure guide first (life events).
    #[serde(default)]
    pub guide: bool,
}

/// `counter.print` result: the job is at this appliance; its progress arrives as the
/// appliance's own print events under `job_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintVisitResponse {
    /// Job id.
    pub job_id: String,
    /// Pages.
    pub pages: usize,
    /// Application numbers in the job.
    pub numbers: Vec<String>,
}

/// `counter.accept` request: a code the counter's scanner read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptRequest {
    /// The visit the staff are handling.
    pub visit: String,
    /// The scanned text (the application number the form's 2-D code holds).
    pub code: String,
}

/// One 町字 of the city's address master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachiazaOption {
    /// 町字コード (goes in [`Destination::machiaza`]).
    pub code: String,
    /// 町字名 as written, with its 丁目 (緑町二丁目).
    pub name: String,
    /// Its reading, when the master has one (for sorting and finding).
    #[serde(default)]
    pub kana: String,
}

/// `counter.addresses` result: what staff choose a new address in the city from
/// (a 転居, or a 転入 whose 転出先 `counter.determine` could not place:
/// `address-unknown`). The UI sends the chosen 町字 as [`Destination::machiaza`]
/// and `city` + 町字名 + the 番地 typed on a keypad as [`Destination::address`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressMenu {
    /// 都道府県 and 市区町村 as printed before the 町字 (架空県見本市).
    pub city: String,
    /// The 町字, in the master's order.
    pub machiaza: Vec<MachiazaOption>,
}

macro_rules! method {
    ($(#[$doc:meta])* $name:ident = $wire:literal, $req:ty => $resp:ty) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl RpcMethod for $name {
            const NAME: &'static str = $wire;
            type Request = $req;
            type Response = $resp;
        }
    };
}

method!(
    /// `counter.lookup-moving-in`: the 転出証明書情報 matching a card's 基本4情報.
    LookupMovingIn = "counter.lookup-moving-in", CardFace => MovingInResponse
);
method!(
    /// `counter.determine`: the procedures for a plan (pure: stores nothing).
    Determine = "counter.determine", VisitPlan => DeterminationView
);
method!(
    /// `counter.create-visit`: a life-event visit with one filled draft per form.
    CreateVisit = "counter.create-visit", CreateVisitRequest => VisitView
);
method!(
    /// `counter.request-certificates`: a certificate request as drafts.
    RequestCertificates = "counter.request-certificates", CertificateOrder => VisitView
);
method!(
    /// `counter.print`: print a visit's applications (and its guide) here.
    PrintVisit = "counter.print", PrintVisitRequest => PrintVisitResponse
);
method!(
    /// `counter.accept`: accept the application whose signed form was scanned.
    Accept = "counter.accept", AcceptRequest => VisitView
);
method!(
    /// `counter.visit`: a visit's applications now.
    GetVisit = "counter.visit", VisitRef => VisitView
);
method!(
    /// `counter.addresses`: the 町字 of the address master (added for the staff UI's
    /// address picker; additive).
    Addresses = "counter.addresses", () => AddressMenu
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_refs_are_tagged_and_round_trip() {
        let r = PersonRef::MovingIn {
            juminhyo_code: "12345678901".into(),
        };
        let mut buf = Vec::new();
        ciborium::into_writer(&r, &mut buf).unwrap();
        let v: ciborium::Value = ciborium::from_reader(&buf[..]).unwrap();
        let map = v.as_map().unwrap();
        assert!(map
            .iter()
            .any(|(k, v)| k.as_text() == Some("source") && v.as_text() == Some("moving_in")));
        let back: PersonRef = ciborium::from_reader(&buf[..]).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn debug_never_shows_personal_data() {
        let p = GivenPerson {
            name: "山田　花子".into(),
            kana: "ヤマダ　ハナコ".into(),
            birth_date: Some("2026-11-01".into()),
            sex: Some("female".into()),
            address: Some("書無市本町1-2".into()),
        };
        let shown = format!("{:?} {:?}", p, PersonRef::New { person: p.clone() });
        assert!(!shown.contains("山田") && !shown.contains("本町") && !shown.contains("2026"));
    }

    #[test]
    fn event_kinds_parse_their_wire_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
            let mut buf = Vec::new();
            ciborium::into_writer(k, &mut buf).unwrap();
            let v: ciborium::Value = ciborium::from_reader(&buf[..]).unwrap();
            assert_eq!(v.as_text(), Some(k.as_str()));
        }
        assert_eq!(EventKind::parse("wedding"), None);
    }
}
