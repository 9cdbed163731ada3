//! Server-side sessions of the staff UI.
//!
//! The browser holds only a random cookie (`kakanai_session`, 256 bits, `HttpOnly;
//! SameSite=Strict; Path=/`). Everything else stays on the appliance: the CSRF token
//! of the session, and after login the control plane's session token, which is put
//! in every RPC request made for this session and never sent to the browser.
//! Sessions end after [`SessionStore`]'s idle time, at the control plane's absolute
//! expiry, at logout, or when the control plane refuses the token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::staff::Secret;

/// The cookie's name.
pub const COOKIE: &str = "kakanai_session";

/// At most this many sessions (anonymous ones included); the least recently used
/// goes first. A counter has one tablet: this only bounds memory.
const MAX_SESSIONS: usize = 64;

/// A logged-in staff member.
#[derive(Clone)]
pub struct StaffLogin {
    /// The control plane's bearer token.
    pub token: Secret,
    /// Login id.
    pub staff_id: String,
    /// Display name (personal data: shown, never logged).
    pub display_name: String,
    /// The password must be changed first.
    pub must_change_password: bool,
    /// The control plane's absolute expiry (ms since the epoch).
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for StaffLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffLogin")
            .field("staff_id", &self.staff_id)
            .finish_non_exhaustive()
    }
}

/// What a request sees of its session.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The cookie value (the key of the session).
    pub id: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// The staff member, once logged in.
    pub staff: Option<StaffLogin>,
    /// A message for the login page (why the last login ended), kept until the next login.
    pub flash: Option<String>,
}

struct Session {
    csrf: String,
    staff: Option<StaffLogin>,
    flash: Option<String>,
    last_seen: Instant,
}

/// The sessions.
#[derive(Debug)]
pub struct SessionStore {
    sessions: Mutex<HashMap<String, Session>>,
    idle: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// 256 random bits in hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not recoverable for a service handing out
    // credentials; getrandom only fails on systems without one.
    if getrandom::fill(&mut bytes).is_err() {
        tracing::error!("no random source: sessions cannot be created safely");
        std::process::abort();
    }
    hex::encode(bytes)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Why a session's staff login ended on its own.
pub const EXPIRED: &str =
    "操作のない時間が続いたか、ログインの有効期限が切れました。もう一度ログインしてください。";

impl SessionStore {
    /// Sessions idle for longer than `idle` end.
    pub fn new(idle: Duration) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The session `id` (touched), or `None` when unknown or idle too long. A staff
    /// login past its control-plane expiry is dropped, with a message for the login
    /// page.
    pub fn get(&self, id: &str) -> Option<SessionView> {
        let mut sessions = self.lock();
        let now = Instant::now();
        let session = sessions.get_mut(id)?;
        if now.duration_since(session.last_seen) > self.idle {
            let had_staff = session.staff.is_some();
            sessions.remove(id);
            if had_staff {
                // The browser keeps its cookie: a fresh anonymous session under the
                // same id says why the login ended.
                sessions.insert(
                    id.to_owned(),
                    Session {
                        csrf: random_token(),
                        staff: None,
                        flash: Some(EXPIRED.to_owned()),
                        last_seen: now,
                    },
                );
                return self.view_locked(&mut sessions, id);
            }
            return None;
        }
        session.last_seen = now;
        if session
            .staff
            .as_ref()
            .is_some_and(|s| s.expires_at_ms <= now_ms())
        {
            session.staff = None;
            session.flash = Some(EXPIRED.to_owned());
        }
        self.view_locked(&mut sessions, id)
    }

    fn view_locked(
        &self,
        sessions: &mut HashMap<String, Session>,
        id: &str,
    ) -> Option<SessionView> {
        let session = sessions.get(id)?;
        Some(SessionView {
            id: id.to_owned(),
            csrf: session.csrf.clone(),
            staff: session.staff.clone(),
            flash: session.flash.clone(),
        })
    }

    /// A new anonymous session.
    pub fn create(&self) -> SessionView {
        let id = random_token();
        let csrf = random_token();
        let mut sessions = self.lock();
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                sessions.remove(&k);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                staff: None,
                flash: None,
                last_seen: Instant::now(),
            },
        );
        SessionView {
            id,
            csrf,
            staff: None,
            flash: None,
        }
    }

    /// Logs `staff` in: the old session ends and a new one (new cookie, new CSRF
    /// token) starts, so a session id known before login is worth nothing after.
    pub fn login(&self, old_id: &str, staff: StaffLogin) -> SessionView {
        self.lock().remove(old_id);
        let view = self.create();
        if let Some(s) = self.lock().get_mut(&view.id) {
            s.staff = Some(staff.clone());
        }
        SessionView {
            staff: Some(staff),
            ..view
        }
    }

    /// Ends the staff login of session `id` (the session stays, anonymous, with a
    /// new CSRF token) and returns the control plane token it held.
    pub fn logout(&self, id: &str, flash: Option<&str>) -> Option<Secret> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(id)?;
        session.csrf = random_token();
        session.flash = flash.map(str::to_owned);
        session.staff.take().map(|s| s.token)
    }

    /// Marks the password as changed.
    pub fn password_changed(&self, id: &str) {
        if let Some(staff) = self.lock().get_mut(id).and_then(|s| s.staff.as_mut()) {
            staff.must_change_password = false;
        }
    }
}

/// The session cookie's value in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE && !value.is_empty()).then_some(value)
    })
}

/// The `Set-Cookie` value for session `id`.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/")
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staff() -> StaffLogin {
        StaffLogin {
            token: Secret::new("t"),
            staff_id: "s".into(),
            display_name: "n".into(),
            must_change_password: false,
            expires_at_ms: i64::MAX,
        }
    }

    #[test]
    fn login_rotates_the_session_and_logout_keeps_it_anonymous() {
        let store = SessionStore::new(Duration::from_secs(60));
        let anon = store.create();
        let logged = store.login(&anon.id, staff());
        assert_ne!(anon.id, logged.id);
        assert_ne!(anon.csrf, logged.csrf);
        assert!(store.get(&anon.id).is_none());
        assert!(store.get(&logged.id).unwrap().staff.is_some());
        assert_eq!(store.logout(&logged.id, None).unwrap().expose(), "t");
        let after = store.get(&logged.id).unwrap();
        assert!(after.staff.is_none());
        assert_ne!(after.csrf, logged.csrf);
    }

    #[test]
    fn idle_and_expired_logins_end_with_a_message() {
        let store = SessionStore::new(Duration::ZERO);
        let logged = store.login(&store.create().id, staff());
        std::thread::sleep(Duration::from_millis(5));
        let after = store.get(&logged.id).unwrap();
        assert!(after.staff.is_none());
        assert_eq!(after.flash.as_deref(), Some(EXPIRED));

        let store = SessionStore::new(Duration::from_secs(60));
        let mut old = staff();
        old.expires_at_ms = 1;
        let logged = store.login(&store.create().id, old);
        assert!(store.get(&logged.id).unwrap().staff.is_none());
    }

    #[test]
    fn cookies_and_tokens() {
        assert_eq!(cookie_value("a=b; kakanai_session=xyz; c=d"), Some("xyz"));
        assert_eq!(cookie_value("kakanai_session="), None);
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert_eq!(random_token().len(), 64);
    }
}
