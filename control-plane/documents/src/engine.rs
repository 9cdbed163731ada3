//! The engine: fonts and templates loaded once, documents rendered on demand.
//!
//! Rendering is Typst as a library. Each render builds a small [`World`] over the
//! engine's shared parts (the standard library, the font book and fonts, the template
//! set's parsed sources) and the render's own virtual files:
//!
//! - `/main.typ` — generated: imports the layout and calls it; it names only fixed
//!   virtual paths and checked layout file names, never data;
//! - `/data.json` (or `/bundle/N/data.json`) — the data, with the `…_wareki` siblings
//!   added ([`crate::data::prepare`]); the layout reads it with `json(...)`, so data is
//!   never Typst code;
//! - `/spec.json` — the form's template (its TOML as JSON);
//! - `/qr.png` — the application number's QR code.
//!
//! Typst memoises (comemo) evaluation of the unchanged layout files and the fonts'
//! shaping across renders; the cache is trimmed after every render so a long-running
//! service does not grow it without bound.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use serde_json::Value;
use sha2::{Digest, Sha256};
use typst::diag::{FileError, FileResult, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime, Duration, Smart};
use typst::syntax::{FileId, Source};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};
use typst_layout::PagedDocument;

use crate::data;
use crate::fonts::{default_font_dirs, FontError, Fonts};
use crate::qr::{self, QrError};
use crate::sample;
use crate::template::{
    line_in, root_file, Problem, TemplateError, TemplateSet, DEFAULT_LAYOUT, GUIDE_LAYOUT,
};

/// How many trims an unused cached result survives (comemo's eviction age).
const CACHE_MAX_AGE: usize = 10;
/// Renders between two trims of the cache.
const EVICT_EVERY: usize = 32;

/// Start-up configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directories holding the fonts (default: the Debian locations of IPAex and
    /// IPAmj明朝, see [`default_font_dirs`]).
    pub font_dirs: Vec<PathBuf>,
    /// A template directory to use instead of the embedded reference set.
    pub templates_dir: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            font_dirs: default_font_dirs(),
            templates_dir: None,
        }
    }
}

/// The engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Fonts are missing or unreadable.
    #[error(transparent)]
    Fonts(#[from] FontError),
    /// The templates are broken.
    #[error(transparent)]
    Templates(#[from] TemplateError),
}

/// A document could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// No template has this form id.
    #[error("no template for form `{0}`")]
    UnknownForm(String),
    /// The data is not a JSON object.
    #[error("the data of a document must be a JSON object")]
    NotAnObject,
    /// Typst refused the layout (file and line of the layout).
    #[error("layout error: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Layout(Vec<Problem>),
    /// The PDF could not be written.
    #[error("PDF export: {0}")]
    Pdf(String),
    /// The QR code could not be made.
    #[error(transparent)]
    Qr(#[from] QrError),
}

/// A rendered PDF.
#[derive(Clone, PartialEq, Eq)]
pub struct Pdf {
    /// The PDF file.
    pub bytes: Vec<u8>,
    /// Number of pages.
    pub pages: usize,
    /// SHA-256 of `bytes`, lower-case hex (what the application record keeps).
    pub sha256: String,
}

impl std::fmt::Debug for Pdf {
    // The bytes hold personal data: only their size and hash are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pdf")
            .field("len", &self.bytes.len())
            .field("pages", &self.pages)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl Pdf {
    fn new(bytes: Vec<u8>, pages: usize) -> Pdf {
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Pdf {
            bytes,
            pages,
            sha256,
        }
    }
}

/// One document of a bundle.
#[derive(Debug, Clone, Copy)]
pub enum DocumentRequest<'a> {
    /// The procedure guide of a visit.
    Guide(&'a Value),
    /// A form, by form id, with its data.
    Form {
        /// The form id.
        id: &'a str,
        /// The form's data.
        data: &'a Value,
    },
}

/// Renders the printed documents. Create one at start-up and share it (`Send +
/// Sync`); fonts are loaded and indexed once.
pub struct Engine {
    library: LazyHash<Library>,
    fonts: Fonts,
    templates: RwLock<Arc<TemplateSet>>,
    renders: AtomicUsize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("fonts", &self.fonts)
            .field("templates", &*self.templates())
            .finish()
    }
}

// The engine is created once and shared between the service's threads.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Engine>();
};

/// The files of one render, beside the template set's sources.
struct RenderWorld<'a> {
    library: &'a LazyHash<Library>,
    fonts: &'a Fonts,
    set: &'a TemplateSet,
    main: Source,
    files: HashMap<FileId, Bytes>,
}

impl World for RenderWorld<'_> {
    fn library(&self) -> &LazyHash<Library> {
        self.library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &self.fonts.book
    }

    fn main(&self) -> FileId {
        self.main.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            return Ok(self.main.clone());
        }
        self.set
            .sources
            .get(&id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if let Some(bytes) = self.files.get(&id) {
            return Ok(bytes.clone());
        }
        self.source(id)
            .map(|source| Bytes::from_string(source.text().to_string()))
    }

    fn font(&self, index: usize) -> Option<Font> {
        self.fonts.fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        // Documents carry the dates in their data; "today" would make a re-render of
        // the same application differ.
        None
    }
}

fn not_found(id: FileId) -> FileError {
    FileError::NotFound(id.vpath().get_with_slash().into())
}

fn vfile(path: &str) -> Result<FileId, RenderError> {
    root_file(path.trim_start_matches('/')).ok_or_else(|| {
        RenderError::Layout(vec![Problem {
            file: path.to_string(),
            line: None,
            message: "invalid virtual path".into(),
        }])
    })
}

impl Engine {
    /// Loads the fonts and the templates (the configured directory, else the embedded
    /// reference set) and checks every template by rendering it with sample data.
    pub fn new(config: EngineConfig) -> Result<Engine, EngineError> {
        let fonts = Fonts::load(&config.font_dirs)?;
        let engine = Engine {
            library: LazyHash::new(Library::builder().build()),
            fonts,
            templates: RwLock::new(Arc::new(TemplateSet::embedded()?)),
            renders: AtomicUsize::new(0),
        };
        match &config.templates_dir {
            Some(dir) => engine.load_templates(dir)?,
            None => engine.check(&engine.templates())?,
        }
        Ok(engine)
    }

    /// The template set in use.
    pub fn templates(&self) -> Arc<TemplateSet> {
        self.templates
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The families of the loaded fonts.
    pub fn font_families(&self) -> Vec<String> {
        self.fonts.families()
    }

    /// Reads, checks and (only if every template renders) switches to the template
    /// directory `dir`. On any error the set in use stays in use.
    pub fn load_templates(&self, dir: &std::path::Path) -> Result<(), TemplateError> {
        let set = TemplateSet::read_dir(dir)?;
        self.check(&set)?;
        *self
            .templates
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
        Ok(())
    }

    /// Checks a template set without switching to it: every form and the guide must
    /// render with sample data.
    pub fn check(&self, set: &TemplateSet) -> Result<(), TemplateError> {
        let mut problems = Vec::new();
        for form in set.forms() {
            let data = sample::form_data(form);
            if let Err(e) = self.render_form_with(set, &form.id, &data) {
                problems.extend(problems_of(e, &form.file));
            }
        }
        if let Err(e) = self.render_guide_with(set, &sample::guide_data()) {
            problems.extend(problems_of(e, &format!("{}{GUIDE_LAYOUT}", set.origin())));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TemplateError::Invalid(problems))
        }
    }

    /// Renders a form with its data.
    pub fn render_form(&self, form_id: &str, data: &Value) -> Result<Pdf, RenderError> {
        self.render_form_with(&self.templates(), form_id, data)
    }

    /// Renders the procedure guide of a visit.
    pub fn render_guide(&self, data: &Value) -> Result<Pdf, RenderError> {
        self.render_guide_with(&self.templates(), data)
    }

    /// Renders a form with sample data (a synthetic resident), for the city to see a
    /// template it edits.
    pub fn preview(&self, form_id: &str) -> Result<Pdf, RenderError> {
        let set = self.templates();
        let form = set
            .form(form_id)
            .ok_or_else(|| RenderError::UnknownForm(form_id.to_string()))?;
        self.render_form_with(&set, form_id, &sample::form_data(form))
    }

    /// Renders the procedure guide with sample data.
    pub fn preview_guide(&self) -> Result<Pdf, RenderError> {
        self.render_guide(&sample::guide_data())
    }

    /// Renders several documents into one PDF (one print job), in the order given;
    /// each document starts on a new page.
    pub fn render_bundle(&self, documents: &[DocumentRequest<'_>]) -> Result<Pdf, RenderError> {
        let set = self.templates();
        let mut main = String::new();
        let mut imports = Vec::new();
        let mut calls = String::new();
        let mut files = HashMap::new();
        for (i, document) in documents.iter().enumerate() {
            let data_path = format!("/bundle/{i}/data.json");
            match document {
                DocumentRequest::Guide(data) => {
                    files.insert(vfile(&data_path)?, data_bytes(data)?);
                    let alias = import_alias(&mut imports, GUIDE_LAYOUT);
                    calls.push_str(&format!("#{alias}.guide(json(\"{data_path}\"))\n"));
                }
                DocumentRequest::Form { id, data } => {
                    let form = set
                        .form(id)
                        .ok_or_else(|| RenderError::UnknownForm(id.to_string()))?;
                    let spec_path = format!("/bundle/{i}/spec.json");
                    let qr_path = format!("/bundle/{i}/qr.png");
                    files.insert(vfile(&data_path)?, data_bytes(data)?);
                    files.insert(vfile(&spec_path)?, form.spec.clone());
                    let qr_arg = match qr_file(data)? {
                        Some(png) => {
                            files.insert(vfile(&qr_path)?, png);
                            format!("\"{qr_path}\"")
                        }
                        None => "none".to_string(),
                    };
                    let alias = import_alias(&mut imports, &form.layout);
                    calls.push_str(&format!(
                        "#{alias}.form(json(\"{spec_path}\"), json(\"{data_path}\"), {qr_arg})\n"
                    ));
                }
            }
        }
        for (alias, layout) in &imports {
            main.push_str(&format!("#import \"/{layout}\" as {alias}\n"));
        }
        main.push_str("#set document(title: \"手続書類\")\n");
        main.push_str(&calls);
        self.compile(&set, "/bundle.typ", main, files)
    }

    fn render_form_with(
        &self,
        set: &TemplateSet,
        form_id: &str,
        data: &Value,
    ) -> Result<Pdf, RenderError> {
        let form = set
            .form(form_id)
            .ok_or_else(|| RenderError::UnknownForm(form_id.to_string()))?;
        let mut files = HashMap::new();
        files.insert(vfile("/data.json")?, data_bytes(data)?);
        files.insert(vfile("/spec.json")?, form.spec.clone());
        let qr_arg = match qr_file(data)? {
            Some(png) => {
                files.insert(vfile("/qr.png")?, png);
                "\"/qr.png\""
            }
            None => "none",
        };
        // The layout name was checked to be a plain file name of the set.
        let main = format!(
            "#import \"/{}\" as layout\n\
             #set document(title: json(\"/spec.json\").title)\n\
             #layout.form(json(\"/spec.json\"), json(\"/data.json\"), {qr_arg})\n",
            form.layout
        );
        self.compile(set, "/main.typ", main, files)
    }

    fn render_guide_with(&self, set: &TemplateSet, data: &Value) -> Result<Pdf, RenderError> {
        let mut files = HashMap::new();
        files.insert(vfile("/data.json")?, data_bytes(data)?);
        let main = format!(
            "#import \"/{GUIDE_LAYOUT}\" as layout\n\
             #set document(title: \"手続きのご案内\")\n\
             #layout.guide(json(\"/data.json\"))\n"
        );
        self.compile(set, "/guide-main.typ", main, files)
    }

    fn compile(
        &self,
        set: &TemplateSet,
        main_path: &str,
        main: String,
        files: HashMap<FileId, Bytes>,
    ) -> Result<Pdf, RenderError> {
        let world = RenderWorld {
            library: &self.library,
            fonts: &self.fonts,
            set,
            main: Source::new(vfile(main_path)?, main),
            files,
        };
        let compiled = typst::compile::<PagedDocument>(&world).output;
        let result = match compiled {
            Ok(document) => {
                let options = typst_pdf::PdfOptions {
                    creator: Smart::Custom(Some("Kakanai".into())),
                    ..Default::default()
                };
                typst_pdf::pdf(&document, &options)
                    .map(|bytes| Pdf::new(bytes, document.pages().len()))
                    .map_err(|diags| RenderError::Pdf(messages(&diags)))
            }
            Err(diags) => Err(RenderError::Layout(
                diags.iter().map(|d| problem(&world, d)).collect(),
            )),
        };
        // Trimming walks every cache: once every so many renders is enough to bound
        // it and keeps the cost off the single render.
        if self.renders.fetch_add(1, Ordering::Relaxed) % EVICT_EVERY == EVICT_EVERY - 1 {
            comemo::evict(CACHE_MAX_AGE);
        }
        result
    }
}

/// The alias under which a layout file is imported in a bundle's main file.
fn import_alias(imports: &mut Vec<(String, String)>, layout: &str) -> String {
    if let Some((alias, _)) = imports.iter().find(|(_, l)| l == layout) {
        return alias.clone();
    }
    let alias = format!("layout{}", imports.len());
    imports.push((alias.clone(), layout.to_string()));
    alias
}

fn data_bytes(data: &Value) -> Result<Bytes, RenderError> {
    if !data.is_object() {
        return Err(RenderError::NotAnObject);
    }
    let prepared = data::prepare(data);
    serde_json::to_vec(&prepared)
        .map(Bytes::new)
        .map_err(|_| RenderError::NotAnObject)
}

fn qr_file(data: &Value) -> Result<Option<Bytes>, RenderError> {
    match data::lookup(data, "application.number").and_then(Value::as_str) {
        Some(number) if !number.is_empty() => Ok(Some(Bytes::new(qr::png(number)?))),
        _ => Ok(None),
    }
}

fn messages(diags: &[SourceDiagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.message.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn problem(world: &RenderWorld<'_>, diag: &SourceDiagnostic) -> Problem {
    // Errors raised inside a function point at the call chain; the innermost span in a
    // template file is the useful one.
    let spans = std::iter::once(diag.span).chain(diag.trace.iter().map(|t| t.span.into()));
    for span in spans {
        let Some(id) = span.id() else { continue };
        if let (Some(file), Some(source)) = (world.set.file_name(id), world.set.sources.get(&id)) {
            return Problem {
                file: file.to_string(),
                line: line_in(source, span),
                message: diag.message.to_string(),
            };
        }
    }
    Problem {
        file: format!("{}{}", world.set.origin(), DEFAULT_LAYOUT),
        line: None,
        message: diag.message.to_string(),
    }
}

fn problems_of(error: RenderError, file: &str) -> Vec<Problem> {
    match error {
        RenderError::Layout(problems) => problems
            .into_iter()
            .map(|p| Problem {
                message: format!("{} (checking {file} with sample data)", p.message),
                ..p
            })
            .collect(),
        other => vec![Problem {
            file: file.to_string(),
            line: None,
            message: other.to_string(),
        }],
    }
}
