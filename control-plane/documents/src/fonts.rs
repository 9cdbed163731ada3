//! Fonts: loaded and indexed once at start-up, shared by every render.
//!
//! The forms need three families: IPAex明朝 (body text), IPAexゴシック (headings) and
//! IPAmj明朝 (names: it has the Moji_Joho glyphs and a format-14 cmap, so a name with
//! an ideographic variation sequence prints with the variant the core system records).
//! A directory that is missing, or a required family that no directory provides, is a
//! start-up error naming what was searched.

use std::path::{Path, PathBuf};

use typst::foundations::Bytes;
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;

/// Body text: IPAex明朝 (Debian `fonts-ipaexfont-mincho`).
pub const MINCHO: &str = "IPAexMincho";
/// Headings and the guide: IPAexゴシック (Debian `fonts-ipaexfont-gothic`).
pub const GOTHIC: &str = "IPAexGothic";
/// Names, with IVS: IPAmj明朝 (Debian `fonts-ipamj-mincho`).
pub const NAMES: &str = "IPAmjMincho";

/// The families every template may rely on.
pub const REQUIRED_FAMILIES: [&str; 3] = [MINCHO, GOTHIC, NAMES];

/// The Debian locations of the required fonts.
pub fn default_font_dirs() -> Vec<PathBuf> {
    [
        "/usr/share/fonts/opentype/ipaexfont-mincho",
        "/usr/share/fonts/opentype/ipaexfont-gothic",
        "/usr/share/fonts/truetype/ipamj",
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// Why the fonts could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FontError {
    /// A configured font directory cannot be read.
    #[error("font directory {dir}: {source}")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A font file cannot be read.
    #[error("font file {file}: {source}")]
    File {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// No configured directory holds a family the templates need.
    #[error(
        "font family {family} not found in {searched} (install Debian package {package}, or add its directory to the font directories)"
    )]
    MissingFamily {
        /// The family (as Typst names it).
        family: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
        /// The directories searched, for the message.
        searched: String,
    },
}

/// The loaded fonts and their index, immutable once built.
pub struct Fonts {
    pub(crate) book: LazyHash<FontBook>,
    pub(crate) fonts: Vec<Font>,
}

impl std::fmt::Debug for Fonts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fonts")
            .field("faces", &self.fonts.len())
            .finish()
    }
}

impl Fonts {
    /// Loads every `.ttf`, `.otf`, `.ttc` and `.otc` file in `dirs` (not recursively)
    /// and checks that the required families are among them.
    pub fn load(dirs: &[PathBuf]) -> Result<Fonts, FontError> {
        let mut fonts = Vec::new();
        for dir in dirs {
            let mut files = font_files(dir)?;
            files.sort();
            for file in files {
                let data = std::fs::read(&file).map_err(|source| FontError::File {
                    file: file.clone(),
                    source,
                })?;
                fonts.extend(Font::iter(Bytes::new(data)));
            }
        }
        let book = FontBook::from_fonts(&fonts);
        for family in REQUIRED_FAMILIES {
            if !book.contains_family(&family.to_lowercase()) {
                return Err(FontError::MissingFamily {
                    family,
                    package: package_of(family),
                    searched: dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        Ok(Fonts {
            book: LazyHash::new(book),
            fonts,
        })
    }

    /// The family names loaded (lower case, as Typst matches them).
    pub fn families(&self) -> Vec<String> {
        self.book
            .families()
            .map(|(name, _)| name.to_string())
            .collect()
    }
}

fn package_of(family: &str) -> &'static str {
    match family {
        NAMES => "fonts-ipamj-mincho",
        _ => "fonts-ipaexfont",
    }
}

fn font_files(dir: &Path) -> Result<Vec<PathBuf>, FontError> {
    let entries = std::fs::read_dir(dir).map_err(|source| FontError::Directory {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| FontError::Directory {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let is_font = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "ttf" | "otf" | "ttc" | "otc"
            )
        });
        if is_font && path.is_file() {
            files.push(path);
        }
    }
    Ok(files)
}
