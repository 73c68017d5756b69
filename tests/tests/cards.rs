//! Bank cards at the counter's POS (issue #16, item 5): bills and top-ups
//! paid by card and PIN. The card routes to its issuer by its first six
//! digits, is Luhn-checked, and is kept only masked with a token; the PIN
//! travels only in a format 4 PIN block, opened at the edge under the
//! terminal's key and re-enciphered for the issuer, which verifies it (a
//! wrong PIN moves nothing; three block the card). A card debit whose
//! answer is lost is found by status inquiry; one whose biller never
//! answers is reversed at the issuer from the durable queue.

use proto::v1 as pb;
use switch::sim::Fault;
use tests::{Customer, Harness, error_code, files};

const VCB: &str = "970436";

fn card_holder(h: &Harness) -> Customer {
    let c = h.customer(VCB, 5_000_000);
    assert!(!c.card.is_empty() && !c.pin.is_empty(), "{c:?}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_is_paid_by_card_and_pin_and_the_card_is_kept_only_masked() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("tho-tang-1");
    let c = card_holder(&h);
    let bill = h.bill_customer("EVN", 2);
    let tx = t
        .pay_bills_by_card("card-1", "EVN", &bill.customer, &c.card, &c.pin, None)
        .await
        .unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32, "{tx:?}");
    assert_eq!((tx.funding.as_str(), tx.bank_bin.as_str()), ("card", VCB));
    let masked = format!(
        "{}{}{}",
        &c.card[..6],
        "*".repeat(c.card.len() - 10),
        &c.card[c.card.len() - 4..]
    );
    assert_eq!(tx.account_masked, masked);
    assert_eq!(tx.card_token.len(), 32);
    assert_eq!(
        h.bank_balance(VCB, &c.account),
        c.balance - bill.amount_due - tx.fee
    );
    assert!(
        t.inquire_bills("EVN", &bill.customer)
            .await
            .unwrap()
            .nothing_due,
        "the biller has them paid"
    );
    // A retry answers the same transaction (the PIN block differs every
    // time, the request does not).
    let again = t
        .pay_bills_by_card("card-1", "EVN", &bill.customer, &c.card, &c.pin, None)
        .await
        .unwrap();
    assert_eq!(again.transaction_id, tx.transaction_id);
    // The same card gives the same token; the receipt shows it masked.
    let shown = t.get(&tx.transaction_id).await.unwrap();
    assert!(shown.receipt.contains(&masked), "{}", shown.receipt);
    assert!(!shown.receipt.contains(&c.card));
    h.assert_ledger_clean().await;

    // Nothing the switch wrote holds the card number.
    let mut all = Vec::new();
    files(h.data_dir(), &mut all);
    assert!(!all.is_empty());
    for (path, bytes) in &all {
        if path.components().any(|p| p.as_os_str() == "profiles") {
            continue; // the demo's customer list, the simulated issuer's data
        }
        assert!(
            !bytes.windows(c.card.len()).any(|w| w == c.card.as_bytes()),
            "{} holds the card number",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_moves_nothing_and_three_block_the_card() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("tho-tang-1");
    let c = card_holder(&h);
    let wrong = if c.pin == "0000" { "1111" } else { "0000" };
    let bill = h.bill_customer("VNPT", 1);
    for i in 0..2 {
        let e = t
            .pay_bills_by_card(
                &format!("w-{i}"),
                "VNPT",
                &bill.customer,
                &c.card,
                wrong,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(error_code(&e), "incorrect_pin", "{e:?}");
    }
    assert_eq!(h.bank_balance(VCB, &c.account), c.balance);
    assert_eq!(
        t.inquire_bills("VNPT", &bill.customer)
            .await
            .unwrap()
            .bills
            .len(),
        1,
        "still due"
    );
    let e = t
        .pay_bills_by_card("w-2", "VNPT", &bill.customer, &c.card, wrong, None)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "pin_tries_exceeded", "{e:?}");
    let e = t
        .pay_bills_by_card("w-3", "VNPT", &bill.customer, &c.card, &c.pin, None)
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&e),
        "pin_tries_exceeded",
        "blocked, even with the right PIN: {e:?}"
    );
    assert_eq!(h.bank_balance(VCB, &c.account), c.balance);
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cards_and_pin_blocks_are_refused_before_anything_moves() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("tho-tang-1");
    let c = card_holder(&h);
    let bill = h.bill_customer("VNPT", 1);
    // A mistyped number: the check digit does not hold.
    let last = c.card.as_bytes()[c.card.len() - 1] - b'0';
    let typo = format!("{}{}", &c.card[..c.card.len() - 1], (last + 1) % 10);
    let mut raw = h.teller("tho-tang-1");
    let e = raw
        .pay_bills_by_card("b-1", "VNPT", &bill.customer, &c.card, &c.pin, Some("00"))
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "invalid_pin_block", "{e:?}");
    // A PIN block made under another terminal's key does not open.
    let (_, foreign) = h.credentials("tam-dao-1").card(&c.card, &c.pin).unwrap();
    let e = t
        .pay_bills_by_card(
            "b-2",
            "VNPT",
            &bill.customer,
            &c.card,
            &c.pin,
            Some(&foreign),
        )
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "invalid_pin_block", "{e:?}");
    assert!(e.message().contains("does not open"), "{}", e.message());
    let m = pb::PayBillsRequest {
        client_request_id: "b-3".into(),
        biller: "VNPT".into(),
        customer: bill.customer.clone(),
        funding: pb::Funding::Card as i32,
        card_number: typo,
        pin_block: "00".repeat(16),
        ..Default::default()
    };
    let e = raw.raw_pay_bills(m).await.unwrap_err();
    assert_eq!(error_code(&e), "invalid_card", "{e:?}");
    assert!(e.message().contains("check digit"), "{}", e.message());
    // A card no routed bank issues.
    let body = "123456000000001";
    let stranger = format!("{body}{}", proto::pin::luhn_digit(body));
    let e = t
        .pay_bills_by_card("b-4", "VNPT", &bill.customer, &stranger, "1234", None)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "unknown_bank", "{e:?}");
    // Card funding without a card, a card with other funding.
    let m = pb::PayBillsRequest {
        client_request_id: "b-5".into(),
        biller: "VNPT".into(),
        customer: bill.customer.clone(),
        funding: pb::Funding::Card as i32,
        ..Default::default()
    };
    let e = raw.raw_pay_bills(m).await.unwrap_err();
    assert_eq!(error_code(&e), "invalid_argument", "{e:?}");
    let (card_number, pin_block) = h.credentials("tho-tang-1").card(&c.card, &c.pin).unwrap();
    let m = pb::PayBillsRequest {
        client_request_id: "b-6".into(),
        biller: "VNPT".into(),
        customer: bill.customer.clone(),
        funding: pb::Funding::Cash as i32,
        card_number,
        pin_block,
        ..Default::default()
    };
    let e = raw.raw_pay_bills(m).await.unwrap_err();
    assert_eq!(error_code(&e), "invalid_argument", "{e:?}");
    assert_eq!(h.bank_balance(VCB, &c.account), c.balance);
    assert_eq!(
        t.inquire_bills("VNPT", &bill.customer)
            .await
            .unwrap()
            .bills
            .len(),
        1
    );
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_debit_follows_the_inquiry_then_reversal_discipline() {
    let h = Harness::start(|_| {}).await;
    let mut t = h.teller("tho-tang-1");
    let c = card_holder(&h);
    // The issuer's answer is lost: the status inquiry finds the debit.
    h.sims.banks[VCB].set_fault(Fault::LoseAnswers);
    let tx = t
        .top_up_by_card("lost-1", "VIETTEL", "0961234567", 100_000, &c.card, &c.pin)
        .await
        .unwrap();
    h.sims.banks[VCB].set_fault(Fault::None);
    assert_eq!(tx.status, pb::TxStatus::Completed as i32, "{tx:?}");
    assert_eq!(h.sims.billers["VIETTEL"].airtime("0961234567"), 100_000);
    assert_eq!(h.bank_balance(VCB, &c.account), c.balance - 100_000);
    // The network never answers: the card debit is reversed at the issuer.
    h.sims.billers["VIETTEL"].set_fault(Fault::LoseAnswersAndStatus);
    let e = t
        .top_up_by_card("lost-2", "VIETTEL", "0961234567", 200_000, &c.card, &c.pin)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bank_outcome_unknown", "{e:?}");
    h.sims.billers["VIETTEL"].set_fault(Fault::None);
    h.eventually(
        15,
        "the card debit reversed and the airtime taken back",
        |h| {
            h.bank_balance(VCB, &c.account) == c.balance - 100_000
                && h.sims.billers["VIETTEL"].airtime("0961234567") == 100_000
                && h.switch.store.reversals().unwrap().is_empty()
        },
    )
    .await;
    h.assert_ledger_clean().await;
}

/// A remote issuer: the PIN block crosses the link under the zone key in
/// `[[banks]] pin_key_file` (the issuer's `bank-sim --pin-key-file`); a
/// remote bank without one takes no cards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_issuer_verifies_the_pin_under_the_zone_key() {
    use std::sync::Arc;
    use switch::config::{BankConfig, SimConfig};
    let dir = tempfile::tempdir().unwrap();
    let key_hex = "00112233445566778899aabbccddeeff";
    let key_file = dir.path().join("zone.key");
    std::fs::write(&key_file, format!("{key_hex}\n")).unwrap();
    let db = switch::store::Store::open_engine(&dir.path().join("bank")).unwrap();
    let sim = Arc::new(
        switch::sim::SimBank::open(
            VCB,
            SimConfig::default(),
            db.keyspace("sim", fjall::KeyspaceCreateOptions::default)
                .unwrap(),
            &switch::sim::demo_accounts(VCB),
        )
        .unwrap()
        .with_pin_key(switch::server::read_pin_key(&key_file).unwrap()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(switch::sim::service::serve_sim(
        listener,
        sim.clone(),
        None,
        async {
            let _ = stopped.await;
        },
    ));
    for with_key in [true, false] {
        let (address, key_file) = (address.clone(), key_file.clone());
        let h = Harness::start(move |c| {
            for b in &mut c.banks {
                if b.bin == VCB {
                    *b = BankConfig {
                        bin: VCB.into(),
                        remote: Some(address.clone()),
                        pin_key_file: with_key.then(|| key_file.clone()),
                        ..BankConfig::default()
                    };
                }
            }
        })
        .await;
        let c = card_holder(&h);
        let before = sim.account(&c.account).unwrap().balance;
        let mut t = h.teller("tho-tang-1");
        let r = t
            .top_up_by_card(
                "remote-1",
                "MOBIFONE",
                "0771234567",
                50_000,
                &c.card,
                &c.pin,
            )
            .await;
        if with_key {
            assert_eq!(r.unwrap().status, pb::TxStatus::Completed as i32);
            assert_eq!(sim.account(&c.account).unwrap().balance, before - 50_000);
        } else {
            let e = r.unwrap_err();
            assert_eq!(error_code(&e), "card_not_accepted", "{e:?}");
            assert_eq!(sim.account(&c.account).unwrap().balance, before);
        }
        h.assert_ledger_clean().await;
    }
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
