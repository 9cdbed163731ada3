//! `kakanai-appliance` — the counter appliance daemon.
//!
//! `kakanai-appliance --config /etc/kakanai/appliance.toml` opens the durable store,
//! starts the signed link to the control plane and the local HTTP server, and runs
//! until SIGTERM or Ctrl-C (exit 0), or until the control plane asks it to restart
//! (exit 75, [`kakanai_appliance::ops::RESTART_EXIT_CODE`], after the restart was
//! reported; the systemd unit starts it again); either way it publishes its
//! "offline" presence and stops in order. Logs are JSON lines on stderr (`RUST_LOG`
//! sets the level), the last of them kept in memory for the control plane's `logs`
//! operation; they never hold personal data.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kakanai_appliance::config::Config;
use kakanai_appliance::devices::{DeviceEvent, Devices};
use kakanai_appliance::http::{router, AppState};
use kakanai_appliance::link::{self, LinkConfig};
use kakanai_appliance::ops::{LogRing, Operations, DEFAULT_LOG_LINES, RESTART_EXIT_CODE};
use kakanai_appliance::store::ApplianceStore;
use kakanai_appliance::ui::Ui;
use kakanai_hw::backoff::Backoff;
use kakanai_protocol::catalogue::Body;

#[derive(Parser)]
#[command(
    name = "kakanai-appliance",
    version,
    about = "Kakanai counter appliance daemon"
)]
struct Cli {
    /// The configuration file.
    #[arg(long, default_value = "/etc/kakanai/appliance.toml")]
    config: PathBuf,
    /// Link diagnostics instead of running the daemon: queue COUNT test messages
    /// (device-state reports of a device named "link-test") through the outbox,
    /// print each message id once it is durably queued, then wait until the control
    /// plane has acknowledged them all. Run it with the daemon stopped.
    #[arg(long, value_name = "COUNT")]
    send_test_messages: Option<u32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // JSON lines on stderr, and the last lines in memory for the control plane.
    let log_ring = LogRing::new(DEFAULT_LOG_LINES);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr),
        )
        .with(log_ring.layer())
        .init();
    let cli = Cli::parse();
    // Plug-and-play: a claim and no bundle yet means enrol first.
    let path = cli.config.clone();
    tokio::task::spawn_blocking(move || kakanai_appliance::config::enrol_if_needed(&path))
        .await??;
    let config = Config::load(&cli.config)?;
    let store = Arc::new(
        ApplianceStore::open(&config.store_path)
            .with_context(|| format!("opening {}", config.store_path.display()))?,
    );
    if let Some(count) = cli.send_test_messages {
        send_test_messages(config, store, count).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("listening on {}", config.http_listen))?;
    let http_addr = listener.local_addr()?;
    let link_config = LinkConfig {
        identity: config.identity,
        broker_host: config.broker_host,
        broker_port: config.broker_port,
        keep_alive: config.keep_alive,
        backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30), 0.5)?,
        software_version: env!("CARGO_PKG_VERSION").into(),
        devices: Vec::new(),
    };
    let (link, mut events, boot_counter) = match &config.tls {
        Some(tls) => link::start_tls(link_config, tls, Arc::clone(&store)).await?,
        None => link::start(link_config, Arc::clone(&store)).await?,
    };
    if let (Some(p), Some(_)) = (&config.provisioned, &config.tls) {
        link::spawn_renewal(link.clone(), p.bundle.clone(), p.renew_at);
    }
    tracing::info!(boot_counter, http = %http_addr, "appliance started");
    let (device_tx, mut device_events) = tokio::sync::mpsc::channel(256);
    let ui_config = config.ui;
    let devices = Arc::new(Devices::start(config.devices, device_tx));
    // The staff UI; the counter lights follow the state it tracks.
    let ui = Ui::start(
        link.clone(),
        Arc::clone(&devices),
        counter_lights(),
        ui_config,
    );
    let ui_for_link = ui.clone();
    let operations = Operations::new(link.clone(), log_ring);
    let for_operations = operations.clone();
    // Commands from the control plane go to the devices (or, for operations, to
    // `ops`).
    let for_commands = Arc::clone(&devices);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            tracing::info!(event = event_name(&event), "link event");
            ui_for_link.on_link_event(&event);
            if let link::LinkEvent::Command(envelope) = event {
                match envelope.body {
                    Body::PrintJob(job) => {
                        ui_for_link.on_print_started(&job.job_id);
                        for_commands.print(job);
                    }
                    Body::Operation(operation) => {
                        // Off this loop: a restart waits for its report's ack, which
                        // arrives as a link event.
                        let ops = for_operations.clone();
                        let id = envelope.id;
                        tokio::spawn(async move { ops.execute(id, operation).await });
                    }
                    other => tracing::warn!(kind = other.kind().name(), "command not handled yet"),
                }
            }
        }
    });
    // What the devices report goes to the control plane (card events stay local:
    // they are for the staff UI).
    let reporter = link.clone();
    let ui_for_devices = ui.clone();
    tokio::spawn(async move {
        while let Some(event) = device_events.recv().await {
            ui_for_devices.on_device_event(&event);
            let body = match event {
                DeviceEvent::State(s) => Body::DeviceState(s),
                DeviceEvent::Print(p) => Body::PrintStatus(p),
                DeviceEvent::Scan(s) => Body::Scan(s),
                DeviceEvent::CardInserted { .. } | DeviceEvent::CardRemoved { .. } => continue,
            };
            if let Err(e) = reporter.send(body).await {
                tracing::error!(error = %e, "cannot queue a device report");
            }
        }
    });
    let app = router(AppState {
        link: link.clone(),
        store,
        boot_counter,
    })
    .merge(ui.router());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
    });
    // Whichever comes first: a signal, a restart asked for by the control plane, or
    // the server failing.
    let code = tokio::select! {
        () = shutdown_signal() => ExitCode::SUCCESS,
        () = operations.restart_requested() => {
            tracing::info!(exit_code = RESTART_EXIT_CODE, "restarting on the control plane's command");
            ExitCode::from(RESTART_EXIT_CODE)
        }
        served = &mut server => {
            served??;
            anyhow::bail!("the HTTP server stopped");
        }
    };
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    // Open event streams of the tablet keep a graceful stop waiting: bounded.
    if tokio::time::timeout(Duration::from_secs(3), &mut server)
        .await
        .is_err()
    {
        server.abort();
    }
    link.shutdown(boot_counter).await?;
    // Give the broker a moment to take the offline presence before the socket closes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(code)
}

async fn send_test_messages(
    config: Config,
    store: Arc<ApplianceStore>,
    count: u32,
) -> anyhow::Result<()> {
    use kakanai_protocol::catalogue::{DeviceClass, DeviceStateReport, DeviceStatus};
    let link_config = LinkConfig {
        identity: config.identity,
        broker_host: config.broker_host,
        broker_port: config.broker_port,
        keep_alive: config.keep_alive,
        backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5), 0.5)?,
        software_version: env!("CARGO_PKG_VERSION").into(),
        devices: Vec::new(),
    };
    let (link, _events, _) = match &config.tls {
        Some(tls) => link::start_tls(link_config, tls, Arc::clone(&store)).await?,
        None => link::start(link_config, Arc::clone(&store)).await?,
    };
    for _ in 0..count {
        let id = link
            .send(Body::DeviceState(DeviceStateReport {
                id: "link-test".into(),
                class: DeviceClass::Lights,
                status: DeviceStatus::Ready,
            }))
            .await?;
        println!("{{\"queued\":\"{id}\"}}");
    }
    while store.pending_count()? > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{{\"acknowledged\":{count}}}");
    Ok(())
}

/// The counter lights: GPIO pins on a Raspberry Pi build (feature `rpi`), else
/// simulated (the pattern shows in the staff UI's status and the logs).
fn counter_lights() -> Box<dyn kakanai_hw::lights::Lights + Send> {
    #[cfg(feature = "rpi")]
    {
        use kakanai_hw::lights::{DriverTiming, GpioLights, GpioPins};
        match GpioLights::open(GpioPins::default(), DriverTiming::default()) {
            Ok(lights) => return Box::new(lights),
            Err(e) => tracing::error!(error = %e, "GPIO lights unavailable; simulating them"),
        }
    }
    Box::new(kakanai_hw::lights::SimulatedLights::new())
}

fn event_name(e: &link::LinkEvent) -> &'static str {
    match e {
        link::LinkEvent::Online => "online",
        link::LinkEvent::Offline { .. } => "offline",
        link::LinkEvent::Command(_) => "command",
        link::LinkEvent::Acked(_) => "acked",
        link::LinkEvent::Rejected { .. } => "rejected",
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    // Whichever comes first stops the daemon.
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
