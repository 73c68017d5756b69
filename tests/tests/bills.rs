//! Bills at the counter end to end: inquiry, payment by cash, by the
//! customer's account and by a QR the customer pays from their bank, a bill
//! paid from two counters at once, partial payments, and a biller that
//! never answers (cancelled and refunded). The ledger's invariants are
//! checked after every test.

use proto::v1 as pb;
use switch::accounts::{Kind, bank_number};
use switch::sim::Fault;
use tests::{Harness, error_code};

const THO_TANG: u64 = 1;
const THO_TANG_1: u64 = 101;
const EVN: u64 = 1;
const FEE: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inquiry_shows_the_customer_and_what_is_due() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("tho-tang-1");
    let due = h.bill_customer("EVN", 3);
    assert_eq!(
        due.customer.len(),
        13,
        "EVN customer codes are 13 characters"
    );
    let r = t.inquire_bills("EVN", &due.customer).await.unwrap();
    assert_eq!(
        (r.customer_name.as_str(), r.bills.len(), r.nothing_due),
        (due.name.as_str(), 3, false)
    );
    assert_eq!(r.total, due.amount_due);
    assert_eq!(r.fee, FEE);
    assert!(
        r.bills.windows(2).all(|w| w[0].period < w[1].period),
        "oldest first"
    );
    let paid_up = h.bill_customer("NUOCVP", 0);
    let r = t.inquire_bills("NUOCVP", &paid_up.customer).await.unwrap();
    assert!(r.nothing_due && r.bills.is_empty());
    for (biller, customer, code) in [
        ("EVN", "PD01999999999", "bill_customer_not_found"),
        ("GAS", "PD01000000001", "unknown_biller"),
        ("EVN", "PD-01", "invalid_argument"),
    ] {
        let e = t.inquire_bills(biller, customer).await.unwrap_err();
        assert_eq!(error_code(&e), code, "{biller} {customer}");
    }
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cash_pays_the_biller_from_e_float_and_fills_the_drawer() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("tho-tang-1");
    let c = h.bill_customer("EVN", 2);
    let efloat = h.ledger_balance(Kind::EFloat.id(THO_TANG)).await;
    let drawer = -h.ledger_balance(Kind::Drawer.id(THO_TANG_1)).await;
    let tx = t
        .pay_bills("b-1", "EVN", &c.customer, &[], pb::Funding::Cash, None)
        .await
        .unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert_eq!(
        (tx.amount, tx.fee, tx.bill_ids.len()),
        (c.amount_due, FEE, 2)
    );
    assert_eq!(
        h.ledger_balance(Kind::EFloat.id(THO_TANG)).await,
        efloat - c.amount_due as i128
    );
    assert_eq!(
        -h.ledger_balance(Kind::Drawer.id(THO_TANG_1)).await,
        drawer + (c.amount_due + FEE) as i128
    );
    assert_eq!(
        h.ledger_balance(Kind::Biller.id(EVN)).await,
        c.amount_due as i128
    );
    let r = t.inquire_bills("EVN", &c.customer).await.unwrap();
    assert!(r.nothing_due, "the biller has them paid");
    // A retry answers the original; a new request finds nothing due.
    let again = t
        .pay_bills("b-1", "EVN", &c.customer, &[], pb::Funding::Cash, None)
        .await
        .unwrap();
    assert_eq!(again.transaction_id, tx.transaction_id);
    let e = t
        .pay_bills("b-2", "EVN", &c.customer, &[], pb::Funding::Cash, None)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bill_not_due");
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customers_account_pays_bills_and_partial_payment_follows_the_biller() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("tam-dao-1");
    let payer = h.customer("970415", 1_000_000);
    let c = h.bill_customer("EVN", 3);
    let first = t.inquire_bills("EVN", &c.customer).await.unwrap().bills[0]
        .bill_id
        .clone();
    // EVN takes every due bill together.
    let e = t
        .pay_bills(
            "p-1",
            "EVN",
            &c.customer,
            &[&first],
            pb::Funding::Account,
            Some(("970415", &payer.account)),
        )
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "partial_payment_not_allowed");
    let tx = t
        .pay_bills(
            "p-2",
            "EVN",
            &c.customer,
            &[],
            pb::Funding::Account,
            Some(("970415", &payer.account)),
        )
        .await
        .unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert_eq!(
        h.bank_balance("970415", &payer.account),
        payer.balance - c.amount_due - FEE
    );
    assert_eq!(
        h.ledger_balance(Kind::Bank.id(bank_number("970415"))).await,
        -((c.amount_due + FEE) as i128),
        "the payer's bank owes the biller and the fee"
    );
    // VNPT lets a customer pay one bill of several.
    let v = h.bill_customer("VNPT", 2);
    let bills = t.inquire_bills("VNPT", &v.customer).await.unwrap().bills;
    let tx = t
        .pay_bills(
            "p-3",
            "VNPT",
            &v.customer,
            &[&bills[0].bill_id],
            pb::Funding::Account,
            Some(("970415", &payer.account)),
        )
        .await
        .unwrap();
    assert_eq!(tx.amount, bills[0].amount);
    let left = t.inquire_bills("VNPT", &v.customer).await.unwrap().bills;
    assert_eq!(left, bills[1..].to_vec());
    // An account the bank does not know: nothing moves.
    let e = t
        .pay_bills(
            "p-4",
            "VNPT",
            &v.customer,
            &[],
            pb::Funding::Account,
            Some(("970415", "0000000000")),
        )
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "account_not_found");
    assert_eq!(
        t.inquire_bills("VNPT", &v.customer).await.unwrap().bills,
        left
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_shown_at_the_counter_is_paid_from_the_customers_bank() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("vinh-yen-1");
    let payer = h.customer("970418", 1_000_000);
    let c = h.bill_customer("VIETTEL", 1);
    let pending = t
        .pay_bills("q-1", "VIETTEL", &c.customer, &[], pb::Funding::Qr, None)
        .await
        .unwrap();
    assert_eq!(pending.status, pb::TxStatus::Pending as i32);
    let code = qr::decode(&pending.qr_payload).unwrap();
    assert_eq!(
        code.amount_vnd(),
        Some(c.amount_due + FEE),
        "the code asks for the bills and the fee"
    );
    // The bills are held while the code is shown.
    let mut other = h.teller("vinh-yen-2");
    let e = other
        .pay_bills("x-1", "VIETTEL", &c.customer, &[], pb::Funding::Cash, None)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bill_already_paid");
    let mut bank = h.bank("970418");
    let e = bank
        .pay_qr("bq-0", &pending.qr_payload, &payer.account, 1_000)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "amount_mismatch");
    let paid = bank
        .pay_qr("bq-1", &pending.qr_payload, &payer.account, 0)
        .await
        .unwrap();
    // The bank's payment is a transaction of its own that pays the
    // teller's bill payment.
    assert_eq!(paid.status, pb::TxStatus::Completed as i32);
    assert_ne!(paid.transaction_id, pending.transaction_id);
    assert_eq!(paid.pays_for_transaction_id, pending.transaction_id);
    assert_eq!(
        h.bank_balance("970418", &payer.account),
        payer.balance - c.amount_due - FEE
    );
    let shown = t
        .get(&pending.transaction_id)
        .await
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(shown.status, pb::TxStatus::Completed as i32);
    assert_eq!(shown.paid_by_transaction_id, paid.transaction_id);
    assert_eq!(shown.bank_bin, "970418");
    assert!(
        t.inquire_bills("VIETTEL", &c.customer)
            .await
            .unwrap()
            .nothing_due
    );
    let e = bank
        .pay_qr("bq-2", &pending.qr_payload, &payer.account, 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "qr_already_paid");
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_code_expires_and_releases_the_bills() {
    let h = Harness::start(|c| c.qr_ttl_ms = 300).await;
    let mut t = h.teller("vinh-yen-1");
    let c = h.bill_customer("VNPT", 1);
    let pending = t
        .pay_bills("q-1", "VNPT", &c.customer, &[], pb::Funding::Qr, None)
        .await
        .unwrap();
    let id = pending.transaction_id.clone();
    let mut status = 0;
    for _ in 0..100 {
        status = t.get(&id).await.unwrap().transaction.unwrap().status;
        if status != pb::TxStatus::Pending as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, pb::TxStatus::Failed as i32);
    let payer = h.customer("970418", 1_000_000);
    let e = h
        .bank("970418")
        .pay_qr("late", &pending.qr_payload, &payer.account, 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "qr_expired");
    let tx = t
        .pay_bills("cash-1", "VNPT", &c.customer, &[], pb::Funding::Cash, None)
        .await
        .unwrap();
    assert_eq!(
        tx.status,
        pb::TxStatus::Completed as i32,
        "the bills were released"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_paid_from_two_counters_at_once_is_paid_once() {
    let h = Harness::start(|_| {}).await;
    for (n, c) in h
        .bill_customers()
        .into_iter()
        .filter(|c| c.bills_due > 0)
        .enumerate()
    {
        let mut attempts = tokio::task::JoinSet::new();
        for terminal in ["tho-tang-1", "tho-tang-2", "tam-dao-1", "lang-cong-2"] {
            let mut t = h.teller(terminal);
            let c = c.clone();
            attempts.spawn(async move {
                t.pay_bills(
                    &format!("race-{n}"),
                    &c.biller,
                    &c.customer,
                    &[],
                    pb::Funding::Cash,
                    None,
                )
                .await
            });
        }
        let results = attempts.join_all().await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{} {}: {results:?}", c.biller, c.customer);
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            let code = error_code(e);
            assert!(
                code == "bill_already_paid" || code == "bill_not_due",
                "{e:?}"
            );
        }
    }
    let due: u64 = h
        .bill_customers()
        .iter()
        .filter(|c| c.biller == "EVN")
        .map(|c| c.amount_due)
        .sum();
    assert_eq!(
        h.ledger_balance(Kind::Biller.id(EVN)).await,
        due as i128,
        "each bill paid once"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_biller_answer_is_found_by_status_inquiry() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("phuc-yen-1");
    let c = h.bill_customer("NUOCVP", 2);
    h.sims.billers["NUOCVP"].set_fault(Fault::LoseAnswers);
    let tx = t
        .pay_bills("w-1", "NUOCVP", &c.customer, &[], pb::Funding::Cash, None)
        .await
        .unwrap();
    assert_eq!(
        tx.status,
        pb::TxStatus::Completed as i32,
        "the biller said it was paid"
    );
    h.sims.billers["NUOCVP"].set_fault(Fault::None);
    assert!(
        t.inquire_bills("NUOCVP", &c.customer)
            .await
            .unwrap()
            .nothing_due
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_biller_that_never_answers_is_cancelled_and_the_payer_refunded() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("phuc-yen-1");
    let payer = h.customer("970405", 1_000_000);
    let c = h.bill_customer("NUOCVP", 2);
    let bills = t.inquire_bills("NUOCVP", &c.customer).await.unwrap().bills;
    let sim = h.sims.billers["NUOCVP"].clone();
    sim.set_fault(Fault::LoseAnswersAndStatus);
    let e = t
        .pay_bills(
            "w-1",
            "NUOCVP",
            &c.customer,
            &[],
            pb::Funding::Account,
            Some(("970405", &payer.account)),
        )
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bank_outcome_unknown", "{e:?}");
    assert_eq!(
        e.metadata().get("x-transaction-status").unwrap(),
        "reversed"
    );
    // The biller's payment is cancelled and the bank's debit reversed,
    // from the durable queue.
    h.eventually(15, "payer refunded and bills due again", |h| {
        h.bank_balance("970405", &payer.account) == payer.balance
            && sim.customer(&c.customer).unwrap().bills.len() == bills.len()
    })
    .await;
    sim.set_fault(Fault::None);
    assert_eq!(
        t.inquire_bills("NUOCVP", &c.customer).await.unwrap().bills,
        bills
    );
    h.eventually(15, "the reversal queue drained", |h| {
        h.switch.store.reversals().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        h.ledger_balance(Kind::Biller.id(2)).await,
        0,
        "nothing posted to the biller"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_leaves_the_bill_code_payable() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("vinh-yen-1");
    let c = h.bill_customer("VIETTEL", 1);
    let pending = t
        .pay_bills("q-1", "VIETTEL", &c.customer, &[], pb::Funding::Qr, None)
        .await
        .unwrap();
    let mut bank = h.bank("970418");
    // The payer's bank declines (no such account), then is down.
    let e = bank
        .pay_qr("bq-1", &pending.qr_payload, "99999999999", 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "account_not_found");
    let rich = h.customer("970418", 10_000_000);
    h.sims.banks["970418"].set_fault(Fault::Down);
    let e = bank
        .pay_qr("bq-2", &pending.qr_payload, &rich.account, 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bank_unavailable");
    h.sims.banks["970418"].set_fault(Fault::None);
    assert_eq!(h.bank_balance("970418", &rich.account), rich.balance);
    let shown = t
        .get(&pending.transaction_id)
        .await
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(
        shown.status,
        pb::TxStatus::Pending as i32,
        "the bill payment still waits for its code to be paid"
    );
    assert_eq!(shown.qr_payload, pending.qr_payload, "the same code");
    // The bills stay held: another counter cannot take them meanwhile.
    let e = h
        .teller("vinh-yen-2")
        .pay_bills("x-1", "VIETTEL", &c.customer, &[], pb::Funding::Cash, None)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bill_already_paid");
    // The customer pays the same code once the bank is back.
    let paid = bank
        .pay_qr("bq-3", &pending.qr_payload, &rich.account, 0)
        .await
        .unwrap();
    assert_eq!(paid.status, pb::TxStatus::Completed as i32);
    assert_eq!(paid.pays_for_transaction_id, pending.transaction_id);
    assert_eq!(
        h.bank_balance("970418", &rich.account),
        rich.balance - c.amount_due - FEE
    );
    let shown = t
        .get(&pending.transaction_id)
        .await
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(shown.status, pb::TxStatus::Completed as i32);
    assert_eq!(shown.paid_by_transaction_id, paid.transaction_id);
    // A retry of a declined attempt answers its own outcome, unchanged.
    let e = bank
        .pay_qr("bq-1", &pending.qr_payload, "99999999999", 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "account_not_found");
    // Paid: the code is spent now.
    let e = bank
        .pay_qr("bq-4", &pending.qr_payload, &rich.account, 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "qr_already_paid");
    assert!(
        t.inquire_bills("VIETTEL", &c.customer)
            .await
            .unwrap()
            .nothing_due
    );
    // The biller was paid once: the declined attempts moved nothing.
    assert_eq!(
        h.ledger_balance(Kind::Biller.id(4)).await,
        c.amount_due as i128,
        "the biller is owed the bills once"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversed_payment_leaves_the_bill_code_payable() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("phuc-yen-1");
    let c = h.bill_customer("NUOCVP", 1);
    let pending = t
        .pay_bills("q-1", "NUOCVP", &c.customer, &[], pb::Funding::Qr, None)
        .await
        .unwrap();
    let payer = h.customer("970405", 1_000_000);
    let sim = h.sims.billers["NUOCVP"].clone();
    sim.set_fault(Fault::LoseAnswersAndStatus);
    let mut bank = h.bank("970405");
    let e = bank
        .pay_qr("bq-1", &pending.qr_payload, &payer.account, 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bank_outcome_unknown", "{e:?}");
    sim.set_fault(Fault::None);
    h.eventually(
        15,
        "the payer refunded and the reversal queue drained",
        |h| {
            h.bank_balance("970405", &payer.account) == payer.balance
                && h.switch.store.reversals().unwrap().is_empty()
        },
    )
    .await;
    let paid = bank
        .pay_qr("bq-2", &pending.qr_payload, &payer.account, 0)
        .await
        .unwrap();
    assert_eq!(paid.status, pb::TxStatus::Completed as i32);
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
        h.bank_balance("970405", &payer.account),
        payer.balance - c.amount_due - FEE
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_banks_racing_on_one_bill_code_pay_it_once() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("vinh-yen-1");
    let customers: Vec<_> = h
        .bill_customers()
        .into_iter()
        .filter(|c| c.biller == "EVN" && c.bills_due > 0)
        .take(4)
        .collect();
    assert_eq!(customers.len(), 4);
    for (round, c) in customers.iter().enumerate() {
        let pending = t
            .pay_bills(
                &format!("q-{round}"),
                "EVN",
                &c.customer,
                &[],
                pb::Funding::Qr,
                None,
            )
            .await
            .unwrap();
        let (payer_a, payer_b) = (
            h.customer("970436", 10_000_000),
            h.customer("970415", 10_000_000),
        );
        let (mut bank_a, mut bank_b) = (h.bank("970436"), h.bank("970415"));
        let before = [
            h.bank_balance("970436", &payer_a.account),
            h.bank_balance("970415", &payer_b.account),
        ];
        let (id_a, id_b) = (format!("a-{round}"), format!("b-{round}"));
        let (ra, rb) = tokio::join!(
            bank_a.pay_qr(&id_a, &pending.qr_payload, &payer_a.account, 0),
            bank_b.pay_qr(&id_b, &pending.qr_payload, &payer_b.account, 0),
        );
        let won: Vec<_> = [&ra, &rb]
            .into_iter()
            .filter_map(|r| r.as_ref().ok())
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {ra:?} {rb:?}");
        assert_eq!(won[0].status, pb::TxStatus::Completed as i32);
        for e in [&ra, &rb].iter().filter_map(|r| r.as_ref().err()) {
            let code = error_code(e);
            assert!(
                code == "qr_already_paid" || code == "qr_being_paid",
                "round {round}: {e:?}"
            );
        }
        let debited = [(&payer_a, "970436"), (&payer_b, "970415")]
            .iter()
            .zip(before)
            .filter(|((p, bin), before)| h.bank_balance(bin, &p.account) != *before)
            .count();
        assert_eq!(debited, 1, "round {round}: one payer paid");
    }
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_that_expires_while_its_payment_runs_is_paid_not_expired() {
    let h = Harness::start(|c| {
        c.qr_ttl_ms = 400;
        c.bank_timeout_ms = 5_000;
    })
    .await;
    let mut t = h.teller("vinh-yen-1");
    let c = h.bill_customer("VIETTEL", 1);
    let pending = t
        .pay_bills("q-1", "VIETTEL", &c.customer, &[], pb::Funding::Qr, None)
        .await
        .unwrap();
    let payer = h.customer("970418", 1_000_000);
    // The payer's bank takes longer than the code lives, and the expiry
    // pass (every 500 ms) runs while the payment waits for it.
    h.sims.banks["970418"].set_extra_latency_ms(1_500);
    let paid = h
        .bank("970418")
        .pay_qr("bq-1", &pending.qr_payload, &payer.account, 0)
        .await
        .unwrap();
    assert_eq!(paid.status, pb::TxStatus::Completed as i32);
    h.sims.banks["970418"].set_extra_latency_ms(0);
    let shown = t
        .get(&pending.transaction_id)
        .await
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(
        (shown.status, shown.paid_by_transaction_id.as_str()),
        (pb::TxStatus::Completed as i32, paid.transaction_id.as_str()),
        "{shown:?}"
    );
    // Once paid, the expired code is refused as paid.
    let e = h
        .bank("970418")
        .pay_qr("bq-2", &pending.qr_payload, &payer.account, 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "qr_already_paid", "{e:?}");
    h.assert_ledger_clean().await;
}
