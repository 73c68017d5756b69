//! The switch's records in PostgreSQL (issue #14), two nodes at once:
//! whatever a write reads as absent and creates (a request id, a claim on
//! a QR code) is created by one node only; the other sees it.

use std::sync::Arc;

use switch::ids::TxId;
use switch::store::{Created, FeeParts, Kind, NewTx, Stage, Status, Store, TxRecord};

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

/// What one writer did with its transactions: those counted against the
/// limit (and reserved in the ledger), those refused by it.
#[derive(Default, Debug)]
struct Done {
    held: Vec<u128>,
    refused: Vec<u128>,
    prepared_again: u32,
}

/// A flow step as one transaction (issue #26): the record, its idempotency
/// entry and its count against a total every writer shares are prepared,
/// and commit in the ledger's batch with the transaction's transfer, or
/// neither does. Two nodes race on the one total; a refused write (the
/// total changed) is prepared again. After: every record counted has its
/// transfer in the ledger and no other does, the total is exactly what
/// the counted records add up to, and the limit held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_steps_records_and_transfers_commit_together_or_not_at_all() {
    use ledger::{AccountFlags, NewAccount, NewTransfer};
    use switch::store::ledger::LedgerStore;
    use switch::store::pg_ledger::PgLedger;

    let pg = pgtest::Cluster::start();
    let url = pg.url("switch");
    switch::store::pg_ledger::migrate(&url).await.unwrap();
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stores = [
        Arc::new(Store::open_postgres(&url, dirs.0.path()).unwrap()),
        Arc::new(Store::open_postgres(&url, dirs.1.path()).unwrap()),
    ];
    assert!(stores[0].prepares());
    let ledgers = [
        LedgerStore::Postgres(Arc::new(PgLedger::open(&url).await.unwrap())),
        LedgerStore::Postgres(Arc::new(PgLedger::open(&url).await.unwrap())),
    ];
    let account = |id, flags| NewAccount {
        id,
        currency: 704,
        code: 1,
        flags,
        user_data: 0,
    };
    ledgers[0]
        .create_accounts(vec![
            account(1, AccountFlags::empty()),
            account(2, AccountFlags::empty()),
        ])
        .await
        .unwrap();

    const WRITERS: u128 = 8;
    const STEPS: u128 = 10;
    const AMOUNT: u64 = 65_000; // what `tx` records
    const HELD_MAX: u64 = 30;
    let total = ("po-1/day".to_string(), AMOUNT * HELD_MAX);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = stores[(w % 2) as usize].clone();
        let ledger = ledgers[(w % 2) as usize].clone();
        let total = total.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = Done::default();
            for step in 0..STEPS {
                let n = 10_000 + w * 100 + step;
                let mut t = tx(n, &format!("w{w}-{step}"), None);
                t.limits_held = true;
                t.limit_keys = vec![total.0.clone()];
                loop {
                    let (created, over, prepared) = store
                        .prepare_create_tx_counted(&NewTx {
                            t: &t,
                            owner: "970436",
                            request_id: &t.client_request_id,
                            fingerprint: "f",
                            limits: std::slice::from_ref(&total),
                            shift: None,
                        })
                        .unwrap();
                    assert!(matches!(created, Created::New), "{created:?}");
                    if over.is_some() {
                        if store.commit_prepared(prepared).unwrap() {
                            done.refused.push(n);
                            break;
                        }
                    } else {
                        let transfer = NewTransfer::single(n, 1, 2, AMOUNT, 1);
                        let answer = ledger
                            .transfers_with(vec![transfer], Some(prepared), None)
                            .await
                            .unwrap();
                        if let Some((r, _)) = answer {
                            assert!(r[0].is_ok(), "{r:?}");
                            done.held.push(n);
                            break;
                        }
                    }
                    done.prepared_again += 1;
                }
            }
            done
        }));
    }
    let mut held = Vec::new();
    let mut refused = Vec::new();
    let mut prepared_again = 0;
    for t in tasks {
        let d = t.await.unwrap();
        held.extend(d.held);
        refused.extend(d.refused);
        prepared_again += d.prepared_again;
    }
    eprintln!(
        "{} held, {} refused by the limit, {prepared_again} prepared again",
        held.len(),
        refused.len()
    );
    assert_eq!(
        held.len() as u64,
        HELD_MAX,
        "the limit is reached, not passed"
    );
    assert_eq!(held.len() + refused.len(), (WRITERS * STEPS) as usize);
    let totals = stores[1].totals(&[&total.0]).unwrap();
    assert_eq!(totals[0], AMOUNT * HELD_MAX);
    for n in &held {
        let id = TxId::from_u128((1_700_000_000_000u128 << 80) | (n << 8)).unwrap();
        let rec = stores[1]
            .get_tx(id)
            .unwrap()
            .expect("a held record is stored");
        assert!(rec.limits_held);
        assert!(
            ledgers[1].transfer(*n).await.unwrap().is_some(),
            "{n}'s transfer"
        );
    }
    for n in &refused {
        let id = TxId::from_u128((1_700_000_000_000u128 << 80) | (n << 8)).unwrap();
        let rec = stores[0]
            .get_tx(id)
            .unwrap()
            .expect("a refused record is stored");
        assert!(!rec.limits_held);
        assert!(
            ledgers[0].transfer(*n).await.unwrap().is_none(),
            "{n}: no transfer"
        );
    }
    let debits = ledgers[0].account(1).await.unwrap().unwrap().balances();
    assert_eq!(debits.debits_posted, u128::from(AMOUNT * HELD_MAX));
    let report = ledgers[0].check().await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
}

/// A final record prepared to commit only if every transfer of its step
/// applies: not written when one is refused (the record stays open), and
/// written with them when they apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_final_record_commits_only_if_its_transfers_apply() {
    use ledger::{AccountFlags, NewAccount, NewTransfer, TransferReject};
    use switch::store::ledger::LedgerStore;
    use switch::store::pg_ledger::PgLedger;

    let pg = pgtest::Cluster::start();
    let url = pg.url("switch");
    switch::store::pg_ledger::migrate(&url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_postgres(&url, dir.path()).unwrap();
    let ledger = LedgerStore::Postgres(Arc::new(PgLedger::open(&url).await.unwrap()));
    let account = |id| NewAccount {
        id,
        currency: 704,
        code: 1,
        flags: AccountFlags::empty(),
        user_data: 0,
    };
    ledger
        .create_accounts(vec![account(1), account(2)])
        .await
        .unwrap();
    let t = tx(7, "final", None);
    assert!(matches!(
        store.create_tx(&t, "970436", "final", "f").unwrap(),
        Created::New
    ));
    let mut done = t.clone();
    done.stage = Stage::Done;
    done.status = Status::Completed;

    // Credit account 9 does not exist: the transfer is refused, and the
    // final record is not written.
    let (_, prepared) = store
        .prepare_finish_tx(&done, None, &[], None, &[])
        .unwrap();
    let refused = NewTransfer::single(70, 1, 9, 10, 1);
    let (r, written) = ledger
        .transfers_with(vec![refused], None, Some(prepared))
        .await
        .unwrap()
        .expect("nothing was prepared to go with them");
    assert_eq!(r[0], Err(TransferReject::CreditAccountNotFound));
    assert!(!written);
    let held = store.get_tx(t.tx_id()).unwrap().unwrap();
    assert_eq!(held.stage, t.stage, "still open");
    assert_eq!(store.unfinished().unwrap().len(), 1);

    let (finished, prepared) = store
        .prepare_finish_tx(&done, None, &[], None, &[])
        .unwrap();
    assert!(matches!(finished, switch::store::Finished::Written { .. }));
    let applies = NewTransfer::single(71, 1, 2, 10, 1);
    let (r, written) = ledger
        .transfers_with(vec![applies], None, Some(prepared))
        .await
        .unwrap()
        .expect("nothing was prepared to go with them");
    assert!(r[0].is_ok());
    assert!(written);
    let held = store.get_tx(t.tx_id()).unwrap().unwrap();
    assert_eq!((held.stage, held.status), (Stage::Done, Status::Completed));
    assert!(store.unfinished().unwrap().is_empty());
}
