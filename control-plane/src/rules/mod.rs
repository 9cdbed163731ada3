//! The procedure catalogue and the determination of every procedure a life event
//! brings (R2, R6, R7, N11).
//!
//! Code map:
//! - [`catalog`] — the catalogue as data (TOML under `control-plane/catalog/`):
//!   departments, questions, procedures with their rules, certificates; versions with
//!   `effective_from` (制度改正 prepared ahead), `extends` overlays, and validation that
//!   reports every error with its location. [`CatalogueSet`] is immutable: a reload
//!   yields a new set or errors, and the old one stays in use.
//! - [`expr`] — the rule expression language (CEL-like syntax, statically typed,
//!   three-valued for unanswered questions).
//! - [`model`] — the JSON input ([`DeterminationInput`]: event, household, members,
//!   answers) and the facts rules may read ([`model::FACTS`]).
//! - [`engine`] — evaluates the rules per member and per household and builds the
//!   [`Determination`]: procedures with reason and deadline, open questions, visit
//!   order by counter.
//! - [`diff`] — procedures and certificates added, removed and changed between two
//!   versions (reviewing a 制度改正 before scheduling it).
//! - [`rpc`] — `procedures.determine`, the counter UI's RPC, over the catalogue
//!   versions stored for the caller's tenant (cached per tenant, reloaded when the
//!   stored revision changes).
//! - [`calendar`] — civil dates, Japanese age counting (年齢計算ニ関スル法律), fiscal
//!   years, national holidays, the 12/29–1/3 closure, business days.
//!
//! Entry points: [`CatalogueSet::load`], [`determine`], and for the CLI
//! [`determine_from_files`].

pub mod calendar;
pub mod catalog;
pub mod diff;
pub mod engine;
pub mod expr;
pub mod model;
pub mod rpc;

use std::path::Path;

pub use calendar::Date;
pub use catalog::{Catalogue, CatalogueError, CatalogueFiles, CatalogueSet};
pub use engine::{determine_with, Determination};
pub use model::DeterminationInput;

/// Errors of the rules module.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The catalogue was rejected; every error found is listed.
    #[error("catalogue rejected ({} error(s)):\n{}", .0.len(), list(.0))]
    Catalogue(Vec<CatalogueError>),
    /// The input cannot be read or parsed.
    #[error("input {path}: {message}")]
    InputFile {
        /// File.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The input is inconsistent (unknown member, unknown question …).
    #[error("invalid input: {0}")]
    Input(String),
    /// No catalogue version is in force on the event date.
    #[error("no catalogue version in force on {0}")]
    NoVersion(Date),
}

fn list(errors: &[CatalogueError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Determine with the catalogue version in force on the event date.
pub fn determine(
    set: &CatalogueSet,
    input: &DeterminationInput,
) -> Result<Determination, RulesError> {
    let cat = set
        .for_date(input.event.date)
        .ok_or(RulesError::NoVersion(input.event.date))?;
    determine_with(cat, input)
}

/// Load the catalogue under `catalog_dir` and the JSON input at `input`, and return
/// the determination as JSON (what `kakanai-control-plane determine` prints).
pub fn determine_from_files(
    catalog_dir: &Path,
    input: &Path,
) -> Result<serde_json::Value, RulesError> {
    let set = CatalogueSet::load(catalog_dir).map_err(RulesError::Catalogue)?;
    let file_err = |message: String| RulesError::InputFile {
        path: input.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(input).map_err(|e| file_err(e.to_string()))?;
    let parsed: DeterminationInput =
        serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?;
    let result = determine(&set, &parsed)?;
    serde_json::to_value(&result).map_err(|e| file_err(e.to_string()))
}
