//! The determination: every procedure each member (and the household) needs after a
//! life event, with reason, deadline, documents, the questions still open and the
//! order in which to visit the counters.

use std::collections::BTreeMap;

use serde::Serialize;

use super::calendar::{add_business_days, next_business_day, Date};
use super::catalog::{event_index, Catalogue, Deadline, DeadlineBase, Part, Procedure};
use super::expr::{Env, Tri, Value};
use super::model::{derive_facts, DeterminationInput, EventKind, Fact, PersonFacts};
use super::RulesError;

/// One procedure in the result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Item {
    /// Procedure id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Area (R7).
    pub area: String,
    /// Department id.
    pub department: String,
    /// Department name.
    pub department_name: String,
    /// Counter.
    pub counter: String,
    /// Why it applies, filled in.
    pub reason: String,
    /// Last day, when the procedure has a dated deadline.
    pub deadline: Option<Date>,
    /// Deadline text (e.g. 転出前, 随時).
    pub deadline_note: Option<String>,
    /// Legal basis.
    pub legal_basis: String,
    /// Fee in yen.
    pub fee: i64,
    /// Documents to bring.
    pub documents: Vec<String>,
    /// Form id.
    pub form: Option<String>,
}

/// A member's procedures.
#[derive(Debug, Clone, Serialize)]
pub struct PersonResult {
    /// Member id.
    pub person: String,
    /// 続柄.
    pub relationship: String,
    /// Age on the event date.
    pub age: i64,
    /// Procedures, in visit order.
    pub procedures: Vec<Item>,
}

/// A question whose answer would change the result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AskedQuestion {
    /// Question id.
    pub id: String,
    /// The question.
    pub text: String,
    /// The member it is about, for person questions.
    pub person: Option<String>,
    /// Procedures whose determination depends on the answer.
    pub affects: Vec<String>,
}

/// One counter to visit.
#[derive(Debug, Clone, Serialize)]
pub struct Stop {
    /// Department id.
    pub department: String,
    /// Department name.
    pub department_name: String,
    /// Counter.
    pub counter: String,
    /// (member id or `null` for the household, procedure id).
    pub procedures: Vec<(Option<String>, String)>,
}

/// The result of a determination.
#[derive(Debug, Clone, Serialize)]
pub struct Determination {
    /// Catalogue version used.
    pub catalogue_version: String,
    /// Its effective date.
    pub catalogue_effective_from: Date,
    /// Event kind.
    pub event: EventKind,
    /// Event date.
    pub event_date: Date,
    /// Per member.
    pub persons: Vec<PersonResult>,
    /// Household-level procedures (世帯主変更届 …).
    pub household: Vec<Item>,
    /// Questions that would change the result.
    pub questions: Vec<AskedQuestion>,
    /// Counters in visit order.
    pub visit_order: Vec<Stop>,
}

struct Shared<'a> {
    input: &'a DeterminationInput,
    remaining_ages: Vec<i64>,
    answers: Vec<Option<bool>>,
    within_prefecture: bool,
    district_changed: bool,
    head_is_subject: bool,
    any_kokuho: bool,
    receives_child_allowance: bool,
}

struct Ctx<'a, 'b> {
    person: Option<&'b PersonFacts<'a>>,
    shared: &'b Shared<'a>,
    /// A hypothetical answer (index, per person, value), to test whether it matters.
    assume: Option<(usize, bool, bool)>,
}

impl<'a, 'b> Env<'b> for Ctx<'a, 'b> {
    fn fact(&self, fact: Fact, arg: i64) -> Value<'b> {
        let s = self.shared;
        let ev = &s.input.event;
        let district = |a: &'b Option<super::model::Address>, jh: bool| {
            Value::Str(a.as_ref().map_or("", |a| {
                if jh {
                    a.junior_high_district.as_str()
                } else {
                    a.elementary_district.as_str()
                }
            }))
        };
        match fact {
            Fact::HouseholdSize => return Value::Int(s.remaining_ages.len() as i64),
            Fact::SingleParent => return Value::Bool(s.input.household.single_parent),
            Fact::LowIncome => return Value::Bool(s.input.household.low_income),
            Fact::AnyKokuho => return Value::Bool(s.any_kokuho),
            Fact::HeadIsSubject => return Value::Bool(s.head_is_subject),
            Fact::ReceivesChildAllowance => return Value::Bool(s.receives_child_allowance),
            Fact::HasChildUnder => return Value::Bool(s.remaining_ages.iter().any(|a| *a < arg)),
            Fact::CountAgedAtLeast => {
                return Value::Int(s.remaining_ages.iter().filter(|a| **a >= arg).count() as i64)
            }
            Fact::Kind => return Value::Str(ev.kind.as_str()),
            Fact::WithinPrefecture => return Value::Bool(s.within_prefecture),
            Fact::SchoolDistrictChanged => return Value::Bool(s.district_changed),
            Fact::ToElementaryDistrict => return district(&ev.to, false),
            Fact::ToJuniorHighDistrict => return district(&ev.to, true),
            Fact::FromMunicipality => {
                return Value::Str(ev.from.as_ref().map_or("", |a| a.municipality.as_str()))
            }
            Fact::ToMunicipality => {
                return Value::Str(ev.to.as_ref().map_or("", |a| a.municipality.as_str()))
            }
            Fact::EventDivorceType => return Value::Str(ev.divorce_type.as_str()),
            Fact::IntoCareFacility => return Value::Bool(ev.into_care_facility),
            _ => {}
        }
        let Some(p) = self.person else {
            return Value::Unknown; // rejected at load: person facts in household rules
        };
        let m = p.member;
        match fact {
            Fact::PersonId => Value::Str(&m.id),
            Fact::Relationship => Value::Str(&m.relationship),
            Fact::Age => Value::Int(p.age),
            Fact::AgeAtFyEnd => Value::Int(p.age_at_fy_end),
            Fact::SchoolStage => Value::Str(p.school_stage()),
            Fact::PersonSex => Value::Str(m.sex.as_str()),
            Fact::Nationality => Value::Str(&m.nationality),
            Fact::ForeignResident => Value::Bool(m.nationality != "JP"),
            Fact::PersonInsurance => Value::Str(m.insurance.as_str()),
            Fact::PersonCareLevel => Value::Str(m.care_level.as_str()),
            Fact::HasCareCertification => {
                Value::Bool(m.care_level != super::model::CareLevel::None)
            }
            Fact::Handbooks => Value::Static(&p.handbooks),
            Fact::HasDisabilityHandbook => Value::Bool(!p.handbooks.is_empty()),
            Fact::PersonSchool => Value::Str(m.school.as_str()),
            Fact::PrivateSchool => Value::Bool(m.private_school),
            Fact::PersonNursery => Value::Str(m.nursery.as_str()),
            Fact::SealRegistered => Value::Bool(m.seal_registered),
            Fact::MyNumberCard => Value::Bool(m.my_number_card),
            Fact::PensionCategory => Value::Int(i64::from(m.pension_category)),
            Fact::Benefits => Value::Static(&p.benefits),
            Fact::Pregnant => Value::Bool(m.pregnant),
            Fact::PublicServant => Value::Bool(m.public_servant),
            Fact::BirthWeight => Value::Int(i64::from(m.birth_weight_g.unwrap_or(0))),
            Fact::OwnsDog => Value::Bool(m.owns_dog),
            Fact::OwnsMoped => Value::Bool(m.owns_moped),
            Fact::IsSubject => Value::Bool(p.is_subject),
            Fact::IsHead => Value::Bool(m.relationship == "世帯主"),
            Fact::Remains => Value::Bool(p.remains),
            Fact::SurnameChanges => Value::Bool(p.surname_changes),
            Fact::SpouseOfSubject => Value::Bool(p.spouse_of_subject),
            _ => Value::Unknown,
        }
    }

    fn answer(&self, index: usize, per_person: bool) -> Option<bool> {
        if let Some((i, pp, v)) = self.assume {
            if i == index && pp == per_person {
                return Some(v);
            }
        }
        if per_person {
            self.person
                .and_then(|p| p.answers.get(index).copied().flatten())
        } else {
            self.shared.answers.get(index).copied().flatten()
        }
    }
}

fn render(parts: &[Part], ctx: &Ctx<'_, '_>) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Fact(f) => match ctx.fact(*f, 0) {
                Value::Bool(b) => out.push_str(if b { "はい" } else { "いいえ" }),
                Value::Int(n) => out.push_str(&n.to_string()),
                Value::Str(s) => out.push_str(s),
                Value::Static(l) => out.push_str(&l.join("・")),
                Value::Owned(l) => out.push_str(&l.join("・")),
                Value::Unknown => out.push('?'),
            },
        }
    }
    out
}

/// The last day under a deadline rule.
pub fn due_date(d: &Deadline, input: &DeterminationInput) -> Option<Date> {
    if d.dateless {
        return None;
    }
    let ev = &input.event;
    let base = match d.base {
        DeadlineBase::Event => ev.date,
        DeadlineBase::PlannedMoveOut => ev.planned_move_out_date.unwrap_or(ev.date),
    };
    let due = if d.business {
        add_business_days(base, u32::try_from(d.days).unwrap_or(0))
    } else if d.months > 0 {
        // 民法143条: the day before the day corresponding to the start day, which
        // (初日不算入) is the day after the base; no such day → the month's last day.
        base.add_months(d.months)
            .add_days(-i64::from(d.first_day_counts))
    } else {
        base.add_days(d.days - i64::from(d.first_day_counts))
    };
    Some(if d.roll { next_business_day(due) } else { due })
}

fn item(
    cat: &Catalogue,
    p: &Procedure,
    reason: String,
    dl: Option<&Deadline>,
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
        reason,
        deadline: dl.and_then(|d| due_date(d, input)),
        deadline_note: dl.and_then(|d| d.note.clone()),
        legal_basis: p.legal_basis.clone(),
        fee: p.fee,
        documents: p.documents.clone(),
        form: p.form.clone(),
    }
}

/// Check the input against itself and the catalogue.
fn check_input(cat: &Catalogue, input: &DeterminationInput) -> Result<(), RulesError> {
    let bad = |m: String| Err(RulesError::Input(m));
    let members = &input.household.members;
    for (i, m) in members.iter().enumerate() {
        if members[..i].iter().any(|o| o.id == m.id) {
            return bad(format!("duplicate member id {:?}", m.id));
        }
        if let Some(s) = &m.spouse {
            if !members.iter().any(|o| o.id == *s) {
                return bad(format!("member {:?}: spouse {s:?} is not a member", m.id));
            }
        }
        for q in m.answers.keys() {
            if !cat.questions.iter().any(|x| x.per_person && x.id == *q) {
                return bad(format!("member {:?}: no person question {q:?}", m.id));
            }
        }
    }
    for s in input
        .event
        .subjects
        .iter()
        .chain(&input.event.surname_changes)
    {
        if !members.iter().any(|m| m.id == *s) {
            return bad(format!("event names {s:?}, who is not a member"));
        }
    }
    if input.event.subjects.is_empty() {
        return bad("event.subjects is empty".into());
    }
    for q in input.answers.keys() {
        if !cat.questions.iter().any(|x| !x.per_person && x.id == *q) {
            return bad(format!("no household question {q:?}"));
        }
    }
    Ok(())
}

/// Determine with one catalogue version.
pub fn determine_with(
    cat: &Catalogue,
    input: &DeterminationInput,
) -> Result<Determination, RulesError> {
    check_input(cat, input)?;
    let ev = &input.event;
    let (mut persons, remaining_ages) = derive_facts(input);
    for p in &mut persons {
        p.answers = cat
            .person_questions
            .iter()
            .map(|&qi| p.member.answers.get(&cat.questions[qi].id).copied())
            .collect();
    }
    let (from, to) = (ev.from.as_ref(), ev.to.as_ref());
    let shared = Shared {
        input,
        answers: cat
            .household_questions
            .iter()
            .map(|&qi| input.answers.get(&cat.questions[qi].id).copied())
            .collect(),
        within_prefecture: matches!((from, to), (Some(f), Some(t)) if f.prefecture == t.prefecture),
        district_changed: matches!((from, to), (Some(f), Some(t))
            if f.elementary_district != t.elementary_district
                || f.junior_high_district != t.junior_high_district),
        head_is_subject: persons
            .iter()
            .any(|p| p.is_subject && p.member.relationship == "世帯主"),
        any_kokuho: persons
            .iter()
            .any(|p| p.remains && p.member.insurance == super::model::Insurance::Kokuho),
        receives_child_allowance: persons.iter().any(|p| {
            p.remains
                && p.member
                    .benefits
                    .contains(&super::model::Benefit::ChildAllowance)
        }),
        remaining_ages,
    };

    let mut per_person: Vec<Vec<(usize, Item)>> = vec![Vec::new(); persons.len()];
    let mut household = Vec::new();
    // (question catalogue index, person index) → affected procedure ids
    let mut asked: BTreeMap<(usize, Option<usize>), Vec<String>> = BTreeMap::new();
    let entries = &cat.by_event[event_index(ev.kind)];
    let mut i = 0;
    while i < entries.len() {
        // Entries are grouped by procedure: take this procedure's rules together.
        let pi = entries[i].0;
        let mut j = i;
        while j < entries.len() && entries[j].0 == pi {
            j += 1;
        }
        let proc = &cat.procedures[pi];
        let rules = &entries[i..j];
        i = j;
        let targets: Vec<Option<usize>> = if proc.per_household {
            vec![None]
        } else {
            (0..persons.len()).map(Some).collect()
        };
        for target in targets {
            let ctx = Ctx {
                person: target.map(|t| &persons[t]),
                shared: &shared,
                assume: None,
            };
            let mut unknown = Vec::new();
            let mut hit = None;
            for &(_, ri) in rules {
                let rule = &proc.rules[ri];
                match rule.condition.expr.eval_tri(&ctx) {
                    Tri::True => {
                        hit = Some(rule);
                        break;
                    }
                    Tri::Unknown => unknown.push(rule),
                    Tri::False => {}
                }
            }
            if let Some(rule) = hit {
                let dl = rule.deadline.as_ref().or(proc.deadline.as_ref());
                let it = item(cat, proc, render(&rule.reason, &ctx), dl, input);
                match target {
                    Some(t) => per_person[t].push((pi, it)),
                    None => household.push((pi, it)),
                }
                continue;
            }
            for rule in unknown {
                for &(qi, pp) in &rule.condition.reads {
                    if ctx.answer(qi, pp).is_some() {
                        continue;
                    }
                    let with = |v| {
                        let c = Ctx {
                            assume: Some((qi, pp, v)),
                            ..ctx.clone_ref()
                        };
                        rule.condition.expr.eval_tri(&c)
                    };
                    if with(true) != with(false) {
                        let cat_q = if pp {
                            cat.person_questions[qi]
                        } else {
                            cat.household_questions[qi]
                        };
                        let key = (cat_q, if pp { target } else { None });
                        let list = asked.entry(key).or_default();
                        if !list.contains(&proc.id) {
                            list.push(proc.id.clone());
                        }
                    }
                }
            }
        }
    }

    let order = |pi: usize| (cat.departments[cat.procedures[pi].department].order, pi);
    household.sort_by_key(|(pi, _)| order(*pi));
    for list in &mut per_person {
        list.sort_by_key(|(pi, _)| order(*pi));
    }
    let mut stops: BTreeMap<(u32, usize), Stop> = BTreeMap::new();
    let mut add_stop = |pi: usize, who: Option<String>, it: &Item| {
        let d = cat.procedures[pi].department;
        stops
            .entry((cat.departments[d].order, d))
            .or_insert_with(|| Stop {
                department: it.department.clone(),
                department_name: it.department_name.clone(),
                counter: it.counter.clone(),
                procedures: Vec::new(),
            })
            .procedures
            .push((who, it.id.clone()));
    };
    for (pi, it) in &household {
        add_stop(*pi, None, it);
    }
    for (p, list) in persons.iter().zip(&per_person) {
        for (pi, it) in list {
            add_stop(*pi, Some(p.member.id.clone()), it);
        }
    }
    Ok(Determination {
        catalogue_version: cat.version.clone(),
        catalogue_effective_from: cat.effective_from,
        event: ev.kind,
        event_date: ev.date,
        persons: persons
            .iter()
            .zip(per_person)
            .map(|(p, list)| PersonResult {
                person: p.member.id.clone(),
                relationship: p.member.relationship.clone(),
                age: p.age,
                procedures: list.into_iter().map(|(_, it)| it).collect(),
            })
            .collect(),
        household: household.into_iter().map(|(_, it)| it).collect(),
        questions: asked
            .into_iter()
            .map(|((qi, person), affects)| AskedQuestion {
                id: cat.questions[qi].id.clone(),
                text: cat.questions[qi].text.clone(),
                person: person.map(|t| persons[t].member.id.clone()),
                affects,
            })
            .collect(),
        visit_order: stops.into_values().collect(),
    })
}

impl<'a, 'b> Ctx<'a, 'b> {
    fn clone_ref(&self) -> Ctx<'a, 'b> {
        Ctx {
            person: self.person,
            shared: self.shared,
            assume: self.assume,
        }
    }
}
