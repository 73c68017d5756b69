//! A biller in another process (issue #16, item 1): the switch reaches
//! VIETTEL over the BillerAdapter gRPC service (the simulator served as
//! `biller-sim` serves it). Inquiry, payment, a lost answer found by status
//! inquiry, an answer lost for good (cancelled from the durable queue), a
//! biller that is down (its breaker opens, the other billers serve on),
//! and the link over TLS with the switch's client certificate.

use std::sync::Arc;

use proto::v1 as pb;
use switch::accounts::Kind;
use switch::adapters::breaker::State;
use switch::config::{BillerConfig, SimConfig};
use switch::sim::{Fault, SimBiller};
use tests::{Harness, error_code};

const VIETTEL: &str = "VIETTEL";
const VIETTEL_NUMBER: u64 = 4;

/// VIETTEL's simulator in a directory of its own, served over the
/// BillerAdapter service on a free loopback port (TLS when given).
struct RemoteViettel {
    sim: Arc<SimBiller>,
    address: String,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    _dir: tempfile::TempDir,
}

async fn serve_viettel(tls: Option<tonic::transport::ServerTlsConfig>) -> RemoteViettel {
    serve_biller(VIETTEL, &[], tls).await
}

/// A biller's simulator served on loopback; `customers` seeds it (a biller
/// outside the demo has none of its own).
async fn serve_biller(
    code: &str,
    customers: &[switch::sim::biller::SimCustomer],
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> RemoteViettel {
    let dir = tempfile::tempdir().unwrap();
    let db = switch::store::Store::open_engine(dir.path()).unwrap();
    let tree = db
        .keyspace("biller", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    for c in customers {
        tree.insert(format!("c/{}", c.customer), serde_json::to_vec(c).unwrap())
            .unwrap();
    }
    let sim = Arc::new(SimBiller::open(code, true, SimConfig::default(), tree).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let address = format!(
        "{scheme}://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(switch::sim::service::serve_biller_sim(
        listener,
        sim.clone(),
        tls,
        async {
            let _ = stopped.await;
        },
    ));
    RemoteViettel {
        sim,
        address,
        stop,
        served,
        _dir: dir,
    }
}

fn remote(address: &str) -> BillerConfig {
    BillerConfig {
        code: VIETTEL.into(),
        remote: Some(address.into()),
        ..BillerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bills_are_paid_at_a_remote_biller_and_a_lost_answer_is_found() {
    let v = serve_viettel(None).await;
    let address = v.address.clone();
    let h = Harness::start(|c| c.billers = vec![remote(&address)]).await;
    assert!(
        !h.sims.billers.contains_key(VIETTEL),
        "VIETTEL is not simulated in-process"
    );
    assert!(h.sims.billers.contains_key("EVN"), "the others still are");
    let mut t = h.teller("vinh-yen-1");
    let c = h.bill_customer(VIETTEL, 2);
    let r = t.inquire_bills(VIETTEL, &c.customer).await.unwrap();
    assert_eq!(
        (r.customer_name.as_str(), r.bills.len(), r.total),
        (c.name.as_str(), 2, c.amount_due)
    );
    let e = t.inquire_bills(VIETTEL, "0980000000").await.unwrap_err();
    assert_eq!(error_code(&e), "bill_customer_not_found");
    // Pay the oldest bill; its answer is lost, and the status inquiry
    // over the wire finds it paid.
    v.sim.set_fault(Fault::LoseAnswers);
    let first = r.bills[0].bill_id.clone();
    let tx = t
        .pay_bills(
            "rb-1",
            VIETTEL,
            &c.customer,
            &[first.as_str()],
            pb::Funding::Cash,
            None,
        )
        .await
        .unwrap();
    v.sim.set_fault(Fault::None);
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    let left = v.sim.customer(&c.customer).unwrap().bills;
    assert_eq!(left.len(), 1);
    assert!(left.iter().all(|b| b.id != first));
    assert_eq!(
        h.ledger_balance(Kind::Biller.id(VIETTEL_NUMBER)).await,
        r.bills[0].amount as i128
    );
    // The answer and the status are lost: the switch cancels at the biller
    // from its durable queue, and the bill is due again.
    v.sim.set_fault(Fault::LoseAnswersAndStatus);
    let e = t
        .pay_bills("rb-2", VIETTEL, &c.customer, &[], pb::Funding::Cash, None)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bank_outcome_unknown", "{e:?}");
    v.sim.set_fault(Fault::None);
    h.eventually(15, "the payment cancelled at the biller", |h| {
        v.sim.customer(&c.customer).unwrap().bills == left
            && h.switch.store.reversals().unwrap().is_empty()
    })
    .await;
    let tx = t
        .pay_bills("rb-3", VIETTEL, &c.customer, &[], pb::Funding::Cash, None)
        .await
        .unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert!(v.sim.customer(&c.customer).unwrap().bills.is_empty());
    assert_eq!(
        h.ledger_balance(Kind::Biller.id(VIETTEL_NUMBER)).await,
        c.amount_due as i128,
        "the biller is owed both bills, once"
    );
    let _ = v.stop.send(());
    v.served.await.unwrap().unwrap();
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_biller_that_is_down_trips_its_breaker_and_moves_nothing() {
    let v = serve_viettel(None).await;
    let address = v.address.clone();
    let h = Harness::start(|c| {
        c.billers = vec![remote(&address)];
        c.breaker = switch::config::BreakerConfig {
            window_calls: 3,
            calls_min: 3,
            failure_percent: 100,
            open_ms: 60_000,
            ..Default::default()
        };
    })
    .await;
    let mut t = h.teller("vinh-yen-1");
    let c = h.bill_customer(VIETTEL, 1);
    // The biller's process goes away.
    let _ = v.stop.send(());
    v.served.await.unwrap().unwrap();
    let efloat = h.ledger_balance(Kind::EFloat.id(5)).await;
    for i in 0..3 {
        let e = t
            .pay_bills(
                &format!("down-{i}"),
                VIETTEL,
                &c.customer,
                &[],
                pb::Funding::Cash,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(error_code(&e), "biller_unavailable", "{e:?}");
        assert!(!e.message().contains("paused"), "{}", e.message());
    }
    assert_eq!(
        h.switch.billers.get(VIETTEL).unwrap().breaker.state(),
        State::Open
    );
    let e = t.inquire_bills(VIETTEL, &c.customer).await.unwrap_err();
    assert!(
        error_code(&e) == "biller_unavailable" && e.message().contains("paused"),
        "refused at once while open: {}",
        e.message()
    );
    // Another biller serves on.
    let evn = h.bill_customer("EVN", 1);
    let tx = t
        .pay_bills("evn-1", "EVN", &evn.customer, &[], pb::Funding::Cash, None)
        .await
        .unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert_eq!(
        h.ledger_balance(Kind::EFloat.id(5)).await,
        efloat - evn.amount_due as i128,
        "only EVN's payment moved the e-float"
    );
    assert_eq!(h.ledger_balance(Kind::Biller.id(VIETTEL_NUMBER)).await, 0);
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_to_a_remote_biller_is_tls_and_clear_text_beyond_loopback_is_refused() {
    use tests::tls::{Ca, write};

    let dir = tempfile::tempdir().unwrap();
    let biller_ca = Ca::new("biller CA");
    let switch_ca = Ca::new("switch client CA");
    let (biller_cert, biller_key) = biller_ca.issue(&["localhost", "127.0.0.1"]);
    let (switch_cert, switch_key) = switch_ca.issue(&["payment-switch"]);
    let tls = switch::server::listener_tls(
        &switch::config::TlsConfig {
            cert_file: Some(write(dir.path(), "biller.pem", &biller_cert)),
            key_file: Some(write(dir.path(), "biller.key", &biller_key)),
            client_ca_file: Some(write(dir.path(), "switch-ca.pem", &switch_ca.cert.pem())),
            insecure: false,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let v = serve_viettel(tls).await;
    let entry = BillerConfig {
        tls_ca_file: Some(write(dir.path(), "biller-ca.pem", &biller_ca.cert.pem())),
        tls_client_cert_file: Some(write(dir.path(), "switch.pem", &switch_cert)),
        tls_client_key_file: Some(write(dir.path(), "switch.key", &switch_key)),
        ..remote(&v.address)
    };
    let h = Harness::start(|c| c.billers = vec![entry]).await;
    let mut t = h.teller("vinh-yen-1");
    let c = h.bill_customer(VIETTEL, 1);
    let tx = t
        .pay_bills("tls-1", VIETTEL, &c.customer, &[], pb::Funding::Cash, None)
        .await
        .unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert!(v.sim.customer(&c.customer).unwrap().bills.is_empty());
    drop(h);

    // Clear text beyond loopback, TLS files without a remote, a biller
    // outside the demo named by halves: each refused at start, saying why.
    for (entry, says) in [
        (remote("http://10.0.0.7:6100"), "in clear"),
        (
            BillerConfig {
                code: VIETTEL.into(),
                tls_ca_file: Some("ca.pem".into()),
                ..BillerConfig::default()
            },
            "no remote address",
        ),
        (
            BillerConfig {
                code: "HANOIWATER".into(),
                remote: Some("http://127.0.0.1:6100".into()),
                ..BillerConfig::default()
            },
            "`name` is needed",
        ),
        (
            BillerConfig {
                code: "HANOIWATER".into(),
                name: Some("Hanoi water".into()),
                number: Some(VIETTEL_NUMBER),
                partial_allowed: Some(false),
                collection_bin: Some("970436".into()),
                collection_account: Some("1234567890".into()),
                remote: Some("http://127.0.0.1:6100".into()),
                ..BillerConfig::default()
            },
            "another biller's",
        ),
    ] {
        let mut config = switch::Config {
            data_dir: tempfile::tempdir().unwrap().keep(),
            ..switch::Config::default()
        };
        config.billers = vec![entry];
        let e = switch::server::open(config, "127.0.0.1:0".parse().unwrap())
            .await
            .err()
            .expect("refused at start");
        assert!(e.to_string().contains(says), "{e}");
    }
    let _ = v.stop.send(());
    v.served.await.unwrap().unwrap();
}

/// A reversal queued for a biller the configuration no longer names waits
/// (with the queue's backoff, logged at ERROR each try) instead of being
/// skipped in silence or dropped; once the biller is back it goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_for_a_biller_taken_out_of_the_configuration_waits_for_it() {
    let h = Harness::start(|_| {}).await;
    let id = switch::ids::TxId::parse("01a2330000000000000000000000ab00").unwrap();
    let job = switch::store::ReversalJob {
        reference: id.reference(1).to_string(),
        party: switch::store::Party::Biller("GONEWATER".into()),
        attempts: 0,
        next_attempt_at_ms: 0,
    };
    h.switch.store.queue_reversal(&job).unwrap();
    h.switch.run_reversals().await.unwrap();
    let queued = h.switch.store.reversals().unwrap();
    let waiting = queued
        .iter()
        .find(|j| j.reference == job.reference)
        .expect("still queued");
    assert_eq!(waiting.attempts, 1);
    assert!(
        waiting.next_attempt_at_ms > proto::auth::now_ms(),
        "backed off"
    );
    // A known biller's job goes out (a cancellation of a reference it never
    // saw leaves a tombstone and answers done).
    let known = switch::store::ReversalJob {
        reference: id.reference(2).to_string(),
        party: switch::store::Party::Biller(VIETTEL.into()),
        attempts: 0,
        next_attempt_at_ms: 0,
    };
    h.switch.store.queue_reversal(&known).unwrap();
    h.switch.run_reversals().await.unwrap();
    let left: Vec<_> = h
        .switch
        .store
        .reversals()
        .unwrap()
        .into_iter()
        .map(|j| j.reference)
        .collect();
    assert_eq!(left, vec![job.reference.clone()]);
}

/// A bill shown as a code, whose biller is taken out of the configuration
/// before the customer pays it: the payment is refused by the biller's
/// name (issue #31), never reserved against a biller account 0, and
/// nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_code_for_a_biller_taken_out_of_the_configuration_is_refused_by_name() {
    let customer = switch::sim::biller::SimCustomer {
        customer: "HW000001".into(),
        name: "TRAN VAN BINH".into(),
        bills: vec![switch::adapters::biller::Bill {
            id: "HW-2026-11".into(),
            period: "2026-11".into(),
            amount: 120_000,
            due_date: "2026-12-20".into(),
        }],
    };
    let water = serve_biller("HANOIWATER", std::slice::from_ref(&customer), None).await;
    let entry = BillerConfig {
        code: "HANOIWATER".into(),
        name: Some("Nuoc sach Ha Noi".into()),
        number: Some(40),
        partial_allowed: Some(false),
        collection_bin: Some("970436".into()),
        collection_account: Some("1234567890".into()),
        remote: Some(water.address.clone()),
        ..BillerConfig::default()
    };
    let h = Harness::start(|c| c.billers = vec![entry]).await;
    let mut t = h.teller("tho-tang-1");
    let due = t.inquire_bills("HANOIWATER", "HW000001").await.unwrap();
    assert_eq!(due.bills.len(), 1);
    let shown = t
        .pay_bills("hw-1", "HANOIWATER", "HW000001", &[], pb::Funding::Qr, None)
        .await
        .unwrap();
    assert_eq!(shown.status, pb::TxStatus::Pending as i32);
    let h = h.restart(|c| c.billers.clear()).await;
    let payer = h.customer("970422", 200_000);
    let e = h
        .bank("970422")
        .pay_qr("hw-pay", &shown.qr_payload, &payer.account, 0)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "unknown_biller", "{e:?}");
    assert!(e.message().contains("HANOIWATER"), "{}", e.message());
    assert_eq!(h.bank_balance("970422", &payer.account), payer.balance);
    assert!(!water.sim.customer("HW000001").unwrap().bills.is_empty());
    h.assert_ledger_clean().await;
    let _ = water.stop.send(());
}
