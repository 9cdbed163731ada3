//! Reading a core-system CSV file: decoding (UTF-8 with or without BOM, or CP932) and
//! RFC 4180 parsing with physical line numbers, so every problem is reported as
//! "file, line, column" and never with the offending text (it may be personal data).
//!
//! Our own small parser rather than the `csv` crate: a file is decoded as a whole
//! first (to refuse undecodable bytes with their line), and the line bookkeeping for
//! quoted fields spanning lines is simpler to get exactly right here.

use super::mapping::Encoding;

/// A problem that makes the whole file unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// 1-based physical line.
    pub line: usize,
    /// What is wrong (no file content).
    pub reason: String,
}

/// One record and the physical line it starts on.
#[derive(Debug, Clone)]
pub struct Record {
    /// 1-based line of the record's first character.
    pub line: usize,
    /// Its fields.
    pub fields: Vec<String>,
}

/// A decoded and parsed file: the header and the data records.
#[derive(Debug, Clone)]
pub struct Table {
    /// The header's column names (trimmed).
    pub header: Vec<String>,
    /// The data records.
    pub records: Vec<Record>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Decodes the bytes of a file. A UTF-8 BOM means UTF-8 whatever the configuration;
/// UTF-16 is refused. Undecodable bytes are refused with their line, never replaced:
/// a replaced character in a name would silently stop matching.
pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<String, FileProblem> {
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err(FileProblem {
            line: 1,
            reason: "UTF-16 is not supported (UTF-8 or CP932 expected)".into(),
        });
    }
    if let Some(rest) = bytes.strip_prefix(BOM) {
        return decode_utf8(rest);
    }
    match encoding {
        Encoding::Utf8 => decode_utf8(bytes),
        Encoding::Cp932 => {
            let enc = encoding_rs::SHIFT_JIS;
            if let Some(text) = enc.decode_without_bom_handling_and_without_replacement(bytes) {
                return Ok(text.into_owned());
            }
            // Find the first line that does not decode. A newline byte (0x0A) is never
            // the second byte of a Shift_JIS character, so splitting on it is safe.
            let line = bytes
                .split(|b| *b == b'\n')
                .position(|l| {
                    enc.decode_without_bom_handling_and_without_replacement(l)
                        .is_none()
                })
                .map_or(1, |i| i + 1);
            Err(FileProblem {
                line,
                reason: "bytes that are not valid CP932 (Shift_JIS)".into(),
            })
        }
    }
}

fn decode_utf8(bytes: &[u8]) -> Result<String, FileProblem> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            Err(FileProblem {
                line,
                reason: "bytes that are not valid UTF-8".into(),
            })
        }
    }
}

/// Parses RFC 4180 CSV: `,` separated, `"` quoted with `""` for a quote, records ended
/// by CRLF or LF; blank lines are skipped. The last record must end with a line end:
/// a file cut off in transfer is refused rather than read with a short last value.
pub fn parse(text: &str) -> Result<Table, FileProblem> {
    let mut records: Vec<Record> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1usize;
    let mut start_line = 1usize;
    let mut chars = text.chars().peekable();
    let mut in_record = false;
    // After a closing quote only a separator or a line end may follow.
    let mut after_quote = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if !after_quote && field.is_empty() => {
                in_record = true;
                let quote_line = line;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                        None => {
                            return Err(FileProblem {
                                line: quote_line,
                                reason: "a quoted value is never closed (file truncated?)".into(),
                            })
                        }
                    }
                }
                after_quote = true;
            }
            '"' => {
                return Err(FileProblem {
                    line,
                    reason: "a quote inside an unquoted value or after a closing quote".into(),
                })
            }
            ',' => {
                in_record = true;
                fields.push(std::mem::take(&mut field));
                after_quote = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if in_record || !field.is_empty() {
                    fields.push(std::mem::take(&mut field));
                    records.push(Record {
                        line: start_line,
                        fields: std::mem::take(&mut fields),
                    });
                }
                in_record = false;
                after_quote = false;
                line += 1;
                start_line = line;
            }
            c if after_quote => {
                let _ = c;
                return Err(FileProblem {
                    line,
                    reason: "text after a closing quote".into(),
                });
            }
            c => {
                in_record = true;
                field.push(c);
            }
        }
    }
    if in_record || !field.is_empty() {
        return Err(FileProblem {
            line: start_line,
            reason: "the last line has no line end (file truncated?)".into(),
        });
    }
    let mut records = records.into_iter();
    let header = records.next().ok_or(FileProblem {
        line: 1,
        reason: "the file is empty (no header)".into(),
    })?;
    Ok(Table {
        header: header.fields.iter().map(|h| h.trim().to_owned()).collect(),
        records: records.collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_and_line_numbers() {
        let t = parse("a,b\r\n1,\"x,\"\"y\"\"\"\r\n\r\n2,\"multi\nline\"\n3,z\n").unwrap();
        assert_eq!(t.header, ["a", "b"]);
        assert_eq!(t.records.len(), 3);
        assert_eq!(t.records[0].fields, ["1", "x,\"y\""]);
        assert_eq!(t.records[1].line, 4);
        assert_eq!(t.records[2].line, 6);
    }

    #[test]
    fn truncated_files_are_refused() {
        assert_eq!(parse("a,b\n1,2").unwrap_err().line, 2);
        assert_eq!(parse("a,b\n1,\"2\n").unwrap_err().line, 2);
    }

    #[test]
    fn encodings() {
        let sjis = encoding_rs::SHIFT_JIS
            .encode("宛名,髙﨑\r\n")
            .0
            .into_owned();
        assert_eq!(decode(&sjis, Encoding::Cp932).unwrap(), "宛名,髙﨑\r\n");
        let mut bad = sjis.clone();
        bad.extend_from_slice(b"ok\r\n\x82\xFF\r\n");
        assert_eq!(decode(&bad, Encoding::Cp932).unwrap_err().line, 3);
        let bom = [b"\xEF\xBB\xBF".as_slice(), "名".as_bytes()].concat();
        assert_eq!(decode(&bom, Encoding::Cp932).unwrap(), "名");
        assert_eq!(decode(b"a\n\xFF", Encoding::Utf8).unwrap_err().line, 2);
    }
}
