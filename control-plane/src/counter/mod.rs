//! The counter flows (issue 9): what the staff UI on the appliance asks the control
//! plane while a resident is at the counter — the contract is
//! `kakanai_protocol::counter` (`counter.*` methods), this module its control-plane
//! side.
//!
//! Two flows:
//! - **certificates**: `counter.certificates` (the menu of the catalogue in force,
//!   purposes, ID checks) → `counter.request-certificates` (the order checked against
//!   the catalogue: fees, options, copies, who may get 個人番号; a refused order stores
//!   nothing) → `counter.print` → `counter.accept` (the signed form's 2-D code);
//! - **life events**: `counter.lookup-moving-in` (a card against the 転出証明書情報,
//!   with the declared family) → `counter.determine` (plan → facts from the core data
//!   → the rules engine → procedures per person, questions, visit order; stores
//!   nothing) → `counter.create-visit` (determined again from the plan, staff's
//!   adjustments applied, one filled draft per form, the procedure guide kept) →
//!   `counter.print` (forms and guide in one job) → `counter.accept`.
//!
//! Code map:
//! - [`facts`] — the plan's people resolved from the store and the engine's
//!   [`DeterminationInput`](crate::rules::DeterminationInput) built from their records;
//! - [`address`] — the address master: 町字, 丁目 and 番地 range → school districts;
//! - [`moving_in`] — the 転出証明書情報: card matching, declared families;
//! - [`determine`] — the [`DeterminationView`](kakanai_protocol::counter::DeterminationView)
//!   and staff's adjustments;
//! - [`guide`] — the procedure guide's data;
//! - [`rpc`] — [`CounterRpc`]: the handlers, their permissions, error codes and audit.
//!
//! Invariants: every method takes the calling device's tenant; nothing personal goes
//! into an error message, a log line or an audit entry (audit entries carry 宛名番号
//! and 住民票コード only); a determination is made from the plan each time it is
//! needed, so the visit's forms are exactly what the rules (and staff's recorded
//! adjustments) say for that plan; a refused request changes nothing.

pub mod address;
pub mod determine;
pub mod facts;
pub mod guide;
pub mod moving_in;
pub mod rpc;

pub use rpc::CounterRpc;
