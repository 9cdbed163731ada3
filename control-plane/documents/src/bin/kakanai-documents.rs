//! `kakanai-documents` — the city's tool for its document templates: list the forms,
//! check an edited template directory, preview a template with sample data, render a
//! form or guide from a JSON data file.
//!
//! ```text
//! kakanai-documents list [--templates DIR]
//! kakanai-documents check DIR
//! kakanai-documents preview FORM|guide [--templates DIR] -o OUT.pdf
//! kakanai-documents render FORM|guide --data DATA.json [--templates DIR] -o OUT.pdf
//! ```
//!
//! `--font-dir DIR` (repeatable) replaces the default font directories. Exit status 0
//! on success, 1 when a template is refused or a render fails, 2 on usage errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kakanai_documents::{Engine, EngineConfig, EngineError, Pdf};

#[derive(Parser)]
#[command(
    name = "kakanai-documents",
    about = "Kakanai printed documents: check, preview and render templates"
)]
struct Cli {
    /// A font directory (repeatable); default: the Debian IPAex and IPAmj directories.
    #[arg(long = "font-dir", global = true)]
    font_dirs: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the forms of a template set.
    List {
        /// Template directory (default: the embedded reference set).
        #[arg(long)]
        templates: Option<PathBuf>,
    },
    /// Check a template directory: every form and the guide must render.
    Check {
        /// The directory (layout *.typ files and forms/*.toml).
        dir: PathBuf,
    },
    /// Render a template with sample data.
    Preview {
        /// Form id, or `guide`.
        form: String,
        /// Template directory (default: the embedded reference set).
        #[arg(long)]
        templates: Option<PathBuf>,
        /// Output PDF.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Render a form (or the guide) from a JSON data file.
    Render {
        /// Form id, or `guide`.
        form: String,
        /// The data (JSON object).
        #[arg(long)]
        data: PathBuf,
        /// Template directory (default: the embedded reference set).
        #[arg(long)]
        templates: Option<PathBuf>,
        /// Output PDF.
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn engine(font_dirs: &[PathBuf], templates: Option<PathBuf>) -> Result<Engine, EngineError> {
    let mut config = EngineConfig {
        templates_dir: templates,
        ..EngineConfig::default()
    };
    if !font_dirs.is_empty() {
        config.font_dirs = font_dirs.to_vec();
    }
    Engine::new(config)
}

fn write(pdf: &Pdf, output: &PathBuf) -> anyhow::Result<()> {
    std::fs::write(output, &pdf.bytes).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{}",
        serde_json::json!({"output": output, "pages": pdf.pages, "bytes": pdf.bytes.len(), "sha256": pdf.sha256})
    );
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::List { templates } => {
            let engine = engine(&cli.font_dirs, templates)?;
            for form in engine.templates().forms() {
                println!("{}\t{}", form.id, form.title);
            }
        }
        Command::Check { dir } => {
            engine(&cli.font_dirs, Some(dir.clone()))?;
            println!("{}: every template renders", dir.display());
        }
        Command::Preview {
            form,
            templates,
            output,
        } => {
            let engine = engine(&cli.font_dirs, templates)?;
            let pdf = if form == "guide" {
                engine.preview_guide()?
            } else {
                engine.preview(&form)?
            };
            write(&pdf, &output)?;
        }
        Command::Render {
            form,
            data,
            templates,
            output,
        } => {
            let engine = engine(&cli.font_dirs, templates)?;
            let text = std::fs::read_to_string(&data)
                .with_context(|| format!("reading {}", data.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", data.display()))?;
            let pdf = if form == "guide" {
                engine.render_guide(&value)?
            } else {
                engine.render_form(&form, &value)?
            };
            write(&pdf, &output)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
