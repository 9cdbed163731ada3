//! When automatic backups run: fixed times of day in Japan time (default 02:00 and
//! 20:00), every day. A missed run (the service was down) is not made up at start;
//! the `kakanai_backup_last_success_timestamp_seconds` metric and the shipped alert
//! rule show it instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{BackupError, Backups, Result};
use crate::audit::fiscal::JST_OFFSET_MS;
use crate::store::Store;

const DAY_MS: i64 = 86_400_000;

/// Parses `HH:MM` times of day; sorted, without duplicates, at least one.
pub fn parse_times(times: &[String]) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for t in times {
        let bad = || BackupError::Config(format!("backup time {t:?} is not HH:MM"));
        let (h, m) = t.split_once(':').ok_or_else(bad)?;
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(0..24).contains(&h) || !(0..60).contains(&m) || t.len() != 5 {
            return Err(bad());
        }
        out.push(h * 3_600_000 + m * 60_000);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(BackupError::Config(
            "at least one backup time is needed".into(),
        ));
    }
    Ok(out)
}

/// The first scheduled instant strictly after `now_ms` (ms since the epoch), for
/// times of day in Japan time (ms after midnight).
pub fn next_run_ms(now_ms: i64, times: &[i64]) -> i64 {
    let local = now_ms + JST_OFFSET_MS;
    let midnight = local.div_euclid(DAY_MS) * DAY_MS;
    let in_day = local - midnight;
    let next_local = times
        .iter()
        .find(|&&t| t > in_day)
        .map_or_else(|| midnight + DAY_MS + times[0], |&t| midnight + t);
    next_local - JST_OFFSET_MS
}

/// Runs backups at the configured times until `shutdown` turns true. Each outcome is
/// logged (names and counts only) and reaches the metrics through the backup
/// directory's manifests.
pub async fn run(
    backups: Arc<Backups>,
    store: Store,
    url: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let times = match parse_times(&backups.config().times) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "backup schedule not started");
            return;
        }
    };
    loop {
        let now = super::now_ms();
        let wait = u64::try_from(next_run_ms(now, &times) - now).unwrap_or(0);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match backups.run(&store, &url).await {
            Ok(m) => {
                tracing::info!(backup = %m.name, rows = m.total_rows(), "scheduled backup done and verified")
            }
            Err(e) => tracing::error!(error = %e, "scheduled backup failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn times_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_times(&["20:00".into(), "02:00".into()]).unwrap(),
            vec![2 * H, 20 * H]
        );
        for bad in ["24:00", "2:00", "20-00", "aa:bb", "12:60"] {
            assert!(parse_times(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parse_times(&[]).is_err());
    }

    #[test]
    fn next_run_is_in_japan_time() {
        let times = parse_times(&["02:00".into(), "20:00".into()]).unwrap();
        // 2026-11-27T10:00Z is 19:00 JST → 20:00 JST = 11:00Z the same day.
        let t = 1_795_773_600_000; // 2026-11-27T10:00:00Z
        assert_eq!(next_run_ms(t, &times), t + H);
        // At 20:00 JST exactly, the next one is 02:00 JST the day after (17:00Z).
        assert_eq!(next_run_ms(t + H, &times), t + 7 * H);
        // 16:30Z (01:30 JST next day) → 17:00Z.
        assert_eq!(next_run_ms(t + 6 * H + H / 2, &times), t + 7 * H);
    }
}
