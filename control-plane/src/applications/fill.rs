//! Filling a form's data (R1, R7): the JSON object the document engine prints and the
//! export reads, built from the stored residents, the determination, the staff's
//! answers and the event. What the system does not know stays absent (the form
//! prints a blank for the resident), never guessed.
//!
//! Shape (agreed with `kakanai-documents`; absent → blank on paper):
//!
//! ```text
//! { "form": {"id": "KOKUHO-SHUTOKU"},
//!   "application": {"number": "2026-000123", "created": "2026-11-27"},
//!   "office": {"city": "書無市", "department": "保険年金課", "counter": "5番 …"},
//!   "applicant": PERSON, "subject": PERSON,
//!   "household": {"head": PERSON, "address": "…", "members": [PERSON, …]},
//!   "event": {"kind": "move_in", "label": "転入", "date": "2026-11-20",
//!             "previous_address": "…", "previous_address_code": "…",
//!             "new_address": "…", "new_address_code": "…",
//!             "previous_municipality": "大阪府大阪市", "new_municipality": "…",
//!             "movers": [PERSON, …]},
//!   "procedure": {"id", "name", "deadline", "department", "counter", "documents", "reason"},
//!   "answers": {"<question id>": …},
//!   "certificate": {…}   // certificate requests only, see `certificate`
//! }
//! PERSON = {"name", "kana", "birth_date", "sex", "relationship", "address", "atena"}
//! ```
//!
//! `event.movers` (the people a 住民異動届 moves, in the determination's order) and the
//! address codes (町字コード) are additions to the agreed shape for the `JUKI-IDO`
//! export; the application number is written by the store when it allocates it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::TenantId;
use crate::rules::engine::Item;
use crate::rules::model::EventKind;
use crate::rules::{Date, Determination};
use crate::store::{Store, StoreError, StoredResident};

/// Forms that carry every person of one procedure on one sheet (the 住民異動届 lists
/// each moving person); other forms are one sheet per person and procedure.
pub const HOUSEHOLD_FORMS: &[&str] = &["JUKI-IDO"];

/// A person on a form. Every field may be unknown (then blank on paper). `Debug`
/// shows the 宛名番号 only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// 氏名, exactly as recorded (IVS included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 氏名フリガナ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kana: Option<String>,
    /// 生年月日 `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// 性別 as printed (男 / 女).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    /// 続柄 (to the head of household).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship: Option<String>,
    /// 住所.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// 宛名番号, when the person is registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atena: Option<String>,
}

impl fmt::Debug for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Person")
            .field("atena", &self.atena)
            .finish_non_exhaustive()
    }
}

impl Person {
    /// The person as the resident register records them.
    pub fn from_resident(r: &StoredResident) -> Self {
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.to_owned());
        Self {
            name: some(&r.name),
            kana: some(&r.kana),
            birth_date: some(&r.birth_date),
            sex: sex_label(&r.sex).map(str::to_owned),
            relationship: some(&r.relation),
            address: some(&r.address),
            atena: some(&r.atena),
        }
    }
}

/// 性別 code of the resident register (1 男, 2 女) as printed; 9 (unknown) and anything
/// else stay blank.
pub fn sex_label(code: &str) -> Option<&'static str> {
    match code.trim() {
        "1" | "男" | "male" => Some("男"),
        "2" | "女" | "female" => Some("女"),
        _ => None,
    }
}

/// The event's Japanese label (異動事由 / 届出の種類).
pub fn event_label(kind: EventKind) -> &'static str {
    match kind {
        EventKind::MoveIn => "転入",
        EventKind::MoveWithin => "転居",
        EventKind::MoveOut => "転出",
        EventKind::Birth => "出生",
        EventKind::Death => "死亡",
        EventKind::Marriage => "婚姻",
        EventKind::Divorce => "離婚",
    }
}

/// Where a determination member's details come from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonSource {
    /// A registered resident, by 宛名番号.
    Resident(String),
    /// Someone not (yet) registered here: from a card or typed by staff.
    Given(Person),
}

impl fmt::Debug for PersonSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resident(a) => f.debug_tuple("Resident").field(a).finish(),
            Self::Given(p) => f.debug_tuple("Given").field(p).finish(),
        }
    }
}

/// The event's details as printed (addresses are typed or read, not determined).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventDetails {
    /// 前住所.
    #[serde(default)]
    pub previous_address: Option<String>,
    /// 前住所の町字コード (moves within the city and out of it).
    #[serde(default)]
    pub previous_address_code: Option<String>,
    /// 新住所.
    #[serde(default)]
    pub new_address: Option<String>,
    /// 新住所の町字コード (moves in and within).
    #[serde(default)]
    pub new_address_code: Option<String>,
    /// 転入前の市区町村 (都道府県 + 市区町村), for 転入.
    #[serde(default)]
    pub previous_municipality: Option<String>,
    /// 転出先の市区町村, for 転出.
    #[serde(default)]
    pub new_municipality: Option<String>,
}

impl fmt::Debug for EventDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventDetails").finish_non_exhaustive()
    }
}

/// Everything the forms of one visit are filled from, people already resolved.
#[derive(Clone)]
pub struct VisitData {
    /// The city's name (書無市).
    pub city: String,
    /// The day the forms are made (届出日).
    pub created: Date,
    /// The event (kind and date from the determination).
    pub event: EventDetails,
    /// Determination member id → the person.
    pub people: BTreeMap<String, Person>,
    /// Member id of the one who files (届出人), when known.
    pub applicant: Option<String>,
    /// Member id of the 世帯主 (after the event), when known.
    pub head: Option<String>,
    /// The household's address.
    pub household_address: Option<String>,
    /// The staff's answers (question id → answer), copied as given.
    pub answers: serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for VisitData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VisitData")
            .field("created", &self.created)
            .field("members", &self.people.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why filling failed.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    /// A 宛名番号 names nobody in this tenant.
    #[error("no resident with 宛名番号 {0}")]
    UnknownResident(String),
    /// The determination names a member the visit data has no person for.
    #[error("no person given for member {0}")]
    UnknownMember(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Resolves each member's source: registered residents are read from the store.
pub async fn resolve_people(
    store: &Store,
    tenant: &TenantId,
    sources: &BTreeMap<String, PersonSource>,
) -> Result<BTreeMap<String, Person>, FillError> {
    let mut people = BTreeMap::new();
    for (member, source) in sources {
        let person = match source {
            PersonSource::Resident(atena) => {
                let r = store
                    .resident(tenant, atena)
                    .await?
                    .ok_or_else(|| FillError::UnknownResident(atena.clone()))?;
                Person::from_resident(&r)
            }
            PersonSource::Given(p) => p.clone(),
        };
        people.insert(member.clone(), person);
    }
    Ok(people)
}

/// One form to make: which procedure, for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPlan {
    /// Form id.
    pub form: String,
    /// The procedure.
    pub procedure: Item,
    /// The member the form is about (first mover for household forms; the head, if
    /// known, for household procedures).
    pub subject: Option<String>,
    /// Every member the form carries (movers of a 住民異動届), in order.
    pub members: Vec<String>,
}

/// The forms a determination needs: one per procedure with a form and person, except
/// [`HOUSEHOLD_FORMS`], which take every person of that procedure on one sheet;
/// household procedures one each. Procedures without a form are not applications.
pub fn plan_forms(determination: &Determination, head: Option<&str>) -> Vec<FormPlan> {
    let mut plans: Vec<FormPlan> = Vec::new();
    for person in &determination.persons {
        for item in &person.procedures {
            let Some(form) = &item.form else { continue };
            if HOUSEHOLD_FORMS.contains(&form.as_str()) {
                if let Some(p) = plans
                    .iter_mut()
                    .find(|p| p.procedure.id == item.id && p.form == *form)
                {
                    p.members.push(person.person.clone());
                    continue;
                }
            }
            plans.push(FormPlan {
                form: form.clone(),
                procedure: item.clone(),
                subject: Some(person.person.clone()),
                members: vec![person.person.clone()],
            });
        }
    }
    for item in &determination.household {
        let Some(form) = &item.form else { continue };
        plans.push(FormPlan {
            form: form.clone(),
            procedure: item.clone(),
            subject: head.map(str::to_owned),
            members: Vec::new(),
        });
    }
    plans
}

fn person_value(p: Option<&Person>) -> serde_json::Value {
    p.and_then(|p| serde_json::to_value(p).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Drops `null` members of an object, so absent stays absent.
fn compact(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
    }
    v
}

/// The parts every form shares: form, application (created), office, applicant,
/// household, event, answers.
fn common(
    visit: &VisitData,
    form: &str,
    department: Option<&str>,
    counter: Option<&str>,
    kind: Option<EventKind>,
    event_date: Option<Date>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("form".into(), serde_json::json!({ "id": form }));
    m.insert(
        "application".into(),
        serde_json::json!({ "created": visit.created.to_string() }),
    );
    m.insert(
        "office".into(),
        compact(serde_json::json!({
            "city": visit.city,
            "department": department,
            "counter": counter,
        })),
    );
    let get = |id: &Option<String>| id.as_ref().and_then(|id| visit.people.get(id));
    if let Some(p) = get(&visit.applicant) {
        m.insert("applicant".into(), person_value(Some(p)));
    }
    let members: Vec<serde_json::Value> = visit
        .people
        .values()
        .map(|p| person_value(Some(p)))
        .collect();
    m.insert(
        "household".into(),
        compact(serde_json::json!({
            "head": person_value(get(&visit.head)),
            "address": visit.household_address,
            "members": members,
        })),
    );
    if let Some(kind) = kind {
        let e = &visit.event;
        m.insert(
            "event".into(),
            compact(serde_json::json!({
                "kind": kind.as_str(),
                "label": event_label(kind),
                "date": event_date.map(|d| d.to_string()),
                "previous_address": e.previous_address,
                "previous_address_code": e.previous_address_code,
                "new_address": e.new_address,
                "new_address_code": e.new_address_code,
                "previous_municipality": e.previous_municipality,
                "new_municipality": e.new_municipality,
            })),
        );
    }
    if !visit.answers.is_empty() {
        m.insert(
            "answers".into(),
            serde_json::Value::Object(visit.answers.clone()),
        );
    }
    m
}

/// The data of one procedure form.
pub fn fill_procedure(
    visit: &VisitData,
    determination: &Determination,
    plan: &FormPlan,
) -> Result<serde_json::Value, FillError> {
    let item = &plan.procedure;
    let mut m = common(
        visit,
        &plan.form,
        Some(&item.department_name),
        Some(&item.counter),
        Some(determination.event),
        Some(determination.event_date),
    );
    let person = |id: &String| {
        visit
            .people
            .get(id)
            .ok_or_else(|| FillError::UnknownMember(id.clone()))
    };
    if let Some(s) = &plan.subject {
        m.insert("subject".into(), person_value(Some(person(s)?)));
    }
    if HOUSEHOLD_FORMS.contains(&plan.form.as_str()) {
        let movers = plan
            .members
            .iter()
            .map(|id| person(id).map(|p| person_value(Some(p))))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(e) = m.get_mut("event").and_then(|e| e.as_object_mut()) {
            e.insert("movers".into(), serde_json::Value::Array(movers));
        }
    }
    m.insert(
        "procedure".into(),
        compact(serde_json::json!({
            "id": item.id,
            "name": item.name,
            "deadline": item.deadline.map(|d| d.to_string()),
            "deadline_note": item.deadline_note,
            "department": item.department_name,
            "counter": item.counter,
            "documents": item.documents,
            "reason": item.reason,
            "legal_basis": item.legal_basis,
            "fee": item.fee,
        })),
    );
    Ok(serde_json::Value::Object(m))
}

/// The data of a certificate request form.
pub fn fill_certificate(
    visit: &VisitData,
    form: &str,
    subject: &super::certificate::CertificateRequest,
    catalogue: &crate::rules::Catalogue,
) -> serde_json::Value {
    let department = subject
        .items
        .first()
        .and_then(|it| {
            catalogue
                .certificates
                .iter()
                .find(|c| c.id == it.certificate)
        })
        .and_then(|c| catalogue.departments.iter().find(|d| d.id == c.department));
    let mut m = common(
        visit,
        form,
        department.map(|d| d.name.as_str()),
        department.map(|d| d.counter.as_str()),
        None,
        None,
    );
    m.insert("applicant".into(), person_value(Some(&subject.requester)));
    m.insert("subject".into(), person_value(Some(&subject.subject)));
    m.insert("certificate".into(), subject.to_data(catalogue));
    serde_json::Value::Object(m)
}
