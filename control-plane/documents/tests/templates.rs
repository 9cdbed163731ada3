//! Templates the city edits: a broken one is refused with file and line, and the set
//! in use stays; a good directory replaces the set; missing fonts stop the start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{pdftotext, resident_data, squeezed};
use kakanai_documents::fonts::FontError;
use kakanai_documents::{Engine, EngineConfig, EngineError, TemplateError};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");

/// A copy of the shipped templates the test may break.
fn copy_of_shipped() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(Path::new(SHIPPED), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read templates") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

fn edit(path: PathBuf, from: &str, to: &str) {
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
}

fn line_of(path: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(path).expect("read");
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

/// Refused, with exactly the file and line expected among the problems; and the set
/// in use still renders the way it did.
fn assert_refused_keeping_old(engine: &Engine, dir: &Path, file: &str, line: Option<usize>) {
    let before = engine.templates();
    let pdf_before = engine
        .render_form("KOKUHO-SHUTOKU", &resident_data("KOKUHO-SHUTOKU"))
        .unwrap();
    let err = engine
        .load_templates(dir)
        .expect_err("broken template accepted");
    let problems = err.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.file.ends_with(file) && (line.is_none() || p.line == line)),
        "expected {file}:{line:?} in: {err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(file),
        "the message names the file: {message}"
    );
    if let Some(line) = line {
        assert!(
            message.contains(&format!("{file}:{line}")),
            "the message names the line: {message}"
        );
    }
    assert!(
        std::sync::Arc::ptr_eq(&before, &engine.templates()),
        "the set in use changed"
    );
    let pdf_after = engine
        .render_form("KOKUHO-SHUTOKU", &resident_data("KOKUHO-SHUTOKU"))
        .unwrap();
    assert_eq!(pdf_before.sha256, pdf_after.sha256, "rendering changed");
}

fn fresh_engine() -> Engine {
    Engine::new(EngineConfig::default()).expect("engine")
}

#[test]
fn a_typst_syntax_error_is_refused_with_file_and_line() {
    let engine = fresh_engine();
    let dir = copy_of_shipped();
    let anchor = "#let field-table(items) = {";
    let line = line_of(&dir.path().join("lib.typ"), anchor);
    edit(
        dir.path().join("lib.typ"),
        anchor,
        "#let field-table(items) = { let x = (1, ]",
    );
    assert_refused_keeping_old(&engine, dir.path(), "lib.typ", Some(line));
}

#[test]
fn a_layout_error_is_refused_with_file_and_line() {
    let engine = fresh_engine();
    let dir = copy_of_shipped();
    let path = dir.path().join("form.typ");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n#let form(spec, data, qr) = {\n  let n = 1 + \"一\"\n  [#n]\n}\n");
    std::fs::write(&path, &text).unwrap();
    let line = text.lines().count() - 2;
    assert_refused_keeping_old(&engine, dir.path(), "form.typ", Some(line));
}

#[test]
fn an_unknown_field_path_is_refused_with_file_and_line() {
    let engine = fresh_engine();
    let dir = copy_of_shipped();
    let form = dir.path().join("forms/KOKUHO-SHUTOKU.toml");
    edit(
        form.clone(),
        "path = \"event.previous_address\"",
        "path = \"event.previus_address\"",
    );
    let line = line_of(&form, "event.previus_address");
    assert_refused_keeping_old(&engine, dir.path(), "forms/KOKUHO-SHUTOKU.toml", Some(line));
    let err = engine.load_templates(dir.path()).unwrap_err();
    assert!(err.to_string().contains("event.previus_address"));
}

#[test]
fn a_missing_title_is_refused_naming_the_file() {
    let engine = fresh_engine();
    let dir = copy_of_shipped();
    edit(
        dir.path().join("forms/JUKI-IDO.toml"),
        "title = \"住民異動届\"\n",
        "",
    );
    assert_refused_keeping_old(&engine, dir.path(), "forms/JUKI-IDO.toml", Some(1));
    assert!(engine
        .load_templates(dir.path())
        .unwrap_err()
        .to_string()
        .contains("missing title"));
}

#[test]
fn a_toml_syntax_error_or_unknown_key_is_refused_with_file_and_line() {
    let engine = fresh_engine();
    let dir = copy_of_shipped();
    let form = dir.path().join("forms/INKAN-TOROKU.toml");
    edit(
        form.clone(),
        "kind = \"signature\"",
        "kind = \"signature\"\nsignr = \"typo\"",
    );
    let line = line_of(&form, "signr");
    assert_refused_keeping_old(&engine, dir.path(), "forms/INKAN-TOROKU.toml", Some(line));

    let dir = copy_of_shipped();
    let form = dir.path().join("forms/INKAN-TOROKU.toml");
    edit(form.clone(), "kind = \"signature\"", "kind = \"signature");
    let line = line_of(&form, "kind = \"signature");
    assert_refused_keeping_old(&engine, dir.path(), "forms/INKAN-TOROKU.toml", Some(line));
}

#[test]
fn a_blank_field_must_be_declared_and_a_missing_directory_is_an_error() {
    let engine = fresh_engine();
    let dir = copy_of_shipped();
    let form = dir.path().join("forms/KOKUHO-SHUTOKU.toml");
    // A field with neither a path nor blank = true: a forgotten path, not a blank.
    edit(
        form.clone(),
        "label = \"前の健康保険\"\nblank = true",
        "label = \"前の健康保険\"",
    );
    let line = line_of(&form, "前の健康保険");
    assert_refused_keeping_old(&engine, dir.path(), "forms/KOKUHO-SHUTOKU.toml", Some(line));

    let gone = dir.path().join("does-not-exist");
    assert!(matches!(
        engine.load_templates(&gone),
        Err(TemplateError::Io { .. })
    ));
}

#[test]
fn an_edited_directory_replaces_the_set_and_a_broken_one_then_keeps_it() {
    let engine = fresh_engine();
    assert_eq!(engine.templates().origin(), "embedded:");
    let dir = copy_of_shipped();
    edit(
        dir.path().join("forms/KOKUHO-SHUTOKU.toml"),
        "title = \"国民健康保険 資格取得届\"",
        "title = \"国民健康保険 加入届（書無市様式）\"",
    );
    engine
        .load_templates(dir.path())
        .expect("good directory loads");
    assert_eq!(engine.templates().directory(), Some(dir.path()));
    let pdf = engine
        .render_form("KOKUHO-SHUTOKU", &resident_data("KOKUHO-SHUTOKU"))
        .unwrap();
    assert!(squeezed(&pdftotext(&pdf.bytes)).contains("国民健康保険加入届（書無市様式）"));

    // Now break it: the edited set stays in use.
    edit(
        dir.path().join("guide.typ"),
        "#let guide(data) = {",
        "#let guide(data) = {{",
    );
    assert_refused_keeping_old(&engine, dir.path(), "guide.typ", None);
    assert_eq!(engine.templates().directory(), Some(dir.path()));
}

#[test]
fn a_configured_template_directory_is_checked_at_start_up() {
    let dir = copy_of_shipped();
    edit(
        dir.path().join("forms/JUKI-IDO.toml"),
        "path = \"event.date\"",
        "path = \"event.when\"",
    );
    let err = Engine::new(EngineConfig {
        templates_dir: Some(dir.path().to_path_buf()),
        ..EngineConfig::default()
    })
    .expect_err("broken templates at start-up");
    assert!(matches!(err, EngineError::Templates(_)));
    assert!(err.to_string().contains("forms/JUKI-IDO.toml:"), "{err}");
}

#[test]
fn missing_fonts_stop_the_start_with_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let err = Engine::new(EngineConfig {
        font_dirs: vec![empty.path().to_path_buf()],
        ..EngineConfig::default()
    })
    .expect_err("no fonts");
    match &err {
        EngineError::Fonts(FontError::MissingFamily {
            family, package, ..
        }) => {
            assert_eq!(*family, "IPAexMincho");
            assert_eq!(*package, "fonts-ipaexfont");
        }
        other => panic!("unexpected: {other}"),
    }
    assert!(err
        .to_string()
        .contains(&empty.path().display().to_string()));

    // IPAex present, IPAmj明朝 absent: names could not print their variants.
    let err = Engine::new(EngineConfig {
        font_dirs: vec![
            "/usr/share/fonts/opentype/ipaexfont-mincho".into(),
            "/usr/share/fonts/opentype/ipaexfont-gothic".into(),
        ],
        ..EngineConfig::default()
    })
    .expect_err("no IPAmj");
    assert!(err.to_string().contains("fonts-ipamj-mincho"), "{err}");

    let err = Engine::new(EngineConfig {
        font_dirs: vec![empty.path().join("nowhere")],
        ..EngineConfig::default()
    })
    .expect_err("missing directory");
    assert!(matches!(
        err,
        EngineError::Fonts(FontError::Directory { .. })
    ));
}
