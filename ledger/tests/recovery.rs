//! Journal damage, index loss, checkpoints and rotation. Record sizes follow
//! the layout documented in `journal.rs`: a 32-byte header, then per request
//! 5 bytes plus 38 per account or 96 per transfer.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use ledger::*;

const HEADER: u64 = 32;

fn record_size_transfers(n: u64) -> u64 {
    HEADER + 5 + 96 * n
}

/// A ledger with accounts (record 1) and `records` records of transfers,
/// record `r` (from 2) holding `r % 3 + 1` transfers. Returns the record
/// ends (byte offsets in the single segment) and each record's transfer ids.
fn build(dir: &Path, records: u64) -> (Vec<u64>, Vec<Vec<u128>>) {
    let o = open_at(dir, Arc::new(ManualClock::new(1_000_000_000)));
    let l = &o.ledger;
    l.create_accounts(
        (1..=4)
            .map(|id| account(id, AccountFlags::empty()))
            .collect(),
    )
    .unwrap();
    let mut ends = vec![HEADER + 5 + 38 * 4];
    let mut ids = vec![vec![]];
    let mut next = 1u128;
    for r in 2..=records + 1 {
        let n = r % 3 + 1;
        let batch: Vec<NewTransfer> = (0..n)
            .map(|i| {
                next += 1;
                NewTransfer::single(next, 1 + (i as u128 % 3), 4, 10 + r, 1)
            })
            .collect();
        ids.push(batch.iter().map(|t| t.id).collect());
        assert!(l.create_transfers(batch).unwrap().iter().all(Result::is_ok));
        o.clock.advance_ms(1);
        ends.push(ends.last().unwrap() + record_size_transfers(n));
    }
    o.ledger.close().unwrap();
    (ends, ids)
}

fn segment(dir: &Path) -> PathBuf {
    let mut files = journal_segments(dir);
    assert_eq!(files.len(), 1);
    files.remove(0)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Exactly the records whose every byte survived are there.
fn assert_kept(dir: &Path, kept_records: usize, ids: &[Vec<u128>], report: &RecoveryReport) {
    let o = open_at(dir, Arc::new(ManualClock::new(2_000_000_000)));
    assert_eq!(
        o.report.dropped, None,
        "the first recovery already repaired the journal"
    );
    let l = &o.ledger;
    for (r, record) in ids.iter().enumerate() {
        for id in record {
            assert_eq!(
                l.lookup_transfer(*id).unwrap().is_some(),
                r < kept_records,
                "record {} transfer {id} ({report})",
                r + 1
            );
        }
    }
    assert_eq!(report.last_seq, kept_records as u64);
    assert_clean(l);
}

/// Segments of 4 KiB and a checkpoint every 16 KiB, two kept: a few
/// hundred records are enough for old segments to go.
fn small_segments(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_size_max_bytes = 4 << 10;
    c.checkpoint_interval_bytes = 16 << 10;
    c.checkpoints_retained = 2;
    c
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn a_torn_tail_keeps_exactly_the_whole_records_before_it() {
    let pristine = tempfile::tempdir().unwrap();
    let (ends, ids) = build(pristine.path(), 30);
    let len = std::fs::metadata(segment(pristine.path())).unwrap().len();
    assert_eq!(
        len,
        *ends.last().unwrap(),
        "record sizes follow the documented layout"
    );
    let mut x = 0x5eed_u64;
    let mut offsets: Vec<u64> = (0..25).map(|_| xorshift(&mut x) % len).collect();
    offsets.extend([0, 1, ends[0], ends[0] + 1, ends[5], len - 1]);
    for offset in offsets {
        let work = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), work.path());
        let seg = segment(work.path());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(offset)
            .unwrap();
        let o = open_at(work.path(), Arc::new(ManualClock::new(2_000_000_000)));
        let report = o.report.clone();
        o.ledger.close().unwrap();
        let kept = ends.iter().take_while(|&&e| e <= offset).count();
        let boundary = if kept == 0 { 0 } else { ends[kept - 1] };
        match &report.dropped {
            None => assert_eq!(
                boundary, offset,
                "only a cut at a record boundary drops nothing"
            ),
            Some(d) => {
                assert_eq!(
                    (d.offset, d.bytes, d.whole_records_after),
                    (boundary, offset - boundary, 0),
                    "{report}"
                );
                assert_eq!(
                    std::fs::metadata(&d.kept_at).unwrap().len(),
                    offset - boundary,
                    "dropped bytes are kept"
                );
            }
        }
        // The checkpoint written at close is past the cut: never used.
        if kept < ends.len() {
            assert!(matches!(report.base, Base::Genesis), "{report}");
            assert!(
                report.index_rebuilt.is_some(),
                "the index was ahead of the journal: {report}"
            );
        }
        assert_kept(work.path(), kept, &ids, &report);
    }
}

#[test]
fn a_flipped_byte_drops_its_record_and_everything_after_and_says_so() {
    let pristine = tempfile::tempdir().unwrap();
    let (ends, ids) = build(pristine.path(), 20);
    let len = *ends.last().unwrap();
    let mut x = 0xf11b_u64;
    for _ in 0..20 {
        let offset = xorshift(&mut x) % len;
        let work = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), work.path());
        let seg = segment(work.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[offset as usize] ^= 1 << (xorshift(&mut x) % 8);
        std::fs::write(&seg, &bytes).unwrap();
        let o = open_at(work.path(), Arc::new(ManualClock::new(2_000_000_000)));
        let report = o.report.clone();
        o.ledger.close().unwrap();
        let damaged = ends.iter().take_while(|&&e| e <= offset).count();
        let boundary = if damaged == 0 { 0 } else { ends[damaged - 1] };
        let d = report.dropped.clone().expect("damage is reported");
        assert_eq!(d.offset, boundary, "{report}");
        assert_eq!(d.bytes, len - boundary);
        assert_eq!(
            d.whole_records_after,
            (ends.len() - damaged - 1) as u64,
            "{report}"
        );
        assert_kept(work.path(), damaged, &ids, &report);
    }
}

#[test]
fn a_deleted_index_is_rebuilt_identically_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ids) = build(dir.path(), 40);
    let clock = Arc::new(ManualClock::new(2_000_000_000));
    let o = open_at(dir.path(), clock.clone());
    let all: Vec<u128> = ids.iter().flatten().copied().collect();
    let transfers: Vec<_> = all
        .iter()
        .map(|id| o.ledger.lookup_transfer(*id).unwrap())
        .collect();
    let accounts = balances(&o.ledger, 1..=4);
    let pages: Vec<_> = (1..=4)
        .map(|a| o.ledger.account_transfers(a, Page::default()).unwrap())
        .collect();
    o.ledger.close().unwrap();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let o = open_at(dir.path(), clock);
    assert!(o.report.index_rebuilt.is_some(), "{}", o.report);
    assert_eq!(
        o.report.base,
        Base::Genesis,
        "the oldest base gives the most history"
    );
    assert_eq!(
        all.iter()
            .map(|id| o.ledger.lookup_transfer(*id).unwrap())
            .collect::<Vec<_>>(),
        transfers
    );
    assert_eq!(balances(&o.ledger, 1..=4), accounts);
    assert_eq!(
        (1..=4)
            .map(|a| o.ledger.account_transfers(a, Page::default()).unwrap())
            .collect::<Vec<_>>(),
        pages
    );
    assert_clean(&o.ledger);
}

#[test]
fn checkpoints_let_old_segments_go_and_recovery_still_lands_on_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let small = || small_segments(dir.path());
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let o = open_with(small(), clock.clone());
    let l = &o.ledger;
    l.create_accounts(
        (1..=4)
            .map(|id| account(id, AccountFlags::empty()))
            .collect(),
    )
    .unwrap();
    // A pending transfer that outlives many checkpoints.
    l.create_transfers(vec![NewTransfer::pending(1, 1, 2, 77, 1, 0)])
        .unwrap();
    for r in 0..400u128 {
        let batch = (0..4)
            .map(|i| NewTransfer::single(100 + r * 4 + i, 1, 2 + (i % 3), 5, 1))
            .collect();
        assert!(l.create_transfers(batch).unwrap().iter().all(Result::is_ok));
    }
    let accounts = balances(l, 1..=4);
    o.ledger.close().unwrap();
    let segments = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count();
    let checkpoints = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .count();
    let journal_bytes = 32 + 5 + 38 * 4 + (32 + 5 + 96) + 400 * record_size_transfers(4);
    assert!(
        segments < (journal_bytes / (4 << 10)) as usize,
        "old segments were removed: {segments} left"
    );
    assert!(checkpoints <= 2, "{checkpoints} checkpoints kept");
    let o = open_with(small(), clock.clone());
    assert!(
        matches!(o.report.base, Base::Checkpoint { .. }),
        "{}",
        o.report
    );
    assert_eq!(balances(&o.ledger, 1..=4), accounts);
    o.ledger
        .create_transfers(vec![NewTransfer::post(2, 1, None)])
        .unwrap()[0]
        .unwrap();
    assert_clean(&o.ledger);
    let accounts = balances(&o.ledger, 1..=4);
    o.ledger.close().unwrap();
    // Without the index, the oldest kept checkpoint and the journal after it
    // give back every balance.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let o = open_with(small(), clock);
    assert!(o.report.index_rebuilt.is_some());
    assert_eq!(balances(&o.ledger, 1..=4), accounts);
    assert_eq!(
        o.ledger.lookup_transfer(1).unwrap().unwrap().status(),
        TransferStatus::Posted
    );
    assert_clean(&o.ledger);
}

#[test]
fn a_journal_with_no_base_to_replay_from_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3);
    std::fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();
    let seg = segment(dir.path());
    std::fs::rename(&seg, seg.with_file_name(format!("{:020}.journal", 2))).unwrap();
    match Ledger::open(Config::new(dir.path()), Arc::new(ManualClock::new(0))) {
        Err(StorageError::Corrupt { detail, .. }) => {
            assert!(detail.contains("no sound checkpoint"), "{detail}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a journal that starts at record 2 with no checkpoint"),
    }
}

/// sled is no longer compiled in: an index directory that still holds an
/// earlier version's sled database must be refused, not rebuilt (a
/// rebuild would lose the transfers older than the oldest checkpoint), and
/// the refusal must change nothing.
#[test]
fn an_earlier_versions_sled_index_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let o = open_with(small_segments(dir.path()), clock.clone());
    o.ledger
        .create_accounts(
            (1..=3)
                .map(|id| account(id, AccountFlags::empty()))
                .collect(),
        )
        .unwrap();
    let batch = (0..4)
        .map(|i| NewTransfer::single(100 + i, 1, 2 + (i % 2), 5, 1))
        .collect();
    assert!(
        o.ledger
            .create_transfers(batch)
            .unwrap()
            .iter()
            .all(Result::is_ok)
    );
    let first = o.ledger.lookup_transfer(100).unwrap();
    assert!(first.is_some());
    let accounts = balances(&o.ledger, 1..=3);
    o.ledger.close().unwrap();

    // sled 0.34's two files, as an earlier version left them.
    let index = dir.path().join("index");
    std::fs::write(index.join("conf"), b"segment_size: 524288\n").unwrap();
    std::fs::write(index.join("db"), b"sled").unwrap();
    match Ledger::open(
        small_segments(dir.path()),
        Arc::new(ManualClock::new(2_000_000_000)),
    ) {
        Err(StorageError::Unsupported { detail, .. }) => {
            assert!(detail.contains("sled"), "{detail}");
            assert!(
                detail.contains(ledger::sled_import::LAST_IMPORTING_COMMIT),
                "{detail}"
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a sled index as if it were empty"),
    }
    assert!(index.join("db").is_file(), "the refusal removed nothing");

    std::fs::remove_file(index.join("conf")).unwrap();
    std::fs::remove_file(index.join("db")).unwrap();
    let o = open_with(small_segments(dir.path()), clock);
    assert_eq!(o.report.index_rebuilt, None, "{}", o.report);
    assert_eq!(o.ledger.lookup_transfer(100).unwrap(), first);
    assert_eq!(balances(&o.ledger, 1..=3), accounts);
    assert_clean(&o.ledger);
}
