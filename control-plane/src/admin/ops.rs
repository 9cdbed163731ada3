//! Every administrative change to staff and groups, each applied **with its audit
//! entry in one transaction** ([`Store::apply_admin_changes`]): who (the
//! administrator's login id), what (`admin:staff.create`, …, with ids and groups but
//! never display names or passwords), from where (IP), and the outcome.
//!
//! [`AdminOps`] is independent of HTTP so that a command-line tool can make the same
//! audited changes (with `Actor::Admin` and `Place::Internal`, or `Actor::System`).
//! The checks are the staff module's: login ids and group names
//! ([`crate::staff::is_valid_name`]), display names, the password policy, permissions
//! against the catalogue.

use std::collections::BTreeSet;

use ring::rand::SystemRandom;
use serde_json::json;

use crate::model::{Actor, AuditRecord, Place, TenantId};
use crate::service::now_ms;
use crate::staff::admin::check_group;
use crate::staff::import::{ImportError, ImportReport};
use crate::staff::{password, Secret, StaffError, StaffPolicy, StaffService};
use crate::store::{AdminChange, AuditEntry, Group, NewStaff, Redacted, StaffChange, Store};

/// Who makes a change, and from where.
#[derive(Debug, Clone)]
pub struct Who {
    /// The tenant changed (the administrator's own).
    pub tenant: TenantId,
    /// The administrator (or the system, for scheduled jobs).
    pub actor: Actor,
    /// Their IP, or internal for a command-line tool.
    pub place: Place,
}

impl Who {
    fn record(&self, action: &str, detail: serde_json::Value) -> AuditRecord {
        AuditRecord {
            tenant: self.tenant.to_string(),
            at_ms: now_ms(),
            actor: self.actor.clone(),
            action: action.to_owned(),
            resident: None,
            place: self.place.clone(),
            outcome: "ok".into(),
            detail,
        }
    }

    fn is(&self, login_id: &str) -> bool {
        matches!(&self.actor, Actor::Admin(id) if id == login_id)
    }
}

/// Audited staff and group administration over a store.
#[derive(Debug, Clone)]
pub struct AdminOps {
    staff: StaffService,
}

impl AdminOps {
    /// Over `staff` (its store and password policy).
    pub fn new(staff: StaffService) -> Self {
        Self { staff }
    }

    /// The store it changes.
    pub fn store(&self) -> &Store {
        self.staff.store()
    }

    fn policy(&self) -> &StaffPolicy {
        self.staff.policy()
    }

    async fn hash(&self, password: &Secret) -> Result<String, StaffError> {
        let params = self.policy().hash;
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            password::hash_password(params, &SystemRandom::new(), password.expose())
        })
        .await
        .map_err(|_| StaffError::Internal("hash task"))?
        .map_err(|_| StaffError::Internal("hash"))
    }

    async fn apply(
        &self,
        who: &Who,
        changes: &[AdminChange],
        action: &str,
        detail: serde_json::Value,
    ) -> Result<AuditEntry, StaffError> {
        let record = who.record(action, detail);
        Ok(self
            .store()
            .apply_admin_changes(&who.tenant, changes, &record, record.at_ms)
            .await?)
    }

    /// Creates an account with an initial password it must change at first login, in
    /// `groups`.
    pub async fn create_staff(
        &self,
        who: &Who,
        login_id: &str,
        display_name: &str,
        initial_password: &Secret,
        groups: &BTreeSet<String>,
    ) -> Result<AuditEntry, StaffError> {
        self.create(who, login_id, display_name, initial_password, groups, true)
            .await
    }

    /// Creates an account whose password need not be changed at first login: for the
    /// demo and training environments only (`staff add --training`), where the
    /// accounts and their passwords are printed in the exercises. Audited with
    /// `must_change_password: false`.
    pub async fn create_training_staff(
        &self,
        who: &Who,
        login_id: &str,
        display_name: &str,
        password: &Secret,
        groups: &BTreeSet<String>,
    ) -> Result<AuditEntry, StaffError> {
        self.create(who, login_id, display_name, password, groups, false)
            .await
    }

    async fn create(
        &self,
        who: &Who,
        login_id: &str,
        display_name: &str,
        initial_password: &Secret,
        groups: &BTreeSet<String>,
        must_change_password: bool,
    ) -> Result<AuditEntry, StaffError> {
        crate::staff::check_login_id(login_id)?;
        crate::staff::check_display_name(display_name)?;
        self.policy()
            .password
            .check(login_id, initial_password.expose())?;
        let phc = self.hash(initial_password).await?;
        let changes = [
            AdminChange::Staff(StaffChange::CreateStaff(NewStaff {
                login_id: login_id.to_owned(),
                display_name: display_name.trim().to_owned(),
                password_hash: phc,
                must_change_password,
            })),
            AdminChange::Staff(StaffChange::SetGroups {
                login_id: login_id.to_owned(),
                groups: groups.clone(),
            }),
        ];
        let detail = if must_change_password {
            json!({ "staff": login_id, "groups": groups })
        } else {
            json!({ "staff": login_id, "groups": groups, "must_change_password": false })
        };
        self.apply(who, &changes, "admin:staff.create", detail)
            .await
    }

    /// Changes a display name.
    pub async fn rename_staff(
        &self,
        who: &Who,
        login_id: &str,
        display_name: &str,
    ) -> Result<AuditEntry, StaffError> {
        crate::staff::check_display_name(display_name)?;
        let changes = [AdminChange::Staff(StaffChange::SetDisplayName {
            login_id: login_id.to_owned(),
            display_name: Redacted(display_name.trim().to_owned()),
        })];
        self.apply(
            who,
            &changes,
            "admin:staff.rename",
            json!({ "staff": login_id }),
        )
        .await
    }

    /// Disables (ending every session) or enables an account. An administrator cannot
    /// disable themselves (the city would lose its last way in).
    pub async fn set_disabled(
        &self,
        who: &Who,
        login_id: &str,
        disabled: bool,
    ) -> Result<AuditEntry, StaffError> {
        if disabled && who.is(login_id) {
            return Err(StaffError::Disabled);
        }
        let changes = [AdminChange::Staff(StaffChange::SetDisabled {
            login_id: login_id.to_owned(),
            disabled,
        })];
        let action = if disabled {
            "admin:staff.disable"
        } else {
            "admin:staff.enable"
        };
        self.apply(who, &changes, action, json!({ "staff": login_id }))
            .await
    }

    /// Sets a password chosen by the administrator (to be changed at next login),
    /// lifts any lock and ends every session of the account.
    pub async fn reset_password(
        &self,
        who: &Who,
        login_id: &str,
        new_password: &Secret,
    ) -> Result<AuditEntry, StaffError> {
        self.policy()
            .password
            .check(login_id, new_password.expose())?;
        let phc = self.hash(new_password).await?;
        let changes = [AdminChange::SetPassword {
            login_id: login_id.to_owned(),
            password_hash: Redacted(phc),
            must_change_password: true,
        }];
        self.apply(
            who,
            &changes,
            "admin:staff.reset-password",
            json!({ "staff": login_id }),
        )
        .await
    }

    /// Lifts a lockout.
    pub async fn unlock(&self, who: &Who, login_id: &str) -> Result<AuditEntry, StaffError> {
        let changes = [AdminChange::Unlock {
            login_id: login_id.to_owned(),
        }];
        self.apply(
            who,
            &changes,
            "admin:staff.unlock",
            json!({ "staff": login_id }),
        )
        .await
    }

    /// Sets exactly the groups a staff member is in (a transfer, 異動: out of the old
    /// section's group, into the new one). Records the groups before and after.
    pub async fn set_groups(
        &self,
        who: &Who,
        login_id: &str,
        groups: &BTreeSet<String>,
    ) -> Result<AuditEntry, StaffError> {
        let before = self.store().groups_of(&who.tenant, login_id).await?;
        if self
            .store()
            .get_staff(&who.tenant, login_id)
            .await?
            .is_none()
        {
            return Err(StaffError::StaffNotFound);
        }
        let changes = [AdminChange::Staff(StaffChange::SetGroups {
            login_id: login_id.to_owned(),
            groups: groups.clone(),
        })];
        self.apply(
            who,
            &changes,
            "admin:staff.groups",
            json!({ "staff": login_id, "before": before, "after": groups }),
        )
        .await
    }

    /// Creates a group or replaces an existing one's description and permissions.
    pub async fn put_group(&self, who: &Who, group: &Group) -> Result<AuditEntry, StaffError> {
        check_group(group)?;
        let existing = self
            .store()
            .list_groups(&who.tenant)
            .await?
            .into_iter()
            .find(|g| g.name == group.name);
        let (change, action, before) = match existing {
            Some(old) => (
                StaffChange::UpdateGroup(group.clone()),
                "admin:group.update",
                Some(old.permissions),
            ),
            None => (
                StaffChange::CreateGroup(group.clone()),
                "admin:group.create",
                None,
            ),
        };
        self.apply(
            who,
            &[AdminChange::Staff(change)],
            action,
            json!({ "group": group.name, "before": before, "permissions": group.permissions }),
        )
        .await
    }

    /// Deletes a group with its memberships.
    pub async fn delete_group(&self, who: &Who, name: &str) -> Result<AuditEntry, StaffError> {
        let members = self.store().group_members(&who.tenant, name).await?;
        let changes = [AdminChange::DeleteGroup {
            name: name.to_owned(),
        }];
        self.apply(
            who,
            &changes,
            "admin:group.delete",
            json!({ "group": name, "members": members }),
        )
        .await
    }

    /// The staff import (人事異動, the fiscal-year switch): a dry run when `apply` is
    /// false; otherwise applied all or nothing and then audited (with the list of
    /// changes). Note: the import's own transaction and its audit entry are two
    /// transactions (the import is the staff module's); a failure between them leaves
    /// an applied import without its record, and is logged.
    pub async fn import(
        &self,
        who: &Who,
        text: &str,
        apply: bool,
    ) -> Result<ImportReport, ImportError> {
        if !apply {
            return self.staff.plan_import(&who.tenant, text).await;
        }
        let report = self.staff.apply_import(&who.tenant, text, now_ms()).await?;
        if report.applied {
            let changes: Vec<String> = report.changes.iter().map(ToString::to_string).collect();
            let record = who.record("admin:staff.import", json!({ "changes": changes }));
            if let Err(e) = self.store().append_audit(&record).await {
                tracing::error!(error = %e, tenant = %who.tenant, "staff import applied but not audited");
                return Err(StaffError::from(e).into());
            }
        }
        Ok(report)
    }
}
