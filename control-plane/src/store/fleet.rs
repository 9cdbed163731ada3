//! The fleet registry (devices and their Ed25519 keys, presence), ingest
//! de-duplication by message id, and the replay-window state per sender key.

use kakanai_protocol::keys::{KeyId, VerifyingKey};

use super::backend::{check_text, classify, to_i64, to_u64, with_pool, Backend, Cols};
use super::{
    Device, DeviceKey, DeviceStatus, KeyStatus, NewDevice, PresenceUpdate, Result, Store,
    StoreError,
};
use crate::model::{Ident, TenantId};

const DEVICE_COLUMNS: &str = "tenant, id, counter_name, location, status, firmware, \
     last_seen_ms, boot_counter, online, enrolled_at_ms";
const KEY_COLUMNS: &str = "device, kid, public_key, status, added_at_ms";

impl Store {
    /// Registers a device with its first key, status [`DeviceStatus::Enrolled`].
    /// [`StoreError::Conflict`] if the device id or the kid is taken in this tenant;
    /// [`StoreError::NotFound`] if the tenant does not exist.
    pub async fn register_device(
        &self,
        tenant: &TenantId,
        device: &NewDevice,
        now_ms: i64,
    ) -> Result<()> {
        check_text("counter name", &device.counter_name)?;
        check_text("location", &device.location)?;
        if let Some(f) = &device.firmware {
            check_text("firmware version", f)?;
        }
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO devices (tenant, id, counter_name, location, status, firmware, \
                 enrolled_at_ms) VALUES ($1, $2, $3, $4, 'enrolled', $5, $6)",
            )
            .bind(tenant.as_str())
            .bind(device.id.as_str())
            .bind(&device.counter_name)
            .bind(&device.location)
            .bind(device.firmware.as_deref())
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "device", "tenant"))?;
            sqlx::query(
                "INSERT INTO device_keys (tenant, kid, device, public_key, status, added_at_ms) \
                 VALUES ($1, $2, $3, $4, 'active', $5)",
            )
            .bind(tenant.as_str())
            .bind(device.kid.as_bytes())
            .bind(device.id.as_str())
            .bind(&device.public_key.as_bytes()[..])
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "device key", "device"))?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The device with its keys.
    pub async fn get_device(&self, tenant: &TenantId, device: &Ident) -> Result<Option<Device>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant = $1 AND id = $2");
            let Some(row) = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(device.as_str())
                .fetch_optional(pool)
                .await?
            else {
                return Ok(None);
            };
            let sql = format!(
                "SELECT {KEY_COLUMNS} FROM device_keys WHERE tenant = $1 AND device = $2 \
                 ORDER BY added_at_ms, kid"
            );
            let keys = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(device.as_str())
                .fetch_all(pool)
                .await?;
            let mut device = device_from_row(&row)?;
            for k in &keys {
                device.keys.push(key_from_row(k)?.1);
            }
            Ok(Some(device))
        })
    }

    /// Every device of the tenant, by id, with their keys.
    pub async fn list_devices(&self, tenant: &TenantId) -> Result<Vec<Device>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant = $1 ORDER BY id");
            let rows = sqlx::query(&sql).bind(tenant.as_str()).fetch_all(pool).await?;
            let sql = format!(
                "SELECT {KEY_COLUMNS} FROM device_keys WHERE tenant = $1 \
                 ORDER BY device, added_at_ms, kid"
            );
            let keys = sqlx::query(&sql).bind(tenant.as_str()).fetch_all(pool).await?;
            let mut devices = rows.iter().map(device_from_row).collect::<Result<Vec<_>>>()?;
            for k in &keys {
                let (owner, key) = key_from_row(k)?;
                // Both lists are in the same id order, but a device registered between
                // the two queries may own keys with no device row here: skip those.
                if let Ok(i) = devices.binary_search_by(|d| d.id.as_str().cmp(&owner)) {
                    devices[i].keys.push(key);
                }
            }
            Ok(devices)
        })
    }

    /// Applies a presence report. Returns `false` (and changes nothing) when the
    /// report is older than the last one applied (MQTT may deliver out of order).
    /// The first online report moves an enrolled device to active; a revoked device
    /// stays revoked. [`StoreError::NotFound`] if there is no such device.
    pub async fn update_presence(
        &self,
        tenant: &TenantId,
        device: &Ident,
        presence: &PresenceUpdate,
    ) -> Result<bool> {
        if let Some(f) = &presence.firmware {
            check_text("firmware version", f)?;
        }
        let boot = to_i64(presence.boot_counter, "boot counter")?;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE devices SET online = $3, boot_counter = $4, last_seen_ms = $5, \
                 firmware = COALESCE($6, firmware), \
                 status = CASE WHEN status = 'enrolled' AND $3 THEN 'active' ELSE status END \
                 WHERE tenant = $1 AND id = $2 AND (last_seen_ms IS NULL OR last_seen_ms <= $5)",
            )
            .bind(tenant.as_str())
            .bind(device.as_str())
            .bind(presence.online)
            .bind(boot)
            .bind(presence.seen_at_ms)
            .bind(presence.firmware.as_deref())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                let exists = sqlx::query("SELECT 1 FROM devices WHERE tenant = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(device.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !exists {
                    return Err(StoreError::NotFound("device"));
                }
            }
            tx.commit().await?;
            Ok(updated > 0)
        })
    }

    /// Revokes a device and every key of it, for good. Idempotent.
    pub async fn revoke_device(
        &self,
        tenant: &TenantId,
        device: &Ident,
        now_ms: i64,
    ) -> Result<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE devices SET status = 'revoked', online = $3, \
                 revoked_at_ms = COALESCE(revoked_at_ms, $4) WHERE tenant = $1 AND id = $2",
            )
            .bind(tenant.as_str())
            .bind(device.as_str())
            .bind(false)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound("device"));
            }
            sqlx::query(
                "UPDATE device_keys SET status = 'revoked', revoked_at_ms = $3 \
                 WHERE tenant = $1 AND device = $2 AND status = 'active'",
            )
            .bind(tenant.as_str())
            .bind(device.as_str())
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Adds an active key to a device (alongside its other keys).
    /// [`StoreError::Conflict`] if the kid is taken in this tenant or the device is
    /// revoked; [`StoreError::NotFound`] if there is no such device.
    pub async fn add_device_key(
        &self,
        tenant: &TenantId,
        device: &Ident,
        kid: &KeyId,
        key: &VerifyingKey,
        now_ms: i64,
    ) -> Result<()> {
        self.insert_key(tenant, device, kid, key, now_ms, false)
            .await
    }

    /// Adds an active key and revokes every other key of the device, in one
    /// transaction (errors as [`Store::add_device_key`]).
    pub async fn rotate_device_key(
        &self,
        tenant: &TenantId,
        device: &Ident,
        kid: &KeyId,
        key: &VerifyingKey,
        now_ms: i64,
    ) -> Result<()> {
        self.insert_key(tenant, device, kid, key, now_ms, true)
            .await
    }

    async fn insert_key(
        &self,
        tenant: &TenantId,
        device: &Ident,
        kid: &KeyId,
        key: &VerifyingKey,
        now_ms: i64,
        revoke_others: bool,
    ) -> Result<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // Inserting through a SELECT of the device refuses a missing or revoked
            // device in the same statement.
            let inserted = sqlx::query(
                "INSERT INTO device_keys (tenant, kid, device, public_key, status, added_at_ms) \
                 SELECT tenant, $3, id, $4, 'active', $5 FROM devices \
                 WHERE tenant = $1 AND id = $2 AND status <> 'revoked'",
            )
            .bind(tenant.as_str())
            .bind(device.as_str())
            .bind(kid.as_bytes())
            .bind(&key.as_bytes()[..])
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "device key", "device"))?
            .rows_affected();
            if inserted == 0 {
                let exists = sqlx::query("SELECT 1 FROM devices WHERE tenant = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(device.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                return Err(if exists {
                    StoreError::Conflict("device is revoked")
                } else {
                    StoreError::NotFound("device")
                });
            }
            if revoke_others {
                sqlx::query(
                    "UPDATE device_keys SET status = 'revoked', revoked_at_ms = $4 \
                     WHERE tenant = $1 AND device = $2 AND kid <> $3 AND status = 'active'",
                )
                .bind(tenant.as_str())
                .bind(device.as_str())
                .bind(kid.as_bytes())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Revokes one key of a device. Idempotent; [`StoreError::NotFound`] if the device
    /// has no such key.
    pub async fn revoke_device_key(
        &self,
        tenant: &TenantId,
        device: &Ident,
        kid: &KeyId,
        now_ms: i64,
    ) -> Result<()> {
        with_pool!(self, pool => {
            let updated = sqlx::query(
                "UPDATE device_keys SET status = 'revoked', \
                 revoked_at_ms = COALESCE(revoked_at_ms, $4) \
                 WHERE tenant = $1 AND device = $2 AND kid = $3",
            )
            .bind(tenant.as_str())
            .bind(device.as_str())
            .bind(kid.as_bytes())
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound("device key"));
            }
            Ok(())
        })
    }

    /// The public key to verify a message from `device` signed with `kid`: only an
    /// active key of that device, in that tenant, while the device is not revoked.
    pub async fn key_for(
        &self,
        tenant: &TenantId,
        device: &Ident,
        kid: &KeyId,
    ) -> Result<Option<VerifyingKey>> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT k.public_key FROM device_keys k \
                 JOIN devices d ON d.tenant = k.tenant AND d.id = k.device \
                 WHERE k.tenant = $1 AND k.device = $2 AND k.kid = $3 \
                 AND k.status = 'active' AND d.status <> 'revoked'",
            )
            .bind(tenant.as_str())
            .bind(device.as_str())
            .bind(kid.as_bytes())
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                VerifyingKey::from_bytes(&r.bytes("public_key")?)
                    .map_err(|_| StoreError::Corrupt("device public key"))
            })
            .transpose()
        })
    }

    /// Records that message `message_id` from `device` is being acted on: `true` the
    /// first time, `false` for a duplicate. The primary key makes this atomic across
    /// connections and control-plane instances: of racing callers exactly one sees
    /// `true`.
    pub async fn record_message(
        &self,
        tenant: &TenantId,
        device: &Ident,
        message_id: [u8; 16],
        received_at_ms: i64,
    ) -> Result<bool> {
        with_pool!(self, pool => {
            let inserted = sqlx::query(
                "INSERT INTO ingest_messages (tenant, device, message_id, received_at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(device.as_str())
            .bind(&message_id[..])
            .bind(received_at_ms)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(inserted == 1)
        })
    }

    /// Forgets message ids received before `before_ms` (all tenants), so the table
    /// stays the size of the de-duplication horizon. Returns how many were removed.
    /// Only safe for ids older than any message that can still arrive: messages carry
    /// an expiry and the replay window refuses old sequence numbers.
    pub async fn prune_messages(&self, before_ms: i64) -> Result<u64> {
        with_pool!(self, pool => {
            Ok(sqlx::query("DELETE FROM ingest_messages WHERE received_at_ms < $1")
                .bind(before_ms)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }

    /// The saved replay-window state of sender key `kid`, if any.
    pub async fn load_replay_window(
        &self,
        tenant: &TenantId,
        kid: &KeyId,
    ) -> Result<Option<Vec<u8>>> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT state FROM replay_windows WHERE tenant = $1 AND kid = $2")
                .bind(tenant.as_str())
                .bind(kid.as_bytes())
                .fetch_optional(pool)
                .await?;
            row.map(|r| r.bytes("state")).transpose()
        })
    }

    /// Saves the replay-window state of sender key `kid` (replacing the previous one).
    /// Last writer wins: with several instances the window is a first line of defence,
    /// and [`Store::record_message`] is the one that holds across instances.
    pub async fn save_replay_window(
        &self,
        tenant: &TenantId,
        kid: &KeyId,
        state: &[u8],
        now_ms: i64,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO replay_windows (tenant, kid, state, updated_at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, kid) \
                 DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(tenant.as_str())
            .bind(kid.as_bytes())
            .bind(state)
            .bind(now_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}

fn device_from_row(r: &impl Cols) -> Result<Device> {
    let ident = |col: &str, what: &'static str| -> Result<Ident> {
        Ident::new(&r.text(col)?).map_err(|_| StoreError::Corrupt(what))
    };
    Ok(Device {
        tenant: ident("tenant", "tenant id")?,
        id: ident("id", "device id")?,
        counter_name: r.text("counter_name")?,
        location: r.text("location")?,
        status: DeviceStatus::parse(&r.text("status")?)
            .ok_or(StoreError::Corrupt("device status"))?,
        firmware: r.opt_text("firmware")?,
        last_seen_ms: r.opt_int("last_seen_ms")?,
        boot_counter: to_u64(r.int("boot_counter")?, "boot counter")?,
        online: r.flag("online")?,
        enrolled_at_ms: r.int("enrolled_at_ms")?,
        keys: Vec::new(),
    })
}

/// A key row and the device owning it.
fn key_from_row(r: &impl Cols) -> Result<(String, DeviceKey)> {
    let key = DeviceKey {
        kid: KeyId::new(r.bytes("kid")?).map_err(|_| StoreError::Corrupt("key id"))?,
        public_key: VerifyingKey::from_bytes(&r.bytes("public_key")?)
            .map_err(|_| StoreError::Corrupt("device public key"))?,
        status: KeyStatus::parse(&r.text("status")?).ok_or(StoreError::Corrupt("key status"))?,
        added_at_ms: r.int("added_at_ms")?,
    };
    Ok((r.text("device")?, key))
}
