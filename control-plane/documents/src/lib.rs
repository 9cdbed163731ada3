//! `kakanai-documents` — the printed documents of a counter visit: pre-filled
//! application forms and the procedure guide (手続案内書), as PDF.
//!
//! The resident only checks and signs: every form comes out of the printer filled in
//! from the data the control plane holds (resident records, card data, determination,
//! staff answers); what the system cannot know is left blank for the resident, never
//! invented. Typst, used as a library, lays the documents out; the fonts (IPAex
//! Mincho/Gothic, IPAmj明朝 for names with variation selectors) are embedded in
//! every PDF.
//!
//! - [`engine`] — [`Engine`]: fonts loaded once, the template set in use (swapped
//!   atomically on reload), [`Engine::render_form`], [`Engine::render_guide`],
//!   [`Engine::render_bundle`] (one PDF per print job), [`Engine::preview`].
//! - [`template`] — [`TemplateSet`]: the Typst layouts and one TOML data file per form,
//!   checked with file and line; the reference set is embedded from `templates/`.
//! - [`data`] — the agreed data shape, the `…_wareki` siblings, path checking.
//! - [`wareki`] — 和暦 dates (令和8年2月24日, 元年).
//! - [`qr`] — the application number's QR code.
//! - [`fonts`] — loading and checking the fonts.
//! - [`sample`] — a synthetic household for previews.
//!
//! This crate holds no database or network code: the control plane hands in JSON and
//! gets PDF bytes back.
#![forbid(unsafe_code)]

pub mod data;
pub mod engine;
pub mod fonts;
pub mod qr;
pub mod sample;
pub mod template;
pub mod wareki;

pub use engine::{DocumentRequest, Engine, EngineConfig, EngineError, Pdf, RenderError};
pub use template::{FormTemplate, Problem, TemplateError, TemplateSet};
