//! An application's records riding in the ledger's (`Attachments`): taken
//! into the record being written, durable with it, handed back at open,
//! and kept in the journal until the application lets them go.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use common::*;
use ledger::*;

/// A stand-in for the switch's store: records queued by `write`, taken by
/// the ledger's writer, numbered by the record that made them durable.
#[derive(Default)]
struct App {
    unwritten: Mutex<Vec<u8>>,
    /// What the last `take` took, until `durable` numbers it.
    taken: Mutex<Vec<u8>>,
    durable: Mutex<Vec<(u64, Vec<u8>)>>,
    needed_from: AtomicU64,
}

impl App {
    fn write(&self, bytes: &[u8]) {
        self.unwritten.lock().unwrap().extend_from_slice(bytes);
    }
}

impl Attachments for App {
    fn take(&self, out: &mut Vec<u8>) {
        let mut u = self.unwritten.lock().unwrap();
        out.extend_from_slice(&u);
        *self.taken.lock().unwrap() = std::mem::take(&mut *u);
    }
    fn durable(&self, seq: u64) {
        let taken = std::mem::take(&mut *self.taken.lock().unwrap());
        if !taken.is_empty() {
            self.durable.lock().unwrap().push((seq, taken));
        }
    }
    fn needed_from(&self) -> u64 {
        self.needed_from.load(Ordering::Acquire)
    }
}

fn open(config: Config, app: &Arc<App>) -> Ledger {
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let (l, _) = Ledger::open_attached(
        config,
        clock,
        None,
        Some(app.clone() as Arc<dyn Attachments>),
    )
    .expect("ledger opens");
    l
}

fn read_back(l: &Ledger) -> Vec<(u64, Vec<u8>)> {
    let mut got = Vec::new();
    l.read_attachments(|seq, bytes| {
        got.push((seq, bytes.to_vec()));
        Ok(())
    })
    .unwrap();
    got
}

/// Submit `transfers` with a hook that writes `hook_writes` once they are
/// applied; answers the outcome once durable.
fn submit_applied(
    l: &Ledger,
    app: &Arc<App>,
    transfers: Vec<NewTransfer>,
    hook_writes: &'static [u8],
) -> Outcome {
    let (tx, rx) = mpsc::sync_channel(1);
    let app2 = app.clone();
    l.try_submit_applied(
        Request::Transfers(transfers),
        move |o| {
            // The hook sees the outcome before anything is written.
            assert!(matches!(o, Outcome::Transfers(_)));
            app2.write(hook_writes);
        },
        move |r| {
            let _ = tx.send(r);
        },
    )
    .unwrap();
    rx.recv().unwrap().unwrap()
}

#[test]
fn attachments_are_durable_with_their_record_and_read_back_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let app = Arc::new(App::default());
    let l = open(Config::new(dir.path()), &app);
    l.create_accounts(vec![
        account(1, AccountFlags::empty()),
        account(2, AccountFlags::empty()),
    ])
    .unwrap();
    // Written before a request: goes with the request's record.
    app.write(b"before-1;");
    let out = submit_applied(
        &l,
        &app,
        vec![NewTransfer::single(10, 1, 2, 5, 1)],
        b"after-1;",
    );
    assert!(matches!(&out, Outcome::Transfers(r) if r.iter().all(Result::is_ok)));
    // Both halves are durable, in one record, in the order written.
    let durable = app.durable.lock().unwrap().clone();
    assert_eq!(durable.len(), 1);
    assert_eq!(durable[0].1, b"before-1;after-1;");
    // A request with no events carries the application's records alone.
    app.write(b"alone;");
    assert!(l.create_transfers(Vec::new()).unwrap().is_empty());
    let durable = app.durable.lock().unwrap().clone();
    assert_eq!(durable.len(), 2);
    assert!(durable[1].0 > durable[0].0);
    l.close().unwrap();

    // Reopened: each attachment in its record, and the ledger's own state
    // is what it was (the attachments are invisible to it).
    let app2 = Arc::new(App::default());
    let l = open(Config::new(dir.path()), &app2);
    assert_eq!(read_back(&l), durable);
    assert_eq!(l.lookup_transfer(10).unwrap().map(|t| t.amount()), Some(5));
    assert_clean(&l);
}

#[test]
fn the_journal_is_kept_until_the_application_lets_its_records_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.segment_size_max_bytes = 4 << 10;
    config.checkpoint_interval_bytes = 16 << 10;
    config.checkpoints_retained = 1;
    let app = Arc::new(App::default());
    // Everything still needed: nothing may go.
    app.needed_from.store(1, Ordering::Release);
    let l = open(config.clone(), &app);
    l.create_accounts(vec![
        account(1, AccountFlags::empty()),
        account(2, AccountFlags::empty()),
    ])
    .unwrap();
    for i in 0..600u128 {
        app.write(format!("record {i};").as_bytes());
        assert!(
            l.create_transfers(vec![NewTransfer::single(100 + i, 1, 2, 1, 1)])
                .unwrap()
                .iter()
                .all(Result::is_ok)
        );
    }
    let first = journal_segments(dir.path())[0].clone();
    assert!(first.ends_with("00000000000000000001.journal"), "{first:?}");
    // Let go: the next commits remove what checkpoints cover.
    app.needed_from.store(u64::MAX, Ordering::Release);
    for i in 600..1200u128 {
        assert!(
            l.create_transfers(vec![NewTransfer::single(100 + i, 1, 2, 1, 1)])
                .unwrap()
                .iter()
                .all(Result::is_ok)
        );
    }
    let kept = journal_segments(dir.path());
    assert!(
        !kept.contains(&first),
        "the first segment outlived its release"
    );
    l.close().unwrap();
    let l = open(config, &Arc::new(App::default()));
    // What is left starts later than record 1 and is still in order.
    let back = read_back(&l);
    assert!(back.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(back.iter().all(|(seq, _)| *seq > 1));
    assert_clean(&l);
}
