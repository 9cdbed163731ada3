//! Administration (N6, N11): what the CLI and the admin UI call to manage staff,
//! groups and membership. Checking that the caller holds [`permissions::ADMIN_STAFF`]
//! and writing the audit record are the caller's (they know who and from where); these
//! functions check the data: login ids, the password policy, permissions against the
//! catalogue.

use std::collections::BTreeSet;
use std::fmt;

use super::{check_display_name, check_login_id, permissions, Secret, StaffError, StaffService};
use crate::model::TenantId;
use crate::store::{Group, NewStaff, StaffUpdate};

/// A staff account to create.
#[derive(Clone)]
pub struct NewAccount {
    /// Login id (see [`super::is_valid_name`]).
    pub login_id: String,
    /// Display name (personal data).
    pub display_name: String,
    /// The initial password, handed over by the administrator; must meet the policy
    /// and must be changed at first login.
    pub initial_password: Secret,
}

impl fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccount")
            .field("login_id", &self.login_id)
            .field("display_name", &"<redacted>")
            .field("initial_password", &self.initial_password)
            .finish()
    }
}

/// Checks a group's name and that every permission is in the catalogue.
pub fn check_group(group: &Group) -> Result<(), StaffError> {
    if !super::is_valid_name(&group.name) {
        return Err(StaffError::InvalidGroupName);
    }
    if let Some(p) = group.permissions.iter().find(|p| !permissions::is_known(p)) {
        return Err(StaffError::UnknownPermission(p.clone()));
    }
    Ok(())
}

impl StaffService {
    /// Creates an account with an initial password it must change at first login.
    pub async fn create_staff(
        &self,
        tenant: &TenantId,
        account: &NewAccount,
        now_ms: i64,
    ) -> Result<(), StaffError> {
        check_login_id(&account.login_id)?;
        check_display_name(&account.display_name)?;
        self.policy
            .password
            .check(&account.login_id, account.initial_password.expose())?;
        let phc = self.hash_blocking(&account.initial_password).await?;
        let new = NewStaff {
            login_id: account.login_id.clone(),
            display_name: account.display_name.clone(),
            password_hash: phc,
            must_change_password: true,
        };
        Ok(self.store.create_staff(tenant, &new, now_ms).await?)
    }

    /// Changes the display name.
    pub async fn rename_staff(
        &self,
        tenant: &TenantId,
        login_id: &str,
        display_name: &str,
        now_ms: i64,
    ) -> Result<(), StaffError> {
        check_display_name(display_name)?;
        let update = StaffUpdate {
            display_name: Some(display_name.to_owned()),
            must_change_password: None,
        };
        Ok(self
            .store
            .update_staff(tenant, login_id, &update, now_ms)
            .await?)
    }

    /// Disables an account (its sessions end in the same transaction; returns how
    /// many) or enables it again (returns 0).
    pub async fn set_disabled(
        &self,
        tenant: &TenantId,
        login_id: &str,
        disabled: bool,
        now_ms: i64,
    ) -> Result<u64, StaffError> {
        if disabled {
            Ok(self
                .store
                .disable_staff_and_end_sessions(tenant, login_id, now_ms)
                .await?)
        } else {
            self.store
                .set_staff_disabled(tenant, login_id, false, now_ms)
                .await?;
            Ok(0)
        }
    }

    /// Sets a new password chosen by an administrator (forgotten password): it must
    /// meet the policy and be changed at next login; the lock and the failure counter
    /// are cleared and every session of the account ends. Returns how many ended.
    pub async fn reset_password(
        &self,
        tenant: &TenantId,
        login_id: &str,
        new_password: &Secret,
        now_ms: i64,
    ) -> Result<u64, StaffError> {
        self.policy
            .password
            .check(login_id, new_password.expose())?;
        let phc = self.hash_blocking(new_password).await?;
        self.store
            .set_password_hash(tenant, login_id, &phc, true, now_ms)
            .await?;
        self.store.reset_failed_logins(tenant, login_id).await?;
        Ok(self.store.end_sessions_of(tenant, login_id, None).await?)
    }

    /// Lifts a lockout before it runs out.
    pub async fn unlock(&self, tenant: &TenantId, login_id: &str) -> Result<(), StaffError> {
        Ok(self.store.reset_failed_logins(tenant, login_id).await?)
    }

    /// Creates the group, or replaces the description and permissions of the existing
    /// one. Permissions must be in the catalogue.
    pub async fn put_group(&self, tenant: &TenantId, group: &Group) -> Result<(), StaffError> {
        check_group(group)?;
        let exists = self
            .store
            .list_groups(tenant)
            .await?
            .iter()
            .any(|g| g.name == group.name);
        if exists {
            Ok(self.store.update_group(tenant, group).await?)
        } else {
            Ok(self.store.create_group(tenant, group).await?)
        }
    }

    /// Deletes a group with its memberships.
    pub async fn delete_group(&self, tenant: &TenantId, name: &str) -> Result<(), StaffError> {
        Ok(self.store.delete_group(tenant, name).await?)
    }

    /// Puts a staff member in a group (idempotent).
    pub async fn add_member(
        &self,
        tenant: &TenantId,
        group: &str,
        login_id: &str,
    ) -> Result<(), StaffError> {
        Ok(self.store.add_group_member(tenant, group, login_id).await?)
    }

    /// Takes a staff member out of a group; `false` if they were not in it.
    pub async fn remove_member(
        &self,
        tenant: &TenantId,
        group: &str,
        login_id: &str,
    ) -> Result<bool, StaffError> {
        Ok(self
            .store
            .remove_group_member(tenant, group, login_id)
            .await?)
    }

    /// A staff member's current permissions (union over their groups).
    pub async fn permissions_of(
        &self,
        tenant: &TenantId,
        login_id: &str,
    ) -> Result<BTreeSet<String>, StaffError> {
        Ok(self.store.permissions_of(tenant, login_id).await?)
    }
}
