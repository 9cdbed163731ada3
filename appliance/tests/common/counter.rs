//! The stand-in control plane's counter desk (TEST STAND-IN, not the real control
//! plane): answers the `counter.*` methods of `kakanai_protocol::counter` and
//! `residents.household` / `residents.search` with plausible, made-up data, so the
//! staff UI's counter flows can be driven in a browser. It keeps the visits it made
//! in memory, sends a real print job (a small PDF) to the appliance for
//! `counter.print`, and accepts a scanned application number of the visit.
//!
//! The city: the 見本 household (見本　花子, the virtual card `mynumber-sample.json`,
//! with 太郎 and 一郎) lives here; the 山田 family of four is moving in
//! (転出証明書情報, cards from [`yamada_card`]).
//!
//! The real cross-process test against the real control plane is the lead's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use kakanai_protocol::catalogue::{DocumentSource, PrintJob, RpcMethod, RpcRequest, RpcResponse};
use kakanai_protocol::counter::{
    Accept, AcceptRequest, AddressMenu, Addresses, ApplicationState, ApplicationView,
    CertificateMenu, CertificateOffer, CertificateOrder, Certificates, CreateVisit,
    CreateVisitRequest, DeterminationView, Determine, EventKind, GetVisit, LookupMovingIn,
    MachiazaOption, MemberView, MovingInPerson, MovingInResponse, PersonRef, PrintVisit,
    PrintVisitRequest, PrintVisitResponse, ProcedureView, QuestionView, RequestCertificates,
    StopView, VisitPlan, VisitRef, VisitView,
};
use kakanai_protocol::personal::CardFace;
use serde::{Deserialize, Serialize};

/// A resident of the stand-in's city (the control plane's `ResidentView` shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resident {
    pub atena: String,
    pub household: String,
    pub name: String,
    pub kana: String,
    pub birth_date: String,
    pub sex: String,
    pub relation: String,
    pub machiaza: String,
    pub address: String,
    pub status: String,
}

fn resident(
    atena: &str,
    name: &str,
    kana: &str,
    birth: &str,
    sex: &str,
    relation: &str,
) -> Resident {
    Resident {
        atena: atena.into(),
        household: "000000045".into(),
        name: name.into(),
        kana: kana.into(),
        birth_date: birth.into(),
        sex: sex.into(),
        relation: relation.into(),
        machiaza: "001".into(),
        address: "架空県見本市本町１丁目２番３号".into(),
        status: "在住".into(),
    }
}

/// The 見本 household (見本　花子 is the sample card's holder, 宛名番号 000000123).
pub fn mihon_household() -> Vec<Resident> {
    vec![
        resident(
            "000000123",
            "見本　花子",
            "ミホン　ハナコ",
            "1985-04-01",
            "2",
            "世帯主",
        ),
        resident(
            "000000124",
            "見本　太郎",
            "ミホン　タロウ",
            "1983-02-11",
            "1",
            "夫",
        ),
        resident(
            "000000125",
            "見本　一郎",
            "ミホン　イチロウ",
            "2015-06-30",
            "1",
            "子",
        ),
    ]
}

/// The 山田 family moving in: (住民票コード, 氏名, カナ, 生年月日, 性別, 続柄).
pub const YAMADA: [(&str, &str, &str, &str, &str, &str); 4] = [
    (
        "10000000001",
        "山田　太郎",
        "ヤマダ　タロウ",
        "1980-05-10",
        "male",
        "世帯主",
    ),
    (
        "10000000002",
        "山田　花子",
        "ヤマダ　ハナコ",
        "1983-08-20",
        "female",
        "妻",
    ),
    (
        "10000000003",
        "山田　一郎",
        "ヤマダ　イチロウ",
        "2014-04-02",
        "male",
        "子",
    ),
    (
        "10000000004",
        "山田　桜",
        "ヤマダ　サクラ",
        "2021-09-15",
        "female",
        "子",
    ),
];
pub const YAMADA_OLD_ADDRESS: &str = "架空県隣町三丁目４番５号";
pub const YAMADA_NEW_ADDRESS: &str = "架空県見本市緑町２丁目８番１号";

/// A virtual My Number card profile (JSON) for the 山田 family member `i` (PIN 1234).
pub fn yamada_card(i: usize) -> String {
    let (_, name, _, birth, sex, _) = YAMADA[i];
    format!(
        r#"{{"type":"mynumber","label":"yamada-{i}","pin":"1234","pin_tries":3,
"my_number":"123456789018","name":"{name}","address":"{YAMADA_OLD_ADDRESS}",
"birth_date":"{birth}","sex":"{}","expiry_date":"2035-04-01","security_code":"5678"}}"#,
        if sex == "male" { "1" } else { "2" }
    )
}

fn yamada(i: usize) -> MovingInPerson {
    let (code, name, kana, birth, sex, relation) = YAMADA[i];
    MovingInPerson {
        juminhyo_code: code.into(),
        name: name.into(),
        kana: kana.into(),
        birth_date: birth.into(),
        sex: sex.into(),
        previous_address: YAMADA_OLD_ADDRESS.into(),
        move_date: Some("2026-11-20".into()),
        destination: YAMADA_NEW_ADDRESS.into(),
        head_name: "山田　太郎".into(),
        relation: relation.into(),
    }
}

/// The question the stand-in asks for a 転入 with a school child.
pub const SCHOOL_QUESTION: &str = "school_transfer@m3";

/// What the stand-in saw and holds.
#[derive(Default)]
pub struct CounterDesk {
    /// Every counter/residents method called, in order, with its parameters as CBOR.
    pub calls: Mutex<Vec<(String, ciborium::Value)>>,
    visits: Mutex<HashMap<String, VisitView>>,
    next: AtomicU64,
    /// The print jobs sent: job id → application numbers.
    pub jobs: Mutex<Vec<(String, Vec<String>)>>,
}

fn err(method: &str, code: &str, message: &str) -> RpcResponse {
    RpcResponse::err(method, code, message)
}

fn ok<M: RpcMethod>(r: &M::Response) -> RpcResponse {
    RpcResponse::ok::<M>(r).unwrap()
}

fn add_days(iso: &str, n: i64) -> String {
    // Enough calendar for the stand-in: via the day count.
    let y: i64 = iso[..4].parse().unwrap();
    let m: i64 = iso[5..7].parse().unwrap();
    let d: i64 = iso[8..10].parse().unwrap();
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468 + n;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn procedure(
    id: &str,
    name: &str,
    department: &str,
    counter: &str,
    reason: &str,
    deadline: Option<String>,
    has_form: bool,
) -> ProcedureView {
    ProcedureView {
        id: id.into(),
        name: name.into(),
        area: "住民".into(),
        department: department.into(),
        counter: counter.into(),
        reason: reason.into(),
        deadline,
        deadline_note: None,
        documents: vec!["本人確認書類".into()],
        fee: 0,
        has_form,
        included: true,
        adjusted: false,
    }
}

impl CounterDesk {
    /// Whether the desk answers `method`.
    pub fn handles(method: &str) -> bool {
        method.starts_with("counter.")
            || method == "residents.household"
            || method == "residents.search"
    }

    /// The names of the methods called so far.
    pub fn methods(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// The parameters of the last call of `method`.
    pub fn last_params<T: serde::de::DeserializeOwned>(&self, method: &str) -> Option<T> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(m, _)| m == method)
            .map(|(_, v)| v.deserialized().unwrap())
    }

    /// Answers one request of a logged-in session (`authenticated`); the print job to
    /// send to the appliance, for `counter.print`.
    pub fn answer(&self, req: &RpcRequest, authenticated: bool) -> (RpcResponse, Option<PrintJob>) {
        let method = req.method.as_str();
        self.calls
            .lock()
            .unwrap()
            .push((method.to_owned(), req.params.clone()));
        if !authenticated {
            return (err(method, "unauthenticated", "ログインしてください"), None);
        }
        let invalid = || err(method, "invalid-params", "パラメータが正しくありません");
        let resp = match method {
            "residents.household" => {
                #[derive(Deserialize)]
                struct H {
                    atena: String,
                }
                let Ok(h) = req.params.deserialized::<H>() else {
                    return (invalid(), None);
                };
                let members = mihon_household();
                if !members.iter().any(|m| m.atena == h.atena) {
                    return (err(method, "not-found", "該当する住民がいません"), None);
                }
                RpcResponse {
                    method: method.into(),
                    outcome: kakanai_protocol::catalogue::RpcOutcome::Ok(
                        ciborium::Value::serialized(&serde_json::json!({
                            "household": "000000045",
                            "head_atena": "000000123",
                            "living": 3,
                            "members": members,
                        }))
                        .unwrap(),
                    ),
                }
            }
            "residents.search" => {
                #[derive(Deserialize)]
                struct S {
                    text: String,
                }
                let Ok(s) = req.params.deserialized::<S>() else {
                    return (invalid(), None);
                };
                let found: Vec<_> = mihon_household()
                    .into_iter()
                    .filter(|r| r.kana.starts_with(&s.text) || r.name.starts_with(&s.text))
                    .map(|r| serde_json::json!({"resident": r, "reason": "読みが前方一致", "matched": ["prefix"]}))
                    .collect();
                RpcResponse {
                    method: method.into(),
                    outcome: kakanai_protocol::catalogue::RpcOutcome::Ok(
                        ciborium::Value::serialized(&serde_json::json!({ "candidates": found }))
                            .unwrap(),
                    ),
                }
            }
            Certificates::NAME => ok::<Certificates>(&menu()),
            LookupMovingIn::NAME => {
                let Ok(face) = req.params.deserialized::<CardFace>() else {
                    return (invalid(), None);
                };
                let birth = face.birth_date.expose().to_owned();
                let hit: Vec<MovingInPerson> = (0..4)
                    .map(yamada)
                    .filter(|p| {
                        p.name == face.name.expose() && p.birth_date.replace('-', "") == birth
                    })
                    .collect();
                let family = if hit.is_empty() {
                    Vec::new()
                } else {
                    (0..4).map(yamada).collect()
                };
                ok::<LookupMovingIn>(&MovingInResponse {
                    exact: hit.len() == 1,
                    candidates: hit,
                    family,
                })
            }
            Addresses::NAME => ok::<Addresses>(&addresses()),
            Determine::NAME => {
                let Ok(plan) = req.params.deserialized::<VisitPlan>() else {
                    return (invalid(), None);
                };
                // A 転居 must name a 町字 of the master, as on the control plane.
                let placed = plan
                    .destination
                    .as_ref()
                    .and_then(|d| d.machiaza.as_ref())
                    .is_some_and(|code| addresses().machiaza.iter().any(|m| &m.code == code));
                if plan.event == EventKind::MoveWithin && !placed {
                    return (
                        err(
                            method,
                            "address-unknown",
                            "新しい住所が住所マスタで見つかりません。住所を選んでください",
                        ),
                        None,
                    );
                }
                match determine(&plan) {
                    Ok(d) => ok::<Determine>(&d),
                    Err(r) => return (err(method, "invalid-params", r), None),
                }
            }
            CreateVisit::NAME => {
                let Ok(r) = req.params.deserialized::<CreateVisitRequest>() else {
                    return (invalid(), None);
                };
                let Ok(d) = determine(&r.plan) else {
                    return (invalid(), None);
                };
                let n = self.next.fetch_add(1, Ordering::SeqCst);
                let mut apps = Vec::new();
                let names: HashMap<String, String> = d
                    .members
                    .iter()
                    .map(|m| (m.member.clone(), m.name.clone()))
                    .collect();
                let all = d
                    .members
                    .iter()
                    .flat_map(|m| {
                        m.procedures
                            .iter()
                            .map(move |p| (Some(m.member.clone()), p.clone()))
                    })
                    .chain(d.household.iter().map(|p| (None, p.clone())));
                for (member, p) in all {
                    let adjusted = r
                        .adjustments
                        .iter()
                        .rev()
                        .find(|a| a.member == member && a.procedure == p.id);
                    let included = adjusted.map_or(p.included, |a| a.include);
                    if !included || !p.has_form {
                        continue;
                    }
                    apps.push(ApplicationView {
                        number: format!("2026-{:06}", 100 * (n + 1) + apps.len() as u64 + 1),
                        form: p.id.clone(),
                        title: p.name.clone(),
                        procedure: Some(p.id.clone()),
                        certificates: Vec::new(),
                        subject_name: member.and_then(|m| names.get(&m).cloned()),
                        state: ApplicationState::Draft,
                        fee: 0,
                    });
                }
                let view = VisitView {
                    visit: format!("visit-{n}"),
                    kind: r.plan.event.as_str().into(),
                    applications: apps,
                    has_guide: true,
                };
                self.visits
                    .lock()
                    .unwrap()
                    .insert(view.visit.clone(), view.clone());
                ok::<CreateVisit>(&view)
            }
            RequestCertificates::NAME => {
                let Ok(o) = req.params.deserialized::<CertificateOrder>() else {
                    return (invalid(), None);
                };
                let m = menu();
                let valid = !o.items.is_empty()
                    && o.items.iter().all(|i| {
                        i.copies >= 1
                            && i.copies <= m.max_copies
                            && m.certificates
                                .iter()
                                .any(|c| c.id == i.certificate && c.fee == i.fee)
                    })
                    && o.fee_total
                        == o.items
                            .iter()
                            .map(|i| i.fee * i64::from(i.copies))
                            .sum::<i64>()
                    && m.purposes.contains(&o.purpose)
                    && m.id_checks.contains(&o.id_check)
                    && mihon_household().iter().any(|r| r.atena == o.subject);
                if !valid {
                    return (
                        err(
                            method,
                            "invalid-certificate-request",
                            "請求の内容が正しくありません",
                        ),
                        None,
                    );
                }
                let n = self.next.fetch_add(1, Ordering::SeqCst);
                let subject = mihon_household()
                    .into_iter()
                    .find(|r| r.atena == o.subject)
                    .unwrap();
                let view = VisitView {
                    visit: format!("visit-{n}"),
                    kind: "certificate".into(),
                    applications: vec![ApplicationView {
                        number: format!("2026-{:06}", 100 * (n + 1) + 1),
                        form: "certificate_request".into(),
                        title: "証明書交付申請書".into(),
                        procedure: None,
                        certificates: o.items.iter().map(|i| i.certificate.clone()).collect(),
                        subject_name: Some(subject.name),
                        state: ApplicationState::Draft,
                        fee: o.fee_total,
                    }],
                    has_guide: false,
                };
                self.visits
                    .lock()
                    .unwrap()
                    .insert(view.visit.clone(), view.clone());
                ok::<RequestCertificates>(&view)
            }
            PrintVisit::NAME => {
                let Ok(p) = req.params.deserialized::<PrintVisitRequest>() else {
                    return (invalid(), None);
                };
                let mut visits = self.visits.lock().unwrap();
                let Some(view) = visits.get_mut(&p.visit) else {
                    return (err(method, "not-found", "受付がありません"), None);
                };
                let numbers: Vec<String> = view
                    .applications
                    .iter()
                    .filter(|a| {
                        matches!(a.state, ApplicationState::Draft | ApplicationState::Printed)
                    })
                    .map(|a| a.number.clone())
                    .collect();
                for a in &mut view.applications {
                    if a.state == ApplicationState::Draft {
                        a.state = ApplicationState::Printed;
                    }
                }
                let n = self.next.fetch_add(1, Ordering::SeqCst);
                let job_id = format!("job-{n}");
                let pdf = kakanai_hw::printer::test_page("Kakanai stand-in", 2000);
                let job = PrintJob {
                    job_id: job_id.clone(),
                    title: format!("申請書 {}枚", numbers.len()),
                    media_type: "application/pdf".into(),
                    size: pdf.len() as u64,
                    copies: 1,
                    source: DocumentSource::Inline {
                        data: pdf,
                        chunk: 0,
                        chunks: 1,
                    },
                };
                self.jobs
                    .lock()
                    .unwrap()
                    .push((job_id.clone(), numbers.clone()));
                let pages = numbers.len() + usize::from(p.guide);
                return (
                    ok::<PrintVisit>(&PrintVisitResponse {
                        job_id,
                        pages,
                        numbers,
                    }),
                    Some(job),
                );
            }
            Accept::NAME => {
                let Ok(a) = req.params.deserialized::<AcceptRequest>() else {
                    return (invalid(), None);
                };
                let mut visits = self.visits.lock().unwrap();
                let Some(view) = visits.get_mut(&a.visit) else {
                    return (err(method, "not-found", "受付がありません"), None);
                };
                let Some(app) = view.applications.iter_mut().find(|x| x.number == a.code) else {
                    return (
                        err(method, "unknown-code", "この受付の申請書ではありません"),
                        None,
                    );
                };
                if app.state != ApplicationState::Printed {
                    return (
                        err(
                            method,
                            "illegal-transition",
                            "この申請書は受け付けられません",
                        ),
                        None,
                    );
                }
                app.state = ApplicationState::Accepted;
                ok::<Accept>(view)
            }
            GetVisit::NAME => {
                let Ok(r) = req.params.deserialized::<VisitRef>() else {
                    return (invalid(), None);
                };
                match self.visits.lock().unwrap().get(&r.visit) {
                    Some(v) => ok::<GetVisit>(v),
                    None => err(method, "not-found", "受付がありません"),
                }
            }
            other => err(other, "unknown-method", "unknown method"),
        };
        (resp, None)
    }
}

/// The stand-in city's address master.
pub fn addresses() -> AddressMenu {
    let m = |code: &str, name: &str| MachiazaOption {
        code: code.into(),
        name: name.into(),
        kana: String::new(),
    };
    AddressMenu {
        city: "架空県見本市".into(),
        machiaza: vec![
            m("001", "本町一丁目"),
            m("002", "緑町二丁目"),
            m("003", "山本町"),
        ],
    }
}

fn menu() -> CertificateMenu {
    let offer = |id: &str, name: &str, options: &[&str], restricted: &[&str]| CertificateOffer {
        id: id.into(),
        name: name.into(),
        fee: 300,
        options: options.iter().map(|s| (*s).into()).collect(),
        restricted_options: restricted.iter().map(|s| (*s).into()).collect(),
        free_options: Vec::new(),
        requires: Vec::new(),
        notes: String::new(),
    };
    CertificateMenu {
        certificates: vec![
            offer(
                "juminhyo",
                "住民票の写し",
                &["世帯全員", "続柄", "本籍・筆頭者"],
                &["個人番号", "住民票コード"],
            ),
            offer("inkan", "印鑑登録証明書", &[], &[]),
            offer("kazei", "課税（所得）証明書", &[], &[]),
            offer("fuhyo", "戸籍の附票の写し", &[], &[]),
        ],
        purposes: ["就職", "年金", "運転免許", "金融機関", "不動産登記", "保険"]
            .iter()
            .map(|s| (*s).into())
            .collect(),
        id_checks: [
            "マイナンバーカード",
            "運転免許証",
            "パスポート",
            "健康保険証＋年金手帳",
        ]
        .iter()
        .map(|s| (*s).into())
        .collect(),
        max_copies: 10,
    }
}

/// The stand-in's rules: a 転入 needs the 転入届 and 国民健康保険 for the household,
/// the マイナンバーカード continued use per person, 児童手当 for the head when a child
/// comes, and a school transfer when the school-age child changes school (asked).
fn determine(plan: &VisitPlan) -> Result<DeterminationView, &'static str> {
    if plan.members.is_empty() {
        return Err("members");
    }
    let mut members = Vec::new();
    let mut questions = Vec::new();
    for (i, m) in plan.members.iter().enumerate() {
        let id = format!("m{}", i + 1);
        let (name, kana, birth, relation) = match &m.person {
            PersonRef::MovingIn { juminhyo_code } => {
                let (_, n, k, b, _, r) = YAMADA
                    .iter()
                    .find(|y| y.0 == juminhyo_code)
                    .ok_or("unknown person")?;
                (
                    (*n).to_owned(),
                    (*k).to_owned(),
                    (*b).to_owned(),
                    (*r).to_owned(),
                )
            }
            PersonRef::Resident { atena } => {
                let r = mihon_household()
                    .into_iter()
                    .find(|r| &r.atena == atena)
                    .ok_or("unknown person")?;
                (r.name, r.kana, r.birth_date, r.relation)
            }
            PersonRef::New { person } => (
                person.name.clone(),
                person.kana.clone(),
                person.birth_date.clone().unwrap_or_default(),
                "子".into(),
            ),
        };
        let age = plan.event_date[..4].parse::<i64>().unwrap_or(2026)
            - birth[..4].parse::<i64>().unwrap_or(2000);
        let mut procedures = Vec::new();
        if plan.event == EventKind::MoveIn && m.subject {
            procedures.push(procedure(
                "mynumber_card_continue",
                "マイナンバーカードの継続利用",
                "市民課",
                "1番窓口",
                "転入後もカードを使い続けるため",
                Some(add_days(&plan.event_date, 90)),
                false,
            ));
            if i == 0 && plan.members.iter().any(|_| true) && plan.members.len() > 2 {
                procedures.push(procedure(
                    "jido_teate",
                    "児童手当認定請求",
                    "子育て支援課",
                    "5番窓口",
                    "中学生以下の子と転入するため",
                    Some(add_days(&plan.event_date, 15)),
                    true,
                ));
            }
            if (6..=15).contains(&age) {
                let key = format!("school_transfer@{id}");
                match plan.answers.get(&key) {
                    None => questions.push(QuestionView {
                        key,
                        text: format!("{name}さんは市内の小中学校に転校しますか"),
                        member: Some(id.clone()),
                        affects: vec!["転入学".into()],
                    }),
                    Some(true) => procedures.push(procedure(
                        "school_transfer",
                        "転入学",
                        "学校教育課",
                        "8番窓口",
                        "市内の学校に転校するため",
                        Some(add_days(&plan.event_date, 14)),
                        true,
                    )),
                    Some(false) => {}
                }
            }
        }
        members.push(MemberView {
            member: id,
            name,
            kana,
            birth_date: Some(birth),
            relationship: relation,
            age,
            procedures,
        });
    }
    let household = if plan.event == EventKind::MoveWithin {
        vec![procedure(
            "tenkyo",
            "転居届",
            "市民課",
            "1番窓口",
            "市内で住所が変わったため",
            Some(add_days(&plan.event_date, 14)),
            true,
        )]
    } else if plan.event == EventKind::MoveIn {
        vec![
            procedure(
                "tennyu",
                "転入届",
                "市民課",
                "1番窓口",
                "市外から転入したため",
                Some(add_days(&plan.event_date, 14)),
                true,
            ),
            procedure(
                "kokuho_join",
                "国民健康保険 加入届",
                "保険年金課",
                "3番窓口",
                "転入した世帯が国民健康保険に入るため",
                Some(add_days(&plan.event_date, 14)),
                true,
            ),
        ]
    } else {
        vec![procedure(
            "generic",
            &format!("{}の届", plan.event.label()),
            "市民課",
            "1番窓口",
            "届出のため",
            Some(add_days(&plan.event_date, 14)),
            true,
        )]
    };
    Ok(DeterminationView {
        catalogue_version: "stand-in".into(),
        questions,
        members,
        household,
        visit_order: vec![
            StopView {
                department: "市民課".into(),
                counter: "1番窓口".into(),
                procedures: 2,
            },
            StopView {
                department: "保険年金課".into(),
                counter: "3番窓口".into(),
                procedures: 1,
            },
            StopView {
                department: "子育て支援課".into(),
                counter: "5番窓口".into(),
                procedures: 1,
            },
        ],
        destination: (plan.event == EventKind::MoveIn).then(|| YAMADA_NEW_ADDRESS.to_owned()),
    })
}
