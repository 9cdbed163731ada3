//! The resident RPCs the counter calls (住民照会), each authorised by the staff
//! session's permissions and written to the audit log with the 宛名番号 of every
//! resident it returned (never a name or anything else personal).
//!
//! | method | params | result |
//! | --- | --- | --- |
//! | `residents.lookup-card` | [`LookupCardRequest`] (the card's 基本4情報) | [`LookupCardResponse`]: candidates with match reasons, `exact` |
//! | `residents.search` | [`SearchRequest`] (kana or kanji prefix, optional birth date) | [`SearchResponse`] |
//! | `residents.get` | [`GetRequest`] (宛名番号) | [`GetResponse`]: the resident, household members, records |
//! | `residents.household` | [`HouseholdRequest`] (宛名番号 of a member) | [`HouseholdResponse`] |
//!
//! Permissions (`staff::permissions`): every method needs `resident.view`. The
//! records of the other data kinds that `residents.get` returns are those of the data
//! areas the session holds: 国保 and 後期高齢 need `resident.view:kokuho`, 介護保険
//! `resident.view:kaigo`, 児童手当・児童扶養手当・福祉医療・保育・就学援助
//! `resident.view:kosodate`, 住民税・滞納 `resident.view:zei`; 印鑑登録, マイナンバー
//! カード情報, 住登外, 転出証明書 come with `resident.view`. The kinds held back are
//! named in the answer (`withheld`), so the screen can say why something is missing.
//! 個人番号 fields are never returned (they stay sealed in the store).
//!
//! Audit: one entry per call, action `resident.view`, before the answer leaves:
//! outcome `ok` with `detail.residents` = the 宛名番号 returned (and `resident` set
//! when exactly one), or `denied` / `error` with the error code. The service's own
//! `rpc:<method>` entry is written as well; this one says *whom* was seen.
//!
//! Tenancy: every query takes the calling device's tenant, so a 宛名番号 of another
//! city names nobody here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kakanai_protocol::catalogue::{RpcError, RpcMethod};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::lookup::{household_of, lookup_card, search_name, Candidate, CardQuery, LookupError};
use super::mapping::{DataKind, FieldType, Mapping};
use crate::model::{Actor, AuditRecord, Place};
use crate::rpc::{Dispatcher, RpcContext, RpcFuture, RpcHandler, RpcResult};
use crate::staff::permissions::{
    RESIDENT_VIEW, RESIDENT_VIEW_KAIGO, RESIDENT_VIEW_KOKUHO, RESIDENT_VIEW_KOSODATE,
    RESIDENT_VIEW_ZEI,
};
use crate::store::{Store, StoredResident};

/// The audit action of every resident RPC.
pub const AUDIT_ACTION: &str = "resident.view";

/// The permission that shows a kind's records in `residents.get`.
pub fn permission_for(kind: DataKind) -> &'static str {
    match kind {
        DataKind::Kokuho | DataKind::Kouki => RESIDENT_VIEW_KOKUHO,
        DataKind::Kaigo => RESIDENT_VIEW_KAIGO,
        DataKind::JidouTeate
        | DataKind::JidouFuyou
        | DataKind::FukushiIryo
        | DataKind::Hoiku
        | DataKind::ShugakuEnjo => RESIDENT_VIEW_KOSODATE,
        DataKind::Juminzei | DataKind::Taino => RESIDENT_VIEW_ZEI,
        DataKind::Jumin
        | DataKind::Jutogai
        | DataKind::Tenshutsu
        | DataKind::AddressMaster
        | DataKind::Inkan
        | DataKind::MynumberCard => RESIDENT_VIEW,
    }
}

pub use kakanai_protocol::residents::{
    CandidateView, Get as GetMethod, GetRequest, GetResponse, Household as HouseholdMethod,
    HouseholdRequest, HouseholdResponse, LookupCard as LookupCardMethod, LookupCardRequest,
    LookupCardResponse, RecordView, ResidentView, Search as SearchMethod, SearchRequest,
    SearchResponse,
};

/// A stored resident as the counter sees it.
pub fn resident_view(r: &StoredResident) -> ResidentView {
    ResidentView {
        atena: r.atena.clone(),
        household: r.household.clone(),
        name: r.name.clone(),
        kana: r.kana.clone(),
        birth_date: r.birth_date.clone(),
        sex: r.sex.clone(),
        relation: r.relation.clone(),
        machiaza: r.machiaza.clone(),
        address: r.address.clone(),
        status: r.status.clone(),
    }
}

/// A lookup candidate as the counter sees it.
pub fn candidate_view(c: &Candidate) -> CandidateView {
    let m = &c.matched;
    let matched = [
        (m.name, "name"),
        (m.birth_date, "birth_date"),
        (m.address, "address"),
        (m.sex, "sex"),
        (m.prefix, "prefix"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| n.to_owned())
    .collect();
    CandidateView {
        resident: resident_view(&c.resident),
        reason: c.reason.clone(),
        matched,
    }
}

/// What the four handlers share.
#[derive(Debug)]
pub struct ResidentsRpc {
    store: Store,
    mapping: Arc<Mapping>,
}

fn invalid_params() -> RpcError {
    RpcError {
        code: "invalid-params".into(),
        message: "パラメータが正しくありません".into(),
    }
}

fn internal() -> RpcError {
    RpcError {
        code: "internal".into(),
        message: "システムエラーが発生しました".into(),
    }
}

fn not_found() -> RpcError {
    RpcError {
        code: "not-found".into(),
        message: "該当する住民が見つかりません".into(),
    }
}

fn lookup_error(e: LookupError) -> RpcError {
    match e {
        LookupError::BirthDate => RpcError {
            code: "invalid-params".into(),
            message: "生年月日が正しくありません".into(),
        },
        LookupError::Store(e) => {
            tracing::error!(error = %e, "resident lookup failed");
            internal()
        }
    }
}

/// Decodes parameters; the decoder's message is dropped (it could quote a name).
fn params<T: DeserializeOwned>(value: ciborium::Value) -> Result<T, RpcError> {
    value.deserialized().map_err(|_| invalid_params())
}

/// What a call returned, for the audit entry: the 宛名番号 seen.
type Seen = Vec<String>;

impl ResidentsRpc {
    /// Handlers over `store`, with `mapping` telling which fields are 個人番号.
    pub fn new(store: Store, mapping: Arc<Mapping>) -> Arc<Self> {
        Arc::new(Self { store, mapping })
    }

    /// Registers the four methods.
    pub fn register(self: &Arc<Self>, dispatcher: &mut Dispatcher) {
        for method in [
            LookupCardMethod::NAME,
            SearchMethod::NAME,
            GetMethod::NAME,
            HouseholdMethod::NAME,
        ] {
            dispatcher.register(Arc::new(Handler {
                method,
                rpc: Arc::clone(self),
            }));
        }
    }

    /// The JSON fields of a stored row without its 個人番号 fields.
    fn visible_fields(&self, kind: DataKind, data: &str) -> BTreeMap<String, String> {
        let mut fields: BTreeMap<String, String> = serde_json::from_str(data).unwrap_or_default();
        if let Some(km) = self.mapping.kind(kind) {
            for (name, fm) in &km.fields {
                if fm.ty == FieldType::MyNumber {
                    fields.remove(name);
                }
            }
        }
        // Whatever the mapping, a sealed value is never shown.
        fields.retain(|k, _| !k.contains("my_number"));
        fields
    }

    async fn run(
        &self,
        method: &'static str,
        ctx: &RpcContext,
        value: ciborium::Value,
    ) -> Result<(ciborium::Value, Seen), RpcError> {
        let staff = ctx.require(RESIDENT_VIEW)?;
        let tenant = &ctx.tenant;
        match method {
            LookupCardMethod::NAME => {
                let req: LookupCardRequest = params(value)?;
                let found = lookup_card(&self.store, tenant, &CardQuery::from_card(&req.card))
                    .await
                    .map_err(lookup_error)?;
                let response = LookupCardResponse {
                    exact: found.exact,
                    candidates: found.candidates.iter().map(candidate_view).collect(),
                };
                let seen = response
                    .candidates
                    .iter()
                    .map(|c| c.resident.atena.clone())
                    .collect();
                Ok((encode(&response)?, seen))
            }
            SearchMethod::NAME => {
                let req: SearchRequest = params(value)?;
                if req.text.trim().is_empty() || req.text.chars().count() > 64 {
                    return Err(invalid_params());
                }
                let limit = req.limit.unwrap_or(crate::store::SEARCH_LIMIT);
                let found = search_name(
                    &self.store,
                    tenant,
                    &req.text,
                    req.birth_date.as_deref(),
                    limit,
                )
                .await
                .map_err(lookup_error)?;
                let response = SearchResponse {
                    candidates: found.iter().map(candidate_view).collect(),
                };
                let seen = response
                    .candidates
                    .iter()
                    .map(|c| c.resident.atena.clone())
                    .collect();
                Ok((encode(&response)?, seen))
            }
            GetMethod::NAME => {
                let req: GetRequest = params(value)?;
                let Some(hh) = household_of(&self.store, tenant, &req.atena)
                    .await
                    .map_err(lookup_error)?
                else {
                    return Err(not_found());
                };
                let Some(me) = hh.members.iter().find(|m| m.atena == req.atena) else {
                    return Err(not_found());
                };
                let stored = self
                    .store
                    .records_of(tenant, &req.atena, None)
                    .await
                    .map_err(|e| lookup_error(e.into()))?;
                let mut records = Vec::new();
                let mut withheld = BTreeSet::new();
                for r in &stored {
                    let Some(kind) = DataKind::parse(&r.kind) else {
                        continue;
                    };
                    if !staff.permissions.contains(permission_for(kind)) {
                        withheld.insert(r.kind.clone());
                        continue;
                    }
                    records.push(RecordView {
                        kind: r.kind.clone(),
                        label: self
                            .mapping
                            .kind(kind)
                            .map(|k| k.label.clone())
                            .unwrap_or_default(),
                        key: r.key.clone(),
                        fields: self.visible_fields(kind, &r.data),
                    });
                }
                let response = GetResponse {
                    resident: resident_view(me),
                    fields: self.visible_fields(DataKind::Jumin, &me.data),
                    household: hh.members.iter().map(resident_view).collect(),
                    records,
                    withheld: withheld.into_iter().collect(),
                };
                // The resident first, then the other members shown.
                let mut seen = vec![response.resident.atena.clone()];
                seen.extend(
                    response
                        .household
                        .iter()
                        .filter(|m| m.atena != response.resident.atena)
                        .map(|m| m.atena.clone()),
                );
                Ok((encode(&response)?, seen))
            }
            HouseholdMethod::NAME => {
                let req: HouseholdRequest = params(value)?;
                let Some(hh) = household_of(&self.store, tenant, &req.atena)
                    .await
                    .map_err(lookup_error)?
                else {
                    return Err(not_found());
                };
                let household = hh
                    .members
                    .first()
                    .map(|m| m.household.clone())
                    .unwrap_or_default();
                let response = HouseholdResponse {
                    household,
                    head_atena: hh.household.as_ref().and_then(|h| h.head_atena.clone()),
                    living: hh.household.as_ref().map_or(0, |h| h.members),
                    members: hh.members.iter().map(resident_view).collect(),
                };
                let seen = response.members.iter().map(|m| m.atena.clone()).collect();
                Ok((encode(&response)?, seen))
            }
            _ => Err(internal()),
        }
    }

    async fn audit(
        &self,
        method: &'static str,
        ctx: &RpcContext,
        result: &Result<(ciborium::Value, Seen), RpcError>,
    ) -> Result<(), RpcError> {
        let actor = ctx.session.as_ref().map_or_else(
            || Actor::Device(ctx.device.to_string()),
            |s| Actor::Staff(s.staff_id.clone()),
        );
        let (outcome, detail, resident) = match result {
            Ok((_, seen)) => (
                "ok",
                serde_json::json!({ "method": method, "residents": seen, "count": seen.len() }),
                (seen.len() == 1).then(|| seen[0].clone()),
            ),
            Err(e) => (
                if e.code == "unauthenticated" || e.code == "forbidden" {
                    "denied"
                } else {
                    "error"
                },
                serde_json::json!({ "method": method, "code": e.code, "residents": [] }),
                None,
            ),
        };
        let record = AuditRecord {
            tenant: ctx.tenant.to_string(),
            at_ms: ctx.now_ms,
            actor,
            action: AUDIT_ACTION.into(),
            resident,
            place: Place::Appliance(ctx.device.to_string()),
            outcome: outcome.into(),
            detail,
        };
        self.store.append_audit(&record).await.map_err(|e| {
            tracing::error!(error = %e, "cannot audit a resident view");
            internal()
        })?;
        Ok(())
    }
}

fn encode<T: Serialize>(v: &T) -> Result<ciborium::Value, RpcError> {
    ciborium::Value::serialized(v).map_err(|_| internal())
}

/// One registered method.
#[derive(Debug)]
struct Handler {
    method: &'static str,
    rpc: Arc<ResidentsRpc>,
}

impl RpcHandler for Handler {
    fn method(&self) -> &'static str {
        self.method
    }

    fn handle<'a>(&'a self, ctx: &'a RpcContext, params: ciborium::Value) -> RpcFuture<'a> {
        Box::pin(async move {
            let result = self.rpc.run(self.method, ctx, params).await;
            // Audited before the answer leaves; no audit, no answer.
            self.rpc.audit(self.method, ctx, &result).await?;
            let r: RpcResult = result.map(|(v, _)| v);
            r
        })
    }
}
