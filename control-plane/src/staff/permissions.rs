//! The permission catalogue (N6): every permission a group can hold, with the Japanese
//! description the admin UI shows. Group definitions and imports naming anything else
//! are refused, so a typo cannot silently grant nothing (or, worse, be read later as
//! a new permission with a meaning nobody reviewed).
//!
//! Naming: `area.action`, optionally `:scope` for a part of the data (e.g.
//! `resident.view:kokuho` lets a member of the 国保 section see the 国民健康保険 part
//! of a resident's record on top of the basic `resident.view`).

/// One permission and what it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// Its name, as stored and checked (`certificate.issue`).
    pub name: &'static str,
    /// What it allows, for administrators (Japanese).
    pub description: &'static str,
}

/// 証明書の交付.
pub const CERTIFICATE_ISSUE: &str = "certificate.issue";
/// 申請の受付・作成.
pub const APPLICATION_CREATE: &str = "application.create";
/// 申請の閲覧.
pub const APPLICATION_VIEW: &str = "application.view";
/// 住民情報の閲覧（基本情報）.
pub const RESIDENT_VIEW: &str = "resident.view";
/// 国民健康保険.
pub const RESIDENT_VIEW_KOKUHO: &str = "resident.view:kokuho";
/// 国民年金.
pub const RESIDENT_VIEW_NENKIN: &str = "resident.view:nenkin";
/// 介護保険.
pub const RESIDENT_VIEW_KAIGO: &str = "resident.view:kaigo";
/// 児童手当・子育て支援.
pub const RESIDENT_VIEW_KOSODATE: &str = "resident.view:kosodate";
/// 税.
pub const RESIDENT_VIEW_ZEI: &str = "resident.view:zei";
/// マイナンバーカードの読み取り.
pub const CARD_READ: &str = "card.read";
/// 個人番号の閲覧（特定個人情報）.
pub const MYNUMBER_VIEW: &str = "mynumber.view";
/// 帳票の印刷.
pub const DOCUMENT_PRINT: &str = "document.print";
/// 職員・グループ・権限の管理.
pub const ADMIN_STAFF: &str = "admin.staff";
/// 窓口端末の管理.
pub const ADMIN_FLEET: &str = "admin.fleet";
/// 必要な手続きの判定（窓口）.
pub const PROCEDURE_DETERMINE: &str = "procedure.determine";
/// 手続き定義の管理.
pub const ADMIN_CATALOG: &str = "admin.catalog";
/// 操作ログの検索.
pub const AUDIT_SEARCH: &str = "audit.search";
/// 操作ログの出力.
pub const AUDIT_EXPORT: &str = "audit.export";
/// 窓口統計の閲覧・出力.
pub const ADMIN_STATS: &str = "admin.stats";

/// Every permission, in the order the admin UI lists them.
pub const CATALOGUE: &[Permission] = &[
    Permission {
        name: CERTIFICATE_ISSUE,
        description: "証明書の交付",
    },
    Permission {
        name: APPLICATION_CREATE,
        description: "申請の受付・作成",
    },
    Permission {
        name: APPLICATION_VIEW,
        description: "申請の閲覧",
    },
    Permission {
        name: RESIDENT_VIEW,
        description: "住民情報の閲覧",
    },
    Permission {
        name: RESIDENT_VIEW_KOKUHO,
        description: "住民情報の閲覧（国民健康保険）",
    },
    Permission {
        name: RESIDENT_VIEW_NENKIN,
        description: "住民情報の閲覧（国民年金）",
    },
    Permission {
        name: RESIDENT_VIEW_KAIGO,
        description: "住民情報の閲覧（介護保険）",
    },
    Permission {
        name: RESIDENT_VIEW_KOSODATE,
        description: "住民情報の閲覧（児童手当・子育て支援）",
    },
    Permission {
        name: RESIDENT_VIEW_ZEI,
        description: "住民情報の閲覧（税）",
    },
    Permission {
        name: CARD_READ,
        description: "マイナンバーカード等の読み取り",
    },
    Permission {
        name: MYNUMBER_VIEW,
        description: "個人番号の閲覧（特定個人情報）",
    },
    Permission {
        name: PROCEDURE_DETERMINE,
        description: "必要な手続きの判定",
    },
    Permission {
        name: DOCUMENT_PRINT,
        description: "帳票の印刷",
    },
    Permission {
        name: ADMIN_STAFF,
        description: "職員・グループ・権限の管理",
    },
    Permission {
        name: ADMIN_FLEET,
        description: "窓口端末の管理",
    },
    Permission {
        name: ADMIN_CATALOG,
        description: "手続き定義の管理",
    },
    Permission {
        name: AUDIT_SEARCH,
        description: "操作ログの検索",
    },
    Permission {
        name: AUDIT_EXPORT,
        description: "操作ログの出力",
    },
    Permission {
        name: ADMIN_STATS,
        description: "窓口統計の閲覧・出力",
    },
];

/// The catalogue entry for `name`.
pub fn lookup(name: &str) -> Option<&'static Permission> {
    CATALOGUE.iter().find(|p| p.name == name)
}

/// Whether `name` is in the catalogue.
pub fn is_known(name: &str) -> bool {
    lookup(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_well_formed() {
        let mut names: Vec<_> = CATALOGUE.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len(), "duplicate permission");
        for p in CATALOGUE {
            assert!(p.name.is_ascii() && !p.name.contains(' '), "{}", p.name);
            assert!(!p.description.is_empty());
        }
        assert!(is_known("resident.view:kokuho"));
        assert!(!is_known("resident.view:*"));
    }
}
