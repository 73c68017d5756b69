//! Merchant VietQR payments end to end: dynamic and static codes, a code
//! paid twice at once, expiry, wrong amounts, codes the switch cannot
//! route or did not issue, tampering, a refused merchant credit (the payer
//! is refunded), and payment notifications across a reconnect. The
//! ledger's invariants are checked after every test.

use proto::auth::Credentials;
use proto::v1 as pb;
use switch::accounts::{Kind, bank_number};
use tests::{Harness, error_code};
use tonic::Code;

/// tap-hoa-tho-tang banks at MB; the payers below at Vietcombank.
const MERCHANT: &str = "tap-hoa-tho-tang";
const MERCHANT_BANK: &str = "970422";
const MERCHANT_ACCOUNT: &str = "8100000001";
const PAYER_BANK: &str = "970436";

/// The merchant's fee: 0.6 % rounded half away from zero.
fn fee(amount: u64) -> u64 {
    (amount * 6 + 500) / 1_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_code_is_paid_once_and_the_merchant_is_told() {
    let h = Harness::start(|_| {}).await;
    let payer = h.customer(PAYER_BANK, 1_000_000);
    let mut m = h.merchant(MERCHANT);
    let mut watch = m.watch(0).await;
    let code = m.create_qr("order-1", 150_000, "DH-0001", 0).await.unwrap();
    assert!(!code.is_static && code.expires_at_ms > proto::auth::now_ms());
    let decoded = qr::decode(&code.payload).unwrap();
    assert_eq!(
        (decoded.bin, decoded.account, decoded.amount_vnd()),
        (MERCHANT_BANK, MERCHANT_ACCOUNT, Some(150_000))
    );
    assert_eq!(
        (decoded.bill_number, decoded.reference),
        (Some("DH-0001"), Some(code.qr_id.as_str())),
        "the order reference is in 62/01"
    );
    assert_eq!(
        m.create_qr("order-1", 150_000, "DH-0001", 0).await.unwrap(),
        code,
        "a retry gives the same code"
    );

    let merchant_before = h.bank_balance(MERCHANT_BANK, MERCHANT_ACCOUNT);
    let mut bank = h.bank(PAYER_BANK);
    let tx = bank
        .pay_qr("pay-1", &code.payload, &payer.account, 0)
        .await
        .unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert_eq!(
        (tx.kind, tx.amount, tx.fee),
        (pb::TxKind::QrPayment as i32, 150_000, fee(150_000))
    );
    assert_eq!(
        (tx.merchant_id.as_str(), tx.order_reference.as_str()),
        (MERCHANT, "DH-0001")
    );
    assert_eq!(
        h.bank_balance(PAYER_BANK, &payer.account),
        payer.balance - 150_000
    );
    assert_eq!(
        h.bank_balance(MERCHANT_BANK, MERCHANT_ACCOUNT),
        merchant_before + 150_000 - fee(150_000)
    );
    // The payer's bank owes the merchant's bank, which owes the switch's fee.
    assert_eq!(
        h.ledger_balance(Kind::Bank.id(bank_number(PAYER_BANK)))
            .await,
        -150_000
    );
    assert_eq!(
        h.ledger_balance(Kind::Bank.id(bank_number(MERCHANT_BANK)))
            .await,
        150_000 - fee(150_000) as i128
    );

    let notice = watch.message().await.unwrap().unwrap();
    assert_eq!(
        (
            notice.transaction_id.as_str(),
            notice.amount,
            notice.net_amount,
            notice.order_reference.as_str()
        ),
        (
            tx.transaction_id.as_str(),
            150_000,
            150_000 - fee(150_000),
            "DH-0001"
        )
    );
    assert_eq!(notice.payer_bank_bin, PAYER_BANK);

    // A retry answers the original; another payment of the code is refused.
    let again = bank
        .pay_qr("pay-1", &code.payload, &payer.account, 0)
        .await
        .unwrap();
    assert_eq!(again.transaction_id, tx.transaction_id);
    let e = bank
        .pay_qr("pay-2", &code.payload, &payer.account, 150_000)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "qr_already_paid");
    assert_eq!(
        h.bank_balance(PAYER_BANK, &payer.account),
        payer.balance - 150_000
    );
    let listed = m.list(10, "").await;
    assert_eq!(listed.payments.len(), 1);
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_paid_by_two_banks_at_once_is_paid_exactly_once() {
    let h = Harness::start(|_| {}).await;
    let mut m = h.merchant("cafe-tam-dao");
    let payers: Vec<_> = ["970422", "970415", "970418", "970405"]
        .iter()
        .map(|b| (b.to_string(), h.customer(b, 1_000_000)))
        .collect();
    for round in 0..5 {
        let code = m
            .create_qr(&format!("o-{round}"), 80_000, &format!("R{round}"), 0)
            .await
            .unwrap();
        let mut attempts = tokio::task::JoinSet::new();
        for (bin, c) in &payers {
            let mut bank = h.bank(bin);
            let (payload, account) = (code.payload.clone(), c.account.clone());
            attempts.spawn(async move {
                bank.pay_qr(&format!("p-{round}"), &payload, &account, 0)
                    .await
            });
        }
        let results = attempts.join_all().await;
        let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(error_code(r), "qr_already_paid", "{r:?}");
        }
    }
    let debited: u64 = payers
        .iter()
        .map(|(bin, c)| c.balance - h.bank_balance(bin, &c.account))
        .sum();
    assert_eq!(debited, 5 * 80_000, "five codes, five payments");
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_code_takes_the_payers_amount_any_number_of_times() {
    let h = Harness::start(|_| {}).await;
    let payer = h.customer(PAYER_BANK, 1_000_000);
    let mut m = h.merchant(MERCHANT);
    let code = m.static_qr().await;
    assert!(code.is_static);
    assert_eq!(qr::decode(&code.payload).unwrap().amount_vnd(), None);
    let mut bank = h.bank(PAYER_BANK);
    for (i, amount) in [30_000u64, 45_000].into_iter().enumerate() {
        let tx = bank
            .pay_qr(&format!("s-{i}"), &code.payload, &payer.account, amount)
            .await
            .unwrap();
        assert_eq!(
            (tx.status, tx.amount),
            (pb::TxStatus::Completed as i32, amount)
        );
    }
    let e = bank
        .pay_qr("s-x", &code.payload, &payer.account, 0)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::InvalidArgument, "invalid_argument")
    );
    assert_eq!(
        h.bank_balance(PAYER_BANK, &payer.account),
        payer.balance - 75_000
    );
    assert_eq!(m.list(10, "").await.payments.len(), 2);
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_codes_are_refused_with_a_reason_and_nothing_moves() {
    let h = Harness::start(|_| {}).await;
    let payer = h.customer(PAYER_BANK, 1_000_000);
    let mut m = h.merchant(MERCHANT);
    let mut bank = h.bank(PAYER_BANK);
    let code = m.create_qr("o-1", 120_000, "DH-9", 0).await.unwrap();
    let short = m.create_qr("o-2", 50_000, "DH-10", 1).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;

    // A payload with one character changed fails its CRC; one re-signed
    // with a fresh CRC is not the code the switch issued.
    let tampered_crc = code.payload.replacen("120000", "100000", 1);
    let body = &tampered_crc[..tampered_crc.len() - 4];
    let tampered = format!("{body}{:04X}", qr::crc16(body.as_bytes()));
    // A well-formed code for a bank the switch does not route.
    let mut spec = qr::Spec::new("970448", "1234567890");
    spec.amount = Some(10_000);
    let foreign = qr::encode(&spec).unwrap();
    let cases: [(&str, &str, u64, &str); 6] = [
        ("wrong amount", &code.payload, 99_000, "amount_mismatch"),
        ("crc", &tampered_crc, 0, "qr_invalid"),
        ("re-signed", &tampered, 0, "qr_invalid"),
        ("foreign bank", &foreign, 10_000, "unknown_bank"),
        ("expired", &short.payload, 0, "qr_expired"),
        ("not a qr", "hello", 0, "qr_invalid"),
    ];
    for (i, (what, payload, amount, expected)) in cases.into_iter().enumerate() {
        let e = bank
            .pay_qr(&format!("bad-{i}"), payload, &payer.account, amount)
            .await
            .unwrap_err();
        assert_eq!(error_code(&e), expected, "{what}: {}", e.message());
    }
    // Only a bank may pay.
    let t = h.teller("tho-tang-1");
    let as_teller = t.credentials.sign(
        "/paymentswitch.v1.PayerBank/PayQr",
        pb::PayQrRequest {
            client_request_id: "t-1".into(),
            payload: code.payload.clone(),
            payer_account: payer.account.clone(),
            amount: 0,
        },
    );
    let e = bank.client.pay_qr(as_teller).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(h.bank_balance(PAYER_BANK, &payer.account), payer.balance);
    // The code itself is still payable.
    let tx = bank
        .pay_qr("good", &code.payload, &payer.account, 120_000)
        .await
        .unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_merchant_credit_refunds_the_payer() {
    let h = Harness::start(|_| {}).await;
    let payer = h.customer(PAYER_BANK, 1_000_000);
    // A merchant whose account its bank does not know.
    let operator = h.credentials("operator");
    let r = h
        .admin()
        .provision_merchant(operator.sign(
            "/paymentswitch.v1.Admin/ProvisionMerchant",
            pb::ProvisionMerchantRequest {
                merchant_id: "quan-pho".into(),
                name: "QUAN PHO".into(),
                city: "VINH YEN".into(),
                mcc: "5812".into(),
                bank_bin: "970418".into(),
                account: "7777777777".into(),
                commune: "lien-bao".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut m = tests::Merchant {
        client: h.merchant(MERCHANT).client,
        credentials: Credentials::from_hex("quan-pho", &r.secret).unwrap(),
    };
    let code = m.create_qr("o-1", 200_000, "PHO-1", 0).await.unwrap();
    let mut bank = h.bank(PAYER_BANK);
    let e = bank
        .pay_qr("p-1", &code.payload, &payer.account, 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "account_not_found", "{e:?}");
    let id = e
        .metadata()
        .get("x-transaction-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        bank.get(&id).await.unwrap().status,
        pb::TxStatus::Reversed as i32
    );
    h.eventually(10, "the payer's debit reversed", |h| {
        h.bank_balance(PAYER_BANK, &payer.account) == payer.balance
    })
    .await;
    assert!(
        m.list(10, "").await.payments.is_empty(),
        "no notice of a failed payment"
    );
    // Released: the code can be paid again (and fails the same way).
    let e = bank
        .pay_qr("p-2", &code.payload, &payer.account, 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "account_not_found");
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_resumes_after_a_reconnect_with_nothing_missed_or_repeated() {
    let h = Harness::start(|_| {}).await;
    let payer = h.customer(PAYER_BANK, 1_000_000);
    let mut m = h.merchant(MERCHANT);
    let code = m.static_qr().await;
    let mut bank = h.bank(PAYER_BANK);
    let mut pay = async |i: u64| {
        bank.pay_qr(&format!("w-{i}"), &code.payload, &payer.account, 10_000 + i)
            .await
            .unwrap()
            .transaction_id
    };
    let mut watch = m.watch(0).await;
    let first = [pay(1).await, pay(2).await];
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(watch.message().await.unwrap().unwrap());
    }
    drop(watch);
    // Disconnected while two more are paid.
    let offline = [pay(3).await, pay(4).await];
    let mut watch = m.watch(seen.last().unwrap().seq).await;
    for _ in 0..2 {
        seen.push(watch.message().await.unwrap().unwrap());
    }
    let live = pay(5).await;
    seen.push(watch.message().await.unwrap().unwrap());
    let ids: Vec<_> = seen.iter().map(|n| n.transaction_id.clone()).collect();
    let expected: Vec<_> = first
        .iter()
        .chain(&offline)
        .chain([&live])
        .cloned()
        .collect();
    assert_eq!(ids, expected, "every payment once, in order");
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
    // Nothing more is pending on the stream.
    let more = tokio::time::timeout(std::time::Duration::from_millis(300), watch.message()).await;
    assert!(more.is_err(), "no duplicate arrives: {more:?}");
    // And a fresh watcher from the start sees all five.
    let mut all = m.watch(0).await;
    for id in &expected {
        assert_eq!(&all.message().await.unwrap().unwrap().transaction_id, id);
    }
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_within_one_bank_uses_two_references() {
    let h = Harness::start(|_| {}).await;
    let payer = h.customer(MERCHANT_BANK, 1_000_000);
    let mut m = h.merchant(MERCHANT);
    let code = m.create_qr("on-us", 40_000, "ONUS-1", 0).await.unwrap();
    let merchant_before = h.bank_balance(MERCHANT_BANK, MERCHANT_ACCOUNT);
    let tx = h
        .bank(MERCHANT_BANK)
        .pay_qr("p-1", &code.payload, &payer.account, 0)
        .await
        .unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert_eq!(
        h.bank_balance(MERCHANT_BANK, &payer.account),
        payer.balance - 40_000
    );
    assert_eq!(
        h.bank_balance(MERCHANT_BANK, MERCHANT_ACCOUNT),
        merchant_before + 40_000 - fee(40_000),
        "the credit was not taken for a retry of the debit"
    );
    assert_eq!(
        h.ledger_balance(Kind::Bank.id(bank_number(MERCHANT_BANK)))
            .await,
        -(fee(40_000) as i128),
        "within one bank only the fee is owed"
    );
    assert_eq!(h.ledger_balance(Kind::QrClearing.id(0)).await, 0);
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_keeps_a_bounded_number_of_payment_streams() {
    let h = Harness::start(|_| {}).await;
    let mut m = h.merchant(MERCHANT);
    let mut open = Vec::new();
    for _ in 0..switch::flows::notify::WATCHERS_PER_MERCHANT_MAX {
        open.push(m.watch(0).await);
    }
    let e = m
        .client
        .watch_payments(m.credentials.sign(
            "/paymentswitch.v1.Merchant/WatchPayments",
            pb::WatchPaymentsRequest { after_seq: 0 },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    // Closing one frees its place.
    drop(open.pop());
    h.eventually(5, "a place freed", |h| {
        h.switch.notifier.watch(MERCHANT).is_some()
    })
    .await;
    let _again = m.watch(0).await;
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_merchant_credit_is_found_by_inquiry_or_reversed_with_the_debit() {
    let h = Harness::start(|_| {}).await;
    let payer = h.customer(PAYER_BANK, 1_000_000);
    let mut m = h.merchant(MERCHANT);
    let mut bank = h.bank(PAYER_BANK);
    let merchant_bank = h.sims.banks[MERCHANT_BANK].clone();
    let before = h.bank_balance(MERCHANT_BANK, MERCHANT_ACCOUNT);

    // The credit's answer is lost, but the merchant's bank answers status.
    merchant_bank.set_fault(switch::sim::Fault::LoseAnswers);
    let code = m.create_qr("lost-1", 50_000, "L-1", 0).await.unwrap();
    let tx = bank
        .pay_qr("lost-1", &code.payload, &payer.account, 0)
        .await
        .unwrap();
    assert_eq!(
        tx.status,
        pb::TxStatus::Completed as i32,
        "found by inquiry"
    );
    assert_eq!(
        h.bank_balance(MERCHANT_BANK, MERCHANT_ACCOUNT),
        before + 50_000 - fee(50_000)
    );

    // Now the status fails too: the switch reverses the credit and the debit.
    merchant_bank.set_fault(switch::sim::Fault::LoseAnswersAndStatus);
    let code = m.create_qr("lost-2", 70_000, "L-2", 0).await.unwrap();
    let e = bank
        .pay_qr("lost-2", &code.payload, &payer.account, 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bank_outcome_unknown", "{e:?}");
    assert_eq!(
        e.metadata().get("x-transaction-status").unwrap(),
        "reversed"
    );
    merchant_bank.set_fault(switch::sim::Fault::None);
    h.eventually(15, "both calls reversed", |h| {
        h.bank_balance(PAYER_BANK, &payer.account) == payer.balance - 50_000
            && h.bank_balance(MERCHANT_BANK, MERCHANT_ACCOUNT) == before + 50_000 - fee(50_000)
            && h.switch.store.reversals().unwrap().is_empty()
    })
    .await;
    // Only the completed payment was notified.
    let notices = m.list(10, "").await.payments;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].transaction_id, tx.transaction_id);
    h.assert_ledger_clean().await;
}
