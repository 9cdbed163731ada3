//! Templates: the data the city edits to change its forms.
//!
//! A template set is a directory (the reference set ships in `templates/` and is
//! embedded in the binary):
//!
//! - `*.typ` — Typst layout files: `lib.typ` (shared parts), `form.typ` (the layout of
//!   every form), `guide.typ` (the procedure guide). They read the data only through
//!   the JSON the engine hands in.
//! - `forms/ID.toml` — one file per form: `id` (the file's stem), `title`,
//!   `department`, `legal_basis`, optional `layout` (a `*.typ` file of the set
//!   exporting `form`; default `form.typ`), `notes`, and `[[section]]`s of fields
//!   with a label and a data path; a field with `blank = true` instead of a path is
//!   left for the resident to fill. See `templates/README.md` for every key.
//!
//! [`TemplateSet::parse`] checks what can be checked without rendering (TOML syntax
//! and keys, required keys, known section kinds and field types, every data path
//! against [`crate::data::FORM_DATA`], layout files present, Typst syntax); the
//! engine then renders every form and the guide with sample data before a set is
//! used ([`crate::Engine::load_templates`]). Every problem names the file and line.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;
use typst::foundations::Bytes;
use typst::syntax::{DiagSpan, DiagSpanKind, FileId, RootedPath, Source, VirtualPath, VirtualRoot};

use crate::data::{Shape, FORM_DATA, PERSON};

/// The default layout of a form.
pub const DEFAULT_LAYOUT: &str = "form.typ";
/// The layout of the procedure guide (exports `guide`).
pub const GUIDE_LAYOUT: &str = "guide.typ";

static EMBEDDED: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/templates");

/// One problem found in a template set: the file, the line (1-based, when known) and
/// what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as the city knows it (path in the template directory).
    pub file: String,
    /// The line, 1-based.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A template set was refused; the set in use (if any) stays in use.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TemplateError {
    /// The directory or a file in it cannot be read.
    #[error("template directory {dir}: {message}")]
    Io {
        /// The directory or file.
        dir: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// One or more templates are broken.
    #[error("{} broken template(s): {}", .0.len(), ProblemList(.0))]
    Invalid(Vec<Problem>),
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl TemplateError {
    /// The problems, when the set was refused for its content.
    pub fn problems(&self) -> &[Problem] {
        match self {
            TemplateError::Invalid(problems) => problems,
            TemplateError::Io { .. } => &[],
        }
    }
}

/// The kinds of section a form may have.
const SECTION_KINDS: [&str; 6] = ["person", "fields", "table", "signature", "office", "text"];
/// The types a field may have.
const FIELD_TYPES: [&str; 8] = [
    "text", "name", "date", "choice", "check", "money", "number", "list",
];

/// A form's data file (`forms/ID.toml`), as written by the city.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FormSpec {
    /// The form id (`KOKUHO-SHUTOKU`), equal to the file's stem.
    pub id: Spanned<String>,
    /// The printed title (国民健康保険 資格取得届).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<Spanned<String>>,
    /// The department printed when the data does not name one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// The law or ordinance the form rests on, printed small at the bottom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    /// The layout file (default `form.typ`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Spanned<String>>,
    /// Certificate request forms: the certificate ids (from the catalogue's
    /// `certificates.toml`) requested on this form.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Plain-text notes for the resident.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The sections, top to bottom.
    #[serde(default)]
    pub section: Vec<Section>,
}

/// A section of a form.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// person, fields (default), table, signature, office or text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Spanned<String>>,
    /// The heading printed over the section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// person: the person's path (`applicant`); table: the list's path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Spanned<String>>,
    /// person: which rows, in order (name, kana, birth_date, sex, relationship,
    /// address, atena).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Spanned<Vec<String>>>,
    /// fields (and extra rows of a person section).
    #[serde(default)]
    pub field: Vec<Field>,
    /// table: the columns; paths are relative to one list item.
    #[serde(default)]
    pub column: Vec<Field>,
    /// table: blank rows are added up to this many rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_rows: Option<u32>,
    /// signature: the declaration; text: the paragraph.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// signature: who signs (届出人, 請求者).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// signature: print a seal circle (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal: Option<bool>,
    /// office: the labels of the boxes of the 市使用欄.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boxes: Option<Vec<String>>,
}

/// A field (a row of a fields section or a column of a table).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// The printed label.
    pub label: Spanned<String>,
    /// Where the value is in the data; absent only with `blank = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Spanned<String>>,
    /// Left blank for the resident to fill by hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blank: Option<bool>,
    /// text (default), name, date, choice, check, money, number or list.
    #[serde(rename = "type")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Spanned<String>>,
    /// name: the path of the reading, printed as furigana over the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kana: Option<Spanned<String>>,
    /// choice (and check): the options; the one in the data is circled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// Two half fields share a row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half: Option<bool>,
    /// A grey hint printed in a blank box.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Height in lines (for text the resident writes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<u32>,
    /// A unit printed after the value (通, 人).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// table: relative column width (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<f64>,
}

/// A form template, checked and ready to render.
#[derive(Debug, Clone)]
pub struct FormTemplate {
    /// The form id.
    pub id: String,
    /// The printed title.
    pub title: String,
    /// The department, when the template names one.
    pub department: Option<String>,
    /// The legal basis, when the template names one.
    pub legal_basis: Option<String>,
    /// The file it came from, for messages.
    pub file: String,
    /// The layout file (`form.typ`).
    pub layout: String,
    /// The certificate ids this form requests (certificate request forms only).
    pub certificates: Vec<String>,
    /// The spec as JSON, as the layout reads it.
    pub(crate) spec: Bytes,
}

/// A complete, checked set of templates. Immutable: a reload builds a new one.
pub struct TemplateSet {
    origin: String,
    base: Option<PathBuf>,
    pub(crate) sources: HashMap<FileId, Source>,
    files: HashMap<FileId, String>,
    forms: BTreeMap<String, FormTemplate>,
}

impl fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateSet")
            .field("origin", &self.origin)
            .field("forms", &self.forms.len())
            .finish()
    }
}

/// The file id of a file at the root of the template set (`/form.typ`).
pub(crate) fn root_file(name: &str) -> Option<FileId> {
    let path = VirtualPath::new(format!("/{name}")).ok()?;
    Some(FileId::new(RootedPath::new(VirtualRoot::Project, path)))
}

/// The line (1-based) a diagnostic span points at in `source`.
pub(crate) fn line_in(source: &Source, span: DiagSpan) -> Option<usize> {
    let range = match span.get() {
        DiagSpanKind::Detached => return None,
        DiagSpanKind::Number { num, sub_range, .. } => source.range(num, sub_range)?,
        DiagSpanKind::Range { range, .. } => range,
    };
    source.lines().byte_to_line(range.start).map(|l| l + 1)
}

impl TemplateSet {
    /// The reference set shipped with the product (`templates/`, embedded).
    pub fn embedded() -> Result<TemplateSet, TemplateError> {
        let mut files = BTreeMap::new();
        collect_embedded(&EMBEDDED, &mut files);
        TemplateSet::parse("embedded:", None, files)
    }

    /// Reads a template directory (`*.typ` and `forms/*.toml`).
    pub fn read_dir(dir: &Path) -> Result<TemplateSet, TemplateError> {
        let io = |path: &Path, e: std::io::Error| TemplateError::Io {
            dir: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut files = BTreeMap::new();
        for (sub, ext) in [("", "typ"), ("forms", "toml")] {
            let folder = dir.join(sub);
            let entries = std::fs::read_dir(&folder).map_err(|e| io(&folder, e))?;
            for entry in entries {
                let path = entry.map_err(|e| io(&folder, e))?.path();
                if path.is_file() && path.extension().and_then(|e| e.to_str()) == Some(ext) {
                    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
                    let name = path
                        .strip_prefix(dir)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned();
                    files.insert(name, text);
                }
            }
        }
        let origin = format!("{}/", dir.display());
        TemplateSet::parse(&origin, Some(dir.to_path_buf()), files)
    }

    /// Builds a set from files (relative path → text): `NAME.typ` and
    /// `forms/ID.toml`. `origin` prefixes file names in messages.
    pub fn parse(
        origin: &str,
        base: Option<PathBuf>,
        files: BTreeMap<String, String>,
    ) -> Result<TemplateSet, TemplateError> {
        let mut problems = Vec::new();
        let mut sources = HashMap::new();
        let mut names = HashMap::new();
        let mut specs = Vec::new();
        for (name, text) in &files {
            let display = format!("{origin}{name}");
            if let Some(stem) = name.strip_suffix(".typ").filter(|s| !s.contains('/')) {
                if !is_simple_name(stem) {
                    problems.push(Problem {
                        file: display,
                        line: None,
                        message: "layout file names may use only letters, digits, - and _".into(),
                    });
                    continue;
                }
                let Some(id) = root_file(name) else {
                    problems.push(Problem {
                        file: display,
                        line: None,
                        message: "not a usable file name".into(),
                    });
                    continue;
                };
                let source = Source::new(id, text.clone());
                let (errors, _warnings) = source.root().errors_and_warnings();
                for error in errors {
                    let line = line_in(&source, error.span);
                    problems.push(Problem {
                        file: display.clone(),
                        line,
                        message: format!("Typst syntax error: {}", error.message),
                    });
                }
                names.insert(id, display);
                sources.insert(id, source);
            } else if let Some(stem) = name
                .strip_prefix("forms/")
                .and_then(|n| n.strip_suffix(".toml"))
            {
                specs.push((stem.to_string(), display, text));
            }
        }
        for required in [DEFAULT_LAYOUT, GUIDE_LAYOUT] {
            if !root_file(required).is_some_and(|id| sources.contains_key(&id)) {
                problems.push(Problem {
                    file: format!("{origin}{required}"),
                    line: None,
                    message: "missing: every template set needs it".into(),
                });
            }
        }
        let mut forms = BTreeMap::new();
        for (stem, display, text) in specs {
            match check_form(&stem, &display, text, &sources) {
                Ok(form) => {
                    forms.insert(form.id.clone(), form);
                }
                Err(mut found) => problems.append(&mut found),
            }
        }
        let mut claimed: HashMap<&str, &str> = HashMap::new();
        for form in forms.values() {
            for certificate in &form.certificates {
                if let Some(other) = claimed.insert(certificate, &form.id) {
                    problems.push(Problem {
                        file: form.file.clone(),
                        line: None,
                        message: format!(
                            "certificate `{certificate}` is already requested on form `{other}`"
                        ),
                    });
                }
            }
        }
        if forms.is_empty() && problems.is_empty() {
            problems.push(Problem {
                file: format!("{origin}forms/"),
                line: None,
                message: "no form templates (forms/ID.toml)".into(),
            });
        }
        if !problems.is_empty() {
            return Err(TemplateError::Invalid(problems));
        }
        Ok(TemplateSet {
            origin: origin.to_string(),
            base,
            sources,
            files: names,
            forms,
        })
    }

    /// Where the set came from (`embedded:` or the directory).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The directory the set was read from, if any.
    pub fn directory(&self) -> Option<&Path> {
        self.base.as_deref()
    }

    /// The form templates, by id.
    pub fn forms(&self) -> impl Iterator<Item = &FormTemplate> {
        self.forms.values()
    }

    /// One form template.
    pub fn form(&self, id: &str) -> Option<&FormTemplate> {
        self.forms.get(id)
    }

    /// The request form of a certificate (by the catalogue's certificate id).
    pub fn form_for_certificate(&self, certificate_id: &str) -> Option<&FormTemplate> {
        self.forms
            .values()
            .find(|f| f.certificates.iter().any(|c| c == certificate_id))
    }

    /// The file name (for messages) of a Typst file of the set.
    pub(crate) fn file_name(&self, id: FileId) -> Option<&str> {
        self.files.get(&id).map(String::as_str)
    }
}

fn collect_embedded(dir: &include_dir::Dir<'static>, out: &mut BTreeMap<String, String>) {
    for file in dir.files() {
        if let Some(text) = file.contents_utf8() {
            out.insert(
                file.path().to_string_lossy().replace('\\', "/"),
                text.to_string(),
            );
        }
    }
    for sub in dir.dirs() {
        collect_embedded(sub, out);
    }
}

fn is_simple_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn at<T>(&mut self, spanned: &Spanned<T>, message: String) {
        let line = self.line_of(spanned.span().start);
        self.problems.push(Problem {
            file: self.file.to_string(),
            line: Some(line),
            message,
        });
    }

    fn path(&mut self, base: Shape, path: &Spanned<String>, what: &str) -> Option<Shape> {
        let shape = base.at(path.get_ref());
        if shape.is_none() {
            self.at(
                path,
                format!(
                    "unknown {what} path `{}` (not in the data handed to forms)",
                    path.get_ref()
                ),
            );
        }
        shape
    }

    fn field(&mut self, base: Shape, field: &Field) {
        let kind = field
            .kind
            .as_ref()
            .map(|k| k.get_ref().as_str())
            .unwrap_or("text");
        if let Some(k) = &field.kind {
            if !FIELD_TYPES.contains(&k.get_ref().as_str()) {
                self.at(
                    k,
                    format!(
                        "unknown field type `{}` (one of {})",
                        k.get_ref(),
                        FIELD_TYPES.join(", ")
                    ),
                );
            }
        }
        if field.label.get_ref().trim().is_empty() {
            self.at(&field.label, "a field needs a label".into());
        }
        let blank = field.blank.unwrap_or(false);
        match (&field.path, blank) {
            (Some(path), true) => self.at(
                path,
                format!(
                    "field `{}` has both a path and blank = true",
                    field.label.get_ref()
                ),
            ),
            (None, false) => self.at(
                &field.label,
                format!(
                    "field `{}` needs a path, or blank = true to leave it for the resident",
                    field.label.get_ref()
                ),
            ),
            (Some(path), false) => {
                if let Some(shape) = self.path(base, path, "field") {
                    let fits = match (kind, shape) {
                        (_, Shape::Any) => true,
                        ("date", s) => s == Shape::Date,
                        ("list", s) => matches!(s, Shape::List(_)),
                        ("money" | "number", s) => matches!(s, Shape::Number | Shape::Text),
                        (_, s) => matches!(s, Shape::Text | Shape::Date | Shape::Number),
                    };
                    if !fits {
                        self.at(
                            path,
                            format!("`{}` cannot be printed as a {kind} field", path.get_ref()),
                        );
                    }
                }
            }
            (None, true) => {}
        }
        if let Some(kana) = &field.kana {
            if kind != "name" {
                self.at(kana, "kana is only for name fields".into());
            }
            self.path(base, kana, "kana");
        }
        if kind == "choice" && field.options.as_ref().is_none_or(|o| o.is_empty()) {
            self.at(
                &field.label,
                format!("choice field `{}` needs options", field.label.get_ref()),
            );
        }
        if kind == "check" && field.options.as_ref().is_some_and(|o| o.len() != 2) {
            self.at(
                &field.label,
                "a check field's options are two: yes and no".into(),
            );
        }
        if field.width.is_some_and(|w| !(w > 0.0 && w <= 20.0)) {
            self.at(
                &field.label,
                "width is a relative width between 0 and 20".into(),
            );
        }
    }

    fn section(&mut self, section: &Section, index: usize) {
        let kind = section
            .kind
            .as_ref()
            .map(|k| k.get_ref().as_str())
            .unwrap_or("fields");
        if let Some(k) = &section.kind {
            if !SECTION_KINDS.contains(&k.get_ref().as_str()) {
                self.at(
                    k,
                    format!(
                        "unknown section kind `{}` (one of {})",
                        k.get_ref(),
                        SECTION_KINDS.join(", ")
                    ),
                );
                return;
            }
        }
        let section_line = |c: &Self| {
            section
                .kind
                .as_ref()
                .map(|k| c.line_of(k.span().start))
                .or_else(|| section.path.as_ref().map(|p| c.line_of(p.span().start)))
        };
        match kind {
            "person" => {
                let Some(path) = &section.path else {
                    let line = section_line(self);
                    self.problems.push(Problem {
                        file: self.file.to_string(),
                        line,
                        message: format!("person section {} needs the person's path", index + 1),
                    });
                    return;
                };
                if let Some(shape) = self.path(FORM_DATA, path, "person") {
                    if shape != Shape::Person {
                        self.at(path, format!("`{}` is not a person", path.get_ref()));
                    }
                }
                if let Some(items) = &section.items {
                    for item in items.get_ref() {
                        if !PERSON.iter().any(|(name, _)| name == item) {
                            self.at(items, format!("unknown person item `{item}`"));
                        }
                    }
                }
                for field in &section.field {
                    self.field(FORM_DATA, field);
                }
            }
            "fields" => {
                for field in &section.field {
                    self.field(FORM_DATA, field);
                }
            }
            "table" => {
                let Some(path) = &section.path else {
                    let line = section_line(self);
                    self.problems.push(Problem {
                        file: self.file.to_string(),
                        line,
                        message: format!("table section {} needs the list's path", index + 1),
                    });
                    return;
                };
                let row = match self.path(FORM_DATA, path, "table") {
                    Some(Shape::List(inner)) => *inner,
                    Some(Shape::Any) => Shape::Any,
                    Some(_) => {
                        self.at(path, format!("`{}` is not a list", path.get_ref()));
                        return;
                    }
                    None => return,
                };
                if section.column.is_empty() {
                    self.at(path, "a table needs columns ([[section.column]])".into());
                }
                for column in &section.column {
                    self.field(row, column);
                }
            }
            _ => {}
        }
    }
}

fn check_form(
    stem: &str,
    file: &str,
    text: &str,
    sources: &HashMap<FileId, Source>,
) -> Result<FormTemplate, Vec<Problem>> {
    let spec: FormSpec = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        vec![Problem {
            file: file.to_string(),
            line,
            message: e.message().trim().to_string(),
        }]
    })?;
    let mut c = Checker {
        file,
        text,
        problems: Vec::new(),
    };
    if spec.id.get_ref() != stem {
        c.at(
            &spec.id,
            format!(
                "id `{}` must equal the file name `{stem}`",
                spec.id.get_ref()
            ),
        );
    }
    if !is_simple_name(spec.id.get_ref()) {
        c.at(
            &spec.id,
            "a form id may use only letters, digits, - and _".into(),
        );
    }
    let title = match &spec.title {
        Some(t) if !t.get_ref().trim().is_empty() => t.get_ref().clone(),
        Some(t) => {
            c.at(t, "the title is empty".into());
            String::new()
        }
        None => {
            c.problems.push(Problem {
                file: file.to_string(),
                line: Some(1),
                message: "missing title (title = \"…\")".into(),
            });
            String::new()
        }
    };
    let layout = match &spec.layout {
        Some(l) => {
            let name = l.get_ref();
            let known = name.strip_suffix(".typ").is_some_and(is_simple_name)
                && root_file(name).is_some_and(|id| sources.contains_key(&id));
            if !known {
                c.at(
                    l,
                    format!("layout `{name}` is not a .typ file of this template set"),
                );
            }
            name.clone()
        }
        None => DEFAULT_LAYOUT.to_string(),
    };
    if spec.section.is_empty() {
        c.problems.push(Problem {
            file: file.to_string(),
            line: None,
            message: "a form needs at least one [[section]]".into(),
        });
    }
    for (i, section) in spec.section.iter().enumerate() {
        c.section(section, i);
    }
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let spec_json = serde_json::to_vec(&spec).map_err(|e| {
        vec![Problem {
            file: file.to_string(),
            line: None,
            message: e.to_string(),
        }]
    })?;
    Ok(FormTemplate {
        id: spec.id.into_inner(),
        title,
        department: spec.department,
        legal_basis: spec.legal_basis,
        file: file.to_string(),
        layout,
        certificates: spec.certificates.clone(),
        spec: Bytes::new(spec_json),
    })
}
