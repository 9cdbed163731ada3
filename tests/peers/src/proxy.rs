//! A fault-injecting TCP proxy for link tests: forwards `127.0.0.1:port()` to a
//! target, and on command cuts every connection (a network cut: peers see resets),
//! refuses new ones while down, or silently stops forwarding while keeping the
//! sockets open (a half-open connection, as after a router reboot).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::{PeerError, Result};

const PASS: u8 = 0;
const CUT: u8 = 1;
const BLACKHOLE: u8 = 2;

/// A running proxy; stops forwarding and closes everything on drop.
#[derive(Debug)]
pub struct TcpProxy {
    port: u16,
    mode: Arc<AtomicU8>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicU8>,
}

impl TcpProxy {
    /// Starts forwarding a free local port to `target`.
    pub fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| PeerError::io("binding the proxy".into(), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| PeerError::io("proxy address".into(), e))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(|e| PeerError::io("proxy listener".into(), e))?;
        let mode = Arc::new(AtomicU8::new(PASS));
        let stop = Arc::new(AtomicU8::new(0));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (m, s, c) = (Arc::clone(&mode), Arc::clone(&stop), Arc::clone(&conns));
        thread::spawn(move || accept_loop(listener, target, m, s, c));
        Ok(Self {
            port,
            mode,
            conns,
            stop,
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts the network: resets every connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.store(CUT, Ordering::SeqCst);
        self.close_all();
    }

    /// Keeps connections open but forwards nothing (half-open); new connections
    /// are accepted and hang.
    pub fn blackhole(&self) {
        self.mode.store(BLACKHOLE, Ordering::SeqCst);
    }

    /// Back to normal forwarding for new connections (connections that were
    /// black-holed are closed: their streams have lost bytes).
    pub fn restore(&self) {
        if self.mode.swap(PASS, Ordering::SeqCst) == BLACKHOLE {
            self.close_all();
        }
    }

    fn close_all(&self) {
        let mut conns = self
            .conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for c in conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(1, Ordering::SeqCst);
        self.close_all();
    }
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicU8>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
) {
    while stop.load(Ordering::SeqCst) == 0 {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(_) => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if mode.load(Ordering::SeqCst) == CUT {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect(target) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let pairs = [
            (client.try_clone(), server.try_clone()),
            (server.try_clone(), client.try_clone()),
        ];
        if let Ok(mut list) = conns.lock() {
            list.extend(client.try_clone().ok());
            list.extend(server.try_clone().ok());
        }
        for pair in pairs {
            if let (Ok(from), Ok(to)) = pair {
                let m = Arc::clone(&mode);
                thread::spawn(move || pump(from, to, m));
            }
        }
    }
}

/// Copies bytes one way; in black-hole mode reads and drops them.
fn pump(mut from: TcpStream, mut to: TcpStream, mode: Arc<AtomicU8>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match mode.load(Ordering::SeqCst) {
            BLACKHOLE => continue,
            CUT => break,
            _ => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
