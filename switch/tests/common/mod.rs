//! Starting the real `switch` binary for tests that need a process.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(serde::Deserialize)]
pub struct Profile {
    pub id: String,
    pub switch: String,
    pub secret: String,
}

/// Start `switch serve` on `dir` with `config` (TOML) and `RUST_LOG` set to
/// `log_level`, its output to `dir/switch.log`; wait for the demo network.
/// Returns the process, tho-tang-1's profile, and an MB customer's account
/// and balance.
pub fn start(dir: &Path, config: &str, log_level: &str) -> (Child, Profile, String, u64) {
    start_apart(dir, dir, "127.0.0.1:0", config, log_level)
}

/// [`start`] with the data in `data` (the configuration and the log stay in
/// `dir`), on the address `listen`: a restart on the same data keeps the
/// address the profiles name.
pub fn start_apart(
    dir: &Path,
    data: &Path,
    listen: &str,
    config: &str,
    log_level: &str,
) -> (Child, Profile, String, u64) {
    let config_path = dir.join("switch.toml");
    std::fs::write(
        &config_path,
        // The console on a free port: tests run side by side.
        format!(
            "listen = \"{listen}\"\nmetrics_listen = \"127.0.0.1:0\"\nconsole_listen = \"127.0.0.1:0\"\n{config}"
        ),
    )
    .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("switch.log"))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_switch"))
        .args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--config",
            config_path.to_str().unwrap(),
        ])
        .env("RUST_LOG", log_level)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let profile_path = data.join("profiles/tho-tang-1.toml");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !profile_path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the switch never provisioned"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Profiles are written before the server listens; give it a moment.
    std::thread::sleep(Duration::from_millis(200));
    let profile: Profile =
        toml::from_str(&std::fs::read_to_string(&profile_path).unwrap()).unwrap();
    let customers: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(data.join("profiles/customers.json")).unwrap(),
    )
    .unwrap();
    let c = customers
        .iter()
        .find(|c| c["bank"] == "970422" && c["balance"].as_u64().unwrap() >= 10_000_000)
        .unwrap();
    (
        child,
        profile,
        c["account"].as_str().unwrap().to_string(),
        c["balance"].as_u64().unwrap(),
    )
}
