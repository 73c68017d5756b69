//! Two switch nodes on one PostgreSQL (issue #14): any request may reach
//! any node. Each test starts its own throw-away cluster, whichever backend
//! the rest of the suite runs on.

use std::sync::Arc;

use proto::v1 as pb;
use tests::{Harness, error_code};

const MB: &str = "970422";

/// Node A (which provisions the demo network), then node B.
async fn two_nodes() -> (Harness, Harness) {
    let pg = Arc::new(pgtest::Cluster::start());
    let a = Harness::start_node(tempfile::tempdir().unwrap(), pg.clone(), None, |_| {}).await;
    let profiles = a.data_dir().join("profiles");
    let b = Harness::start_node(tempfile::tempdir().unwrap(), pg, Some(&profiles), |_| {}).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cash_out_started_on_one_node_is_confirmed_on_the_other_once() {
    let (a, b) = two_nodes().await;
    let c = a.customer(MB, 1_000_000);
    let before = a.bank_balance(MB, &c.account);
    let code = a.withdrawal_code(MB, &c.account, 500_000);
    let mut on_a = a.teller("tho-tang-1");
    let mut on_b = b.teller("tho-tang-1");
    let started = on_a
        .cash_out_start("out-1", MB, &c.account, &code, 500_000)
        .await
        .unwrap();
    assert_eq!(started.status(), pb::TxStatus::Pending);
    // Node B sees it, and confirms it.
    let seen = on_b.get(&started.transaction_id).await.unwrap();
    assert_eq!(seen.transaction.unwrap().status(), pb::TxStatus::Pending);
    let (ra, rb) = tokio::join!(
        on_b.cash_out_confirm(&started.transaction_id),
        on_a.cash_out_confirm(&started.transaction_id)
    );
    // Both answer the one outcome: confirmed once.
    assert_eq!(ra.unwrap().status(), pb::TxStatus::Completed);
    assert_eq!(rb.unwrap().status(), pb::TxStatus::Completed);
    let e = on_a
        .cash_out_cancel(&started.transaction_id)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "not_pending", "{e:?}");
    assert_eq!(
        a.bank_balance(MB, &c.account),
        before - 500_000 - started.fee
    );
    a.assert_ledger_clean().await;
    b.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_sent_to_the_other_node_answers_the_same_transaction() {
    let (a, b) = two_nodes().await;
    let c = a.customer(MB, 0);
    let first = a
        .teller("tho-tang-1")
        .cash_in("in-1", MB, &c.account, 300_000)
        .await
        .unwrap();
    let retry = b
        .teller("tho-tang-1")
        .cash_in("in-1", MB, &c.account, 300_000)
        .await
        .unwrap();
    assert_eq!(retry.transaction_id, first.transaction_id);
    assert_eq!(retry.status(), pb::TxStatus::Completed);
    // The same request id with other content is refused on either node.
    let e = b
        .teller("tho-tang-1")
        .cash_in("in-1", MB, &c.account, 300_001)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "request_id_reused", "{e:?}");
    b.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_at_a_time_runs_the_background_jobs_and_the_other_takes_over() {
    let (a, b) = two_nodes().await;
    // A started first: its worker took the lease (or takes it now); B is
    // refused while A lives.
    assert!(a.switch.store.worker_lease().await.unwrap());
    assert!(!b.switch.store.worker_lease().await.unwrap());
    // A goes away (its connections close): B's next ask takes it.
    drop(a);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !b.switch.store.worker_lease().await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "B never took the lease"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
