//! The catalogue stored in the control plane (issue 7, items 1 and 5): installing the
//! reference catalogue into SQLite and a real PostgreSQL (from `kakanai-test-peers`),
//! refusing a broken copy while the versions in force stay, the schedule, deleting a
//! scheduled version, `procedures.determine` through the RPC dispatcher, and the diff
//! between the two reference versions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use kakanai_control_plane::model::{Ident, TenantId};
use kakanai_control_plane::rpc::{Dispatcher, RpcContext, StaffSession};
use kakanai_control_plane::rules::catalog::read_files;
use kakanai_control_plane::rules::rpc::{DetermineHandler, METHOD};
use kakanai_control_plane::rules::{self, CatalogueFiles, CatalogueSet};
use kakanai_control_plane::store::{
    CatalogueInstallError, Store, StoreError, Tenant, VersionStatus,
};
use kakanai_test_peers::Postgres;

// ---------------------------------------------------------------------------------
// Harness (as in store_conformance.rs)

fn postgres() -> Arc<Postgres> {
    static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pg) = shared.upgrade() {
        return pg;
    }
    let pg = Arc::new(Postgres::start().expect("PostgreSQL must start for these tests"));
    *shared = Arc::downgrade(&pg);
    pg
}

macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display());
                    super::$case(url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let pg = tokio::task::spawn_blocking(super::postgres).await.unwrap();
                    let db = concat!("r_", stringify!($case));
                    pg.create_database(db).unwrap();
                    super::$case(pg.url_for(db)).await;
                    drop(pg);
                }
            )*
        }
    };
}

both_backends!(
    reference_installs_and_lists_with_its_schedule,
    broken_copy_is_refused_and_versions_in_force_stay,
    scheduled_versions_change_but_those_in_force_stay,
    determine_rpc_matches_the_cli_and_checks_the_permission,
);

/// 2026-01-15 12:00 JST: both reference versions are in force by then.
const NOW_MS: i64 = 1_768_446_000_000;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn reference() -> CatalogueFiles {
    read_files(&manifest().join("catalog")).unwrap()
}

fn tenant() -> TenantId {
    Ident::new("reference-city").unwrap()
}

async fn store_with_tenant(url: &str) -> Store {
    let store = Store::open(url).await.unwrap();
    store
        .create_tenant(
            &Tenant {
                id: tenant(),
                name: "参照市".into(),
            },
            NOW_MS,
        )
        .await
        .unwrap();
    store
}

/// A scheduled version `2026-04-01` extending 2025-04-01, with `body` as its
/// procedures file.
fn scheduled_version(body: &str) -> CatalogueFiles {
    let mut files = CatalogueFiles::new();
    files.insert(
        "2026-04-01/catalogue.toml".into(),
        "version = \"2026.04\"\neffective_from = \"2026-04-01\"\nextends = \"2025-04-01\"\n".into(),
    );
    files.insert("2026-04-01/procedures/new.toml".into(), body.into());
    files
}

const GOOD_PROCEDURE: &str = r#"
[[procedure]]
id = "test_new_procedure"
name = "試験用の手続"
area = "その他"
department = "shimin"

[[procedure.rule]]
events = ["move_in"]
when = "true"
reason = "試験"
"#;

// ---------------------------------------------------------------------------------
// Cases

async fn reference_installs_and_lists_with_its_schedule(url: String) {
    let store = store_with_tenant(&url).await;
    assert_eq!(store.catalogue_revision(&tenant()).await.unwrap(), 0);
    let files = reference();
    let outcome = store
        .install_catalogue_versions(&tenant(), &files, "admin01", NOW_MS)
        .await
        .unwrap();
    assert_eq!(outcome.installed, ["2024-10-01", "2025-04-01"]);
    assert!(outcome.unchanged.is_empty());

    let list = store
        .list_catalogue_versions(&tenant(), NOW_MS)
        .await
        .unwrap();
    assert_eq!(list, outcome.versions);
    let summary: Vec<_> = list
        .iter()
        .map(|v| {
            (
                v.name.as_str(),
                v.version.as_str(),
                v.effective_from.to_string(),
                v.effective_until.map(|d| d.to_string()),
                v.status,
                v.uploaded_by.as_str(),
                v.uploaded_at_ms,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "2024-10-01",
                "2024.10",
                "2024-10-01".to_owned(),
                Some("2025-03-31".to_owned()),
                VersionStatus::Superseded,
                "admin01",
                NOW_MS
            ),
            (
                "2025-04-01",
                "2025.04",
                "2025-04-01".to_owned(),
                None,
                VersionStatus::Active,
                "admin01",
                NOW_MS
            ),
        ]
    );
    // Seen from 2025-01-01, the second version is still scheduled.
    let earlier = store
        .list_catalogue_versions(&tenant(), 1_735_657_200_000)
        .await
        .unwrap();
    assert_eq!(
        earlier.iter().map(|v| v.status).collect::<Vec<_>>(),
        [VersionStatus::Active, VersionStatus::Scheduled]
    );

    // Files come back exactly as read, and together they load as the same set.
    let v1 = store
        .catalogue_version_files(&tenant(), "2024-10-01")
        .await
        .unwrap()
        .unwrap();
    assert!(v1.keys().all(|k| k.starts_with("2024-10-01/")));
    assert!(v1.contains_key("2024-10-01/procedures/02_jumin.toml"));
    let (revision, all) = store.catalogue_files(&tenant()).await.unwrap();
    assert_eq!(revision, 1);
    assert_eq!(all, files);
    let direct = CatalogueSet::load(&manifest().join("catalog")).unwrap();
    let stored = CatalogueSet::load_from_files(&all).unwrap();
    assert_eq!(direct.versions().len(), stored.versions().len());
    assert!(store
        .catalogue_version_files(&tenant(), "1999-01-01")
        .await
        .unwrap()
        .is_none());

    // Installing the same files again changes nothing, not even the revision.
    let again = store
        .install_catalogue_versions(&tenant(), &files, "admin02", NOW_MS + 1)
        .await
        .unwrap();
    assert!(again.installed.is_empty());
    assert_eq!(again.unchanged, ["2024-10-01", "2025-04-01"]);
    assert_eq!(store.catalogue_revision(&tenant()).await.unwrap(), 1);
    assert_eq!(again.versions, list);

    // Another tenant sees nothing of it.
    let other: TenantId = Ident::new("other-city").unwrap();
    assert!(store
        .list_catalogue_versions(&other, NOW_MS)
        .await
        .unwrap()
        .is_empty());
}

async fn broken_copy_is_refused_and_versions_in_force_stay(url: String) {
    let store = store_with_tenant(&url).await;
    store
        .install_catalogue_versions(&tenant(), &reference(), "admin01", NOW_MS)
        .await
        .unwrap();
    let before = store
        .list_catalogue_versions(&tenant(), NOW_MS)
        .await
        .unwrap();

    // The whole reference with one area misspelt and one rule that does not type-check.
    let mut broken = reference();
    let mut misspelt = false;
    let mut bad_rule = false;
    for (path, text) in broken.iter_mut() {
        if !misspelt && text.contains("area = \"国民健康保険\"") {
            *text = text.replacen("area = \"国民健康保険\"", "area = \"国民健康保健\"", 1);
            misspelt = true;
        } else if !bad_rule && path.contains("/procedures/") && text.contains("when = \"") {
            *text = text.replacen("when = \"", "when = \"1 + ", 1);
            bad_rule = true;
        }
    }
    assert!(misspelt && bad_rule);
    let err = store
        .install_catalogue_versions(&tenant(), &broken, "admin02", NOW_MS)
        .await
        .unwrap_err();
    let CatalogueInstallError::Invalid(errors) = err else {
        panic!("expected validation errors, got {err:?}");
    };
    let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        listed.iter().any(|e| e.contains("国民健康保健")),
        "{listed:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.field.as_deref().is_some_and(|f| f.ends_with(".when"))),
        "{listed:#?}"
    );
    assert!(errors.iter().all(|e| !e.file.is_empty()));

    // A broken new version: refused too, with its location.
    let err = store
        .install_catalogue_versions(
            &tenant(),
            &scheduled_version(&GOOD_PROCEDURE.replace("shimin", "no_such_department")),
            "admin02",
            NOW_MS,
        )
        .await
        .unwrap_err();
    let CatalogueInstallError::Invalid(errors) = err else {
        panic!("expected validation errors, got {err:?}");
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, "2026-04-01/procedures/new.toml");
    assert_eq!(errors[0].item.as_deref(), Some("test_new_procedure"));
    assert_eq!(errors[0].field.as_deref(), Some("department"));

    // Nothing changed: same versions, same files, same revision.
    assert_eq!(
        store
            .list_catalogue_versions(&tenant(), NOW_MS)
            .await
            .unwrap(),
        before
    );
    let (revision, files) = store.catalogue_files(&tenant()).await.unwrap();
    assert_eq!(revision, 1);
    assert_eq!(files, reference());
}

async fn scheduled_versions_change_but_those_in_force_stay(url: String) {
    let store = store_with_tenant(&url).await;
    store
        .install_catalogue_versions(&tenant(), &reference(), "admin01", NOW_MS)
        .await
        .unwrap();

    // A valid edit of a version in force is refused as such.
    let mut edited = reference();
    let key = "2025-04-01/procedures/kodomo_shien.toml";
    let text = edited
        .get(key)
        .unwrap()
        .replace("妊婦のための支援給付", "妊婦支援給付");
    edited.insert(key.into(), text);
    let err = store
        .install_catalogue_versions(&tenant(), &edited, "admin02", NOW_MS)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CatalogueInstallError::InForce(n) if n == "2025-04-01"),
        "{err:?}"
    );

    // A new version dated ahead is scheduled, may be replaced while scheduled…
    let outcome = store
        .install_catalogue_versions(
            &tenant(),
            &scheduled_version(GOOD_PROCEDURE),
            "admin02",
            NOW_MS,
        )
        .await
        .unwrap();
    assert_eq!(outcome.installed, ["2026-04-01"]);
    let statuses: Vec<_> = outcome.versions.iter().map(|v| v.status).collect();
    assert_eq!(
        statuses,
        [
            VersionStatus::Superseded,
            VersionStatus::Active,
            VersionStatus::Scheduled
        ]
    );
    assert_eq!(
        outcome.versions[1].effective_until.map(|d| d.to_string()),
        Some("2026-03-31".to_owned())
    );
    let replaced = store
        .install_catalogue_versions(
            &tenant(),
            &scheduled_version(&GOOD_PROCEDURE.replace("試験用の手続", "試験用の手続（改）")),
            "admin03",
            NOW_MS,
        )
        .await
        .unwrap();
    assert_eq!(replaced.installed, ["2026-04-01"]);
    assert_eq!(replaced.versions[2].uploaded_by, "admin03");
    let revision = store.catalogue_revision(&tenant()).await.unwrap();
    assert_eq!(revision, 3);

    // … and deleted; versions in force cannot be.
    assert!(matches!(
        store
            .delete_scheduled_catalogue_version(&tenant(), "2025-04-01", NOW_MS)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .delete_scheduled_catalogue_version(&tenant(), "nope", NOW_MS)
            .await,
        Err(StoreError::NotFound(_))
    ));
    store
        .delete_scheduled_catalogue_version(&tenant(), "2026-04-01", NOW_MS)
        .await
        .unwrap();
    let names: BTreeSet<String> = store
        .list_catalogue_versions(&tenant(), NOW_MS)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["2024-10-01".into(), "2025-04-01".into()])
    );
    assert_eq!(store.catalogue_revision(&tenant()).await.unwrap(), 4);
}

fn context(permissions: &[&str]) -> RpcContext {
    let device = Ident::new("counter-01").unwrap();
    RpcContext {
        tenant: tenant(),
        device: device.clone(),
        session: Some(StaffSession {
            session_id: "s1".into(),
            staff_id: "staff01".into(),
            device,
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        }),
        now_ms: NOW_MS,
    }
}

fn scenario_inputs() -> Vec<PathBuf> {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(manifest().join("tests/scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".input.json"))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty());
    inputs
}

async fn determine_rpc_matches_the_cli_and_checks_the_permission(url: String) {
    let store = store_with_tenant(&url).await;
    let mut dispatcher = Dispatcher::new();
    dispatcher.register(Arc::new(DetermineHandler::new(store.clone())));
    let allowed = context(&["procedure.determine", "resident.view"]);
    let input_of = |path: &Path| {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        ciborium::Value::serialized(&json).unwrap()
    };
    let first = scenario_inputs()[0].clone();

    // No catalogue stored yet.
    let err = dispatcher
        .dispatch(&allowed, METHOD, input_of(&first))
        .await
        .unwrap_err();
    assert_eq!(err.code, "no-catalogue");

    store
        .install_catalogue_versions(&tenant(), &reference(), "admin01", NOW_MS)
        .await
        .unwrap();
    for input in scenario_inputs() {
        let answer = dispatcher
            .dispatch(&allowed, METHOD, input_of(&input))
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", input.display()));
        let answer: serde_json::Value = answer.deserialized().unwrap();
        let direct = rules::determine_from_files(&manifest().join("catalog"), &input).unwrap();
        assert_eq!(answer, direct, "{}", input.display());
    }

    // Without the permission, or without a session.
    let err = dispatcher
        .dispatch(&context(&["resident.view"]), METHOD, input_of(&first))
        .await
        .unwrap_err();
    assert_eq!(err.code, "forbidden");
    let mut anonymous = allowed.clone();
    anonymous.session = None;
    let err = dispatcher
        .dispatch(&anonymous, METHOD, input_of(&first))
        .await
        .unwrap_err();
    assert_eq!(err.code, "unauthenticated");

    // Parameters that are not a determination input.
    let err = dispatcher
        .dispatch(&allowed, METHOD, ciborium::Value::Text("転入".into()))
        .await
        .unwrap_err();
    assert_eq!(err.code, "invalid-params");

    // A version installed afterwards (by another handle, as another instance or the
    // CLI would) is picked up: the new procedure appears for a 転入.
    let move_in = scenario_inputs()
        .into_iter()
        .find(|p| std::fs::read_to_string(p).unwrap().contains("\"move_in\""))
        .expect("a move_in scenario");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&move_in).unwrap()).unwrap();
    json["event"]["date"] = serde_json::Value::String("2026-04-02".into());
    let params = ciborium::Value::serialized(&json).unwrap();
    let before: serde_json::Value = dispatcher
        .dispatch(&allowed, METHOD, params.clone())
        .await
        .unwrap()
        .deserialized()
        .unwrap();
    assert!(!before.to_string().contains("test_new_procedure"));
    let other_handle = Store::open(&url).await.unwrap();
    other_handle
        .install_catalogue_versions(
            &tenant(),
            &scheduled_version(GOOD_PROCEDURE),
            "admin02",
            NOW_MS,
        )
        .await
        .unwrap();
    let after: serde_json::Value = dispatcher
        .dispatch(&allowed, METHOD, params)
        .await
        .unwrap()
        .deserialized()
        .unwrap();
    assert!(after.to_string().contains("test_new_procedure"), "{after}");
}

// ---------------------------------------------------------------------------------
// Diff (no store)

#[test]
fn diff_between_the_reference_versions_names_the_replaced_benefit() {
    let set = CatalogueSet::load(&manifest().join("catalog")).unwrap();
    let [old, new] = set.versions() else {
        panic!("two reference versions");
    };
    let d = rules::diff::diff(old, new);
    assert_eq!(
        d.procedures
            .removed
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["出産・子育て応援給付金"]
    );
    assert_eq!(
        d.procedures
            .added
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["妊婦のための支援給付"]
    );
    assert!(d.certificates.is_empty());
    let text = d.to_string();
    assert!(text.contains("出産・子育て応援給付金") && text.contains("妊婦のための支援給付"));

    assert!(rules::diff::diff(new, new).is_empty());

    // A changed field is named with its old and new value.
    let mut files = reference();
    let key = "2024-10-01/procedures/06_kodomo.toml";
    let text = files.get(key).unwrap().replace(
        "name = \"出産・子育て応援給付金\"",
        "name = \"出産・子育て応援給付金（改）\"",
    );
    files.insert(key.into(), text);
    let edited = CatalogueSet::load_from_files(&files).unwrap();
    let d = rules::diff::diff(old, &edited.versions()[0]);
    assert_eq!(d.procedures.changed.len(), 1, "{d}");
    let change = &d.procedures.changed[0];
    assert_eq!(change.id, "kosodate_ouen_kyufukin");
    assert_eq!(change.fields.len(), 1);
    assert_eq!(change.fields[0].field, "name");
    assert_eq!(change.fields[0].new, "出産・子育て応援給付金（改）");
    assert!(d
        .to_string()
        .contains("name: 出産・子育て応援給付金 → 出産・子育て応援給付金（改）"));
}

#[test]
fn load_from_files_reports_files_outside_the_layout() {
    let mut files = reference();
    files.insert("2024-10-01/notes.txt".into(), "memo".into());
    files.insert("stray.toml".into(), String::new());
    let errors = CatalogueSet::load_from_files(&files).unwrap_err();
    let named: BTreeSet<&str> = errors.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(
        named,
        BTreeSet::from(["2024-10-01/notes.txt", "stray.toml"])
    );
}
