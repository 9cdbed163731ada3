//! `kakanai-control-plane export` from the command line: a batch of the accepted
//! applications, nothing on a second run, `--again` rewrites a batch, `--form` limits
//! to one form, `--mapping` takes the city's own mapping, applications that cannot be
//! written in CP932 are named and exit 1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use kakanai_control_plane::applications::certificate::{CertificateItem, Relationship};
use kakanai_control_plane::applications::export::{ExportMapping, Manifest};
use kakanai_control_plane::applications::{
    self, Act, ApplicationState, CertificateRequest, Person,
};
use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::rules::{CatalogueSet, Date};
use kakanai_control_plane::store::{Store, Tenant};

const CLI: &str = env!("CARGO_BIN_EXE_kakanai-control-plane");
const NOW: i64 = 1_795_741_200_000;

fn city() -> TenantId {
    TenantId::new("city-a").unwrap()
}

/// Accepted certificate requests: one 住民票 (SHOMEI-JUMIN) and one 戸籍 (SHOMEI-KOSEKI)
/// form per requester name.
async fn accepted(store: &Store, names: &[&str]) {
    let set = CatalogueSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog")).unwrap();
    let cat = set.for_date(Date::new(2026, 11, 27).unwrap()).unwrap();
    for name in names {
        let v =
            applications::start_visit(store, &city(), "counter-1", "tanaka", "certificate", NOW)
                .await
                .unwrap();
        let person = Person {
            name: Some((*name).into()),
            ..Person::default()
        };
        let request = CertificateRequest {
            subject: person.clone(),
            requester: person,
            relationship: Relationship::Myself,
            purpose: "年金の手続".into(),
            destination: "年金事務所".into(),
            id_check: "運転免許証".into(),
            items: vec![
                CertificateItem {
                    certificate: "juminhyo".into(),
                    options: vec![],
                    copies: 1,
                    fee: 300,
                },
                CertificateItem {
                    certificate: "koseki_zenbu".into(),
                    options: vec![],
                    copies: 1,
                    fee: 450,
                },
            ],
            fee_total: 750,
        };
        let apps = applications::create_certificate_request(
            store,
            &city(),
            &v,
            &request,
            cat,
            "書無市",
            NOW,
        )
        .await
        .unwrap();
        for a in apps {
            let act = Act::staff_at("tanaka", "counter-1", NOW);
            applications::record_printed(store, &city(), &a.id, [3; 32], 1, &act)
                .await
                .unwrap();
            applications::accept_by_number(store, &city(), &a.number, &act)
                .await
                .unwrap();
        }
    }
}

fn export(url: &str, out: &Path, extra: &[&str]) -> Output {
    Command::new(CLI)
        .args(["export", "--database", url, "--tenant", "city-a", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn batches(out: &Path) -> Vec<String> {
    let mut b: Vec<String> = std::fs::read_dir(out)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    b.sort();
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cp.db").display());
    let store = Store::open(&url).await.unwrap();
    store
        .create_tenant(
            &Tenant {
                id: city(),
                name: "書無市".into(),
            },
            NOW,
        )
        .await
        .unwrap();
    accepted(&store, &["山田 太郎", "佐藤 花子"]).await;
    let out = dir.path().join("export");

    // --form: only the 戸籍 requests.
    let o = export(&url, &out, &["--form", "SHOMEI-KOSEKI"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let first = batches(&out);
    assert_eq!(first.len(), 1);
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(out.join(&first[0]).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest.totals.applications, 2);
    assert!(manifest.files.iter().all(|f| f.form == "SHOMEI-KOSEKI"));
    assert!(stdout(&o).contains(&first[0]), "{}", stdout(&o));
    assert!(!stdout(&o).contains("山田"), "the report names no one");

    // The rest, with the city's own mapping (UTF-8 with BOM).
    let mapping = dir.path().join("mapping.toml");
    std::fs::write(
        &mapping,
        ExportMapping::reference_toml()
            .replace("encoding = \"cp932\"", "encoding = \"utf-8\"")
            .replace("bom = false", "bom = true"),
    )
    .unwrap();
    let o = export(&url, &out, &["--mapping", mapping.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let second: Vec<String> = batches(&out)
        .into_iter()
        .filter(|b| !first.contains(b))
        .collect();
    assert_eq!(second.len(), 1);
    let csv = std::fs::read(out.join(&second[0]).join("SHOMEI-JUMIN.csv")).unwrap();
    assert!(
        csv.starts_with(b"\xEF\xBB\xBF"),
        "UTF-8 with BOM as configured"
    );
    let text = String::from_utf8(csv[3..].to_vec()).unwrap();
    assert!(text.contains("山田 太郎") && text.contains("佐藤 花子"));
    for a in store
        .applications_in_state(&city(), ApplicationState::Exported, None, 100)
        .await
        .unwrap()
    {
        assert!(a.export_batch.is_some());
    }
    assert!(store
        .applications_in_state(&city(), ApplicationState::Accepted, None, 100)
        .await
        .unwrap()
        .is_empty());

    // Nothing left: nothing written.
    let o = export(&url, &out, &[]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("nothing to export"), "{}", stdout(&o));
    assert_eq!(batches(&out).len(), 2);

    // --again rewrites the first batch in place.
    std::fs::remove_dir_all(out.join(&first[0])).unwrap();
    let o = export(&url, &out, &["--again", &first[0]]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join(&first[0]).join("SHOMEI-KOSEKI.csv").exists());
    assert_eq!(batches(&out).len(), 2);
    let o = export(&url, &out, &["--again", "19990101T000000-000000"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no export batch"));

    // A name CP932 cannot hold: held back, named by number and column, exit 1.
    accepted(&store, &["𠮷田 一郎"]).await;
    let o = export(&url, &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("held back") && stdout(&o).contains("対象者氏名"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("𠮷田"));
    assert_eq!(
        store
            .applications_in_state(&city(), ApplicationState::Accepted, None, 100)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_round_exports_into_the_tenants_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cp.db").display());
    let store = Store::open(&url).await.unwrap();
    store
        .create_tenant(
            &Tenant {
                id: city(),
                name: "書無市".into(),
            },
            NOW,
        )
        .await
        .unwrap();
    accepted(&store, &["山田 太郎"]).await;
    let config = dir.path().join("cp.toml");
    let out = dir.path().join("export");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"/tmp/k\"\ntenants = [\"city-a\"]\n[broker]\nhost = \"h\"\nport = 1883\n\
             [signing]\nkey_file = \"/k\"\n[export]\ndir = \"{}\"\nhours = \"08:30-17:15\"\n",
            out.display()
        ),
    )
    .unwrap();
    let schedule = applications::schedule::load(&config).unwrap().unwrap();
    // 10:00 JST is inside the opening hours; 07:00 is not.
    assert!(schedule.due(NOW, None));
    assert!(!schedule.due(NOW - 3 * 3_600_000, None));
    schedule.run_once(&store, &[city()], NOW).await;
    let written = batches(&out.join("city-a"));
    assert_eq!(written.len(), 1, "one batch in DIR/TENANT/");
    assert!(store
        .applications_in_state(&city(), ApplicationState::Accepted, None, 100)
        .await
        .unwrap()
        .is_empty());
    // The next round finds nothing and writes nothing.
    schedule.run_once(&store, &[city()], NOW + 900_000).await;
    assert_eq!(batches(&out.join("city-a")), written);
}
