//! Fleet operations central IT runs on an appliance from the control plane, as it
//! would with a fleet agent such as thin-edge.io: fetch the recent logs, restart.
//!
//! - [`LogRing`] keeps the last log lines in memory: a `tracing` layer beside the
//!   JSON lines on stderr, bounded in lines and in bytes per line, so it costs a
//!   fixed amount of memory however long the appliance runs. It sees what passes
//!   the daemon's log filter, and the appliance logs no personal data, so what it
//!   holds may leave the counter.
//! - [`Operations`] carries out an `operation` command (already verified, fresh and
//!   de-duplicated by the link, so each runs once) and reports its
//!   `operation-result` through the outbox. `Logs` answers with the newest lines
//!   that fit one message. `Restart` reports "done" first, waits until the control
//!   plane has acknowledged that report (bounded: a report still queued is sent
//!   after the restart), and then asks the daemon to stop in order and exit with
//!   [`RESTART_EXIT_CODE`], which the systemd unit restarts
//!   (`RestartForceExitStatus=75`).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kakanai_protocol::catalogue::{
    fit_log_excerpt, Body, LogLine, Operation, OperationResult, OperationStatus, MAX_LOG_LINE_BYTES,
};
use kakanai_protocol::MessageId;
use tokio::sync::watch;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use crate::link::LinkHandle;

/// The exit code of a restart asked for by the control plane (`EX_TEMPFAIL`): the
/// systemd unit starts the daemon again on it (`RestartForceExitStatus=75`), and it
/// tells such a restart apart from a crash in the journal.
pub const RESTART_EXIT_CODE: u8 = 75;

/// Log lines kept in memory by default (about 200 bytes each in practice; at most
/// [`MAX_LOG_LINE_BYTES`] each).
pub const DEFAULT_LOG_LINES: usize = 2000;

/// How long a restart waits for the control plane to acknowledge its report.
const REPORT_WAIT: Duration = Duration::from_secs(10);
/// How long it then waits for the rest of the outbox to drain.
const DRAIN_WAIT: Duration = Duration::from_secs(3);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves a ring of log lines: keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Ring {
    lines: VecDeque<LogLine>,
    capacity: usize,
    /// Lines pushed out of the ring since the start.
    evicted: u64,
}

/// The last log lines, in memory; cheap to clone (all clones share the lines).
#[derive(Clone)]
pub struct LogRing {
    ring: Arc<Mutex<Ring>>,
}

impl std::fmt::Debug for LogRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = lock(&self.ring);
        f.debug_struct("LogRing")
            .field("lines", &ring.lines.len())
            .field("capacity", &ring.capacity)
            .finish()
    }
}

impl LogRing {
    /// A ring keeping the last `capacity` lines (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            ring: Arc::new(Mutex::new(Ring {
                lines: VecDeque::with_capacity(capacity.min(DEFAULT_LOG_LINES)),
                capacity,
                evicted: 0,
            })),
        }
    }

    /// The `tracing` layer that fills this ring.
    pub fn layer(&self) -> LogRingLayer {
        LogRingLayer { ring: self.clone() }
    }

    /// Adds a line, pushing out the oldest when full.
    pub fn push(&self, mut line: LogLine) {
        cut(&mut line.text, MAX_LOG_LINE_BYTES);
        let mut ring = lock(&self.ring);
        if ring.lines.len() >= ring.capacity {
            ring.lines.pop_front();
            ring.evicted += 1;
        }
        ring.lines.push_back(line);
    }

    /// The newest `max_lines` lines at or after `since_ms`, oldest first, and
    /// whether lines that would have matched were already pushed out.
    pub fn recent(&self, since_ms: Option<i64>, max_lines: usize) -> (Vec<LogLine>, bool) {
        let ring = lock(&self.ring);
        let matching = ring
            .lines
            .iter()
            .filter(|l| since_ms.is_none_or(|s| l.time_ms >= s));
        let count = matching.clone().count();
        let skip = count.saturating_sub(max_lines);
        let lines: Vec<LogLine> = matching.skip(skip).cloned().collect();
        // Older lines are gone if the ring overflowed and the oldest it holds is
        // newer than what was asked for.
        let oldest_held = ring.lines.front().map_or(i64::MAX, |l| l.time_ms);
        let lost =
            ring.evicted > 0 && lines.len() < max_lines && since_ms.is_none_or(|s| s < oldest_held);
        (lines, skip > 0 || lost)
    }
}

/// Cuts `text` to at most `max` bytes at a character boundary, ending with `…`.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

/// The `tracing` layer of a [`LogRing`]: every event that passes the subscriber's
/// filter becomes a [`LogLine`] (`message key=value …`).
#[derive(Debug, Clone)]
pub struct LogRingLayer {
    ring: LogRing,
}

#[derive(Default)]
struct LineText {
    message: String,
    fields: String,
}

impl LineText {
    fn add(&mut self, field: &Field, value: &dyn std::fmt::Display) {
        // Stop collecting once a line is over its limit anyway.
        if self.message.len() + self.fields.len() > MAX_LOG_LINE_BYTES {
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.message, "{value}");
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl Visit for LineText {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, &value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.add(field, &format_args!("{value:?}"));
    }
}

impl<S: Subscriber> Layer<S> for LogRingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = LineText::default();
        event.record(&mut text);
        let meta = event.metadata();
        self.ring.push(LogLine {
            time_ms: now_ms(),
            level: meta.level().to_string(),
            target: meta.target().to_owned(),
            text: text.message + &text.fields,
        });
    }
}

/// Carries out `operation` commands; cheap to clone.
#[derive(Clone)]
pub struct Operations {
    link: LinkHandle,
    logs: LogRing,
    restart: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations")
            .field("logs", &self.logs)
            .finish_non_exhaustive()
    }
}

impl Operations {
    /// Operations over `link`, answering log requests from `logs`.
    pub fn new(link: LinkHandle, logs: LogRing) -> Self {
        Self {
            link,
            logs,
            restart: Arc::new(watch::channel(false).0),
        }
    }

    /// Resolves once a restart has been asked for and reported: the daemon then
    /// stops in order and exits with [`RESTART_EXIT_CODE`].
    pub async fn restart_requested(&self) {
        let mut rx = self.restart.subscribe();
        // The sender lives in self: wait_for ends only with a restart.
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Carries out the operation of command `command_id` and queues its result.
    pub async fn execute(&self, command_id: MessageId, operation: Operation) {
        tracing::info!(op = operation.name(), command = %command_id, "operation from the control plane");
        if let Err(why) = operation.check() {
            tracing::warn!(op = operation.name(), %why, "operation refused");
            self.report(command_id, OperationStatus::Failed, Vec::new(), false, why)
                .await;
            return;
        }
        match operation {
            Operation::Logs {
                since_ms,
                max_lines,
            } => {
                let wanted = usize::try_from(max_lines).unwrap_or(usize::MAX);
                let (lines, lost) = self.logs.recent(since_ms, wanted);
                let (lines, cut) = fit_log_excerpt(lines);
                let message = format!("{} lines", lines.len());
                self.report(
                    command_id,
                    OperationStatus::Done,
                    lines,
                    lost || cut,
                    message,
                )
                .await;
            }
            Operation::Restart { reason } => {
                tracing::warn!(%reason, "restart asked for by the control plane");
                let Some(id) = self
                    .report(
                        command_id,
                        OperationStatus::Done,
                        Vec::new(),
                        false,
                        "restarting".into(),
                    )
                    .await
                else {
                    // Not even queued (disk full?): do not vanish without a word.
                    return;
                };
                if !self.link.wait_acked(id, REPORT_WAIT).await {
                    tracing::warn!(
                        "restart report not acknowledged yet; it is sent after the restart"
                    );
                }
                self.link.wait_drained(DRAIN_WAIT).await;
                self.restart.send_replace(true);
            }
        }
    }

    async fn report(
        &self,
        command_id: MessageId,
        status: OperationStatus,
        logs: Vec<LogLine>,
        truncated: bool,
        message: String,
    ) -> Option<MessageId> {
        let body = Body::OperationResult(OperationResult {
            command_id,
            status,
            logs,
            truncated,
            message,
        });
        match self.link.send(body).await {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, "cannot queue an operation result");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time_ms: i64, text: &str) -> LogLine {
        LogLine {
            time_ms,
            level: "INFO".into(),
            target: "t".into(),
            text: text.into(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_lines_and_says_when_older_ones_are_gone() {
        let ring = LogRing::new(3);
        for n in 0..5 {
            ring.push(line(n, &format!("line {n}")));
        }
        let (lines, lost) = ring.recent(None, 10);
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["line 2", "line 3", "line 4"]);
        assert!(lost);
        let (lines, cut) = ring.recent(Some(3), 10);
        assert_eq!(lines.len(), 2);
        assert!(!cut);
        let (lines, cut) = ring.recent(None, 1);
        assert_eq!(lines[0].text, "line 4");
        assert!(cut);
    }

    #[test]
    fn a_long_line_is_cut_at_a_character_boundary() {
        let ring = LogRing::new(2);
        ring.push(line(0, &"接".repeat(1000)));
        let (lines, _) = ring.recent(None, 1);
        assert!(lines[0].text.len() <= MAX_LOG_LINE_BYTES);
        assert!(lines[0].text.ends_with('…'));
    }

    #[test]
    fn the_layer_records_message_and_fields() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let ring = LogRing::new(10);
        let subscriber = tracing_subscriber::registry().with(ring.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(attempt = 3, "link to the broker lost");
        });
        let (lines, _) = ring.recent(None, 10);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].level, "WARN");
        assert_eq!(lines[0].text, "link to the broker lost attempt=3");
    }
}
