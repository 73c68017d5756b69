//! Prepaid airtime at the counter (issue #16, item 4): Viettel, VinaPhone
//! and MobiFone numbers topped up in cash, from an account and by QR; the
//! networks' prefixes and denominations checked with clear errors before
//! anything moves; a lost answer found by status inquiry, one lost for good
//! cancelled from the durable queue; and a network's statement reconciled.

use proto::v1 as pb;
use switch::accounts::Kind;
use switch::sim::Fault;
use tests::{Harness, class_count, error_code};

const THO_TANG: u64 = 1;
const THO_TANG_1: u64 = 101;
const VIETTEL: u64 = 4;
const VINAPHONE: u64 = 5;
const MOBIFONE: u64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_network_is_topped_up_in_cash_once_per_request() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("tho-tang-1");
    let efloat = h.ledger_balance(Kind::EFloat.id(THO_TANG)).await;
    let drawer = h.ledger_balance(Kind::Drawer.id(THO_TANG_1)).await;
    let mut sold = 0u64;
    for (i, (network, number, phone, shown, amount)) in [
        ("VIETTEL", VIETTEL, "0981234567", "0981234567", 50_000u64),
        (
            "VINAPHONE",
            VINAPHONE,
            "+84 91 234 5678",
            "0912345678",
            100_000,
        ),
        ("MOBIFONE", MOBIFONE, "0901.234.567", "0901234567", 20_000),
    ]
    .into_iter()
    .enumerate()
    {
        let r = t
            .top_up(
                &format!("tu-{i}"),
                network,
                phone,
                amount,
                pb::Funding::Cash,
                None,
            )
            .await
            .unwrap();
        let tx = r.transaction.unwrap();
        assert_eq!(
            (tx.kind, tx.status, tx.amount, tx.fee),
            (
                pb::TxKind::TopUp as i32,
                pb::TxStatus::Completed as i32,
                amount,
                0
            )
        );
        assert_eq!(
            (tx.biller.as_str(), tx.bill_customer.as_str()),
            (network, shown)
        );
        assert!(
            r.receipt.contains(shown) && r.receipt.contains("TOP-UP"),
            "{}",
            r.receipt
        );
        assert_eq!(h.sims.billers[network].airtime(shown), amount);
        assert_eq!(
            h.ledger_balance(Kind::Biller.id(number)).await,
            amount as i128
        );
        sold += amount;
        // A retry answers the same transaction and sells nothing more.
        let again = t
            .top_up(
                &format!("tu-{i}"),
                network,
                phone,
                amount,
                pb::Funding::Cash,
                None,
            )
            .await
            .unwrap()
            .transaction
            .unwrap();
        assert_eq!(again.transaction_id, tx.transaction_id);
        assert_eq!(h.sims.billers[network].airtime(shown), amount);
    }
    assert_eq!(
        h.ledger_balance(Kind::EFloat.id(THO_TANG)).await,
        efloat - sold as i128
    );
    assert_eq!(
        h.ledger_balance(Kind::Drawer.id(THO_TANG_1)).await,
        drawer - sold as i128,
        "the drawer took the cash"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_and_amounts_a_network_does_not_take_are_refused_before_anything_moves() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("tho-tang-1");
    let efloat = h.ledger_balance(Kind::EFloat.id(THO_TANG)).await;
    for (i, (network, phone, amount, code, says)) in [
        (
            "VIETTEL",
            "0912345678",
            50_000u64,
            "invalid_phone",
            "is a VinaPhone number, not Viettel",
        ),
        (
            "MOBIFONE",
            "0241234567",
            50_000,
            "invalid_phone",
            "is not a MobiFone number",
        ),
        (
            "VINAPHONE",
            "091234567",
            50_000,
            "invalid_phone",
            "not a mobile number",
        ),
        (
            "VIETTEL",
            "0981234567",
            25_000,
            "invalid_denomination",
            "it sells 10000, 20000",
        ),
        (
            "VIETTEL",
            "0981234567",
            1_000_000,
            "invalid_denomination",
            "does not sell 1000000",
        ),
        (
            "GMOBILE",
            "0991234567",
            50_000,
            "unknown_provider",
            "VIETTEL, VINAPHONE, MOBIFONE",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let e = t
            .top_up(
                &format!("bad-{i}"),
                network,
                phone,
                amount,
                pb::Funding::Cash,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(error_code(&e), code, "{network} {phone}: {e:?}");
        assert!(
            e.message().contains(says),
            "{network} {phone}: {}",
            e.message()
        );
    }
    let e = t
        .top_up(
            "bad-f",
            "VIETTEL",
            "0981234567",
            50_000,
            pb::Funding::Unspecified,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "invalid_argument");
    assert_eq!(h.ledger_balance(Kind::EFloat.id(THO_TANG)).await, efloat);
    assert_eq!(h.sims.billers["VIETTEL"].airtime("0981234567"), 0);
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_up_is_paid_from_an_account_or_by_a_code_the_customer_pays() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("vinh-yen-1");
    let payer = h.customer("970418", 1_000_000);
    let tx = t
        .top_up(
            "acc-1",
            "VINAPHONE",
            "0941234567",
            200_000,
            pb::Funding::Account,
            Some(("970418", &payer.account)),
        )
        .await
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert_eq!(
        h.bank_balance("970418", &payer.account),
        payer.balance - 200_000
    );
    assert_eq!(h.sims.billers["VINAPHONE"].airtime("0941234567"), 200_000);

    let pending = t
        .top_up(
            "qr-1",
            "MOBIFONE",
            "0931234567",
            100_000,
            pb::Funding::Qr,
            None,
        )
        .await
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(pending.status, pb::TxStatus::Pending as i32);
    let code = qr::decode(&pending.qr_payload).unwrap();
    assert_eq!(code.amount_vnd(), Some(100_000));
    assert_eq!(
        h.sims.billers["MOBIFONE"].airtime("0931234567"),
        0,
        "nothing sold before payment"
    );
    let paid = h
        .bank("970418")
        .pay_qr("bq-1", &pending.qr_payload, &payer.account, 0)
        .await
        .unwrap();
    assert_eq!(paid.status, pb::TxStatus::Completed as i32);
    assert_eq!(paid.kind, pb::TxKind::TopUp as i32);
    assert_eq!(h.sims.billers["MOBIFONE"].airtime("0931234567"), 100_000);
    let shown = t
        .get(&pending.transaction_id)
        .await
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(
        (shown.status, shown.paid_by_transaction_id.as_str()),
        (pb::TxStatus::Completed as i32, paid.transaction_id.as_str())
    );
    assert_eq!(
        h.bank_balance("970418", &payer.account),
        payer.balance - 300_000
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_found_and_one_lost_for_good_is_cancelled() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("tho-tang-1");
    let viettel = h.sims.billers["VIETTEL"].clone();
    let efloat = h.ledger_balance(Kind::EFloat.id(THO_TANG)).await;
    viettel.set_fault(Fault::LoseAnswers);
    let tx = t
        .top_up(
            "lost-1",
            "VIETTEL",
            "0971234567",
            30_000,
            pb::Funding::Cash,
            None,
        )
        .await
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(
        tx.status,
        pb::TxStatus::Completed as i32,
        "the status inquiry found it sold"
    );
    assert_eq!(viettel.airtime("0971234567"), 30_000);

    viettel.set_fault(Fault::LoseAnswersAndStatus);
    let e = t
        .top_up(
            "lost-2",
            "VIETTEL",
            "0971234567",
            500_000,
            pb::Funding::Cash,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bank_outcome_unknown", "{e:?}");
    assert_eq!(
        e.metadata().get("x-transaction-status").unwrap(),
        "reversed"
    );
    viettel.set_fault(Fault::None);
    h.eventually(15, "the airtime taken back at the network", |h| {
        viettel.airtime("0971234567") == 30_000 && h.switch.store.reversals().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        h.ledger_balance(Kind::EFloat.id(THO_TANG)).await,
        efloat - 30_000,
        "only the sold top-up moved the e-float"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_networks_statement_reconciles_its_top_ups() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("tho-tang-1");
    let mut lines = Vec::new();
    for (i, amount) in [10_000u64, 50_000, 300_000].into_iter().enumerate() {
        let tx = t
            .top_up(
                &format!("s-{i}"),
                "VIETTEL",
                "0381234567",
                amount,
                pb::Funding::Cash,
                None,
            )
            .await
            .unwrap()
            .transaction
            .unwrap();
        lines.push(format!("{},{amount},credit,completed", tx.transaction_id));
    }
    let mut ops = h.settlement("operator");
    ops.close().await;
    let statement = format!(
        "transaction_id,amount,direction,status\n{}\n",
        lines.join("\n")
    );
    let r = ops
        .reconcile_biller("VIETTEL", 1, statement.as_bytes())
        .await
        .unwrap();
    assert_eq!(
        (class_count(&r, "matched"), r.exceptions_total),
        (3, 0),
        "{r:?}"
    );
    assert_eq!((r.report_net, r.statement_net), (360_000, 360_000));
}
