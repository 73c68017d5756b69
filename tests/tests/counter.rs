//! The counter flows end to end over real gRPC: name inquiry and cash-in,
//! idempotency across restarts, bad input, authentication, visibility, and
//! unknown bank outcomes. The ledger's invariants are checked after every
//! test.

use proto::v1 as pb;
use switch::accounts::Kind;
use tests::{Harness, error_code};
use tonic::Code;

/// tho-tang is post office 1; its terminals are 101 and 102.
const THO_TANG: u64 = 1;
const THO_TANG_1: u64 = 101;
const MB: &str = "970422";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_inquiry_shows_the_holder_and_refuses_what_it_cannot_route() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 0);
    let mut t = h.teller("tho-tang-1");
    let r = t.name_inquiry(MB, &c.account).await.unwrap();
    assert_eq!(
        (r.account_name.as_str(), r.bank_name.as_str()),
        (c.name.as_str(), "MB")
    );
    assert!(
        r.account_masked
            .ends_with(&c.account[c.account.len() - 4..])
            && r.account_masked.starts_with('*')
    );
    let cases = [
        ("970499", c.account.as_str(), Code::NotFound, "unknown_bank"),
        (
            "97042",
            c.account.as_str(),
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (MB, "12-34", Code::InvalidArgument, "invalid_argument"),
        (MB, "99999999999", Code::NotFound, "account_not_found"),
    ];
    for (bin, account, code, error) in cases {
        let e = t.name_inquiry(bin, account).await.unwrap_err();
        assert_eq!(
            (e.code(), error_code(&e).as_str()),
            (code, error),
            "{bin} {account}: {}",
            e.message()
        );
        assert!(
            !e.message().contains("99999999999"),
            "full account numbers never appear: {}",
            e.message()
        );
    }
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cash_in_credits_the_customer_from_e_float_and_fills_the_drawer() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 0);
    let efloat = h.ledger_balance(Kind::EFloat.id(THO_TANG)).await;
    let drawer = -h.ledger_balance(Kind::Drawer.id(THO_TANG_1)).await;
    let mut t = h.teller("tho-tang-1");
    let tx = t.cash_in("r-1", MB, &c.account, 1_000_000).await.unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert_eq!(tx.fee, 5_000, "0.5 % of 1,000,000");
    assert!(!tx.bank_reference.is_empty());
    assert_eq!(h.bank_balance(MB, &c.account), c.balance + 1_000_000);
    assert_eq!(
        h.ledger_balance(Kind::EFloat.id(THO_TANG)).await,
        efloat - 1_000_000
    );
    assert_eq!(
        -h.ledger_balance(Kind::Drawer.id(THO_TANG_1)).await,
        drawer + 1_005_000,
        "cash and fee are in the drawer"
    );
    assert_eq!(
        h.ledger_balance(Kind::Commission.id(THO_TANG)).await,
        3_000,
        "60 % of the fee"
    );
    let shown = t.get(&tx.transaction_id).await.unwrap();
    assert!(
        shown.receipt.contains("1,005,000 VND") && shown.receipt.contains("COMPLETED"),
        "{}",
        shown.receipt
    );
    assert!(
        !shown.receipt.contains(&c.account),
        "the receipt masks the account"
    );
    let listed = t.list(10, "").await;
    assert_eq!(listed.transactions.len(), 1);
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_returns_the_original_outcome_even_after_a_restart() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 0);
    let mut t = h.teller("tho-tang-1");
    let first = t.cash_in("same", MB, &c.account, 200_000).await.unwrap();
    let again = t.cash_in("same", MB, &c.account, 200_000).await.unwrap();
    assert_eq!(again.transaction_id, first.transaction_id);
    let e = t
        .cash_in("same", MB, &c.account, 300_000)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::AlreadyExists, "request_id_reused")
    );
    // Another terminal may use the same request id for its own request.
    let other = h
        .teller("tho-tang-2")
        .cash_in("same", MB, &c.account, 200_000)
        .await
        .unwrap();
    assert_ne!(other.transaction_id, first.transaction_id);
    let balance = h.bank_balance(MB, &c.account);
    let h = h.restart(|_| {}).await;
    let mut t = h.teller("tho-tang-1");
    let after = t.cash_in("same", MB, &c.account, 200_000).await.unwrap();
    assert_eq!(
        (after.transaction_id, after.status),
        (first.transaction_id, pb::TxStatus::Completed as i32)
    );
    assert_eq!(h.bank_balance(MB, &c.account), balance, "no second credit");
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_status_and_posts_nothing() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 0);
    let mut t = h.teller("tho-tang-1");
    let long = "x".repeat(65);
    let cases: Vec<(&str, &str, &str, u64, Code, &str)> = vec![
        (
            "r1",
            MB,
            &c.account,
            0,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            "r2",
            MB,
            &c.account,
            9_999,
            Code::InvalidArgument,
            "amount_below_minimum",
        ),
        (
            "r3",
            MB,
            &c.account,
            50_000_001,
            Code::InvalidArgument,
            "amount_above_maximum",
        ),
        (
            "r4",
            "970499",
            &c.account,
            100_000,
            Code::NotFound,
            "unknown_bank",
        ),
        (
            "r5",
            "abcdef",
            &c.account,
            100_000,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            "r6",
            MB,
            "123",
            100_000,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            "r7",
            MB,
            "12345678901234567890",
            100_000,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            "r8",
            MB,
            "0123 4567",
            100_000,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            &long,
            MB,
            &c.account,
            100_000,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            "",
            MB,
            &c.account,
            100_000,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            "bad id",
            MB,
            &c.account,
            100_000,
            Code::InvalidArgument,
            "invalid_argument",
        ),
        (
            "r9",
            MB,
            "99999999999",
            100_000,
            Code::NotFound,
            "account_not_found",
        ),
        (
            "r10",
            MB,
            &c.account,
            u64::MAX,
            Code::InvalidArgument,
            "amount_above_maximum",
        ),
    ];
    let efloat = h.ledger_balance(Kind::EFloat.id(THO_TANG)).await;
    for (request_id, bin, account, amount, code, error) in cases {
        let e = t
            .cash_in(request_id, bin, account, amount)
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), error_code(&e).as_str()),
            (code, error),
            "{request_id} {bin} {account} {amount}: {}",
            e.message()
        );
    }
    assert_eq!(
        h.ledger_balance(Kind::EFloat.id(THO_TANG)).await,
        efloat,
        "nothing posted"
    );
    assert_eq!(h.bank_balance(MB, &c.account), c.balance);
    // Only the bank's refusal created a (failed) transaction.
    let listed = t.list(50, "").await.transactions;
    assert!(
        listed
            .iter()
            .all(|t| t.status == pb::TxStatus::Failed as i32),
        "{listed:?}"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_forged_stale_and_replayed_requests_are_refused() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 0);
    let msg = || pb::NameInquiryRequest {
        bank_bin: MB.into(),
        account: c.account.clone(),
    };
    let path = "/paymentswitch.v1.Teller/NameInquiry";
    let mut raw = h.raw_teller();
    let creds = h.credentials("tho-tang-1");
    let unsigned = raw
        .name_inquiry(tonic::Request::new(msg()))
        .await
        .unwrap_err();
    assert_eq!(
        unsigned.code(),
        Code::Unauthenticated,
        "{}",
        unsigned.message()
    );
    let forged = proto::auth::Credentials::new("tho-tang-1", vec![7; 32]);
    assert_eq!(
        raw.name_inquiry(forged.sign(path, msg()))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let unknown = proto::auth::Credentials::new("nobody", vec![7; 32]);
    assert_eq!(
        raw.name_inquiry(unknown.sign(path, msg()))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let stale = creds.sign_at(
        path,
        msg(),
        proto::auth::now_ms() - 600_000,
        &proto::auth::nonce(),
    );
    let e = raw.name_inquiry(stale).await.unwrap_err();
    assert!(
        e.code() == Code::Unauthenticated && e.message().contains("stale"),
        "{}",
        e.message()
    );
    // Signed for one method, sent to another.
    let wrong_path = creds.sign("/paymentswitch.v1.Teller/CashIn", msg());
    assert_eq!(
        raw.name_inquiry(wrong_path).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // Signed over one message, carrying another.
    let mut tampered = creds.sign(path, msg());
    tampered.get_mut().account = "0000000000".into();
    assert_eq!(
        raw.name_inquiry(tampered).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let nonce = proto::auth::nonce();
    let now = proto::auth::now_ms();
    raw.name_inquiry(creds.sign_at(path, msg(), now, &nonce))
        .await
        .expect("first use of a nonce");
    let replay = raw
        .name_inquiry(creds.sign_at(path, msg(), now, &nonce))
        .await
        .unwrap_err();
    assert!(
        replay.code() == Code::Unauthenticated && replay.message().contains("replayed"),
        "{}",
        replay.message()
    );
    // A teller cannot call the operators' service.
    let admin = proto::v1::admin_client::AdminClient::connect(format!("http://{}", h.addr))
        .await
        .unwrap()
        .check_ledger(creds.sign(
            "/paymentswitch.v1.Admin/CheckLedger",
            pb::CheckLedgerRequest {},
        ))
        .await;
    assert_eq!(admin.unwrap_err().code(), Code::PermissionDenied);
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_sees_only_its_own_transactions() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 0);
    let tx = h
        .teller("tho-tang-1")
        .cash_in("mine", MB, &c.account, 100_000)
        .await
        .unwrap();
    for other in ["tho-tang-2", "tam-dao-1"] {
        let mut t = h.teller(other);
        let e = t.get(&tx.transaction_id).await.unwrap_err();
        assert_eq!(
            (e.code(), error_code(&e).as_str()),
            (Code::NotFound, "transaction_not_found")
        );
        assert!(t.list(50, "").await.transactions.is_empty());
    }
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_newest_first() {
    let h = Harness::start(|_| {}).await;
    let customers: Vec<_> = h.customers().into_iter().filter(|c| c.bank == MB).collect();
    let mut t = h.teller("lang-cong-1");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            t.cash_in(
                &format!("p{i}"),
                MB,
                &customers[i % customers.len()].account,
                100_000,
            )
            .await
            .unwrap()
            .transaction_id,
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let first = t.list(2, "").await;
    let second = t.list(2, &first.next_page_token).await;
    let third = t.list(2, &second.next_page_token).await;
    let seen: Vec<String> = [first.transactions, second.transactions, third.transactions]
        .concat()
        .into_iter()
        .map(|t| t.transaction_id)
        .collect();
    ids.reverse();
    assert_eq!(seen, ids);
    assert!(third.next_page_token.is_empty());
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_float_that_cannot_cover_a_cash_in_refuses_it_and_posts_nothing() {
    let h = Harness::start(|c| {
        c.customer_daily_max = u64::MAX;
        c.post_office_daily_max = u64::MAX;
    })
    .await;
    let c = h.customer(MB, 0);
    let mut t = h.teller("huong-dao-1");
    // 500,000,000 of e-float: ten cash-ins of 50,000,000 use it all.
    for i in 0..10 {
        t.cash_in(&format!("f{i}"), MB, &c.account, 50_000_000)
            .await
            .unwrap();
    }
    let bank = h.bank_balance(MB, &c.account);
    let e = t.cash_in("f10", MB, &c.account, 10_000).await.unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::FailedPrecondition, "insufficient_float")
    );
    assert_eq!(e.metadata().get("x-transaction-status").unwrap(), "failed");
    assert_eq!(
        h.bank_balance(MB, &c.account),
        bank,
        "the bank was never asked"
    );
    assert_eq!(h.ledger_balance(Kind::EFloat.id(3)).await, 0);
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_that_never_answers_leads_to_status_inquiry_then_reversal() {
    // The bank credits but its answers are lost, status inquiries too.
    let h = Harness::start(|c| {
        c.sim.lost_response_rate = 1.0;
        c.bank_timeout_ms = 100;
        c.bank_status_attempts = 2;
    })
    .await;
    let c = h.customer(MB, 0);
    let efloat = h.ledger_balance(Kind::EFloat.id(THO_TANG)).await;
    let mut t = h.teller("tho-tang-1");
    let e = t
        .cash_in("lost", MB, &c.account, 700_000)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::Aborted, "bank_outcome_unknown")
    );
    assert_eq!(
        e.metadata().get("x-transaction-status").unwrap(),
        "reversed"
    );
    let id = e
        .metadata()
        .get("x-transaction-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        h.ledger_balance(Kind::EFloat.id(THO_TANG)).await,
        efloat,
        "the reservation was released"
    );
    // The reversal is queued durably; the bank applies it even though its
    // acknowledgement is lost, so the customer is not credited twice or kept.
    assert!(!h.switch.store.reversals().unwrap().is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.bank_balance(MB, &c.account) != c.balance {
        assert!(
            std::time::Instant::now() < deadline,
            "the reversal never reached the bank"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // After a restart with a healthy bank, the queue drains.
    let h = h.restart(|_| {}).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !h.switch.store.reversals().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reversal queue never drained"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(h.bank_balance(MB, &c.account), c.balance);
    // A late credit with the same reference is refused by the bank.
    let late = h.sims.banks[MB].account(&c.account).unwrap();
    assert_eq!(late.balance, c.balance);
    let shown = h.teller("tho-tang-1").get(&id).await.unwrap();
    assert_eq!(
        shown.transaction.unwrap().status,
        pb::TxStatus::Reversed as i32
    );
    h.assert_ledger_clean().await;
}

/// A transaction that does not happen (refused, or reversed after its
/// outcome stayed unknown) gives its daily limits back, once; one that
/// happens keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_reversed_transactions_give_their_daily_limits_back() {
    let limits = |c: &mut switch::Config| {
        c.terminal_daily_max = 1_000_000;
        c.customer_daily_max = u64::MAX;
    };
    let h = Harness::start(|c| {
        limits(c);
        c.sim.lost_response_rate = 1.0;
        c.bank_timeout_ms = 100;
        c.bank_status_attempts = 2;
    })
    .await;
    let c = h.customer(MB, 0);
    let e = h
        .teller("tho-tang-1")
        .cash_in("lost", MB, &c.account, 700_000)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bank_outcome_unknown");
    assert_eq!(
        e.metadata().get("x-transaction-status").unwrap(),
        "reversed"
    );
    // A bank that refuses everything: a failure gives back too.
    let h = h
        .restart(|c| {
            limits(c);
            c.sim.error_rate = 1.0;
        })
        .await;
    let e = h
        .teller("tho-tang-1")
        .cash_in("refused", MB, &c.account, 900_000)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bank_unavailable");
    // Healthy again: the whole day's limit is there, and then it is used.
    let h = h.restart(limits).await;
    let mut t = h.teller("tho-tang-1");
    t.cash_in("full", MB, &c.account, 1_000_000).await.unwrap();
    let e = t.cash_in("over", MB, &c.account, 50_000).await.unwrap_err();
    assert_eq!(error_code(&e), "terminal_daily_limit");
    // The refused one is recorded as failed and holds nothing.
    let over = e
        .metadata()
        .get("x-transaction-id")
        .unwrap()
        .to_str()
        .unwrap();
    let rec = h
        .switch
        .store
        .get_tx(switch::ids::TxId::parse(over).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, switch::store::Status::Failed);
    assert!(!rec.limits_held);
    h.assert_ledger_clean().await;
}

/// The payment-agent limits of Circular 07/2024 are the defaults: a
/// customer's cash deposits and withdrawals together, 20,000,000 a day at
/// every agent point; a refusal names the limit and what is left, and
/// `GetLimits` shows the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_cash_in_and_out_share_the_circulars_daily_limit() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 4_000_000);
    let mut t = h.teller("tho-tang-1");
    let before = t.limits(Some((MB, &c.account))).await.unwrap();
    assert_eq!(before["customer_daily"].max, 20_000_000);
    assert_eq!(before["post_office_daily"].max, 200_000_000);
    assert_eq!(before["post_office_monthly"].max, 5_000_000_000);
    assert_eq!(before["customer_daily"].used, 0);
    assert_eq!(before["customer_monthly"].max, u64::MAX);
    t.cash_in("d1", MB, &c.account, 12_000_000).await.unwrap();
    // A withdrawal counts in the same total, at another post office too.
    let code = h.withdrawal_code(MB, &c.account, 3_000_000);
    let mut other = h.teller("huong-dao-1");
    let started = other
        .cash_out_start("w1", MB, &c.account, &code, 3_000_000)
        .await
        .unwrap();
    other
        .cash_out_confirm(&started.transaction_id)
        .await
        .unwrap();
    let e = t
        .cash_in("d2", MB, &c.account, 6_000_000)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::FailedPrecondition, "customer_daily_limit")
    );
    assert_eq!(
        e.message(),
        "customer_daily_limit: this customer's cash deposits and withdrawals at agents may total \
         20,000,000 VND a day: 5,000,000 VND is left today, 6,000,000 VND was asked"
    );
    let now = t.limits(Some((MB, &c.account))).await.unwrap();
    assert_eq!(
        (now["customer_daily"].used, now["customer_daily"].left),
        (15_000_000, 5_000_000)
    );
    assert_eq!(now["customer_monthly"].used, 15_000_000);
    // Tho Tang counted its own cash-in only; the refused one counts nowhere.
    assert_eq!(now["post_office_daily"].used, 12_000_000);
    assert_eq!(now["terminal_daily"].used, 12_000_000);
    assert_eq!(now["post_office_daily"].period.len(), "2026-12-07".len());
    assert_eq!(now["post_office_monthly"].period.len(), "2026-12".len());
    // What is left still goes through.
    t.cash_in("d3", MB, &c.account, 5_000_000).await.unwrap();
    // A half-given customer, or another post office's view, is refused.
    let e = t.limits(Some((MB, ""))).await.unwrap_err();
    assert_eq!(error_code(&e), "invalid_argument");
    h.assert_ledger_clean().await;
}

/// The counter says which teller served (issue #27): kept on the record
/// and shown with it; a name that is not one is refused before anything
/// moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_teller_who_served_is_kept_on_the_record() {
    let h = Harness::start(|_| {}).await;
    let c = h.customer(MB, 0);
    let mut t = h.teller("tho-tang-1");
    t.teller = "  Nguyễn Thị Lan ".into();
    let done = t.cash_in("t1", MB, &c.account, 100_000).await.unwrap();
    assert_eq!(done.teller, "Nguyễn Thị Lan");
    let shown = t.get(&done.transaction_id).await.unwrap();
    assert_eq!(shown.transaction.unwrap().teller, "Nguyễn Thị Lan");
    for bad in ["Lan\nAdmin".to_string(), "x".repeat(65)] {
        t.teller = bad;
        let e = t.cash_in("t2", MB, &c.account, 100_000).await.unwrap_err();
        assert_eq!(error_code(&e), "invalid_argument");
    }
    // Not given: none kept.
    t.teller = String::new();
    let plain = t.cash_in("t3", MB, &c.account, 100_000).await.unwrap();
    assert_eq!(plain.teller, "");
    h.assert_ledger_clean().await;
}

/// A post office's day and month count every terminal of it, and the
/// month is refused by its own code once passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_offices_terminals_share_its_daily_and_monthly_limits() {
    let h = Harness::start(|c| {
        c.post_office_daily_max = 3_000_000;
        c.post_office_monthly_max = 2_500_000;
    })
    .await;
    let c = h.customer(MB, 0);
    let d = h
        .customers()
        .into_iter()
        .find(|x| x.account != c.account)
        .unwrap();
    let mut one = h.teller("tho-tang-1");
    let mut two = h.teller("tho-tang-2");
    one.cash_in("p1", MB, &c.account, 1_500_000).await.unwrap();
    let e = two
        .cash_in("p2", &d.bank, &d.account, 1_500_000)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "post_office_monthly_limit");
    assert!(
        e.message().contains("1,000,000 VND is left this month"),
        "{}",
        e.message()
    );
    two.cash_in("p3", &d.bank, &d.account, 1_000_000)
        .await
        .unwrap();
    let left = two.limits(None).await.unwrap();
    assert_eq!(
        (
            left["post_office_monthly"].left,
            left["post_office_daily"].left
        ),
        (0, 500_000)
    );
    assert_eq!(left["terminal_daily"].used, 1_000_000);
    assert!(!left.contains_key("customer_daily"));
    // Another post office has its own.
    let mut elsewhere = h.teller("huong-dao-1");
    elsewhere
        .cash_in("p4", MB, &c.account, 1_000_000)
        .await
        .unwrap();
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_bank_fails_the_cash_in_and_releases_everything() {
    let h = Harness::start(|c| c.sim.error_rate = 1.0).await;
    let c = h.customer(MB, 0);
    let efloat = h.ledger_balance(Kind::EFloat.id(THO_TANG)).await;
    let e = h
        .teller("tho-tang-1")
        .cash_in("u1", MB, &c.account, 100_000)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::Unavailable, "bank_unavailable")
    );
    assert_eq!(h.ledger_balance(Kind::EFloat.id(THO_TANG)).await, efloat);
    assert!(
        h.switch.store.reversals().unwrap().is_empty(),
        "nothing happened at the bank: nothing to reverse"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_that_keeps_failing_trips_its_circuit_breaker() {
    let h = Harness::start(|c| {
        c.sim.error_rate = 1.0;
        c.breaker = switch::config::BreakerConfig {
            window_calls: 3,
            calls_min: 3,
            failure_percent: 100,
            open_ms: 60_000,
            ..Default::default()
        };
    })
    .await;
    let c = h.customer(MB, 0);
    let mut t = h.teller("tho-tang-1");
    for i in 0..3 {
        let e = t
            .cash_in(&format!("b{i}"), MB, &c.account, 100_000)
            .await
            .unwrap_err();
        assert!(
            error_code(&e) == "bank_unavailable" && !e.message().contains("circuit"),
            "{}",
            e.message()
        );
    }
    // Open: refused at once, without reserving anything or asking the bank.
    let e = t.cash_in("b3", MB, &c.account, 100_000).await.unwrap_err();
    assert!(
        error_code(&e) == "bank_unavailable" && e.message().contains("circuit open"),
        "{}",
        e.message()
    );
    let e = t.name_inquiry(MB, &c.account).await.unwrap_err();
    assert!(e.message().contains("circuit open"), "{}", e.message());
    // Other banks are unaffected by MB's circuit (they fail on their own here).
    let other = h.customer("970436", 0);
    let e = t.name_inquiry("970436", &other.account).await.unwrap_err();
    assert!(!e.message().contains("circuit"), "{}", e.message());
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_sent_concurrently_moves_money_once() {
    let h = std::sync::Arc::new(Harness::start(|_| {}).await);
    let c = h.customer(MB, 0);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (h, account) = (h.clone(), c.account.clone());
            tokio::spawn(async move {
                h.teller("vinh-yen-1")
                    .cash_in("twice", MB, &account, 300_000)
                    .await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap().unwrap().transaction_id);
    }
    assert_eq!(ids.len(), 1, "one transaction for one request id");
    // Some answers may be the still-pending original; wait for it to finish.
    h.eventually(10, "the cash-in completes", |h| {
        h.bank_balance(MB, &c.account) == c.balance + 300_000
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        h.bank_balance(MB, &c.account),
        c.balance + 300_000,
        "credited once"
    );
    h.assert_ledger_clean().await;
}
