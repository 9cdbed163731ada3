//! Staff administration and the TOML import for staff transfers and the fiscal-year
//! switch, against SQLite and a real PostgreSQL server: dry run changes nothing, apply
//! is all or nothing, problems are reported with their lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::BTreeSet;

use kakanai_control_plane::model::{Ident, TenantId};
use kakanai_control_plane::staff::admin::NewAccount;
use kakanai_control_plane::staff::import::{ImportChange, ImportError};
use kakanai_control_plane::staff::{HashParams, StaffError, StaffPolicy, StaffService};
use kakanai_control_plane::store::{Group, StaffChange, Store, StoreError, Tenant};

both_backends!("si_";
    dry_run_changes_nothing_and_apply_creates_everything,
    transfer_moves_renames_and_disables,
    bad_lines_are_reported_and_nothing_applied,
    a_failing_batch_changes_nothing,
    administration_checks_its_input,
);

const T0: i64 = 1_795_000_000_000;

fn city(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

fn perms(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn setup(url: &str) -> StaffService {
    let store = Store::open(url).await.unwrap();
    store
        .create_tenant(
            &Tenant {
                id: city("city-a"),
                name: "A市".into(),
            },
            T0,
        )
        .await
        .unwrap();
    StaffService::new(
        store,
        StaffPolicy {
            hash: HashParams::INSECURE_FOR_TESTS,
            ..StaffPolicy::default()
        },
    )
}

const APRIL: &str = r#"# 令和8年度 職員・グループ
version = 1

[[group]]
name = "shimin"
description = "市民課 窓口"
permissions = ["certificate.issue", "resident.view", "card.read"]

[[group]]
name = "kokuho"
description = "国保年金課"
permissions = ["resident.view", "resident.view:kokuho"]

[[staff]]
login_id = "tanaka"
display_name = "田中 花子"
groups = ["shimin"]

[[staff]]
login_id = "sato"
display_name = "佐藤 次郎"
groups = ["shimin", "kokuho"]

[[staff]]
login_id = "suzuki"
display_name = "鈴木 三郎"
groups = ["kokuho"]
"#;

async fn dry_run_changes_nothing_and_apply_creates_everything(url: String) {
    let svc = setup(&url).await;
    let a = city("city-a");
    let plan = svc.plan_import(&a, APRIL).await.unwrap();
    assert!(!plan.applied);
    assert!(plan.initial_passwords.is_empty());
    assert_eq!(plan.changes.len(), 5);
    assert_eq!(
        plan.changes[0],
        ImportChange::GroupCreated {
            name: "shimin".into(),
            permissions: perms(&["card.read", "certificate.issue", "resident.view"]),
        }
    );
    assert_eq!(
        plan.changes[3].to_string(),
        "職員追加 sato（グループ: kokuho, shimin）"
    );
    // Nothing changed.
    assert!(svc.store().list_groups(&a).await.unwrap().is_empty());
    assert!(svc.store().list_staff(&a).await.unwrap().is_empty());

    let done = svc.apply_import(&a, APRIL, T0).await.unwrap();
    assert!(done.applied);
    assert_eq!(done.changes, plan.changes);
    assert_eq!(done.initial_passwords.len(), 3);
    let staff = svc.store().list_staff(&a).await.unwrap();
    assert_eq!(staff.len(), 3);
    assert!(staff.iter().all(|s| s.must_change_password && !s.disabled));
    assert_eq!(
        svc.store().permissions_of(&a, "sato").await.unwrap(),
        perms(&[
            "card.read",
            "certificate.issue",
            "resident.view",
            "resident.view:kokuho"
        ])
    );
    // The generated initial passwords work (and must be changed).
    for ip in &done.initial_passwords {
        assert!(!format!("{done:?}").contains(ip.password.expose()));
        let ok = svc
            .login(&a, &id("dev-1"), &ip.login_id, &ip.password, T0 + 1)
            .await
            .unwrap();
        assert!(ok.must_change_password);
    }

    // The same file again: nothing to do.
    let again = svc.apply_import(&a, APRIL, T0 + 2).await.unwrap();
    assert!(again.changes.is_empty());
    assert!(!again.applied);
}

async fn transfer_moves_renames_and_disables(url: String) {
    let svc = setup(&url).await;
    let a = city("city-a");
    svc.apply_import(&a, APRIL, T0).await.unwrap();
    // suzuki has a session that the transfer must end.
    svc.reset_password(&a, "suzuki", &"haru-no-ido-2026".into(), T0)
        .await
        .unwrap();
    let ok = svc
        .login(
            &a,
            &id("dev-1"),
            "suzuki",
            &"haru-no-ido-2026".into(),
            T0 + 1,
        )
        .await
        .unwrap();

    // 人事異動: tanaka moves to kokuho and changes name; kokuho gains kaigo; sato is
    // not listed (retired) and disable_unlisted_staff is on; suzuki is disabled (leave).
    let october = r#"version = 1
disable_unlisted_staff = true

[[group]]
name = "kokuho"
description = "国保年金課"
permissions = ["resident.view", "resident.view:kokuho", "resident.view:kaigo"]

[[staff]]
login_id = "tanaka"
display_name = "山本 花子"
groups = ["kokuho"]

[[staff]]
login_id = "suzuki"
display_name = "鈴木 三郎"
groups = ["kokuho"]
disabled = true
"#;
    let plan = svc.plan_import(&a, october).await.unwrap();
    let lines: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "グループ変更 kokuho 権限追加: resident.view:kaigo",
            "表示名変更 tanaka",
            "所属変更 tanaka（加入: kokuho / 脱退: shimin）",
            "無効化 suzuki",
            "無効化 sato（ファイルに記載なし）",
        ]
    );
    // Personal data (the names) is not in the report.
    assert!(!format!("{plan:?}").contains("山本"));
    svc.apply_import(&a, october, T0 + 2).await.unwrap();

    let tanaka = svc.store().get_staff(&a, "tanaka").await.unwrap().unwrap();
    assert_eq!(tanaka.display_name, "山本 花子");
    assert_eq!(
        svc.store().groups_of(&a, "tanaka").await.unwrap(),
        ["kokuho"]
    );
    assert!(
        svc.store()
            .get_staff(&a, "sato")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    assert!(
        svc.store()
            .get_staff(&a, "suzuki")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    assert!(svc
        .resolve(&a, &id("dev-1"), ok.token.expose(), T0 + 3)
        .await
        .is_none());
    assert!(svc
        .store()
        .sessions_of(&a, "suzuki")
        .await
        .unwrap()
        .is_empty());
    // The group not listed (shimin) is left alone.
    assert!(svc
        .store()
        .list_groups(&a)
        .await
        .unwrap()
        .iter()
        .any(|g| g.name == "shimin"));

    // Back from leave.
    let back = october.replace("disabled = true", "disabled = false");
    let plan = svc.apply_import(&a, &back, T0 + 4).await.unwrap();
    assert_eq!(
        plan.changes,
        [ImportChange::StaffEnabled {
            login_id: "suzuki".into()
        }]
    );
}

async fn bad_lines_are_reported_and_nothing_applied(url: String) {
    let svc = setup(&url).await;
    let a = city("city-a");
    let bad = r#"version = 1

[[group]]
name = "shimin"
description = "市民課"
permissions = [
  "certificate.issue",
  "certificate.isue",
]

[[staff]]
login_id = "tanaka"
display_name = "田中 花子"
groups = ["shimin", "no-such-group"]

[[staff]]
login_id = "tanaka"
display_name = "田中 花子"
groups = []

[[staff]]
login_id = "bad id"
display_name = ""
groups = []
"#;
    for result in [
        svc.plan_import(&a, bad).await,
        svc.apply_import(&a, bad, T0).await,
    ] {
        let ImportError::Invalid(problems) = result.unwrap_err() else {
            panic!("expected problems");
        };
        let got: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "8行目: 定義されていない権限です: \"certificate.isue\"",
                "17行目: 職員 tanaka が二度記載されています",
                "22行目: ログインIDが正しくありません: \"bad id\"",
                "23行目: 職員 bad id の表示名は1文字以上100文字以内にしてください",
            ],
        );
    }
    // The undefined group is found once the file itself is clean.
    let undefined = "version = 1\n[[staff]]\nlogin_id = \"tanaka\"\ndisplay_name = \"田中\"\ngroups = [\"shimin\", \"no-such-group\"]\n";
    let ImportError::Invalid(problems) = svc.plan_import(&a, undefined).await.unwrap_err() else {
        panic!("expected problems");
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(
        problems[0].to_string(),
        "5行目: 定義されていないグループです: \"shimin\""
    );

    // Syntax, unknown keys and the version are reported with their line too.
    let cases = [
        ("version = 1\n[[group]\nname = \"x\"\n", 2),
        (
            "version = 1\n\n[[group]]\nname = \"x\"\npermission = []\n",
            5,
        ),
        ("version = 2\n", 1),
    ];
    for (text, line) in cases {
        let ImportError::Invalid(problems) = svc.plan_import(&a, text).await.unwrap_err() else {
            panic!("expected problems for {text:?}");
        };
        assert_eq!(problems[0].line, Some(line), "{text:?}: {problems:?}");
    }
    assert!(svc.store().list_groups(&a).await.unwrap().is_empty());
    assert!(svc.store().list_staff(&a).await.unwrap().is_empty());
}

async fn a_failing_batch_changes_nothing(url: String) {
    let svc = setup(&url).await;
    let a = city("city-a");
    let group = Group {
        name: "shimin".into(),
        description: "市民課".into(),
        permissions: perms(&["certificate.issue"]),
    };
    // The last change names a group that does not exist: the whole batch fails.
    let changes = [
        StaffChange::CreateGroup(group.clone()),
        StaffChange::SetGroups {
            login_id: "nobody".into(),
            groups: perms(&["shimin"]),
        },
    ];
    let e = svc
        .store()
        .apply_staff_changes(&a, &changes, T0)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    assert!(svc.store().list_groups(&a).await.unwrap().is_empty());

    // Through the import: a group created meanwhile by someone else makes the plan's
    // CreateGroup conflict only if it appears between plan and apply; simulate a
    // conflicting batch directly.
    svc.store().create_group(&a, &group).await.unwrap();
    let e = svc
        .store()
        .apply_staff_changes(
            &a,
            &[
                StaffChange::UpdateGroup(Group {
                    permissions: perms(&["resident.view"]),
                    ..group.clone()
                }),
                StaffChange::CreateGroup(group.clone()),
            ],
            T0,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    let groups = svc.store().list_groups(&a).await.unwrap();
    assert_eq!(groups[0].permissions, perms(&["certificate.issue"]));
}

async fn administration_checks_its_input(url: String) {
    let svc = setup(&url).await;
    let a = city("city-a");
    let account = |login: &str, pw: &str| NewAccount {
        login_id: login.into(),
        display_name: "田中 花子".into(),
        initial_password: pw.into(),
    };
    let e = svc
        .create_staff(&a, &account("tanaka", "short"), T0)
        .await
        .unwrap_err();
    assert!(matches!(e, StaffError::Policy(_)), "{e:?}");
    let e = svc
        .create_staff(&a, &account("田中", "long-enough-pw-1"), T0)
        .await
        .unwrap_err();
    assert!(matches!(e, StaffError::InvalidLoginId), "{e:?}");
    let e = svc
        .create_staff(&a, &account("-x", "long-enough-pw-1"), T0)
        .await
        .unwrap_err();
    assert!(matches!(e, StaffError::InvalidLoginId), "{e:?}");
    svc.create_staff(&a, &account("tanaka", "long-enough-pw-1"), T0)
        .await
        .unwrap();
    let e = svc
        .create_staff(&a, &account("tanaka", "long-enough-pw-1"), T0)
        .await
        .unwrap_err();
    assert!(matches!(e, StaffError::AlreadyExists(_)), "{e:?}");
    assert_eq!(e.to_string(), "すでに登録されています（ログインID）");
    let staff = svc.store().get_staff(&a, "tanaka").await.unwrap().unwrap();
    assert!(staff.must_change_password);
    let e = svc.set_disabled(&a, "nobody", true, T0).await.unwrap_err();
    assert!(matches!(e, StaffError::StaffNotFound), "{e:?}");
    svc.rename_staff(&a, "tanaka", "山本 花子", T0)
        .await
        .unwrap();
    let e = svc.rename_staff(&a, "tanaka", "  ", T0).await.unwrap_err();
    assert!(matches!(e, StaffError::InvalidDisplayName), "{e:?}");
    let e = svc
        .put_group(
            &a,
            &Group {
                name: "bad name".into(),
                description: String::new(),
                permissions: BTreeSet::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StaffError::InvalidGroupName), "{e:?}");
    svc.put_group(
        &a,
        &Group {
            name: "g".into(),
            description: String::new(),
            permissions: perms(&["admin.staff"]),
        },
    )
    .await
    .unwrap();
    svc.add_member(&a, "g", "tanaka").await.unwrap();
    svc.delete_group(&a, "g").await.unwrap();
    assert!(svc.permissions_of(&a, "tanaka").await.unwrap().is_empty());
}
