//! Cash-out (soft ATM) end to end: a one-time code from the customer's
//! bank, the drawer's limit, confirmation, cancellation, the confirmation
//! deadline, code attempts, and a restart in the middle.

use proto::v1 as pb;
use switch::accounts::Kind;
use tests::{Harness, error_code};
use tonic::Code;

const MB: &str = "970422";
/// tam-dao is post office 2; tam-dao-1 is terminal 201.
const TAM_DAO: u64 = 2;
const TAM_DAO_1: u64 = 201;
/// The drawer's opening cash.
const OPENING: i128 = 20_000_000;

fn pending() -> i32 {
    pb::TxStatus::Pending as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_cash_out_debits_the_customer_and_empties_the_drawer() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 10_000_000);
    let efloat = h.ledger_balance(Kind::EFloat.id(TAM_DAO)).await;
    let mut t = h.teller("tam-dao-1");
    let code = h.withdrawal_code(MB, &c.account, 2_000_000);
    let tx = t
        .cash_out_start("co-1", MB, &c.account, &code, 2_000_000)
        .await
        .unwrap();
    assert_eq!(tx.status, pending());
    assert_eq!(tx.fee, 6_000, "2,000 + 0.2 % of 2,000,000");
    assert_eq!(
        h.bank_balance(MB, &c.account),
        c.balance - 2_006_000,
        "the bank debited amount and fee"
    );
    let drawer = h
        .switch
        .ledger
        .account(Kind::Drawer.id(TAM_DAO_1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        drawer.debit_balance_available(),
        OPENING - 2_000_000,
        "the cash is reserved"
    );
    // Retrying the start answers the same pending transaction.
    assert_eq!(
        t.cash_out_start("co-1", MB, &c.account, &code, 2_000_000)
            .await
            .unwrap()
            .transaction_id,
        tx.transaction_id
    );
    let done = t.cash_out_confirm(&tx.transaction_id).await.unwrap();
    assert_eq!(done.status, pb::TxStatus::Completed as i32);
    assert_eq!(
        t.cash_out_confirm(&tx.transaction_id).await.unwrap().status,
        done.status,
        "confirming twice is harmless"
    );
    assert_eq!(
        -h.ledger_balance(Kind::Drawer.id(TAM_DAO_1)).await,
        OPENING - 2_000_000
    );
    assert_eq!(
        h.ledger_balance(Kind::EFloat.id(TAM_DAO)).await,
        efloat + 2_000_000,
        "the bank owes the post office's e-float"
    );
    let e = t.cash_out_cancel(&tx.transaction_id).await.unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::FailedPrecondition, "not_pending")
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_cash_out_is_reversed_at_the_bank() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 10_000_000);
    let mut t = h.teller("tam-dao-1");
    let code = h.withdrawal_code(MB, &c.account, 1_000_000);
    let tx = t
        .cash_out_start("co-2", MB, &c.account, &code, 1_000_000)
        .await
        .unwrap();
    let cancelled = t.cash_out_cancel(&tx.transaction_id).await.unwrap();
    assert_eq!(
        (cancelled.status, cancelled.error_code.as_str()),
        (pb::TxStatus::Reversed as i32, "cancelled")
    );
    h.eventually(10, "the bank returns the money", |h| {
        h.bank_balance(MB, &c.account) == c.balance
    })
    .await;
    assert_eq!(
        -h.ledger_balance(Kind::Drawer.id(TAM_DAO_1)).await,
        OPENING,
        "no cash left the drawer"
    );
    let e = t.cash_out_confirm(&tx.transaction_id).await.unwrap_err();
    assert_eq!(error_code(&e), "not_pending");
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_are_refused_and_limited() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 10_000_000);
    let mut t = h.teller("tam-dao-1");
    let code = h.withdrawal_code(MB, &c.account, 1_000_000);
    // The right code for another amount is wrong too.
    let e = t
        .cash_out_start("w0", MB, &c.account, &code, 900_000)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::FailedPrecondition, "invalid_code")
    );
    for i in 1..3 {
        let e = t
            .cash_out_start(&format!("w{i}"), MB, &c.account, "00000000", 1_000_000)
            .await
            .unwrap_err();
        assert_eq!(error_code(&e), "invalid_code");
    }
    // Three wrong tries today: even the right code is no longer tried.
    let e = t
        .cash_out_start("w3", MB, &c.account, &code, 1_000_000)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::ResourceExhausted, "too_many_code_attempts")
    );
    assert_eq!(h.bank_balance(MB, &c.account), c.balance);
    let e = t
        .cash_out_start("w4", MB, &c.account, "12ab", 1_000_000)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drawer_never_pays_out_cash_it_does_not_hold() {
    // Beyond the customer's daily agent limit (20,000,000): the drawer is
    // what refuses here.
    let h = Harness::start(|c| {
        c.cash_out.amount_max = 100_000_000;
        c.customer_daily_max = u64::MAX;
    })
    .await;
    let rich = h.customer(MB, 25_000_000);
    let mut t = h.teller("tam-dao-1");
    let code = h.withdrawal_code(MB, &rich.account, 20_000_001);
    let e = t
        .cash_out_start("big", MB, &rich.account, &code, 20_000_001)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::FailedPrecondition, "insufficient_cash")
    );
    assert_eq!(
        h.bank_balance(MB, &rich.account),
        rich.balance,
        "the bank was never asked"
    );
    // Two payouts that fit alone but not together: the second is refused
    // while the first is only reserved.
    let a = h.withdrawal_code(MB, &rich.account, 15_000_000);
    t.cash_out_start("a", MB, &rich.account, &a, 15_000_000)
        .await
        .unwrap();
    let other = h
        .customers()
        .into_iter()
        .find(|c| c.bank == MB && c.account != rich.account && c.balance >= 10_000_000)
        .unwrap();
    let b = h.withdrawal_code(MB, &other.account, 6_000_000);
    let e = t
        .cash_out_start("b", MB, &other.account, &b, 6_000_000)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "insufficient_cash");
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_cash_out_is_cancelled_at_its_deadline() {
    let h = Harness::start(|c| c.cash_out_confirm_timeout_ms = 300).await;
    let c = h.customer(MB, 10_000_000);
    let mut t = h.teller("tam-dao-1");
    let code = h.withdrawal_code(MB, &c.account, 1_000_000);
    let tx = t
        .cash_out_start("late", MB, &c.account, &code, 1_000_000)
        .await
        .unwrap();
    h.eventually(10, "the bank returns the money", |h| {
        h.bank_balance(MB, &c.account) == c.balance
    })
    .await;
    let shown = t
        .get(&tx.transaction_id)
        .await
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(
        (shown.status, shown.error_code.as_str()),
        (pb::TxStatus::Reversed as i32, "confirmation_timeout")
    );
    let e = t.cash_out_confirm(&tx.transaction_id).await.unwrap_err();
    assert_eq!(error_code(&e), "not_pending");
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_cash_out_survives_a_restart_and_only_its_terminal_confirms_it() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 10_000_000);
    let code = h.withdrawal_code(MB, &c.account, 3_000_000);
    let tx = h
        .teller("tam-dao-1")
        .cash_out_start("r", MB, &c.account, &code, 3_000_000)
        .await
        .unwrap();
    let h = h.restart(|_| {}).await;
    let e = h
        .teller("tam-dao-2")
        .cash_out_confirm(&tx.transaction_id)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::NotFound, "transaction_not_found")
    );
    let done = h
        .teller("tam-dao-1")
        .cash_out_confirm(&tx.transaction_id)
        .await
        .unwrap();
    assert_eq!(done.status, pb::TxStatus::Completed as i32);
    assert_eq!(
        h.bank_balance(MB, &c.account),
        c.balance - 3_000_000 - done.fee
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cash_out_input_gets_a_clear_status_and_posts_nothing() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 10_000_000);
    let code = h.withdrawal_code(MB, &c.account, 1_000_000);
    let mut t = h.teller("tam-dao-1");
    let long = "r".repeat(65);
    let cases: Vec<(&str, &str, &str, &str, u64, Code, &str)> = vec![
        (
            "c1",
            MB,
            &c.account,
            &code,
            0,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            "c2",
            MB,
            &c.account,
            &code,
            49_999,
            Code::InvalidArgument,
            "amount_below_minimum",
        ),
        (
            "c3",
            MB,
            &c.account,
            &code,
            20_000_001,
            Code::InvalidArgument,
            "amount_above_maximum",
        ),
        (
            "c4",
            "970499",
            &c.account,
            &code,
            1_000_000,
            Code::NotFound,
            "unknown_bank",
        ),
        (
            "c5",
            "9704",
            &c.account,
            &code,
            1_000_000,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            "c6",
            MB,
            "12",
            &code,
            1_000_000,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            "c7",
            MB,
            &c.account,
            "",
            1_000_000,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            "c8",
            MB,
            &c.account,
            "1234567890123",
            1_000_000,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            &long,
            MB,
            &c.account,
            &code,
            1_000_000,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            "c9",
            MB,
            "99999999999",
            &code,
            1_000_000,
            Code::FailedPrecondition,
            "invalid_code",
        ),
    ];
    for (request_id, bin, account, code, amount, grpc, error) in cases {
        let e = t
            .cash_out_start(request_id, bin, account, code, amount)
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), error_code(&e).as_str()),
            (grpc, error),
            "{request_id} {bin} {account} {amount}: {}",
            e.message()
        );
    }
    assert_eq!(h.bank_balance(MB, &c.account), c.balance);
    assert_eq!(-h.ledger_balance(Kind::Drawer.id(TAM_DAO_1)).await, OPENING);
    // The code still works for the right request.
    let tx = t
        .cash_out_start("ok", MB, &c.account, &code, 1_000_000)
        .await
        .unwrap();
    assert_eq!(tx.status, pending());
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_decided_before_a_crash_is_finished_not_posted() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 10_000_000);
    let code = h.withdrawal_code(MB, &c.account, 1_000_000);
    let tx = h
        .teller("tam-dao-1")
        .cash_out_start("crash", MB, &c.account, &code, 1_000_000)
        .await
        .unwrap();
    // The switch decided to reverse (record and job durable together) and
    // died before releasing the reservation.
    let id = switch::ids::TxId::parse(&tx.transaction_id).unwrap();
    let mut rec = h.switch.store.get_tx(id).unwrap().unwrap();
    rec.stage = switch::store::Stage::Reversing;
    rec.error_code = Some("cancelled".into());
    rec.error_message = Some("cancelled at the counter".into());
    let job = switch::store::ReversalJob {
        reference: rec.id.clone(),
        party: switch::store::Party::Bank(MB.into()),
        attempts: 0,
        next_attempt_at_ms: 0,
    };
    assert!(h.switch.store.begin_reversal(&rec, &[job]).unwrap());
    h.switch.store.durable().await.unwrap();
    let h = h.restart(|_| {}).await;
    let mut t = h.teller("tam-dao-1");
    let e = t.cash_out_confirm(&tx.transaction_id).await.unwrap_err();
    assert_eq!(
        error_code(&e),
        "not_pending",
        "a decided reversal is never posted"
    );
    let shown = t
        .get(&tx.transaction_id)
        .await
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(
        (shown.status, shown.error_code.as_str()),
        (pb::TxStatus::Reversed as i32, "cancelled")
    );
    h.eventually(10, "the bank returns the money", |h| {
        h.bank_balance(MB, &c.account) == c.balance
    })
    .await;
    assert_eq!(
        -h.ledger_balance(Kind::Drawer.id(TAM_DAO_1)).await,
        OPENING,
        "the reservation was released"
    );
    let check = h.switch.ledger.check().await.unwrap();
    assert_eq!(check.pending_transfers, 0);
    h.assert_ledger_clean().await;
}
