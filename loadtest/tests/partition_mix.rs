//! Network partitions under the default mix (issue #31): the load
//! generator spreads the default mix (cash-in, cash-out, bills, merchant
//! QR with its notification) over switch processes that run, like
//! PostgreSQL and its standby, each in a network namespace of its own on
//! one segment (`switch/tests/partition`). Every scenario ends with the
//! history check: every transaction a client saw acknowledged reads back
//! with its status, the nodes serve the mix again, what the fault
//! interrupted is finished (nothing unfinished, no reversal queued, no
//! reservation left; the ledger's invariants hold), and the window's nets
//! sum to zero.
//!
//! 1. A node cut from PostgreSQL for 12 s while its clients still reach
//!    it (nftables in its namespace): it refuses promptly with a clear
//!    status, the other node serves meanwhile.
//! 2. The worker-lease holder cut from PostgreSQL: it gives the lease up
//!    before the other node takes it, and does not take it back.
//! 3. Primary and synchronous standby cut apart: nothing is acknowledged
//!    while cut; the primary is then lost and the standby promoted, and
//!    nothing acknowledged is missing.
//!
//! `switch/tests/partitions.rs` holds the scenarios with remote parties
//! (a bank and a biller behind faults) and with retries by hand.
//!
//! Needs root, `ip` and `nft`; fails, with the reason, where it cannot
//! make its network.

#[path = "../../switch/tests/partition/mod.rs"]
mod partition;
mod process;

use std::time::{Duration, Instant};

use partition::{FaultProxy, Lan, Netns, close_the_window};
use proto::v1 as pb;

/// How long A is cut from PostgreSQL.
const CUT_S: u64 = 12;

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Close the open window through `address` as the operator of `target`:
/// refused unless its nets sum to zero.
fn close_window(runtime: &tokio::runtime::Runtime, address: &str, target: loadtest::Target) {
    runtime.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(address.to_string())
            .expect("an address")
            .connect()
            .await
            .expect("the node answers");
        close_the_window(&ch, &target.operator).await;
    });
}

/// What a human must look at, from a node's log.
fn errors_logged(name: &str, data: &std::path::Path) {
    let log = std::fs::read_to_string(data.join("switch.log")).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("ERROR")).take(20) {
        eprintln!("{name}: {line}");
    }
}

/// How long after `since` a line holding `what` first showed in the log
/// in `data` (polled every 100 ms, for at most `within`).
fn logged(
    data: &std::path::Path,
    what: &str,
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    while since.elapsed() < within {
        let log = std::fs::read_to_string(data.join("switch.log")).unwrap_or_default();
        if log.contains(what) {
            return Some(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Cut `ns` from the host at `to`, both ways.
fn cut(ns: &Netns, to: std::net::Ipv4Addr) {
    ns.nft(&format!(
        "add rule inet fault output ip daddr {to} drop\nadd rule inet fault input ip saddr {to} drop"
    ))
    .expect("a cut");
}

/// Two switch processes on one PostgreSQL, each of the three in a
/// namespace of its own on one segment; A started first (it provisions the
/// demo network, writes the profiles, and takes the worker lease).
struct TwoNodes {
    a: std::process::Child,
    b: std::process::Child,
    a_address: String,
    b_address: String,
    url: String,
    // Dropped after the processes are stopped (fields drop in order).
    _pg: pgtest::Cluster,
    a_ns: Netns,
    _b_ns: Netns,
    pg_ns: Netns,
    _lan: Lan,
    a_dir: tempfile::TempDir,
    b_dir: tempfile::TempDir,
}

impl TwoNodes {
    fn start() -> TwoNodes {
        let (lan, [a_ns, b_ns, pg_ns]) = partition::segment();
        let pg = pgtest::Cluster::start_at(&Lan::placement(&pg_ns), &[]);
        let url = pg.url("switch");
        let (a_dir, b_dir) = (
            tempfile::tempdir().expect("node A's folder"),
            tempfile::tempdir().expect("node B's folder"),
        );
        let (a, a_address) = process::start_in(
            a_dir.path(),
            Some(&url),
            Some((&a_ns.name, a_ns.inside)),
            &[],
        );
        std::fs::copy(
            a_dir.path().join("master.key"),
            b_dir.path().join("master.key"),
        )
        .expect("master key copied");
        let (b, b_address) = process::start_in(
            b_dir.path(),
            Some(&url),
            Some((&b_ns.name, b_ns.inside)),
            &[],
        );
        TwoNodes {
            a,
            b,
            a_address,
            b_address,
            url,
            _pg: pg,
            a_ns,
            _b_ns: b_ns,
            pg_ns,
            _lan: lan,
            a_dir,
            b_dir,
        }
    }

    /// The load generator's view: both nodes.
    fn target(&self) -> loadtest::Target {
        loadtest::Target::from_profiles(
            &self.a_dir.path().join("profiles"),
            &[self.a_address.clone(), self.b_address.clone()],
        )
        .expect("profiles")
    }

    /// The history check after a fault (see the module's doc); answers how
    /// many transactions the fault had left unfinished.
    fn history_check(&self, runtime: &tokio::runtime::Runtime, record: &std::path::Path) -> usize {
        let left = process::serves_on_and_loses_nothing(
            runtime,
            || self.target(),
            "cash_in=40,cash_out=20,qr=20",
            record,
            &self.url,
            &self.a_dir.path().join("master.key"),
        );
        close_window(runtime, &self.b_address, self.target());
        left
    }

    fn stop(mut self) {
        for node in [&mut self.a, &mut self.b] {
            node.kill().expect("stop a node");
            node.wait().expect("reaped");
        }
        errors_logged("A", self.a_dir.path());
        errors_logged("B", self.b_dir.path());
    }
}

/// Scenario 1: a node cut from PostgreSQL.
fn a_node_cut_from_postgresql() {
    let nodes = TwoNodes::start();
    let out = tempfile::tempdir().expect("the records' folder");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let record = out.path().join("acked.jsonl");
    let options = process::load(Some(record.clone()), 31, Duration::from_secs(CUT_S + 16));
    let load = runtime.spawn(loadtest::run(nodes.target(), options));
    std::thread::sleep(Duration::from_secs(6));
    let before = lines(&record);
    cut(&nodes.a_ns, nodes.pg_ns.inside);
    std::thread::sleep(Duration::from_secs(CUT_S));
    let during = lines(&record) - before;
    nodes.a_ns.heal();
    let report = runtime
        .block_on(load)
        .expect("the generator ran")
        .expect("a report");
    let acked = lines(&record);
    eprintln!(
        "default mix over A and B, A cut from PostgreSQL for {CUT_S} s: {acked} acknowledged ({before} before the cut, {during} while cut), {} completed, {} failed; errors {}",
        report["completed"], report["failed"], report["errors"]
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
    let left = nodes.history_check(&runtime, &record);
    eprintln!(
        "the cut left {left} transactions unfinished, all finished since; {acked} acknowledged transactions intact; the window's nets sum to zero"
    );
    nodes.stop();
}

const HOLDS_LEASE: &str = "this node holds the worker lease";
const GAVE_UP_LEASE: &str = "the lease is given up";

/// Scenario 2: the worker-lease holder cut from PostgreSQL.
fn the_lease_holder_cut_from_postgresql() {
    let nodes = TwoNodes::start();
    let (a_data, b_data) = (nodes.a_dir.path(), nodes.b_dir.path());
    assert!(
        logged(a_data, HOLDS_LEASE, Instant::now(), Duration::from_secs(60)).is_some(),
        "A, first to start, takes the lease"
    );
    let out = tempfile::tempdir().expect("the records' folder");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let record = out.path().join("acked.jsonl");
    let options = process::load(Some(record.clone()), 32, Duration::from_secs(30));
    let load = runtime.spawn(loadtest::run(nodes.target(), options));
    std::thread::sleep(Duration::from_secs(4));
    let cut_at = Instant::now();
    cut(&nodes.a_ns, nodes.pg_ns.inside);
    let given_up = logged(a_data, GAVE_UP_LEASE, cut_at, Duration::from_secs(20));
    let taken = logged(b_data, HOLDS_LEASE, cut_at, Duration::from_secs(40));
    nodes.a_ns.heal();
    let (Some(given_up), Some(taken)) = (given_up, taken) else {
        panic!("lease after the cut: A gave it up after {given_up:?}, B took it after {taken:?}");
    };
    assert!(
        given_up < taken,
        "A gave the lease up {given_up:?} after the cut, B took it {taken:?} after: both held it"
    );
    let report = runtime
        .block_on(load)
        .expect("the generator ran")
        .expect("a report");
    let a_log = std::fs::read_to_string(a_data.join("switch.log")).unwrap_or_default();
    assert_eq!(
        a_log.matches(HOLDS_LEASE).count(),
        1,
        "A took the lease back while B held it"
    );
    let acked = lines(&record);
    let left = nodes.history_check(&runtime, &record);
    eprintln!(
        "default mix over A and B, the lease holder A cut from PostgreSQL: it gave the lease up {} ms after the cut, B took it {} ms after; {acked} acknowledged, {} failed ({}); the cut left {left} unfinished, all finished since; history check clean",
        given_up.as_millis(),
        taken.as_millis(),
        report["failed"],
        report["errors"]
    );
    nodes.stop();
}

/// Scenario 4 of the issue: primary and synchronous standby cut apart.
fn primary_and_standby_cut_apart() {
    let (_lan, [primary_ns, standby_ns, node_ns]) = partition::segment();
    let primary = pgtest::Cluster::start_at(&Lan::placement(&primary_ns), &[]);
    let standby = primary.standby_at(&Lan::placement(&standby_ns));
    let synchronous = "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync' AND state = 'streaming'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while primary.psql("postgres", synchronous) != "1" {
        assert!(
            Instant::now() < deadline,
            "the standby streams, synchronous"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let url = format!(
        "host={},{} port={},{} user=postgres dbname=switch target_session_attrs=read-write connect_timeout=2",
        primary.host, standby.host, primary.port, standby.port
    );
    let data = tempfile::tempdir().expect("the node's folder");
    let (mut node, address) = process::start_in(
        data.path(),
        Some(&url),
        Some((&node_ns.name, node_ns.inside)),
        &[],
    );
    let target = || {
        loadtest::Target::from_profiles(
            &data.path().join("profiles"),
            std::slice::from_ref(&address),
        )
        .expect("profiles")
    };
    let out = tempfile::tempdir().expect("the records' folder");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let record = out.path().join("acked.jsonl");
    let options = process::load(Some(record.clone()), 33, Duration::from_secs(24));
    let load = runtime.spawn(loadtest::run(target(), options));
    std::thread::sleep(Duration::from_secs(4));
    let before = lines(&record);
    cut(&standby_ns, primary_ns.inside);
    // What committed just before the cut may still be on its way back.
    std::thread::sleep(Duration::from_millis(500));
    let at_cut = lines(&record);
    std::thread::sleep(Duration::from_secs(6));
    let while_cut = lines(&record) - at_cut;
    let killed = std::process::Command::new("kill")
        .args(["-9", &primary.pid()])
        .status()
        .expect("kill runs");
    assert!(killed.success(), "SIGKILL the primary");
    standby.promote();
    let report = runtime
        .block_on(load)
        .expect("the generator ran")
        .expect("a report");
    let acked = lines(&record);
    let after = acked - at_cut - while_cut;
    assert!(before > 0, "nothing was acknowledged before the cut");
    assert_eq!(
        while_cut, 0,
        "acknowledged while the standby was cut off (commits must wait for it)"
    );
    assert!(
        after > 0,
        "nothing was acknowledged on the promoted standby"
    );
    let left = process::serves_on_and_loses_nothing(
        &runtime,
        target,
        "cash_in=40,cash_out=20,qr=20",
        &record,
        &url,
        &data.path().join("master.key"),
    );
    close_window(&runtime, &address, target());
    eprintln!(
        "default mix, primary and standby cut apart: {before} acknowledged before the cut, none in the 6 s the standby was cut off, {after} after the promotion; {acked} present on the promoted standby ({} failed: {}); the loss left {left} unfinished, all finished since; history check clean",
        report["failed"], report["errors"]
    );
    node.kill().expect("stop the node");
    node.wait().expect("reaped");
    errors_logged("node", data.path());
}

const MB: &str = "970422";
const EVN: &str = "EVN";

/// Scenario 3 of the issue: a remote bank (MB) and a remote biller (EVN),
/// each in a namespace of its own behind a delay proxy, take 30% packet
/// loss, then answers 2 s late (past the switch's 1 s timeout), then a
/// one-way cut (requests arrive and are served, answers are lost), then
/// heal; the embedded switch in a third namespace serves the default mix
/// throughout. The unknown-outcome path resolves every transaction, and
/// the bank and the biller agree with every outcome: none both done there
/// and failed or reversed here, none completed here and not done there.
fn a_bank_and_a_biller_behind_faults() {
    let (lan, [sw_ns, bank_ns, biller_ns]) = partition::segment();
    let dir = tempfile::tempdir().expect("a folder");
    let bank_addr = std::net::SocketAddr::from((bank_ns.inside, 6000));
    let biller_addr = std::net::SocketAddr::from((biller_ns.inside, 6100));
    let mut bank = process::start_sim(
        &format!("bank:{MB}"),
        &dir.path().join("bank"),
        &bank_ns.name,
        bank_addr,
    );
    let mut biller = process::start_sim(
        &format!("biller:{EVN}"),
        &dir.path().join("biller"),
        &biller_ns.name,
        biller_addr,
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let on_segment = std::net::SocketAddr::from((lan.host, 0));
    let (bank_proxy, biller_proxy) = runtime.block_on(async {
        (
            FaultProxy::start(on_segment, bank_addr).await,
            FaultProxy::start(on_segment, biller_addr).await,
        )
    });
    let remotes = format!(
        "bank={MB}@http://{};biller={EVN}@http://{}",
        bank_proxy.addr, biller_proxy.addr
    );
    let data = dir.path().join("switch");
    std::fs::create_dir_all(&data).expect("the switch's folder");
    let (mut node, address) = process::start_in(
        &data,
        None,
        Some((&sw_ns.name, sw_ns.inside)),
        &[("SWITCH_PROCESS_REMOTES", remotes)],
    );
    let target = || {
        loadtest::Target::from_profiles(&data.join("profiles"), std::slice::from_ref(&address))
            .expect("profiles")
    };
    let record = dir.path().join("acked.jsonl");
    let options = process::load(Some(record.clone()), 35, Duration::from_secs(24));
    let load = runtime.spawn(loadtest::run(target(), options));
    let parties = [(&bank_ns, &bank_proxy), (&biller_ns, &biller_proxy)];
    let started = Instant::now();
    let mut figures = Vec::new();
    let mut mark = |what: &str| {
        figures.push(format!(
            "{:>6} ms {what}: {} acknowledged",
            started.elapsed().as_millis(),
            lines(&record)
        ))
    };
    std::thread::sleep(Duration::from_secs(3));
    mark("steady");
    parties.iter().for_each(|(ns, _)| ns.lose(30));
    std::thread::sleep(Duration::from_secs(5));
    parties.iter().for_each(|(ns, _)| ns.heal());
    mark("30% loss");
    parties.iter().for_each(|(_, p)| p.delay(2_000));
    std::thread::sleep(Duration::from_secs(5));
    parties.iter().for_each(|(_, p)| p.delay(0));
    mark("answers 2 s late");
    parties.iter().for_each(|(ns, _)| ns.lose_answers());
    std::thread::sleep(Duration::from_secs(5));
    parties.iter().for_each(|(ns, _)| ns.heal());
    mark("answers lost (one-way cut)");
    let report = runtime
        .block_on(load)
        .expect("the generator ran")
        .expect("a report");
    mark("healed (6 s)");
    let acked = lines(&record);
    assert!(acked > 0, "nothing was acknowledged");

    // Every transaction final: no reservation left.
    let operator = target().operator;
    let (ch, final_after) = runtime.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(address.clone())
            .expect("an address")
            .connect()
            .await
            .expect("the switch answers");
        let mut admin = pb::admin_client::AdminClient::new(ch.clone());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let check = admin
                .check_ledger(operator.sign(
                    "/paymentswitch.v1.Admin/CheckLedger",
                    pb::CheckLedgerRequest {},
                ))
                .await
                .expect("the ledger checks")
                .into_inner();
            assert!(check.violations.is_empty(), "{:?}", check.violations);
            if check.pending_transfers == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} reservations left",
                check.pending_transfers
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (ch, started.elapsed())
    });
    // Every acknowledged transaction reads back with its status.
    let verified = runtime
        .block_on(loadtest::verify_record(target(), &record, 2))
        .expect("verification ran");
    assert_eq!(verified["ok"], true, "{verified}");
    // The bank and the biller agree with every counter transaction's
    // outcome (their reversal and cancellation queues drain, so asked
    // again until they do).
    let agreed = runtime.block_on(agree(&ch, &target(), &record, bank_addr, biller_addr));
    close_window(&runtime, &address, target());
    for f in &figures {
        eprintln!("{f}");
    }
    eprintln!(
        "default mix, MB and EVN behind loss, late answers and a one-way cut: {acked} acknowledged, {} failed ({}); every reservation resolved {} s after the start; {agreed}; history check clean",
        report["failed"],
        report["errors"],
        final_after.as_secs()
    );
    for p in [&mut node, &mut bank, &mut biller] {
        p.kill().expect("stop a process");
        p.wait().expect("reaped");
    }
    errors_logged("switch", &data);
}

/// Whether MB (`bank`) and EVN (`biller`) agree with the final status of
/// every counter transaction in `record` that called them; asked again
/// (their queues draining) for up to a minute. Says what it checked.
async fn agree(
    ch: &tonic::transport::Channel,
    target: &loadtest::Target,
    record: &std::path::Path,
    bank: std::net::SocketAddr,
    biller: std::net::SocketAddr,
) -> String {
    let connect = |a: std::net::SocketAddr| {
        tonic::transport::Endpoint::from_shared(format!("http://{a}"))
            .expect("an address")
            .connect_lazy()
    };
    let mut bank = pb::bank_adapter_client::BankAdapterClient::new(connect(bank));
    let mut biller = pb::biller_adapter_client::BillerAdapterClient::new(connect(biller));
    let text = std::fs::read_to_string(record).expect("the record");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut at_bank, mut at_biller) = (0, 0);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a record line");
        let id = v["transaction_id"].as_str().expect("an id");
        let Some((_, creds)) = target.tellers.iter().find(|(t, _)| v["terminal"] == **t) else {
            continue; // a bank's QR payment: no counter transaction
        };
        let t = pb::teller_client::TellerClient::new(ch.clone())
            .get_transaction(creds.sign(
                "/paymentswitch.v1.Teller/GetTransaction",
                pb::GetTransactionRequest {
                    transaction_id: id.to_string(),
                },
            ))
            .await
            .expect("an acknowledged transaction reads back")
            .into_inner()
            .transaction
            .expect("a transaction");
        let completed = t.status == pb::TxStatus::Completed as i32;
        let reference = switch::ids::TxId::parse(id)
            .expect("a transaction id")
            .reference(0)
            .to_string();
        // Cash bills call their biller first, the rest their bank; the
        // other banks and billers are simulated inside the switch.
        let at_the_biller = t.kind == pb::TxKind::BillPayment as i32;
        if (at_the_biller && t.biller != EVN) || (!at_the_biller && t.bank_bin != MB) {
            continue;
        }
        loop {
            let (found, done) = if at_the_biller {
                let s = biller
                    .status(pb::BillerStatusRequest {
                        reference: reference.clone(),
                    })
                    .await
                    .expect("the biller answers")
                    .into_inner()
                    .state();
                (
                    s != pb::BillerTxState::NotFound,
                    s == pb::BillerTxState::Completed,
                )
            } else {
                let s = bank
                    .status(pb::BankStatusRequest {
                        reference: reference.clone(),
                    })
                    .await
                    .expect("the bank answers")
                    .into_inner()
                    .state();
                (
                    s != pb::BankTxState::NotFound,
                    s == pb::BankTxState::Completed,
                )
            };
            // Completed here: done there. Otherwise: not done there
            // (never arrived, refused, or undone).
            if done == completed {
                if at_the_biller {
                    at_biller += 1;
                } else {
                    at_bank += 1;
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} ({:?}) is {} here and {} there",
                t.kind,
                if completed {
                    "completed"
                } else {
                    "not completed"
                },
                if !found {
                    "unknown"
                } else if done {
                    "done"
                } else {
                    "not done"
                },
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    format!("the bank agrees on {at_bank} and the biller on {at_biller}")
}

fn main() {
    if process::sim_if_asked() || process::serve_if_asked() || process::listing("partition_mix") {
        return;
    }
    // `cargo test -p loadtest --test partition_mix -- lease`: only the
    // scenarios whose name holds `lease`.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let scenarios: [(&str, fn()); 4] = [
        (
            "a_bank_and_a_biller_behind_faults",
            a_bank_and_a_biller_behind_faults,
        ),
        ("a_node_cut_from_postgresql", a_node_cut_from_postgresql),
        (
            "the_lease_holder_cut_from_postgresql",
            the_lease_holder_cut_from_postgresql,
        ),
        (
            "primary_and_standby_cut_apart",
            primary_and_standby_cut_apart,
        ),
    ];
    for (name, scenario) in scenarios {
        if filter.as_ref().is_none_or(|f| name.contains(f.as_str())) {
            scenario();
            eprintln!("scenario {name} ... ok");
        }
    }
    println!("test partition_mix ... ok");
}
