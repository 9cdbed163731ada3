//! Visits, applications and export batches (issue 8, items 4–5; migration 0005).
//!
//! Every change of an application is one transaction together with its audit entry:
//! the transaction first locks the tenant's audit head (the same lock
//! [`Store::append_audit`] takes, so the chain stays one line), then reads and locks
//! the application, checks the transition ([`Transition::allowed_from`]), writes, and
//! appends the entries. Taking the audit head first in every transaction here gives
//! one lock order, so two of them can never wait on each other. A refused transition
//! rolls everything back: nothing changes, nothing is logged.
//!
//! Numbers readable on paper come from `number_series` rows bumped in the same
//! transaction (`INSERT … ON CONFLICT DO UPDATE … RETURNING`): applications
//! `FY-NNNNNN` per fiscal year (年度, April–March, JST; e.g. `2026-000123`, the 123rd
//! application of 令和8年度), visits `YYYYMMDD-NNNN` per day (JST).
//!
//! Audit entries name the staff member (actor), the application number, form and
//! transition, and the subject by 宛名番号 only; never data from the form.

use std::fmt;

use super::audit::{lock_audit_head, push_audit, store_audit_head};
use super::backend::{check_id, check_text, classify, to_i64, to_u64, with_pool, Backend, Cols};
use super::{Result, Store, StoreError};
use crate::applications::model::{ApplicationState, CancelReason, Transition, TransitionError};
use crate::model::{Actor, AuditRecord, Place, TenantId};
use crate::rules::Date;

/// A visit (受付): one household at one counter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Visit {
    /// Random id.
    pub id: String,
    /// Number readable at the counter, `YYYYMMDD-NNNN`.
    pub number: String,
    /// The counter's device id.
    pub device: String,
    /// Staff login id.
    pub staff: String,
    /// The life event kind (`move_in` …) or `certificate`.
    pub kind: String,
    /// Started (ms since the epoch).
    pub started_at_ms: i64,
    /// Ended, once it has.
    pub ended_at_ms: Option<i64>,
}

/// What a new visit needs.
#[derive(Debug, Clone)]
pub struct NewVisit {
    /// The counter's device id.
    pub device: String,
    /// Staff login id.
    pub staff: String,
    /// The life event kind or `certificate`.
    pub kind: String,
}

/// A new application (a draft).
#[derive(Clone)]
pub struct NewApplication {
    /// Its id (random; chosen by the caller so a 個人番号 can be sealed for it first).
    pub id: String,
    /// The visit it belongs to.
    pub visit: String,
    /// The form id (`KOKUHO-SHUTOKU` …).
    pub form: String,
    /// The procedure id, for procedure forms.
    pub procedure: Option<String>,
    /// The certificate ids (comma-separated), for certificate requests.
    pub certificate: Option<String>,
    /// The subject's 宛名番号, when known.
    pub subject: Option<String>,
    /// The data as filled (a JSON object); the store writes the number it allocates
    /// into `application.number`.
    pub data: serde_json::Value,
    /// The 個人番号, sealed (`residents::crypt`, row key = application id).
    pub my_number_sealed: Option<String>,
}

impl fmt::Debug for NewApplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApplication")
            .field("id", &self.id)
            .field("visit", &self.visit)
            .field("form", &self.form)
            .field("procedure", &self.procedure)
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

/// Who did a step, and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// Staff login id (or `system`).
    pub by: String,
    /// When (ms since the epoch).
    pub at_ms: i64,
}

/// A stored application. `Debug` leaves out the data (it holds names and addresses).
#[derive(Clone, PartialEq, serde::Serialize)]
pub struct ApplicationRecord {
    /// Random id.
    pub id: String,
    /// Number printed on the form (`2026-000123`).
    pub number: String,
    /// The visit.
    pub visit: String,
    /// Form id.
    pub form: String,
    /// Procedure id (procedure forms).
    pub procedure: Option<String>,
    /// Certificate ids (certificate requests).
    pub certificate: Option<String>,
    /// Subject's 宛名番号.
    pub subject: Option<String>,
    /// State.
    pub state: ApplicationState,
    /// The data as filled.
    pub data: serde_json::Value,
    /// The sealed 個人番号, if the form needs one.
    #[serde(skip)]
    pub my_number_sealed: Option<String>,
    /// SHA-256 (hex) of the last printed PDF.
    pub pdf_sha256: Option<String>,
    /// Its pages.
    pub pdf_pages: Option<u32>,
    /// Why it was cancelled.
    pub cancel_reason: Option<CancelReason>,
    /// Note on the cancellation.
    pub cancel_note: Option<String>,
    /// The export batch that carried it.
    pub export_batch: Option<String>,
    /// Created.
    pub created: Step,
    /// Last change.
    pub updated_at_ms: i64,
    /// Printed (last time).
    pub printed: Option<Step>,
    /// Accepted (受付).
    pub accepted: Option<Step>,
    /// Exported (by the system).
    pub exported_at_ms: Option<i64>,
    /// Completed.
    pub completed: Option<Step>,
    /// Cancelled.
    pub cancelled: Option<Step>,
}

impl fmt::Debug for ApplicationRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationRecord")
            .field("id", &self.id)
            .field("number", &self.number)
            .field("form", &self.form)
            .field("state", &self.state)
            .field("export_batch", &self.export_batch)
            .finish_non_exhaustive()
    }
}

/// A stored export batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportBatchRecord {
    /// Batch id.
    pub id: String,
    /// When it was written.
    pub created_at_ms: i64,
    /// Applications it carried.
    pub applications: u64,
    /// Its manifest (JSON text, as written beside the files).
    pub manifest: String,
}

/// Why a change of an application failed. Nothing changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum ApplicationStoreError {
    /// The store failed, or the application / visit does not exist.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state machine refused the transition.
    #[error(transparent)]
    Refused(#[from] TransitionError),
}

impl From<sqlx::Error> for ApplicationStoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

const APP_COLS: &str = "id, number, visit, form, procedure, certificate, subject, state, data, \
    my_number_sealed, pdf_sha256, pdf_pages, cancel_reason, cancel_note, export_batch, \
    created_at_ms, updated_at_ms, created_by, printed_by, printed_at_ms, accepted_by, \
    accepted_at_ms, exported_at_ms, completed_by, completed_at_ms, cancelled_by, cancelled_at_ms";

const VISIT_COLS: &str = "id, number, device, staff, kind, started_at_ms, ended_at_ms";

fn step(by: Option<String>, at: Option<i64>) -> Option<Step> {
    match (by, at) {
        (Some(by), Some(at_ms)) => Some(Step { by, at_ms }),
        _ => None,
    }
}

fn app_from_row(r: &impl Cols) -> Result<ApplicationRecord> {
    let state = ApplicationState::parse(&r.text("state")?)
        .ok_or(StoreError::Corrupt("application state"))?;
    let data = serde_json::from_str(&r.text("data")?)
        .map_err(|_| StoreError::Corrupt("application data"))?;
    let cancel_reason = match r.opt_text("cancel_reason")? {
        Some(s) => Some(CancelReason::parse(&s).ok_or(StoreError::Corrupt("cancel reason"))?),
        None => None,
    };
    let pdf_pages = match r.opt_int("pdf_pages")? {
        Some(p) => Some(u32::try_from(p).map_err(|_| StoreError::Corrupt("page count"))?),
        None => None,
    };
    Ok(ApplicationRecord {
        id: r.text("id")?,
        number: r.text("number")?,
        visit: r.text("visit")?,
        form: r.text("form")?,
        procedure: r.opt_text("procedure")?,
        certificate: r.opt_text("certificate")?,
        subject: r.opt_text("subject")?,
        state,
        data,
        my_number_sealed: r.opt_text("my_number_sealed")?,
        pdf_sha256: r.opt_text("pdf_sha256")?,
        pdf_pages,
        cancel_reason,
        cancel_note: r.opt_text("cancel_note")?,
        export_batch: r.opt_text("export_batch")?,
        created: Step {
            by: r.text("created_by")?,
            at_ms: r.int("created_at_ms")?,
        },
        updated_at_ms: r.int("updated_at_ms")?,
        printed: step(r.opt_text("printed_by")?, r.opt_int("printed_at_ms")?),
        accepted: step(r.opt_text("accepted_by")?, r.opt_int("accepted_at_ms")?),
        exported_at_ms: r.opt_int("exported_at_ms")?,
        completed: step(r.opt_text("completed_by")?, r.opt_int("completed_at_ms")?),
        cancelled: step(r.opt_text("cancelled_by")?, r.opt_int("cancelled_at_ms")?),
    })
}

fn visit_from_row(r: &impl Cols) -> Result<Visit> {
    Ok(Visit {
        id: r.text("id")?,
        number: r.text("number")?,
        device: r.text("device")?,
        staff: r.text("staff")?,
        kind: r.text("kind")?,
        started_at_ms: r.int("started_at_ms")?,
        ended_at_ms: r.opt_int("ended_at_ms")?,
    })
}

/// The date in Japan at `ms`.
pub(crate) fn jst_date(ms: i64) -> Date {
    Date::from_days((ms + 9 * 3_600_000).div_euclid(86_400_000))
}

/// The actor's login id for the `*_by` columns.
fn actor_name(actor: &Actor) -> String {
    match actor {
        Actor::Staff(id) | Actor::Admin(id) | Actor::Device(id) => id.clone(),
        Actor::System => "system".to_owned(),
    }
}

/// An audit entry about one application.
fn app_audit(
    tenant: &TenantId,
    at_ms: i64,
    by: &Actor,
    place: &Place,
    action: &str,
    app: &ApplicationRecord,
    extra: serde_json::Value,
) -> AuditRecord {
    let mut detail = serde_json::json!({
        "application": app.number,
        "form": app.form,
        "state": app.state.as_str(),
    });
    if let (Some(d), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
        d.extend(extra);
    }
    AuditRecord {
        tenant: tenant.to_string(),
        at_ms,
        actor: by.clone(),
        action: action.to_owned(),
        resident: app.subject.clone(),
        place: place.clone(),
        outcome: "ok".into(),
        detail,
    }
}

/// `next_number!(tx, tenant, series)` — the next number of a series (1, 2, …).
macro_rules! next_number {
    ($tx:ident, $tenant:expr, $series:expr) => {{
        let row = sqlx::query(
            "INSERT INTO number_series (tenant, series, last) VALUES ($1, $2, 1) \
             ON CONFLICT (tenant, series) DO UPDATE SET last = number_series.last + 1 \
             RETURNING last",
        )
        .bind($tenant)
        .bind($series)
        .fetch_one(&mut *$tx)
        .await
        .map_err(|e| classify(e, "number", "tenant"))?;
        row.int("last")?
    }};
}

/// `select_app!(pool, tx, tenant, id)` — the application, locked for the transaction.
macro_rules! select_app_for_update {
    ($pool:ident, $tx:ident, $tenant:expr, $id:expr) => {{
        let lock = if matches!($pool.kind_name(), "postgres") {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql =
            format!("SELECT {APP_COLS} FROM applications WHERE tenant = $1 AND id = $2{lock}");
        let row = sqlx::query(&sql)
            .bind($tenant)
            .bind($id)
            .fetch_optional(&mut *$tx)
            .await?
            .ok_or(StoreError::NotFound("application"))?;
        app_from_row(&row)?
    }};
}

/// Which backend a pool is, for the one statement that differs (`FOR UPDATE`).
trait KindName {
    fn kind_name(&self) -> &'static str;
}
impl KindName for sqlx::SqlitePool {
    fn kind_name(&self) -> &'static str {
        "sqlite"
    }
}
impl KindName for sqlx::PgPool {
    fn kind_name(&self) -> &'static str {
        "postgres"
    }
}

impl Store {
    /// Starts a visit and numbers it (`YYYYMMDD-NNNN`, per day in Japan).
    pub async fn create_visit(
        &self,
        tenant: &TenantId,
        visit: &NewVisit,
        id: &str,
        place: &Place,
        now_ms: i64,
    ) -> Result<Visit> {
        check_id("visit id", id)?;
        check_id("device id", &visit.device)?;
        check_id("staff id", &visit.staff)?;
        check_id("visit kind", &visit.kind)?;
        let day = jst_date(now_ms);
        let series = format!("V{day}");
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_audit_head!(pool, tx, tenant.as_str());
            let n = next_number!(tx, tenant.as_str(), &series);
            let number = format!(
                "{:04}{:02}{:02}-{n:04}",
                day.year(),
                day.month(),
                day.day()
            );
            sqlx::query(
                "INSERT INTO visits (tenant, id, number, device, staff, kind, started_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(tenant.as_str())
            .bind(id)
            .bind(&number)
            .bind(&visit.device)
            .bind(&visit.staff)
            .bind(&visit.kind)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "visit", "tenant"))?;
            let record = AuditRecord {
                tenant: tenant.to_string(),
                at_ms: now_ms,
                actor: Actor::Staff(visit.staff.clone()),
                action: "visit.start".into(),
                resident: None,
                place: place.clone(),
                outcome: "ok".into(),
                detail: serde_json::json!({"visit": number, "kind": visit.kind, "device": visit.device}),
            };
            push_audit!(tx, head, &record);
            store_audit_head!(tx, tenant.as_str(), head);
            tx.commit().await?;
            Ok(Visit {
                id: id.to_owned(),
                number,
                device: visit.device.clone(),
                staff: visit.staff.clone(),
                kind: visit.kind.clone(),
                started_at_ms: now_ms,
                ended_at_ms: None,
            })
        })
    }

    /// Ends a visit (once; a second call keeps the first end time).
    pub async fn end_visit(&self, tenant: &TenantId, id: &str, now_ms: i64) -> Result<()> {
        with_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE visits SET ended_at_ms = COALESCE(ended_at_ms, $3) WHERE tenant = $1 AND id = $2",
            )
            .bind(tenant.as_str())
            .bind(id)
            .bind(now_ms)
            .execute(pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("visit"));
            }
            Ok(())
        })
    }

    /// The visit with this id.
    pub async fn visit(&self, tenant: &TenantId, id: &str) -> Result<Option<Visit>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {VISIT_COLS} FROM visits WHERE tenant = $1 AND id = $2");
            let row = sqlx::query(&sql).bind(tenant.as_str()).bind(id).fetch_optional(pool).await?;
            row.map(|r| visit_from_row(&r)).transpose()
        })
    }

    /// Stores a new draft, numbering it (`FY-NNNNNN`, per fiscal year in Japan) and
    /// writing the number into the data's `application.number`; audited as
    /// `application.create` in the same transaction. [`StoreError::NotFound`] if the
    /// visit does not exist; [`StoreError::Invalid`] if the data is not an object.
    pub async fn create_application(
        &self,
        tenant: &TenantId,
        new: &NewApplication,
        by: &Actor,
        place: &Place,
        now_ms: i64,
    ) -> Result<ApplicationRecord> {
        check_id("application id", &new.id)?;
        check_id("form id", &new.form)?;
        for v in [
            &new.procedure,
            &new.certificate,
            &new.subject,
            &new.my_number_sealed,
        ]
        .into_iter()
        .flatten()
        {
            check_text("application field", v)?;
        }
        let mut data = new.data.clone();
        let Some(object) = data.as_object_mut() else {
            return Err(StoreError::Invalid("application data (not a JSON object)"));
        };
        let fy = jst_date(now_ms).fiscal_year();
        let series = format!("A{fy}");
        let staff = actor_name(by);
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_audit_head!(pool, tx, tenant.as_str());
            let visit_exists = sqlx::query("SELECT 1 AS one FROM visits WHERE tenant = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(&new.visit)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !visit_exists {
                return Err(StoreError::NotFound("visit"));
            }
            let n = next_number!(tx, tenant.as_str(), &series);
            let number = format!("{fy}-{n:06}");
            let application = object
                .entry("application")
                .or_insert_with(|| serde_json::json!({}));
            if let Some(a) = application.as_object_mut() {
                a.insert("number".into(), serde_json::Value::String(number.clone()));
            }
            let text = serde_json::to_string(&data)
                .map_err(|_| StoreError::Invalid("application data"))?;
            check_text("application data", &text)?;
            sqlx::query(
                "INSERT INTO applications (tenant, id, number, visit, form, procedure, certificate, \
                 subject, state, data, my_number_sealed, created_at_ms, updated_at_ms, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'draft', $9, $10, $11, $11, $12)",
            )
            .bind(tenant.as_str())
            .bind(&new.id)
            .bind(&number)
            .bind(&new.visit)
            .bind(&new.form)
            .bind(new.procedure.as_deref())
            .bind(new.certificate.as_deref())
            .bind(new.subject.as_deref())
            .bind(&text)
            .bind(new.my_number_sealed.as_deref())
            .bind(now_ms)
            .bind(&staff)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "application", "visit"))?;
            let record = ApplicationRecord {
                id: new.id.clone(),
                number,
                visit: new.visit.clone(),
                form: new.form.clone(),
                procedure: new.procedure.clone(),
                certificate: new.certificate.clone(),
                subject: new.subject.clone(),
                state: ApplicationState::Draft,
                data,
                my_number_sealed: new.my_number_sealed.clone(),
                pdf_sha256: None,
                pdf_pages: None,
                cancel_reason: None,
                cancel_note: None,
                export_batch: None,
                created: Step { by: staff, at_ms: now_ms },
                updated_at_ms: now_ms,
                printed: None,
                accepted: None,
                exported_at_ms: None,
                completed: None,
                cancelled: None,
            };
            let audit = app_audit(tenant, now_ms, by, place, "application.create", &record,
                serde_json::json!({"procedure": record.procedure, "certificate": record.certificate}));
            push_audit!(tx, head, &audit);
            store_audit_head!(tx, tenant.as_str(), head);
            tx.commit().await?;
            Ok(record)
        })
    }

    /// The application with this id.
    pub async fn application(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<ApplicationRecord>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {APP_COLS} FROM applications WHERE tenant = $1 AND id = $2");
            let row = sqlx::query(&sql).bind(tenant.as_str()).bind(id).fetch_optional(pool).await?;
            row.map(|r| app_from_row(&r)).transpose()
        })
    }

    /// The application with this number (as printed in the form's code).
    pub async fn application_by_number(
        &self,
        tenant: &TenantId,
        number: &str,
    ) -> Result<Option<ApplicationRecord>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {APP_COLS} FROM applications WHERE tenant = $1 AND number = $2");
            let row = sqlx::query(&sql).bind(tenant.as_str()).bind(number).fetch_optional(pool).await?;
            row.map(|r| app_from_row(&r)).transpose()
        })
    }

    /// A visit's applications, by number.
    pub async fn visit_applications(
        &self,
        tenant: &TenantId,
        visit: &str,
    ) -> Result<Vec<ApplicationRecord>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {APP_COLS} FROM applications WHERE tenant = $1 AND visit = $2 ORDER BY number"
            );
            let rows = sqlx::query(&sql).bind(tenant.as_str()).bind(visit).fetch_all(pool).await?;
            rows.iter().map(app_from_row).collect()
        })
    }

    /// Applications in `state` (optionally of one form), by number, at most `limit`.
    pub async fn applications_in_state(
        &self,
        tenant: &TenantId,
        state: ApplicationState,
        form: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApplicationRecord>> {
        with_pool!(self, pool => {
            let rows = match form {
                Some(f) => {
                    let sql = format!(
                        "SELECT {APP_COLS} FROM applications WHERE tenant = $1 AND state = $2 \
                         AND form = $3 ORDER BY number LIMIT $4"
                    );
                    sqlx::query(&sql)
                        .bind(tenant.as_str())
                        .bind(state.as_str())
                        .bind(f)
                        .bind(i64::from(limit))
                        .fetch_all(pool)
                        .await?
                }
                None => {
                    let sql = format!(
                        "SELECT {APP_COLS} FROM applications WHERE tenant = $1 AND state = $2 \
                         ORDER BY number LIMIT $3"
                    );
                    sqlx::query(&sql)
                        .bind(tenant.as_str())
                        .bind(state.as_str())
                        .bind(i64::from(limit))
                        .fetch_all(pool)
                        .await?
                }
            };
            rows.iter().map(app_from_row).collect()
        })
    }

    /// Replaces a draft's data (staff corrected an answer before printing). Only a
    /// draft can change: a printed form is what the resident signs.
    pub async fn update_application_data(
        &self,
        tenant: &TenantId,
        id: &str,
        data: &serde_json::Value,
        by: &Actor,
        place: &Place,
        now_ms: i64,
    ) -> Result<ApplicationRecord, ApplicationStoreError> {
        if !data.is_object() {
            return Err(StoreError::Invalid("application data (not a JSON object)").into());
        }
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_audit_head!(pool, tx, tenant.as_str());
            let mut app = select_app_for_update!(pool, tx, tenant.as_str(), id);
            if app.state != ApplicationState::Draft {
                return Err(TransitionError::Illegal { from: app.state, to: ApplicationState::Draft }.into());
            }
            let mut data = data.clone();
            // The number is the store's: keep it whatever the caller sent.
            if let Some(a) = data.as_object_mut() {
                let application = a.entry("application").or_insert_with(|| serde_json::json!({}));
                if let Some(a) = application.as_object_mut() {
                    a.insert("number".into(), serde_json::Value::String(app.number.clone()));
                }
            }
            let text = serde_json::to_string(&data).map_err(|_| StoreError::Invalid("application data"))?;
            check_text("application data", &text)?;
            sqlx::query("UPDATE applications SET data = $3, updated_at_ms = $4 WHERE tenant = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id)
                .bind(&text)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            app.data = data;
            app.updated_at_ms = now_ms;
            let audit = app_audit(tenant, now_ms, by, place, "application.update", &app, serde_json::json!({}));
            push_audit!(tx, head, &audit);
            store_audit_head!(tx, tenant.as_str(), head);
            tx.commit().await?;
            Ok(app)
        })
    }

    /// Moves an application through the state machine, with its audit entry, in one
    /// transaction. [`ApplicationStoreError::Refused`] (nothing changed, nothing
    /// logged) for a move the state machine does not allow.
    pub async fn transition_application(
        &self,
        tenant: &TenantId,
        id: &str,
        transition: &Transition,
        by: &Actor,
        place: &Place,
        now_ms: i64,
    ) -> Result<ApplicationRecord, ApplicationStoreError> {
        if let Transition::Print { pages: 0, .. } = transition {
            return Err(TransitionError::Invalid("a printed PDF has at least one page").into());
        }
        if let Transition::Cancel { note, .. } = transition {
            check_text("cancel note", note)?;
        }
        let staff = actor_name(by);
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_audit_head!(pool, tx, tenant.as_str());
            let mut app = select_app_for_update!(pool, tx, tenant.as_str(), id);
            let from = app.state;
            if !transition.allowed_from(from) {
                return Err(TransitionError::Illegal { from, to: transition.target() }.into());
            }
            let to = transition.target();
            let t = tenant.as_str();
            let mut extra = serde_json::json!({"from": from.as_str(), "to": to.as_str()});
            match transition {
                Transition::Print { pdf_sha256, pages } => {
                    let hash = hex::encode(pdf_sha256);
                    sqlx::query(
                        "UPDATE applications SET state = 'printed', pdf_sha256 = $3, pdf_pages = $4, \
                         printed_by = $5, printed_at_ms = $6, updated_at_ms = $6 WHERE tenant = $1 AND id = $2",
                    )
                    .bind(t).bind(id).bind(&hash).bind(i64::from(*pages)).bind(&staff).bind(now_ms)
                    .execute(&mut *tx).await?;
                    extra["pdf_sha256"] = serde_json::Value::String(hash.clone());
                    extra["pages"] = serde_json::Value::from(*pages);
                    app.pdf_sha256 = Some(hash);
                    app.pdf_pages = Some(*pages);
                    app.printed = Some(Step { by: staff.clone(), at_ms: now_ms });
                }
                Transition::Accept => {
                    sqlx::query(
                        "UPDATE applications SET state = 'accepted', accepted_by = $3, accepted_at_ms = $4, \
                         updated_at_ms = $4 WHERE tenant = $1 AND id = $2",
                    )
                    .bind(t).bind(id).bind(&staff).bind(now_ms)
                    .execute(&mut *tx).await?;
                    app.accepted = Some(Step { by: staff.clone(), at_ms: now_ms });
                }
                Transition::Complete => {
                    sqlx::query(
                        "UPDATE applications SET state = 'completed', completed_by = $3, completed_at_ms = $4, \
                         updated_at_ms = $4 WHERE tenant = $1 AND id = $2",
                    )
                    .bind(t).bind(id).bind(&staff).bind(now_ms)
                    .execute(&mut *tx).await?;
                    app.completed = Some(Step { by: staff.clone(), at_ms: now_ms });
                }
                Transition::Cancel { reason, note } => {
                    sqlx::query(
                        "UPDATE applications SET state = 'cancelled', cancel_reason = $3, cancel_note = $4, \
                         cancelled_by = $5, cancelled_at_ms = $6, updated_at_ms = $6 WHERE tenant = $1 AND id = $2",
                    )
                    .bind(t).bind(id).bind(reason.as_str()).bind(note).bind(&staff).bind(now_ms)
                    .execute(&mut *tx).await?;
                    // The code only: the note is free text and may name someone.
                    extra["reason"] = serde_json::Value::String(reason.as_str().to_owned());
                    app.cancel_reason = Some(*reason);
                    app.cancel_note = Some(note.clone());
                    app.cancelled = Some(Step { by: staff.clone(), at_ms: now_ms });
                }
            }
            app.state = to;
            app.updated_at_ms = now_ms;
            let audit = app_audit(tenant, now_ms, by, place, transition.action(), &app, extra);
            push_audit!(tx, head, &audit);
            store_audit_head!(tx, tenant.as_str(), head);
            tx.commit().await?;
            Ok(app)
        })
    }

    /// Records an export batch: every application in `ids` moves from `accepted` to
    /// `exported` with the batch id, one audit entry each, and the batch with its
    /// manifest is stored — all in one transaction. If any of them is no longer
    /// accepted (cancelled meanwhile), nothing changes and the error says so.
    pub async fn record_export(
        &self,
        tenant: &TenantId,
        batch: &str,
        manifest: &str,
        ids: &[String],
        now_ms: i64,
    ) -> Result<(), ApplicationStoreError> {
        check_id("batch id", batch)?;
        check_text("manifest", manifest)?;
        let count = to_i64(ids.len() as u64, "batch size")?;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_audit_head!(pool, tx, tenant.as_str());
            sqlx::query(
                "INSERT INTO export_batches (tenant, id, created_at_ms, applications, manifest) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(tenant.as_str())
            .bind(batch)
            .bind(now_ms)
            .bind(count)
            .bind(manifest)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "export batch", "tenant"))?;
            for id in ids {
                let mut app = select_app_for_update!(pool, tx, tenant.as_str(), id);
                if app.state != ApplicationState::Accepted {
                    return Err(TransitionError::Illegal { from: app.state, to: ApplicationState::Exported }.into());
                }
                sqlx::query(
                    "UPDATE applications SET state = 'exported', export_batch = $3, exported_at_ms = $4, \
                     updated_at_ms = $4 WHERE tenant = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id)
                .bind(batch)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                app.state = ApplicationState::Exported;
                let audit = app_audit(tenant, now_ms, &Actor::System, &Place::Internal, "application.export", &app,
                    serde_json::json!({"from": "accepted", "to": "exported", "batch": batch}));
                push_audit!(tx, head, &audit);
            }
            store_audit_head!(tx, tenant.as_str(), head);
            tx.commit().await?;
            Ok(())
        })
    }

    /// The applications an export batch carried, by number.
    pub async fn batch_applications(
        &self,
        tenant: &TenantId,
        batch: &str,
    ) -> Result<Vec<ApplicationRecord>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {APP_COLS} FROM applications WHERE tenant = $1 AND export_batch = $2 ORDER BY number"
            );
            let rows = sqlx::query(&sql).bind(tenant.as_str()).bind(batch).fetch_all(pool).await?;
            rows.iter().map(app_from_row).collect()
        })
    }

    /// An export batch.
    pub async fn export_batch(
        &self,
        tenant: &TenantId,
        batch: &str,
    ) -> Result<Option<ExportBatchRecord>> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT id, created_at_ms, applications, manifest FROM export_batches \
                 WHERE tenant = $1 AND id = $2",
            )
            .bind(tenant.as_str())
            .bind(batch)
            .fetch_optional(pool)
            .await?;
            row.map(|r| -> Result<ExportBatchRecord> {
                Ok(ExportBatchRecord {
                    id: r.text("id")?,
                    created_at_ms: r.int("created_at_ms")?,
                    applications: to_u64(r.int("applications")?, "batch size")?,
                    manifest: r.text("manifest")?,
                })
            })
            .transpose()
        })
    }

    /// Audits a re-export of a batch (`export --again`), which changes no state.
    pub async fn audit_reexport(
        &self,
        tenant: &TenantId,
        batch: &str,
        applications: usize,
        by: &Actor,
        now_ms: i64,
    ) -> Result<()> {
        let record = AuditRecord {
            tenant: tenant.to_string(),
            at_ms: now_ms,
            actor: by.clone(),
            action: "export.again".into(),
            resident: None,
            place: Place::Internal,
            outcome: "ok".into(),
            detail: serde_json::json!({"batch": batch, "applications": applications}),
        };
        self.append_audit(&record).await.map(|_| ())
    }
}
