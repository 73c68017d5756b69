//! The README's first set-up command, `cargo run --release -p switch`,
//! must pick the server among the package's binaries.

#[test]
fn cargo_run_dash_p_switch_runs_the_server() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let text = std::fs::read_to_string(manifest).unwrap();
    let default_run = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("default-run = "))
        .expect("a default-run key");
    assert_eq!(default_run.trim_matches('"'), "switch");
    // And the binary answers as the server does.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switch"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("check"),
        "switch --help lists its commands"
    );
}
