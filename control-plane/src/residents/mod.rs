//! Residents and the linkage with the city's core systems (基幹系システム連携; R1, R8,
//! domain/data-linkage.md): the synthetic reference city, import of the core systems'
//! files, and finding a resident from a card, a name or a number.
//!
//! Code map:
//! - [`gen`] — [`gen_city`]: the synthetic reference city (参照用の架空の市), all 16
//!   data kinds as CSV in the reference format, deterministic per seed; and
//!   [`gen::gen_delta`], one day's 異動分 for it;
//! - [`mapping`] — [`Mapping`]: per kind the file, encoding and column mapping (列対応),
//!   TOML; the reference mapping ships in `reference_mapping.toml`; [`DataKind`] names
//!   the 16 kinds;
//! - [`csvfile`] — decoding (UTF-8 with or without BOM, CP932) and CSV parsing with
//!   line numbers;
//! - [`import`] — [`import_file`] / [`import_dir`]: each full or delta (異動分) file
//!   checked whole, then applied in one transaction or refused; idempotent; a
//!   [`FileReport`] per file, also kept in the store;
//! - [`report`] — the stored import reports ([`ImportReportRecord`], listed by
//!   `Store::list_import_reports` / `Store::import_report` for the admin UI) and the
//!   delta shapes the store applies;
//! - [`drop`] — the drop directory: complete files (`.ok` marker) in a fixed order,
//!   moved to `done/` or `rejected/`; [`drop::import_drop_dir`] (CLI, admin UI),
//!   [`drop::spawn_scheduler`] (the service's `[residents.import]` schedule);
//! - [`rpc`] — `residents.lookup-card`, `residents.search`, `residents.get`,
//!   `residents.household`: permission-checked, audited by 宛名番号;
//! - [`crypt`] — [`MyNumberKey`]: 個人番号 sealed with AES-256-GCM, never stored plain;
//! - [`fold`] — search-key folding (width, kana, IVS, 旧字体, 丁目/番地 notation);
//! - [`lookup`] — [`lookup_card`], [`search_name`], [`by_atena`], [`household_of`];
//! - the tables and their queries live in the store (`crate::store`, `residents`
//!   tables of migration 0003): residents (住民記録) keyed by (tenant, 宛名番号) with
//!   folded name, reading and address keys; households; `resident_records` for the
//!   other 15 kinds, attached to a 宛名番号 where the kind has one.
//!
//! Personal data (names, addresses, 個人番号) never appears in errors, reports or
//! `Debug` output: problems are told by file, line, column header and reason.

pub mod crypt;
pub mod csvfile;
pub mod drop;
pub mod fold;
pub mod gen;
pub mod import;
pub mod lookup;
pub mod mapping;
pub mod report;
pub mod rpc;

pub use crypt::MyNumberKey;
pub use gen::{gen_city, GenError, GenSummary};
pub use import::{
    import_bytes, import_dir, import_file, Change, FileReport, FileSpec, ImportError,
    ImportOptions, ImportReport, Outcome, Rejection,
};
pub use lookup::{
    by_atena, household_of, lookup_card, search_name, Candidate, CardLookup, CardQuery, Household,
    LookupError, Matched,
};
pub use mapping::{DataKind, DeltaMapping, Mapping, MappingError};
pub use report::{
    DeltaAction, ImportMode, ImportReportRecord, NewImportReport, ReportOutcome, ReportReason,
};
