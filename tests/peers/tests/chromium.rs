//! Chromium self-test: `--dump-dom` of a page served from a thread, and the DevTools
//! endpoint answering plain HTTP.

// Helper functions outside #[test] panic on failure too, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use kakanai_test_peers::{chromium_dump_dom, port_accepts, Chromium};

/// Serves `body` as HTML to every request until the returned port's test ends. Chromium
/// may ask for /favicon.ico too, so do not stop after one request.
fn serve(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            // Read the request head up to the blank line.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

/// A minimal HTTP/1.1 GET. The DevTools server keeps the connection open despite
/// `Connection: close`, so read exactly `Content-Length` bytes instead of to EOF.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
        head += &line;
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    head + &String::from_utf8(body).unwrap()
}

#[test]
fn dump_dom_returns_served_page() {
    let port = serve("<html><body><p id=\"x\">窓口の本日</p></body></html>");
    let dom = chromium_dump_dom(&format!("http://127.0.0.1:{port}/")).unwrap();
    assert!(dom.contains("<p id=\"x\">窓口の本日</p>"), "{dom}");
}

#[test]
fn devtools_answers_json_version() {
    let chromium = Chromium::start().unwrap();
    let port = chromium.devtools_port();
    assert!(chromium
        .ws_url()
        .starts_with(&format!("ws://127.0.0.1:{port}/devtools/browser/")));
    let response = http_get(port, "/json/version");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"Browser\""), "{response}");
    assert!(response.contains(&chromium.ws_url()), "{response}");

    let pid = chromium.pid();
    drop(chromium);
    assert!(!port_accepts(port), "devtools still listening after drop");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "browser not reaped"
    );
}
