//! The Debian package's declaration (`[package.metadata.deb]` in Cargo.toml), checked
//! without building the package (that takes minutes: `scripts/package`): every
//! asset it ships exists, the systemd unit runs the binary where the package puts
//! it, as the user and group the maintainer script creates, restarts on the exit
//! code of a restart on command, and keeps its state where the package and the
//! example configuration put it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kakanai_appliance::ops::RESTART_EXIT_CODE;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deb() -> toml::Table {
    let text = std::fs::read_to_string(crate_dir().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb] in appliance/Cargo.toml")
        .clone()
}

/// (source, destination, mode) of every asset.
fn assets(deb: &toml::Table) -> Vec<(String, String, String)> {
    deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            let s = |i: usize| a[i].as_str().unwrap().to_owned();
            (s(0), s(1), s(2))
        })
        .collect()
}

/// Where an asset lands: a destination ending in `/` is a directory.
fn installed_path(source: &str, destination: &str) -> String {
    let name = Path::new(source).file_name().unwrap().to_str().unwrap();
    if destination.ends_with('/') {
        format!("/{destination}{name}")
    } else {
        format!("/{destination}")
    }
}

/// The unit's `[Service]` settings (the last value of a key wins, as in systemd).
fn unit(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut section = String::new();
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.insert(format!("{section}{}", k.trim()), v.trim().to_owned());
        }
    }
    out
}

#[test]
fn every_asset_exists_and_the_binary_is_the_one_cargo_builds() {
    let deb = deb();
    let assets = assets(&deb);
    assert!(!assets.is_empty());
    for (source, destination, mode) in &assets {
        assert!(
            u32::from_str_radix(mode, 8).is_ok_and(|m| m <= 0o755),
            "{source}: mode {mode}"
        );
        assert!(
            !destination.starts_with('/'),
            "{destination}: relative to /"
        );
        if let Some(binary) = source.strip_prefix("target/release/") {
            // Built by cargo-deb: it must be a binary of this crate.
            let built = Path::new(env!("CARGO_BIN_EXE_kakanai-appliance"));
            assert_eq!(binary, built.file_name().unwrap().to_str().unwrap());
            assert_eq!(mode, "755");
        } else {
            assert!(crate_dir().join(source).is_file(), "{source} is missing");
        }
    }
    // The example configuration is one the daemon reads (field names checked by the
    // config module's tests); here: it is shipped beside the real file's place.
    let example = assets
        .iter()
        .find(|(s, _, _)| s.ends_with("appliance.example.toml"))
        .expect("the example configuration is shipped");
    assert_eq!(
        installed_path(&example.0, &example.1),
        "/etc/kakanai/appliance.toml.example"
    );
}

#[test]
fn the_unit_runs_the_packaged_binary_as_the_user_the_package_creates() {
    let deb = deb();
    let units = deb["systemd-units"].as_table().unwrap();
    let unit_dir = crate_dir().join(units["unit-scripts"].as_str().unwrap());
    let name = units["unit-name"].as_str().unwrap();
    assert_eq!(units["enable"].as_bool(), Some(true), "enabled on install");
    assert_eq!(
        units["start"].as_bool(),
        Some(false),
        "not started on install: it needs a configuration first"
    );
    let unit_file = unit_dir.join(format!("{name}.service"));
    assert!(unit_file.is_file(), "{} is missing", unit_file.display());
    let unit = unit(&unit_file);
    let get = |k: &str| {
        unit.get(&format!("[Service]{k}"))
            .unwrap_or_else(|| panic!("{k}= missing"))
            .clone()
    };

    // The binary where the package installs it.
    let binary = assets(&deb)
        .into_iter()
        .find(|(s, _, _)| s.starts_with("target/release/"))
        .map(|(s, d, _)| installed_path(&s, &d))
        .unwrap();
    let exec = get("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some(binary.as_str()), "{exec}");
    // Its configuration is the file the example sits beside.
    assert_eq!(words.next(), Some("--config"));
    assert_eq!(words.next(), Some("/etc/kakanai/appliance.toml"));

    // The user and group the unit runs as are made by postinst, which also keeps
    // cargo-deb's systemd snippet.
    let scripts = crate_dir().join(deb["maintainer-scripts"].as_str().unwrap());
    let postinst_path = scripts.join("postinst");
    let postinst = std::fs::read_to_string(&postinst_path).unwrap();
    let user = get("User");
    let group = get("Group");
    assert!(
        postinst.contains(&format!("groupadd --system {group}")),
        "postinst makes group {group}"
    );
    assert!(
        postinst.contains("useradd --system") && postinst.contains(&format!(" {user}\n")),
        "postinst makes user {user}"
    );
    assert!(postinst.contains(&format!("--gid {group}")));
    assert!(postinst.contains("#DEBHELPER#"));
    let mode = std::fs::metadata(&postinst_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "postinst is executable");
    let syntax = Command::new("sh")
        .arg("-n")
        .arg(&postinst_path)
        .status()
        .unwrap();
    assert!(syntax.success(), "postinst is valid sh");

    // State: the directory postinst makes, systemd's StateDirectory, the writable
    // path, and the store path of the example configuration are one place.
    let state = format!("/var/lib/{}", get("StateDirectory"));
    assert!(postinst.contains(&format!("-o {user} -g {group} -m 0700 {state}")));
    assert_eq!(get("ReadWritePaths"), state);
    let example: toml::Table =
        toml::from_str(include_str!("../ops/appliance.example.toml")).unwrap();
    let store = example["store"]["path"].as_str().unwrap();
    assert!(store.starts_with(&format!("{state}/")), "{store}");

    // A restart on the control plane's command is started again.
    assert_eq!(get("Restart"), "always");
    assert!(get("RestartForceExitStatus")
        .split_whitespace()
        .any(|c| c == RESTART_EXIT_CODE.to_string()));
}
