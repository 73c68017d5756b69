//! Shifts: the drawer counted at open and close, variances posted to the
//! ledger, and cash transactions only within an open shift.

use switch::accounts::Kind;
use tests::{Harness, error_code};
use tonic::Code;

const MB: &str = "970422";
/// lang-cong is post office 4; lang-cong-1 is terminal 401.
const LANG_CONG: u64 = 4;
const LANG_CONG_1: u64 = 401;
const OPENING: u64 = 20_000_000;

async fn drawer(h: &Harness) -> i128 {
    -h.ledger_balance(Kind::Drawer.id(LANG_CONG_1)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_closes_with_its_variance_and_cash_waits_for_the_next_one() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 0);
    let mut t = h.teller("lang-cong-1");
    t.cash_in("s1", MB, &c.account, 1_000_000).await.unwrap();
    let expected = OPENING + 1_000_000 + 5_000;
    assert_eq!(drawer(&h).await, expected as i128);
    // 50,000 short at the count.
    let closed = t.close_shift(expected - 50_000).await.unwrap();
    assert_eq!(
        (
            closed.status.as_str(),
            closed.expected_cash,
            closed.counted_cash,
            closed.variance
        ),
        ("closed", expected, expected - 50_000, -50_000)
    );
    assert_eq!(
        drawer(&h).await,
        (expected - 50_000) as i128,
        "the ledger's drawer now matches the count"
    );
    assert_eq!(
        h.ledger_balance(Kind::CashVariance.id(LANG_CONG)).await,
        -50_000,
        "the shortage is on record"
    );
    let e = t
        .cash_in("s2", MB, &c.account, 1_000_000)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::FailedPrecondition, "no_open_shift")
    );
    let e = t.close_shift(0).await.unwrap_err();
    assert_eq!(error_code(&e), "no_open_shift");
    // The next shift opens on a count 10,000 over what the ledger holds.
    let opened = t.open_shift(expected - 40_000).await.unwrap();
    assert_eq!(
        (
            opened.status.as_str(),
            opened.opening_cash,
            opened.opening_expected
        ),
        ("open", expected - 40_000, expected - 50_000)
    );
    assert_eq!(drawer(&h).await, (expected - 40_000) as i128);
    assert_eq!(
        h.ledger_balance(Kind::CashVariance.id(LANG_CONG)).await,
        -40_000
    );
    let e = t.open_shift(1).await.unwrap_err();
    assert_eq!(error_code(&e), "shift_already_open");
    t.cash_in("s3", MB, &c.account, 1_000_000).await.unwrap();
    let balanced = t.close_shift(expected - 40_000 + 1_005_000).await.unwrap();
    assert_eq!(balanced.variance, 0);
    // The other terminal's shift is its own.
    h.teller("lang-cong-2")
        .cash_in("s4", MB, &c.account, 1_000_000)
        .await
        .unwrap();
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_does_not_close_over_a_pending_cash_out() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 10_000_000);
    let mut t = h.teller("lang-cong-1");
    let code = h.withdrawal_code(MB, &c.account, 1_000_000);
    let tx = t
        .cash_out_start("p", MB, &c.account, &code, 1_000_000)
        .await
        .unwrap();
    let e = t.close_shift(OPENING - 1_000_000).await.unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::FailedPrecondition, "cash_outs_pending")
    );
    t.cash_out_confirm(&tx.transaction_id).await.unwrap();
    let closed = t.close_shift(OPENING - 1_000_000).await.unwrap();
    assert_eq!(closed.variance, 0);
    h.assert_ledger_clean().await;
}
