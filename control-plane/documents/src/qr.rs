//! The 2-D code printed on every form: a QR code holding the application number, so
//! that scanning the signed form at the counter finds its application record.
//!
//! The code carries the application number exactly as printed (e.g. `2026-000123`),
//! nothing else: no name, no address.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// Why a QR code could not be made.
#[derive(Debug, thiserror::Error)]
#[error("QR code: {0}")]
pub struct QrError(String);

/// The QR code of `text` as a PNG image, one pixel per module (print it with
/// nearest-neighbour scaling), error correction level M, quiet zone included.
///
/// The forms use this form: Typst places a small PNG in well under a millisecond,
/// where parsing an SVG of the same code costs several.
pub fn png(text: &str) -> Result<Vec<u8>, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| QrError(e.to_string()))?;
    let image = code
        .render::<image::Luma<u8>>()
        .module_dimensions(1, 1)
        .build();
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| QrError(e.to_string()))?;
    Ok(out.into_inner())
}

/// The QR code of `text` as an SVG image (error correction level M, quiet zone
/// included, black on white).
pub fn svg(text: &str) -> Result<String, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| QrError(e.to_string()))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_number_becomes_an_svg_image() {
        let image = svg("2026-000123").unwrap();
        assert!(image.starts_with("<?xml"));
        assert!(image.contains("<svg"));
        assert!(image.contains("#000000"));
    }

    #[test]
    fn an_application_number_becomes_a_png_image() {
        let image = png("2026-000123").unwrap();
        assert_eq!(&image[1..4], b"PNG");
    }

    #[test]
    fn text_too_long_for_any_qr_version_is_an_error() {
        assert!(svg(&"9".repeat(10_000)).is_err());
        assert!(png(&"9".repeat(10_000)).is_err());
    }
}
