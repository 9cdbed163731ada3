//! The resident RPCs (住民照会) as both ends see them: `residents.lookup-card`,
//! `residents.search`, `residents.get`, `residents.household` — the control plane
//! answers them (`kakanai_control_plane::residents::rpc`, which says who may call
//! what and how each call is audited), the staff UI on the appliance asks them.
//!
//! Everything here is personal data: `Debug` shows 宛名番号 and kinds only.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalogue::RpcMethod;
use crate::personal::CardFace;

/// A resident as the counter sees it (personal data: `Debug` shows the 宛名番号 only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentView {
    /// 宛名番号.
    pub atena: String,
    /// 世帯番号.
    pub household: String,
    /// 氏名, exactly as the core system holds it (IVS and all).
    pub name: String,
    /// 氏名フリガナ.
    pub kana: String,
    /// 生年月日 `YYYY-MM-DD`.
    pub birth_date: String,
    /// 性別 code (`1` 男, `2` 女, `9`).
    pub sex: String,
    /// 続柄.
    pub relation: String,
    /// 町字コード.
    pub machiaza: String,
    /// 住所.
    pub address: String,
    /// 状態 (在住 / 転出 / 死亡).
    pub status: String,
}

impl fmt::Debug for ResidentView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResidentView")
            .field("atena", &self.atena)
            .finish_non_exhaustive()
    }
}

/// A candidate with what matched and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateView {
    /// The resident.
    pub resident: ResidentView,
    /// The reason in Japanese (「氏名・生年月日・住所が一致」).
    pub reason: String,
    /// Which parts matched: `name`, `birth_date`, `address`, `sex`, `prefix`.
    pub matched: Vec<String>,
}

/// `residents.lookup-card`.
#[derive(Debug)]
pub struct LookupCard;

/// `residents.lookup-card` parameters: the card face as read (its 個人番号, if any,
/// is ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupCardRequest {
    /// The card's face.
    pub card: CardFace,
}

/// `residents.lookup-card` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupCardResponse {
    /// Exactly one candidate matches everything (then it is the first).
    pub exact: bool,
    /// Candidates, best first.
    pub candidates: Vec<CandidateView>,
}

impl RpcMethod for LookupCard {
    const NAME: &'static str = "residents.lookup-card";
    type Request = LookupCardRequest;
    type Response = LookupCardResponse;
}

/// `residents.search`.
#[derive(Debug)]
pub struct Search;

/// `residents.search` parameters.
#[derive(Clone, Serialize, Deserialize)]
pub struct SearchRequest {
    /// The start of the name (kanji) or reading (kana).
    pub text: String,
    /// 生年月日, optional (`YYYYMMDD` or `YYYY-MM-DD`).
    #[serde(default)]
    pub birth_date: Option<String>,
    /// At most this many (default and cap 200).
    #[serde(default)]
    pub limit: Option<u32>,
}

impl fmt::Debug for SearchRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SearchRequest([redacted])")
    }
}

/// `residents.search` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Candidates in reading/name order.
    pub candidates: Vec<CandidateView>,
}

impl RpcMethod for Search {
    const NAME: &'static str = "residents.search";
    type Request = SearchRequest;
    type Response = SearchResponse;
}

/// `residents.get`.
#[derive(Debug)]
pub struct Get;

/// `residents.get` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetRequest {
    /// 宛名番号.
    pub atena: String,
}

/// One record of another data kind.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordView {
    /// The kind id (`kokuho` …).
    pub kind: String,
    /// Its Japanese name.
    pub label: String,
    /// The record's key.
    pub key: String,
    /// Field name → value (個人番号 never included).
    pub fields: BTreeMap<String, String>,
}

impl fmt::Debug for RecordView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordView")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// `residents.get` result.
#[derive(Clone, Serialize, Deserialize)]
pub struct GetResponse {
    /// The resident.
    pub resident: ResidentView,
    /// Every 住民記録 field (旧氏, 本籍, 在留資格 …), 個人番号 left out.
    pub fields: BTreeMap<String, String>,
    /// The household's members (every 状態), head first.
    pub household: Vec<ResidentView>,
    /// The resident's records of the other kinds the session may see.
    pub records: Vec<RecordView>,
    /// Kinds with records held back for lack of a data-area permission.
    pub withheld: Vec<String>,
}

impl fmt::Debug for GetResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResponse")
            .field("resident", &self.resident)
            .field("records", &self.records.len())
            .field("withheld", &self.withheld)
            .finish_non_exhaustive()
    }
}

impl RpcMethod for Get {
    const NAME: &'static str = "residents.get";
    type Request = GetRequest;
    type Response = GetResponse;
}

/// `residents.household`.
#[derive(Debug)]
pub struct Household;

/// `residents.household` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HouseholdRequest {
    /// 宛名番号 of any member.
    pub atena: String,
}

/// `residents.household` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HouseholdResponse {
    /// 世帯番号.
    pub household: String,
    /// The 世帯主's 宛名番号, if someone living there is head.
    pub head_atena: Option<String>,
    /// Members living there.
    pub living: u64,
    /// Every member (every 状態), head first.
    pub members: Vec<ResidentView>,
}

impl RpcMethod for Household {
    const NAME: &'static str = "residents.household";
    type Request = HouseholdRequest;
    type Response = HouseholdResponse;
}
