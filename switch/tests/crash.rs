//! SIGKILL in the middle of a cash-in: the bank credited but its answer was
//! lost, and the switch dies while waiting for it. A restart finishes the
//! transaction by status inquiry: completed once (or reversed, if the bank
//! itself lost it), never both, and the ledger balances.

use std::process::{Command, Stdio};
use std::time::Duration;

use proto::auth::Credentials;
use proto::v1 as pb;

const MB: &str = "970422";

#[derive(serde::Deserialize)]
struct Profile {
    id: String,
    switch: String,
    secret: String,
}

#[test]
fn a_switch_killed_mid_transaction_finishes_it_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switch.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nbank_timeout_ms = 30000\n[sim]\nlost_response_rate = 1.0\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switch"))
        .args([
            "serve",
            "--data",
            dir.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let profile_path = dir.path().join("profiles/tho-tang-1.toml");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !profile_path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the switch never provisioned"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let profile: Profile =
        toml::from_str(&std::fs::read_to_string(&profile_path).unwrap()).unwrap();
    let customers: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("profiles/customers.json")).unwrap(),
    )
    .unwrap();
    let c = customers.iter().find(|c| c["bank"] == MB).unwrap();
    let (account, balance) = (
        c["account"].as_str().unwrap().to_string(),
        c["balance"].as_u64().unwrap(),
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let credentials = Credentials::from_hex(&profile.id, &profile.secret).unwrap();
    let request = pb::CashInRequest {
        client_request_id: "crash-1".into(),
        bank_bin: MB.into(),
        account: account.clone(),
        amount: 1_000_000,
    };
    let call = runtime.spawn({
        let (address, credentials, request) =
            (profile.switch.clone(), credentials.clone(), request.clone());
        async move {
            let mut client = pb::teller_client::TellerClient::connect(address)
                .await
                .unwrap();
            client
                .cash_in(credentials.sign("/switch.v1.Teller/CashIn", request))
                .await
        }
    });
    // The bank has credited (its answer is lost) and the simulator's state
    // has been flushed (sled flushes every 500 ms); the switch waits.
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        runtime.block_on(call).unwrap().is_err(),
        "the teller never got an answer"
    );

    // Restart in-process on the same data with a healthy bank.
    let (status, credited) = runtime.block_on(async {
        let config = switch::Config {
            data_dir: dir.path().to_path_buf(),
            ..switch::Config::default()
        };
        let (switch, _) = switch::server::open(config, "127.0.0.1:1".parse().unwrap())
            .await
            .unwrap();
        let tx = switch.store.list_terminal("tho-tang-1", None, 10).unwrap();
        assert_eq!(tx.len(), 1);
        let check = switch.ledger.check().unwrap();
        assert!(check.violations.is_empty(), "{:?}", check.violations);
        assert_eq!(
            check.pending_transfers, 0,
            "recovery resolved the reservation"
        );
        (
            tx[0].status,
            switch.sims[MB].account(&account).unwrap().balance,
        )
    });
    eprintln!("recovered as {status:?}; balance {balance} -> {credited}");
    match status {
        switch::store::Status::Completed => {
            assert_eq!(credited, balance + 1_000_000, "credited exactly once")
        }
        switch::store::Status::Reversed => assert_eq!(
            credited, balance,
            "reversed: the customer keeps nothing extra"
        ),
        other => panic!("recovery left the transaction {other:?}"),
    }
}
