//! `kakanai-demo` — the whole counter on this machine, for `scripts/demo`: the control
//! plane on its embedded defaults (in-process broker, SQLite) with the synthetic
//! reference city, one appliance with the virtual card reader (pcscd + vpcd and a demo
//! resident's virtual card), `ippeveprinter` and a pty scanner. Prints the tablet and
//! admin URLs and the demo accounts, then reads commands (`card NAME`, `remove`,
//! `scan CODE`, `quit`) until Ctrl-C or end of input, and stops everything cleanly.
//!
//! ```text
//! kakanai-demo [--residents N] [--seed N] [--admin-port P] [--tablet-port P] [--lan]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use kakanai_tests::stack::{self, Broker, Stack, StackOptions};

fn usage() -> ExitCode {
    eprintln!(
        "usage: kakanai-demo [--residents N] [--seed N] [--admin-port P] [--tablet-port P] [--lan] [--slow-printer]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    let mut opts = StackOptions::new(bin_dir);
    opts.broker = Broker::Embedded;
    opts.residents = 157_508;
    opts.admin_port = 8090;
    opts.tablet_port = 8080;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = |what: &str| -> Option<u64> {
            let v = args.next().and_then(|v| v.parse().ok());
            if v.is_none() {
                eprintln!("kakanai-demo: {what} needs a number");
            }
            v
        };
        match a.as_str() {
            "--residents" => match number("--residents") {
                Some(n) => opts.residents = n as usize,
                None => return usage(),
            },
            "--seed" => match number("--seed") {
                Some(n) => opts.seed = n,
                None => return usage(),
            },
            "--admin-port" => match number("--admin-port").and_then(|n| u16::try_from(n).ok()) {
                Some(n) => opts.admin_port = n,
                None => return usage(),
            },
            "--tablet-port" => match number("--tablet-port").and_then(|n| u16::try_from(n).ok()) {
                Some(n) => opts.tablet_port = n,
                None => return usage(),
            },
            "--lan" => opts.tablet_on_lan = true,
            "--slow-printer" => opts.fast_printer = false,
            _ => return usage(),
        }
    }

    let mut progress = |step: &str| println!("==> {step}");
    let stack = match Stack::start(&opts, &mut progress) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kakanai-demo: {e:#}");
            return ExitCode::from(1);
        }
    };
    let card_note = match stack.insert_card(&stack.demo_card("resident")) {
        Ok(()) => "The demo resident's My Number card is on the reader.".to_owned(),
        Err(e) => format!("No card on the reader: {e:#}"),
    };
    println!(
        "\n\
         Kakanai is running (synthetic data only).\n\
         \n\
         Tablet (staff UI):  {tablet}\n\
         Admin UI:           {admin}\n\
         Counter staff:      {staff} / {staff_pw}\n\
         Administrator:      {admin_id} / {admin_pw}\n\
         Card PIN:           {pin} (every demo card)\n\
         \n\
         {card_note}\n\
         {readme}\n\
         Type here:\n\
         \x20 card resident        put the demo resident's card on the reader\n\
         \x20 card family-1 … 4    the cards of the family moving in (転入)\n\
         \x20 remove               take the card off the reader\n\
         \x20 scan NUMBER          the counter's scanner reads a form's code (the number printed under it)\n\
         \x20 quit                 stop (or Ctrl-C)\n\
         Printed PDFs: {spool}\n",
        tablet = stack.tablet_url(),
        admin = stack.admin_url(),
        staff = stack::STAFF_LOGIN,
        staff_pw = stack::STAFF_PASSWORD,
        admin_id = stack::ADMIN_LOGIN,
        admin_pw = stack::ADMIN_PASSWORD,
        pin = stack::DEMO_PIN,
        readme = stack.demo_readme(),
        spool = stack.printer().spool_dir().display(),
    );
    // Console lines come from a thread reading stdin; Ctrl-C, `quit` or the end of
    // input stop everything through the stack's guards (processes first, then the
    // temporary directory).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kakanai-demo: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                line = rx.recv() => {
                    let Some(line) = line else { break };
                    match stack::console_command(&stack, &line) {
                        Some(answer) if answer.is_empty() => {}
                        Some(answer) => println!("{answer}"),
                        None => break,
                    }
                }
            }
        }
    });
    println!("stopping…");
    drop(stack);
    ExitCode::SUCCESS
}
