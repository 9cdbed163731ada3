//! A small valid PDF: one A4 page with a line of text, padded to a wanted size, with a
//! correct cross-reference table (so strict printers and `pdfinfo` accept it).

/// A one-page A4 PDF saying `text` (ASCII; other characters become `?`: the built-in
/// Helvetica font has no Japanese glyphs), at least `min_len` bytes long. The padding is
/// comment lines inside the page's content stream, which every reader ignores.
pub fn test_page(text: &str, min_len: usize) -> Vec<u8> {
    let safe: String = text
        .chars()
        .map(|c| match c {
            '(' | ')' | '\\' => '?',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect();
    let content = format!("BT /F1 24 Tf 72 760 Td ({safe}) Tj ET\n");
    let unpadded = build(&content);
    if unpadded.len() >= min_len {
        return unpadded;
    }
    // Pad with comment lines of at most 64 bytes; the /Length digits may grow by a
    // byte or two, so the result is at least (not exactly) min_len.
    let mut missing = min_len - unpadded.len();
    let mut padded = content;
    while missing > 0 {
        let take = missing.clamp(2, 64);
        padded.push('%');
        padded.push_str(&"-".repeat(take - 2));
        padded.push('\n');
        missing = missing.saturating_sub(take);
    }
    build(&padded)
}

/// The file around a content stream.
fn build(content: &str) -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
         /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}endstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];

    // Binary comment on line 2 so transports treat the file as binary (PDF 32000 §7.5.2).
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        table.push_str(&format!("{offset:010} 00000 n \n"));
    }
    table.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    out.extend_from_slice(table.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_header() {
        let small = test_page("hello", 0);
        assert!(small.starts_with(b"%PDF-1.4"));
        assert!(small.len() < 1000);
        for want in [1000, 4096, 200 * 1024] {
            let p = test_page("size", want);
            assert!(p.len() >= want, "{} < {want}", p.len());
            assert!(p.len() < want + 200, "{} much bigger than {want}", p.len());
        }
    }
}
