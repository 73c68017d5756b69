//! Records written by earlier versions, brought to today's formats at
//! start (issue #26): transactions' JSON becomes the binary schema of
//! [`super::wire`].
//!
//! Crash-safe by construction: each batch is one atomic write that
//! replaces JSON values with the same records in the new format, and a
//! record already in it is left alone, so a start cut short anywhere
//! leaves some records in each format (both read) and the next start goes
//! on where it stopped. Nothing else changes meaning, so a switch may
//! serve while some records are still JSON.

use super::kv::Tree;
use super::records::TxRecord;
use super::{Store, StoreError, decode, encode, wire};

/// What one call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upgraded {
    /// Records rewritten.
    pub rewritten: u64,
    /// Whether every record is in today's format now.
    pub done: bool,
}

impl Store {
    /// Rewrite transactions still in JSON, `batch` to a write, at most
    /// `batches` writes (a test cuts it short; the switch passes
    /// `usize::MAX`). Not yet durable: await [`Store::durable`].
    pub fn upgrade_records(&self, batch: usize, batches: usize) -> Result<Upgraded, StoreError> {
        let mut out = Upgraded::default();
        let mut after: Option<Vec<u8>> = None;
        for _ in 0..batches {
            let lo = match &after {
                Some(k) => std::ops::Bound::Excluded(k.clone()),
                None => std::ops::Bound::Unbounded,
            };
            let mut old: Vec<(Vec<u8>, TxRecord)> = Vec::new();
            let mut last = None;
            for entry in self
                .kv
                .scan(Tree::Tx, (lo, std::ops::Bound::Unbounded), false)
            {
                let (k, v) = entry?;
                last = Some(k.clone());
                if v.first() != Some(&wire::TX_FORMAT) {
                    let t: TxRecord = decode("transaction", &k, &v)?;
                    old.push((k, t));
                    if old.len() == batch {
                        break;
                    }
                }
            }
            let Some(last) = last else {
                out.done = true;
                return Ok(out);
            };
            if !old.is_empty() {
                let values: Vec<(Vec<u8>, Vec<u8>)> =
                    old.iter().map(|(k, t)| (k.clone(), encode(t))).collect();
                let rewritten = self.kv.commit(|w| {
                    let mut n = 0;
                    for (k, v) in &values {
                        // A record another writer changed meanwhile is in
                        // today's format already: leave it.
                        if w.get(Tree::Tx, k)?
                            .is_some_and(|now| now.first() != Some(&wire::TX_FORMAT))
                        {
                            w.put(Tree::Tx, k, v.clone());
                            n += 1;
                        }
                    }
                    Ok::<_, StoreError>(n)
                })?;
                out.rewritten += rewritten;
            }
            if old.len() < batch {
                out.done = true;
                return Ok(out);
            }
            after = Some(last);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory an earlier version wrote (transactions as JSON) is
    /// upgraded in batches; cut after every batch and opened again, every
    /// record reads back the same, and the next start goes on.
    #[test]
    fn an_upgrade_cut_after_any_batch_goes_on_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let originals: Vec<TxRecord> = {
            let store = Store::open(dir.path()).unwrap();
            let originals: Vec<TxRecord> = (1..=7)
                .map(|n| {
                    let mut t = super::super::tests::tx(n);
                    t.amount = 1_000 * n as u64;
                    t
                })
                .collect();
            for t in &originals {
                let key = t.tx_id().to_bytes();
                // As an earlier version wrote it: JSON after version byte 1.
                let mut json = vec![super::super::FORMAT_VERSION];
                json.extend(serde_json::to_vec(t).unwrap());
                store.kv.put(Tree::Tx, &key, json).unwrap();
            }
            block_on(store.durable()).unwrap();
            originals
        };
        let formats = |store: &Store| -> Vec<u8> {
            store
                .kv
                .scan_prefix(Tree::Tx, b"")
                .map(|e| e.unwrap().1[0])
                .collect()
        };
        let mut rewritten = 0;
        for step in 0.. {
            let store = Store::open(dir.path()).unwrap();
            for t in &originals {
                assert_eq!(
                    store.get_tx(t.tx_id()).unwrap().as_ref(),
                    Some(t),
                    "step {step}"
                );
            }
            let binary = formats(&store)
                .iter()
                .filter(|f| **f == wire::TX_FORMAT)
                .count();
            assert_eq!(binary, rewritten, "step {step}");
            // One batch of two, then the process "dies".
            let u = store.upgrade_records(2, 1).unwrap();
            block_on(store.durable()).unwrap();
            rewritten += u.rewritten as usize;
            assert!(u.rewritten <= 2);
            if u.done {
                break;
            }
            assert!(step < 10, "the upgrade never finishes");
        }
        assert_eq!(rewritten, 7);
        let store = Store::open(dir.path()).unwrap();
        assert!(formats(&store).iter().all(|f| *f == wire::TX_FORMAT));
        let again = store.upgrade_records(2, usize::MAX).unwrap();
        assert_eq!(
            again,
            Upgraded {
                rewritten: 0,
                done: true
            }
        );
        for t in &originals {
            assert_eq!(store.get_tx(t.tx_id()).unwrap().as_ref(), Some(t));
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }
}
