//! What changed between two catalogue versions, for administrators reviewing a 制度改正
//! before it is scheduled (`kakanai-control-plane catalog diff`).
//!
//! Procedures and certificates are matched by id: an id only in the new version is
//! added, one only in the old is removed, and one in both is changed when any field
//! differs. A procedure whose id changed with the law (出産・子育て応援給付金 →
//! 妊婦のための支援給付) therefore shows as one removal and one addition, which is what
//! it is for the counter: a different procedure.

use std::collections::BTreeMap;
use std::fmt;

use super::catalog::{Catalogue, Certificate, Deadline, Part, Procedure};

/// One field that differs, old and new rendered as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// Field name (`fee`, `rule[2].when` …).
    pub field: String,
    /// Old value.
    pub old: String,
    /// New value.
    pub new: String,
}

/// An item (procedure or certificate) present in both versions with changed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemChange {
    /// Id.
    pub id: String,
    /// Name in the new version.
    pub name: String,
    /// What differs.
    pub fields: Vec<FieldChange>,
}

/// An item only in one version: id and Japanese name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRef {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
}

/// Added, removed and changed items of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindDiff {
    /// Only in the new version.
    pub added: Vec<ItemRef>,
    /// Only in the old version.
    pub removed: Vec<ItemRef>,
    /// In both, with differences.
    pub changed: Vec<ItemChange>,
}

impl KindDiff {
    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The difference between two catalogue versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueDiff {
    /// Old version label and date.
    pub old: (String, String),
    /// New version label and date.
    pub new: (String, String),
    /// Procedures (手続).
    pub procedures: KindDiff,
    /// Certificates (証明書).
    pub certificates: KindDiff,
}

impl CatalogueDiff {
    /// Nothing differs in procedures or certificates.
    pub fn is_empty(&self) -> bool {
        self.procedures.is_empty() && self.certificates.is_empty()
    }
}

/// Compares `old` with `new`.
pub fn diff(old: &Catalogue, new: &Catalogue) -> CatalogueDiff {
    CatalogueDiff {
        old: (old.version.clone(), old.effective_from.to_string()),
        new: (new.version.clone(), new.effective_from.to_string()),
        procedures: diff_items(
            &old.procedures,
            &new.procedures,
            |p| (&p.id, &p.name),
            |p| procedure_fields(old, p),
            |p| procedure_fields(new, p),
        ),
        certificates: diff_items(
            &old.certificates,
            &new.certificates,
            |c| (&c.id, &c.name),
            certificate_fields,
            certificate_fields,
        ),
    }
}

fn diff_items<T>(
    old: &[T],
    new: &[T],
    key: impl Fn(&T) -> (&String, &String),
    old_fields: impl Fn(&T) -> BTreeMap<String, String>,
    new_fields: impl Fn(&T) -> BTreeMap<String, String>,
) -> KindDiff {
    let item_ref = |t: &T| {
        let (id, name) = key(t);
        ItemRef {
            id: id.clone(),
            name: name.clone(),
        }
    };
    let find = |list: &'_ [T], id: &str| list.iter().position(|t| key(t).0 == id);
    let mut d = KindDiff::default();
    for o in old {
        if find(new, key(o).0).is_none() {
            d.removed.push(item_ref(o));
        }
    }
    for n in new {
        let Some(oi) = find(old, key(n).0) else {
            d.added.push(item_ref(n));
            continue;
        };
        let (before, after) = (old_fields(&old[oi]), new_fields(n));
        let mut fields = Vec::new();
        for name in before
            .keys()
            .chain(after.keys().filter(|k| !before.contains_key(*k)))
        {
            let o = before.get(name).cloned().unwrap_or_default();
            let a = after.get(name).cloned().unwrap_or_default();
            if o != a {
                fields.push(FieldChange {
                    field: name.clone(),
                    old: o,
                    new: a,
                });
            }
        }
        if !fields.is_empty() {
            let r = item_ref(n);
            d.changed.push(ItemChange {
                id: r.id,
                name: r.name,
                fields,
            });
        }
    }
    d
}

fn deadline_text(d: Option<&Deadline>) -> String {
    let Some(d) = d else {
        return "なし".into();
    };
    let mut s = if d.dateless {
        String::new()
    } else if d.months > 0 {
        format!("{}か月", d.months)
    } else if d.business {
        format!("{}開庁日", d.days)
    } else {
        format!("{}日", d.days)
    };
    if d.first_day_counts {
        s.push_str("（初日算入）");
    }
    if !d.roll {
        s.push_str("（閉庁日の繰延べなし）");
    }
    if let Some(n) = &d.note {
        s.push_str(&format!("「{n}」"));
    }
    if d.base == super::catalog::DeadlineBase::PlannedMoveOut {
        s.push_str("（転出予定日から）");
    }
    s
}

fn template_text(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.clone(),
            // The name the catalogue wrote, so the text reads like the TOML source.
            Part::Fact(f) => super::model::FACTS
                .iter()
                .find(|row| row.0 == *f)
                .map_or_else(|| format!("{{{f:?}}}"), |row| format!("{{{}}}", row.1)),
        })
        .collect()
}

fn procedure_fields(cat: &Catalogue, p: &Procedure) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let department = cat
        .departments
        .get(p.department)
        .map_or_else(String::new, |d| format!("{}（{}）", d.name, d.counter));
    m.insert("name".into(), p.name.clone());
    m.insert("area".into(), p.area.clone());
    m.insert("department".into(), department);
    m.insert(
        "scope".into(),
        if p.per_household {
            "household"
        } else {
            "person"
        }
        .into(),
    );
    m.insert("legal_basis".into(), p.legal_basis.clone());
    m.insert("deadline".into(), deadline_text(p.deadline.as_ref()));
    m.insert("fee".into(), p.fee.to_string());
    m.insert("documents".into(), p.documents.join("、"));
    m.insert("form".into(), p.form.clone().unwrap_or_default());
    m.insert("rules".into(), p.rules.len().to_string());
    for (i, r) in p.rules.iter().enumerate() {
        let f = |name: &str| format!("rule[{}].{name}", i + 1);
        let events: Vec<&str> = r.events.iter().map(|e| e.as_str()).collect();
        m.insert(f("events"), events.join(", "));
        m.insert(f("when"), r.when.clone());
        m.insert(f("reason"), template_text(&r.reason));
        m.insert(f("deadline"), deadline_text(r.deadline.as_ref()));
    }
    m
}

fn certificate_fields(c: &Certificate) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("name".into(), c.name.clone());
    m.insert("department".into(), c.department.clone());
    m.insert("fee".into(), c.fee.to_string());
    m.insert("options".into(), c.options.join("、"));
    m.insert("requires".into(), c.requires.join("、"));
    m.insert("notes".into(), c.notes.clone());
    m
}

impl fmt::Display for CatalogueDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({}) → {} ({})",
            self.old.0, self.old.1, self.new.0, self.new.1
        )?;
        if self.is_empty() {
            return writeln!(f, "手続・証明書に変更はありません");
        }
        for (title, d) in [("手続", &self.procedures), ("証明書", &self.certificates)] {
            writeln!(
                f,
                "{title}: 追加 {}, 削除 {}, 変更 {}",
                d.added.len(),
                d.removed.len(),
                d.changed.len()
            )?;
            for a in &d.added {
                writeln!(f, "  + 追加 {} {}", a.name, a.id)?;
            }
            for r in &d.removed {
                writeln!(f, "  - 削除 {} {}", r.name, r.id)?;
            }
            for c in &d.changed {
                writeln!(f, "  ~ 変更 {} {}", c.name, c.id)?;
                for fc in &c.fields {
                    writeln!(f, "      {}: {} → {}", fc.field, fc.old, fc.new)?;
                }
            }
        }
        Ok(())
    }
}
