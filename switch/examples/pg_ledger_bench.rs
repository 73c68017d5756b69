//! The ledger in PostgreSQL against PostgreSQL's own double-entry baseline,
//! back to back on one throw-away cluster (issue #14, BENCHMARKS.md).
//!
//! `cargo run --release -p switch --example pg_ledger_bench -- [--clients 16] [--seconds 15] [--nodes 1] [--hot none|limited|sharded]`
//!
//! 1. pgbench with `ops/pgbench/double_entry.sql` (an insert and two
//!    balance updates per transfer, synchronous commit), `--clients`
//!    clients, `--seconds` seconds;
//! 2. the switch's PgLedger on the same server: `--clients` clients each
//!    submitting one transfer at a time between random accounts of 10,000
//!    (no limits), through `--nodes` writers (nodes), for `--seconds`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ledger::{AccountFlags, NewAccount, NewTransfer};
use switch::store::pg_ledger::PgLedger;

fn flag(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pg_bin(tool: &str) -> String {
    for v in ["17", "16", "15"] {
        let p = format!("/usr/lib/postgresql/{v}/bin/{tool}");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    tool.to_string()
}

fn pgbench(cluster: &pgtest::Cluster, clients: u64, seconds: u64) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/pgbench");
    cluster.psql(
        "switch",
        &std::fs::read_to_string(format!("{root}/init.sql")).unwrap(),
    );
    let script = cluster.dir().join("double_entry.sql");
    std::fs::copy(format!("{root}/double_entry.sql"), &script).unwrap();
    let port = cluster.port.to_string();
    let (c, t) = (clients.to_string(), seconds.to_string());
    let mut cmd = std::process::Command::new("runuser");
    cmd.args(["-u", "postgres", "--", &pg_bin("pgbench")]);
    let out = cmd
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-n",
            "-c",
            &c,
            "-j",
            "2",
            "-T",
            &t,
            "-f",
        ])
        .arg(&script)
        .arg("switch")
        .output()
        .expect("pgbench runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.starts_with("tps")
                || l.starts_with("latency")
                || l.contains("transactions actually processed")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients = flag(&args, "--clients", 16);
    let seconds = flag(&args, "--seconds", 15);
    let nodes = flag(&args, "--nodes", 1).max(1);
    // `--hot limited`: every transfer debits one account with a limit (a
    // post office's e-float: one balance row, locked by each batch);
    // `--hot sharded`: one account without (a bank's settlement account: a
    // balance row per writer); else random pairs.
    let hot = args
        .iter()
        .position(|a| a == "--hot")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .unwrap_or("none")
        .to_string();
    assert!(
        ["none", "limited", "sharded"].contains(&hot.as_str()),
        "--hot is none, limited or sharded"
    );
    let cluster = pgtest::Cluster::start();
    println!("pgbench double entry, {clients} clients, {seconds} s:");
    println!("{}", pgbench(&cluster, clients, seconds));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = cluster.url("switch");
        let mut ledgers = Vec::new();
        for _ in 0..nodes {
            ledgers.push(Arc::new(PgLedger::open(&url).await.unwrap()));
        }
        const ACCOUNTS: u128 = 10_000;
        const HOT: u128 = 1;
        for chunk in (1..=ACCOUNTS).collect::<Vec<_>>().chunks(1_000) {
            let new = chunk
                .iter()
                .map(|id| NewAccount {
                    id: *id,
                    currency: 704,
                    code: 1,
                    flags: if *id == HOT && hot == "limited" {
                        AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                    } else {
                        AccountFlags::empty()
                    },
                    user_data: 0,
                })
                .collect();
            ledgers[0].create_accounts(new).await.unwrap();
        }
        if hot != "none" {
            // Funded far beyond what a run moves.
            let fund = NewTransfer::single(u128::MAX - 1, 2, HOT, 1 << 50, 1);
            ledgers[0].create_transfers(vec![fund]).await.unwrap()[0].unwrap();
        }
        let hot_on = hot != "none";
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for c in 0..clients {
            let l = ledgers[(c % nodes) as usize].clone();
            let (stop, done) = (stop.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (c + 1);
                let mut n: u128 = 0;
                while !stop.load(Ordering::Relaxed) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let a = if hot_on {
                        HOT
                    } else {
                        u128::from(rng % 10_000) + 1
                    };
                    let b = u128::from((rng >> 20) % 10_000) + 1;
                    if a == b {
                        continue;
                    }
                    n += 1;
                    let id = (u128::from(c + 1) << 64) | n;
                    let started = Instant::now();
                    let r = l.create_transfers(vec![NewTransfer::single(id, a, b, 1, 1)]).await;
                    r.unwrap()[0].unwrap();
                    latencies.record(started.elapsed().as_micros() as u64).unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            }));
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let counted = done.load(Ordering::Relaxed);
        let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for t in tasks {
            all.add(t.await.unwrap()).unwrap();
        }
        println!(
            "PgLedger, {clients} clients, {nodes} node(s), hot {hot}, {seconds} s: {:.0} transfers/s, p50 {} us, p99 {} us",
            counted as f64 / seconds as f64,
            all.value_at_quantile(0.5),
            all.value_at_quantile(0.99)
        );
        let report = ledgers[0].check().await.unwrap();
        println!("check: {} violations", report.violations.len());
    });
}
