//! Certificate requests (証明書交付請求, R6): who asks, for what, and the fee, checked
//! against the certificate catalogue (`certificates.toml` of the catalogue version in
//! force) before anything is stored.
//!
//! Checks, each refusing the request with the item and field named:
//! - every certificate id is in the catalogue, every option is one of its options;
//! - copies are 1 to [`MAX_COPIES`];
//! - each item's fee is the catalogue's fee per copy (0 only for the options the
//!   catalogue makes free, [`FREE_OPTIONS`]) and `fee_total` is Σ fee × copies;
//! - the `個人番号` and `住民票コード` options only for 本人 or 同一世帯 requesters
//!   (住民基本台帳法 12条: a third party or an agent never gets them on a 住民票);
//! - purpose and ID check are not blank, and a 第三者 also states where the
//!   certificate goes (提出先) — 12条の3.

use serde::{Deserialize, Serialize};

use super::fill::Person;
use crate::rules::catalog::Catalogue;

/// Most copies of one certificate per request.
pub const MAX_COPIES: u32 = 20;

/// Options that make a certificate free of charge (手数料 0).
pub const FREE_OPTIONS: &[&str] = &["軽自動車税（継続検査用）"];

/// Options only the person or their household may get.
pub const RESTRICTED_OPTIONS: &[&str] = &["個人番号", "住民票コード"];

/// The request form of each certificate: one form per group of certificates, as the
/// reference templates of `kakanai-documents` have them (`templates/forms/SHOMEI-*.toml`,
/// their `certificates` lists). A request naming certificates of several groups makes
/// one application per form.
pub const CERTIFICATE_FORMS: &[(&str, &[&str])] = &[
    (
        "SHOMEI-JUMIN",
        &[
            "juminhyo",
            "juminhyo_kisai_jiko",
            "juminhyo_joshu",
            "fuzai_shomei",
        ],
    ),
    ("SHOMEI-INKAN", &["inkan_shomei"]),
    (
        "SHOMEI-KOSEKI",
        &[
            "koseki_zenbu",
            "koseki_kojin",
            "joseki",
            "fuhyo",
            "mibun_shomei",
            "juri_shomei",
        ],
    ),
    (
        "SHOMEI-ZEI",
        &[
            "shotoku_shomei",
            "nozei_shomei",
            "hyoka_shomei",
            "kouka_shomei",
            "nayose",
        ],
    ),
];

/// The request form for a certificate id.
pub fn form_for(certificate: &str) -> Option<&'static str> {
    CERTIFICATE_FORMS
        .iter()
        .find(|(_, ids)| ids.contains(&certificate))
        .map(|(form, _)| *form)
}

/// Who the requester is to the person the certificate is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relationship {
    /// 本人.
    #[serde(rename = "self")]
    Myself,
    /// 同一世帯 — a member of the same household.
    Household,
    /// 代理人 — an agent with a 委任状.
    Agent,
    /// 第三者 — anyone else, with a reason (住基法 12条の3).
    ThirdParty,
}

impl Relationship {
    /// The label printed on the form.
    pub fn label(self) -> &'static str {
        match self {
            Self::Myself => "本人",
            Self::Household => "同一世帯",
            Self::Agent => "代理人",
            Self::ThirdParty => "第三者",
        }
    }
}

/// One certificate asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateItem {
    /// Certificate id in the catalogue (`juminhyo` …).
    pub certificate: String,
    /// Options, each one of the catalogue's for it.
    #[serde(default)]
    pub options: Vec<String>,
    /// Copies.
    pub copies: u32,
    /// Fee per copy in yen, as shown to the resident.
    pub fee: i64,
}

/// A certificate request as the counter sends it. `Debug` shows the items only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// The person the certificates are about (their 宛名番号 in `atena`, if known).
    pub subject: Person,
    /// Who asks (the subject themself for 本人).
    pub requester: Person,
    /// The requester's relationship to the subject.
    pub relationship: Relationship,
    /// 使用目的.
    pub purpose: String,
    /// 提出先.
    pub destination: String,
    /// 本人確認 — which document was checked (マイナンバーカード, 運転免許証 …).
    pub id_check: String,
    /// The certificates.
    pub items: Vec<CertificateItem>,
    /// Total fee in yen.
    pub fee_total: i64,
}

impl std::fmt::Debug for CertificateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateRequest")
            .field("relationship", &self.relationship)
            .field("items", &self.items)
            .field("fee_total", &self.fee_total)
            .finish_non_exhaustive()
    }
}

/// Why a certificate request was refused. Names the item and field, never the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// No items.
    #[error("請求する証明書が選ばれていません")]
    NoItems,
    /// The certificate id is not in the catalogue.
    #[error("{item}件目: 証明書 {certificate} は手続き定義にありません")]
    UnknownCertificate {
        /// 1-based item.
        item: usize,
        /// The id given.
        certificate: String,
    },
    /// An option the certificate does not have.
    #[error("{item}件目: 証明書 {certificate} に「{option}」の記載事項はありません")]
    UnknownOption {
        /// 1-based item.
        item: usize,
        /// Certificate id.
        certificate: String,
        /// The option given.
        option: String,
    },
    /// An option this requester may not have.
    #[error(
        "{item}件目: 「{option}」は本人又は同一世帯の方の請求に限ります（住民基本台帳法12条）"
    )]
    OptionNotAllowed {
        /// 1-based item.
        item: usize,
        /// The option.
        option: String,
    },
    /// Copies out of range.
    #[error("{item}件目: 通数は1〜{MAX_COPIES}通です（{copies}通が指定されました）")]
    Copies {
        /// 1-based item.
        item: usize,
        /// Copies given.
        copies: u32,
    },
    /// The fee is not the catalogue's.
    #[error("{item}件目: 手数料が{given}円になっていますが、1通{expected}円です")]
    Fee {
        /// 1-based item.
        item: usize,
        /// Fee given.
        given: i64,
        /// Catalogue fee.
        expected: i64,
    },
    /// The total is not the sum.
    #[error("手数料の合計が{given}円になっていますが、各証明書の合計は{expected}円です")]
    Total {
        /// Total given.
        given: i64,
        /// Sum of the items.
        expected: i64,
    },
    /// A required text is blank.
    #[error("{0}を入力してください")]
    Missing(&'static str),
    /// The certificate is in the catalogue but no request form covers it.
    #[error("{item}件目: 証明書 {certificate} の請求書の様式がありません")]
    NoForm {
        /// 1-based item.
        item: usize,
        /// Certificate id.
        certificate: String,
    },
}

impl CertificateRequest {
    /// Checks the request against the catalogue in force; the first problem found.
    pub fn validate(&self, catalogue: &Catalogue) -> Result<(), CertificateError> {
        if self.items.is_empty() {
            return Err(CertificateError::NoItems);
        }
        // 提出先 is asked of a third party only (住基法12条の3: the purpose and where
        // the certificate goes); the person or their household may leave it blank.
        let third_party = self.relationship == Relationship::ThirdParty;
        for (what, text, needed) in [
            ("使用目的", &self.purpose, true),
            ("提出先", &self.destination, third_party),
            ("本人確認書類", &self.id_check, true),
        ] {
            if needed && text.trim().is_empty() {
                return Err(CertificateError::Missing(what));
            }
        }
        let mut total: i64 = 0;
        for (i, it) in self.items.iter().enumerate() {
            let item = i + 1;
            let cert = catalogue
                .certificates
                .iter()
                .find(|c| c.id == it.certificate)
                .ok_or_else(|| CertificateError::UnknownCertificate {
                    item,
                    certificate: it.certificate.clone(),
                })?;
            if form_for(&cert.id).is_none() {
                return Err(CertificateError::NoForm {
                    item,
                    certificate: cert.id.clone(),
                });
            }
            for o in &it.options {
                if !cert.options.contains(o) {
                    return Err(CertificateError::UnknownOption {
                        item,
                        certificate: cert.id.clone(),
                        option: o.clone(),
                    });
                }
                let restricted = RESTRICTED_OPTIONS.contains(&o.as_str());
                let own = matches!(
                    self.relationship,
                    Relationship::Myself | Relationship::Household
                );
                if restricted && !own {
                    return Err(CertificateError::OptionNotAllowed {
                        item,
                        option: o.clone(),
                    });
                }
            }
            if it.copies == 0 || it.copies > MAX_COPIES {
                return Err(CertificateError::Copies {
                    item,
                    copies: it.copies,
                });
            }
            let free = it
                .options
                .iter()
                .any(|o| FREE_OPTIONS.contains(&o.as_str()));
            let expected = if free { 0 } else { cert.fee };
            if it.fee != expected {
                return Err(CertificateError::Fee {
                    item,
                    given: it.fee,
                    expected,
                });
            }
            total += expected * i64::from(it.copies);
        }
        if self.fee_total != total {
            return Err(CertificateError::Total {
                given: self.fee_total,
                expected: total,
            });
        }
        Ok(())
    }

    /// The request split per request form ([`form_for`]), in the order the forms
    /// first appear: each part keeps its items and their fee total.
    pub fn split_by_form(&self) -> Vec<(&'static str, CertificateRequest)> {
        let mut parts: Vec<(&'static str, CertificateRequest)> = Vec::new();
        for it in &self.items {
            let Some(form) = form_for(&it.certificate) else {
                continue;
            };
            let part = match parts.iter_mut().find(|(f, _)| *f == form) {
                Some((_, p)) => p,
                None => {
                    let mut p = self.clone();
                    p.items.clear();
                    p.fee_total = 0;
                    parts.push((form, p));
                    &mut parts
                        .last_mut()
                        .unwrap_or_else(|| unreachable!("just pushed"))
                        .1
                }
            };
            part.fee_total += it.fee * i64::from(it.copies);
            part.items.push(it.clone());
        }
        parts
    }

    /// The `certificate` object of the form data (names from the catalogue).
    pub fn to_data(&self, catalogue: &Catalogue) -> serde_json::Value {
        let items: Vec<serde_json::Value> = self
            .items
            .iter()
            .map(|it| {
                let name = catalogue
                    .certificates
                    .iter()
                    .find(|c| c.id == it.certificate)
                    .map(|c| c.name.clone());
                serde_json::json!({
                    "id": it.certificate,
                    "name": name,
                    "options": it.options,
                    "copies": it.copies,
                    "fee": it.fee,
                })
            })
            .collect();
        serde_json::json!({
            "requester": self.requester,
            "relationship": self.relationship.label(),
            "purpose": self.purpose,
            "destination": self.destination,
            "id_check": self.id_check,
            "items": items,
            "fee_total": self.fee_total,
        })
    }
}
