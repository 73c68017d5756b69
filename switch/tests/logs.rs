//! Logs never contain secrets, withdrawal codes or full account numbers:
//! the real binary runs name inquiry, cash-in and cash-out at debug level,
//! and everything it wrote is searched for them.

mod common;

use std::process::Command;

use proto::auth::Credentials;
use proto::v1 as pb;

#[test]
fn logs_hold_no_secret_code_or_full_account() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, profile, account, _) = common::start(dir.path(), "", "debug");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let code = runtime.block_on(async {
        let creds = Credentials::from_hex(&profile.id, &profile.secret).unwrap();
        let channel = tonic::transport::Channel::from_shared(profile.switch.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut teller = pb::teller_client::TellerClient::new(channel.clone());
        let mut sim = pb::simulator_client::SimulatorClient::new(channel);
        teller
            .name_inquiry(creds.sign(
                "/paymentswitch.v1.Teller/NameInquiry",
                pb::NameInquiryRequest {
                    bank_bin: "970422".into(),
                    account: account.clone(),
                },
            ))
            .await
            .unwrap();
        let cash_in = pb::CashInRequest {
            client_request_id: "log-1".into(),
            bank_bin: "970422".into(),
            account: account.clone(),
            amount: 100_000,
            teller: String::new(),
            offline_taken_at_ms: 0,
        };
        teller
            .cash_in(creds.sign("/paymentswitch.v1.Teller/CashIn", cash_in))
            .await
            .unwrap();
        let req = pb::IssueWithdrawalCodeRequest {
            bank_bin: "970422".into(),
            account: account.clone(),
            amount: 500_000,
        };
        let code = sim
            .issue_withdrawal_code(
                creds.sign("/paymentswitch.v1.Simulator/IssueWithdrawalCode", req),
            )
            .await
            .unwrap()
            .into_inner()
            .code;
        let start = pb::CashOutStartRequest {
            client_request_id: "log-2".into(),
            bank_bin: "970422".into(),
            account: account.clone(),
            code: code.clone(),
            amount: 500_000,
            teller: String::new(),
        };
        let tx = teller
            .cash_out_start(creds.sign("/paymentswitch.v1.Teller/CashOutStart", start))
            .await
            .unwrap()
            .into_inner();
        let confirm = pb::CashOutConfirmRequest {
            transaction_id: tx.transaction.unwrap().transaction_id,
        };
        teller
            .cash_out_confirm(creds.sign("/paymentswitch.v1.Teller/CashOutConfirm", confirm))
            .await
            .unwrap();
        // A refused request is logged too.
        let forged = Credentials::new(profile.id.clone(), vec![1; 32]);
        let _ = teller
            .name_inquiry(forged.sign(
                "/paymentswitch.v1.Teller/NameInquiry",
                pb::NameInquiryRequest {
                    bank_bin: "970422".into(),
                    account: account.clone(),
                },
            ))
            .await;
        code
    });
    // SIGTERM, so the switch drains and logs its shutdown.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("switch.log")).unwrap();
    assert!(
        log.contains("transaction finished"),
        "the log has the flows in it"
    );
    for (what, secret) in [
        ("full account number", account.as_str()),
        ("withdrawal code", code.as_str()),
        ("terminal secret", profile.secret.as_str()),
    ] {
        assert!(!log.contains(secret), "the log contains the {what}");
    }
}
