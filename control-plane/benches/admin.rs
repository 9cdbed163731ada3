//! Admin UI figures, over HTTP against a running control plane (embedded broker,
//! SQLite): an administrator's login (argon2id with the production parameters, OWASP
//! m = 19 MiB, t = 2, p = 1, dominates), the fleet page with 5,000 devices, and the
//! audit search over 1,000,000 entries (newest 50 matching, with the chain state
//! verified from the last checkpoint, 10,000 entries back).
//!
//! `cargo bench -p kakanai-control-plane --bench admin`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // criterion_group! makes an undocumented fn

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use kakanai_control_plane::admin::AdminSettings;
use kakanai_control_plane::audit::chain::{entry_hash, GENESIS};
use kakanai_control_plane::audit::Checkpoint;
use kakanai_control_plane::model::{Actor, AuditRecord, Place, TenantId};
use kakanai_control_plane::service::{self, ServiceConfig};
use kakanai_control_plane::staff::{password, HashParams};
use kakanai_control_plane::store::{Group, NewDevice, NewStaff, PresenceUpdate, Store, Tenant};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{KeyId, SigningKey};
use kakanai_test_peers::free_port;

const DEVICES: u32 = 5_000;
const ENTRIES: u64 = 1_000_000;
const SINCE_CHECKPOINT: u64 = 10_000;
const T0: i64 = 1_774_969_200_000; // 2026-04-01 00:00 JST
const PASSWORD: &str = "kanri-Pass-2026";

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        tenant: "city-a".into(),
        at_ms: T0 + i as i64 * 1_000,
        actor: Actor::Staff(format!("s{:03}", i % 300)),
        action: if i.is_multiple_of(4) {
            "resident.view".into()
        } else {
            "rpc:certificate.request".into()
        },
        resident: Some(format!("{:010}", i % 100_000)),
        place: Place::Appliance(format!("counter-{:04}", i % 50)),
        outcome: "ok".into(),
        detail: serde_json::json!({"form": "juminhyo", "copies": 1}),
    }
}

async fn seed(url: &str, key: &SigningKey) {
    let store = Store::open(url).await.unwrap();
    let t = TenantId::new("city-a").unwrap();
    store
        .create_tenant(
            &Tenant {
                id: t.clone(),
                name: "A市".into(),
            },
            T0,
        )
        .await
        .unwrap();
    let rng = ring::rand::SystemRandom::new();
    let admins = Group {
        name: "johosystem".into(),
        description: "情報システム課".into(),
        permissions: ["admin.staff", "admin.fleet", "audit.search", "audit.export"]
            .into_iter()
            .map(String::from)
            .collect(),
    };
    store.create_group(&t, &admins).await.unwrap();
    store
        .create_staff(
            &t,
            &NewStaff {
                login_id: "admin-a".into(),
                display_name: "管理 太郎".into(),
                password_hash: password::hash_password(HashParams::OWASP, &rng, PASSWORD).unwrap(),
                must_change_password: false,
            },
            T0,
        )
        .await
        .unwrap();
    store
        .add_group_member(&t, "johosystem", "admin-a")
        .await
        .unwrap();
    for i in 0..DEVICES {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        seed[31] = 1;
        let k = SigningKey::from_seed(&seed).unwrap();
        let id = Ident::new(&format!("counter-{i:04}")).unwrap();
        store
            .register_device(
                &t,
                &NewDevice {
                    id: id.clone(),
                    counter_name: format!(
                        "{}課 {}番窓口",
                        ["市民", "保険年金", "子育て支援", "税務"][i as usize % 4],
                        i % 40 + 1
                    ),
                    location: format!("庁舎{}階", i % 5 + 1),
                    kid: KeyId::of_key(&k.verifying_key()),
                    public_key: k.verifying_key(),
                    firmware: Some("0.1.0".into()),
                },
                T0,
            )
            .await
            .unwrap();
        if i.is_multiple_of(2) {
            store
                .update_presence(
                    &t,
                    &id,
                    &PresenceUpdate {
                        online: true,
                        boot_counter: 3,
                        seen_at_ms: T0 + 1,
                        firmware: None,
                    },
                )
                .await
                .unwrap();
        }
    }
    store.close().await;

    // 1,000,000 chained entries written in bulk (what years of counters would leave),
    // then the head and one signed checkpoint SINCE_CHECKPOINT entries back.
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let mut prev = GENESIS;
    let mut cp = None;
    for seq in 1..=ENTRIES {
        let r = record(seq);
        let hash = entry_hash(seq, &prev, &r);
        let Actor::Staff(actor) = &r.actor else {
            unreachable!()
        };
        sqlx::query(
            "INSERT INTO audit_entries (tenant, seq, at_ms, actor_kind, actor_id, action, resident, record, hash) \
             VALUES ($1, $2, $3, 'staff', $4, $5, $6, $7, $8)",
        )
        .bind("city-a")
        .bind(seq as i64)
        .bind(r.at_ms)
        .bind(actor)
        .bind(&r.action)
        .bind(r.resident.as_deref())
        .bind(serde_json::to_string(&r).unwrap())
        .bind(&hash[..])
        .execute(&mut *tx)
        .await
        .unwrap();
        prev = hash;
        if seq == ENTRIES - SINCE_CHECKPOINT {
            cp = Some(Checkpoint::sign(&t, seq, &hash, r.at_ms, key));
        }
    }
    sqlx::query("UPDATE audit_heads SET seq = $2, hash = $3 WHERE tenant = $1")
        .bind("city-a")
        .bind(ENTRIES as i64)
        .bind(&prev[..])
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    pool.close().await;
    let store = Store::open(url).await.unwrap();
    store.save_checkpoint(&cp.unwrap()).await.unwrap();
    store.close().await;
}

struct Client {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Client {
    async fn login(&mut self) -> u16 {
        let page = self
            .http
            .get(format!("{}/admin/login", self.base))
            .send()
            .await
            .unwrap();
        let pre_cookie = page
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .next()
            .unwrap();
        let body = page.text().await.unwrap();
        let at = body.find("name=\"pre\" value=\"").unwrap() + 18;
        let pre = &body[at..at + 64];
        let form = format!("pre={pre}&tenant=city-a&login_id=admin-a&password={PASSWORD}");
        let res = self
            .http
            .post(format!("{}/admin/login", self.base))
            .header("cookie", pre_cookie)
            .header("origin", &self.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        if let Some(c) = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find(|c| c.starts_with("kakanai-admin="))
        {
            self.cookie = c;
        }
        status
    }

    async fn get(&self, path: &str) -> String {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        res.text().await.unwrap()
    }

    async fn post(&self, path: &str, form: &str) -> String {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("origin", &self.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        res.text().await.unwrap()
    }
}

fn admin(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_seed(&[0x42; 32]).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.path().join("cp.key");
        std::fs::write(&p, hex::encode(key.seed())).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = format!(
        "data_dir = \"{d}\"\ntenants = [\"city-a\"]\n\n[broker]\nembedded = true\nlisten = \"127.0.0.1:{p}\"\n\n\
         [signing]\nkey_file = \"{d}/cp.key\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
        d = dir.path().display(),
        p = free_port()
    );
    let config = ServiceConfig::parse(&text, &dir.path().join("cp.toml"), |_| None).unwrap();
    let url = config.database_url.clone();
    let started = std::time::Instant::now();
    rt.block_on(seed(&url, &key));
    eprintln!(
        "seeded {DEVICES} devices and {ENTRIES} audit entries in {:?}",
        started.elapsed()
    );
    let running = rt
        .block_on(service::start(
            config,
            service::ServiceOptions {
                admin: AdminSettings::default(),
                ..Default::default()
            },
        ))
        .unwrap();
    let mut client = Client {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: format!("http://{}", running.http_addr()),
        cookie: String::new(),
    };
    assert_eq!(rt.block_on(client.login()), 303);

    let mut group = c.benchmark_group("admin");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("login (argon2id m=19MiB t=2 p=1, over HTTP)", |b| {
        b.iter(|| {
            let mut other = Client {
                http: client.http.clone(),
                base: client.base.clone(),
                cookie: String::new(),
            };
            assert_eq!(rt.block_on(other.login()), 303);
        })
    });
    group.bench_function("fleet page, 5,000 devices", |b| {
        b.iter(|| {
            let body = rt.block_on(client.get("/admin/fleet"));
            assert!(body.contains("counter-4999"));
        })
    });
    group.bench_function("audit search, 1,000,000 entries: operator + 7 days", |b| {
        b.iter(|| {
            let form = format!(
                "csrf={}&operator=s017&from=2026-04-03&to=2026-04-09",
                csrf(&rt, &client)
            );
            let body = rt.block_on(client.post("/admin/audit", &form));
            assert!(body.contains("audit-results"));
        })
    });
    group.bench_function("audit search, 1,000,000 entries: resident", |b| {
        b.iter(|| {
            let form = format!("csrf={}&resident=0000012345", csrf(&rt, &client));
            let body = rt.block_on(client.post("/admin/audit", &form));
            assert!(body.contains("audit-results"));
        })
    });
    group.bench_function(
        "audit search, 1,000,000 entries: no filter (newest 50)",
        |b| {
            b.iter(|| {
                let form = format!("csrf={}", csrf(&rt, &client));
                let body = rt.block_on(client.post("/admin/audit", &form));
                assert!(body.contains("audit-results"));
            })
        },
    );
    group.finish();
    rt.block_on(running.shutdown());
}

fn csrf(rt: &tokio::runtime::Runtime, client: &Client) -> String {
    static CSRF: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSRF.get_or_init(|| {
        let body = rt.block_on(client.get("/admin/"));
        let at = body.find("name=\"csrf\" value=\"").unwrap() + 19;
        body[at..at + 64].to_owned()
    })
    .clone()
}

criterion_group!(benches, admin);
criterion_main!(benches);
