//! pcscd + vpcd self-test with the `pcsc` crate (libpcsclite), an independent client.

// Helper functions outside #[test] panic on failure too, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::ffi::CString;

use kakanai_test_peers::{port_accepts, Pcscd};

fn reader_names() -> Vec<String> {
    let ctx = pcsc::Context::establish(pcsc::Scope::System).unwrap();
    let mut buf = vec![0u8; 4096];
    ctx.list_readers(&mut buf)
        .unwrap()
        .map(|r| r.to_str().unwrap().to_string())
        .collect()
}

#[test]
fn vpcd_readers_are_listed_and_daemon_restarts() {
    for round in 0..2 {
        let pcscd = Pcscd::start().unwrap();
        let names = reader_names();
        assert_eq!(pcscd.reader_name(0), "Virtual PCD 00 00");
        assert_eq!(pcscd.reader_name(1), "Virtual PCD 00 01");
        assert!(
            names.contains(&pcscd.reader_name(0)),
            "round {round}: {names:?}"
        );
        assert!(
            names.contains(&pcscd.reader_name(1)),
            "round {round}: {names:?}"
        );
        assert_eq!(pcscd.vpcd_port(1), pcscd.vpcd_port(0) + 1);

        // No card attached: the reader reports an empty slot.
        let ctx = pcsc::Context::establish(pcsc::Scope::System).unwrap();
        let name = CString::new(pcscd.reader_name(0)).unwrap();
        let mut states = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
        ctx.get_status_change(std::time::Duration::from_secs(5), &mut states)
            .unwrap();
        assert!(states[0].event_state().contains(pcsc::State::EMPTY));

        let port = pcscd.vpcd_port(0);
        drop(pcscd);
        assert!(!port_accepts(port), "vpcd still listening after drop");
        assert!(!port_accepts(port + 1));
    }
}

/// Threads of one process (plain `cargo test`) and other test processes (nextest) take
/// turns: each start gets its own daemon with both readers.
#[test]
fn concurrent_starts_take_turns() {
    let threads: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                let pcscd = Pcscd::start().unwrap();
                let names = reader_names();
                assert!(names.contains(&pcscd.reader_name(0)), "{names:?}");
                assert!(names.contains(&pcscd.reader_name(1)), "{names:?}");
                // Hold the daemon a moment so the other start really has to wait.
                std::thread::sleep(std::time::Duration::from_millis(200));
                assert!(reader_names().contains(&pcscd.reader_name(0)));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
