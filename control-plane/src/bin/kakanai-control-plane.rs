//! `kakanai-control-plane` — the control plane's command line (in progress).
fn main() {
    eprintln!("kakanai-control-plane: no subcommands yet");
    std::process::exit(2);
}
