//! The scanner's framing rules and backoff, without a device.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kakanai_hw::scanner::{
    Backoff, BackoffError, Content, FrameOutcome, Framer, FramingConfig, RejectReason, Terminator,
};

fn framer(configure: impl FnOnce(&mut FramingConfig)) -> Framer {
    let mut config = FramingConfig::default();
    configure(&mut config);
    Framer::new(config)
}

/// Feeds one byte at a time (the worst split) and describes the outcomes.
fn bytewise(framer: &mut Framer, input: &[u8]) -> Vec<FrameOutcome> {
    input.iter().flat_map(|b| framer.push(&[*b])).collect()
}

fn codes(outcomes: &[FrameOutcome]) -> Vec<Vec<u8>> {
    outcomes
        .iter()
        .map(|o| match o {
            FrameOutcome::Code(scan) => scan.data.clone(),
            FrameOutcome::Rejected(r) => format!("rejected: {r}").into_bytes(),
        })
        .collect()
}

#[test]
fn scanner_framing_any_terminator_accepts_cr_lf_and_crlf() {
    let mut f = framer(|_| {});
    let out = f.push(b"a\rb\nc\r\n\r\n\n\rd\r");
    assert_eq!(codes(&out), [&b"a"[..], b"b", b"c", b"d"]);
    assert_eq!(codes(&bytewise(&mut f, b"e\r\nf\r\n")), [&b"e"[..], b"f"]);
}

#[test]
fn scanner_framing_specific_terminators_treat_the_other_byte_as_garbage() {
    let mut f = framer(|c| c.terminator = Terminator::Cr);
    let out = f.push(b"a\rb\nc\r");
    assert_eq!(out.len(), 2);
    assert!(matches!(
        out[1],
        FrameOutcome::Rejected(RejectReason::ControlByte {
            byte: b'\n',
            offset: 1,
            len: 3
        })
    ));

    let mut f = framer(|c| c.terminator = Terminator::Lf);
    assert_eq!(codes(&f.push(b"a\nb\n")), [&b"a"[..], b"b"]);
    assert!(matches!(
        f.push(b"a\r\n")[..],
        [FrameOutcome::Rejected(RejectReason::ControlByte {
            byte: b'\r',
            ..
        })]
    ));

    let mut f = framer(|c| c.terminator = Terminator::CrLf);
    assert_eq!(codes(&bytewise(&mut f, b"a\r\nb\r\n")), [&b"a"[..], b"b"]);
    // A lone LF does not end the line; the line is then garbage.
    assert!(matches!(
        f.push(b"x\ny\r\n")[..],
        [FrameOutcome::Rejected(RejectReason::ControlByte {
            byte: b'\n',
            offset: 1,
            len: 3
        })]
    ));
}

#[test]
fn scanner_framing_length_limit_is_exact_for_every_terminator() {
    for terminator in [
        Terminator::Cr,
        Terminator::Lf,
        Terminator::CrLf,
        Terminator::Any,
    ] {
        let suffix: &[u8] = match terminator {
            Terminator::Cr => b"\r",
            Terminator::Lf => b"\n",
            Terminator::CrLf | Terminator::Any => b"\r\n",
        };
        let mut f = framer(|c| {
            c.terminator = terminator;
            c.max_len = 8;
        });
        let mut input = b"12345678".to_vec();
        input.extend_from_slice(suffix);
        input.extend_from_slice(b"123456789");
        input.extend_from_slice(suffix);
        input.extend_from_slice(b"ok");
        input.extend_from_slice(suffix);
        let out = bytewise(&mut f, &input);
        assert_eq!(
            codes(&out),
            [
                b"12345678".to_vec(),
                b"rejected: code too long: 9 bytes (at most 8)".to_vec(),
                b"ok".to_vec()
            ],
            "{terminator:?}"
        );
    }
}

#[test]
fn scanner_framing_buffers_at_most_the_limit() {
    let mut f = framer(|c| c.max_len = 16);
    for _ in 0..10_000 {
        assert!(f.push(&[b'z'; 100]).is_empty());
    }
    assert_eq!(
        f.push(b"\n"),
        [FrameOutcome::Rejected(RejectReason::Overlong {
            len: 1_000_000,
            max_len: 16
        })]
    );
}

#[test]
fn scanner_framing_content_modes() {
    let sjis = b"\x8e\x52\x93\x63"; // 山田 in Shift_JIS
    let mut text = framer(|_| {});
    assert!(matches!(
        text.push(&[&sjis[..], b"\r"].concat())[..],
        [FrameOutcome::Rejected(RejectReason::InvalidUtf8 {
            valid_up_to: 0,
            len: 4
        })]
    ));
    let mut bytes = framer(|c| c.content = Content::Bytes);
    assert_eq!(
        codes(&bytes.push(&[&sjis[..], b"\r"].concat())),
        [sjis.to_vec()]
    );
    // Control bytes stay garbage in byte mode, unless allowed (GS for GS1 codes).
    assert!(matches!(
        bytes.push(b"01\x1d10\r")[..],
        [FrameOutcome::Rejected(RejectReason::ControlByte {
            byte: 0x1d,
            offset: 2,
            ..
        })]
    ));
    let mut gs1 = framer(|c| c.allowed_controls.push(0x1d));
    assert_eq!(codes(&gs1.push(b"01\x1d10\r")), [b"01\x1d10".to_vec()]);
    // DEL counts as a control byte.
    assert!(matches!(
        text.push(b"a\x7f\r")[..],
        [FrameOutcome::Rejected(RejectReason::ControlByte {
            byte: 0x7f,
            ..
        })]
    ));
}

#[test]
fn scanner_framing_aim_prefix_only_when_configured() {
    let mut off = framer(|_| {});
    assert_eq!(codes(&off.push(b"]Q1abc\r")), [b"]Q1abc".to_vec()]);
    let mut on = framer(|c| c.aim_prefix = true);
    // Too short or malformed to be an identifier: kept as data.
    assert_eq!(
        codes(&on.push(b"]Q\r]\x41!x\r")),
        [b"]Q".to_vec(), b"]A!x".to_vec()]
    );
    // An identifier alone is an empty code, delivered as such.
    assert_eq!(codes(&on.push(b"]Q1\r")), [Vec::<u8>::new()]);
}

#[test]
fn scanner_framing_reset_reports_a_partial_line() {
    let mut f = framer(|c| c.max_len = 4);
    assert_eq!(f.reset(), None);
    f.push(b"ab");
    assert_eq!(
        f.reset(),
        Some(FrameOutcome::Rejected(RejectReason::Incomplete { len: 2 }))
    );
    f.push(b"abcdefg");
    assert_eq!(
        f.reset(),
        Some(FrameOutcome::Rejected(RejectReason::Incomplete { len: 7 }))
    );
    assert_eq!(codes(&f.push(b"ok\r")), [b"ok".to_vec()]);
}

#[test]
fn scanner_backoff_doubles_up_to_the_cap_with_bounded_jitter() {
    let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 0.5).unwrap();
    let ms = |d: Duration| d.as_millis();
    assert_eq!(ms(b.delay_with(0, 0.0)), 100);
    assert_eq!(ms(b.delay_with(1, 0.0)), 200);
    assert_eq!(ms(b.delay_with(3, 0.0)), 800);
    assert_eq!(ms(b.delay_with(4, 0.0)), 1000);
    assert_eq!(ms(b.delay_with(u32::MAX, 0.0)), 1000);
    assert_eq!(ms(b.delay_with(0, 1.0)), 50);
    assert_eq!(ms(b.delay_with(0, f64::NAN)), 100);
    for attempt in 0..40 {
        let d = b.delay(attempt);
        let cap = b.delay_with(attempt, 0.0);
        assert!(d <= cap && d >= cap / 2, "{attempt}: {d:?}");
    }
}

#[test]
fn scanner_backoff_is_validated() {
    let s = Duration::from_secs(1);
    assert_eq!(
        Backoff::new(Duration::ZERO, s, 0.1),
        Err(BackoffError::ZeroInitial)
    );
    assert!(matches!(
        Backoff::new(s, s / 2, 0.1),
        Err(BackoffError::MaxBelowInitial { .. })
    ));
    assert!(matches!(
        Backoff::new(s, s, 1.5),
        Err(BackoffError::Jitter(_))
    ));
    assert!(matches!(
        Backoff::new(s, s, f64::NAN),
        Err(BackoffError::Jitter(_))
    ));
    assert!(Backoff::new(s, s, 0.0).is_ok());
}
