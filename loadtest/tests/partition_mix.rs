//! A node cut from PostgreSQL under the default mix (issue #31, scenario
//! 1 as the issue words it): two switch processes and PostgreSQL, each in
//! a network namespace of its own on one segment (`switch/tests/
//! partition`), the load generator spreading the default mix (cash-in,
//! cash-out, bills, merchant QR with its notification) over both nodes.
//! Node A is cut from PostgreSQL (nftables in A's namespace) for 12 s
//! while its clients still reach it, then healed. A refuses promptly with
//! a clear status while cut, B serves meanwhile, and afterwards the
//! history check holds: every transaction a client saw acknowledged reads
//! back with its status, both nodes serve the mix again, what the cut
//! interrupted is finished (nothing unfinished, no reversal queued, no
//! reservation left; the ledger's invariants hold), and the window's nets
//! sum to zero.
//!
//! Needs root, `ip` and `nft`; fails, with the reason, where it cannot
//! make its network.

#[path = "../../switch/tests/partition/mod.rs"]
mod partition;
mod process;

use std::time::{Duration, Instant};

use partition::{Lan, close_the_window};

/// How long A is cut from PostgreSQL.
const CUT_S: u64 = 12;

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn partition_mix() {
    fn network<T>(e: String) -> T {
        panic!("cannot make the test's network: {e}")
    }
    let lan = Lan::new().unwrap_or_else(network);
    let (a_ns, b_ns, pg_ns) = (
        lan.member().unwrap_or_else(network),
        lan.member().unwrap_or_else(network),
        lan.member().unwrap_or_else(network),
    );
    let pg = pgtest::Cluster::start_at(&Lan::placement(&pg_ns), &[]);
    let url = pg.url("switch");
    let (a_dir, b_dir, out) = (
        tempfile::tempdir().expect("node A's folder"),
        tempfile::tempdir().expect("node B's folder"),
        tempfile::tempdir().expect("the records' folder"),
    );
    let (mut a, a_address) =
        process::start_in(a_dir.path(), Some(&url), Some((&a_ns.name, a_ns.inside)));
    std::fs::copy(
        a_dir.path().join("master.key"),
        b_dir.path().join("master.key"),
    )
    .expect("master key copied");
    let (mut b, b_address) =
        process::start_in(b_dir.path(), Some(&url), Some((&b_ns.name, b_ns.inside)));
    let profiles = a_dir.path().join("profiles");
    let both = || {
        loadtest::Target::from_profiles(&profiles, &[a_address.clone(), b_address.clone()])
            .expect("profiles")
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    let record = out.path().join("acked.jsonl");
    let options = process::load(Some(record.clone()), 31, Duration::from_secs(CUT_S + 16));
    let load = runtime.spawn(loadtest::run(both(), options));
    std::thread::sleep(Duration::from_secs(6));
    let before = lines(&record);
    a_ns.nft(&format!(
        "add rule inet fault output ip daddr {0} drop\nadd rule inet fault input ip saddr {0} drop",
        pg_ns.inside
    ))
    .expect("cut A from PostgreSQL");
    let cut = Instant::now();
    std::thread::sleep(Duration::from_secs(CUT_S));
    let during = lines(&record) - before;
    a_ns.heal();
    let report = runtime
        .block_on(load)
        .expect("the generator ran")
        .expect("a report");
    let acked = lines(&record);
    eprintln!(
        "default mix over A and B, A cut from PostgreSQL for {} s: {acked} acknowledged ({before} before the cut, {during} while cut), {} completed, {} failed; errors {}",
        cut.elapsed().min(Duration::from_secs(CUT_S)).as_secs(),
        report["completed"],
        report["failed"],
        report["errors"]
    );
    assert!(before > 0, "nothing was acknowledged before the cut");
    assert!(
        during > 0,
        "nothing was acknowledged while A was cut (B serves)"
    );
    // A refused while cut with a clear status (what it had in flight at the
    // cut waits for its link's timeout instead).
    let errors = report["errors"].to_string();
    assert!(
        errors.contains("navailable"),
        "A refused nothing as unavailable while cut: {errors}"
    );

    // Both nodes serve the mix again (bills aside: a bill whose payment the
    // cut interrupted stays claimed until that payment is finished), every
    // acknowledged transaction reads back with its status, and what the
    // cut interrupted is finished.
    let left = process::serves_on_and_loses_nothing(
        &runtime,
        both,
        "cash_in=40,cash_out=20,qr=20",
        &record,
        &url,
        &a_dir.path().join("master.key"),
    );
    let operator = both().operator;
    runtime.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(b_address.clone())
            .expect("B's address")
            .connect()
            .await
            .expect("B answers");
        close_the_window(&ch, &operator).await;
    });
    eprintln!(
        "the cut left {left} transactions unfinished, all finished since; {acked} acknowledged transactions intact; the window's nets sum to zero"
    );
    for node in [&mut a, &mut b] {
        node.kill().expect("stop a node");
        node.wait().expect("reaped");
    }
    // What a human must look at, from either node.
    for (name, dir) in [("A", &a_dir), ("B", &b_dir)] {
        let log = std::fs::read_to_string(dir.path().join("switch.log")).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("ERROR")).take(20) {
            eprintln!("{name}: {line}");
        }
    }
}

fn main() {
    if process::serve_if_asked() || process::listing("partition_mix") {
        return;
    }
    partition_mix();
    println!("test partition_mix ... ok");
}
