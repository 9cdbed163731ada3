//! Golden scenarios for the procedure determination (R2, R7): every
//! `tests/scenarios/NAME.input.json` is determined with the reference catalogue in
//! `catalog/`, reduced to a reviewable summary — for each member the full map of
//! procedure id → deadline (date, or null when the deadline is a note), the household
//! procedures, the open questions and the counters in visit order — and compared with
//! `NAME.expected.json`. `KAKANAI_BLESS=1` rewrites the expected files (review them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kakanai_control_plane::rules::{determine, CatalogueSet, Determination, DeterminationInput};
use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn summary(d: &Determination) -> Value {
    let items = |list: &[kakanai_control_plane::rules::engine::Item]| {
        list.iter()
            .map(|i| (i.id.clone(), json!(i.deadline)))
            .collect::<BTreeMap<_, _>>()
    };
    let persons: BTreeMap<String, Value> = d
        .persons
        .iter()
        .map(|p| {
            (
                format!("{} {}", p.person, p.relationship),
                json!(items(&p.procedures)),
            )
        })
        .collect();
    json!({
        "catalogue_version": d.catalogue_version,
        "persons": persons,
        "household": items(&d.household),
        "questions": d.questions.iter().map(|q| format!("{}@{}", q.id, q.person.clone().unwrap_or_default())).collect::<Vec<_>>(),
        "visit_order": d.visit_order.iter().map(|s| s.department.clone()).collect::<Vec<_>>(),
    })
}

#[test]
fn rules_golden_scenarios() {
    let set = CatalogueSet::load(&root().join("catalog")).unwrap();
    let dir = root().join("tests/scenarios");
    let bless = std::env::var_os("KAKANAI_BLESS").is_some();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".input.json"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 15, "scenarios missing");
    let mut failures = Vec::new();
    for input_path in inputs {
        let name = input_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".input.json", "");
        let input: DeterminationInput =
            serde_json::from_str(&std::fs::read_to_string(&input_path).unwrap()).unwrap();
        let d = determine(&set, &input).unwrap();
        // Every reason is filled in and every procedure has a department.
        for it in d
            .persons
            .iter()
            .flat_map(|p| &p.procedures)
            .chain(&d.household)
        {
            assert!(
                !it.reason.is_empty() && !it.reason.contains('?'),
                "{name}: {}",
                it.reason
            );
            assert!(
                it.deadline.is_some() || it.deadline_note.is_some(),
                "{name}: {} has no deadline",
                it.id
            );
        }
        let got = summary(&d);
        let expected_path = dir.join(format!("{name}.expected.json"));
        if bless {
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            std::fs::write(&expected_path, text).unwrap();
            continue;
        }
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(&expected_path)
                .unwrap_or_else(|_| panic!("{name}: no expected file; run with KAKANAI_BLESS=1")),
        )
        .unwrap();
        if got != expected {
            failures.push(format!(
                "{name}:\n expected {}\n got      {}",
                serde_json::to_string(&expected).unwrap(),
                serde_json::to_string(&got).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
