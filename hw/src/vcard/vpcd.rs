//! The vpcd client: a card "inserted" in pcscd's virtual reader is a TCP connection.
//!
//! Frames both ways are a 2-byte big-endian length and a payload. A 1-byte payload from
//! vpcd is control (`00` power off, `01` power on, `02` reset, `04` get ATR, answered with
//! the ATR); anything longer is a command APDU, answered with the response APDU.
//!
//! vpcd writes the length and the payload as two TCP writes, so a socket that delays its
//! ACKs stalls ~40 ms per APDU: `TCP_NODELAY` is set once and `TCP_QUICKACK` (which the
//! kernel clears again by itself) is re-armed before every read, with std's safe
//! `TcpStreamExt::set_quickack` on Linux.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{VcardError, VirtualCard};

/// vpcd's default port for slot 0 on 127.0.0.1.
pub const DEFAULT_VPCD_ADDR: &str = "127.0.0.1:35963";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between reconnection attempts while "inserted" but vpcd is unreachable.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

struct LinkState {
    inserted: bool,
    stop: bool,
    /// A clone of the live connection, so `remove()` can close it from any thread.
    live: Option<TcpStream>,
    /// Remove the card once `apdus` reaches this.
    remove_at: Option<u64>,
    connections: u64,
}

struct Shared {
    addr: SocketAddr,
    card: Mutex<VirtualCard>,
    state: Mutex<LinkState>,
    changed: Condvar,
    apdus: AtomicU64,
    label: String,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, LinkState> {
        // A panic elsewhere while holding the lock leaves plain flags behind: still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn card(&self) -> MutexGuard<'_, VirtualCard> {
        self.card.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A virtual card connected to vpcd, served on its own thread.
///
/// Dropping it removes the card and stops the thread.
pub struct VpcdLink {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for VpcdLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VpcdLink")
            .field("addr", &self.shared.addr)
            .field("label", &self.shared.label)
            .finish_non_exhaustive()
    }
}

impl VpcdLink {
    /// Connects `card` to vpcd at `addr` (the card is inserted) and serves it on a thread.
    ///
    /// The first connection is made before returning, so a vpcd that is not listening is
    /// an error here rather than a silent retry loop.
    pub fn connect(addr: impl ToSocketAddrs, card: VirtualCard) -> Result<Self, VcardError> {
        let addr = addr
            .to_socket_addrs()
            .map_err(|e| VcardError::Connect {
                addr: "(unresolved)".into(),
                source: e,
            })?
            .next()
            .ok_or_else(|| VcardError::Connect {
                addr: "(unresolved)".into(),
                source: io::Error::new(io::ErrorKind::NotFound, "no address"),
            })?;
        let first = open(addr).map_err(|source| VcardError::Connect {
            addr: addr.to_string(),
            source,
        })?;
        let label = card.label().to_owned();
        let shared = Arc::new(Shared {
            addr,
            card: Mutex::new(card),
            state: Mutex::new(LinkState {
                inserted: true,
                stop: false,
                live: first.try_clone().ok(),
                remove_at: None,
                connections: 1,
            }),
            changed: Condvar::new(),
            apdus: AtomicU64::new(0),
            label,
        });
        tracing::info!(card = %shared.label, %addr, "virtual card inserted");
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("kakanai-vcard".into())
            .spawn(move || run(&worker, Some(first)))
            .map_err(VcardError::Thread)?;
        Ok(VpcdLink {
            shared,
            thread: Some(thread),
        })
    }

    /// Inserts the card: (re)connects to vpcd. Returns at once; see
    /// [`wait_connected`](Self::wait_connected).
    pub fn insert(&self) {
        let mut state = self.shared.state();
        state.inserted = true;
        self.shared.changed.notify_all();
    }

    /// Removes the card: closes the connection now, so vpcd reports the card absent.
    pub fn remove(&self) {
        let mut state = self.shared.state();
        state.inserted = false;
        state.remove_at = None;
        if let Some(live) = state.live.take() {
            let _ = live.shutdown(Shutdown::Both);
        }
        self.shared.changed.notify_all();
    }

    /// Pulls the card out right after answering the `n`-th APDU from now (n ≥ 1), as if
    /// it left the reader in the middle of a read: the next APDU finds no card.
    pub fn remove_after_apdus(&self, n: u64) {
        let mut state = self.shared.state();
        state.remove_at = Some(self.shared.apdus.load(Ordering::SeqCst) + n.max(1));
    }

    /// Command APDUs received so far (over all connections).
    pub fn apdus_seen(&self) -> u64 {
        self.shared.apdus.load(Ordering::SeqCst)
    }

    /// TCP connections made so far (insertions that reached vpcd).
    pub fn connections(&self) -> u64 {
        self.shared.state().connections
    }

    /// Whether the card is in the reader right now.
    pub fn is_connected(&self) -> bool {
        self.shared.state().live.is_some()
    }

    /// Waits until the card is connected to vpcd (true) or the timeout passes (false).
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state();
        while state.live.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Runs `f` on the card model (e.g. to read retry counters in a test).
    pub fn with_card<R>(&self, f: impl FnOnce(&mut VirtualCard) -> R) -> R {
        f(&mut self.shared.card())
    }

    /// The vpcd address this link uses.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }
}

impl Drop for VpcdLink {
    fn drop(&mut self) {
        {
            let mut state = self.shared.state();
            state.stop = true;
        }
        self.remove();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The worker: wait to be inserted, connect, serve until the connection ends, repeat.
fn run(shared: &Shared, mut first: Option<TcpStream>) {
    loop {
        let stream = match first.take() {
            Some(s) => s,
            None => {
                {
                    let mut state = shared.state();
                    while !state.inserted && !state.stop {
                        state = shared
                            .changed
                            .wait(state)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                    if state.stop {
                        return;
                    }
                }
                match open(shared.addr) {
                    Ok(s) => {
                        let mut state = shared.state();
                        // remove() may have come while we were connecting.
                        if !state.inserted || state.stop {
                            continue;
                        }
                        state.live = s.try_clone().ok();
                        state.connections += 1;
                        shared.changed.notify_all();
                        tracing::info!(card = %shared.label, "virtual card inserted");
                        s
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "vpcd not reachable; retrying");
                        let state = shared.state();
                        let _ = shared.changed.wait_timeout(state, RETRY_PAUSE);
                        continue;
                    }
                }
            }
        };
        shared.changed.notify_all();
        let end = serve(shared, stream);
        // The card left the reader: no power, no security state.
        shared.card().power_off();
        let mut state = shared.state();
        state.live = None;
        shared.changed.notify_all();
        match end {
            Ok(()) => tracing::info!(card = %shared.label, "virtual card removed"),
            Err(e) if state.inserted && !state.stop => {
                tracing::warn!(card = %shared.label, error = %e, "vpcd connection lost");
                // Avoid a hot loop against a vpcd that accepts and drops at once.
                let _ = shared.changed.wait_timeout(state, RETRY_PAUSE);
            }
            Err(_) => tracing::info!(card = %shared.label, "virtual card removed"),
        }
    }
}

/// Serves one connection. `Ok` when the card was removed on purpose.
fn serve(shared: &Shared, mut stream: TcpStream) -> io::Result<()> {
    loop {
        let mut header = [0u8; 2];
        read_exact_quick(&mut stream, &mut header)?;
        let len = usize::from(u16::from_be_bytes(header));
        let mut payload = vec![0u8; len];
        read_exact_quick(&mut stream, &mut payload)?;
        match payload.as_slice() {
            [] => {}
            [0x00] => shared.card().power_off(),
            [0x01] => shared.card().power_on(),
            [0x02] => shared.card().reset(),
            [0x04] => {
                let atr = shared.card().atr().to_vec();
                write_frame(&mut stream, &atr)?;
            }
            [other] => tracing::debug!(control = other, "unknown vpcd control byte ignored"),
            apdu => {
                let response = shared.card().process_apdu(apdu);
                let seen = shared.apdus.fetch_add(1, Ordering::SeqCst) + 1;
                // INS and status only: data may be personal.
                tracing::debug!(
                    ins = apdu.get(1).copied().unwrap_or_default(),
                    sw = response
                        .get(response.len().saturating_sub(2)..)
                        .map(|s| s.iter().fold(0u16, |a, b| (a << 8) | u16::from(*b)))
                        .unwrap_or_default(),
                    len = response.len().saturating_sub(2),
                    "apdu"
                );
                write_frame(&mut stream, &response)?;
                let mut state = shared.state();
                if state.remove_at.is_some_and(|at| seen >= at) {
                    state.remove_at = None;
                    state.inserted = false;
                    state.live = None;
                    let _ = stream.shutdown(Shutdown::Both);
                    return Ok(());
                }
            }
        }
        let state = shared.state();
        if !state.inserted || state.stop {
            return Ok(());
        }
    }
}

fn read_exact_quick(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    rearm_quickack(stream);
    stream.read_exact(buf)
}

#[cfg(target_os = "linux")]
fn rearm_quickack(stream: &TcpStream) {
    use std::os::linux::net::TcpStreamExt;
    // Best effort: a failure only costs latency.
    let _ = stream.set_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn rearm_quickack(_stream: &TcpStream) {}

fn write_frame(stream: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
    // One write: length and payload in the same segment.
    let mut frame = Vec::with_capacity(payload.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)?;
    stream.flush()
}
