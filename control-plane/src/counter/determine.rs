//! The determination as the counter shows it ([`DeterminationView`]), and staff's
//! changes to it ([`Adjustment`]).
//!
//! Member ids are `m1`, `m2` … in plan order; a person question is answered under
//! `<question>@<member>`. Each member's list holds the procedures the rules
//! determined (`included`), then the other procedures the catalogue offers for this
//! event (`included: false`), so staff can put one in. An adjustment names a
//! procedure of the catalogue in force; one that names no procedure (or no member)
//! is refused whole.

use std::collections::BTreeSet;

use kakanai_protocol::counter::{
    Adjustment, DeterminationView, MemberView, ProcedureView, QuestionView, StopView,
};

use super::facts::Prepared;
use crate::rules::catalog::{event_index, Catalogue, Procedure};
use crate::rules::engine::{due_date, Item};
use crate::rules::{Determination, DeterminationInput};

/// The reason shown for a procedure staff added.
pub const ADDED_REASON: &str = "窓口で追加した手続き";

/// What staff changed: (member id or `None` for the household, procedure id).
pub type Changed = BTreeSet<(Option<String>, String)>;

/// A catalogue procedure as a result item (for one staff added or the catalogue
/// offers), its deadline counted from the event as the rules would.
pub fn catalogue_item(
    cat: &Catalogue,
    p: &Procedure,
    reason: &str,
    input: &DeterminationInput,
) -> Item {
    let dept = &cat.departments[p.department];
    Item {
        id: p.id.clone(),
        name: p.name.clone(),
        area: p.area.clone(),
        department: dept.id.clone(),
        department_name: dept.name.clone(),
        counter: dept.counter.clone(),
        reason: reason.to_owned(),
        deadline: p.deadline.as_ref().and_then(|d| due_date(d, input)),
        deadline_note: p.deadline.as_ref().and_then(|d| d.note.clone()),
        legal_basis: p.legal_basis.clone(),
        fee: p.fee,
        documents: p.documents.clone(),
        form: p.form.clone(),
    }
}

/// The department order of a result item (visit order).
pub fn department_order(cat: &Catalogue, item: &Item) -> u32 {
    cat.departments
        .iter()
        .find(|d| d.id == item.department)
        .map_or(u32::MAX, |d| d.order)
}

/// Applies staff's changes to `det`: removes the procedures taken out, adds the ones
/// put in (from the catalogue in force). Refused whole, with a message naming the
/// adjustment, when a procedure or member does not exist.
pub fn adjust(
    cat: &Catalogue,
    prepared: &Prepared,
    det: &mut Determination,
    adjustments: &[Adjustment],
) -> Result<Changed, String> {
    let mut changed = Changed::new();
    for (i, a) in adjustments.iter().enumerate() {
        let proc = cat
            .procedures
            .iter()
            .find(|p| p.id == a.procedure)
            .ok_or_else(|| format!("adjustments[{i}]: 手続き定義にない手続きです"))?;
        let member =
            match &a.member {
                Some(m) => Some(det.persons.iter().position(|p| p.person == *m).ok_or_else(
                    || format!("adjustments[{i}]: member が members のどの人でもありません"),
                )?),
                None => None,
            };
        let list = match member {
            Some(m) if !proc.per_household => &mut det.persons[m].procedures,
            _ => &mut det.household,
        };
        let present = list.iter().position(|it| it.id == proc.id);
        match (a.include, present) {
            (true, None) => {
                let item = catalogue_item(cat, proc, ADDED_REASON, &prepared.input);
                let order = department_order(cat, &item);
                let at = list
                    .iter()
                    .position(|it| department_order(cat, it) > order)
                    .unwrap_or(list.len());
                list.insert(at, item);
            }
            (false, Some(at)) => {
                list.remove(at);
            }
            _ => continue,
        }
        let who = if proc.per_household {
            None
        } else {
            a.member.clone()
        };
        changed.insert((who, proc.id.clone()));
    }
    Ok(changed)
}

fn procedure_view(item: &Item, included: bool, adjusted: bool) -> ProcedureView {
    ProcedureView {
        id: item.id.clone(),
        name: item.name.clone(),
        area: item.area.clone(),
        department: item.department_name.clone(),
        counter: item.counter.clone(),
        reason: item.reason.clone(),
        deadline: item.deadline.map(|d| d.to_string()),
        deadline_note: item.deadline_note.clone(),
        documents: item.documents.clone(),
        fee: item.fee,
        has_form: item.form.is_some(),
        included,
        adjusted,
    }
}

/// The catalogue's procedures for this event kind (per person or per household),
/// in visit order.
fn offered<'a>(cat: &'a Catalogue, det: &Determination, per_household: bool) -> Vec<&'a Procedure> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<&Procedure> = cat.by_event[event_index(det.event)]
        .iter()
        .map(|(pi, _)| &cat.procedures[*pi])
        .filter(|p| p.per_household == per_household && seen.insert(p.id.clone()))
        .collect();
    out.sort_by_key(|p| cat.departments[p.department].order);
    out
}

fn with_offers(
    cat: &Catalogue,
    input: &DeterminationInput,
    items: &[Item],
    offers: &[&Procedure],
    changed: &Changed,
    who: Option<&str>,
) -> Vec<ProcedureView> {
    let is_changed = |id: &str| changed.contains(&(who.map(str::to_owned), id.to_owned()));
    let mut out: Vec<ProcedureView> = items
        .iter()
        .map(|it| procedure_view(it, true, is_changed(&it.id)))
        .collect();
    for p in offers {
        if items.iter().any(|it| it.id == p.id) {
            continue;
        }
        let item = catalogue_item(cat, p, "", input);
        out.push(procedure_view(&item, false, is_changed(&p.id)));
    }
    out
}

/// The determination as the counter shows it.
pub fn view(
    cat: &Catalogue,
    prepared: &Prepared,
    det: &Determination,
    changed: &Changed,
) -> DeterminationView {
    let name_of = |member: &str| {
        prepared
            .people
            .iter()
            .find(|p| p.id == member)
            .and_then(|p| p.person.name.clone())
            .unwrap_or_default()
    };
    let procedure_name = |id: &str| {
        cat.procedures
            .iter()
            .find(|p| p.id == id)
            .map_or_else(|| id.to_owned(), |p| p.name.clone())
    };
    let questions = det
        .questions
        .iter()
        .map(|q| QuestionView {
            key: match &q.person {
                Some(m) => format!("{}@{m}", q.id),
                None => q.id.clone(),
            },
            text: match &q.person {
                Some(m) => format!("{}さん：{}", name_of(m), q.text),
                None => q.text.clone(),
            },
            member: q.person.clone(),
            affects: q.affects.iter().map(|a| procedure_name(a)).collect(),
        })
        .collect();
    let person_offers = offered(cat, det, false);
    let household_offers = offered(cat, det, true);
    let members = det
        .persons
        .iter()
        .map(|r| {
            let p = prepared.people.iter().find(|p| p.id == r.person);
            MemberView {
                member: r.person.clone(),
                name: p.and_then(|p| p.person.name.clone()).unwrap_or_default(),
                kana: p.and_then(|p| p.person.kana.clone()).unwrap_or_default(),
                birth_date: p.and_then(|p| p.person.birth_date.clone()),
                relationship: r.relationship.clone(),
                age: r.age,
                procedures: with_offers(
                    cat,
                    &prepared.input,
                    &r.procedures,
                    &person_offers,
                    changed,
                    Some(&r.person),
                ),
            }
        })
        .collect();
    let mut stops: Vec<(u32, StopView)> = Vec::new();
    let all_items = det
        .household
        .iter()
        .chain(det.persons.iter().flat_map(|p| p.procedures.iter()));
    for it in all_items {
        let order = department_order(cat, it);
        match stops
            .iter_mut()
            .find(|(_, s)| s.department == it.department_name)
        {
            Some((_, s)) => s.procedures += 1,
            None => stops.push((
                order,
                StopView {
                    department: it.department_name.clone(),
                    counter: it.counter.clone(),
                    procedures: 1,
                },
            )),
        }
    }
    stops.sort_by_key(|(o, _)| *o);
    DeterminationView {
        catalogue_version: det.catalogue_version.clone(),
        questions,
        members,
        household: with_offers(
            cat,
            &prepared.input,
            &det.household,
            &household_offers,
            changed,
            None,
        ),
        visit_order: stops.into_iter().map(|(_, s)| s).collect(),
        destination: prepared.details.new_address.clone(),
    }
}
