//! Shared by the document tests: one engine per test binary (fonts and templates load
//! once), synthetic residents, and poppler's `pdftotext` / `pdffonts` as the
//! independent readers of what was printed. A missing poppler fails the test.

#![allow(dead_code)]

use std::io::Write;
use std::process::Command;
use std::sync::OnceLock;

use kakanai_documents::{Engine, EngineConfig};
use serde_json::{json, Value};

pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(EngineConfig::default()).expect("engine starts"))
}

fn poppler(tool: &str, pdf: &[u8], args: &[&str]) -> String {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(pdf).expect("write pdf");
    let out = Command::new(tool)
        .args(args)
        .arg(file.path())
        .args(if tool == "pdftotext" {
            &["-"][..]
        } else {
            &[][..]
        })
        .output()
        .unwrap_or_else(|e| panic!("{tool} (Debian poppler-utils) must be installed: {e}"));
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The text of a PDF as `pdftotext` reads it.
pub fn pdftotext(pdf: &[u8]) -> String {
    poppler("pdftotext", pdf, &["-enc", "UTF-8"])
}

/// The font table of a PDF as `pdffonts` prints it.
pub fn pdffonts(pdf: &[u8]) -> String {
    poppler("pdffonts", pdf, &[])
}

/// `pdftotext` output with the line breaks and spaces a layout may put inside a
/// phrase removed, for "does this phrase appear" checks.
pub fn squeezed(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

pub const ADDRESS: &str = "書無市中央二丁目7番11号 テスト荘203";

pub fn person(name: &str, kana: &str, birth: &str, sex: &str, rel: &str) -> Value {
    json!({"name": name, "kana": kana, "birth_date": birth, "sex": sex,
           "relationship": rel, "address": ADDRESS, "atena": "123456789"})
}

/// A synthetic household of three: 山田 太郎 (世帯主, the applicant and subject),
/// his wife and daughter.
pub fn resident_data(form_id: &str) -> Value {
    let taro = person("山田 太郎", "ヤマダ タロウ", "1980-04-01", "男", "世帯主");
    let hanako = person("山田 花子", "ヤマダ ハナコ", "1985-10-10", "女", "妻");
    let mei = person("山田 芽衣", "ヤマダ メイ", "2019-05-01", "女", "子");
    json!({
        "form": {"id": form_id},
        "application": {"number": "2026-000123", "created": "2026-11-27"},
        "office": {"city": "書無市", "department": null, "counter": "2番窓口"},
        "applicant": taro, "subject": taro,
        "household": {"head": taro, "address": ADDRESS, "members": [taro, hanako, mei]},
        "event": {"kind": "move_in", "label": "転入", "date": "2026-11-20",
                  "previous_address": "大阪府大阪市北区試験町1番1号", "new_address": ADDRESS},
        "procedure": {"id": "p", "name": "手続", "deadline": "2026-12-04",
                      "department": "保険年金課", "documents": ["本人確認書類"], "reason": "転入のため"},
        "answers": {},
        "certificate": {"requester": taro, "relationship": "本人", "purpose": "勤務先へ提出",
            "destination": "株式会社テスト", "id_check": "マイナンバーカード",
            "items": [{"name": "住民票の写し", "options": ["世帯全員", "続柄"], "copies": 2, "fee": 300}],
            "fee_total": 600}
    })
}

/// Every form id the reference catalogue's procedures name (`form = "…"`), and every
/// certificate id of `certificates.toml`.
pub fn catalogue_ids() -> (Vec<String>, Vec<String>) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../catalog");
    let mut forms = Vec::new();
    let mut certificates = Vec::new();
    for version in std::fs::read_dir(root).expect("catalogue") {
        let version = version.expect("entry").path();
        if !version.is_dir() {
            continue;
        }
        let procedures = version.join("procedures");
        if let Ok(files) = std::fs::read_dir(&procedures) {
            for file in files {
                let text = std::fs::read_to_string(file.expect("entry").path()).expect("read");
                let value: toml::Value = toml::from_str(&text).expect("catalogue TOML");
                for p in value
                    .get("procedure")
                    .and_then(|p| p.as_array())
                    .into_iter()
                    .flatten()
                {
                    if let Some(form) = p.get("form").and_then(|f| f.as_str()) {
                        forms.push(form.to_string());
                    }
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string(version.join("certificates.toml")) {
            let value: toml::Value = toml::from_str(&text).expect("certificates TOML");
            for c in value
                .get("certificate")
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(id) = c.get("id").and_then(|i| i.as_str()) {
                    certificates.push(id.to_string());
                }
            }
        }
    }
    forms.sort();
    forms.dedup();
    certificates.sort();
    certificates.dedup();
    (forms, certificates)
}
