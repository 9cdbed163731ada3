//! The data a document is filled from, and the paths templates may read.
//!
//! A form's data is one JSON object (agreed with `applications::fill` in the control
//! plane):
//!
//! ```text
//! { "form": {"id"}, "application": {"number", "created"},
//!   "office": {"city", "department", "counter"},
//!   "applicant": PERSON, "subject": PERSON,
//!   "household": {"head": PERSON, "address", "members": [PERSON]},
//!   "event": {"kind", "label", "date", "previous_address", "new_address"},
//!   "procedure": {"id", "name", "deadline", "department", "documents": [..], "reason"},
//!   "answers": {"<question id>": any},
//!   "certificate": {"requester": PERSON, "relationship", "purpose", "destination",
//!       "id_check", "items": [{"name", "options": [..], "copies", "fee"}], "fee_total"} }
//! PERSON = {"name", "kana", "birth_date", "sex", "relationship", "address", "atena"}
//! ```
//!
//! The procedure guide's data is `{"office", "household", "event", "visit": {"date",
//! "number"}, "people": [PERSON + {"procedures": [{"name", "department", "counter",
//! "deadline", "documents": [..], "reason", "order"}]}]}`.
//!
//! Absent or `null` means "print blank for the resident"; nothing is ever made up.
//! [`prepare`] adds, next to every member whose value is an ISO date
//! (`"birth_date": "1980-04-01"`), a sibling with the same name and `_wareki`
//! (`"birth_date_wareki": "昭和55年4月1日"`): that is how templates print 和暦. A member
//! the data already has is never overwritten.
//!
//! [`Shape`] describes the paths a template may name (`applicant.name`,
//! `certificate.items`, `answers.<any id>`), so a misspelt path is refused when the
//! template is loaded instead of printing a silent blank.

use serde_json::{Map, Value};

use crate::wareki;

/// The suffix of the 和暦 sibling [`prepare`] adds to a date member.
pub const WAREKI_SUFFIX: &str = "_wareki";

/// Adds the `…_wareki` siblings to every ISO date member, at any depth.
pub fn prepare(data: &Value) -> Value {
    let mut data = data.clone();
    add_wareki(&mut data);
    data
}

fn add_wareki(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let additions: Vec<(String, String)> = map
                .iter()
                .filter_map(|(key, value)| {
                    let text = value.as_str()?;
                    let wareki = wareki::format(text).ok()?;
                    let sibling = format!("{key}{WAREKI_SUFFIX}");
                    (!map.contains_key(&sibling)).then_some((sibling, wareki))
                })
                .collect();
            for value in map.values_mut() {
                add_wareki(value);
            }
            for (key, text) in additions {
                map.insert(key, Value::String(text));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(add_wareki),
        _ => {}
    }
}

/// What a template may find at a path of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A string.
    Text,
    /// An ISO date (the template may also read its `_wareki` sibling).
    Date,
    /// A number.
    Number,
    /// A person ([`PERSON`]).
    Person,
    /// A list of the inner shape.
    List(&'static Shape),
    /// An object with these members.
    Object(&'static [(&'static str, Shape)]),
    /// Anything (staff answers: one member per question id).
    Any,
}

/// The members of a person.
pub const PERSON: &[(&str, Shape)] = &[
    ("name", Shape::Text),
    ("kana", Shape::Text),
    ("birth_date", Shape::Date),
    ("sex", Shape::Text),
    ("relationship", Shape::Text),
    ("address", Shape::Text),
    ("atena", Shape::Text),
];

const OFFICE: Shape = Shape::Object(&[
    ("city", Shape::Text),
    ("department", Shape::Text),
    ("counter", Shape::Text),
]);

const HOUSEHOLD: Shape = Shape::Object(&[
    ("head", Shape::Person),
    ("address", Shape::Text),
    ("members", Shape::List(&Shape::Person)),
]);

const EVENT: Shape = Shape::Object(&[
    ("kind", Shape::Text),
    ("label", Shape::Text),
    ("date", Shape::Date),
    ("previous_address", Shape::Text),
    ("new_address", Shape::Text),
]);

const CERTIFICATE_ITEM: Shape = Shape::Object(&[
    ("name", Shape::Text),
    ("options", Shape::List(&Shape::Text)),
    ("copies", Shape::Number),
    ("fee", Shape::Number),
]);

/// The data of a form.
pub const FORM_DATA: Shape = Shape::Object(&[
    ("form", Shape::Object(&[("id", Shape::Text)])),
    (
        "application",
        Shape::Object(&[("number", Shape::Text), ("created", Shape::Date)]),
    ),
    ("office", OFFICE),
    ("applicant", Shape::Person),
    ("subject", Shape::Person),
    ("household", HOUSEHOLD),
    ("event", EVENT),
    (
        "procedure",
        Shape::Object(&[
            ("id", Shape::Text),
            ("name", Shape::Text),
            ("deadline", Shape::Date),
            ("department", Shape::Text),
            ("documents", Shape::List(&Shape::Text)),
            ("reason", Shape::Text),
        ]),
    ),
    ("answers", Shape::Any),
    (
        "certificate",
        Shape::Object(&[
            ("requester", Shape::Person),
            ("relationship", Shape::Text),
            ("purpose", Shape::Text),
            ("destination", Shape::Text),
            ("id_check", Shape::Text),
            ("items", Shape::List(&CERTIFICATE_ITEM)),
            ("fee_total", Shape::Number),
        ]),
    ),
]);

impl Shape {
    fn members(self) -> Option<&'static [(&'static str, Shape)]> {
        match self {
            Shape::Object(members) => Some(members),
            Shape::Person => Some(PERSON),
            _ => None,
        }
    }

    /// The shape at a dotted path below this one (`applicant.birth_date`,
    /// `household.members.0.name`, `birth_date_wareki`), or `None` when the data
    /// never has such a member.
    pub fn at(self, path: &str) -> Option<Shape> {
        if path.is_empty() {
            return None;
        }
        let mut shape = self;
        for segment in path.split('.') {
            shape = match shape {
                Shape::Any => return Some(Shape::Any),
                Shape::List(inner) if segment.parse::<usize>().is_ok() => *inner,
                _ => {
                    let members = shape.members()?;
                    if let Some((_, s)) = members.iter().find(|(name, _)| *name == segment) {
                        *s
                    } else {
                        let base = segment.strip_suffix(WAREKI_SUFFIX)?;
                        match members.iter().find(|(name, _)| *name == base) {
                            Some((_, Shape::Date)) => Shape::Text,
                            _ => return None,
                        }
                    }
                }
            };
        }
        Some(shape)
    }
}

/// Reads a dotted path from data (`None` when absent or `null`).
pub fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = data;
    for segment in path.split('.') {
        value = match value {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!value.is_null()).then_some(value)
}

/// An empty JSON object.
pub fn empty() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_get_a_wareki_sibling_at_any_depth_and_nothing_else_changes() {
        let data = json!({
            "application": {"created": "2026-11-27", "number": "2026-000123"},
            "household": {"members": [{"birth_date": "2019-05-01", "name": "山田 花子"}]},
            "answers": {"note": "2026-11-27 に電話", "when": "2020-02-30"}
        });
        let out = prepare(&data);
        assert_eq!(out["application"]["created_wareki"], "令和8年11月27日");
        assert_eq!(
            out["household"]["members"][0]["birth_date_wareki"],
            "令和元年5月1日"
        );
        assert_eq!(out["application"]["number"], "2026-000123");
        assert!(out["application"].get("number_wareki").is_none());
        assert!(out["answers"].get("note_wareki").is_none());
        assert!(
            out["answers"].get("when_wareki").is_none(),
            "not a real day"
        );
    }

    #[test]
    fn an_existing_member_is_never_overwritten() {
        let out = prepare(&json!({"date": "2026-11-27", "date_wareki": "given"}));
        assert_eq!(out["date_wareki"], "given");
    }

    #[test]
    fn paths_are_checked_against_the_agreed_shape() {
        assert_eq!(FORM_DATA.at("applicant.name"), Some(Shape::Text));
        assert_eq!(FORM_DATA.at("subject.birth_date"), Some(Shape::Date));
        assert_eq!(FORM_DATA.at("subject.birth_date_wareki"), Some(Shape::Text));
        assert_eq!(FORM_DATA.at("household.members.0.kana"), Some(Shape::Text));
        assert_eq!(
            FORM_DATA.at("answers.joins_employer_insurance"),
            Some(Shape::Any)
        );
        assert!(matches!(
            FORM_DATA.at("certificate.items"),
            Some(Shape::List(_))
        ));
        assert_eq!(FORM_DATA.at("applicant.nmae"), None);
        assert_eq!(FORM_DATA.at("applicant.name_wareki"), None);
        assert_eq!(FORM_DATA.at("applicant.name.first"), None);
        assert_eq!(FORM_DATA.at("household.members.x"), None);
        assert_eq!(FORM_DATA.at(""), None);
        assert_eq!(FORM_DATA.at("applicant."), None);
    }

    #[test]
    fn lookup_treats_null_as_absent() {
        let data = json!({"a": {"b": null, "c": [1, 2]}});
        assert_eq!(lookup(&data, "a.b"), None);
        assert_eq!(lookup(&data, "a.c.1"), Some(&json!(2)));
        assert_eq!(lookup(&data, "a.x"), None);
    }
}
