//! Two switch nodes on one PostgreSQL (issue #14): any request may reach
//! any node. Each test starts its own throw-away cluster, whichever backend
//! the rest of the suite runs on.

use std::sync::Arc;

use proto::v1 as pb;
use tests::{Harness, error_code};

const MB: &str = "970422";

/// Node A (which provisions the demo network), then node B.
async fn two_nodes() -> (Harness, Harness) {
    two_nodes_with(|_| {}).await
}

/// The same, each node's config tuned by `tune`.
async fn two_nodes_with(tune: impl Fn(&mut switch::Config)) -> (Harness, Harness) {
    let pg = Arc::new(pgtest::Cluster::start());
    let a = Harness::start_node(tempfile::tempdir().unwrap(), pg.clone(), None, &tune).await;
    let profiles = a.data_dir().join("profiles");
    let b = Harness::start_node(tempfile::tempdir().unwrap(), pg, Some(&profiles), &tune).await;
    (a, b)
}

/// A terminal provisioned through `node` (an operator's call), and its
/// credentials.
async fn new_terminal(node: &Harness, id: &str, opening_cash: u64) -> proto::auth::Credentials {
    let r = node
        .admin()
        .provision_terminal(node.credentials("operator").sign(
            "/paymentswitch.v1.Admin/ProvisionTerminal",
            pb::ProvisionTerminalRequest {
                terminal_id: id.into(),
                post_office_id: "tho-tang".into(),
                opening_cash,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    proto::auth::Credentials::from_hex(id, &r.secret).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cash_out_started_on_one_node_is_confirmed_on_the_other_once() {
    let (a, b) = two_nodes().await;
    let c = a.customer(MB, 1_000_000);
    let before = a.bank_balance(MB, &c.account);
    let code = a.withdrawal_code(MB, &c.account, 500_000);
    let mut on_a = a.teller("tho-tang-1");
    let mut on_b = b.teller("tho-tang-1");
    let started = on_a
        .cash_out_start("out-1", MB, &c.account, &code, 500_000)
        .await
        .unwrap();
    assert_eq!(started.status(), pb::TxStatus::Pending);
    // Node B sees it, and confirms it.
    let seen = on_b.get(&started.transaction_id).await.unwrap();
    assert_eq!(seen.transaction.unwrap().status(), pb::TxStatus::Pending);
    let (ra, rb) = tokio::join!(
        on_b.cash_out_confirm(&started.transaction_id),
        on_a.cash_out_confirm(&started.transaction_id)
    );
    // Both answer the one outcome: confirmed once.
    assert_eq!(ra.unwrap().status(), pb::TxStatus::Completed);
    assert_eq!(rb.unwrap().status(), pb::TxStatus::Completed);
    let e = on_a
        .cash_out_cancel(&started.transaction_id)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "not_pending", "{e:?}");
    assert_eq!(
        a.bank_balance(MB, &c.account),
        before - 500_000 - started.fee
    );
    a.assert_ledger_clean().await;
    b.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_sent_to_the_other_node_answers_the_same_transaction() {
    let (a, b) = two_nodes().await;
    let c = a.customer(MB, 0);
    let first = a
        .teller("tho-tang-1")
        .cash_in("in-1", MB, &c.account, 300_000)
        .await
        .unwrap();
    let retry = b
        .teller("tho-tang-1")
        .cash_in("in-1", MB, &c.account, 300_000)
        .await
        .unwrap();
    assert_eq!(retry.transaction_id, first.transaction_id);
    assert_eq!(retry.status(), pb::TxStatus::Completed);
    // The same request id with other content is refused on either node.
    let e = b
        .teller("tho-tang-1")
        .cash_in("in-1", MB, &c.account, 300_001)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "request_id_reused", "{e:?}");
    b.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_at_a_time_runs_the_background_jobs_and_the_other_takes_over() {
    let (a, b) = two_nodes().await;
    // A started first: its worker took the lease (or takes it now); B is
    // refused while A lives.
    assert!(a.switch.store.worker_lease().await.unwrap());
    assert!(!b.switch.store.worker_lease().await.unwrap());
    // A goes away (its connections close): B's next ask takes it.
    drop(a);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !b.switch.store.worker_lease().await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "B never took the lease"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_provisioned_on_one_node_signs_on_the_other_and_a_replay_is_refused_everywhere()
{
    let (a, b) = two_nodes().await;
    let fresh = new_terminal(&a, "tho-tang-9", 1_000_000).await;
    // Node B never loaded it, and takes it at once.
    let c = a.customer(MB, 0);
    let tx = b
        .teller_with(fresh.clone())
        .cash_in("new-1", MB, &c.account, 100_000)
        .await
        .unwrap();
    assert_eq!(tx.status(), pb::TxStatus::Completed);
    // One signed request (one nonce), sent to A and then replayed to B.
    let signed = |creds: &proto::auth::Credentials| {
        creds.sign_at(
            "/paymentswitch.v1.Teller/NameInquiry",
            pb::NameInquiryRequest {
                bank_bin: MB.into(),
                account: c.account.clone(),
            },
            proto::auth::now_ms(),
            "replayed-nonce-0001",
        )
    };
    let creds = a.credentials("tho-tang-1");
    let first = signed(&creds);
    let (md, message) = (first.metadata().clone(), first.get_ref().clone());
    a.raw_teller()
        .name_inquiry(first)
        .await
        .expect("the first use passes");
    let mut replay = tonic::Request::new(message);
    *replay.metadata_mut() = md;
    let e = b.raw_teller().name_inquiry(replay).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(e.message().contains("replayed"), "{}", e.message());
}

/// A node showing a transaction of a terminal it never saw (provisioned on
/// the other node after it started, and never signed in here) reads the
/// terminal's ledger numbers from the store: the console on B lists the
/// reserved legs of a cash-out started on A. (This path panicked before.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shows_the_legs_of_a_terminal_only_the_other_node_has_seen() {
    use tests::console::{Client, Console, console_user};
    let (a, b) = two_nodes().await;
    let fresh = new_terminal(&a, "tho-tang-8", 2_000_000).await;
    let c = a.customer(MB, 5_000_000);
    let code = a.withdrawal_code(MB, &c.account, 600_000);
    let tx = a
        .teller_with(fresh)
        .cash_out_start("seen-on-a", MB, &c.account, &code, 600_000)
        .await
        .unwrap();
    assert!(!b.switch.knows_terminal("tho-tang-8"));
    let console = Console::start(&b, true).await;
    let password = console_user(&b, "olga", "operator", "").await;
    let mut browser = Client::new(&console);
    assert_eq!(browser.sign_in("olga", &password).await.status, 303);
    let shown = browser
        .get(&format!("/transactions/{}", tx.transaction_id))
        .await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(
        shown.body.contains("id=\"legs\"") && shown.body.contains("pending"),
        "{}",
        shown.body
    );
    assert!(b.switch.knows_terminal("tho-tang-8"), "and remembers it");
}

/// A console user disabled through node A is signed out of node B's
/// console at their next request: each node reads the user again then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_user_disabled_on_one_node_is_signed_out_of_the_other() {
    use tests::console::{Client, Console, console_user};
    let (a, b) = two_nodes().await;
    let password = console_user(&a, "petr", "operator", "").await;
    let console = Console::start(&b, true).await;
    let mut browser = Client::new(&console);
    assert_eq!(browser.sign_in("petr", &password).await.status, 303);
    assert_eq!(browser.get("/overview").await.status, 200);
    a.admin()
        .disable_console_user(a.credentials("operator").sign(
            "/paymentswitch.v1.Admin/DisableConsoleUser",
            pb::DisableConsoleUserRequest {
                name: "petr".into(),
                reason: "laptop stolen".into(),
            },
        ))
        .await
        .unwrap();
    let r = browser.get("/overview").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
}

/// A console session lives in the shared store (issue #26): signed in
/// through node A's console, the same cookie works on node B's, and
/// signing out on B ends it on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_session_begun_on_one_node_works_on_the_other() {
    use tests::console::{Client, Console, console_user};
    let (a, b) = two_nodes().await;
    let password = console_user(&a, "vy", "operator", "").await;
    let (on_a, on_b) = (
        Console::start(&a, true).await,
        Console::start(&b, true).await,
    );
    let mut browser = Client::new(&on_a);
    assert_eq!(browser.sign_in("vy", &password).await.status, 303);
    let mut same_cookie = Client::new(&on_b);
    same_cookie.cookie = browser.cookie.clone();
    let page = same_cookie.get("/overview").await;
    assert_eq!(page.status, 200, "{}", page.body);
    // Sign out on B (its forms carry the session's CSRF token, the same on
    // every node): A's console no longer knows the session.
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF field")
        .to_string();
    assert_eq!(
        same_cookie.post("/logout", &[("csrf", &csrf)]).await.status,
        303
    );
    let r = browser.get("/overview").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
}

/// A merchant watching on node B hears of payments completed through either
/// node, in number order and without gaps; resuming by cursor on node A
/// continues exactly where it left off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_payments_on_one_node_streams_payments_made_through_the_other() {
    // No rescan within the test: a payment stored through A reaches B's
    // watcher only by PostgreSQL's notification (LISTEN/NOTIFY).
    let (a, b) = two_nodes_with(|c| c.watch_rescan_ms = 3_600_000).await;
    let payer = a.customer("970436", 5_000_000);
    let mut watch_b = b.merchant("tap-hoa-tho-tang").watch(0).await;
    let mut paid = Vec::new();
    for i in 0..6 {
        // Codes made and paid through alternating nodes.
        let (make, pay) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let code = make
            .merchant("tap-hoa-tho-tang")
            .create_qr(&format!("order-{i}"), 10_000 + i, &format!("DH-{i}"), 0)
            .await
            .unwrap();
        let tx = pay
            .bank("970436")
            .pay_qr(&format!("pay-{i}"), &code.payload, &payer.account, 0)
            .await
            .unwrap();
        assert_eq!(tx.status(), pb::TxStatus::Completed);
        paid.push(tx.transaction_id);
    }
    let mut heard = Vec::new();
    while heard.len() < paid.len() {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), watch_b.message())
            .await
            .expect("a notice within 10 s")
            .unwrap()
            .expect("the stream stays open");
        heard.push(n);
    }
    let seqs: Vec<u64> = heard.iter().map(|n| n.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, without gaps: {seqs:?}"
    );
    let mut ids: Vec<String> = heard.iter().map(|n| n.transaction_id.clone()).collect();
    ids.sort();
    paid.sort();
    assert_eq!(ids, paid, "every payment, once");

    // Resume on node A after the third notice: the last three, in order.
    let mut watch_a = a.merchant("tap-hoa-tho-tang").watch(seqs[2]).await;
    for want in &seqs[3..] {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), watch_a.message())
            .await
            .expect("a notice within 10 s")
            .unwrap()
            .unwrap();
        assert_eq!(n.seq, *want);
    }
    a.assert_ledger_clean().await;
}

/// Two nodes started at the same moment on an empty database: one
/// provisions the demo network (and writes the client profiles), the other
/// waits for its turn and finds it; the credentials the first wrote work
/// on the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_starting_together_on_an_empty_store_provision_once() {
    let pg = Arc::new(pgtest::Cluster::start());
    // Tasks of their own, as two processes would be (one task polling both
    // would stop both whenever either waits synchronously for the store).
    // The operator gives both the same master key.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("master.key");
    let start = || {
        let key = key.clone();
        tokio::spawn(Harness::start_node(
            tempfile::tempdir().unwrap(),
            pg.clone(),
            None,
            move |c| c.master_key_file = Some(key),
        ))
    };
    let (a, b) = tokio::join!(start(), start());
    let (a, b) = (a.unwrap(), b.unwrap());
    let wrote = |h: &Harness| h.data_dir().join("profiles/tho-tang-1.toml").exists();
    assert!(
        wrote(&a) != wrote(&b),
        "exactly one node provisioned (a: {}, b: {})",
        wrote(&a),
        wrote(&b)
    );
    let (first, other) = if wrote(&a) { (&a, &b) } else { (&b, &a) };
    assert_eq!(
        other.switch.store.windows().unwrap().len(),
        1,
        "one first window"
    );
    let c = first.customer(MB, 0);
    let tx = other
        .teller_with(first.credentials("tho-tang-1"))
        .cash_in("in-1", MB, &c.account, 100_000)
        .await
        .unwrap();
    assert_eq!(tx.status(), pb::TxStatus::Completed);
    first.assert_ledger_clean().await;
}

/// One dynamic code, two payer banks paying it at the same moment through
/// two nodes: paid once, the other refused, one payer debited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_two_banks_race_to_pay_on_two_nodes_is_paid_once() {
    let (a, b) = two_nodes().await;
    let code = a
        .merchant("tap-hoa-tho-tang")
        .create_qr("order-race", 120_000, "DH-RACE", 0)
        .await
        .unwrap();
    for round in 0..5 {
        let code = if round == 0 {
            code.clone()
        } else {
            b.merchant("tap-hoa-tho-tang")
                .create_qr(&format!("order-race-{round}"), 120_000, "DH-RACE", 0)
                .await
                .unwrap()
        };
        let (payer_a, payer_b) = (
            a.customer("970436", 1_000_000),
            a.customer("970415", 1_000_000),
        );
        let (mut bank_a, mut bank_b) = (a.bank("970436"), b.bank("970415"));
        let (id_a, id_b) = (format!("race-a-{round}"), format!("race-b-{round}"));
        let (ra, rb) = tokio::join!(
            bank_a.pay_qr(&id_a, &code.payload, &payer_a.account, 0),
            bank_b.pay_qr(&id_b, &code.payload, &payer_b.account, 0),
        );
        let won = [&ra, &rb]
            .iter()
            .filter(|r| {
                r.as_ref()
                    .is_ok_and(|t| t.status() == pb::TxStatus::Completed)
            })
            .count();
        assert_eq!(won, 1, "round {round}: {ra:?} {rb:?}");
        for e in [&ra, &rb].iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(error_code(e), "qr_already_paid", "{e:?}");
        }
    }
    a.assert_ledger_clean().await;
}

/// One customer's bills paid in cash from counters on two nodes at the same
/// moment: paid once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bills_two_counters_race_to_pay_on_two_nodes_are_paid_once() {
    let (a, b) = two_nodes().await;
    let customers: Vec<_> = a
        .bill_customers()
        .into_iter()
        .filter(|c| c.bills_due > 0)
        .take(6)
        .collect();
    assert!(!customers.is_empty());
    for (n, c) in customers.iter().enumerate() {
        let (mut on_a, mut on_b) = (a.teller("tho-tang-1"), b.teller("tam-dao-1"));
        let id = format!("race-{n}");
        let (ra, rb) = tokio::join!(
            on_a.pay_bills(&id, &c.biller, &c.customer, &[], pb::Funding::Cash, None),
            on_b.pay_bills(&id, &c.biller, &c.customer, &[], pb::Funding::Cash, None),
        );
        let won = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{} {}: {ra:?} {rb:?}", c.biller, c.customer);
        for e in [&ra, &rb].iter().filter_map(|r| r.as_ref().err()) {
            let code = error_code(e);
            assert!(
                code == "bill_already_paid" || code == "bill_not_due",
                "{e:?}"
            );
        }
    }
    a.assert_ledger_clean().await;
}

/// Both nodes run the schedule (every 300 ms) and operators on both close
/// the same window at the same moment, under traffic through both: the
/// nodes see one list of windows, numbered without gaps, each closed once,
/// and every posted transfer is in exactly one window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_close_once_with_two_nodes_and_every_transfer_is_in_exactly_one() {
    let pg = Arc::new(pgtest::Cluster::start());
    let schedule = |c: &mut switch::Config| c.settlement.interval_ms = Some(300);
    let a = Harness::start_node(tempfile::tempdir().unwrap(), pg.clone(), None, schedule).await;
    let profiles = a.data_dir().join("profiles");
    let b = Harness::start_node(tempfile::tempdir().unwrap(), pg, Some(&profiles), schedule).await;
    let c = a.customer(MB, 0);
    let (mut ops_a, mut ops_b) = (a.settlement("operator"), b.settlement("operator"));
    let mut acked = Vec::new();
    for i in 0..40u64 {
        let node = if i % 2 == 0 { &a } else { &b };
        let tx = node
            .teller("tho-tang-1")
            .cash_in(&format!("w-{i}"), MB, &c.account, 10_000 + i)
            .await
            .unwrap();
        acked.push(tx.transaction_id);
        if i % 8 == 4 {
            let open = ops_a.windows().await.last().unwrap().window_id;
            let (ra, rb) = tokio::join!(ops_a.close_id(open), ops_b.close_id(open));
            // Whoever answers first closed it; the other (or the schedule)
            // found it closed: the same window either way.
            for w in [ra, rb].into_iter().flatten() {
                assert_eq!(w.window_id, open);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    let (seen_a, seen_b) = (ops_a.windows().await, ops_b.windows().await);
    assert_eq!(seen_a, seen_b, "one list of windows");
    let ids: Vec<u64> = seen_a.iter().map(|w| w.window_id).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "no gaps");
    assert!(ids.len() >= 4, "the schedule closed windows: {ids:?}");
    let (open, closed) = seen_a.split_last().unwrap();
    assert!(closed.iter().all(|w| w.state != "open") && open.state == "open");
    // Windows tile the ledger's time: no transfer in two, none in none.
    let mut seen = std::collections::HashSet::new();
    let mut from = 0;
    for w in closed {
        let scan = a
            .switch
            .scan_window(from, w.cutoff_timestamp)
            .await
            .unwrap();
        for id in &scan.transfer_ids {
            assert!(seen.insert(*id), "transfer {id:x} is in two windows");
        }
        assert!(w.cutoff_timestamp > from, "cut-offs increase");
        from = w.cutoff_timestamp;
    }
    let whole = a.switch.scan_window(0, from).await.unwrap();
    assert_eq!(seen.len(), whole.transfer_ids.len(), "none in no window");
    let in_some = acked
        .iter()
        .filter(|id| seen.contains(&switch::ids::TxId::parse(id).unwrap().leg(17)))
        .count();
    assert!(
        in_some > 0,
        "the closed windows hold the cash-ins before them"
    );
    a.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_reconciled_on_one_node_is_seen_and_resolved_on_the_other() {
    let (a, b) = two_nodes().await;
    let c = a.customer(MB, 0);
    let mut t = a.teller("tho-tang-1");
    let mut lines = Vec::new();
    for (i, amount) in [120_000u64, 340_000].into_iter().enumerate() {
        let tx = t
            .cash_in(&format!("in-{i}"), MB, &c.account, amount)
            .await
            .unwrap();
        lines.push(format!("{},{amount},credit,completed,x", tx.transaction_id));
    }
    a.settlement("operator").close().await;
    // The bank's statement has one amount wrong.
    lines[1] = lines[1].replace(",340000,", ",340001,");
    let mut statement = String::from("transaction_id,amount,direction,status,posted_at\n");
    for l in &lines {
        statement.push_str(l);
        statement.push('\n');
    }
    let bank = format!("bank-{MB}");
    let r = b
        .settlement(&bank)
        .reconcile(1, statement.as_bytes(), 32, None)
        .await
        .unwrap();
    assert_eq!(r.exceptions_total, 1, "{r:?}");
    let exception = &r.exceptions[0];
    assert_eq!(exception.class, "amount_mismatch");
    // Node A finds the run node B made, and resolves its exception.
    let resolved = a
        .settlement("operator")
        .resolve(1, MB, &exception.exception_id, "typo at the bank")
        .await
        .unwrap();
    assert_eq!(resolved.resolution_note, "typo at the bank");
    // The same statement sent to node A answers node B's report, resolved.
    let again = a
        .settlement(&bank)
        .reconcile(1, statement.as_bytes(), 16, None)
        .await
        .unwrap();
    assert_eq!(again.exceptions.len(), 1);
    assert_eq!(again.exceptions[0].resolution_note, "typo at the bank");
    let audit = b.switch.audit_trail().unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["exception"], exception.exception_id.as_str());
}

/// Whether `creds` get past the signature check on `h` (a lookup of a
/// transaction nobody made: anything but UNAUTHENTICATED means they did).
async fn signs_on(h: &Harness, creds: &proto::auth::Credentials) -> bool {
    let e = h
        .teller_with(creds.clone())
        .get("01a2320756f2de31dd389cb4360dc500")
        .await
        .unwrap_err();
    e.code() != tonic::Code::Unauthenticated
}

/// Ask until `signs_on` answers `want`, for at most ten times the nodes'
/// recheck interval (the answer must come within one).
async fn comes_to(h: &Harness, creds: &proto::auth::Credentials, want: bool) -> bool {
    for _ in 0..100 {
        if signs_on(h, creds).await == want {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_or_revoked_on_one_node_is_refused_on_the_other() {
    // No rotation grace: the old secret is refused from the rotation on.
    let (a, b) = two_nodes_with(|c| c.key_rotation_grace_ms = 0).await;
    let operator_a = a.credentials("operator");
    let old = a.credentials("tho-tang-2");
    assert!(signs_on(&b, &old).await, "B knows the key before");

    // Rotated through A: A refuses the old secret at once and takes the
    // new one; B follows.
    let rotated = a
        .admin()
        .rotate_key(operator_a.sign(
            "/paymentswitch.v1.Admin/RotateKey",
            pb::RotateKeyRequest {
                key_id: "tho-tang-2".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rotated.role, "teller");
    let new = proto::auth::Credentials::from_hex("tho-tang-2", &rotated.secret).unwrap();
    assert!(!signs_on(&a, &old).await);
    assert!(signs_on(&a, &new).await);
    assert!(comes_to(&b, &new, true).await, "B takes the new secret");
    assert!(comes_to(&b, &old, false).await, "B refuses the old one");

    // Revoked through B: B refuses it at once, A follows.
    let teller = a.credentials("tho-tang-1");
    assert!(signs_on(&a, &teller).await);
    let operator_b = a.credentials("operator");
    let revoke = |key_id: &str| {
        operator_b.sign(
            "/paymentswitch.v1.Admin/RevokeKey",
            pb::RevokeKeyRequest {
                key_id: key_id.into(),
                reason: "terminal stolen".into(),
            },
        )
    };
    let revoked = b.admin().revoke_key(revoke("tho-tang-1")).await.unwrap();
    let revoked = revoked.into_inner();
    assert_eq!(
        (revoked.revoked_by.as_str(), revoked.reason.as_str()),
        ("operator", "terminal stolen")
    );
    let e = b
        .teller_with(teller.clone())
        .get("01a2320756f2de31dd389cb4360dc500")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(e.message().contains("revoked"), "{}", e.message());
    assert!(comes_to(&a, &teller, false).await, "A refuses it too");
    // Revoking again answers the first revocation; a revoked key is not
    // rotated; an operator does not revoke their own key; an unknown key
    // is named.
    let again = b.admin().revoke_key(revoke("tho-tang-1")).await.unwrap();
    assert_eq!(again.into_inner().revoked_at_ms, revoked.revoked_at_ms);
    let e = a
        .admin()
        .rotate_key(operator_a.sign(
            "/paymentswitch.v1.Admin/RotateKey",
            pb::RotateKeyRequest {
                key_id: "tho-tang-1".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "key_revoked", "{e:?}");
    let e = b.admin().revoke_key(revoke("operator")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = b.admin().revoke_key(revoke("nobody")).await.unwrap_err();
    assert_eq!(error_code(&e), "unknown_key", "{e:?}");
    // The others are untouched.
    assert!(signs_on(&a, &a.credentials("tam-dao-1")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_master_key_is_not_the_stores_refuses_to_start() {
    let pg = Arc::new(pgtest::Cluster::start());
    let a = Harness::start_node(tempfile::tempdir().unwrap(), pg.clone(), None, |_| {}).await;
    let b_dir = tempfile::tempdir().unwrap();
    // No key given: B writes a key of its own, which is not A's.
    let config = switch::Config {
        data_dir: b_dir.path().to_path_buf(),
        store: switch::config::StoreConfig {
            url: Some(pg.url("switch")),
        },
        ..switch::Config::default()
    };
    let e = switch::server::open(config, "127.0.0.1:1".parse().unwrap())
        .await
        .err()
        .expect("B refuses to start");
    assert!(e.to_string().contains("master key"), "{e}");
    // A serves on.
    a.assert_ledger_clean().await;
}
