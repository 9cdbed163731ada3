//! The column mapping (列対応): which file, encoding and columns each data kind comes
//! in. It is configuration, because each city agrees the columns with its vendors
//! (R8: "columns are configurable per city"); the reference mapping that matches the
//! synthetic city ships with the product (`reference_mapping.toml`, [`Mapping::reference`]).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The 16 data kinds of R8, by the id used in the mapping, the store and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataKind {
    /// 住民記録 — the resident register; the only kind with its own table.
    Jumin,
    /// 住登外情報 — people known to the city but registered elsewhere.
    Jutogai,
    /// 転出証明書情報 — move-out certificates from 住基ネット (特例転入).
    Tenshutsu,
    /// 住所・自治会区・学校区マスタ — address master with 自治会 and school districts.
    AddressMaster,
    /// 印鑑登録 — seal registration.
    Inkan,
    /// マイナンバーカード情報 — card holding and expiry.
    MynumberCard,
    /// 児童手当 — child allowance.
    JidouTeate,
    /// 児童扶養手当 — child-rearing allowance (single parents).
    JidouFuyou,
    /// 福祉医療費助成 — medical expense subsidies.
    FukushiIryo,
    /// 介護保険 — long-term care insurance.
    Kaigo,
    /// 国民健康保険 — national health insurance.
    Kokuho,
    /// 後期高齢者医療 — medical care for the elderly (75+).
    Kouki,
    /// 幼稚園・保育園 — kindergarten and nursery.
    Hoiku,
    /// 個人住民税 — individual resident tax.
    Juminzei,
    /// 滞納管理 — tax arrears.
    Taino,
    /// 就学援助 — school expense aid.
    ShugakuEnjo,
}

impl DataKind {
    /// Every kind, in the order of data-linkage.md, which is also the import order
    /// (the address master before the residents that refer to it).
    pub const ALL: [DataKind; 16] = [
        Self::Jumin,
        Self::Jutogai,
        Self::Tenshutsu,
        Self::AddressMaster,
        Self::Inkan,
        Self::MynumberCard,
        Self::JidouTeate,
        Self::JidouFuyou,
        Self::FukushiIryo,
        Self::Kaigo,
        Self::Kokuho,
        Self::Kouki,
        Self::Hoiku,
        Self::Juminzei,
        Self::Taino,
        Self::ShugakuEnjo,
    ];

    /// Its id in the mapping and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jumin => "jumin",
            Self::Jutogai => "jutogai",
            Self::Tenshutsu => "tenshutsu",
            Self::AddressMaster => "address_master",
            Self::Inkan => "inkan",
            Self::MynumberCard => "mynumber_card",
            Self::JidouTeate => "jidou_teate",
            Self::JidouFuyou => "jidou_fuyou",
            Self::FukushiIryo => "fukushi_iryo",
            Self::Kaigo => "kaigo",
            Self::Kokuho => "kokuho",
            Self::Kouki => "kouki",
            Self::Hoiku => "hoiku",
            Self::Juminzei => "juminzei",
            Self::Taino => "taino",
            Self::ShugakuEnjo => "shugaku_enjo",
        }
    }

    /// The kind with this id.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for DataKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The encoding a file is read in when it has no BOM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Encoding {
    /// UTF-8 (a BOM is optional).
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    /// Shift_JIS as Windows writes it (CP932, with the NEC and IBM extensions).
    #[serde(rename = "cp932")]
    Cp932,
}

/// How a field's text is checked and normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Kept as written.
    #[default]
    Text,
    /// An identifier: ASCII letters, digits and `-` (full-width digits are folded).
    Code,
    /// A date: `YYYY-MM-DD`, `YYYY/MM/DD` or `YYYYMMDD`, stored as `YYYY-MM-DD`.
    Date,
    /// An integer.
    Int,
    /// 性別: `1` (男), `2` (女) or `9`; 男/女 are accepted and stored as codes.
    Sex,
    /// 個人番号: 12 digits with a valid check digit; stored only encrypted.
    MyNumber,
}

/// One mapped field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// The column's header in the file.
    pub column: String,
    /// Its type.
    #[serde(default, rename = "type")]
    pub ty: FieldType,
    /// Whether an empty value rejects the row (key fields always are required).
    #[serde(default)]
    pub required: bool,
}

/// How one kind's file looks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindMapping {
    /// The kind's Japanese name.
    pub label: String,
    /// The file name in the drop directory.
    pub file: String,
    /// The encoding when the file has no BOM.
    #[serde(default)]
    pub encoding: Encoding,
    /// The fields identifying a row.
    pub key: Vec<String>,
    /// The field holding the 宛名番号 the row belongs to.
    #[serde(default)]
    pub resident: Option<String>,
    /// Field name → column.
    pub fields: BTreeMap<String, FieldMapping>,
}

/// How delta files (異動分) mark their rows: one column holding a code per action.
/// The reference: column `異動区分`, `1` 追加 (add), `2` 変更 (change), `3` 削除
/// (remove). A delta file has every column of the kind's full file plus this one; a
/// removal needs only the key columns filled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaMapping {
    /// The column's header.
    #[serde(default = "default_delta_column")]
    pub column: String,
    /// The code of an added row.
    #[serde(default = "default_add")]
    pub add: String,
    /// The code of a changed row.
    #[serde(default = "default_change")]
    pub change: String,
    /// The code of a removed row.
    #[serde(default = "default_remove")]
    pub remove: String,
}

fn default_delta_column() -> String {
    "異動区分".into()
}
fn default_add() -> String {
    "1".into()
}
fn default_change() -> String {
    "2".into()
}
fn default_remove() -> String {
    "3".into()
}

impl Default for DeltaMapping {
    fn default() -> Self {
        Self {
            column: default_delta_column(),
            add: default_add(),
            change: default_change(),
            remove: default_remove(),
        }
    }
}

/// A complete mapping: the kinds a city delivers. Kinds left out are not imported.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// How delta files mark added, changed and removed rows.
    #[serde(default)]
    pub delta: DeltaMapping,
    /// Kind id → its mapping.
    pub kinds: BTreeMap<String, KindMapping>,
}

/// Why a mapping is refused. Names the kind and field, never data.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The TOML does not parse or has unknown keys.
    #[error("mapping: {0}")]
    Toml(String),
    /// A kind id that is not one of the 16.
    #[error("mapping: unknown kind {0:?}")]
    UnknownKind(String),
    /// A key or resident field, or a field 住民記録 needs, is not mapped.
    #[error("mapping: kind {kind}: field {field:?} is not mapped")]
    MissingField {
        /// The kind.
        kind: String,
        /// The field.
        field: String,
    },
    /// A kind without key fields.
    #[error("mapping: kind {0}: no key fields")]
    NoKey(String),
    /// Two fields read the same column.
    #[error("mapping: kind {kind}: column {column:?} mapped twice")]
    DuplicateColumn {
        /// The kind.
        kind: String,
        /// The column.
        column: String,
    },
}

/// The fields 住民記録 must map: they feed the resident table and its search keys.
pub const JUMIN_FIELDS: &[&str] = &[
    "atena",
    "household",
    "name",
    "kana",
    "birth_date",
    "sex",
    "relation",
    "machiaza",
    "address",
    "status",
];

const REFERENCE: &str = include_str!("reference_mapping.toml");

impl Mapping {
    /// The reference mapping (the synthetic city's format).
    pub fn reference() -> Self {
        // Checked by the unit test below; a broken embedded file is a build defect,
        // so falling back to an empty mapping (imports nothing) keeps this infallible.
        Self::from_toml(REFERENCE).unwrap_or(Self {
            delta: DeltaMapping::default(),
            kinds: BTreeMap::new(),
        })
    }

    /// The reference mapping's text, for a city to copy and edit.
    pub fn reference_toml() -> &'static str {
        REFERENCE
    }

    /// Parses and checks a mapping.
    pub fn from_toml(text: &str) -> Result<Self, MappingError> {
        let mapping: Mapping =
            toml::from_str(text).map_err(|e| MappingError::Toml(e.message().to_owned()))?;
        for (id, kind) in &mapping.kinds {
            let data_kind =
                DataKind::parse(id).ok_or_else(|| MappingError::UnknownKind(id.clone()))?;
            if kind.key.is_empty() {
                return Err(MappingError::NoKey(id.clone()));
            }
            let missing = |field: &str| MappingError::MissingField {
                kind: id.clone(),
                field: field.to_owned(),
            };
            for f in kind.key.iter().chain(kind.resident.iter()) {
                if !kind.fields.contains_key(f) {
                    return Err(missing(f));
                }
            }
            if data_kind == DataKind::Jumin {
                if let Some(f) = JUMIN_FIELDS.iter().find(|f| !kind.fields.contains_key(**f)) {
                    return Err(missing(f));
                }
            }
            if kind
                .fields
                .values()
                .any(|f| f.column == mapping.delta.column)
            {
                return Err(MappingError::DuplicateColumn {
                    kind: id.clone(),
                    column: mapping.delta.column.clone(),
                });
            }
            let mut columns = std::collections::BTreeSet::new();
            for f in kind.fields.values() {
                if !columns.insert(f.column.as_str()) {
                    return Err(MappingError::DuplicateColumn {
                        kind: id.clone(),
                        column: f.column.clone(),
                    });
                }
            }
        }
        Ok(mapping)
    }

    /// The kind whose file name (without extension) is `stem`, e.g. `jumin` for
    /// `jumin.csv`.
    pub fn kind_by_stem(&self, stem: &str) -> Option<(DataKind, &KindMapping)> {
        DataKind::ALL.into_iter().find_map(|k| {
            let km = self.kind(k)?;
            (file_stem(&km.file) == stem).then_some((k, km))
        })
    }

    /// The mapping of a kind, if the city delivers it.
    pub fn kind(&self, kind: DataKind) -> Option<&KindMapping> {
        self.kinds.get(kind.as_str())
    }
}

/// A file name without its last extension (`jumin.csv` → `jumin`).
pub fn file_stem(file: &str) -> &str {
    file.rsplit_once('.').map_or(file, |(stem, _)| stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_mapping_covers_all_16_kinds() {
        let m = Mapping::from_toml(REFERENCE).unwrap_or_else(|e| panic!("{e}"));
        for k in DataKind::ALL {
            assert!(m.kind(k).is_some(), "{k}");
        }
    }

    #[test]
    fn refuses_unknown_kinds_and_missing_keys() {
        assert!(matches!(
            Mapping::from_toml(
                "[kinds.nope]\nlabel='x'\nfile='x'\nkey=['a']\n[kinds.nope.fields]\na={column='A'}"
            ),
            Err(MappingError::UnknownKind(_))
        ));
        assert!(matches!(
            Mapping::from_toml("[kinds.inkan]\nlabel='x'\nfile='x'\nkey=['b']\n[kinds.inkan.fields]\na={column='A'}"),
            Err(MappingError::MissingField { .. })
        ));
    }
}
