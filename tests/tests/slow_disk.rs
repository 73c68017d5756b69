//! A slow disk (#19): every fsync of the node's journal (the ledger's,
//! which carries the switch's records too) delayed by fail points (the
//! store's own journal, used only by a store opened alone, has its fail
//! point too). Answers slow down by at least
//! the delay of every durable write they wait for, so none is acknowledged
//! before what it wrote is on disk; nothing fails, and the ledger balances.
//!
//! The embedded backend's journals (on PostgreSQL the commit is the
//! database's). A file of its own: fail points are process-wide.

use std::time::{Duration, Instant};

use proto::v1 as pb;
use tests::Harness;

const MB: &str = "970422";
const FSYNC_DELAY_MS: u64 = 150;
/// A cash-in waits for two durable writes one after the other (issue
/// #26: one per step): its record with the reservation, then the posting
/// with the final record.
const DURABLE_STEPS: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fsync_slows_answers_and_acknowledges_nothing_early() {
    let h = Harness::start_embedded(|_| {}).await;
    let c = h.customer(MB, 10_000_000);

    let mut fast = Vec::new();
    for i in 0..5 {
        let mut t = h.teller("tam-dao-1");
        let started = Instant::now();
        let tx = t
            .cash_in(&format!("fast-{i}"), MB, &c.account, 10_000)
            .await
            .unwrap();
        assert_eq!(tx.status, pb::TxStatus::Completed as i32);
        fast.push(started.elapsed());
    }

    let sleep = format!("sleep({FSYNC_DELAY_MS})");
    fail::cfg("ledger-journal-fsync", &sleep).unwrap();
    fail::cfg("switch-journal-fsync", &sleep).unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8 {
        let mut t = h.teller("tam-dao-1");
        let account = c.account.clone();
        calls.spawn(async move {
            let started = Instant::now();
            let tx = t.cash_in(&format!("slow-{i}"), MB, &account, 10_000).await;
            (tx, started.elapsed())
        });
    }
    let floor = Duration::from_millis(FSYNC_DELAY_MS) * DURABLE_STEPS;
    let mut slow = Vec::new();
    while let Some(joined) = calls.join_next().await {
        let (tx, took) = joined.unwrap();
        let tx = tx.expect("a slow disk refuses nothing");
        assert_eq!(tx.status, pb::TxStatus::Completed as i32);
        assert!(
            took >= floor,
            "acknowledged after {took:?}: sooner than its {DURABLE_STEPS} fsyncs of {FSYNC_DELAY_MS} ms"
        );
        slow.push(took);
    }
    fail::remove("ledger-journal-fsync");
    fail::remove("switch-journal-fsync");
    eprintln!("fast: {fast:?}; with slow fsyncs: {slow:?}");
    assert!(
        slow.iter().min() > fast.iter().max(),
        "latency rises with the disk's"
    );
    h.assert_ledger_clean().await;
}
