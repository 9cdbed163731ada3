//! The procedure guide (手続き案内) of a life-event visit: every procedure of every
//! member — with or without a form — with its reason, deadline, documents and
//! counter, in the shape the document engine's guide layout reads
//! (`kakanai_documents::sample::guide_data`):
//!
//! ```text
//! { "office": {"city"}, "household": {"head", "address", "members"},
//!   "event": {"kind", "label", "date"}, "visit": {"date", "number"},
//!   "people": [PERSON + {"procedures": [{"id", "name", "department", "counter",
//!              "deadline", "deadline_note", "documents", "reason", "order"}]}] }
//! ```
//!
//! Household procedures (世帯主変更 …) are listed with the 世帯主 (or, without one,
//! the applicant). The guide is made when the visit is created and kept in the store
//! ([`crate::store::Store::put_counter_guide`]), so any instance prints the same one.

use serde_json::{json, Value};

use super::determine::department_order;
use super::facts::Prepared;
use crate::applications::fill::event_label;
use crate::applications::Visit;
use crate::rules::engine::Item;
use crate::rules::{Catalogue, Date, Determination};

fn procedure(cat: &Catalogue, it: &Item) -> Value {
    json!({
        "id": it.id,
        "name": it.name,
        "department": it.department_name,
        "counter": it.counter,
        "deadline": it.deadline.map(|d| d.to_string()),
        "deadline_note": it.deadline_note,
        "documents": it.documents,
        "reason": it.reason,
        "order": department_order(cat, it),
    })
}

/// The guide's data for a visit.
#[allow(clippy::too_many_arguments)]
pub fn guide_data(
    cat: &Catalogue,
    prepared: &Prepared,
    det: &Determination,
    visit: &Visit,
    city: &str,
    created: Date,
    head: Option<&str>,
    applicant: Option<&str>,
) -> Value {
    let household_holder = head
        .or(applicant)
        .or(det.persons.first().map(|p| p.person.as_str()));
    let person_json = |id: &str| {
        prepared
            .people
            .iter()
            .find(|p| p.id == id)
            .and_then(|p| serde_json::to_value(&p.person).ok())
            .unwrap_or(Value::Null)
    };
    let people: Vec<Value> = det
        .persons
        .iter()
        .map(|r| {
            let mut procs: Vec<Value> = r.procedures.iter().map(|it| procedure(cat, it)).collect();
            if household_holder == Some(r.person.as_str()) {
                procs.extend(det.household.iter().map(|it| procedure(cat, it)));
            }
            let mut p = person_json(&r.person);
            if let Some(o) = p.as_object_mut() {
                o.insert("procedures".into(), Value::Array(procs));
            }
            p
        })
        .collect();
    let members: Vec<Value> = prepared.people.iter().map(|p| person_json(&p.id)).collect();
    json!({
        "office": {"city": city},
        "household": {
            "head": head.map_or(Value::Null, person_json),
            "address": prepared.household_address,
            "members": members,
        },
        "event": {
            "kind": det.event.as_str(),
            "label": event_label(det.event),
            "date": det.event_date.to_string(),
        },
        "visit": {"date": created.to_string(), "number": visit.number},
        "people": people,
    })
}
