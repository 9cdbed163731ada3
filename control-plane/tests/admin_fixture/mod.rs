//! What the admin UI test files share: a control plane on its embedded defaults
//! (in-process broker, SQLite in a temporary data directory) serving two cities, with
//! an administrator, a counter clerk and devices in each, and a small HTTP client
//! that keeps its cookies.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use kakanai_control_plane::admin::AdminSettings;
use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::service::{self, RunningService, ServiceConfig};
use kakanai_control_plane::staff::{password, HashParams, StaffPolicy};
use kakanai_control_plane::store::{
    AuditEntry, AuditQuery, Group, NewDevice, NewStaff, PresenceUpdate, Store, Tenant,
};
use kakanai_protocol::topic::Ident;
use kakanai_protocol::{KeyId, SigningKey};
use kakanai_test_peers::free_port;

pub const ADMIN_PASSWORD: &str = "kanri-Pass-2026";
pub const CLERK_PASSWORD: &str = "madoguchi-Pass-77";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn city_a() -> TenantId {
    TenantId::new("city-a").unwrap()
}

pub fn city_b() -> TenantId {
    TenantId::new("city-b").unwrap()
}

/// Fast hashing for tests (a debug build would spend seconds per OWASP login).
pub fn test_policy() -> StaffPolicy {
    StaffPolicy {
        hash: HashParams::INSECURE_FOR_TESTS,
        ..AdminSettings::default().policy
    }
}

fn write_key(path: &Path, k: &SigningKey) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, hex::encode(k.seed())).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A running control plane and its data.
pub struct Fixture {
    pub running: Option<RunningService>,
    pub store: Store,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    /// Every audit entry of `tenant`, oldest first.
    pub async fn audit(&self, tenant: &TenantId) -> Vec<AuditEntry> {
        let mut v = self
            .store
            .audit_page(tenant, &AuditQuery::default(), 100_000)
            .await
            .unwrap();
        v.reverse();
        v
    }
}

async fn seed_tenant(store: &Store, t: &TenantId, name: &str, suffix: &str) {
    store
        .create_tenant(
            &Tenant {
                id: t.clone(),
                name: name.into(),
            },
            now_ms(),
        )
        .await
        .unwrap();
    let rng = ring::rand::SystemRandom::new();
    let hash =
        |pw: &str| password::hash_password(HashParams::INSECURE_FOR_TESTS, &rng, pw).unwrap();
    let admins = Group {
        name: "johosystem".into(),
        description: "情報システム課（管理者）".into(),
        permissions: ["admin.staff", "admin.fleet", "audit.search", "audit.export"]
            .into_iter()
            .map(String::from)
            .collect::<BTreeSet<_>>(),
    };
    let clerks = Group {
        name: "shimin-madoguchi".into(),
        description: "市民課 窓口".into(),
        permissions: ["certificate.issue", "resident.view"]
            .into_iter()
            .map(String::from)
            .collect(),
    };
    store.create_group(t, &admins).await.unwrap();
    store.create_group(t, &clerks).await.unwrap();
    for (id, name, pw, group) in [
        (
            format!("admin-{suffix}"),
            "管理 太郎",
            ADMIN_PASSWORD,
            "johosystem",
        ),
        (
            format!("clerk-{suffix}1"),
            "窓口 花子",
            CLERK_PASSWORD,
            "shimin-madoguchi",
        ),
    ] {
        store
            .create_staff(
                t,
                &NewStaff {
                    login_id: id.clone(),
                    display_name: name.into(),
                    password_hash: hash(pw),
                    must_change_password: false,
                },
                now_ms(),
            )
            .await
            .unwrap();
        store.add_group_member(t, group, &id).await.unwrap();
    }
    for i in 1..=3 {
        let key = SigningKey::from_seed(&[i as u8 + suffix.as_bytes()[0]; 32]).unwrap();
        let id = Ident::new(&format!("counter-{suffix}{i}")).unwrap();
        store
            .register_device(
                t,
                &NewDevice {
                    id: id.clone(),
                    counter_name: format!("{name} 市民課 {i}番窓口"),
                    location: "本庁舎1階".into(),
                    kid: KeyId::of_key(&key.verifying_key()),
                    public_key: key.verifying_key(),
                    firmware: Some("0.1.0".into()),
                },
                now_ms(),
            )
            .await
            .unwrap();
        if i == 1 {
            store
                .update_presence(
                    t,
                    &id,
                    &PresenceUpdate {
                        online: true,
                        boot_counter: 7,
                        seen_at_ms: now_ms(),
                        firmware: Some("0.1.1".into()),
                    },
                )
                .await
                .unwrap();
        }
    }
}

/// Starts the control plane on its embedded defaults (in-process broker, SQLite in
/// the data directory) serving city-a and city-b, with `settings` for the admin UI.
pub async fn start_with(settings: AdminSettings) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_seed(&[0x42; 32]).unwrap();
    write_key(&dir.path().join("cp.key"), &key);
    let port = free_port();
    let text = format!(
        "data_dir = \"{d}\"\ntenants = [\"city-a\", \"city-b\"]\n\n[broker]\nembedded = true\n\
         listen = \"127.0.0.1:{port}\"\n\n[signing]\nkey_file = \"{d}/cp.key\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
        d = dir.path().display()
    );
    let config = ServiceConfig::parse(&text, &dir.path().join("cp.toml"), |_| None).unwrap();
    let store = Store::open(&config.database_url).await.unwrap();
    seed_tenant(&store, &city_a(), "A市", "a").await;
    seed_tenant(&store, &city_b(), "B市", "b").await;
    let options = service::ServiceOptions {
        store: Some(store.clone()),
        admin: settings,
        ..service::ServiceOptions::default()
    };
    let running = service::start(config, options).await.unwrap();
    let base = format!("http://{}", running.http_addr());
    Fixture {
        running: Some(running),
        store,
        base,
        _dir: dir,
    }
}

pub async fn start() -> Fixture {
    start_with(AdminSettings {
        policy: test_policy(),
        ..AdminSettings::default()
    })
    .await
}

/// An HTTP client that keeps cookies (one jar, one host) and never follows
/// redirects, so tests see every answer.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    pub cookies: Vec<(String, String)>,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, res: reqwest::Response) -> Answer {
        for v in res.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !val.is_empty() && !v.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), val.to_owned()));
            }
        }
        Answer {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: res.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(res).await
    }

    /// A form POST as a browser on this site sends it (with its Origin).
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let origin = self.base.clone();
        self.post_from(path, form, Some(&origin)).await
    }

    pub async fn post_from(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let res = req.send().await.unwrap();
        self.finish(res).await
    }

    /// The value of the first `<input name=NAME value=…>` on the page.
    pub fn field(body: &str, name: &str) -> String {
        let at = body
            .find(&format!("name=\"{name}\" value=\""))
            .unwrap_or_else(|| panic!("no field {name}"));
        let rest = &body[at + name.len() + 15..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// Logs in; returns the answer to the login POST.
    pub async fn login(&mut self, tenant: &str, login_id: &str, password: &str) -> Answer {
        let page = self.get("/admin/login").await;
        let pre = Self::field(&page.body, "pre");
        self.post(
            "/admin/login",
            &[
                ("pre", &pre),
                ("tenant", tenant),
                ("login_id", login_id),
                ("password", password),
            ],
        )
        .await
    }

    /// The CSRF token of the current session (from any logged-in page).
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/admin/").await;
        Self::field(&page.body, "csrf")
    }
}
