//! The fleet registry (devices and their Ed25519 keys, presence), ingest
//! de-duplication by message id, and the replay-window state per sender key.

use std::collections::{HashMap, HashSet};

use kakanai_protocol::keys::{KeyId, VerifyingKey};

use super::audit::{
    insert_audit_rows, lock_audit_head, store_audit_head, values_list, Head, PreparedAudit,
};
use super::backend::{check_text, classify, to_i64, to_u64, with_pool, Backend, Cols};
use super::{
    Device, DeviceKey, DeviceStatus, KeyStatus, NewDevice, PresenceUpdate, Result, Store,
    StoreError,
};
use crate::model::{AuditRecord, Ident, TenantId};

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

/// Rows per multi-row `INSERT` into `ingest_messages` or `replay_windows` (4
/// parameters each; small for the reason given at `AUDIT_ROWS_PER_INSERT`).
const MESSAGE_ROWS_PER_INSERT: usize = 64;

impl Store {
    /// Records a batch of verified messages in one write transaction (group commit:
    /// one durable write for many messages instead of several each), and returns
    /// per message `Ok(true)` when it is new (and its audit entry was appended),
    /// `Ok(false)` for a duplicate (nothing appended), or the error that refused it
    /// alone ([`StoreError::Invalid`] for an audit record that would not read back
    /// identical, or whose tenant is not the message's).
    ///
    /// `messages`, in arrival order: tenant, device, message id to de-duplicate by as
    /// [`Store::record_message`] does (`None`: nothing to de-duplicate, the entry is an
    /// audit append alone), and the audit record to append if the message is new.
    /// Two copies of one id in a batch: the first is new, the second a duplicate.
    /// `windows`: replay-window states (tenant, kid, state) saved as
    /// [`Store::save_replay_window`] does; for a kid given twice the last one stands.
    ///
    /// All or nothing: an `Err` (database failure, unknown tenant) records nothing,
    /// and the caller may try the messages again one by one to find the one at
    /// fault. Locks are taken in one order (the tenants' audit heads by tenant, then
    /// the message ids by key), so batches of several instances sharing PostgreSQL
    /// wait for each other instead of deadlocking.
    #[allow(clippy::type_complexity)] // the tuples keep this module's types private
    pub async fn record_ingest(
        &self,
        messages: &[(TenantId, Ident, Option<[u8; 16]>, Option<AuditRecord>)],
        windows: &[(TenantId, KeyId, Vec<u8>)],
        now_ms: i64,
    ) -> Result<Vec<Result<bool>>> {
        // Checked before the transaction, so a bad record is refused alone.
        let prepared: Vec<Result<Option<PreparedAudit<'_>>>> = messages
            .iter()
            .map(|(tenant, _, _, audit)| match audit {
                Some(a) if a.tenant != tenant.as_str() => {
                    Err(StoreError::Invalid("audit record of another tenant"))
                }
                Some(a) => PreparedAudit::new(a).map(Some),
                None => Ok(None),
            })
            .collect();
        let mut tenants: Vec<&str> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok().and_then(Option::as_ref))
            .map(PreparedAudit::tenant)
            .collect();
        tenants.sort_unstable();
        tenants.dedup();
        // The last state per kid, one row each (PostgreSQL refuses a statement that
        // updates one row twice).
        let mut last_window: HashMap<(&str, &[u8]), &[u8]> = HashMap::new();
        for (tenant, kid, state) in windows {
            last_window.insert((tenant.as_str(), kid.as_bytes()), state);
        }
        let mut last_window: Vec<_> = last_window.into_iter().collect();
        last_window.sort_unstable();
        // Which messages go to the de-duplication insert, in key order: concurrent
        // batches (instances sharing PostgreSQL) then take the index entries in the
        // same order, so they wait for each other instead of deadlocking. Whether a
        // message is new is decided below, in arrival order.
        let mut keyed: Vec<(&str, &str, &[u8])> = messages
            .iter()
            .zip(&prepared)
            .filter(|(_, p)| p.is_ok())
            .filter_map(|((tenant, device, id, _), _)| {
                id.as_ref()
                    .map(|id| (tenant.as_str(), device.as_str(), &id[..]))
            })
            .collect();
        keyed.sort_unstable();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut heads = Vec::with_capacity(tenants.len());
            for t in &tenants {
                let head = lock_audit_head!(pool, tx, *t);
                heads.push((*t, head));
            }
            for chunk in last_window.chunks(MESSAGE_ROWS_PER_INSERT) {
                let mut sql = String::from(
                    "INSERT INTO replay_windows (tenant, kid, state, updated_at_ms) VALUES ",
                );
                values_list(&mut sql, chunk.len(), 4);
                sql.push_str(
                    " ON CONFLICT (tenant, kid) \
                     DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
                );
                let mut q = sqlx::query(&sql);
                for ((tenant, kid), state) in chunk {
                    q = q.bind(*tenant).bind(*kid).bind(*state).bind(now_ms);
                }
                q.execute(&mut *tx).await?;
            }
            let mut inserted: HashSet<(String, String, Vec<u8>)> = HashSet::new();
            for chunk in keyed.chunks(MESSAGE_ROWS_PER_INSERT) {
                let mut sql = String::from(
                    "INSERT INTO ingest_messages (tenant, device, message_id, received_at_ms) VALUES ",
                );
                values_list(&mut sql, chunk.len(), 4);
                sql.push_str(" ON CONFLICT DO NOTHING RETURNING tenant, device, message_id");
                let mut q = sqlx::query(&sql);
                for (tenant, device, id) in chunk {
                    q = q.bind(*tenant).bind(*device).bind(*id).bind(now_ms);
                }
                for row in q.fetch_all(&mut *tx).await? {
                    inserted.insert((row.text("tenant")?, row.text("device")?, row.bytes("message_id")?));
                }
            }
            let mut results = Vec::with_capacity(messages.len());
            let mut rows = Vec::new();
            for ((tenant, device, id, audit), prepared) in messages.iter().zip(prepared) {
                let prepared = match prepared {
                    Ok(p) => p,
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                };
                // Taken out of the set: a second copy in this batch is a duplicate.
                let new = id.as_ref().is_none_or(|id| {
                    inserted.remove(&(tenant.to_string(), device.to_string(), id.to_vec()))
                });
                if let (true, Some(p), Some(a)) = (new, prepared, audit) {
                    let Some((_, head)) = heads.iter_mut().find(|(t, _)| *t == a.tenant) else {
                        return Err(StoreError::NotFound("tenant"));
                    };
                    let row = p.chain(head.seq + 1, &head.hash)?;
                    *head = Head { seq: row.seq, hash: row.hash };
                    rows.push((a.tenant.as_str(), a.at_ms, row));
                }
                results.push(Ok(new));
            }
            insert_audit_rows!(tx, &rows);
            for (tenant, head) in &heads {
                store_audit_head!(tx, *tenant, head);
            }
            tx.commit().await?;
            Ok(results)
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
