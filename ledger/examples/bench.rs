//! Ledger throughput and commit latency, durable (every commit fsync'd
//! before it is counted), on a fresh temporary data directory.
//!
//! cargo run --release -p ledger --example bench -- --transfers N --batch N --clients N [--accounts N] [--json]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;
use ledger::*;

fn main() {
    let mut transfers: u64 = 1_000_000;
    let mut batch: usize = 1000;
    let mut clients: usize = 1;
    let mut accounts: u128 = 10_000;
    let mut json = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            json = true;
            continue;
        }
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--transfers" => transfers = v.parse().expect("--transfers N"),
            "--batch" => batch = v.parse().expect("--batch N"),
            "--clients" => clients = v.parse().expect("--clients N"),
            "--accounts" => accounts = v.parse().expect("--accounts N"),
            _ => panic!("unknown flag {flag}"),
        }
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let (ledger, _) = Ledger::open(Config::new(dir.path()), Arc::new(SystemClock)).expect("open");
    let ids: Vec<u128> = (1..=accounts).collect();
    for chunk in ids.chunks(8000) {
        let new = chunk
            .iter()
            .map(|&id| NewAccount {
                id,
                currency: 704,
                code: 1,
                flags: AccountFlags::empty(),
                user_data: 0,
            })
            .collect();
        assert!(
            ledger
                .create_accounts(new)
                .expect("accounts")
                .iter()
                .all(Result::is_ok)
        );
    }
    let ledger = Arc::new(ledger);
    let per_client = transfers / clients as u64;
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients as u64)
        .map(|c| {
            let (ledger, latency) = (ledger.clone(), latency.clone());
            std::thread::spawn(move || {
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                let mut x = (c + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut next_id = (u128::from(c) << 64) + 1;
                let mut sent = 0;
                while sent < per_client {
                    let n = (batch as u64).min(per_client - sent);
                    let events = (0..n)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let dr = 1 + u128::from(x) % accounts;
                            let cr = 1 + (dr + u128::from(x >> 32) % (accounts - 1)) % accounts;
                            next_id += 1;
                            NewTransfer::single(next_id, dr, cr, 1 + x % 100_000, 1)
                        })
                        .collect();
                    let t = Instant::now();
                    let results = ledger.create_transfers(events).expect("commit");
                    h.record(t.elapsed().as_micros() as u64).expect("record");
                    assert!(
                        results.iter().all(Result::is_ok),
                        "uniform pairs without limits never fail"
                    );
                    sent += n;
                }
                latency.lock().unwrap().add(&h).expect("merge");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    let committed_s = started.elapsed().as_secs_f64();
    // Wait for the index to hold everything (queries see all of it).
    let check = ledger.check().expect("check");
    let indexed_s = started.elapsed().as_secs_f64();
    assert!(check.violations.is_empty(), "{:?}", check.violations);
    let h = latency.lock().unwrap();
    let done = per_client * clients as u64;
    let tps = done as f64 / committed_s;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "transfers": done,
                "transfers_per_second": tps.round(),
                "batch_size": batch,
                "clients": clients,
                "accounts": accounts,
                "commit_latency_us_p50": h.value_at_quantile(0.50),
                "commit_latency_us_p99": h.value_at_quantile(0.99),
                "commit_latency_us_max": h.max(),
                "durable": true,
                "seconds_to_commit": committed_s,
                "seconds_until_indexed": indexed_s,
            })
        );
    } else {
        println!(
            "{done} transfers, batch {batch}, {clients} clients: {tps:.0} transfers/s durable; commit p50 {} us, p99 {} us; indexed after {indexed_s:.2} s",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99)
        );
    }
    match Arc::try_unwrap(ledger) {
        Ok(l) => l.close().expect("close"),
        Err(_) => unreachable!(),
    }
}
