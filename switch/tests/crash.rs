//! SIGKILL in the middle of a cash-in: the bank credited but its answer was
//! lost, and the switch dies while waiting for it. A restart finishes the
//! transaction by status inquiry: completed once (or reversed, if the bank
//! itself lost it), never both, and the ledger balances.

mod common;

use std::time::Duration;

use proto::auth::Credentials;
use proto::v1 as pb;

const MB: &str = "970422";

#[test]
fn a_switch_killed_mid_transaction_finishes_it_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, profile, account, balance) = common::start(
        dir.path(),
        "bank_timeout_ms = 30000\n[sim]\nlost_response_rate = 1.0\n",
        "info",
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let credentials = Credentials::from_hex(&profile.id, &profile.secret).unwrap();
    let request = pb::CashInRequest {
        client_request_id: "crash-1".into(),
        bank_bin: MB.into(),
        account: account.clone(),
        amount: 1_000_000,
        teller: String::new(),
        offline_taken_at_ms: 0,
    };
    let call = runtime.spawn({
        let (address, credentials, request) =
            (profile.switch.clone(), credentials.clone(), request.clone());
        async move {
            let mut client = pb::teller_client::TellerClient::connect(address)
                .await
                .unwrap();
            client
                .cash_in(credentials.sign("/paymentswitch.v1.Teller/CashIn", request))
                .await
        }
    });
    // The bank has credited (its answer is lost) and the simulator's state
    // is with the OS (fjall writes its journal out at every write); the
    // switch waits.
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
        let opened = switch::server::open(config, "127.0.0.1:1".parse().unwrap())
            .await
            .unwrap();
        let (switch, sims) = (opened.switch, opened.sims);
        let tx = switch.store.list_terminal("tho-tang-1", None, 10).unwrap();
        assert_eq!(tx.len(), 1);
        let check = switch.ledger.check().await.unwrap();
        assert!(check.violations.is_empty(), "{:?}", check.violations);
        assert_eq!(
            check.pending_transfers, 0,
            "recovery resolved the reservation"
        );
        (
            tx[0].status,
            sims.banks[MB].account(&account).unwrap().balance,
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

/// SIGKILL in the middle of a QR payment: the payer's bank debited (its
/// answer lost) and the merchant's bank was never called. A restart asks
/// both: the debit is found, the credit is not, so every call is reversed
/// and the payer gets the money back; nothing is posted.
#[test]
fn a_switch_killed_mid_qr_payment_reverses_every_call_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _, payer, balance) = common::start(
        dir.path(),
        "bank_timeout_ms = 30000\n[sim]\nlost_response_rate = 1.0\n",
        "info",
    );
    let read = |name: &str| -> common::Profile {
        let path = dir.path().join("profiles").join(name);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "no {name}");
            std::thread::sleep(Duration::from_millis(50));
        }
        toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (merchant, bank) = (read("cafe-tam-dao.toml"), read("bank-970422.toml"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let code = runtime.block_on(async {
        let creds = Credentials::from_hex(&merchant.id, &merchant.secret).unwrap();
        let m = pb::CreateQrRequest {
            client_request_id: "o-1".into(),
            amount: 300_000,
            reference: "CRASH-1".into(),
            purpose: String::new(),
            expires_in_s: 0,
        };
        pb::merchant_client::MerchantClient::connect(merchant.switch.clone())
            .await
            .unwrap()
            .create_qr(creds.sign("/paymentswitch.v1.Merchant/CreateQr", m))
            .await
            .unwrap()
            .into_inner()
    });
    let call = runtime.spawn({
        let creds = Credentials::from_hex(&bank.id, &bank.secret).unwrap();
        let request = pb::PayQrRequest {
            client_request_id: "p-1".into(),
            payload: code.payload.clone(),
            payer_account: payer.clone(),
            amount: 0,
        };
        let address = bank.switch.clone();
        async move {
            pb::payer_bank_client::PayerBankClient::connect(address)
                .await
                .unwrap()
                .pay_qr(creds.sign("/paymentswitch.v1.PayerBank/PayQr", request))
                .await
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        runtime.block_on(call).unwrap().is_err(),
        "the bank never got an answer"
    );

    runtime.block_on(async {
        let config = switch::Config {
            data_dir: dir.path().to_path_buf(),
            ..switch::Config::default()
        };
        let opened = switch::server::open(config, "127.0.0.1:1".parse().unwrap())
            .await
            .unwrap();
        let (switch, sims) = (opened.switch, opened.sims);
        let txs = switch.store.list_terminal("970422", None, 10).unwrap();
        assert_eq!(txs.len(), 1);
        assert_eq!(
            txs[0].status,
            switch::store::Status::Reversed,
            "{:?}",
            txs[0]
        );
        assert_eq!(
            sims.banks[MB].account(&payer).unwrap().balance,
            balance - 300_000,
            "debited before the crash"
        );
        switch.run_reversals().await.unwrap();
        assert!(switch.store.reversals().unwrap().is_empty());
        assert_eq!(
            sims.banks[MB].account(&payer).unwrap().balance,
            balance,
            "the payer got the money back"
        );
        assert_eq!(
            sims.banks["970436"].account("8100000002").unwrap().balance,
            0,
            "the merchant was never credited"
        );
        let check = switch.ledger.check().await.unwrap();
        assert!(check.violations.is_empty(), "{:?}", check.violations);
        assert_eq!(check.pending_transfers, 0);
    });
}
