//! Helpers shared by the ledger's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger::*;

pub const VND: u16 = 704;

pub struct Open {
    pub ledger: Ledger,
    pub clock: Arc<ManualClock>,
    pub report: RecoveryReport,
}

pub fn open_at(dir: &Path, clock: Arc<ManualClock>) -> Open {
    open_with(Config::new(dir), clock)
}

pub fn open_with(config: Config, clock: Arc<ManualClock>) -> Open {
    let (ledger, report) = Ledger::open(config, clock.clone()).expect("ledger opens");
    Open {
        ledger,
        clock,
        report,
    }
}

pub fn account(id: u128, flags: AccountFlags) -> NewAccount {
    NewAccount {
        id,
        currency: VND,
        code: 1,
        flags,
        user_data: 0,
    }
}

/// Every account's balances, sorted by id.
pub fn balances(l: &Ledger, ids: impl IntoIterator<Item = u128>) -> Vec<(u128, Option<Balances>)> {
    ids.into_iter()
        .map(|id| (id, l.lookup_account(id).unwrap().map(|a| a.balances())))
        .collect()
}

pub fn assert_clean(l: &Ledger) {
    let report = l.check().expect("check runs");
    assert!(
        report.violations.is_empty(),
        "invariants broken: {:?}",
        report.violations
    );
    assert!(
        report.index_compared,
        "no concurrent writes, so the index was compared"
    );
}

/// The journal's segment files in `dir`, oldest first.
pub fn journal_segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "journal"))
        .collect();
    files.sort();
    files
}
