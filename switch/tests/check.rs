//! `switch check` on a stopped switch's data: JSON out, exit 0 when the
//! ledger is sound, non-zero (naming the damage) when it is not.

use std::process::Command;

fn check(dir: &std::path::Path) -> (bool, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_switch"))
        .args(["check", "--data", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check prints one JSON object ({e}); it exited with {} and wrote to stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

#[test]
fn check_passes_sound_data_and_fails_damaged_data() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = switch::Config {
            data_dir: dir.path().to_path_buf(),
            ..switch::Config::default()
        };
        let opened = switch::server::open(config, "127.0.0.1:1".parse().unwrap())
            .await
            .unwrap();
        let switch = opened.switch;
        switch.store.durable().await.unwrap();
    });
    drop(runtime);
    let (ok, report) = check(dir.path());
    assert!(ok, "{report}");
    assert_eq!(report["ok"], true);
    assert!(
        report["accounts"].as_u64().unwrap() > 20,
        "the demo network's accounts: {report}"
    );
    assert_eq!(report["violations"], serde_json::json!([]));

    // Damage the journal in its first record: everything after it is lost,
    // and check says so.
    let journal = dir.path().join("ledger/journal");
    let segment = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "journal"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let (ok, report) = check(dir.path());
    assert!(!ok, "{report}");
    assert!(
        report["violations"][0]
            .as_str()
            .unwrap()
            .contains("journal damage"),
        "{report}"
    );
}

/// A missing directory, or one that holds no ledger, is named as such and
/// fails; check never creates it and calls it clean.
#[test]
fn check_refuses_a_directory_that_is_not_a_switchs_data() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-data");
    let (ok, report) = check(&missing);
    assert!(!ok, "{report}");
    assert_eq!(report["ok"], false);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .ends_with("does not exist"),
        "{report}"
    );
    assert!(!missing.exists(), "check made the directory");

    let (ok, report) = check(dir.path());
    assert!(!ok, "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("holds no ledger"),
        "{report}"
    );
    assert!(!dir.path().join("ledger").exists(), "check made a ledger");
}
