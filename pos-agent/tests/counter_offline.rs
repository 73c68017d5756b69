//! A counter that rides out a network outage (issue #29): the link to the
//! switch is cut (a proxy in between drops every connection and refuses
//! new ones), and the teller, keyboard only in Chromium, takes a top-up, a
//! cash bill and a cash-in (each with a provisional voucher), sees a cash-
//! in over the offline cap refused and a cash-out refused, and cannot close
//! the shift over the queue. The link comes back: every queued item
//! completes exactly once, a bill paid elsewhere meanwhile and an item past
//! the maximum age come back as refunds owed, which the teller records
//! before closing; the ledger check is clean.
//!
//! `counter_outbox_survives_kill_9` runs the agent as a process and kills
//! it in the middle of forwarding.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use browser::*;
use fantoccini::key::Key;
use pos_agent::counter::outbox::Outbox;
use pos_agent::counter::{self, tellers};
use proto::v1 as pb;
use tests::Harness;

mod browser;

const MB: &str = "970422";
const TERMINAL: &str = "tho-tang-1";

/// A TCP proxy the test can cut (every connection dropped, new ones
/// closed at once) and restore.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    live: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let live: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (cut2, live2) = (cut.clone(), live.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if cut2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                live2.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy { port, cut, live }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for t in self.live.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Wait until `f` holds of the outbox (read through a second connection,
/// as WAL allows), or fail after `seconds`.
async fn until(outbox: &Outbox, seconds: u64, what: &str, f: impl Fn(&Outbox) -> bool) {
    for _ in 0..seconds * 10 {
        if f(outbox) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The terminal's transactions with this request id at the switch.
async fn with_request_id(h: &Harness, terminal: &str, request_id: &str) -> Vec<pb::Transaction> {
    let mut t = h.teller(terminal);
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let m = pb::ListTransactionsRequest {
            page_size: 100,
            page_token: token.clone(),
        };
        let r = t
            .client
            .list_transactions(
                t.credentials
                    .sign("/paymentswitch.v1.Teller/ListTransactions", m),
            )
            .await
            .unwrap()
            .into_inner();
        out.extend(
            r.transactions
                .into_iter()
                .filter(|x| x.client_request_id == request_id),
        );
        if r.next_page_token.is_empty() {
            return out;
        }
        token = r.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_rides_out_a_cut_link_and_forwards_each_item_once() {
    // This switch lets cash-ins wait too (as once the partner bank agrees).
    let h = Harness::start(|c| c.offline.cash_in = true).await;
    h.teller(TERMINAL).close_shift(20_000_000).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut book = tellers::Book::default();
    book.set("lan", "Nguyễn Thị Lan", "mat-khau-cua-lan")
        .unwrap();
    book.save(state.path()).unwrap();
    let mut profile = pos_agent::client::Profile::load(
        &h.data_dir()
            .join("profiles")
            .join(format!("{TERMINAL}.toml")),
    )
    .unwrap();
    let upstream = profile.switch.trim_start_matches("http://").to_string();
    let proxy = Proxy::start(upstream).await;
    profile.switch = format!("http://127.0.0.1:{}", proxy.port);
    // The counter's clock: the test moves it to take an item "yesterday".
    let offset_ms = Arc::new(AtomicI64::new(0));
    let clock = offset_ms.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = counter::Config {
        profile,
        state_dir: state.path().to_path_buf(),
        printer: None,
        paper: pos_agent::receipt::Paper::Mm80,
        idle_timeout_ms: 15 * 60_000,
        pin_timeout_ms: 60_000,
        now_ms: Arc::new(move || proto::auth::now_ms() + clock.load(Ordering::SeqCst)),
        forward_backoff_max_ms: 1_000,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(counter::run(listener, pin_listener, config, async {
        let _ = stopped.await;
    }));
    let outbox = Outbox::open(&state.path().join("outbox.db")).unwrap();

    let d = driver();
    let c = browser(&d).await;
    sign_in(&c, &base, "lan", "mat-khau-cua-lan").await;
    until(&outbox, 30, "the offline policy", |o| {
        o.policy().unwrap().is_some()
    })
    .await;
    entered(&c, "#n500000", "40").await;
    at(&c, &base, "/cash-in").await;

    // Online, the teller looks two customers' bills up and a holder's name.
    let mut evn = h
        .bill_customers()
        .into_iter()
        .filter(|b| b.biller == "EVN" && b.bills_due > 0);
    let (paid_here, paid_elsewhere) = (evn.next().unwrap(), evn.next().unwrap());
    for b in [&paid_here, &paid_elsewhere] {
        bills_of(&c, &base, "EVN", &b.customer).await;
        wait_for(&c, "#bills-total").await;
    }
    let saver = h.customer(MB, 0);
    press(&c, Key::F2).await;
    at(&c, &base, "/cash-in").await;
    typed(&c, "#bank", "MB").await;
    typed(&c, "#account", &saver.account).await;
    entered(&c, "#amount", "100000").await;
    assert_eq!(wait_for(&c, "#holder").await, saver.name);

    // The link is cut.
    proxy.cut();

    // A top-up in cash: a provisional voucher.
    press(&c, Key::F6).await;
    at(&c, &base, "/topup").await;
    typed(&c, "#provider", "VIETTEL").await;
    typed(&c, "#amount", "50").await;
    entered(&c, "#phone", "0961234567").await;
    let top_up_voucher = wait_for(&c, "#voucher").await;
    wait_for(&c, "#offline").await;
    shot(&c, "offline-1-voucher").await;

    // A cash bill inquired an hour ago at most.
    for b in [&paid_here, &paid_elsewhere] {
        bills_of(&c, &base, "EVN", &b.customer).await;
        wait_for(&c, "#offline-note").await;
        press(&c, Key::Enter).await;
        wait_for(&c, "#voucher").await;
    }
    // Meanwhile the second customer pays their bills at another counter.
    h.teller("tho-tang-2")
        .pay_bills(
            "elsewhere-1",
            "EVN",
            &paid_elsewhere.customer,
            &[],
            pb::Funding::Cash,
            None,
        )
        .await
        .unwrap();

    // A cash-in over the cap for one offline item is refused; under it,
    // taken, with the holder's name this counter showed before.
    for (amount, taken) in [("3.000.000", false), ("1.000.000", true)] {
        press(&c, Key::F2).await;
        at(&c, &base, "/cash-in").await;
        typed(&c, "#bank", "MB").await;
        typed(&c, "#account", &saver.account).await;
        entered(&c, "#amount", amount).await;
        assert_eq!(wait_for(&c, "#holder").await, saver.name);
        wait_for(&c, "#offline-note").await;
        press(&c, Key::Enter).await;
        if taken {
            wait_for(&c, "#voucher").await;
        } else {
            let r = wait_for(&c, "#refusal").await;
            assert!(r.contains("mức tối đa"), "{r}");
            shot(&c, "offline-2-over-cap").await;
        }
    }

    // A cash-out may not wait.
    press(&c, Key::F3).await;
    at(&c, &base, "/cash-out").await;
    typed(&c, "#bank", "MB").await;
    typed(&c, "#account", &saver.account).await;
    typed(&c, "#code", "123456").await;
    entered(&c, "#amount", "200000").await;
    let r = wait_for(&c, "#refusal").await;
    assert!(r.contains("mất kết nối"), "{r}");
    shot(&c, "offline-3-cash-out-refused").await;

    // A top-up taken "yesterday" (the counter's clock moved back 25 h):
    // past the day an item may wait when it is forwarded.
    offset_ms.store(-25 * 3_600_000, Ordering::SeqCst);
    press(&c, Key::F6).await;
    at(&c, &base, "/topup").await;
    typed(&c, "#provider", "VIETTEL").await;
    typed(&c, "#amount", "20").await;
    entered(&c, "#phone", "0961234568").await;
    wait_for(&c, "#voucher").await;
    offset_ms.store(0, Ordering::SeqCst);
    // The clock's jump back and forth ended the session (idle a day, as
    // the counter saw it): the teller signs in again.
    sign_in(&c, &base, "lan", "mat-khau-cua-lan").await;
    assert!(wait_for(&c, "#queued").await.contains(": 5 ·"));

    // The shift does not close over the queue.
    press(&c, Key::F9).await;
    at(&c, &base, "/shift/close").await;
    entered(&c, "#n500000", "40").await;
    assert!(wait_for(&c, "#refusal").await.contains("chờ gửi"));

    // The link is back: the outbox drains, in order, each item once.
    proxy.restore();
    until(&outbox, 60, "the outbox to drain", |o| {
        o.queued().unwrap().is_empty()
    })
    .await;
    let items = outbox.all().unwrap();
    assert_eq!(items.len(), 5);
    for i in &items {
        let at_switch = with_request_id(&h, TERMINAL, &i.request_id).await;
        match i.state.as_str() {
            "done" => {
                assert_eq!(at_switch.len(), 1, "{} once", i.voucher);
                assert_eq!(at_switch[0].transaction_id, i.transaction_id);
                assert_eq!(at_switch[0].status, pb::TxStatus::Completed as i32);
                assert_eq!(at_switch[0].taken_at_ms, i.taken_at_ms);
                assert_eq!(
                    at_switch[0].fee, i.fee,
                    "the voucher collected the switch's fee"
                );
            }
            _ => assert!(
                at_switch.is_empty(),
                "{} refused: nothing at the switch",
                i.voucher
            ),
        }
    }
    let refused: Vec<&str> = items
        .iter()
        .filter(|i| i.state == "refused")
        .map(|i| i.error_code.as_str())
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.contains(&"offline_too_old"), "{refused:?}");
    assert!(
        items
            .iter()
            .any(|i| i.voucher == top_up_voucher && i.state == "done")
    );
    until(&outbox, 30, "the final receipts", |o| {
        o.unprinted().unwrap().is_empty()
    })
    .await;
    let printed = std::fs::read_dir(state.path().join("printed"))
        .unwrap()
        .count();
    assert_eq!(printed, 5 + 3, "five vouchers and three final receipts");

    // The console's counters page reads what the counter reported.
    let operator = switch::caller::Principal {
        id: "ops".into(),
        role: switch::caller::Role::Operator,
    };
    let mut seen = false;
    for _ in 0..100 {
        let reports = h.switch.outbox_reports(&operator).unwrap();
        if let Some(r) = reports.iter().find(|r| r.terminal_id == TERMINAL)
            && r.queued == 0
            && r.forwarded == 3
            && r.refused == 2
        {
            assert_eq!(r.refunds_due, 2);
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "the counter reported its outbox");

    // Two refunds owed: the teller hands the cash back and records it.
    c.goto(&format!("{base}/refunds")).await.unwrap();
    wait_for(&c, "#refunds").await;
    shot(&c, "offline-4-refunds").await;
    for _ in 0..2 {
        typed(&c, ".refund", &String::from(char::from(Key::Enter))).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for(&c, "#no-refunds").await;
    assert!(outbox.refunds_due().unwrap().is_empty());
    press(&c, Key::F9).await;
    at(&c, &base, "/shift/close").await;
    entered(&c, "#n500000", "40").await;
    wait_for(&c, "#shift-closed").await;

    c.close().await.unwrap();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    h.assert_ledger_clean().await;
}

/// The agent, as a process, killed with SIGKILL while it forwards its
/// outbox, and started again: every item completes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_outbox_survives_kill_9() {
    // A slow biller, so that the kill comes in the middle of forwarding.
    let h = Harness::start(|c| c.biller_sim.latency_ms = 300).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join(format!("{TERMINAL}.toml"));
    std::fs::copy(
        h.data_dir()
            .join("profiles")
            .join(format!("{TERMINAL}.toml")),
        &profile,
    )
    .unwrap();
    let state = dir.path().join(format!("{TERMINAL}-counter"));
    std::fs::create_dir_all(&state).unwrap();
    let outbox = Outbox::open(&state.join("outbox.db")).unwrap();
    let caps = pb::OfflinePolicy {
        top_up: true,
        one_max: 1_000_000,
        total_max: 10_000_000,
        count_max: 50,
        ..Default::default()
    };
    let taken = proto::auth::now_ms() - 60_000;
    let ids: Vec<String> = (0..8).map(|i| format!("kill-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let m = pb::TopUpRequest {
            client_request_id: id.clone(),
            provider: "VIETTEL".into(),
            phone: format!("096123450{i}"),
            amount: 50_000,
            funding: pb::Funding::Cash as i32,
            teller: "Nguyễn Thị Lan".into(),
            offline_taken_at_ms: taken,
            ..Default::default()
        };
        use prost::Message;
        outbox
            .enqueue(
                &caps,
                None,
                TERMINAL,
                id,
                "top_up",
                &m.encode_to_vec(),
                50_000,
                0,
                "VIETTEL",
                "Nguyễn Thị Lan",
                taken,
            )
            .unwrap()
            .unwrap();
    }
    let serve = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pos-agent"))
            .arg("--profile")
            .arg(&profile)
            .args([
                "counter",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--pin-listen",
                "127.0.0.1:0",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pos-agent runs")
    };
    let done = |o: &Outbox| {
        o.all()
            .unwrap()
            .iter()
            .filter(|i| i.state == "done")
            .count()
    };
    let mut agent = serve();
    until(&outbox, 60, "some items forwarded", |o| done(o) >= 2).await;
    agent.kill().unwrap(); // SIGKILL
    agent.wait().unwrap();
    let left = outbox.queued().unwrap().len();
    assert!(left > 0, "killed in the middle of forwarding ({left} left)");
    eprintln!("killed with {} forwarded and {left} queued", done(&outbox));

    let mut agent = serve();
    until(&outbox, 60, "the outbox to drain", |o| {
        o.queued().unwrap().is_empty()
    })
    .await;
    until(&outbox, 30, "the final receipts", |o| {
        o.unprinted().unwrap().is_empty()
    })
    .await;
    agent.kill().unwrap();
    agent.wait().unwrap();
    for id in &ids {
        let at_switch = with_request_id(&h, TERMINAL, id).await;
        assert_eq!(at_switch.len(), 1, "{id} completes once");
        assert_eq!(at_switch[0].status, pb::TxStatus::Completed as i32);
        assert_eq!(at_switch[0].taken_at_ms, taken);
    }
    assert!(outbox.all().unwrap().iter().all(|i| i.state == "done"));
    h.assert_ledger_clean().await;
}
