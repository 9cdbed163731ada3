//! Catalogue loading and validation, version selection by effective date, questions,
//! coverage of the reference catalogue (R6, R7) and the JSON entry point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use kakanai_control_plane::rules::{
    catalog::{areas_covered, AREAS},
    determine, determine_from_files, CatalogueSet, DeterminationInput, RulesError,
};
use serde_json::json;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn reference() -> CatalogueSet {
    CatalogueSet::load(&root().join("catalog")).unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const META: &str = r#"
version = "t1"
effective_from = "2025-01-01"
[[department]]
id = "shimin"
name = "市民課"
counter = "1番"
order = 1
[[question]]
id = "q_employer"
scope = "person"
text = "社保に加入しますか？"
"#;

#[test]
fn rules_invalid_catalogue_reports_every_error_with_location() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "v1/catalogue.toml", META);
    write(
        dir.path(),
        "v1/procedures/a.toml",
        r#"
[[procedure]]
id = "p1"
name = "転入届"
area = "住民票"
department = "shimin"
deadline = { days = 14, business_days = 3 }
[[procedure.rule]]
events = ["move_in"]
when = "person.is_subject && person.salary > 3"
reason = "{person.relationship} → 転入届"

[[procedure]]
id = "p1"
name = "重複"
area = "住民記録"
department = "nowhere"
[[procedure.rule]]
events = ["moving"]
when = "person.age"
reason = "{person.nope}"
[[procedure.rule]]
events = ["move_in"]
when = "person.age > 3 && answers.unknown_q"
reason = "x"
[[procedure.rule]]
events = ["move_in"]
when = "(person.age > 3"
reason = "x"
"#,
    );
    write(
        dir.path(),
        "v1/procedures/b.toml",
        "[[procedure]]\nid = 3\n",
    );
    let errors = CatalogueSet::load(dir.path()).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let has = |needle: &str| {
        assert!(
            text.iter().any(|t| t.contains(needle)),
            "missing {needle:?} in {text:#?}"
        )
    };
    has("v1/procedures/a.toml: p1: area: unknown area \"住民票\"");
    has("v1/procedures/a.toml: p1: deadline: give only one of");
    has("v1/procedures/a.toml: p1: rule[1].when (column 22): unknown fact `person.salary`");
    has("v1/procedures/a.toml: p1: id: duplicate procedure id");
    has("v1/procedures/a.toml: p1: department: unknown department \"nowhere\"");
    has("v1/procedures/a.toml: p1: rule[1].events: unknown event \"moving\"");
    has("v1/procedures/a.toml: p1: rule[1].when (column 1): a rule condition must be bool, found int");
    has("v1/procedures/a.toml: p1: rule[1].reason (column 1): unknown fact `person.nope`");
    has("v1/procedures/a.toml: p1: rule[2].when (column 19): unknown question `unknown_q`");
    has("v1/procedures/a.toml: p1: rule[3].when (column 16): expected `)`");
    has("v1/procedures/b.toml:2:6: invalid type");
    assert_eq!(errors.len(), 11, "{text:#?}");
    // The RulesError lists them all.
    let e = RulesError::Catalogue(errors);
    assert!(e
        .to_string()
        .starts_with("catalogue rejected (11 error(s))"));
}

#[test]
fn rules_rejected_reload_keeps_the_loaded_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "v1/catalogue.toml", META);
    write(
        dir.path(),
        "v1/procedures/a.toml",
        "[[procedure]]\nid = \"p\"\nname = \"転入届\"\narea = \"住民記録\"\ndepartment = \"shimin\"\ndeadline = { days = 14 }\n[[procedure.rule]]\nevents = [\"move_in\"]\nwhen = \"person.is_subject\"\nreason = \"r\"\n",
    );
    let current = CatalogueSet::load(dir.path()).unwrap();
    write(
        dir.path(),
        "v1/procedures/b.toml",
        "[[procedure]]\nid = \"p\"\n",
    );
    assert!(CatalogueSet::load(dir.path()).is_err());
    assert_eq!(current.versions()[0].procedures.len(), 1);
}

fn pregnant_move_in(date: &str) -> DeterminationInput {
    serde_json::from_value(json!({
        "event": {"kind": "move_in", "date": date, "subjects": ["p1"]},
        "household": {"members": [{"id": "p1", "relationship": "世帯主", "birth_date": "1996-02-02",
            "insurance": "shaho", "pregnant": true, "answers": {"wants_seal_registration": false}}]}
    }))
    .unwrap()
}

#[test]
fn rules_later_version_applies_from_its_effective_date() {
    let set = reference();
    let ids = |date: &str| -> Vec<String> {
        let d = determine(&set, &pregnant_move_in(date)).unwrap();
        d.persons[0]
            .procedures
            .iter()
            .map(|p| p.id.clone())
            .collect()
    };
    let before = ids("2025-03-31");
    let from = ids("2025-04-01");
    assert!(
        before.contains(&"kosodate_ouen_kyufukin".into())
            && !before.contains(&"ninpu_shien_kyufu".into())
    );
    assert!(
        from.contains(&"ninpu_shien_kyufu".into())
            && !from.contains(&"kosodate_ouen_kyufukin".into())
    );
    let too_early = determine(&set, &pregnant_move_in("2024-09-30")).unwrap_err();
    assert!(matches!(too_early, RulesError::NoVersion(_)));
}

fn single_move_in(insurance: &str, answers: serde_json::Value) -> DeterminationInput {
    serde_json::from_value(json!({
        "event": {"kind": "move_in", "date": "2025-06-02", "subjects": ["p1"]},
        "household": {"members": [{"id": "p1", "relationship": "世帯主", "birth_date": "1995-07-10",
            "insurance": insurance, "answers": answers}]}
    }))
    .unwrap()
}

#[test]
fn rules_questions_only_when_they_change_the_result() {
    let set = reference();
    let asked = |input: &DeterminationInput| -> Vec<String> {
        determine(&set, input)
            .unwrap()
            .questions
            .iter()
            .map(|q| q.id.clone())
            .collect()
    };
    // 国保 member, nothing answered: both the insurance and the seal question matter.
    let q = determine(&set, &single_move_in("kokuho", json!({})))
        .unwrap()
        .questions;
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].id, "joins_employer_insurance");
    assert_eq!(q[0].person.as_deref(), Some("p1"));
    assert_eq!(q[0].affects, vec!["kokuho_shutoku".to_string()]);
    // Already in an employer's insurance: the insurance question cannot change anything.
    assert_eq!(
        asked(&single_move_in("shaho", json!({}))),
        vec!["wants_seal_registration"]
    );
    // Answered: no question left, and the answer decides.
    let answered = single_move_in(
        "kokuho",
        json!({"joins_employer_insurance": true, "wants_seal_registration": false}),
    );
    assert!(asked(&answered).is_empty());
    let d = determine(&set, &answered).unwrap();
    assert!(!d.persons[0]
        .procedures
        .iter()
        .any(|p| p.id == "kokuho_shutoku"));
    // A child under 15 is never asked about seal registration (印鑑登録 is for 15+),
    // but a primary-school child brings the 就学援助 question.
    let child: DeterminationInput = serde_json::from_value(json!({
        "event": {"kind": "move_in", "date": "2025-06-02", "subjects": ["c"]},
        "household": {"members": [{"id": "c", "relationship": "長男", "birth_date": "2015-01-01", "insurance": "shaho"}]}
    }))
    .unwrap();
    assert_eq!(asked(&child), vec!["wants_school_aid"]);
}

#[test]
fn rules_reference_catalogue_covers_every_area_and_certificate() {
    let set = reference();
    for cat in set.versions() {
        let covered = areas_covered(cat);
        for area in AREAS.iter().filter(|a| **a != "証明書") {
            assert!(
                covered.contains_key(area),
                "{}: no procedure in {area}",
                cat.version
            );
        }
        let certs: Vec<&str> = cat.certificates.iter().map(|c| c.name.as_str()).collect();
        for needle in [
            "住民票の写し",
            "住民票記載事項証明書",
            "除票",
            "印鑑登録証明書",
            "戸籍全部事項証明書",
            "戸籍個人事項証明書",
            "除籍",
            "附票",
            "身分証明書",
            "所得証明書",
            "納税証明書",
            "評価証明書",
            "公課証明書",
            "名寄帳",
            "不在住",
        ] {
            assert!(
                certs.iter().any(|c| c.contains(needle)),
                "{}: no certificate {needle}",
                cat.version
            );
        }
        // Every event kind has procedures.
        assert!(cat.by_event.iter().all(|v| !v.is_empty()));
    }
}

#[test]
fn rules_determine_from_files_gives_full_items() {
    let input = root().join("tests/scenarios/move_in_family_school.input.json");
    let v = determine_from_files(&root().join("catalog"), &input).unwrap();
    assert_eq!(v["catalogue_version"], "2024.10");
    let eldest = &v["persons"][2];
    assert_eq!(eldest["relationship"], "長女");
    assert_eq!(eldest["age"], 8);
    let school = eldest["procedures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "tennyugaku")
        .unwrap();
    assert_eq!(
        school["reason"],
        "長女（8歳）は小学生の年齢で、住所は第二小学校区 → 転入学通知書"
    );
    assert_eq!(school["area"], "学校校区");
    assert_eq!(school["department_name"], "教育委員会 学務課");
    assert!(school["documents"].as_array().unwrap().len() == 1);
    // 住民記録 is the first counter.
    assert_eq!(v["visit_order"][0]["department"], "shimin");
    let head = &v["persons"][0]["procedures"];
    let allowance = head
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "jido_teate_nintei")
        .unwrap();
    assert_eq!(allowance["deadline"], "2025-04-09");
    // Input errors are typed.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "{\"event\": 1}").unwrap();
    assert!(matches!(
        determine_from_files(&root().join("catalog"), bad.path()),
        Err(RulesError::InputFile { .. })
    ));
}
