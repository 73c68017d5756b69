//! Losing the PostgreSQL primary (#14): a primary with a synchronous
//! standby (`ops/postgres/cluster.sh`), a switch process on both hosts
//! (`target_session_attrs=read-write`), the default mix; the primary's
//! postmaster is SIGKILLed in the middle of the run and the standby
//! promoted a second later. The switch reconnects by itself and serves on;
//! every transaction a client saw acknowledged is on the promoted standby
//! with its status; nothing is left unfinished and the ledger balances.

mod process;

use std::process::Command;
use std::time::Duration;

fn primary_loss() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cluster = pgtest::Replicated::start(&dir.path().join("pg"));
    let (primary, standby) = (cluster.primary, cluster.standby);
    let url = format!(
        "host=127.0.0.1,127.0.0.1 port={primary},{standby} user=postgres dbname=switch target_session_attrs=read-write connect_timeout=2"
    );
    let data = dir.path().join("node");
    std::fs::create_dir_all(&data).expect("node folder");
    let (mut node, address) = process::start(&data, Some(&url));
    let target = || {
        loadtest::Target::from_profiles(&data.join("profiles"), std::slice::from_ref(&address))
            .expect("profiles")
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let record = dir.path().join("acked.jsonl");
    let load = runtime.spawn(loadtest::run(
        target(),
        process::load(Some(record.clone()), 9, Duration::from_secs(10)),
    ));
    std::thread::sleep(Duration::from_secs(3));
    let pid = cluster.primary_pid();
    let killed = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success(), "SIGKILL the primary ({pid})");
    std::thread::sleep(Duration::from_secs(1));
    cluster.promote();
    let report = runtime
        .block_on(load)
        .expect("the generator ran")
        .expect("a report");
    let acked = std::fs::read_to_string(&record)
        .expect("record")
        .lines()
        .count();
    eprintln!(
        "primary killed at 3 s, standby promoted at 4 s: {} completed, {} failed ({})",
        report["completed"], report["failed"], report["errors"]
    );
    assert!(acked > 0, "nothing was acknowledged");

    // The switch serves on the promoted standby (without bills: the bills
    // held by payments the failover interrupted stay claimed, refused as
    // bill_already_paid, until those payments are finished), every
    // acknowledged transaction is on it, and what the failover interrupted
    // is finished (the node holds the worker lease).
    let left = process::serves_on_and_loses_nothing(
        &runtime,
        target,
        "cash_in=40,cash_out=20,qr=20",
        &record,
        &url,
        &data.join("master.key"),
    );
    eprintln!("the failover left {left} transactions unfinished");
    node.kill().expect("stop the node");
    node.wait().expect("reaped");
    eprintln!("primary loss: {acked} acknowledged transactions intact");
}

fn main() {
    if process::serve_if_asked() || process::listing("primary_loss") {
        return;
    }
    primary_loss();
    println!("test primary_loss ... ok");
}
