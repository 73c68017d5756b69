//! The disk full under the switch (#19): the real binary on a small
//! filesystem made for the test (a tmpfs), filled with a ballast file until a
//! few hundred kilobytes are left, then loaded with cash-ins until it
//! refuses. It must refuse with a clear error (never hang, never answer
//! success for what it could not write), keep everything it acknowledged,
//! and serve again once space is freed and it is restarted.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN), which the project's
//! machines and CI have; without it the test fails and says so.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use proto::auth::Credentials;
use proto::v1 as pb;

const MB: &str = "970422";
/// What the filesystem holds in all: the demo network and the first
/// records take a few megabytes; the ballast takes the rest.
const FILESYSTEM_BYTES: u64 = 96 << 20;
/// What the ballast leaves free: a few hundred cash-ins' worth.
const LEFT_FREE_BYTES: u64 = 384 << 10;
/// Cash-ins tried before the test gives up waiting for the disk to fill.
const ATTEMPTS_MAX: usize = 20_000;

/// The mount and the switch on it, undone however the test ends.
struct Mounted {
    dir: PathBuf,
    /// The switch's log, copied to the temporary directory at the end (the
    /// test's own folder goes with it).
    log: PathBuf,
    child: Option<Child>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::copy(&self.log, std::env::temp_dir().join("disk_full-switch.log"));
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .expect("df runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}

async fn cash_in(
    address: &str,
    credentials: &Credentials,
    id: &str,
    account: &str,
) -> Result<pb::Transaction, tonic::Status> {
    let mut client = pb::teller_client::TellerClient::connect(address.to_string())
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let request = pb::CashInRequest {
        client_request_id: id.into(),
        bank_bin: MB.into(),
        account: account.into(),
        amount: 10_000,
        teller: String::new(),
        offline_taken_at_ms: 0,
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        client.cash_in(credentials.sign("/paymentswitch.v1.Teller/CashIn", request)),
    )
    .await
    .map_err(|_| tonic::Status::deadline_exceeded("no answer in 30 s"))?
    .map(|r| r.into_inner().transaction.expect("a transaction"))
}

#[test]
fn a_full_disk_stops_acknowledgements_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={FILESYSTEM_BYTES}")])
        .arg("tmpfs")
        .arg(&data)
        .status()
        .expect("mount runs");
    assert!(
        mounted.success(),
        "mounting a small tmpfs needs root (CAP_SYS_ADMIN)"
    );
    let mut m = Mounted {
        dir: data.clone(),
        log: dir.path().join("switch.log"),
        child: None,
    };
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (child, profile, account, _) = common::start_apart(dir.path(), &data, &listen, "", "warn");
    m.child = Some(child);
    let credentials = Credentials::from_hex(&profile.id, &profile.secret).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // The switch runs normally, then the ballast leaves a sliver.
    let first = runtime
        .block_on(cash_in(
            &profile.switch,
            &credentials,
            "before-ballast",
            &account,
        ))
        .expect("a cash-in with room to spare");
    assert_eq!(first.status, pb::TxStatus::Completed as i32);
    let ballast = data.join("ballast");
    let size = free_bytes(&data).saturating_sub(LEFT_FREE_BYTES);
    let file = std::fs::File::create(&ballast).unwrap();
    file.set_len(0).unwrap();
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(&file);
        let block = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            w.write_all(&block[..n]).expect("the ballast fits");
            left -= n as u64;
        }
        w.flush().unwrap();
    }
    file.sync_all().unwrap();
    // Closed, so that removing it frees the space.
    drop(file);

    // Load until the switch refuses several in a row.
    let mut acked = vec![first.transaction_id.clone()];
    let mut refusals = Vec::new();
    let mut in_a_row = 0;
    for i in 0..ATTEMPTS_MAX {
        match runtime.block_on(cash_in(
            &profile.switch,
            &credentials,
            &format!("full-{i}"),
            &account,
        )) {
            Ok(t) => {
                assert_eq!(
                    t.status,
                    pb::TxStatus::Completed as i32,
                    "an answer is completed or an error"
                );
                acked.push(t.transaction_id);
                in_a_row = 0;
            }
            Err(e) => {
                refusals.push(e);
                in_a_row += 1;
                if in_a_row == 20 {
                    break;
                }
            }
        }
    }
    assert_eq!(in_a_row, 20, "the disk never filled");
    eprintln!(
        "{} acknowledged, then refused: {:?}",
        acked.len(),
        refusals.last().map(|e| (e.code(), e.message().to_string()))
    );
    for e in &refusals {
        assert!(
            matches!(
                e.code(),
                tonic::Code::Internal | tonic::Code::Unavailable | tonic::Code::ResourceExhausted
            ),
            "a clear refusal, not {e:?}"
        );
        assert!(!e.message().is_empty(), "the refusal says why");
    }
    let log = std::fs::read_to_string(dir.path().join("switch.log")).unwrap_or_default();
    assert!(
        log.contains("No space left on device"),
        "the log names the cause for the operator"
    );

    // Free the space and restart: everything acknowledged is there.
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(&ballast).unwrap();
    let (child, profile, _, _) = common::start_apart(dir.path(), &data, &listen, "", "warn");
    m.child = Some(child);
    runtime.block_on(async {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut client = loop {
            match pb::teller_client::TellerClient::connect(profile.switch.clone()).await {
                Ok(c) => break c,
                Err(e) => {
                    if std::time::Instant::now() >= deadline {
                        let status = m.child.as_mut().map(|c| c.try_wait());
                        let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                        let tail: Vec<&str> = log.lines().rev().take(8).collect();
                        panic!("never listened again: {e} (the process: {status:?}); log ends {tail:#?}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        for id in &acked {
            let got = client
                .get_transaction(credentials.sign(
                    "/paymentswitch.v1.Teller/GetTransaction",
                    pb::GetTransactionRequest {
                        transaction_id: id.clone(),
                    },
                ))
                .await
                .unwrap_or_else(|e| panic!("{id} lost after the disk filled: {e}"))
                .into_inner()
                .transaction
                .unwrap();
            assert_eq!(got.status, pb::TxStatus::Completed as i32, "{id}");
        }
        let after = cash_in(&profile.switch, &credentials, "after-restart", &account)
            .await
            .expect("serves again");
        assert_eq!(after.status, pb::TxStatus::Completed as i32);
    });

    // The ledger balances on disk (the binary's own check, after a stop).
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_switch"))
        .args(["check", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "switch check: {report}");
    drop(m);
}
