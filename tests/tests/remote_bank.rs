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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_flows_work_against_a_remote_bank_and_a_dead_one_moves_nothing() {
    let bank_dir = tempfile::tempdir().unwrap();
    let db = switch::store::Store::open_engine(bank_dir.path()).unwrap();
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
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(switch::sim::service::serve_sim(
        listener,
        sim.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let h = Harness::start(|c| {
        for b in &mut c.banks {
            if b.bin == MB {
                *b = BankConfig {
                    bin: MB.into(),
                    remote: Some(address.clone()),
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
