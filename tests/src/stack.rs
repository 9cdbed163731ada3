//! The whole counter on one machine, as separate processes: the control plane
//! (`kakanai-control-plane serve`) with a synthetic city imported, the reference
//! catalogue installed and demo staff accounts; a broker (the control plane's embedded
//! one, or Mosquitto); one appliance (`kakanai-appliance`) provisioned with
//! `kakanai-provision`, its card reader on pcscd + vpcd with a virtual card, its printer
//! `ippeveprinter`, its scanner a pty. Used by `scripts/demo` (through the
//! `kakanai-demo` binary) and by the end-to-end tests of the counter flows.
//!
//! Everything lives in one temporary directory, removed when the [`Stack`] is dropped
//! (the processes are stopped first). The binaries are taken from `bin_dir` (the
//! demo's release build or the tests' debug build); [`Stack::start`] fails with the
//! command to build them when one is missing.
//!
//! The data are synthetic (`gen-city`): the demo people's virtual cards are written by
//! `gen-city` into `city/demo/` (see [`Stack::demo_card`]).

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use kakanai_hw::vcard::{VirtualCard, VpcdLink};
use kakanai_protocol::{KeyId, SigningKey};
use kakanai_test_peers::{free_port, IppPrinter, Mosquitto, Pcscd, PtyScanner};

/// The demo city's tenant id.
pub const TENANT: &str = "kakanai-city";
/// Its name as printed on the forms.
pub const CITY_NAME: &str = "書無市";
/// The counter's device id.
pub const DEVICE: &str = "counter-01";
/// The counter's name.
pub const COUNTER: &str = "市民課 1番窓口";
/// Counter staff: login id.
pub const STAFF_LOGIN: &str = "madoguchi01";
/// Counter staff: password (a training account: no change at first login).
pub const STAFF_PASSWORD: &str = "kakanai-demo-2026";
/// Administrator: login id.
pub const ADMIN_LOGIN: &str = "kanri01";
/// Administrator: password.
pub const ADMIN_PASSWORD: &str = "kakanai-admin-2026";
/// The PIN of every demo card.
pub const DEMO_PIN: &str = "1234";

/// Which broker the control plane and the appliance meet at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// The control plane's in-process broker (the embedded defaults).
    Embedded,
    /// A Mosquitto process.
    Mosquitto,
}

/// How to start the stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where the binaries are.
    pub bin_dir: PathBuf,
    /// The broker.
    pub broker: Broker,
    /// Living residents of the synthetic city.
    pub residents: usize,
    /// Its seed.
    pub seed: u64,
    /// The catalogue directory to install.
    pub catalog: PathBuf,
    /// Where the admin UI and health listen (port 0: a free port).
    pub admin_port: u16,
    /// Where the tablet UI listens (port 0: a free port).
    pub tablet_port: u16,
    /// Bind the tablet UI on every address (a real tablet on the LAN), not loopback.
    pub tablet_on_lan: bool,
    /// Start with this card profile on the reader.
    pub card: Option<PathBuf>,
    /// Printer jobs complete at once (tests) instead of taking 5–15 s (demo).
    pub fast_printer: bool,
}

impl StackOptions {
    /// Defaults for this repository's build in `bin_dir`.
    pub fn new(bin_dir: PathBuf) -> Self {
        Self {
            bin_dir,
            broker: Broker::Embedded,
            residents: 2_000,
            seed: 1,
            catalog: Path::new(env!("CARGO_MANIFEST_DIR")).join("../control-plane/catalog"),
            admin_port: 0,
            tablet_port: 0,
            tablet_on_lan: false,
            card: None,
            fast_printer: true,
        }
    }
}

/// A process whose log is a file; killed when dropped.
#[derive(Debug)]
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first (graceful shutdown), SIGKILL if it lingers.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The running counter.
#[derive(Debug)]
pub struct Stack {
    // Drop order: the appliance and the control plane first, then the peers, then the
    // directory.
    appliance: Proc,
    control_plane: Proc,
    card: Mutex<Option<VpcdLink>>,
    scanner: Mutex<PtyScanner>,
    printer: IppPrinter,
    pcscd: Pcscd,
    mosquitto: Option<Mosquitto>,
    admin_port: u16,
    tablet_port: u16,
    database_url: String,
    bin_dir: PathBuf,
    dir: tempfile::TempDir,
}

fn run(
    bin: &Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> anyhow::Result<String> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            bin.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            args.first().copied().unwrap_or(""),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn spawn(bin: &Path, args: &[&str], log: PathBuf, env: &[(&str, &str)]) -> anyhow::Result<Proc> {
    let file = std::fs::File::create(&log)?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Proc { child, log })
}

/// `GET path` on `127.0.0.1:port`: (status line, body), or None when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut ok: impl FnMut() -> bool,
    log: &Path,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() > deadline {
            let tail: String = std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!(
                "{what} within {timeout:?}; last lines of {}:\n{tail}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

impl Stack {
    /// Starts everything and returns once the appliance is online and its devices are
    /// up. `progress` hears each step (for the demo's console).
    pub fn start(opts: &StackOptions, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Self> {
        let bins = [
            "kakanai-control-plane",
            "kakanai-appliance",
            "kakanai-provision",
        ];
        for b in bins {
            if !opts.bin_dir.join(b).is_file() {
                bail!(
                    "{} is missing in {}: build it first (cargo build -p kakanai-control-plane -p kakanai-appliance -p kakanai-provisioning)",
                    b,
                    opts.bin_dir.display()
                );
            }
        }
        let cp_bin = opts.bin_dir.join("kakanai-control-plane");
        let dir = tempfile::Builder::new()
            .prefix("kakanai-stack-")
            .tempdir()?;
        let d = dir.path();
        let database_url = format!("sqlite://{}?mode=rwc", d.join("cp/kakanai.db").display());
        std::fs::create_dir_all(d.join("cp"))?;
        let db_env = [("KAKANAI_DATABASE_URL", database_url.as_str())];

        // Keys: the control plane's message key, the 個人番号 sealing key.
        let cp_key = SigningKey::generate().context("control-plane key")?;
        let cp_public = cp_key.verifying_key();
        write_secret(&d.join("cp/signing.key"), &hex::encode(cp_key.seed()))?;
        let mut mn = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut mn)
            .map_err(|_| anyhow::anyhow!("random"))?;
        write_secret(&d.join("cp/my-number.key"), &hex::encode(mn))?;

        progress(&format!(
            "synthetic city: {} residents (seed {})",
            opts.residents, opts.seed
        ));
        let city = d.join("city");
        run(
            &cp_bin,
            &[
                "gen-city",
                "--out",
                &city.to_string_lossy(),
                "--seed",
                &opts.seed.to_string(),
                "--residents",
                &opts.residents.to_string(),
            ],
            None,
            &[],
        )?;
        run(
            &cp_bin,
            &["tenant", "add", "--tenant", TENANT, "--name", CITY_NAME],
            None,
            &db_env,
        )?;
        progress("importing the core-system files");
        run(
            &cp_bin,
            &[
                "import",
                "--tenant",
                TENANT,
                "--dir",
                &city.to_string_lossy(),
                "--my-number-key-file",
                &d.join("cp/my-number.key").to_string_lossy(),
            ],
            None,
            &db_env,
        )?;
        progress("installing the reference catalogue");
        run(
            &cp_bin,
            &[
                "catalog",
                "install",
                "--tenant",
                TENANT,
                "--by",
                "demo",
                &opts.catalog.to_string_lossy(),
            ],
            None,
            &db_env,
        )?;
        progress("staff groups and demo accounts");
        Self::staff(&cp_bin, &db_env)?;

        // The counter, provisioned centrally (bundle), registered through the CA dir.
        progress("provisioning the counter's appliance");
        let prov = opts.bin_dir.join("kakanai-provision");
        let ca = d.join("ca");
        let ca_s = ca.to_string_lossy().into_owned();
        run(
            &prov,
            &[
                "init-ca",
                "--tenant",
                TENANT,
                "--dir",
                &ca_s,
                "--broker-url",
                "mqtts://127.0.0.1:8883",
                "--enrolment-url",
                "https://127.0.0.1:8443",
                "--control-plane-key",
                &hex::encode(cp_public.as_bytes()),
            ],
            None,
            &[],
        )?;
        let bundle = d.join("bundle");
        run(
            &prov,
            &[
                "bundle",
                "write",
                "--dir",
                &ca_s,
                "--device",
                DEVICE,
                "--counter",
                COUNTER,
                "--out",
                &bundle.to_string_lossy(),
            ],
            None,
            &[],
        )?;

        // Broker.
        let (mosquitto, broker_port) = match opts.broker {
            Broker::Mosquitto => {
                let m = Mosquitto::start().context("Mosquitto")?;
                let p = m.port();
                (Some(m), p)
            }
            Broker::Embedded => (None, free_port()),
        };
        let admin_port = if opts.admin_port == 0 {
            free_port()
        } else {
            opts.admin_port
        };
        let broker_toml = match opts.broker {
            Broker::Mosquitto => format!("host = \"127.0.0.1\"\nport = {broker_port}"),
            Broker::Embedded => format!("embedded = true\nlisten = \"127.0.0.1:{broker_port}\""),
        };
        let cp_config = format!(
            "data_dir = \"{data}\"\ntenants = [\"{TENANT}\"]\n\n[database]\nurl = \"{database_url}\"\n\n\
             [broker]\n{broker_toml}\nkeep_alive_s = 5\n\n[signing]\nkey_file = \"{key}\"\n\n\
             [http]\nlisten = \"127.0.0.1:{admin_port}\"\n\n[fleet]\nca_dirs = [\"{ca_s}\"]\nsync_seconds = 5\n",
            data = d.join("cp").display(),
            key = d.join("cp/signing.key").display(),
        );
        std::fs::write(d.join("cp/control-plane.toml"), cp_config)?;
        progress("starting the control plane");
        let cp_config_path = d.join("cp/control-plane.toml");
        let control_plane = spawn(
            &cp_bin,
            &["serve", "--config", &cp_config_path.to_string_lossy()],
            d.join("control-plane.log"),
            &[("RUST_LOG", "info")],
        )?;
        wait_until(
            "the control plane answers /health",
            Duration::from_secs(60),
            || http_get(admin_port, "/health").is_some(),
            &control_plane.log,
        )?;

        // The counter's devices.
        progress("starting pcscd with the virtual card reader, the printer and the scanner");
        let pcscd = Pcscd::start().context("pcscd")?;
        let printer = if opts.fast_printer {
            let cmd = d.join("print-ok.sh");
            std::fs::write(&cmd, "#!/bin/sh\nexit 0\n")?;
            std::fs::set_permissions(&cmd, std::fs::Permissions::from_mode(0o755))?;
            IppPrinter::start_with_command("kakanai-counter-01", &cmd)
        } else {
            IppPrinter::start("kakanai-counter-01")
        }
        .context("ippeveprinter")?;
        let scanner = PtyScanner::plug_in(&d.join("scanner")).context("scanner pty")?;

        let tablet_port = if opts.tablet_port == 0 {
            free_port()
        } else {
            opts.tablet_port
        };
        let listen_host = if opts.tablet_on_lan {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        };
        let appliance_config = format!(
            "[device]\ntenant = \"{TENANT}\"\nid = \"{DEVICE}\"\nkey_file = \"{key}\"\n\n\
             [[control_plane.keys]]\nkid = \"{kid}\"\npublic_key = \"{public}\"\n\n\
             [broker]\nhost = \"127.0.0.1\"\nport = {broker_port}\nkeep_alive_s = 5\n\n\
             [store]\npath = \"{store}\"\n\n[http]\nlisten = \"{listen_host}:{tablet_port}\"\n\n\
             [devices]\nreader = \"{reader}\"\nprinter = \"{printer}\"\nscanner = \"{scanner}\"\n",
            key = bundle.join("device.key").display(),
            kid = KeyId::of_key(&cp_public).to_hex(),
            public = hex::encode(cp_public.as_bytes()),
            store = d.join("appliance.redb").display(),
            reader = pcscd.reader_name(0),
            printer = printer.uri(),
            scanner = scanner.path().display(),
        );
        std::fs::write(d.join("appliance.toml"), appliance_config)?;
        let mut card = None;
        if let Some(profile) = &opts.card {
            card = Some(Self::connect_card(&pcscd, profile)?);
        }
        progress("starting the appliance");
        let appliance_toml = d.join("appliance.toml");
        let appliance = spawn(
            &opts.bin_dir.join("kakanai-appliance"),
            &["--config", &appliance_toml.to_string_lossy()],
            d.join("appliance.log"),
            &[("RUST_LOG", "info")],
        )?;
        wait_until(
            "the appliance comes online",
            Duration::from_secs(60),
            || {
                http_get(tablet_port, "/health")
                    .is_some_and(|(_, body)| body.contains("\"link\":\"online\""))
            },
            &appliance.log,
        )?;
        Ok(Self {
            appliance,
            control_plane,
            card: Mutex::new(card),
            scanner: Mutex::new(scanner),
            printer,
            pcscd,
            mosquitto,
            admin_port,
            tablet_port,
            database_url,
            bin_dir: opts.bin_dir.clone(),
            dir,
        })
    }

    fn staff(cp_bin: &Path, db_env: &[(&str, &str)]) -> anyhow::Result<()> {
        let counter_permissions = [
            "certificate.issue",
            "application.create",
            "application.view",
            "resident.view",
            "resident.view:kokuho",
            "resident.view:nenkin",
            "resident.view:kaigo",
            "resident.view:kosodate",
            "resident.view:zei",
            "card.read",
            "document.print",
            "procedure.determine",
        ];
        let mut args = vec![
            "staff",
            "group",
            "--tenant",
            TENANT,
            "shimin-madoguchi",
            "--description",
            "総合窓口の職員",
        ];
        for p in counter_permissions {
            args.push("--permission");
            args.push(p);
        }
        run(cp_bin, &args, None, db_env)?;
        // The administrators: every permission the catalogue has.
        let catalogue = run(cp_bin, &["staff", "permissions"], None, &[])?;
        let all: Vec<&str> = catalogue
            .lines()
            .filter_map(|l| l.split('\t').next())
            .collect();
        let mut args = vec![
            "staff",
            "group",
            "--tenant",
            TENANT,
            "joho-kanri",
            "--description",
            "システム管理者",
        ];
        for p in &all {
            args.push("--permission");
            args.push(p);
        }
        run(cp_bin, &args, None, db_env)?;
        run(
            cp_bin,
            &[
                "staff",
                "add",
                "--tenant",
                TENANT,
                STAFF_LOGIN,
                "--name",
                "窓口　太郎",
                "--group",
                "shimin-madoguchi",
                "--training",
            ],
            Some(&format!("{STAFF_PASSWORD}\n")),
            db_env,
        )?;
        run(
            cp_bin,
            &[
                "staff",
                "add",
                "--tenant",
                TENANT,
                ADMIN_LOGIN,
                "--name",
                "管理　花子",
                "--group",
                "joho-kanri",
                "--training",
            ],
            Some(&format!("{ADMIN_PASSWORD}\n")),
            db_env,
        )?;
        Ok(())
    }

    fn connect_card(pcscd: &Pcscd, profile: &Path) -> anyhow::Result<VpcdLink> {
        let card = VirtualCard::from_file(profile)
            .with_context(|| format!("card profile {}", profile.display()))?;
        let link = VpcdLink::connect(("127.0.0.1", pcscd.vpcd_port(0)), card)
            .context("connecting the virtual card to vpcd")?;
        if !link.wait_connected(Duration::from_secs(5)) {
            bail!("vpcd did not take the virtual card within 5 s");
        }
        Ok(link)
    }

    /// Puts the card of `profile` on the reader (taking off the one there).
    pub fn insert_card(&self, profile: &Path) -> anyhow::Result<()> {
        let mut slot = self.card.lock().map_err(|_| anyhow::anyhow!("card lock"))?;
        if let Some(old) = slot.take() {
            old.remove();
            drop(old);
            // Let pcscd see the reader empty before the next card arrives.
            std::thread::sleep(Duration::from_millis(600));
        }
        *slot = Some(Self::connect_card(&self.pcscd, profile)?);
        Ok(())
    }

    /// Takes the card off the reader.
    pub fn remove_card(&self) {
        if let Ok(mut slot) = self.card.lock() {
            if let Some(old) = slot.take() {
                old.remove();
            }
        }
    }

    /// The counter's scanner reads `code`.
    pub fn scan(&self, code: &str) -> anyhow::Result<()> {
        self.scanner
            .lock()
            .map_err(|_| anyhow::anyhow!("scanner lock"))?
            .scan(code)
            .map_err(Into::into)
    }

    /// A demo card profile written by `gen-city` (`resident`, `family-1` …).
    pub fn demo_card(&self, name: &str) -> PathBuf {
        self.dir
            .path()
            .join("city/demo")
            .join(format!("{name}.json"))
    }

    /// The demo people's description written by `gen-city`.
    pub fn demo_readme(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("city/demo/README.txt")).unwrap_or_default()
    }

    /// The tablet's URL.
    pub fn tablet_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.tablet_port)
    }

    /// The admin UI's URL.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}/admin/", self.admin_port)
    }

    /// The tablet UI's port.
    pub fn tablet_port(&self) -> u16 {
        self.tablet_port
    }

    /// The admin UI's port.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The printer (its spool holds every printed document).
    pub fn printer(&self) -> &IppPrinter {
        &self.printer
    }

    /// The stack's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The control plane's database URL.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// Runs `kakanai-control-plane ARGS` against this stack's database.
    pub fn control_plane_cli(&self, args: &[&str]) -> anyhow::Result<String> {
        run(
            &self.bin_dir.join("kakanai-control-plane"),
            args,
            None,
            &[("KAKANAI_DATABASE_URL", self.database_url.as_str())],
        )
    }

    /// The control plane's log.
    pub fn control_plane_log(&self) -> String {
        std::fs::read_to_string(&self.control_plane.log).unwrap_or_default()
    }

    /// The appliance's log.
    pub fn appliance_log(&self) -> String {
        std::fs::read_to_string(&self.appliance.log).unwrap_or_default()
    }

    /// Whether the broker is Mosquitto.
    pub fn uses_mosquitto(&self) -> bool {
        self.mosquitto.is_some()
    }
}

/// One line of the demo's console (`card NAME`, `remove`, `scan CODE`, `help`): what
/// to answer, or `None` for `quit`.
pub fn console_command(stack: &Stack, line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    Some(match (words.next(), words.next()) {
        (None, _) => String::new(),
        (Some("quit" | "exit"), _) => return None,
        (Some("card"), Some(name)) => {
            let path = if Path::new(name).is_file() {
                PathBuf::from(name)
            } else {
                stack.demo_card(name)
            };
            match stack.insert_card(&path) {
                Ok(()) => format!("card {name} is on the reader"),
                Err(e) => format!("could not insert {name}: {e:#}"),
            }
        }
        (Some("remove"), _) => {
            stack.remove_card();
            "the reader is empty".into()
        }
        (Some("scan"), Some(code)) => match stack.scan(code) {
            Ok(()) => "scanned".into(),
            Err(e) => format!("scanner: {e}"),
        },
        _ => "commands: card resident | card family-1 … family-4 | card FILE.json | remove | scan CODE | quit".into(),
    })
}
