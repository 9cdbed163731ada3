//! Import of staff and groups from a TOML file, for staff transfers (人事異動) and the
//! fiscal-year switch (N11): the city prepares one file describing the groups and the
//! staff as they should be, looks at the dry run ([`StaffService::plan_import`]), then
//! applies it ([`StaffService::apply_import`]) in one transaction — every change or
//! none.
//!
//! # File format
//!
//! ```toml
//! # 職員・グループ設定ファイル（UTF-8）
//! version = 1
//! # true にすると、このファイルにない有効な職員を無効にする（退職・転出）。既定は false。
//! disable_unlisted_staff = false
//!
//! [[group]]
//! name = "shimin-madoguchi"          # 半角英数字と . _ -
//! description = "市民課 窓口"
//! permissions = ["certificate.issue", "resident.view", "card.read"]
//!
//! [[staff]]
//! login_id = "k-tanaka"              # 半角英数字と . _ -
//! display_name = "田中 花子"
//! groups = ["shimin-madoguchi"]      # 所属グループの全部（ここにないグループからは外れる）
//! # disabled = true                  # 省略時: 新規は有効、既存は変更しない
//! ```
//!
//! Meaning:
//! - a listed group is created, or its description and permissions are replaced;
//!   groups not listed are left alone (a staff entry may name them);
//! - a listed staff member is created if new — with a generated initial password,
//!   shown once in the report, that must be changed at first login — and their
//!   display name and groups become exactly those of the file; `disabled` disables
//!   (ending their sessions) or enables them;
//! - with `disable_unlisted_staff = true`, enabled accounts not in the file are
//!   disabled.
//!
//! Every problem is reported with its line (unknown permission, undefined group,
//! duplicate, invalid id, unknown key, syntax), all of them at once, and nothing is
//! applied while there is one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::{is_valid_name, password, permissions, Secret, StaffError, StaffService};
use crate::model::TenantId;
use crate::store::{Group, NewStaff, Redacted, StaffChange};

/// The format version this code reads.
pub const FORMAT_VERSION: i64 = 1;

/// Length of generated initial passwords (≈ 81 bits).
const INITIAL_PASSWORD_LEN: usize = 14;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    version: Spanned<i64>,
    #[serde(default)]
    disable_unlisted_staff: bool,
    #[serde(default)]
    group: Vec<GroupDoc>,
    #[serde(default)]
    staff: Vec<StaffDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDoc {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    permissions: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffDoc {
    login_id: Spanned<String>,
    display_name: Spanned<String>,
    groups: Vec<Spanned<String>>,
    #[serde(default)]
    disabled: Option<bool>,
}

/// One problem in an import file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProblem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong (Japanese; quotes ids and permission names, never passwords).
    pub message: String,
}

impl fmt::Display for ImportProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{l}行目: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why an import was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file has problems; nothing was changed.
    #[error("取り込みファイルに誤りがあります（{}件）: {}", .0.len(), join(.0))]
    Invalid(Vec<ImportProblem>),
    /// Reading the current state or applying failed; nothing was changed.
    #[error(transparent)]
    Staff(#[from] StaffError),
}

fn join(problems: &[ImportProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" / ")
}

/// One change an import makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportChange {
    /// A new group.
    GroupCreated {
        /// Name.
        name: String,
        /// Its permissions.
        permissions: BTreeSet<String>,
    },
    /// An existing group's permissions or description change.
    GroupChanged {
        /// Name.
        name: String,
        /// Permissions it gains.
        added: BTreeSet<String>,
        /// Permissions it loses.
        removed: BTreeSet<String>,
        /// Whether the description changes.
        description_changed: bool,
    },
    /// A new account (with a generated initial password).
    StaffCreated {
        /// Login id.
        login_id: String,
        /// Its groups.
        groups: BTreeSet<String>,
    },
    /// A display name changes (the names are not repeated: personal data).
    StaffRenamed {
        /// Login id.
        login_id: String,
    },
    /// Group memberships change.
    StaffGroupsChanged {
        /// Login id.
        login_id: String,
        /// Groups joined.
        added: BTreeSet<String>,
        /// Groups left.
        removed: BTreeSet<String>,
    },
    /// An account is disabled (its sessions end).
    StaffDisabled {
        /// Login id.
        login_id: String,
        /// Because the file does not list it (`disable_unlisted_staff`).
        unlisted: bool,
    },
    /// An account is enabled again.
    StaffEnabled {
        /// Login id.
        login_id: String,
    },
}

fn list(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "なし".to_owned()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for ImportChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GroupCreated { name, permissions } => {
                write!(f, "グループ追加 {name}（権限: {}）", list(permissions))
            }
            Self::GroupChanged {
                name,
                added,
                removed,
                description_changed,
            } => {
                write!(f, "グループ変更 {name}")?;
                if !added.is_empty() {
                    write!(f, " 権限追加: {}", list(added))?;
                }
                if !removed.is_empty() {
                    write!(f, " 権限削除: {}", list(removed))?;
                }
                if *description_changed {
                    f.write_str(" 説明変更")?;
                }
                Ok(())
            }
            Self::StaffCreated { login_id, groups } => {
                write!(f, "職員追加 {login_id}（グループ: {}）", list(groups))
            }
            Self::StaffRenamed { login_id } => write!(f, "表示名変更 {login_id}"),
            Self::StaffGroupsChanged {
                login_id,
                added,
                removed,
            } => write!(
                f,
                "所属変更 {login_id}（加入: {} / 脱退: {}）",
                list(added),
                list(removed)
            ),
            Self::StaffDisabled { login_id, unlisted } => {
                if *unlisted {
                    write!(f, "無効化 {login_id}（ファイルに記載なし）")
                } else {
                    write!(f, "無効化 {login_id}")
                }
            }
            Self::StaffEnabled { login_id } => write!(f, "有効化 {login_id}"),
        }
    }
}

/// A generated initial password for a new account, to hand over once.
#[derive(Debug, Clone)]
pub struct InitialPassword {
    /// Login id.
    pub login_id: String,
    /// The password (redacted in `Debug`).
    pub password: Secret,
}

/// What an import changes (dry run) or changed.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The changes, groups first, then staff, each in file order.
    pub changes: Vec<ImportChange>,
    /// Whether they were applied (false for a dry run, or when there was nothing to do).
    pub applied: bool,
    /// Initial passwords of the new accounts (empty for a dry run).
    pub initial_passwords: Vec<InitialPassword>,
}

/// A file read and checked on its own (without the store).
struct Parsed {
    disable_unlisted: bool,
    groups: Vec<(usize, Group)>,
    staff: Vec<(usize, StaffDoc)>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |prefix| prefix.matches('\n').count())
        + 1
}

fn parse(text: &str) -> Result<Parsed, Vec<ImportProblem>> {
    let doc: FileDoc = toml::from_str(text).map_err(|e| {
        vec![ImportProblem {
            line: e.span().map(|s| line_of(text, s.start)),
            // The parser's own message names keys and expected types; it does not
            // hold secrets (the file has none).
            message: format!("ファイルの形式が正しくありません: {}", e.message()),
        }]
    })?;
    let mut problems = Vec::new();
    let at = |s: &std::ops::Range<usize>| Some(line_of(text, s.start));
    if *doc.version.get_ref() != FORMAT_VERSION {
        problems.push(ImportProblem {
            line: at(&doc.version.span()),
            message: format!("version は {FORMAT_VERSION} にしてください"),
        });
    }
    let mut groups = Vec::new();
    let mut seen = BTreeSet::new();
    for g in doc.group {
        let line = line_of(text, g.name.span().start);
        let name = g.name.into_inner();
        if !is_valid_name(&name) {
            problems.push(ImportProblem {
                line: Some(line),
                message: format!("グループ名が正しくありません: {name:?}"),
            });
        }
        if !seen.insert(name.clone()) {
            problems.push(ImportProblem {
                line: Some(line),
                message: format!("グループ {name} が二度定義されています"),
            });
        }
        let mut perms = BTreeSet::new();
        for p in g.permissions {
            if !permissions::is_known(p.get_ref()) {
                problems.push(ImportProblem {
                    line: at(&p.span()),
                    message: format!("定義されていない権限です: {:?}", p.get_ref()),
                });
            }
            perms.insert(p.into_inner());
        }
        groups.push((
            line,
            Group {
                name,
                description: g.description,
                permissions: perms,
            },
        ));
    }
    let mut seen = BTreeSet::new();
    let mut staff = Vec::new();
    for s in doc.staff {
        let line = line_of(text, s.login_id.span().start);
        let id = s.login_id.get_ref();
        if !is_valid_name(id) {
            problems.push(ImportProblem {
                line: Some(line),
                message: format!("ログインIDが正しくありません: {id:?}"),
            });
        }
        if !seen.insert(id.clone()) {
            problems.push(ImportProblem {
                line: Some(line),
                message: format!("職員 {id} が二度記載されています"),
            });
        }
        if super::check_display_name(s.display_name.get_ref()).is_err() {
            problems.push(ImportProblem {
                line: at(&s.display_name.span()),
                message: format!("職員 {id} の表示名は1文字以上100文字以内にしてください"),
            });
        }
        staff.push((line, s));
    }
    if problems.is_empty() {
        Ok(Parsed {
            disable_unlisted: doc.disable_unlisted_staff,
            groups,
            staff,
        })
    } else {
        Err(problems)
    }
}

/// The plan: report lines and the store changes (new accounts still without a
/// password hash).
struct Plan {
    changes: Vec<ImportChange>,
    ops: Vec<StaffChange>,
    new_accounts: Vec<(String, String)>,
}

impl StaffService {
    /// Dry run: what [`Self::apply_import`] would change now. Changes nothing.
    pub async fn plan_import(
        &self,
        tenant: &TenantId,
        text: &str,
    ) -> Result<ImportReport, ImportError> {
        let plan = self.plan(tenant, text).await?;
        Ok(ImportReport {
            changes: plan.changes,
            applied: false,
            initial_passwords: Vec::new(),
        })
    }

    /// Applies the file in one transaction: every change or none. The plan is made
    /// again from the current state (not reused from an earlier dry run), so changes
    /// made in between are taken into account.
    pub async fn apply_import(
        &self,
        tenant: &TenantId,
        text: &str,
        now_ms: i64,
    ) -> Result<ImportReport, ImportError> {
        let mut plan = self.plan(tenant, text).await?;
        let mut initial_passwords = Vec::new();
        for (login_id, display_name) in plan.new_accounts.drain(..) {
            let pw = password::generate_password(&self.rng, INITIAL_PASSWORD_LEN)
                .map_err(|_| StaffError::Internal("random"))?;
            let phc = self.hash_blocking(&pw).await?;
            plan.ops.push(StaffChange::CreateStaff(NewStaff {
                login_id: login_id.clone(),
                display_name,
                password_hash: phc,
                must_change_password: true,
            }));
            initial_passwords.push(InitialPassword {
                login_id,
                password: pw,
            });
        }
        // Accounts must exist before memberships name them.
        plan.ops.sort_by_key(|op| match op {
            StaffChange::CreateGroup(_) | StaffChange::UpdateGroup(_) => 0,
            StaffChange::CreateStaff(_) => 1,
            StaffChange::SetDisplayName { .. } => 2,
            StaffChange::SetGroups { .. } => 3,
            StaffChange::SetDisabled { .. } => 4,
        });
        let applied = !plan.ops.is_empty();
        if applied {
            self.store
                .apply_staff_changes(tenant, &plan.ops, now_ms)
                .await
                .map_err(StaffError::from)?;
        }
        Ok(ImportReport {
            changes: plan.changes,
            applied,
            initial_passwords,
        })
    }

    async fn plan(&self, tenant: &TenantId, text: &str) -> Result<Plan, ImportError> {
        let parsed = parse(text).map_err(ImportError::Invalid)?;
        let current_groups: BTreeMap<String, Group> = self
            .store
            .list_groups(tenant)
            .await
            .map_err(StaffError::from)?
            .into_iter()
            .map(|g| (g.name.clone(), g))
            .collect();
        let current_staff: BTreeMap<String, crate::store::Staff> = self
            .store
            .list_staff(tenant)
            .await
            .map_err(StaffError::from)?
            .into_iter()
            .map(|s| (s.login_id.clone(), s))
            .collect();

        let mut problems = Vec::new();
        let mut plan = Plan {
            changes: Vec::new(),
            ops: Vec::new(),
            new_accounts: Vec::new(),
        };
        let file_groups: BTreeSet<&str> =
            parsed.groups.iter().map(|(_, g)| g.name.as_str()).collect();

        for (_, g) in &parsed.groups {
            match current_groups.get(&g.name) {
                None => {
                    plan.changes.push(ImportChange::GroupCreated {
                        name: g.name.clone(),
                        permissions: g.permissions.clone(),
                    });
                    plan.ops.push(StaffChange::CreateGroup(g.clone()));
                }
                Some(cur)
                    if cur.permissions != g.permissions || cur.description != g.description =>
                {
                    plan.changes.push(ImportChange::GroupChanged {
                        name: g.name.clone(),
                        added: g
                            .permissions
                            .difference(&cur.permissions)
                            .cloned()
                            .collect(),
                        removed: cur
                            .permissions
                            .difference(&g.permissions)
                            .cloned()
                            .collect(),
                        description_changed: cur.description != g.description,
                    });
                    plan.ops.push(StaffChange::UpdateGroup(g.clone()));
                }
                Some(_) => {}
            }
        }

        let mut listed = BTreeSet::new();
        for (_, s) in &parsed.staff {
            let login_id = s.login_id.get_ref().clone();
            listed.insert(login_id.clone());
            let mut groups = BTreeSet::new();
            for g in &s.groups {
                let name = g.get_ref();
                if !file_groups.contains(name.as_str()) && !current_groups.contains_key(name) {
                    problems.push(ImportProblem {
                        line: Some(line_of(text, g.span().start)),
                        message: format!("定義されていないグループです: {name:?}"),
                    });
                }
                groups.insert(name.clone());
            }
            let display_name = s.display_name.get_ref().clone();
            match current_staff.get(&login_id) {
                None => {
                    plan.changes.push(ImportChange::StaffCreated {
                        login_id: login_id.clone(),
                        groups: groups.clone(),
                    });
                    plan.new_accounts.push((login_id.clone(), display_name));
                    if !groups.is_empty() {
                        plan.ops.push(StaffChange::SetGroups {
                            login_id: login_id.clone(),
                            groups,
                        });
                    }
                    if s.disabled == Some(true) {
                        plan.changes.push(ImportChange::StaffDisabled {
                            login_id: login_id.clone(),
                            unlisted: false,
                        });
                        plan.ops.push(StaffChange::SetDisabled {
                            login_id,
                            disabled: true,
                        });
                    }
                }
                Some(cur) => {
                    if cur.display_name != display_name {
                        plan.changes.push(ImportChange::StaffRenamed {
                            login_id: login_id.clone(),
                        });
                        plan.ops.push(StaffChange::SetDisplayName {
                            login_id: login_id.clone(),
                            display_name: Redacted(display_name),
                        });
                    }
                    let cur_groups: BTreeSet<String> = self
                        .store
                        .groups_of(tenant, &login_id)
                        .await
                        .map_err(StaffError::from)?
                        .into_iter()
                        .collect();
                    if cur_groups != groups {
                        plan.changes.push(ImportChange::StaffGroupsChanged {
                            login_id: login_id.clone(),
                            added: groups.difference(&cur_groups).cloned().collect(),
                            removed: cur_groups.difference(&groups).cloned().collect(),
                        });
                        plan.ops.push(StaffChange::SetGroups {
                            login_id: login_id.clone(),
                            groups,
                        });
                    }
                    match s.disabled {
                        Some(true) if !cur.disabled => {
                            plan.changes.push(ImportChange::StaffDisabled {
                                login_id: login_id.clone(),
                                unlisted: false,
                            });
                            plan.ops.push(StaffChange::SetDisabled {
                                login_id,
                                disabled: true,
                            });
                        }
                        Some(false) if cur.disabled => {
                            plan.changes.push(ImportChange::StaffEnabled {
                                login_id: login_id.clone(),
                            });
                            plan.ops.push(StaffChange::SetDisabled {
                                login_id,
                                disabled: false,
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        if parsed.disable_unlisted {
            for (login_id, cur) in &current_staff {
                if !cur.disabled && !listed.contains(login_id) {
                    plan.changes.push(ImportChange::StaffDisabled {
                        login_id: login_id.clone(),
                        unlisted: true,
                    });
                    plan.ops.push(StaffChange::SetDisabled {
                        login_id: login_id.clone(),
                        disabled: true,
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok(plan)
        } else {
            problems.sort_by_key(|p| p.line);
            Err(ImportError::Invalid(problems))
        }
    }
}
