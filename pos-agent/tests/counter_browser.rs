//! One teller's whole shift at the counter's screen (issue #27), in
//! Debian's Chromium over WebDriver (chromedriver, through fantoccini),
//! keyboard only: sign in, open the shift by counting the drawer, a
//! cash-in with the holder's name shown before confirming, a cash-out, a
//! bill in cash and one by card (the PIN typed in the agent's PIN window,
//! a second browser, never in the counter's page), a top-up, a refusal
//! over the customer's daily limit in Vietnamese, a reprint, and a close
//! with a variance. Every receipt printed is decoded from the printer's
//! bytes; screenshots go to `target/counter-screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them).

use std::sync::Arc;
use std::time::Duration;

use browser::*;
use fantoccini::key::Key;
use pos_agent::counter::{self, tellers};
use pos_agent::receipt::{self, escpos};
use tests::Harness;

mod browser;

const MB: &str = "970422";
const VCB: &str = "970436";
const TERMINAL: &str = "tho-tang-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tellers_whole_shift_at_the_counter_keyboard_only() {
    let h = Harness::start(|_| {}).await;
    // The demo opens every terminal's first shift; this teller starts a
    // fresh one at the counter.
    h.teller(TERMINAL).close_shift(20_000_000).await.unwrap();

    let state = tempfile::tempdir().unwrap();
    let mut book = tellers::Book::default();
    book.set("lan", "Nguyễn Thị Lan", "mat-khau-cua-lan")
        .unwrap();
    book.save(state.path()).unwrap();
    let profile = pos_agent::client::Profile::load(
        &h.data_dir()
            .join("profiles")
            .join(format!("{TERMINAL}.toml")),
    )
    .unwrap();
    let office_name = profile.post_office_name.clone().unwrap_or_default();
    let printer_file = state.path().join("printer.bin");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let pin_url = format!("http://{}/", pin_listener.local_addr().unwrap());
    let config = counter::Config {
        profile,
        state_dir: state.path().to_path_buf(),
        printer: Some(escpos::Target::File(printer_file.clone())),
        paper: receipt::Paper::Mm80,
        idle_timeout_ms: 15 * 60_000,
        pin_timeout_ms: 60_000,
        now_ms: Arc::new(proto::auth::now_ms),
        forward_backoff_max_ms: 2_000,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(counter::run(listener, pin_listener, config, async {
        let _ = stopped.await;
    }));

    let d = driver();
    let c = browser(&d).await;

    // Sign in: a wrong password first.
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().starts_with("/login"));
    typed(&c, "#name", "lan").await;
    entered(&c, "#password", "sai-mat-khau").await;
    assert!(wait_for(&c, "#error").await.contains("không đúng"));
    typed(&c, "#name", "lan").await;
    typed(&c, "#password", "mat-khau-cua-lan").await;
    shot(&c, "01-sign-in").await;
    press(&c, Key::Enter).await;
    assert!(wait_for(&c, "#who").await.contains("Nguyễn Thị Lan"));

    // Open the shift: 40 × 500.000 ₫ counted.
    assert_eq!(c.current_url().await.unwrap().path(), "/shift/open");
    typed(&c, "#n500000", "40").await;
    assert_eq!(wait_for(&c, "#count-total").await, "20.000.000 ₫");
    shot(&c, "02-open-shift").await;
    press(&c, Key::Enter).await;
    at(&c, &base, "/cash-in").await;
    assert!(wait_for(&c, "#e-float").await.ends_with("₫"));
    assert!(!wait_for(&c, "#left-post_office_daily").await.is_empty());

    // A cash-in: the holder's name before confirming.
    let saver = h.customer(MB, 0);
    typed(&c, "#bank", "MB").await;
    typed(&c, "#account", &saver.account).await;
    entered(&c, "#amount", "500.000").await;
    assert_eq!(wait_for(&c, "#holder").await, saver.name);
    assert_eq!(wait_for(&c, "#confirm-amount").await, "500.000 ₫");
    shot(&c, "03-cash-in-confirm").await;
    press(&c, Key::Enter).await;
    let cash_in = tx_id(&c).await;
    assert_eq!(wait_for(&c, "#status").await, "Thành công");
    wait_for(&c, "#printed").await;
    shot(&c, "04-cash-in-done").await;

    // A cash-out with the customer's code: the notes to pay, then paid.
    press(&c, Key::F3).await;
    at(&c, &base, "/cash-out").await;
    let spender = h.customer(VCB, 2_000_000);
    let code = h.withdrawal_code(VCB, &spender.account, 1_780_000);
    typed(&c, "#bank", VCB).await;
    typed(&c, "#account", &spender.account).await;
    typed(&c, "#code", &code).await;
    entered(&c, "#amount", "1780000").await;
    let notes = wait_for(&c, "#notes").await;
    assert!(
        notes.contains("3 × 500.000 ₫") && notes.contains("1 × 10.000 ₫"),
        "{notes}"
    );
    shot(&c, "05-cash-out-pay").await;
    press(&c, Key::Enter).await;
    let cash_out = tx_id(&c).await;
    assert_eq!(wait_for(&c, "#status").await, "Thành công");
    wait_for(&c, "#printed").await;

    // A bill in cash.
    press(&c, Key::F4).await;
    at(&c, &base, "/bills").await;
    let bills = h.bill_customers();
    let mut evn = bills
        .iter()
        .filter(|b| b.biller == "EVN" && b.bills_due > 0);
    let (cash_bill, card_bill) = (evn.next().unwrap(), evn.next().unwrap());
    typed(&c, "#biller", "EVN").await;
    entered(&c, "#customer", &cash_bill.customer).await;
    assert!(
        wait_for(&c, "#bill-customer")
            .await
            .contains(&cash_bill.name)
    );
    shot(&c, "06-bills").await;
    press(&c, Key::Enter).await;
    let bill_cash = tx_id(&c).await;
    assert_eq!(wait_for(&c, "#status").await, "Thành công");
    wait_for(&c, "#printed").await;

    // A bill by card: the PIN goes into the PIN window, never this page.
    let card_holder = h.customer(VCB, 5_000_000);
    bills_of(&c, &base, "EVN", &card_bill.customer).await;
    wait_for(&c, "#bills-total").await;
    typed(&c, "#funding", "Th").await;
    entered(&c, "#card", &card_holder.card).await;
    wait_for(&c, "#waiting-pin").await;
    shot(&c, "07-card-waiting-pin").await;
    assert!(
        !c.source().await.unwrap().contains(&card_holder.pin),
        "no PIN in the counter's page"
    );
    let pin_pad = browser(&d).await;
    pin_pad.goto(&pin_url).await.unwrap();
    entered(&pin_pad, "#pin", &card_holder.pin).await;
    wait_for(&pin_pad, "#pin-taken").await;
    pin_pad.close().await.unwrap();
    let bill_card = tx_id(&c).await;
    assert_eq!(wait_for(&c, "#status").await, "Thành công");
    wait_for(&c, "#printed").await;
    shot(&c, "08-card-done").await;

    // A bill by QR: the code shows on the customer's window; when the
    // customer's bank pays it, the waiting page completes and prints.
    let qr_bill = evn.next().unwrap();
    bills_of(&c, &base, "EVN", &qr_bill.customer).await;
    wait_for(&c, "#bills-total").await;
    entered(&c, "#funding", "Mã").await;
    wait_for(&c, "#waiting-qr").await;
    let bill_qr = tx_id(&c).await;
    let counter_window = c.window().await.unwrap();
    let customer_window = c.new_window(false).await.unwrap().handle;
    c.switch_to_window(customer_window).await.unwrap();
    c.goto(&format!("{base}/customer")).await.unwrap();
    wait_for(&c, "#customer-qr").await;
    shot(&c, "09-customer-window-qr").await;
    c.switch_to_window(counter_window).await.unwrap();
    let payload = h
        .teller(TERMINAL)
        .get(&bill_qr)
        .await
        .unwrap()
        .transaction
        .unwrap()
        .qr_payload;
    h.bank(VCB)
        .pay_qr("counter-qr-1", &payload, &spender.account, 0)
        .await
        .unwrap();
    assert_eq!(
        wait_for_text(&c, "#status", "Thành công").await,
        "Thành công"
    );
    wait_for(&c, "#printed").await;

    // A top-up, in cash.
    press(&c, Key::F6).await;
    at(&c, &base, "/topup").await;
    typed(&c, "#provider", "VIETTEL").await;
    typed(&c, "#phone", "0961234567").await;
    typed(&c, "#amount", "50").await;
    press(&c, Key::Enter).await;
    let top_up = tx_id(&c).await;
    assert_eq!(wait_for(&c, "#status").await, "Thành công");
    wait_for(&c, "#printed").await;

    // Over the customer's daily limit (cash-in and cash-out together, 20
    // million đồng): refused with the sentence and what is left.
    press(&c, Key::F2).await;
    at(&c, &base, "/cash-in").await;
    typed(&c, "#bank", "970422 · MB").await;
    typed(&c, "#account", &saver.account).await;
    entered(&c, "#amount", "19.600.000").await;
    wait_for(&c, "#holder").await;
    press(&c, Key::Enter).await;
    let refusal = wait_for(&c, "#refusal").await;
    assert!(
        refusal.contains("Theo quy định")
            && refusal.contains("20.000.000 ₫")
            && refusal.contains("19.500.000 ₫"),
        "{refusal}"
    );
    shot(&c, "10-refused-over-limit").await;

    // Today's transactions: find the cash-in by its amount, reprint it.
    press(&c, Key::F7).await;
    at(&c, &base, "/today").await;
    let list = wait_for(&c, "#today").await;
    for id in [
        &cash_in, &cash_out, &bill_cash, &bill_card, &bill_qr, &top_up,
    ] {
        assert!(list.contains(id.as_str()), "{id} listed");
    }
    entered(&c, "#q", "500000").await;
    at(&c, &base, "/today?q=500000").await;
    assert!(wait_for(&c, "#today").await.contains(&cash_in));
    shot(&c, "11-today").await;
    typed(&c, ".reprint", &String::from(char::from(Key::Enter))).await;
    assert_eq!(tx_id(&c).await, cash_in);
    wait_for(&c, "#printed").await;

    // Close the shift, a 1.000 ₫ note short of what the ledger expects.
    press(&c, Key::F9).await;
    at(&c, &base, "/shift/close").await;
    let expected = {
        let mut t = h.teller(TERMINAL);
        let mut expected: i64 = 20_000_000;
        for (id, sign) in [
            (&cash_in, 1),
            (&cash_out, -1),
            (&bill_cash, 1),
            (&top_up, 1),
        ] {
            let tx = t.get(id).await.unwrap().transaction.unwrap();
            expected += sign * (tx.amount as i64 + if sign > 0 { tx.fee as i64 } else { 0 });
        }
        expected as u64
    };
    let counted = expected - 1_000;
    let (mut notes, mut left) = (Vec::new(), counted);
    for d in counter::cash::DENOMINATIONS {
        notes.push((d, left / d));
        left %= d;
    }
    for (d, n) in &notes {
        if *n > 0 {
            typed(&c, &format!("#n{d}"), &n.to_string()).await;
        }
    }
    shot(&c, "12-close-count").await;
    press(&c, Key::Enter).await;
    assert_eq!(wait_for(&c, "#variance").await, "-1.000 ₫");
    assert_eq!(wait_for(&c, "#counted").await, receipt::vnd(counted));
    wait_for(&c, "#printed").await;
    shot(&c, "13-closed").await;

    // English is a switch away.
    typed(&c, "#lang", &String::from(char::from(Key::Enter))).await;
    let mut english = false;
    for _ in 0..100 {
        if wait_for(&c, "#who").await.starts_with("Teller") {
            english = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(english, "the screen is in English");
    shot(&c, "14-english").await;

    // Every receipt printed decodes: seven transactions' receipts (one a
    // reprint) and the shift report, each initialised, drawn and cut.
    let all = printed(state.path());
    assert_eq!(
        all.len(),
        8,
        "{:?}",
        all.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    for (name, p) in &all {
        assert!(p.initialised && p.cuts == 1 && p.raster.is_some(), "{name}");
    }
    // The cash-in's receipt is the one its transaction lays out.
    let tx = h
        .teller(TERMINAL)
        .get(&cash_in)
        .await
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(tx.teller, "Nguyễn Thị Lan");
    let want = receipt::render::render(
        &receipt::Receipt::of(
            &tx,
            &receipt::Counter {
                post_office_name: office_name,
                teller: String::new(),
            },
        ),
        receipt::Paper::Mm80,
    );
    let first = all.iter().find(|(n, _)| n.contains(&cash_in)).unwrap();
    assert_eq!(
        first.1.raster.as_ref().unwrap(),
        &want,
        "the printed raster is the receipt"
    );
    // The printer got the last job (the shift report).
    let last = escpos::read(&std::fs::read(&printer_file).unwrap()).unwrap();
    assert_eq!(last, all.last().unwrap().1);

    c.close().await.unwrap();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    h.assert_ledger_clean().await;
}
