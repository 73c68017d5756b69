//! The `biller-sim` binary, a biller in another process: the switch's
//! remote connector inquires, pays, asks the status, cancels and sees the
//! bills due again, across a kill and restart of the process (its state is
//! durable); a code it does not simulate is refused at start.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switch::adapters::biller::{BillerAdapter, BillerError, BillerReject, BillerTxStatus};
use switch::adapters::remote_biller::RemoteBiller;
use switch::ids::TxId;

struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &std::path::Path, port: u16) -> Sim {
    Sim(Command::new(env!("CARGO_BIN_EXE_biller-sim"))
        .args([
            "--code",
            "EVN",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data",
        ])
        .arg(data)
        .stdout(Stdio::null())
        .spawn()
        .expect("biller-sim starts"))
}

/// The first inquiry once the process listens. While it comes up a call
/// can also fail as a transport error, which the connector reads as an
/// unknown outcome (`Timeout`); an inquiry moves nothing, so both are
/// tried again.
async fn inquire_when_up(b: &RemoteBiller, customer: &str) -> switch::adapters::biller::Statement {
    for _ in 0..200 {
        match b.inquire(customer).await {
            Err(BillerError::Unavailable(_) | BillerError::Timeout) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => return other.expect("an inquiry answers"),
        }
    }
    panic!("biller-sim did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn biller_sim_serves_a_demo_biller_durably() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sim = start(dir.path(), port);
    let b = RemoteBiller::new(
        &format!("http://127.0.0.1:{port}"),
        2_000,
        &proto::tls::ClientTls::default(),
        false,
    )
    .unwrap();
    let customer = switch::sim::biller::demo_customers("EVN", 6)
        .into_iter()
        .find(|c| c.bills.len() == 2)
        .expect("a demo customer with two bills");
    let s = inquire_when_up(&b, &customer.customer).await;
    assert_eq!(
        (s.customer_name.as_str(), s.bills.clone()),
        (customer.name.as_str(), customer.bills.clone())
    );
    assert!(matches!(
        b.inquire("PD01000000000").await,
        Err(BillerError::Rejected {
            reason: BillerReject::CustomerNotFound,
            ..
        })
    ));
    let rng = ring::rand::SystemRandom::new();
    let reference = TxId::new(&rng, 1_700_000_000_000).reference(1);
    let ids: Vec<String> = s.bills.iter().map(|x| x.id.clone()).collect();
    let total: u64 = s.bills.iter().map(|x| x.amount).sum();
    // EVN takes every due bill together; a wrong amount is refused.
    assert!(matches!(
        b.pay(reference, &customer.customer, &ids[..1], s.bills[0].amount)
            .await,
        Err(BillerError::Rejected {
            reason: BillerReject::PartialNotAllowed,
            ..
        })
    ));
    assert!(matches!(
        b.pay(reference, &customer.customer, &ids, total + 1).await,
        Err(BillerError::Rejected {
            reason: BillerReject::AmountMismatch,
            ..
        })
    ));
    let paid = b
        .pay(reference, &customer.customer, &ids, total)
        .await
        .unwrap();
    assert_eq!(
        b.pay(reference, &customer.customer, &ids, total)
            .await
            .unwrap(),
        paid,
        "idempotent by reference"
    );
    assert!(
        b.inquire(&customer.customer)
            .await
            .unwrap()
            .bills
            .is_empty()
    );

    // Killed and started again: the payment is still known.
    sim.0.kill().unwrap();
    sim.0.wait().unwrap();
    let _sim = start(dir.path(), port);
    inquire_when_up(&b, &customer.customer).await;
    assert_eq!(
        b.status(reference).await.unwrap(),
        BillerTxStatus::Completed {
            biller_reference: paid
        }
    );
    b.cancel(reference).await.unwrap();
    assert_eq!(
        b.status(reference).await.unwrap(),
        BillerTxStatus::Cancelled
    );
    assert_eq!(
        b.inquire(&customer.customer).await.unwrap().bills,
        customer.bills,
        "due again"
    );
    // A late payment under the cancelled reference is refused.
    assert!(matches!(
        b.pay(reference, &customer.customer, &ids, total).await,
        Err(BillerError::Rejected {
            reason: BillerReject::AlreadyCancelled,
            ..
        })
    ));

    let out = Command::new(env!("CARGO_BIN_EXE_biller-sim"))
        .args(["--code", "NOPE", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no demo biller \"NOPE\""), "{err}");
}
