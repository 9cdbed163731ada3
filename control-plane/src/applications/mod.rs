//! Application records and the RPA/data export (issue 8, items 4–5; R5, R6, R7).
//!
//! A *visit* (受付) is one household at one counter; it groups *applications*, one per
//! printed form. An application holds the data the form was filled with (the JSON
//! object `kakanai-documents` prints and the export reads), its state, who did each
//! step, the printed PDF's SHA-256 and page count, and the export batch that carried
//! it to the core systems.
//!
//! Code map:
//! - [`model`] — [`ApplicationState`], [`Transition`] and the state machine
//!   (draft → printed → accepted → exported → completed; cancelled before exported),
//!   [`TransitionError`], [`CancelReason`];
//! - [`fill`] — the form data: [`fill::Person`], [`fill::VisitData`],
//!   [`fill::plan_forms`] (which forms a determination needs), [`fill::fill_procedure`],
//!   [`fill::fill_certificate`], [`fill::resolve_people`] (residents from the store);
//! - [`certificate`] — [`CertificateRequest`] validated against the certificate
//!   catalogue (ids, options, copies, fees, who may have 個人番号 on a 住民票);
//! - [`export`] — the RPA / data export: [`ExportMapping`] (TOML, reference in
//!   `control-plane/exports/reference.toml`), [`export::export`],
//!   [`export::export_again`], [`export::Manifest`];
//! - [`rpc`] — the counter UI's RPC methods (`applications.create-certificate-request`,
//!   `applications.accept`, `applications.cancel`, `applications.list`);
//! - [`schedule`] — the export on a schedule (`[export]` in the service configuration);
//! - the tables and their transactions live in the store
//!   (`crate::store::applications`, migration 0005): every transition is one
//!   transaction with its audit entry.
//!
//! Entry points for the counter flow: [`start_visit`], [`create_for_visit`] (one draft
//! per procedure form of a determination), [`create_certificate_request`], then
//! [`record_printed`], [`accept_by_number`], [`cancel`], and [`export::export`].
//!
//! Personal data (names, addresses) lives in the application's data in the database
//! and in the export files, nowhere else: `Debug` of every record shows ids, numbers
//! and states only, and audit entries carry the application number, form, transition
//! and the subject's 宛名番号. A 個人番号 is stored only sealed ([`seal_my_number`]).

pub mod certificate;
pub mod export;
pub mod fill;
pub mod model;
pub mod print;
pub mod rpc;
pub mod schedule;

use std::collections::BTreeMap;

use ring::rand::{SecureRandom, SystemRandom};

pub use certificate::{CertificateError, CertificateRequest};
pub use export::{ExportError, ExportMapping, ExportReport, Manifest};
pub use fill::{FillError, Person, PersonSource, VisitData};
pub use model::{ApplicationState, CancelReason, Transition, TransitionError};

pub use crate::store::applications::{
    ApplicationRecord, ApplicationStoreError, NewApplication, NewVisit, Visit,
};

use crate::model::{Actor, Place, TenantId};
use crate::residents::MyNumberKey;
use crate::rules::{Catalogue, Determination};
use crate::store::{Store, StoreError};

/// The `kind` of the sealed 個人番号 (the sealing binds tenant, kind and application id).
pub const MY_NUMBER_KIND: &str = "application";

/// Why an application operation failed. Nothing changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum ApplicationError {
    /// The store failed, or a thing named does not exist.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state machine refused.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The certificate request is not valid.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// The form data could not be filled.
    #[error(transparent)]
    Fill(#[from] FillError),
    /// No application with that number.
    #[error("no application {0}")]
    UnknownNumber(String),
    /// A 個人番号 could not be sealed.
    #[error("cannot seal the 個人番号")]
    Seal,
}

impl From<ApplicationStoreError> for ApplicationError {
    fn from(e: ApplicationStoreError) -> Self {
        match e {
            ApplicationStoreError::Store(s) => Self::Store(s),
            ApplicationStoreError::Refused(t) => Self::Transition(t),
        }
    }
}

/// `n` random bytes as hex (ids, batch suffixes).
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    // The system RNG does not fail on the platforms we run on; if it ever did, a
    // time-derived value still keeps ids distinct enough for a retry to succeed,
    // and the primary key refuses a clash.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        let t = crate::service::now_ms().to_le_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = t[i % t.len()] ^ (i as u8);
        }
    }
    hex::encode(bytes)
}

/// A new random id (128 bits, hex).
pub fn new_id() -> String {
    random_hex(16)
}

/// Seals a 個人番号 for the application `application_id`.
pub fn seal_my_number(
    key: &MyNumberKey,
    tenant: &TenantId,
    application_id: &str,
    number: &str,
) -> Result<String, ApplicationError> {
    key.seal(tenant.as_str(), MY_NUMBER_KIND, application_id, number)
        .map_err(|_| ApplicationError::Seal)
}

/// The application's 個人番号, if it has one and `key` opens it.
pub fn open_my_number(
    key: &MyNumberKey,
    tenant: &TenantId,
    app: &ApplicationRecord,
) -> Option<String> {
    let sealed = app.my_number_sealed.as_deref()?;
    key.open(tenant.as_str(), MY_NUMBER_KIND, &app.id, sealed)
}

/// Starts a visit at `device` by `staff` for `kind` (an event kind or `certificate`).
pub async fn start_visit(
    store: &Store,
    tenant: &TenantId,
    device: &str,
    staff: &str,
    kind: &str,
    now_ms: i64,
) -> Result<Visit, ApplicationError> {
    let visit = NewVisit {
        device: device.to_owned(),
        staff: staff.to_owned(),
        kind: kind.to_owned(),
    };
    Ok(store
        .create_visit(
            tenant,
            &visit,
            &new_id(),
            &Place::Appliance(device.to_owned()),
            now_ms,
        )
        .await?)
}

/// 個人番号 to attach: the sealing key, forms that carry one, and the numbers by
/// determination member id. Numbers are sealed before anything is stored.
pub struct MyNumbers<'a> {
    /// The sealing key.
    pub key: &'a MyNumberKey,
    /// Form ids whose application keeps the subject's 個人番号.
    pub forms: &'a [&'a str],
    /// Member id → 個人番号.
    pub numbers: &'a BTreeMap<String, String>,
}

impl std::fmt::Debug for MyNumbers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MyNumbers")
            .field("forms", &self.forms)
            .finish_non_exhaustive()
    }
}

/// One draft per procedure form the determination brings (see
/// [`fill::plan_forms`]), each filled from `data` and stored with its number, in one
/// transaction each. Procedures without a form are not applications.
pub async fn create_for_visit(
    store: &Store,
    tenant: &TenantId,
    visit: &Visit,
    determination: &Determination,
    data: &VisitData,
    my_numbers: Option<&MyNumbers<'_>>,
    now_ms: i64,
) -> Result<Vec<ApplicationRecord>, ApplicationError> {
    let by = Actor::Staff(visit.staff.clone());
    let place = Place::Appliance(visit.device.clone());
    let plans = fill::plan_forms(determination, data.head.as_deref());
    // Fill everything first: a member without a person fails before anything is stored.
    let mut filled = Vec::new();
    for plan in &plans {
        filled.push(fill::fill_procedure(data, determination, plan)?);
    }
    let mut out = Vec::new();
    for (plan, json) in plans.iter().zip(filled) {
        let id = new_id();
        let subject_person = plan.subject.as_ref().and_then(|s| data.people.get(s));
        let my_number_sealed = match (my_numbers, &plan.subject) {
            (Some(m), Some(member)) if m.forms.contains(&plan.form.as_str()) => {
                match m.numbers.get(member) {
                    Some(n) => Some(seal_my_number(m.key, tenant, &id, n)?),
                    None => None,
                }
            }
            _ => None,
        };
        let new = NewApplication {
            id,
            visit: visit.id.clone(),
            form: plan.form.clone(),
            procedure: Some(plan.procedure.id.clone()),
            certificate: None,
            subject: subject_person.and_then(|p| p.atena.clone()),
            data: json,
            my_number_sealed,
        };
        out.push(
            store
                .create_application(tenant, &new, &by, &place, now_ms)
                .await?,
        );
    }
    Ok(out)
}

/// Validates a certificate request against `catalogue` and stores it as drafts: one per
/// request form its certificates need ([`certificate::form_for`]), each with its own
/// items and fee total. A refused request stores nothing.
pub async fn create_certificate_request(
    store: &Store,
    tenant: &TenantId,
    visit: &Visit,
    request: &CertificateRequest,
    catalogue: &Catalogue,
    city: &str,
    now_ms: i64,
) -> Result<Vec<ApplicationRecord>, ApplicationError> {
    request.validate(catalogue)?;
    let data = VisitData {
        city: city.to_owned(),
        created: crate::store::applications::jst_date(now_ms),
        event: fill::EventDetails::default(),
        people: BTreeMap::new(),
        applicant: None,
        head: None,
        household_address: None,
        answers: serde_json::Map::new(),
    };
    let mut out = Vec::new();
    for (form, part) in request.split_by_form() {
        let json = fill::fill_certificate(&data, form, &part, catalogue);
        let ids: Vec<&str> = part.items.iter().map(|i| i.certificate.as_str()).collect();
        let new = NewApplication {
            id: new_id(),
            visit: visit.id.clone(),
            form: form.to_owned(),
            procedure: None,
            certificate: Some(ids.join(",")),
            subject: part.subject.atena.clone(),
            data: json,
            my_number_sealed: None,
        };
        out.push(
            store
                .create_application(
                    tenant,
                    &new,
                    &Actor::Staff(visit.staff.clone()),
                    &Place::Appliance(visit.device.clone()),
                    now_ms,
                )
                .await?,
        );
    }
    Ok(out)
}

/// Who acts, from where, and when: the staff member (or system), the counter, the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Act {
    /// Who.
    pub by: Actor,
    /// Where from.
    pub place: Place,
    /// When (ms since the epoch).
    pub at_ms: i64,
}

impl Act {
    /// A staff member at a counter's appliance.
    pub fn staff_at(staff: &str, device: &str, at_ms: i64) -> Self {
        Self {
            by: Actor::Staff(staff.to_owned()),
            place: Place::Appliance(device.to_owned()),
            at_ms,
        }
    }
}

/// Records that the application was printed: the PDF's SHA-256 and page count (what
/// the lead's print path calls once the appliance reports the job done).
pub async fn record_printed(
    store: &Store,
    tenant: &TenantId,
    application_id: &str,
    pdf_sha256: [u8; 32],
    pages: u32,
    act: &Act,
) -> Result<ApplicationRecord, ApplicationError> {
    Ok(store
        .transition_application(
            tenant,
            application_id,
            &Transition::Print { pdf_sha256, pages },
            &act.by,
            &act.place,
            act.at_ms,
        )
        .await?)
}

/// 受付: the application whose number the scanner read is accepted.
pub async fn accept_by_number(
    store: &Store,
    tenant: &TenantId,
    number: &str,
    act: &Act,
) -> Result<ApplicationRecord, ApplicationError> {
    let app = store
        .application_by_number(tenant, number)
        .await?
        .ok_or_else(|| ApplicationError::UnknownNumber(number.to_owned()))?;
    Ok(store
        .transition_application(
            tenant,
            &app.id,
            &Transition::Accept,
            &act.by,
            &act.place,
            act.at_ms,
        )
        .await?)
}

/// Cancels an application (before export) with a reason code and a note.
pub async fn cancel(
    store: &Store,
    tenant: &TenantId,
    application_id: &str,
    reason: CancelReason,
    note: &str,
    act: &Act,
) -> Result<ApplicationRecord, ApplicationError> {
    Ok(store
        .transition_application(
            tenant,
            application_id,
            &Transition::Cancel {
                reason,
                note: note.to_owned(),
            },
            &act.by,
            &act.place,
            act.at_ms,
        )
        .await?)
}
