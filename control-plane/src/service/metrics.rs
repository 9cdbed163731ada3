//! Counters for `/metrics` (Prometheus text exposition format 0.0.4).
//!
//! Label values come from closed sets (kinds, refusal reasons, registered RPC method
//! names, outcomes), never from what a message says, so a device cannot blow up the
//! number of series, and nothing personal can become a label.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    accepted: Mutex<BTreeMap<&'static str, u64>>,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    duplicates: AtomicU64,
    rpc: Mutex<BTreeMap<(String, &'static str), u64>>,
    commands_sent: AtomicU64,
    command_acks: Mutex<BTreeMap<&'static str, u64>>,
    broker_connected: AtomicBool,
    resident_import_failures: Mutex<BTreeMap<&'static str, u64>>,
    device_errors: Mutex<BTreeMap<&'static str, u64>>,
    print_failures: AtomicU64,
    ingest_lag_ms_sum: AtomicU64,
    ingest_lag_count: AtomicU64,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    // A panic elsewhere while holding this lock leaves only counters: keep counting.
    let mut m = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *m.entry(key).or_insert(0) += 1;
}

fn get<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: &K) -> u64 {
    map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(key)
        .copied()
        .unwrap_or(0)
}

impl Metrics {
    /// A message of `kind` passed every check and was new.
    pub fn accepted(&self, kind: &'static str) {
        bump(&self.accepted, kind);
    }

    /// A message was refused for `reason`.
    pub fn refused(&self, reason: &'static str) {
        bump(&self.refused, reason);
    }

    /// A message was a duplicate by id.
    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// An RPC call of `method` (a registered name or `unknown`) ended with `outcome`.
    pub fn rpc(&self, method: &str, outcome: &'static str) {
        bump(&self.rpc, (method.to_owned(), outcome));
    }

    /// A command was published.
    pub fn command_sent(&self) {
        self.commands_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// An appliance acknowledged a command with `status`.
    pub fn command_ack(&self, status: &'static str) {
        bump(&self.command_acks, status);
    }

    /// A core-system file of `kind` (a `DataKind` id, or `unknown`) was refused.
    pub fn resident_import_failed(&self, kind: &'static str) {
        bump(&self.resident_import_failures, kind);
    }

    /// Refused core-system files of `kind` so far.
    pub fn resident_import_failure_count(&self, kind: &'static str) -> u64 {
        get(&self.resident_import_failures, &kind)
    }

    /// A device of `class` (`card-reader`, `printer`, `scanner`, `lights`) reported an
    /// error state.
    pub fn device_error(&self, class: &'static str) {
        bump(&self.device_errors, class);
    }

    /// A print job failed at a counter.
    pub fn print_failed(&self) {
        self.print_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A message arrived `lag_ms` after its sender stamped it (queued in an outbox
    /// during an outage, or slow ingest).
    pub fn ingest_lag(&self, lag_ms: u64) {
        self.ingest_lag_ms_sum.fetch_add(lag_ms, Ordering::Relaxed);
        self.ingest_lag_count.fetch_add(1, Ordering::Relaxed);
    }

    /// The operations gauges and counters added for issue 11, in exposition format.
    pub fn render_operations(&self, registered: &[(String, u64)]) -> String {
        let mut text = String::new();
        let head = |text: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut text,
            "kakanai_devices_registered",
            "gauge",
            "Devices registered and not revoked, per tenant (offline = registered - online).",
        );
        for (tenant, n) in registered {
            let _ = writeln!(
                text,
                "kakanai_devices_registered{{tenant=\"{tenant}\"}} {n}"
            );
        }
        head(
            &mut text,
            "kakanai_device_errors_total",
            "counter",
            "Device error states reported by appliances, by device class.",
        );
        for class in ["card-reader", "printer", "scanner", "lights"] {
            let n = get(&self.device_errors, &class);
            let _ = writeln!(text, "kakanai_device_errors_total{{class=\"{class}\"}} {n}");
        }
        head(
            &mut text,
            "kakanai_print_failures_total",
            "counter",
            "Print jobs that failed at a counter.",
        );
        let _ = writeln!(
            text,
            "kakanai_print_failures_total {}",
            self.print_failures.load(Ordering::Relaxed)
        );
        head(
            &mut text,
            "kakanai_ingest_lag_seconds",
            "summary",
            "Time from an appliance stamping a message to its ingest.",
        );
        let _ = writeln!(
            text,
            "kakanai_ingest_lag_seconds_sum {:.3}\nkakanai_ingest_lag_seconds_count {}",
            self.ingest_lag_ms_sum.load(Ordering::Relaxed) as f64 / 1000.0,
            self.ingest_lag_count.load(Ordering::Relaxed)
        );
        text
    }

    /// Whether the MQTT connection is up.
    pub fn set_broker_connected(&self, up: bool) {
        self.broker_connected.store(up, Ordering::Relaxed);
    }

    /// Whether the MQTT connection is up.
    pub fn broker_connected(&self) -> bool {
        self.broker_connected.load(Ordering::Relaxed)
    }

    /// Accepted messages of `kind` so far.
    pub fn accepted_count(&self, kind: &'static str) -> u64 {
        get(&self.accepted, &kind)
    }

    /// Refused messages for `reason` so far.
    pub fn refused_count(&self, reason: &'static str) -> u64 {
        get(&self.refused, &reason)
    }

    /// Duplicates so far.
    pub fn duplicate_count(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// RPC calls of `method` with `outcome` so far.
    pub fn rpc_count(&self, method: &str, outcome: &'static str) -> u64 {
        get(&self.rpc, &(method.to_owned(), outcome))
    }

    /// The exposition text; `online` is the devices online per tenant (read from the
    /// store by the caller).
    pub fn render(&self, online: &[(String, u64)]) -> String {
        let mut text = String::new();
        let head = |text: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut text,
            "kakanai_broker_connected",
            "gauge",
            "Whether the MQTT connection is up (1) or not (0).",
        );
        let _ = writeln!(
            text,
            "kakanai_broker_connected {}",
            u8::from(self.broker_connected())
        );
        head(
            &mut text,
            "kakanai_messages_accepted_total",
            "counter",
            "Messages that passed every check and were new, by kind.",
        );
        for (kind, n) in self.snapshot(&self.accepted) {
            let _ = writeln!(
                text,
                "kakanai_messages_accepted_total{{kind=\"{kind}\"}} {n}"
            );
        }
        head(
            &mut text,
            "kakanai_messages_refused_total",
            "counter",
            "Messages refused, by reason.",
        );
        for (reason, n) in self.snapshot(&self.refused) {
            let _ = writeln!(
                text,
                "kakanai_messages_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        head(
            &mut text,
            "kakanai_messages_duplicate_total",
            "counter",
            "Messages received again (same id) and acknowledged as duplicates.",
        );
        let _ = writeln!(
            text,
            "kakanai_messages_duplicate_total {}",
            self.duplicate_count()
        );
        head(
            &mut text,
            "kakanai_rpc_calls_total",
            "counter",
            "RPC calls, by method and outcome (ok, denied, error).",
        );
        let rpc: Vec<_> = self
            .rpc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for ((method, outcome), n) in rpc {
            let _ = writeln!(
                text,
                "kakanai_rpc_calls_total{{method=\"{method}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        head(
            &mut text,
            "kakanai_commands_sent_total",
            "counter",
            "Commands published to appliances.",
        );
        let _ = writeln!(
            text,
            "kakanai_commands_sent_total {}",
            self.commands_sent.load(Ordering::Relaxed)
        );
        head(
            &mut text,
            "kakanai_command_acks_total",
            "counter",
            "Acknowledgements of commands received from appliances, by status.",
        );
        for (status, n) in self.snapshot(&self.command_acks) {
            let _ = writeln!(
                text,
                "kakanai_command_acks_total{{status=\"{status}\"}} {n}"
            );
        }
        head(
            &mut text,
            "kakanai_devices_online",
            "gauge",
            "Devices whose last presence said online, by tenant.",
        );
        for (tenant, n) in online {
            let _ = writeln!(text, "kakanai_devices_online{{tenant=\"{tenant}\"}} {n}");
        }
        head(
            &mut text,
            "kakanai_resident_import_failures_total",
            "counter",
            "Core-system files refused by the drop-directory import, by data kind.",
        );
        for (kind, n) in self.snapshot(&self.resident_import_failures) {
            let _ = writeln!(
                text,
                "kakanai_resident_import_failures_total{{kind=\"{kind}\"}} {n}"
            );
        }
        text
    }

    fn snapshot(&self, map: &Mutex<BTreeMap<&'static str, u64>>) -> Vec<(&'static str, u64)> {
        map.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }
}
