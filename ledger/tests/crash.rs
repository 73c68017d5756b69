//! Crash test: a child process commits in a loop and prints every
//! acknowledged transfer id; it is killed with SIGKILL at random moments,
//! many times, on the same data directory (with tiny segments and frequent
//! checkpoints, so kills land during rotation and checkpointing too). After
//! each kill the ledger reopens, every acknowledged transfer is there and the
//! invariants hold.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ledger::*;

const CYCLES: usize = 12;

#[test]
fn every_acknowledged_transfer_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut acked_total: HashSet<u128> = HashSet::new();
    for cycle in 0..CYCLES {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-stress"))
            .args(["--data", dir.path().to_str().unwrap(), "--clients", "4"])
            .args([
                "--segment-size-max-bytes",
                "65536",
                "--checkpoint-interval-bytes",
                "131072",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ledger-stress starts");
        let stdout = child.stdout.take().unwrap();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let acked = acked.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // A line cut by the kill has no parseable id: skip it.
                    if let Some(id) = line
                        .strip_prefix("ack ")
                        .and_then(|s| s.parse::<u128>().ok())
                    {
                        acked.lock().unwrap().push(id);
                    }
                }
            })
        };
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Kill at a random moment: sometimes during start-up and recovery,
        // mostly while committing.
        let wait_ms = if cycle % 4 == 0 {
            seed % 40
        } else {
            200 + seed % 500
        };
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        reader.join().unwrap();
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        eprintln!(
            "cycle {cycle}: killed after {:?}, {} acknowledged",
            started.elapsed(),
            acked.len()
        );
        acked_total.extend(acked);

        let o = open_at(dir.path(), Arc::new(ManualClock::new(u64::MAX / 2)));
        let missing: Vec<u128> = acked_total
            .iter()
            .copied()
            .filter(|id| o.ledger.lookup_transfer(*id).unwrap().is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "cycle {cycle}: {} acknowledged transfers lost, e.g. {:?} ({})",
            missing.len(),
            &missing[..missing.len().min(5)],
            o.report
        );
        assert_clean(&o.ledger);
        o.ledger.close().unwrap();
    }
    assert!(
        acked_total.len() > 1000,
        "the child committed too little to mean anything: {}",
        acked_total.len()
    );
}
