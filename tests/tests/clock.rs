//! The wall clock stepped forwards and backwards by half an hour while the
//! switch serves (#19): no deadline, expiry, window or timestamp moves with
//! it. The step is simulated where the switch reads the wall clock
//! (`switch::clock`, the only reader: `switch/tests/layering.rs`); the
//! clients stay on true time, as terminals on other machines would.
//!
//! Each check is one a switch that followed the wall clock would fail: after
//! the step forwards it would cancel the pending cash-out, refuse the QR
//! code as expired and close the window on schedule; after the step
//! backwards it would not cancel a late cash-out for half an hour, and it
//! would stamp transactions half an hour in the past.
//!
//! A file of its own: the step is process-wide.

use proto::v1 as pb;
use tests::{Harness, error_code};

const MB: &str = "970422";
const PAYER_BANK: &str = "970436";
const STEP_MS: i64 = 30 * 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stepped_wall_clock_moves_no_deadline_expiry_window_or_timestamp() {
    let h = Harness::start(|c| {
        c.cash_out_confirm_timeout_ms = 5_000;
        c.settlement.interval_ms = Some(10 * 60_000);
    })
    .await;
    let c = h.customer(MB, 10_000_000);
    let payer = h.customer(PAYER_BANK, 1_000_000);
    let mut t = h.teller("tam-dao-1");
    let mut m = h.merchant("tap-hoa-tho-tang");
    let mut ops = h.settlement("operator");

    let code = h.withdrawal_code(MB, &c.account, 1_000_000);
    let pending = t
        .cash_out_start("before-step", MB, &c.account, &code, 1_000_000)
        .await
        .unwrap();
    assert_eq!(pending.status, pb::TxStatus::Pending as i32);
    let qr = m.create_qr("order-1", 150_000, "DH-1", 60).await.unwrap();
    let first = t.cash_in("in-1", MB, &c.account, 200_000).await.unwrap();

    // Forwards by half an hour; let the maintenance loop (every 500 ms)
    // run its deadline, expiry and schedule passes a few times.
    switch::clock::step_wall_ms(STEP_MS);
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(
        t.cash_out_confirm(&pending.transaction_id)
            .await
            .unwrap()
            .status,
        pb::TxStatus::Completed as i32,
        "the cash-out's deadline did not jump"
    );
    let paid = h
        .bank(PAYER_BANK)
        .pay_qr("pay-1", &qr.payload, &payer.account, 0)
        .await
        .unwrap();
    assert_eq!(
        paid.status,
        pb::TxStatus::Completed as i32,
        "the code did not expire"
    );
    let windows = ops.windows().await;
    assert_eq!(windows.len(), 1, "no window closed on the jumped schedule");
    assert_eq!(windows[0].closed_at_ms, 0);
    let offset_ms = switch::clock::observe_wall();
    assert!(
        (offset_ms - STEP_MS).abs() < 1_000,
        "the step is seen ({offset_ms} ms)"
    );
    let second = t.cash_in("in-2", MB, &c.account, 200_000).await.unwrap();
    assert!(
        (second.created_at_ms - proto::auth::now_ms()).abs() < 60_000,
        "stamped on true time, not the jumped one"
    );

    // Backwards, to half an hour behind true time.
    switch::clock::step_wall_ms(-2 * STEP_MS);
    let late_code = h.withdrawal_code(MB, &c.account, 500_000);
    let before_late = h.bank_balance(MB, &c.account);
    let late = t
        .cash_out_start("after-step", MB, &c.account, &late_code, 500_000)
        .await
        .expect("a client on true time still passes the freshness check");
    let third = t.cash_in("in-3", MB, &c.account, 200_000).await.unwrap();
    assert_eq!(third.status, pb::TxStatus::Completed as i32);
    assert!(
        first.created_at_ms <= second.created_at_ms && second.created_at_ms <= third.created_at_ms,
        "timestamps never go back"
    );
    assert!((third.created_at_ms - proto::auth::now_ms()).abs() < 60_000);
    // The unconfirmed cash-out is cancelled at its deadline, not half an
    // hour later.
    h.eventually(30, "the late cash-out is cancelled on time", |h| {
        h.bank_balance(MB, &c.account) == before_late + 200_000
    })
    .await;
    let shown = t
        .get(&late.transaction_id)
        .await
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(
        (shown.status, shown.error_code.as_str()),
        (pb::TxStatus::Reversed as i32, "confirmation_timeout")
    );
    let e = t.cash_out_confirm(&late.transaction_id).await.unwrap_err();
    assert_eq!(error_code(&e), "not_pending");
    assert_eq!(ops.windows().await.len(), 1);

    switch::clock::step_wall_ms(STEP_MS);
    assert!(switch::clock::observe_wall().abs() < 1_000);
    h.assert_ledger_clean().await;
}
