//! Losing a node (#14): two switch processes on one PostgreSQL, the
//! default mix spread over both, one SIGKILLed in the middle of the run.
//! The other keeps serving; every transaction a client saw acknowledged is
//! there with its status; what the dead node left unfinished is finished
//! or reversed by the survivor (the holder of the worker lease, once a
//! record is older than its reservation's timeout); no reservation is left
//! and the ledger balances.

mod process;

use std::time::Duration;

fn node_loss() {
    let pg = pgtest::Cluster::start();
    let url = pg.url("switch");
    let (a_dir, b_dir, out) = (
        tempfile::tempdir().expect("node A's folder"),
        tempfile::tempdir().expect("node B's folder"),
        tempfile::tempdir().expect("the records' folder"),
    );
    // A provisions the demo network (and writes the profiles); B finds it.
    let (mut a, a_address) = process::start(a_dir.path(), Some(&url));
    // Every node sharing a store seals secrets with the same master key.
    std::fs::copy(
        a_dir.path().join("master.key"),
        b_dir.path().join("master.key"),
    )
    .expect("master key copied");
    let (mut b, b_address) = process::start(b_dir.path(), Some(&url));
    let profiles = a_dir.path().join("profiles");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    let record = out.path().join("acked.jsonl");
    let both = loadtest::Target::from_profiles(&profiles, &[a_address, b_address.clone()])
        .expect("profiles");
    // The default mix: a merchant watching on A moves its stream to B when
    // A dies, and hears there what either node completed.
    let options = process::load(Some(record.clone()), 7, Duration::from_secs(6));
    let load = runtime.spawn(loadtest::run(both, options));
    std::thread::sleep(Duration::from_secs(2));
    a.kill().expect("SIGKILL node A");
    a.wait().expect("reaped");
    let report = runtime
        .block_on(load)
        .expect("the generator ran")
        .expect("a report");
    let acked = std::fs::read_to_string(&record)
        .expect("record")
        .lines()
        .count();
    eprintln!(
        "over both nodes, A killed after 2 s: {} completed, {} failed ({})",
        report["completed"], report["failed"], report["errors"]
    );
    assert!(acked > 0, "nothing was acknowledged before the kill");

    let only_b = || {
        loadtest::Target::from_profiles(&profiles, std::slice::from_ref(&b_address))
            .expect("profiles")
    };
    // B serves on (without bills: the bills A's unfinished payments hold
    // stay claimed, refused as bill_already_paid, until the survivor
    // finishes those payments), everything acknowledged through either
    // node reads back from B, and B finishes what A left.
    let left = process::serves_on_and_loses_nothing(
        &runtime,
        only_b,
        "cash_in=60,cash_out=40",
        &record,
        &url,
        &a_dir.path().join("master.key"),
    );
    eprintln!("A left {left} transactions unfinished (cash-outs awaiting confirmation among them)");
    b.kill().expect("stop node B");
    b.wait().expect("reaped");
    let log = std::fs::read_to_string(b_dir.path().join("switch.log")).unwrap_or_default();
    let taken_over = log
        .lines()
        .filter(|l| l.contains("finished transactions a node left unfinished"))
        .count();
    eprintln!(
        "node loss: {acked} acknowledged transactions intact; the survivor took over in {taken_over} passes"
    );
}

fn main() {
    if process::serve_if_asked() || process::listing("node_loss") {
        return;
    }
    node_loss();
    println!("test node_loss ... ok");
}
