//! Network partitions (issue #31) where a client retries by hand, in
//! namespaces this test makes (every node and PostgreSQL in one of its
//! own, on one segment: [`Lan`]). The scenarios under the load
//! generator's default mix (a remote bank and biller behind faults, a
//! node cut from PostgreSQL, the lease holder cut, a primary cut from its
//! standby) are in `loadtest/tests/partition_mix.rs`.
//!
//! The first scenario runs two nodes on one PostgreSQL, each node and
//! PostgreSQL in a namespace of its own on one segment ([`Lan`]): node A
//! is cut from PostgreSQL for 15 s while its clients still reach it; a
//! client that A does not answer within 3 s sends the same request (same
//! id) to B, and gets the same transaction; the history check holds, and
//! `switch check --store` is clean. A refuses promptly while cut: the
//! first call of every request to PostgreSQL (its nonce) that does not
//! finish within 2 s marks PostgreSQL unreachable, and from then on A
//! refuses requests at once (`UNAVAILABLE`, saying nothing was done) until
//! a probe reaches it again; only the requests already in flight at the
//! cut wait for the link's timeout. (The same scenario under the load
//! generator's default mix is `loadtest/tests/partition_mix.rs`.)
//!
//! The second cuts clients from a node mid-request (their requests arrive
//! and run, the answers are lost): each retried on the other node with
//! the same request id gets the one transaction that id names.
//!
//! Needs root, `ip` and `nft` (`.ci/run` installs nftables); fails, with
//! the reason, where it cannot make its network.

mod partition;

use std::collections::HashMap;
use std::error::Error as _;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use partition::{Lan, Netns, close_the_window};
use proto::auth::Credentials;
use proto::v1 as pb;
use proto::v1::teller_client::TellerClient;
use tonic::transport::Channel;

const MB: &str = "970422";
const TERMINALS: [&str; 2] = ["tho-tang-1", "tho-tang-2"];
const AMOUNT: u64 = 50_000;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn credentials(data: &std::path::Path, id: &str) -> Credentials {
    let text = std::fs::read_to_string(data.join("profiles").join(format!("{id}.toml"))).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    Credentials::from_hex(v["id"].as_str().unwrap(), v["secret"].as_str().unwrap()).unwrap()
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(60))
            .connect()
            .await
        {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("{addr} does not answer: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// What a client was told: the transaction and its status, or nothing
/// (the request never reached a record: a transport failure).
#[derive(Clone, Debug)]
struct Acked {
    request_id: String,
    terminal: &'static str,
    transaction_id: String,
    status: String,
}

/// The demo customers' accounts at [`MB`], once the first start of the
/// switch with `data` has written the profiles (it provisions the demo
/// network; its profiles are written by the time the customers' list is).
async fn provisioned(data: &std::path::Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let customers: Vec<serde_json::Value> = loop {
        let read = std::fs::read_to_string(data.join("profiles/customers.json"));
        match read.ok().and_then(|t| serde_json::from_str(&t).ok()) {
            Some(c) => break c,
            None if Instant::now() > deadline => panic!("no demo profiles written"),
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let accounts: Vec<String> = customers
        .iter()
        .filter(|c| c["bank"] == MB)
        .map(|c| c["account"].as_str().unwrap().to_string())
        .collect();
    assert!(!accounts.is_empty());
    accounts
}

/// Client `c`'s `n`th cash-in, to one of `accounts` in turn.
fn cash_in(id: String, c: usize, n: usize, accounts: &[String]) -> pb::CashInRequest {
    pb::CashInRequest {
        client_request_id: id,
        bank_bin: MB.into(),
        account: accounts[(c * 5 + n) % accounts.len()].clone(),
        amount: AMOUNT,
        teller: String::new(),
        offline_taken_at_ms: 0,
    }
}

fn status_name(s: i32) -> String {
    match pb::TxStatus::try_from(s) {
        Ok(pb::TxStatus::Completed) => "completed",
        Ok(pb::TxStatus::Pending) => "pending",
        Ok(pb::TxStatus::Failed) => "failed",
        Ok(pb::TxStatus::Reversed) => "reversed",
        _ => "unknown",
    }
    .to_string()
}

/// No request id of a terminal's maps to two transactions, over every
/// transaction the switch holds (through `ch`); answers how many there are.
async fn one_transaction_per_request(ch: &Channel, data: &std::path::Path) -> usize {
    let mut seen: HashMap<String, String> = HashMap::new();
    for t in TERMINALS {
        let creds = credentials(data, t);
        let mut client = TellerClient::new(ch.clone());
        let mut token = String::new();
        loop {
            let r = client
                .list_transactions(creds.sign(
                    "/paymentswitch.v1.Teller/ListTransactions",
                    pb::ListTransactionsRequest {
                        page_size: 100,
                        page_token: token.clone(),
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            for x in r.transactions {
                let key = format!("{t}/{}", x.client_request_id);
                if let Some(other) = seen.insert(key.clone(), x.transaction_id.clone()) {
                    panic!("{key} maps to {other} and {}", x.transaction_id);
                }
            }
            if r.next_page_token.is_empty() {
                break;
            }
            token = r.next_page_token;
        }
    }
    seen.len()
}

/// What a client was told of its request: the transaction and its status
/// (from the answer, or from a refusal's metadata when a record was
/// made), or nothing (it never reached a record).
fn told(answer: Result<pb::TransactionResponse, tonic::Status>) -> Option<(String, String)> {
    match answer {
        Ok(r) => r
            .transaction
            .map(|t| (t.transaction_id, status_name(t.status))),
        Err(s) => {
            let md = |k: &str| {
                s.metadata()
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            md("x-transaction-id").map(|id| (id, md("x-transaction-status").unwrap_or_default()))
        }
    }
}

/// `x` is there, through `ch`, with the status it was acknowledged with
/// (once final; one acknowledged as pending may end either way).
async fn present(ch: &Channel, data: &std::path::Path, x: &Acked) {
    let creds = credentials(data, x.terminal);
    let deadline = Instant::now() + Duration::from_secs(60);
    let t = settled(
        &mut TellerClient::new(ch.clone()),
        &creds,
        &x.transaction_id,
        deadline,
    )
    .await;
    if x.status != "pending" {
        assert_eq!(status_name(t.status), x.status, "{}", x.transaction_id);
    }
}

/// An acknowledged transaction once it is no longer pending: present, or
/// the test fails; still pending at `deadline`, the test fails.
async fn settled(
    client: &mut TellerClient<Channel>,
    creds: &Credentials,
    id: &str,
    deadline: Instant,
) -> pb::Transaction {
    loop {
        let t = client
            .get_transaction(creds.sign(
                "/paymentswitch.v1.Teller/GetTransaction",
                pb::GetTransactionRequest {
                    transaction_id: id.to_string(),
                },
            ))
            .await
            .unwrap_or_else(|e| panic!("{id} acknowledged and missing: {e}"))
            .into_inner()
            .transaction
            .unwrap();
        if t.status != pb::TxStatus::Pending as i32 {
            return t;
        }
        assert!(Instant::now() < deadline, "{id} still pending");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `switch check` on a stopped switch's data or a store: clean.
fn switch_check(args: &[&str]) {
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_switch"))
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "switch check: {}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// Start a switch node in `ns` on `store`; its log goes to `log`.
fn node(
    ns: &Netns,
    data: &std::path::Path,
    store: &str,
    log: &std::path::Path,
) -> (Process, std::net::SocketAddr) {
    let listen: std::net::SocketAddr = format!("{}:50051", ns.inside).parse().unwrap();
    let metrics = format!("{}:9100", ns.inside);
    let command = ns.command(env!("CARGO_BIN_EXE_switch"));
    (launch(command, data, store, log, listen, &metrics), listen)
}

/// Start `command` (the switch, in a namespace or not) serving on `listen`.
fn launch(
    mut command: std::process::Command,
    data: &std::path::Path,
    store: &str,
    log: &std::path::Path,
    listen: std::net::SocketAddr,
    metrics: &str,
) -> Process {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        data.join("switch.toml"),
        "bank_timeout_ms = 1000\nreservation_grace_ms = 5000\n[rate_limit]\nrequests_per_s = 0\n",
    )
    .unwrap();
    let child = command
        .args(["serve", "--insecure", "--console-listen", "off"])
        .args(["--listen", &listen.to_string()])
        .args(["--metrics-listen", metrics])
        .args(["--store", store])
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(data.join("switch.toml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the switch starts");
    Process(child)
}

/// Two switch nodes on one PostgreSQL, each of the three in a namespace of
/// its own on one segment (so a rule in A's namespace cuts A's link to
/// PostgreSQL and nothing else); A provisioned the demo network and
/// started first.
struct TwoNodes {
    // Dropped in this order: the processes, then the namespaces.
    _a_process: Process,
    _b_process: Process,
    pg: pgtest::Cluster,
    a_ns: Netns,
    _b_ns: Netns,
    _pg_ns: Netns,
    _lan: Lan,
    // Holds both nodes' data and logs.
    _dir: tempfile::TempDir,
    a_data: std::path::PathBuf,
    a: Channel,
    b: Channel,
    /// The demo customers' accounts at [`MB`].
    accounts: Vec<String>,
}

async fn two_nodes() -> TwoNodes {
    let (lan, [a_ns, b_ns, pg_ns]) = partition::segment();
    let pg = pgtest::Cluster::start_at(&Lan::placement(&pg_ns), &[]);
    let store = |_: &Netns| {
        format!(
            "host={} port={} user=postgres dbname=switch",
            pg.host, pg.port
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    let (a_process, a_addr) = node(&a_ns, &a_data, &store(&a_ns), &dir.path().join("a.log"));
    let a = channel(a_addr).await;
    let accounts = provisioned(&a_data).await;
    std::fs::create_dir_all(&b_data).unwrap();
    std::fs::copy(a_data.join("master.key"), b_data.join("master.key")).unwrap();
    let (b_process, b_addr) = node(&b_ns, &b_data, &store(&b_ns), &dir.path().join("b.log"));
    let b = channel(b_addr).await;

    TwoNodes {
        _a_process: a_process,
        _b_process: b_process,
        pg,
        a_ns,
        _b_ns: b_ns,
        _pg_ns: pg_ns,
        _lan: lan,
        _dir: dir,
        a_data,
        a,
        b,
        accounts,
    }
}

/// Clients of the node cut from PostgreSQL.
const CUT_CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_from_postgresql_refuses_promptly_and_a_retry_elsewhere_is_the_same_transaction()
{
    let nodes = two_nodes().await;
    // Borrowed: the nodes, their directory and PostgreSQL live to the end.
    let TwoNodes {
        a_ns,
        pg,
        a_data,
        a,
        b,
        accounts,
        ..
    } = &nodes;

    // Clients send to A; a request A does not answer within 3 s is sent
    // again, with the same request id, to B.
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let refused_ms: Arc<Mutex<Vec<u128>>> = Arc::default();
    let unanswered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let retried = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for (c, terminal) in TERMINALS.iter().cycle().take(CUT_CLIENTS).enumerate() {
        let (a, b, acked, refused_ms, retried, stop, unanswered) = (
            a.clone(),
            b.clone(),
            acked.clone(),
            refused_ms.clone(),
            retried.clone(),
            stop.clone(),
            unanswered.clone(),
        );
        let creds = credentials(a_data, terminal);
        let accounts = accounts.clone();
        clients.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let m = cash_in(format!("q{c}-{n}"), c, n, &accounts);
                let sent = Instant::now();
                let first = tokio::time::timeout(
                    Duration::from_secs(3),
                    TellerClient::new(a.clone())
                        .cash_in(creds.sign("/paymentswitch.v1.Teller/CashIn", m.clone())),
                )
                .await;
                let answer = match first {
                    Ok(Ok(r)) => Ok(r.into_inner()),
                    Ok(Err(s)) if s.metadata().get("x-transaction-id").is_some() => Err(s),
                    other => {
                        match other {
                            // The connection to A broke: neither an answer
                            // of A's nor a wait (sent again to B as well).
                            Ok(Err(s))
                                if s.code() == tonic::Code::Unknown && s.source().is_some() =>
                            {
                                eprintln!("the connection to A broke: {s:?}");
                            }
                            Ok(Err(s)) => {
                                assert_eq!(
                                    s.code(),
                                    tonic::Code::Unavailable,
                                    "A refuses with a clear status: {s:?}"
                                );
                                refused_ms.lock().unwrap().push(sent.elapsed().as_millis());
                            }
                            _ => {
                                unanswered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                        // Not answered, or refused before any record: the
                        // same request to the other node.
                        retried.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        TellerClient::new(b.clone())
                            .cash_in(creds.sign("/paymentswitch.v1.Teller/CashIn", m.clone()))
                            .await
                            .map(|r| r.into_inner())
                    }
                };
                let record = told(answer);
                if let Some((transaction_id, status)) = record {
                    acked.lock().unwrap().push(Acked {
                        request_id: m.client_request_id,
                        terminal,
                        transaction_id,
                        status,
                    });
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = acked.lock().unwrap().len();
    // A is cut from PostgreSQL (its clients still reach it).
    a_ns.nft(&format!(
        "add rule inet fault output tcp dport {0} drop\nadd rule inet fault input tcp sport {0} drop",
        pg.port
    ))
    .unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let during = acked.lock().unwrap().len() - before;
    a_ns.heal();
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let refused = refused_ms.lock().unwrap().clone();

    // History: every acknowledged transaction is there, through either
    // node, with its status; no request id names two transactions.
    let mut seen: HashMap<String, String> = HashMap::new();
    for x in &acked {
        let key = format!("{}/{}", x.terminal, x.request_id);
        if let Some(other) = seen.insert(key.clone(), x.transaction_id.clone()) {
            assert_eq!(
                other, x.transaction_id,
                "{key} answered as two transactions"
            );
        }
        present(b, a_data, x).await;
    }
    close_the_window(b, &credentials(a_data, "operator")).await;
    switch_check(&["--store", &pg.url("switch")]);
    let slowest = refused.iter().max().copied().unwrap_or(0);
    let unanswered = unanswered.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "node cut from PostgreSQL for 15 s: {} acknowledged in all ({during} while cut, through B), {} sent again to B, {} refused by A (slowest refusal {slowest} ms), {unanswered} left unanswered by A for 3 s; history check clean",
        acked.len(),
        retried.load(std::sync::atomic::Ordering::SeqCst),
        refused.len(),
    );
    assert!(during > 0, "B served while A was cut");
    // Promptly: once A has found PostgreSQL unreachable (within 2 s of a
    // request asking it), its clients are told so rather than left
    // waiting; only what was in flight at the cut, one request per client,
    // may go unanswered. (Without the refusal, every request sent to A
    // while cut waits out the client's 3 s: about 40 here.)
    assert!(!refused.is_empty(), "A refused nothing while cut");
    assert!(
        unanswered <= CUT_CLIENTS as u64,
        "A left {unanswered} requests unanswered (refused {})",
        refused.len()
    );
}

/// Scenario 5: clients cut from node A in the middle of their requests
/// (A receives and runs them; its answers are lost: nftables in A's
/// namespace) send each unanswered request again, same request id, to B.
/// Each gets the transaction A made for it (never a second one), with
/// the outcome that stands once final.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_cut_mid_request_retries_on_another_node_and_gets_the_same_transaction() {
    let nodes = two_nodes().await;
    let TwoNodes {
        a_ns,
        pg,
        a_data,
        a,
        b,
        accounts,
        ..
    } = &nodes;
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let retried: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for (c, terminal) in TERMINALS.iter().cycle().take(CUT_CLIENTS).enumerate() {
        let (a, b, acked, retried, stop) = (
            a.clone(),
            b.clone(),
            acked.clone(),
            retried.clone(),
            stop.clone(),
        );
        let creds = credentials(a_data, terminal);
        let accounts = accounts.clone();
        clients.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let m = cash_in(format!("m{c}-{n}"), c, n, &accounts);
                let sign = || creds.sign("/paymentswitch.v1.Teller/CashIn", m.clone());
                let first = tokio::time::timeout(
                    Duration::from_secs(2),
                    TellerClient::new(a.clone()).cash_in(sign()),
                )
                .await;
                let (answer, again) = match first {
                    Ok(answer) => (answer, false),
                    // No answer: the same request to B.
                    Err(_) => (TellerClient::new(b.clone()).cash_in(sign()).await, true),
                };
                if let Some((transaction_id, status)) = told(answer.map(|r| r.into_inner())) {
                    let x = Acked {
                        request_id: m.client_request_id.clone(),
                        terminal,
                        transaction_id,
                        status,
                    };
                    if again {
                        retried.lock().unwrap().push(x.clone());
                    }
                    acked.lock().unwrap().push(x);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A's answers to the clients are lost; A still reaches PostgreSQL.
    a_ns.nft(&format!(
        "add rule inet fault output ip daddr {} drop",
        a_ns.host
    ))
    .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    a_ns.heal();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let retried = retried.lock().unwrap().clone();
    for x in &acked {
        present(b, a_data, x).await;
    }
    let held = one_transaction_per_request(b, a_data).await;
    close_the_window(b, &credentials(a_data, "operator")).await;
    switch_check(&["--store", &pg.url("switch")]);
    eprintln!(
        "clients cut from A mid-request for 8 s: {} acknowledged, {} of them sent again to B, each the one transaction its request id names ({held} transactions held); history check clean",
        acked.len(),
        retried.len()
    );
    assert!(!retried.is_empty(), "no request was cut mid-way");
}
