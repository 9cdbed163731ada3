//! The staff UI served to the counter's tablet.
//!
//! Server-rendered HTML (`maud`: everything from data is escaped), a small script of
//! our own for the keypad and live updates, assets embedded in the binary (nothing
//! from a CDN), Japanese first, large touch targets for a 10-inch tablet held by staff.
//!
//! Code map:
//! - this module — [`Ui`] (the state the routes share, cheap to clone), [`UiConfig`],
//!   [`Ui::router`], the feeds from the daemon ([`Ui::on_device_event`],
//!   [`Ui::on_link_event`]), the status board and the event bus;
//! - [`session`] — server-side sessions (random cookie; the control plane's token and
//!   the CSRF token stay on the appliance);
//! - [`staff`] — the `staff.*` and `residents.lookup-card` RPC types as the appliance
//!   sends them;
//! - [`status`] — the status strip's model and the Server-Sent Events it pushes;
//! - [`lights`] — the counter lights as a function of the counter's state;
//! - [`card`] — the card-read flow (state machine);
//! - [`visit`] — the visit (受付) of a staff session: certificate requests and life
//!   events, a state machine fed by the visit screens, the scanner and the printer;
//! - [`wareki`] — 和暦 dates;
//! - [`headers`] — strict response headers (CSP, frame denial, no-store);
//! - [`assets`] — the embedded CSS and script;
//! - [`layout`] and [`components`] — the page frame (status strip, offline banner)
//!   and shared pieces (keypad, notices, buttons);
//! - [`screens`] — one module per screen: login, home, card, password change, the
//!   visit (`screens::visit`, with `certificate` and `event` for their steps).
//!
//! Routes: `GET /` (home), `GET|POST /login`, `POST /logout`, `GET|POST /password`,
//! `GET /card`, `GET /card/panel` (the card screen's live part), `POST /card/pin`,
//! `POST /card/code-b`, `POST /card/reset`, `GET /visit`, `GET /visit/panel`,
//! `POST /visit/start`, `POST /visit/act`, `GET /events` (SSE: `status`, `card`,
//! `print`, `scan`, `visit`), `GET /assets/*`. Every state-changing request is a POST carrying
//! the session's CSRF token.

pub mod assets;
pub mod card;
pub mod components;
pub mod headers;
pub mod layout;
pub mod lights;
pub mod screens;
pub mod session;
pub mod staff;
pub mod status;
pub mod visit;
pub mod wareki;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::Router;
use kakanai_hw::lights::Lights;
use kakanai_protocol::catalogue::{DeviceClass, DeviceStatus, PrintState};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt as _;

use crate::devices::{DeviceEvent, Devices};
use crate::link::{LinkEvent, LinkHandle};
use lights::LightsDriver;
use session::{SessionStore, SessionView};
use status::{PrinterView, Status, UiEvent};

/// How the UI behaves. The daemon reads the timings from the `[ui]` table of its
/// configuration (`crate::config`, bounds checked there); absent ones keep these
/// defaults.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// A staff login idle this long ends on the appliance.
    pub session_idle: Duration,
    /// How long a call to the control plane may take before staff are told it is
    /// unreachable.
    pub rpc_timeout: Duration,
    /// The same for login (the control plane hashes the password: allow more).
    pub login_timeout: Duration,
    /// How often the printer is asked for its state.
    pub printer_poll: Duration,
    /// Whether a card reader is configured.
    pub reader: bool,
    /// Whether a scanner is configured.
    pub scanner: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            session_idle: Duration::from_secs(15 * 60),
            rpc_timeout: Duration::from_secs(8),
            login_timeout: Duration::from_secs(10),
            printer_poll: Duration::from_secs(15),
            reader: true,
            scanner: false,
        }
    }
}

/// The staff UI: what its routes share. Cheap to clone.
#[derive(Clone)]
pub struct Ui {
    inner: Arc<Inner>,
}

struct Inner {
    link: LinkHandle,
    devices: Arc<Devices>,
    config: UiConfig,
    sessions: SessionStore,
    status: Mutex<Status>,
    lights: Mutex<LightsDriver>,
    card: Mutex<card::CardState>,
    visits: Mutex<visit::Visits>,
    events: broadcast::Sender<UiEvent>,
}

impl std::fmt::Debug for Ui {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ui").finish_non_exhaustive()
    }
}

/// Milliseconds since the epoch, with fractions (the events' timestamps).
pub(crate) fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

impl Ui {
    /// The UI over the link and the devices, showing the counter's state on
    /// `lights`. Spawns its background tasks (link state, printer polling): call
    /// within a Tokio runtime.
    pub fn start(
        link: LinkHandle,
        devices: Arc<Devices>,
        lights: Box<dyn Lights + Send>,
        config: UiConfig,
    ) -> Self {
        let status = Status::new(config.reader, devices.has_printer(), config.scanner);
        let (events, _) = broadcast::channel(256);
        let ui = Self {
            inner: Arc::new(Inner {
                link,
                devices,
                sessions: SessionStore::new(config.session_idle),
                config,
                status: Mutex::new(status),
                lights: Mutex::new(LightsDriver::new(lights)),
                card: Mutex::new(card::CardState::default()),
                visits: Mutex::new(visit::Visits::default()),
                events,
            }),
        };
        ui.update_status(|_| {});
        ui.spawn_link_watch();
        ui.spawn_printer_poll();
        ui
    }

    /// The UI's routes, with the strict headers on every response.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(screens::home::page))
            .route(
                "/login",
                get(screens::login::page).post(screens::login::submit),
            )
            .route("/logout", post(screens::login::logout))
            .route(
                "/password",
                get(screens::password::page).post(screens::password::submit),
            )
            .route("/card", get(screens::card::page))
            .route("/card/panel", get(screens::card::panel))
            .route("/card/pin", post(screens::card::submit_pin))
            .route("/card/code-b", post(screens::card::submit_code_b))
            .route("/card/reset", post(screens::card::reset))
            .route("/visit", get(screens::visit::page))
            .route("/visit/panel", get(screens::visit::panel))
            .route("/visit/start", post(screens::visit::start))
            .route("/visit/act", post(screens::visit::act))
            .route("/events", get(events))
            .route("/assets/{file}", get(assets::serve))
            .layer(axum::middleware::map_response(headers::strict))
            .with_state(self.clone())
    }

    /// Subscribes to the events pushed to the pages (tests and benchmarks listen too).
    pub fn subscribe(&self) -> broadcast::Receiver<UiEvent> {
        self.inner.events.subscribe()
    }

    /// The counter's state now.
    pub fn status(&self) -> Status {
        self.status_lock().clone()
    }

    fn status_lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.inner
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn publish(&self, name: &'static str, data: String) {
        // Nobody listening is fine.
        let _ = self.inner.events.send(UiEvent { name, data });
    }

    /// Changes the status; when it differs, the lights follow and the pages are told.
    pub(crate) fn update_status(&self, f: impl FnOnce(&mut Status)) {
        let json = {
            let mut status = self.status_lock();
            let before = status.clone();
            f(&mut status);
            let pattern = self
                .inner
                .lights
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .update(status.signals());
            status.lights = pattern;
            if *status == before {
                return;
            }
            status.to_json(now_ms())
        };
        self.publish("status", json);
    }

    /// Pushes a synthetic status event now (benchmarks measure its delivery).
    pub fn publish_status(&self) {
        let json = self.status_lock().to_json(now_ms());
        self.publish("status", json);
    }

    /// Feeds a device event in (the daemon calls this for each one).
    pub fn on_device_event(&self, event: &DeviceEvent) {
        match event {
            DeviceEvent::CardInserted { reader } => self.card_inserted(reader.clone()),
            DeviceEvent::CardRemoved { reader } => self.card_removed(reader),
            DeviceEvent::State(report) => {
                let (id, status) = (report.id.clone(), report.status.clone());
                match report.class {
                    DeviceClass::CardReader => self.update_status(|s| {
                        s.reader_fault = matches!(status, DeviceStatus::Error { .. });
                        if matches!(status, DeviceStatus::Absent) {
                            s.readers.remove(&id);
                        } else {
                            s.readers.insert(id);
                        }
                    }),
                    DeviceClass::Scanner => self.update_status(|s| {
                        s.scanner_connected =
                            matches!(status, DeviceStatus::Ready | DeviceStatus::Busy);
                    }),
                    _ => {}
                }
            }
            DeviceEvent::Print(p) => {
                let done = !matches!(p.state, PrintState::Queued | PrintState::Printing);
                let job = p.job_id.clone();
                self.update_status(|s| {
                    if done {
                        s.printing.remove(&job);
                    } else {
                        s.printing.insert(job);
                    }
                });
                let state = match &p.state {
                    PrintState::Queued => "queued",
                    PrintState::Printing => "printing",
                    PrintState::Completed { .. } => "completed",
                    PrintState::Failed { .. } => "failed",
                    PrintState::Cancelled => "cancelled",
                };
                self.publish(
                    "print",
                    serde_json::json!({ "job": p.job_id, "state": state, "t": now_ms() })
                        .to_string(),
                );
                if done {
                    self.poll_printer_now();
                }
                self.visit_on_print(p);
            }
            // The code's content stays out of the event: a page asks for it.
            DeviceEvent::Scan(s) => {
                self.publish("scan", format!("{{\"t\":{}}}", now_ms()));
                self.visit_on_scan(s);
            }
        }
    }

    /// A print job was handed to the printer (the daemon calls this for each
    /// print command): the lights show "working" until its outcome arrives.
    pub fn on_print_started(&self, job_id: &str) {
        let job = job_id.to_owned();
        self.update_status(|s| {
            s.printing.insert(job);
        });
    }

    /// Feeds a link event in.
    pub fn on_link_event(&self, event: &LinkEvent) {
        match event {
            LinkEvent::Online => self.update_status(|s| s.online = true),
            LinkEvent::Offline { .. } => self.update_status(|s| s.online = false),
            _ => {}
        }
    }

    /// The link's own state is checked every half second as well: link events are
    /// dropped when nobody reads them, and the strip must never lie.
    fn spawn_link_watch(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let ui = Ui { inner };
                let online = ui.inner.link.is_online();
                ui.update_status(|s| s.online = online);
            }
        });
    }

    fn spawn_printer_poll(&self) {
        if !self.inner.devices.has_printer() {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let every = self.inner.config.printer_poll;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let ui = Ui { inner };
                ui.poll_printer().await;
            }
        });
    }

    async fn poll_printer(&self) {
        if let Some(p) = self.inner.devices.printer_status().await {
            self.update_status(|s| s.printer = PrinterView::Known(p));
        }
    }

    fn poll_printer_now(&self) {
        let ui = self.clone();
        tokio::spawn(async move { ui.poll_printer().await });
    }

    /// The session of a request, if its cookie names a live one.
    pub(crate) fn session(&self, headers: &HeaderMap) -> Option<SessionView> {
        let cookie = headers.get(axum::http::header::COOKIE)?.to_str().ok()?;
        self.inner.sessions.get(session::cookie_value(cookie)?)
    }

    pub(crate) fn sessions(&self) -> &SessionStore {
        &self.inner.sessions
    }

    pub(crate) fn link(&self) -> &LinkHandle {
        &self.inner.link
    }

    pub(crate) fn config(&self) -> &UiConfig {
        &self.inner.config
    }
}

/// `GET /events`: the status now, then every event as it happens.
async fn events(
    axum::extract::State(ui): axum::extract::State<Ui>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    // Subscribed before the snapshot is taken: no change falls in between.
    let rx = ui.subscribe();
    let first = UiEvent {
        name: "status",
        data: ui.status_lock().to_json(now_ms()),
    };
    let live = BroadcastStream::new(rx).map(move |e| {
        let e = match e {
            Ok(e) => e,
            // A slow page missed events: the current status brings it up to date.
            Err(_) => UiEvent {
                name: "status",
                data: ui.status_lock().to_json(now_ms()),
            },
        };
        Ok(Event::default().event(e.name).data(e.data))
    });
    let stream =
        tokio_stream::once(Ok(Event::default().event(first.name).data(first.data))).chain(live);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
