//! A bank in another process: the switch reaches MB over the BankAdapter
//! gRPC service (the simulator served as `bank-sim` serves it).

use std::sync::Arc;

use proto::v1 as pb;
use switch::accounts::Kind;
use switch::config::{BankConfig, SimConfig};
use switch::sim::SimBank;
use tests::{Harness, error_code};
use tonic::Code;

const MB: &str = "970422";

/// MB's simulator in a directory of its own, served over the BankAdapter
/// service on a free loopback port (with TLS when given): the simulator,
/// its address (`http://` or `https://`), the sender that stops it, the
/// serving task, and the directory (kept until the test ends).
struct RemoteMb {
    sim: Arc<SimBank>,
    address: String,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    _dir: tempfile::TempDir,
}

async fn serve_mb(tls: Option<tonic::transport::ServerTlsConfig>) -> RemoteMb {
    let dir = tempfile::tempdir().unwrap();
    let db = switch::store::Store::open_engine(dir.path()).unwrap();
    let sim = Arc::new(
        SimBank::open(
            MB,
            SimConfig::default(),
            db.keyspace("sim", fjall::KeyspaceCreateOptions::default)
                .unwrap(),
            &switch::sim::demo_accounts(MB),
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let address = format!(
        "{scheme}://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(switch::sim::service::serve_sim(
        listener,
        sim.clone(),
        tls,
        async {
            let _ = stopped.await;
        },
    ));
    RemoteMb {
        sim,
        address,
        stop,
        served,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_flows_work_against_a_remote_bank_and_a_dead_one_moves_nothing() {
    let RemoteMb {
        sim,
        address,
        stop,
        served,
        _dir,
    } = serve_mb(None).await;
    let h = Harness::start(|c| {
        for b in &mut c.banks {
            if b.bin == MB {
                *b = BankConfig {
                    bin: MB.into(),
                    remote: Some(address.clone()),
                    ..BankConfig::default()
                };
            }
        }
    })
    .await;
    assert!(
        !h.sims.banks.contains_key(MB),
        "MB is not simulated in-process"
    );
    let c = h.customer(MB, 10_000_000);
    let mut t = h.teller("phuc-yen-1");
    assert_eq!(
        t.name_inquiry(MB, &c.account).await.unwrap().account_name,
        c.name
    );
    let e = t.name_inquiry(MB, "99999999999").await.unwrap_err();
    assert_eq!(error_code(&e), "account_not_found");

    let tx = t.cash_in("rc-1", MB, &c.account, 1_000_000).await.unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert_eq!(
        sim.account(&c.account).unwrap().balance,
        c.balance + 1_000_000
    );
    let (code, _) = sim
        .issue_withdrawal_code(&c.account, 500_000, proto::auth::now_ms())
        .unwrap();
    let out = t
        .cash_out_start("rc-2", MB, &c.account, &code, 500_000)
        .await
        .unwrap();
    let done = t.cash_out_confirm(&out.transaction_id).await.unwrap();
    assert_eq!(done.status, pb::TxStatus::Completed as i32);
    assert_eq!(
        sim.account(&c.account).unwrap().balance,
        c.balance + 1_000_000 - 500_000 - done.fee
    );

    // The bank goes away: nothing moves, the teller gets a clear answer.
    let _ = stop.send(());
    served.await.unwrap().unwrap();
    let efloat = h.ledger_balance(Kind::EFloat.id(6)).await;
    let e = t
        .cash_in("rc-3", MB, &c.account, 1_000_000)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), error_code(&e).as_str()),
        (Code::Unavailable, "bank_unavailable"),
        "{}",
        e.message()
    );
    assert_eq!(h.ledger_balance(Kind::EFloat.id(6)).await, efloat);
    h.assert_ledger_clean().await;
}

/// Issue #15: the switch's link to a remote bank is TLS, and the bank pins
/// the switch by its client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_to_a_remote_bank_is_tls_with_the_switchs_certificate() {
    use switch::adapters::bank::{BankAdapter, BankError};
    use switch::adapters::remote_bank::RemoteBank;
    use tests::tls::{Ca, write};

    let dir = tempfile::tempdir().unwrap();
    let bank_ca = Ca::new("bank CA");
    let switch_ca = Ca::new("switch client CA");
    let (bank_cert, bank_key) = bank_ca.issue(&["localhost", "127.0.0.1"]);
    let (switch_cert, switch_key) = switch_ca.issue(&["payment-switch"]);
    let bank_ca_file = write(dir.path(), "bank-ca.pem", &bank_ca.cert.pem());
    let client_cert = write(dir.path(), "switch.pem", &switch_cert);
    let client_key = write(dir.path(), "switch.key", &switch_key);

    let tls = switch::server::listener_tls(
        &switch::config::TlsConfig {
            cert_file: Some(write(dir.path(), "bank.pem", &bank_cert)),
            key_file: Some(write(dir.path(), "bank.key", &bank_key)),
            client_ca_file: Some(write(dir.path(), "switch-ca.pem", &switch_ca.cert.pem())),
            insecure: false,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let RemoteMb {
        sim,
        address: https,
        stop,
        served,
        _dir,
    } = serve_mb(tls).await;

    let h = Harness::start(|c| {
        for b in &mut c.banks {
            if b.bin == MB {
                *b = BankConfig {
                    bin: MB.into(),
                    remote: Some(https.clone()),
                    tls_ca_file: Some(bank_ca_file.clone()),
                    tls_client_cert_file: Some(client_cert.clone()),
                    tls_client_key_file: Some(client_key.clone()),
                    insecure: false,
                    pin_key_file: None,
                };
            }
        }
    })
    .await;
    let c = h.customer(MB, 10_000_000);
    let mut t = h.teller("phuc-yen-1");
    let tx = t.cash_in("tls-1", MB, &c.account, 1_000_000).await.unwrap();
    assert_eq!(tx.status, pb::TxStatus::Completed as i32);
    assert_eq!(
        sim.account(&c.account).unwrap().balance,
        c.balance + 1_000_000
    );

    // Without the switch's certificate the bank refuses the handshake.
    // Under TLS 1.3 the client learns it only after sending its request,
    // so the switch cannot tell it from a lost answer: an unknown outcome
    // (inquiry, then reversal), the safe reading.
    let anonymous = RemoteBank::new(
        &https,
        2_000,
        &proto::tls::ClientTls {
            ca_file: Some(&bank_ca_file),
            ..Default::default()
        },
        false,
    )
    .unwrap();
    match anonymous.name_inquiry(&c.account).await {
        Err(BankError::Unavailable(_) | BankError::Timeout) => {}
        other => panic!("a switch without a certificate got {other:?}"),
    }
    // Trusting another CA than the bank's: refused too.
    let other_ca = write(dir.path(), "other-ca.pem", &Ca::new("other").cert.pem());
    let misled = RemoteBank::new(
        &https,
        2_000,
        &proto::tls::ClientTls {
            ca_file: Some(&other_ca),
            cert_file: Some(&client_cert),
            key_file: Some(&client_key),
        },
        false,
    )
    .unwrap();
    assert!(matches!(
        misled.name_inquiry(&c.account).await,
        Err(BankError::Unavailable(_))
    ));

    // Clear text to a bank beyond loopback is refused at start, unless
    // the operator says it is wanted.
    let clear = proto::tls::ClientTls::default();
    let e = RemoteBank::new("http://10.0.0.5:6000", 2_000, &clear, false)
        .err()
        .expect("clear text beyond loopback is refused");
    assert!(e.contains("in clear"), "{e}");
    assert!(RemoteBank::new("http://10.0.0.5:6000", 2_000, &clear, true).is_ok());

    let _ = stop.send(());
    served.await.unwrap().unwrap();
    h.assert_ledger_clean().await;
}
