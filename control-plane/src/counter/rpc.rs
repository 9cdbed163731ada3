//! The `counter.*` handlers (contract: `kakanai_protocol::counter`).
//!
//! Every handler checks its permission first, decodes its parameters without ever
//! quoting them, and answers with the contract's types. Error codes per method:
//!
//! | method | codes |
//! | --- | --- |
//! | `counter.certificates` | `unauthenticated`, `forbidden`, `no-catalogue`, `internal` |
//! | `counter.lookup-moving-in` | `unauthenticated`, `forbidden`, `invalid-params` (unreadable or a birth date that is no date), `internal` |
//! | `counter.determine` | `unauthenticated`, `forbidden`, `invalid-params`, `not-found` (a member names nobody), `address-unknown`, `no-catalogue`, `internal` |
//! | `counter.create-visit` | as `counter.determine`, plus `invalid-params` for an adjustment naming no procedure of the catalogue in force |
//! | `counter.request-certificates` | `unauthenticated`, `forbidden`, `invalid-params`, `not-found` (subject, requester or visit), `invalid-certificate-request`, `no-catalogue`, `internal` |
//! | `counter.print` | `unauthenticated`, `forbidden`, `invalid-params` (nothing to print), `not-found` (visit, or a number not of this visit), `illegal-transition`, `printing-unavailable`, `printer-unreachable`, `internal` |
//! | `counter.accept` | `unauthenticated`, `forbidden`, `invalid-params`, `not-found` (visit), `unknown-code`, `illegal-transition`, `internal` |
//! | `counter.visit` | `unauthenticated`, `forbidden`, `invalid-params`, `not-found`, `internal` |
//! | `counter.addresses` | `unauthenticated`, `forbidden`, `internal` |
//!
//! Audit: the methods that read residents or 転出証明書情報 (`lookup-moving-in`,
//! `determine`, `create-visit`, `request-certificates`) append one `resident.view`
//! entry before the answer leaves, with the 宛名番号 (`residents`) and 住民票コード
//! (`moving_in`) read — never a name — or the error code; no audit, no answer.
//! Applications are audited by the store with each transition (create, print,
//! accept), and the service writes its own `rpc:<method>` entry for every call.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use kakanai_protocol::catalogue::{RpcError, RpcMethod};
use kakanai_protocol::counter::{
    self as wire, AcceptRequest, AddressMenu, ApplicationView, CertificateMenu, CertificateOffer,
    CertificateOrder, CreateVisitRequest, MachiazaOption, MovingInResponse, PrintVisitRequest,
    PrintVisitResponse, Relationship as WireRelationship, VisitPlan, VisitRef, VisitView,
};
use kakanai_protocol::personal::CardFace;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::address::{municipality_of, AddressMaster};
use super::determine::{adjust, view, Changed};
use super::facts::{prepare, PrepareError, Prepared, Source};
use super::guide::guide_data;
use super::moving_in;
use crate::applications::certificate::{
    CertificateItem, CertificateRequest, Relationship, FREE_OPTIONS, MAX_COPIES, RESTRICTED_OPTIONS,
};
use crate::applications::fill::{sex_label, Person, VisitData};
use crate::applications::print::{PrintError, Printing};
use crate::applications::{
    self, Act, ApplicationError, ApplicationRecord, ApplicationState, MyNumbers, TransitionError,
    Visit,
};
use crate::model::{Actor, AuditRecord, Place, TenantId};
use crate::residents::MyNumberKey;
use crate::rpc::{Dispatcher, RpcContext, RpcFuture, RpcHandler, RpcResult};
use crate::rules::rpc::DetermineHandler;
use crate::rules::{determine, Catalogue, CatalogueSet, Determination, RulesError};
use crate::staff::permissions::{
    APPLICATION_CREATE, APPLICATION_VIEW, PROCEDURE_DETERMINE, RESIDENT_VIEW,
};
use crate::store::{Store, StoreError};

/// The audit action of the methods that read residents.
pub const AUDIT_ACTION: &str = "resident.view";

/// Forms whose application keeps the subject's 個人番号 (sealed): the forms whose
/// templates print one, and the 住民異動届.
pub const MY_NUMBER_FORMS: &[&str] = &["JUKI-IDO", "KOKUHO-SHUTOKU", "JIDO-NINTEI", "JIFU-NINTEI"];

/// 使用目的 choices of the certificate screen.
pub const PURPOSES: &[&str] = &[
    "年金手続き",
    "就職",
    "運転免許",
    "相続手続き",
    "銀行手続き",
    "自動車登録",
    "社会保険",
    "学校提出",
    "不動産登記",
    "パスポート申請",
];

/// 本人確認書類 choices of the certificate screen.
pub const ID_CHECKS: &[&str] = &[
    "マイナンバーカード",
    "運転免許証",
    "パスポート",
    "在留カード",
    "住民基本台帳カード（写真付き）",
    "身体障害者手帳",
    "健康保険の資格確認書＋年金手帳",
    "健康保険証＋年金手帳",
];

/// The counter methods and what they share.
pub struct CounterRpc {
    store: Store,
    catalogues: DetermineHandler,
    my_number_key: Option<MyNumberKey>,
    printing: OnceLock<Printing>,
}

impl std::fmt::Debug for CounterRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterRpc")
            .field("printing", &self.printing.get().is_some())
            .finish_non_exhaustive()
    }
}

/// How long `counter.accept` lets a scanned draft become printed (the appliance's
/// print report racing the scan) before refusing it.
const PRINTED_REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
fn err(code: &str, message: impl Into<String>) -> RpcError {
    RpcError {
        code: code.into(),
        message: message.into(),
    }
}

fn internal() -> RpcError {
    err("internal", "システムエラーが発生しました")
}

fn invalid() -> RpcError {
    err("invalid-params", "パラメータが正しくありません")
}

fn store_err(e: StoreError) -> RpcError {
    tracing::error!(error = %e, "counter RPC: store failed");
    internal()
}

/// Decodes parameters; the decoder's message is dropped (it could quote a name).
fn params<T: DeserializeOwned>(value: ciborium::Value) -> Result<T, RpcError> {
    value.deserialized().map_err(|_| invalid())
}

fn encode<T: Serialize>(v: &T) -> RpcResult {
    ciborium::Value::serialized(v).map_err(|_| internal())
}

fn prepare_err(e: PrepareError) -> RpcError {
    match e {
        PrepareError::Invalid(m) => err("invalid-params", m),
        PrepareError::NotFound(m) => err("not-found", m),
        PrepareError::AddressUnknown => err(
            "address-unknown",
            "新しい住所が住所マスタで見つかりません。住所を選んでください",
        ),
        PrepareError::Store(e) => store_err(e),
    }
}

fn rules_err(e: RulesError) -> RpcError {
    match e {
        RulesError::NoVersion(date) => err(
            "no-catalogue",
            format!("{date} に適用される手続き定義がありません"),
        ),
        RulesError::Input(m) => err("invalid-params", m),
        RulesError::Catalogue(_) | RulesError::InputFile { .. } => internal(),
    }
}

fn application_err(e: ApplicationError) -> RpcError {
    match e {
        ApplicationError::Transition(TransitionError::Illegal { from, to }) => err(
            "illegal-transition",
            format!("{}の申請は{}にできません", from.label(), to.label()),
        ),
        ApplicationError::Transition(TransitionError::Invalid(m)) => err("invalid-params", m),
        ApplicationError::Certificate(c) => err("invalid-certificate-request", c.to_string()),
        ApplicationError::UnknownNumber(_) | ApplicationError::Store(StoreError::NotFound(_)) => {
            err("not-found", "申請が見つかりません")
        }
        other => {
            tracing::error!(error = %other, "counter RPC: application step failed");
            internal()
        }
    }
}

fn wire_state(s: ApplicationState) -> wire::ApplicationState {
    match s {
        ApplicationState::Draft => wire::ApplicationState::Draft,
        ApplicationState::Printed => wire::ApplicationState::Printed,
        ApplicationState::Accepted => wire::ApplicationState::Accepted,
        ApplicationState::Exported => wire::ApplicationState::Exported,
        ApplicationState::Completed => wire::ApplicationState::Completed,
        ApplicationState::Cancelled => wire::ApplicationState::Cancelled,
    }
}

/// An application as the counter shows it.
pub fn application_view(app: &ApplicationRecord) -> ApplicationView {
    let d = &app.data;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let certificates: Vec<String> = app
        .certificate
        .as_deref()
        .map(|c| {
            c.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let title = text(&d["procedure"]["name"])
        .or_else(|| {
            let names: Vec<String> = d["certificate"]["items"]
                .as_array()
                .map(|items| items.iter().filter_map(|i| text(&i["name"])).collect())
                .unwrap_or_default();
            (!names.is_empty()).then(|| format!("証明書交付請求（{}）", names.join("・")))
        })
        .unwrap_or_else(|| app.form.clone());
    ApplicationView {
        number: app.number.clone(),
        form: app.form.clone(),
        title,
        procedure: app.procedure.clone(),
        certificates,
        subject_name: text(&d["subject"]["name"]),
        state: wire_state(app.state),
        fee: d["certificate"]["fee_total"].as_i64().unwrap_or(0),
    }
}

/// What an audited call read: 宛名番号 and 住民票コード.
#[derive(Debug, Default)]
struct Seen {
    residents: Vec<String>,
    moving_in: Vec<String>,
}

impl CounterRpc {
    /// The methods over `store`; `my_number_key` opens the 個人番号 the import sealed
    /// (the drop directory's key), to seal them again for the forms that carry one.
    /// Without it no form carries a 個人番号.
    pub fn new(store: Store, my_number_key: Option<MyNumberKey>) -> Arc<Self> {
        Arc::new(Self {
            catalogues: DetermineHandler::new(store.clone()),
            store,
            my_number_key,
            printing: OnceLock::new(),
        })
    }

    /// Hands the methods the running printing service (`counter.print` answers
    /// `printing-unavailable` until then; later calls are ignored).
    pub fn printing_ready(&self, printing: Printing) {
        let _ = self.printing.set(printing);
    }

    /// Registers every `counter.*` method.
    pub fn register(self: &Arc<Self>, dispatcher: &mut Dispatcher) {
        for method in [
            wire::Certificates::NAME,
            wire::LookupMovingIn::NAME,
            wire::Determine::NAME,
            wire::CreateVisit::NAME,
            wire::RequestCertificates::NAME,
            wire::PrintVisit::NAME,
            wire::Accept::NAME,
            wire::GetVisit::NAME,
            wire::Addresses::NAME,
        ] {
            dispatcher.register(Arc::new(Handler {
                method,
                rpc: Arc::clone(self),
            }));
        }
    }

    async fn catalogue_set(&self, tenant: &TenantId) -> Result<Arc<CatalogueSet>, RpcError> {
        self.catalogues.catalogue(tenant).await
    }

    async fn city(&self, tenant: &TenantId) -> Result<String, RpcError> {
        Ok(self
            .store
            .get_tenant(tenant)
            .await
            .map_err(store_err)?
            .map(|t| t.name)
            .unwrap_or_default())
    }

    async fn visit(&self, tenant: &TenantId, id: &str) -> Result<Visit, RpcError> {
        self.store
            .visit(tenant, id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| err("not-found", "受付が見つかりません"))
    }

    async fn visit_view(&self, tenant: &TenantId, visit: &Visit) -> Result<VisitView, RpcError> {
        let apps = self
            .store
            .visit_applications(tenant, &visit.id)
            .await
            .map_err(store_err)?;
        let has_guide = self
            .store
            .counter_guide(tenant, &visit.id)
            .await
            .map_err(store_err)?
            .is_some();
        Ok(VisitView {
            visit: visit.id.clone(),
            kind: visit.kind.clone(),
            applications: apps.iter().map(application_view).collect(),
            has_guide,
        })
    }

    async fn run(
        &self,
        method: &'static str,
        ctx: &RpcContext,
        value: ciborium::Value,
        seen: &mut Seen,
    ) -> RpcResult {
        let tenant: &TenantId = &ctx.tenant;
        match method {
            wire::Certificates::NAME => {
                ctx.require(APPLICATION_CREATE)?;
                let set = self.catalogue_set(tenant).await?;
                let today = crate::store::applications::jst_date(ctx.now_ms);
                let cat = set
                    .for_date(today)
                    .ok_or_else(|| err("no-catalogue", "手続き定義が登録されていません"))?;
                encode(&certificate_menu(cat))
            }
            wire::LookupMovingIn::NAME => {
                ctx.require(RESIDENT_VIEW)?;
                let card: CardFace = params(value)?;
                let found = moving_in::lookup(&self.store, tenant, &card)
                    .await
                    .map_err(store_err)?
                    .ok_or_else(|| err("invalid-params", "生年月日が正しくありません"))?;
                seen.moving_in = found
                    .candidates
                    .iter()
                    .chain(&found.family)
                    .map(|t| t.code.clone())
                    .collect();
                seen.moving_in.sort();
                seen.moving_in.dedup();
                encode(&MovingInResponse {
                    exact: found.exact,
                    candidates: found.candidates.iter().map(|t| t.view()).collect(),
                    family: found.family.iter().map(|t| t.view()).collect(),
                })
            }
            wire::Determine::NAME => {
                ctx.require(PROCEDURE_DETERMINE)?;
                let plan: VisitPlan = params(value)?;
                let (set, prepared, det) = self.determine(tenant, &plan, seen).await?;
                let cat = in_force(&set, &det)?;
                encode(&view(cat, &prepared, &det, &Changed::new()))
            }
            wire::CreateVisit::NAME => {
                let staff = ctx.require(APPLICATION_CREATE)?;
                let req: CreateVisitRequest = params(value)?;
                let (set, prepared, mut det) = self.determine(tenant, &req.plan, seen).await?;
                let cat = in_force(&set, &det)?;
                adjust(cat, &prepared, &mut det, &req.adjustments)
                    .map_err(|m| err("invalid-params", m))?;
                let v = self
                    .create_visit(ctx, &staff.staff_id, &req.plan, cat, &prepared, &det)
                    .await?;
                encode(&v)
            }
            wire::RequestCertificates::NAME => {
                let staff = ctx.require(APPLICATION_CREATE)?;
                let order: CertificateOrder = params(value)?;
                let v = self
                    .request_certificates(ctx, &staff.staff_id, &order, seen)
                    .await?;
                encode(&v)
            }
            wire::PrintVisit::NAME => {
                let staff = ctx.require(APPLICATION_CREATE)?;
                let req: PrintVisitRequest = params(value)?;
                let r = self.print(ctx, &staff.staff_id, &req).await?;
                encode(&r)
            }
            wire::Accept::NAME => {
                let staff = ctx.require(APPLICATION_CREATE)?;
                let req: AcceptRequest = params(value)?;
                let v = self.accept(ctx, &staff.staff_id, &req).await?;
                encode(&v)
            }
            wire::Addresses::NAME => {
                ctx.require(PROCEDURE_DETERMINE)?;
                let master = AddressMaster::load(&self.store, tenant)
                    .await
                    .map_err(store_err)?;
                let city = match self
                    .store
                    .a_resident_address(tenant)
                    .await
                    .map_err(store_err)?
                    .map(|a| municipality_of(&a))
                {
                    Some((p, Some(m))) => format!("{}{m}", p.unwrap_or_default()),
                    _ => self.city(tenant).await?,
                };
                encode(&AddressMenu {
                    city,
                    machiaza: master
                        .machiaza()
                        .into_iter()
                        .map(|(code, name, kana)| MachiazaOption {
                            code: code.to_owned(),
                            name: name.to_owned(),
                            kana: kana.to_owned(),
                        })
                        .collect(),
                })
            }
            wire::GetVisit::NAME => {
                ctx.require(APPLICATION_VIEW)?;
                let req: VisitRef = params(value)?;
                let visit = self.visit(tenant, &req.visit).await?;
                encode(&self.visit_view(tenant, &visit).await?)
            }
            _ => Err(internal()),
        }
    }

    /// Plan → input → determination, with the catalogue version in force on the
    /// event date.
    async fn determine(
        &self,
        tenant: &TenantId,
        plan: &VisitPlan,
        seen: &mut Seen,
    ) -> Result<(Arc<CatalogueSet>, Prepared, Determination), RpcError> {
        let set = self.catalogue_set(tenant).await?;
        let city = self.city(tenant).await?;
        let prepared = prepare(&self.store, tenant, plan, &city)
            .await
            .map_err(prepare_err)?;
        seen.residents = prepared.residents_seen.clone();
        seen.moving_in = prepared.moving_in_seen.clone();
        let det = determine(&set, &prepared.input).map_err(rules_err)?;
        Ok((set, prepared, det))
    }

    /// 個人番号 by member id, opened from what the import sealed.
    fn my_numbers(&self, tenant: &TenantId, prepared: &Prepared) -> BTreeMap<String, String> {
        let Some(key) = &self.my_number_key else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for p in &prepared.people {
            let number = match &p.source {
                Source::MovingIn(t) => t
                    .my_number_sealed
                    .as_deref()
                    .and_then(|s| key.open(tenant.as_str(), moving_in::KIND, &t.code, s)),
                Source::Resident(r) => {
                    let data: BTreeMap<String, serde_json::Value> =
                        serde_json::from_str(&r.data).unwrap_or_default();
                    data.get("my_number")
                        .and_then(|v| v.as_str())
                        .filter(|s| !s.is_empty())
                        .and_then(|s| key.open(tenant.as_str(), "jumin", &r.atena, s))
                }
                Source::New => None,
            };
            if let Some(n) = number {
                out.insert(p.id.clone(), n);
            }
        }
        out
    }

    async fn create_visit(
        &self,
        ctx: &RpcContext,
        staff: &str,
        plan: &VisitPlan,
        cat: &Catalogue,
        prepared: &Prepared,
        det: &Determination,
    ) -> Result<VisitView, RpcError> {
        let tenant: &TenantId = &ctx.tenant;
        let city = self.city(tenant).await?;
        let created = crate::store::applications::jst_date(ctx.now_ms);
        let applicant = match plan.applicant {
            Some(i) => prepared.people.get(i).map(|p| p.id.clone()),
            None => prepared
                .people
                .iter()
                .find(|p| p.subject)
                .map(|p| p.id.clone()),
        };
        let head = prepared
            .people
            .iter()
            .find(|p| p.member.relationship == "世帯主")
            .map(|p| p.id.clone());
        let data = VisitData {
            city: city.clone(),
            created,
            event: prepared.details.clone(),
            people: prepared
                .people
                .iter()
                .map(|p| (p.id.clone(), p.person.clone()))
                .collect(),
            applicant: applicant.clone(),
            head: head.clone(),
            household_address: prepared.household_address.clone(),
            answers: plan
                .answers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::Bool(*v)))
                .collect(),
        };
        let numbers = self.my_numbers(tenant, prepared);
        let my_numbers = self.my_number_key.as_ref().map(|key| MyNumbers {
            key,
            forms: MY_NUMBER_FORMS,
            numbers: &numbers,
        });
        let visit = applications::start_visit(
            &self.store,
            tenant,
            ctx.device.as_str(),
            staff,
            plan.event.as_str(),
            ctx.now_ms,
        )
        .await
        .map_err(application_err)?;
        applications::create_for_visit(
            &self.store,
            tenant,
            &visit,
            det,
            &data,
            my_numbers.as_ref(),
            ctx.now_ms,
        )
        .await
        .map_err(application_err)?;
        let guide = guide_data(
            cat,
            prepared,
            det,
            &visit,
            &city,
            created,
            head.as_deref(),
            applicant.as_deref(),
        );
        self.store
            .put_counter_guide(tenant, &visit.id, &guide, ctx.now_ms)
            .await
            .map_err(store_err)?;
        self.visit_view(tenant, &visit).await
    }

    async fn request_certificates(
        &self,
        ctx: &RpcContext,
        staff: &str,
        order: &CertificateOrder,
        seen: &mut Seen,
    ) -> Result<VisitView, RpcError> {
        let tenant: &TenantId = &ctx.tenant;
        let subject = self
            .store
            .resident(tenant, &order.subject)
            .await
            .map_err(store_err)?
            .ok_or_else(|| err("not-found", "該当する住民が見つかりません"))?;
        seen.residents.push(subject.atena.clone());
        let (relationship, requester) = match order.relationship {
            WireRelationship::Myself => (Relationship::Myself, Person::from_resident(&subject)),
            WireRelationship::Household => {
                let atena = order.requester_atena.as_deref().ok_or_else(|| {
                    err("invalid-params", "請求者（同一世帯の方）を選んでください")
                })?;
                let r = self
                    .store
                    .resident(tenant, atena)
                    .await
                    .map_err(store_err)?
                    .ok_or_else(|| err("not-found", "請求者が見つかりません"))?;
                seen.residents.push(r.atena.clone());
                if r.household != subject.household {
                    return Err(err(
                        "invalid-certificate-request",
                        "請求者は対象者と同一世帯ではありません",
                    ));
                }
                (Relationship::Household, Person::from_resident(&r))
            }
            WireRelationship::Agent | WireRelationship::ThirdParty => {
                let g = order
                    .requester
                    .as_ref()
                    .filter(|g| !g.name.trim().is_empty())
                    .ok_or_else(|| err("invalid-params", "請求者の氏名を入力してください"))?;
                let some = |s: &str| (!s.trim().is_empty()).then(|| s.to_owned());
                let person = Person {
                    name: some(&g.name),
                    kana: some(&g.kana),
                    birth_date: g.birth_date.as_deref().and_then(some),
                    sex: g.sex.as_deref().and_then(sex_label).map(str::to_owned),
                    relationship: None,
                    address: g.address.as_deref().and_then(some),
                    atena: None,
                };
                let rel = if order.relationship == WireRelationship::Agent {
                    Relationship::Agent
                } else {
                    Relationship::ThirdParty
                };
                (rel, person)
            }
        };
        let request = CertificateRequest {
            subject: Person::from_resident(&subject),
            requester,
            relationship,
            purpose: order.purpose.clone(),
            destination: order.destination.clone(),
            id_check: order.id_check.clone(),
            items: order
                .items
                .iter()
                .map(|i| CertificateItem {
                    certificate: i.certificate.clone(),
                    options: i.options.clone(),
                    copies: i.copies,
                    fee: i.fee,
                })
                .collect(),
            fee_total: order.fee_total,
        };
        let set = self.catalogue_set(tenant).await?;
        let today = crate::store::applications::jst_date(ctx.now_ms);
        let cat = set
            .for_date(today)
            .ok_or_else(|| err("no-catalogue", "手続き定義が登録されていません"))?;
        // Checked before a visit is started for it: a refused order leaves nothing.
        request
            .validate(cat)
            .map_err(|e| application_err(e.into()))?;
        let visit = match &order.visit {
            Some(id) => self.visit(tenant, id).await?,
            None => applications::start_visit(
                &self.store,
                tenant,
                ctx.device.as_str(),
                staff,
                "certificate",
                ctx.now_ms,
            )
            .await
            .map_err(application_err)?,
        };
        let city = self.city(tenant).await?;
        applications::create_certificate_request(
            &self.store,
            tenant,
            &visit,
            &request,
            cat,
            &city,
            ctx.now_ms,
        )
        .await
        .map_err(application_err)?;
        self.visit_view(tenant, &visit).await
    }

    async fn print(
        &self,
        ctx: &RpcContext,
        staff: &str,
        req: &PrintVisitRequest,
    ) -> Result<PrintVisitResponse, RpcError> {
        let tenant: &TenantId = &ctx.tenant;
        let visit = self.visit(tenant, &req.visit).await?;
        let apps = self
            .store
            .visit_applications(tenant, &visit.id)
            .await
            .map_err(store_err)?;
        let numbers: Vec<String> = if req.numbers.is_empty() {
            apps.iter()
                .filter(|a| matches!(a.state, ApplicationState::Draft | ApplicationState::Printed))
                .map(|a| a.number.clone())
                .collect()
        } else {
            for n in &req.numbers {
                if !apps.iter().any(|a| a.number == *n) {
                    return Err(err("not-found", "この受付の申請ではありません"));
                }
            }
            req.numbers.clone()
        };
        let guide = if req.guide {
            self.store
                .counter_guide(tenant, &visit.id)
                .await
                .map_err(store_err)?
        } else {
            None
        };
        if numbers.is_empty() && guide.is_none() {
            return Err(err("invalid-params", "印刷する申請がありません"));
        }
        let printing = self
            .printing
            .get()
            .ok_or_else(|| err("printing-unavailable", "印刷の準備ができていません"))?;
        let act = Act::staff_at(staff, ctx.device.as_str(), ctx.now_ms);
        match printing
            .print(tenant, &ctx.device, &numbers, guide.as_ref(), act, None)
            .await
        {
            Ok(receipt) => Ok(PrintVisitResponse {
                job_id: receipt.job_id,
                pages: receipt.pages,
                numbers: receipt.numbers,
            }),
            Err(PrintError::Unknown(_)) => Err(err("not-found", "申請が見つかりません")),
            Err(PrintError::NotPrintable { .. }) => Err(err(
                "illegal-transition",
                "受付済み・取消済みの申請は印刷できません",
            )),
            Err(PrintError::Empty) => Err(err("invalid-params", "印刷する申請がありません")),
            Err(PrintError::Refused(_)) | Err(PrintError::Service(_)) => Err(err(
                "printer-unreachable",
                "窓口端末に印刷を送れませんでした。端末とプリンターを確認してください",
            )),
            Err(e) => {
                tracing::error!(error = %e, "counter print failed");
                Err(internal())
            }
        }
    }

    async fn accept(
        &self,
        ctx: &RpcContext,
        staff: &str,
        req: &AcceptRequest,
    ) -> Result<VisitView, RpcError> {
        let tenant: &TenantId = &ctx.tenant;
        let visit = self.visit(tenant, &req.visit).await?;
        let code = req.code.trim();
        let unknown = || {
            err(
                "unknown-code",
                "この受付の申請書のコードではありません。申請書を確かめてください",
            )
        };
        if code.is_empty() || code.chars().count() > 64 {
            return Err(unknown());
        }
        let mut app = self
            .store
            .application_by_number(tenant, code)
            .await
            .map_err(store_err)?
            .filter(|a| a.visit == visit.id)
            .ok_or_else(unknown)?;
        // A form scanned the moment it left the printer: the appliance's "completed"
        // report, which makes the application printed, may still be on its way (it is
        // applied by the printing task, beside this RPC). Give it a moment.
        let deadline = std::time::Instant::now() + PRINTED_REPORT_WAIT;
        while app.state == ApplicationState::Draft && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if let Some(now) = self
                .store
                .application_by_number(tenant, code)
                .await
                .map_err(store_err)?
            {
                app = now;
            }
        }
        match app.state {
            ApplicationState::Printed => {
                let act = Act::staff_at(staff, ctx.device.as_str(), ctx.now_ms);
                match applications::accept_by_number(&self.store, tenant, &app.number, &act).await {
                    Ok(_) => {}
                    // Scanned twice at once: the other scan accepted it.
                    Err(ApplicationError::Transition(TransitionError::Illegal { .. })) => {
                        let now = self
                            .store
                            .application_by_number(tenant, &app.number)
                            .await
                            .map_err(store_err)?;
                        if now.map(|a| a.state) != Some(ApplicationState::Accepted) {
                            return Err(err(
                                "illegal-transition",
                                "この申請は受付できない状態です",
                            ));
                        }
                    }
                    Err(e) => return Err(application_err(e)),
                }
            }
            // A code scanned again: already accepted (or further on).
            ApplicationState::Accepted
            | ApplicationState::Exported
            | ApplicationState::Completed => {}
            ApplicationState::Draft => {
                return Err(err(
                    "illegal-transition",
                    "この申請書はまだ印刷されていません。先に印刷してください",
                ))
            }
            ApplicationState::Cancelled => {
                return Err(err("illegal-transition", "取消済みの申請は受付できません"))
            }
        }
        self.visit_view(tenant, &visit).await
    }

    async fn audit(
        &self,
        method: &'static str,
        ctx: &RpcContext,
        result: &RpcResult,
        seen: &Seen,
    ) -> Result<(), RpcError> {
        let actor = ctx.session.as_ref().map_or_else(
            || Actor::Device(ctx.device.to_string()),
            |s| Actor::Staff(s.staff_id.clone()),
        );
        let (outcome, detail) = match result {
            Ok(_) => (
                "ok",
                serde_json::json!({
                    "method": method,
                    "residents": seen.residents,
                    "moving_in": seen.moving_in,
                    "count": seen.residents.len() + seen.moving_in.len(),
                }),
            ),
            Err(e) => (
                if e.code == "unauthenticated" || e.code == "forbidden" {
                    "denied"
                } else {
                    "error"
                },
                serde_json::json!({
                    "method": method,
                    "code": e.code,
                    "residents": seen.residents,
                    "moving_in": seen.moving_in,
                }),
            ),
        };
        let resident = (result.is_ok() && seen.residents.len() == 1 && seen.moving_in.is_empty())
            .then(|| seen.residents[0].clone());
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
            tracing::error!(error = %e, "cannot audit a counter view");
            internal()
        })?;
        Ok(())
    }
}

/// The catalogue version the determination used.
fn in_force<'a>(set: &'a CatalogueSet, det: &Determination) -> Result<&'a Catalogue, RpcError> {
    set.for_date(det.event_date)
        .map(|c| c.as_ref())
        .ok_or_else(|| err("no-catalogue", "手続き定義が登録されていません"))
}

/// The certificate screen's menu from a catalogue version.
pub fn certificate_menu(cat: &Catalogue) -> CertificateMenu {
    CertificateMenu {
        certificates: cat
            .certificates
            .iter()
            .map(|c| {
                let (restricted, options): (Vec<String>, Vec<String>) = c
                    .options
                    .iter()
                    .cloned()
                    .partition(|o| RESTRICTED_OPTIONS.contains(&o.as_str()));
                CertificateOffer {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    fee: c.fee,
                    free_options: c
                        .options
                        .iter()
                        .filter(|o| FREE_OPTIONS.contains(&o.as_str()))
                        .cloned()
                        .collect(),
                    options,
                    restricted_options: restricted,
                    requires: c.requires.clone(),
                    notes: c.notes.clone(),
                }
            })
            .collect(),
        purposes: PURPOSES.iter().map(|s| (*s).to_owned()).collect(),
        id_checks: ID_CHECKS.iter().map(|s| (*s).to_owned()).collect(),
        max_copies: MAX_COPIES,
    }
}

/// Whether a method reads residents or 転出証明書情報 (and is audited here).
fn reads_residents(method: &str) -> bool {
    matches!(
        method,
        wire::LookupMovingIn::NAME
            | wire::Determine::NAME
            | wire::CreateVisit::NAME
            | wire::RequestCertificates::NAME
    )
}

/// One registered method.
#[derive(Debug)]
struct Handler {
    method: &'static str,
    rpc: Arc<CounterRpc>,
}

impl RpcHandler for Handler {
    fn method(&self) -> &'static str {
        self.method
    }

    fn handle<'a>(&'a self, ctx: &'a RpcContext, params: ciborium::Value) -> RpcFuture<'a> {
        Box::pin(async move {
            let mut seen = Seen::default();
            let result = self.rpc.run(self.method, ctx, params, &mut seen).await;
            if reads_residents(self.method) {
                // Audited before the answer leaves; no audit, no answer.
                self.rpc.audit(self.method, ctx, &result, &seen).await?;
            }
            result
        })
    }
}
