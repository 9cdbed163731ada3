//! Residents and the linkage with the city's core systems (基幹系システム連携; R1, R8,
//! domain/data-linkage.md): the synthetic reference city, import of the core systems'
//! files, and finding a resident from a card, a name or a number.
//!
//! Code map:
//! - [`gen`] — [`gen_city`]: the synthetic reference city (参照用の架空の市), all 16
//!   data kinds as CSV in the reference format, deterministic per seed;
//! - [`mapping`] — [`Mapping`]: per kind the file, encoding and column mapping (列対応),
//!   TOML; the reference mapping ships in `reference_mapping.toml`; [`DataKind`] names
//!   the 16 kinds;
//! - [`csvfile`] — decoding (UTF-8 with or without BOM, CP932) and CSV parsing with
//!   line numbers;
//! - [`import`] — [`import_dir`]: each full file checked whole, then applied in one
//!   transaction or refused; idempotent; a [`FileReport`] per file;
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
pub mod fold;
pub mod gen;
pub mod import;
pub mod lookup;
pub mod mapping;

pub use crypt::MyNumberKey;
pub use gen::{gen_city, GenError, GenSummary};
pub use import::{
    import_bytes, import_dir, Change, FileReport, ImportError, ImportOptions, ImportReport,
    Outcome, Rejection,
};
pub use lookup::{
    by_atena, household_of, lookup_card, search_name, Candidate, CardLookup, CardQuery, Household,
    LookupError, Matched,
};
pub use mapping::{DataKind, Mapping, MappingError};
