//! The export on a schedule (`[export]` in the service configuration): every
//! `every_minutes` during opening hours (JST), for every tenant the instance serves,
//! a batch of whatever has been accepted since ([`super::export::export`]; nothing
//! accepted, nothing written).
//!
//! ```toml
//! [export]
//! dir = "/srv/kakanai/export"          # required: one subdirectory per tenant
//! every_minutes = 15                   # optional, 1 to 1440
//! hours = "08:30-17:15"                # optional, JST; default all day
//! mapping = "/etc/kakanai/export.toml" # optional; default the reference mapping
//! ```
//!
//! Several instances over one database may all run it: a batch moves its applications
//! to `exported` in one transaction that checks each is still accepted, so a second
//! instance racing on the same applications fails, withdraws its files and tries again
//! next time. Files go to `DIR/TENANT/BATCH/`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use super::export::{export, ExportMapping};
use crate::model::TenantId;
use crate::store::Store;

/// `[export]` as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExportSchedule {
    dir: PathBuf,
    #[serde(default = "default_every")]
    every_minutes: u32,
    #[serde(default)]
    hours: Option<String>,
    #[serde(default)]
    mapping: Option<PathBuf>,
}

fn default_every() -> u32 {
    15
}

/// A checked export schedule.
#[derive(Debug, Clone)]
pub struct ExportSchedule {
    /// The export directory (a subdirectory per tenant inside).
    pub dir: PathBuf,
    /// Interval.
    pub every: Duration,
    /// Opening hours in JST as minutes after midnight, `[from, to)`.
    pub hours: (u32, u32),
    /// The mapping.
    pub mapping: ExportMapping,
}

fn hm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

impl RawExportSchedule {
    /// Checks it (and reads the mapping file); the error names the field.
    pub fn check(self) -> Result<ExportSchedule, (&'static str, String)> {
        if self.dir.as_os_str().is_empty() {
            return Err(("export.dir", "empty".into()));
        }
        if !(1..=1440).contains(&self.every_minutes) {
            return Err(("export.every_minutes", "must be 1 to 1440".into()));
        }
        let hours = match &self.hours {
            None => (0, 24 * 60),
            Some(text) => {
                let parsed = text
                    .split_once('-')
                    .and_then(|(a, b)| Some((hm(a)?, hm(b)?)))
                    .filter(|(a, b)| a < b);
                parsed.ok_or((
                    "export.hours",
                    "expected HH:MM-HH:MM, start before end".into(),
                ))?
            }
        };
        let mapping = match &self.mapping {
            None => ExportMapping::reference(),
            Some(p) => ExportMapping::load(p).map_err(|e| ("export.mapping", e.to_string()))?,
        };
        Ok(ExportSchedule {
            dir: self.dir,
            every: Duration::from_secs(u64::from(self.every_minutes) * 60),
            hours,
            mapping,
        })
    }
}

impl ExportSchedule {
    /// Whether a run is due at `now_ms`, the last one having run at `last_ms`.
    pub fn due(&self, now_ms: i64, last_ms: Option<i64>) -> bool {
        let minute =
            u32::try_from((now_ms + 9 * 3_600_000).rem_euclid(86_400_000) / 60_000).unwrap_or(0);
        let open = self.hours.0 <= minute && minute < self.hours.1;
        let every = i64::try_from(self.every.as_millis()).unwrap_or(i64::MAX);
        open && last_ms.is_none_or(|l| now_ms.saturating_sub(l) >= every)
    }

    /// One round: a batch per tenant; failures are logged and retried next round.
    pub async fn run_once(&self, store: &Store, tenants: &[TenantId], now_ms: i64) {
        for t in tenants {
            let out = self.dir.join(t.as_str());
            match export(store, t, &self.mapping, &out, None, now_ms).await {
                Ok(report) => {
                    if !report.held_back.is_empty() {
                        // Numbers and columns only: no data.
                        tracing::warn!(tenant = %t, held_back = report.held_back.len(), batch = ?report.batch, "applications held back from the export; see the manifest");
                    }
                }
                Err(e) => tracing::error!(tenant = %t, error = %e, "scheduled export failed"),
            }
        }
    }
}

/// The `[export]` section of the service configuration file at `path`, checked;
/// `None` when the file has none. (The service's own configuration checks the section
/// too, so a broken one stops the start either way.)
pub fn load(path: &std::path::Path) -> Result<Option<ExportSchedule>, String> {
    #[derive(Deserialize)]
    struct File {
        export: Option<RawExportSchedule>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    file.export
        .map(|raw| {
            raw.check()
                .map_err(|(field, message)| format!("{field}: {message}"))
        })
        .transpose()
}

/// The running schedule; [`Scheduled::stop`] ends it.
#[derive(Debug)]
pub struct Scheduled {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Scheduled {
    /// Stops after the round in progress, if any.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Runs the schedule (checking once a minute) until stopped.
pub fn spawn(store: Store, tenants: Vec<TenantId>, schedule: ExportSchedule) -> Scheduled {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut last: Option<i64> = None;
        loop {
            let now = crate::service::now_ms();
            if schedule.due(now, last) {
                last = Some(now);
                schedule.run_once(&store, &tenants, now).await;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
    });
    Scheduled { stop, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(hours: Option<&str>) -> ExportSchedule {
        RawExportSchedule {
            dir: "/tmp/x".into(),
            every_minutes: 15,
            hours: hours.map(str::to_owned),
            mapping: None,
        }
        .check()
        .unwrap()
    }

    #[test]
    fn the_service_configuration_carries_the_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.toml");
        let base = "data_dir = \"/tmp/k\"\ntenants = [\"city-a\"]\n[broker]\nhost = \"h\"\nport = 1883\n[signing]\nkey_file = \"/nonexistent\"\n";
        std::fs::write(
            &path,
            format!("{base}[export]\ndir = \"/srv/x\"\nhours = \"09:00-17:00\"\n"),
        )
        .unwrap();
        let s = load(&path).unwrap().unwrap();
        assert_eq!(s.hours, (540, 1020));
        assert_eq!(s.every, Duration::from_secs(900));
        std::fs::write(&path, base).unwrap();
        assert!(load(&path).unwrap().is_none());
        // A broken section stops the service's configuration, naming the field.
        let broken = format!("{base}[export]\ndir = \"/srv/x\"\nevery_minutes = 0\n");
        let e = crate::service::ServiceConfig::parse(&broken, &path, |_| None).unwrap_err();
        assert!(e.to_string().contains("export.every_minutes"), "{e}");
        let unknown = format!("{base}[export]\ndir = \"/srv/x\"\nevery = 5\n");
        assert!(crate::service::ServiceConfig::parse(&unknown, &path, |_| None).is_err());
    }

    #[test]
    fn due_every_interval_inside_opening_hours_only() {
        // 2026-11-27 08:29 JST = 2026-11-26T23:29Z.
        let at = |h: i64, m: i64| 1_795_705_200_000 + (h * 60 + m) * 60_000;
        let s = schedule(Some("08:30-17:15"));
        assert!(!s.due(at(8, 29), None));
        assert!(s.due(at(8, 30), None));
        assert!(!s.due(at(8, 44), Some(at(8, 30))));
        assert!(s.due(at(8, 45), Some(at(8, 30))));
        assert!(s.due(at(17, 14), Some(at(16, 0))));
        assert!(!s.due(at(17, 15), Some(at(16, 0))));
        assert!(schedule(None).due(at(3, 0), None));
        for bad in ["8-17", "17:00-08:00", "25:00-26:00"] {
            let raw = RawExportSchedule {
                dir: "/tmp/x".into(),
                every_minutes: 15,
                hours: Some(bad.into()),
                mapping: None,
            };
            assert_eq!(raw.check().unwrap_err().0, "export.hours", "{bad}");
        }
    }
}
