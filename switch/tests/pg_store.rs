//! The switch's records in PostgreSQL (issue #14), two nodes at once:
//! whatever a write reads as absent and creates (a request id, a claim on
//! a QR code) is created by one node only; the other sees it.

use std::sync::Arc;

use switch::ids::TxId;
use switch::store::{Created, FeeParts, Kind, Stage, Status, Store, TxRecord};

fn tx(n: u128, request: &str, qr: Option<&str>) -> TxRecord {
    let id = TxId::from_u128((1_700_000_000_000u128 << 80) | (n << 8)).expect("valid id");
    TxRecord {
        id: id.to_string(),
        kind: Kind::QrPayment,
        status: Status::Pending,
        stage: Stage::AtBank,
        terminal_id: "970436".into(),
        post_office_id: String::new(),
        bank_bin: "970436".into(),
        account: "0123456789".into(),
        account_name: "NGUYEN VAN AN".into(),
        amount: 65_000,
        fee: FeeParts {
            total: 0,
            commission: 0,
            switch: 0,
        },
        client_request_id: request.into(),
        fingerprint: "f".into(),
        created_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_000,
        error_code: None,
        error_message: None,
        bank_reference: None,
        confirm_deadline_ms: None,
        steps: Vec::new(),
        qr_id: qr.map(str::to_string),
        merchant: None,
        bill: None,
        limits_held: false,
        limit_keys: Vec::new(),
        pays_for: None,
        paid_by: None,
        card_token: None,
        teller: None,
        taken_at_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_create_a_request_id_or_a_claim_once() {
    let pg = pgtest::Cluster::start();
    let url = pg.url("switch");
    switch::store::pg_ledger::migrate(&url).await.unwrap();
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Arc::new(Store::open_postgres(&url, dirs.0.path()).unwrap());
    let b = Arc::new(Store::open_postgres(&url, dirs.1.path()).unwrap());
    for round in 0..20u128 {
        // The same request (same id) sent to both nodes at once.
        let request = format!("pay-{round}");
        let (ta, tb) = (
            tx(round * 2 + 1, &request, None),
            tx(round * 2 + 1, &request, None),
        );
        let (ra, rb) = tokio::join!(
            {
                let a = a.clone();
                let request = request.clone();
                tokio::task::spawn_blocking(move || a.create_tx(&ta, "970436", &request, "f"))
            },
            {
                let b = b.clone();
                let request = request.clone();
                tokio::task::spawn_blocking(move || b.create_tx(&tb, "970436", &request, "f"))
            },
        );
        let outcomes = [ra.unwrap().unwrap(), rb.unwrap().unwrap()];
        let new = outcomes
            .iter()
            .filter(|o| matches!(o, Created::New))
            .count();
        let existing = outcomes
            .iter()
            .filter(|o| matches!(o, Created::Existing(..)))
            .count();
        assert_eq!((new, existing), (1, 1), "round {round}: {outcomes:?}");

        // Two payments (different requests) of one dynamic QR code.
        let qr = format!("qr-{round}");
        let (pa, pb) = (
            tx(1_000 + round * 2, &format!("a-{round}"), Some(&qr)),
            tx(1_001 + round * 2, &format!("b-{round}"), Some(&qr)),
        );
        let (ra, rb) = tokio::join!(
            {
                let a = a.clone();
                tokio::task::spawn_blocking(move || {
                    let r = pa.client_request_id.clone();
                    a.create_tx(&pa, "970436", &r, "f")
                })
            },
            {
                let b = b.clone();
                tokio::task::spawn_blocking(move || {
                    let r = pb.client_request_id.clone();
                    b.create_tx(&pb, "970422", &r, "f")
                })
            },
        );
        let outcomes = [ra.unwrap().unwrap(), rb.unwrap().unwrap()];
        let new = outcomes
            .iter()
            .filter(|o| matches!(o, Created::New))
            .count();
        let claimed = outcomes
            .iter()
            .filter(|o| matches!(o, Created::Claimed(_)))
            .count();
        assert_eq!(
            (new, claimed),
            (1, 1),
            "round {round}: the code is paid once: {outcomes:?}"
        );
    }
    // Both nodes read what either wrote.
    let listed = b.list_terminal("970436", None, 100).unwrap();
    assert!(listed.len() >= 20);
}
