//! Closed-loop cash-in rate through the real gRPC server (signed requests,
//! durable ledger and store), in-process on this machine. A first figure
//! until the load generator (issue "Load generator") replaces it.
//!
//! cargo run --release -p tests --example cash_in_rate -- [CONCURRENCY] [SECONDS]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tests::Harness;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let concurrency: usize = args.next().map_or(64, |a| a.parse().expect("concurrency"));
    let seconds: u64 = args.next().map_or(10, |a| a.parse().expect("seconds"));
    let h = Arc::new(
        Harness::start(|c| {
            c.customer_daily_max = u64::MAX;
            c.terminal_daily_max = u64::MAX;
        })
        .await,
    );
    let customers = Arc::new(h.customers());
    let terminals: Vec<String> = [
        "tho-tang",
        "tam-dao",
        "huong-dao",
        "lang-cong",
        "vinh-yen",
        "phuc-yen",
    ]
    .iter()
    .flat_map(|p| [format!("{p}-1"), format!("{p}-2")])
    .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let (h, customers, stop) = (h.clone(), customers.clone(), stop.clone());
            let terminal = terminals[i % terminals.len()].clone();
            tokio::spawn(async move {
                let mut t = h.teller(&terminal);
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let c = &customers[(i + n as usize) % customers.len()];
                    let begun = Instant::now();
                    t.cash_in(&format!("{i}-{n}"), &c.bank, &c.account, 10_000)
                        .await
                        .expect("cash-in");
                    latencies.push(begun.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let q = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_micros();
    println!(
        "{} cash-ins in {elapsed:.1} s, concurrency {concurrency}: {:.0}/s; latency p50 {} us, p99 {} us, max {} us",
        all.len(),
        all.len() as f64 / elapsed,
        q(0.5),
        q(0.99),
        all.last().unwrap().as_micros()
    );
    h.assert_ledger_clean().await;
}
