//! Requests a counter took while it could not reach the switch, forwarded
//! later (issue #29), as the switch sees them: accepted within the offline
//! policy's maximum age with their original time, counted on the day they
//! happened; refused past it (`offline_too_old`) and for what may not wait
//! (`not_deferrable`); a retry gets its first answer even past the age; the
//! policy comes signed for its terminal.

use proto::v1 as pb;
use tests::{Harness, error_code};

const MB: &str = "970422";
const TERMINAL: &str = "tho-tang-1";

fn now_ms() -> i64 {
    proto::auth::now_ms()
}

fn top_up(request_id: &str, taken_at_ms: i64) -> pb::TopUpRequest {
    pb::TopUpRequest {
        client_request_id: request_id.into(),
        provider: "VIETTEL".into(),
        phone: "0961234567".into(),
        amount: 50_000,
        funding: pb::Funding::Cash as i32,
        offline_taken_at_ms: taken_at_ms,
        ..Default::default()
    }
}

async fn send_top_up(h: &Harness, m: pb::TopUpRequest) -> Result<pb::Transaction, tonic::Status> {
    let mut t = h.teller(TERMINAL);
    t.bills
        .top_up(t.credentials.sign("/paymentswitch.v1.Bills/TopUp", m))
        .await
        .map(|r| r.into_inner().transaction.expect("a transaction"))
}

async fn send_cash_in(h: &Harness, m: pb::CashInRequest) -> Result<pb::Transaction, tonic::Status> {
    let mut t = h.teller(TERMINAL);
    t.client
        .cash_in(t.credentials.sign("/paymentswitch.v1.Teller/CashIn", m))
        .await
        .map(|r| r.into_inner().transaction.expect("a transaction"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_top_up_keeps_its_time_and_a_stale_one_is_refused() {
    let h = Harness::start(|c| c.offline.max_age_ms = 3_600_000).await;
    let taken = now_ms() - 20 * 60_000;
    let tx = send_top_up(&h, top_up("off-1", taken)).await.unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert_eq!(tx.taken_at_ms, taken);

    let stale = send_top_up(&h, top_up("off-2", now_ms() - 2 * 3_600_000))
        .await
        .unwrap_err();
    assert_eq!(error_code(&stale), "offline_too_old");
    let future = send_top_up(&h, top_up("off-3", now_ms() + 3_600_000))
        .await
        .unwrap_err();
    assert_eq!(error_code(&future), "invalid_argument");

    // The same request again, even now claiming an older time, is the
    // first answer: a forward retried after its answer was lost.
    let again = send_top_up(&h, top_up("off-1", taken)).await.unwrap();
    assert_eq!(again.transaction_id, tx.transaction_id);

    // Cards and QR never wait.
    let mut card = top_up("off-4", now_ms() - 60_000);
    card.funding = pb::Funding::Qr as i32;
    let e = send_top_up(&h, card).await.unwrap_err();
    assert_eq!(error_code(&e), "not_deferrable");
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cash_in_waits_only_where_the_policy_lets_it_and_counts_on_its_day() {
    // The policy lets cash-ins wait (as once the partner bank agrees),
    // for two days, so that yesterday's is still in time.
    let h = Harness::start(|c| {
        c.offline.cash_in = true;
        c.offline.max_age_ms = 48 * 3_600_000;
    })
    .await;
    let saver = h.customer(MB, 0);
    let yesterday_late =
        switch::civil::day_start_ms(switch::civil::day_number(now_ms())) - 3_600_000;
    let cash_in = |id: &str, amount: u64, taken: i64| pb::CashInRequest {
        client_request_id: id.into(),
        bank_bin: MB.into(),
        account: saver.account.clone(),
        amount,
        teller: "Nguyễn Thị Lan".into(),
        offline_taken_at_ms: taken,
    };
    let late = send_cash_in(&h, cash_in("off-ci-1", 15_000_000, yesterday_late))
        .await
        .unwrap();
    assert_eq!(late.status, pb::TxStatus::Completed as i32);
    // Counted yesterday: today the customer still has the whole 20 million.
    let today = send_cash_in(&h, cash_in("off-ci-2", 15_000_000, 0))
        .await
        .unwrap();
    assert_eq!(today.status, pb::TxStatus::Completed as i32);
    // Yesterday's day is full now: one more taken yesterday is over it.
    let over = send_cash_in(&h, cash_in("off-ci-3", 6_000_000, yesterday_late + 1))
        .await
        .unwrap_err();
    assert_eq!(error_code(&over), "customer_daily_limit");
    h.assert_ledger_clean().await;

    // By default a cash-in may not wait.
    let h = h.restart(|c| c.offline.cash_in = false).await;
    let e = send_cash_in(&h, cash_in("off-ci-4", 100_000, now_ms() - 60_000))
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "not_deferrable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_policy_comes_signed_for_its_terminal() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller(TERMINAL);
    let policy = t
        .client
        .get_offline_policy(t.credentials.sign(
            "/paymentswitch.v1.Teller/GetOfflinePolicy",
            pb::GetOfflinePolicyRequest {},
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(policy.top_up && policy.bills && !policy.cash_in);
    assert_eq!(policy.terminal_id, TERMINAL);
    assert!(proto::offline::verify(&policy, &t.credentials.pin_key()));
    let other = h.credentials("tho-tang-2");
    assert!(!proto::offline::verify(&policy, &other.pin_key()));
    let mut raised = policy.clone();
    raised.total_max *= 100;
    assert!(!proto::offline::verify(&raised, &t.credentials.pin_key()));
}
