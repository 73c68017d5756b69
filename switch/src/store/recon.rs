//! Reconciliation's records: reports, their exceptions and the audit trail
//! of resolutions, in the store's `Recon` tree, so that every node sharing
//! a PostgreSQL store sees every run (issue #14) and the embedded engine
//! journals them like every other record.
//!
//! Keys (UTF-8): `report/{bin}/{window:020}/{statement sha-256}` → report;
//! `x/{exceptions}/{exception id}` → exception, where `{exceptions}` is the
//! name the report gives its run's exceptions; `audit/{at_ms:020}/{n:020}`
//! → audit entry. Exceptions are written before the report that names
//! them, so a run that fails leaves only exceptions nobody can reach (and
//! removes them).
//!
//! Earlier versions kept these in sled trees of their own (`recon`, and
//! one `recon-exceptions/…` tree a run); [`Store::adopt_legacy_recon`]
//! moves them in once, at open.

use super::kv::{Scan, Tree, Value};
use super::{Store, StoreError};

/// Exceptions of one run, by their key prefix.
fn exceptions_prefix(exceptions: &str) -> String {
    format!("x/{exceptions}/")
}

impl Store {
    pub fn recon_get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.kv.get(Tree::Recon, key.as_bytes())?)
    }

    pub fn recon_put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        Ok(self.kv.put(Tree::Recon, key.as_bytes(), value)?)
    }

    /// Records whose key starts with `prefix`, ascending.
    pub fn recon_scan(&self, prefix: &str) -> Scan {
        self.kv.scan_prefix(Tree::Recon, prefix.as_bytes())
    }

    pub fn put_exception(
        &self,
        exceptions: &str,
        id: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.recon_put(&format!("{}{id}", exceptions_prefix(exceptions)), value)
    }

    /// Several exceptions of one run in one write.
    pub fn put_exceptions(
        &self,
        exceptions: &str,
        batch: &[(String, Vec<u8>)],
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let prefix = exceptions_prefix(exceptions);
        // The write may run again (PostgreSQL, after a conflict): it
        // copies the batch rather than consuming it.
        self.kv.commit(|t| {
            for (id, value) in batch {
                t.put(
                    Tree::Recon,
                    format!("{prefix}{id}").as_bytes(),
                    value.clone(),
                );
            }
            Ok::<_, StoreError>(())
        })
    }

    pub fn exception(&self, exceptions: &str, id: &str) -> Result<Option<Value>, StoreError> {
        self.recon_get(&format!("{}{id}", exceptions_prefix(exceptions)))
    }

    /// A run's exceptions, in the order they were found.
    pub fn exceptions(&self, exceptions: &str) -> Scan {
        self.recon_scan(&exceptions_prefix(exceptions))
    }

    /// Remove a failed run's exceptions (nothing names them).
    pub fn drop_exceptions(&self, exceptions: &str) -> Result<(), StoreError> {
        let keys = self
            .exceptions(exceptions)
            .map(|kv| kv.map(|(k, _)| k))
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in keys.chunks(1_000) {
            self.kv.commit(|t| {
                for k in chunk {
                    t.remove(Tree::Recon, k);
                }
                Ok::<_, StoreError>(())
            })?;
        }
        Ok(())
    }

    /// Move reconciliation's records from the trees earlier versions kept
    /// them in (the node's own; sled trees, since copied into fjall
    /// keyspaces of the same names) into the store, then drop them.
    /// Each record is written as it was; a record already moved is written
    /// again with the same bytes, so a move cut short by a crash completes
    /// at the next open.
    pub async fn adopt_legacy_recon(&self) -> Result<u64, StoreError> {
        let db = self.db();
        let legacy: Vec<String> = db
            .list_keyspace_names()
            .into_iter()
            .map(|n| n.to_string())
            .filter(|n| n == "recon" || n.starts_with("recon-exceptions/"))
            .collect();
        let mut moved = 0u64;
        for name in &legacy {
            let tree = db.keyspace(name, fjall::KeyspaceCreateOptions::default)?;
            let exceptions = name.clone();
            for kv in tree.iter() {
                let (k, v) = kv.into_inner()?;
                let key = if name == "recon" {
                    String::from_utf8_lossy(&k).into_owned()
                } else {
                    format!(
                        "{}{}",
                        exceptions_prefix(&exceptions),
                        String::from_utf8_lossy(&k)
                    )
                };
                self.recon_put(&key, v.to_vec())?;
                moved += 1;
            }
        }
        if legacy.is_empty() {
            return Ok(0);
        }
        self.kv.durable().await?;
        for name in &legacy {
            db.delete_keyspace(db.keyspace(name, fjall::KeyspaceCreateOptions::default)?)?;
        }
        db.persist(fjall::PersistMode::SyncAll)?;
        tracing::info!(
            records = moved,
            trees = legacy.len(),
            "reconciliation records moved into the store"
        );
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_earlier_versions_kept_in_trees_of_their_own_move_into_the_store_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            // As earlier versions left the node's database: reconciliation
            // in keyspaces of its own (sled trees once, copied into fjall
            // under the same names).
            let db = fjall::Database::builder(dir.path().join("records"))
                .open()
                .unwrap();
            let tree = |name: &str| {
                db.keyspace(name, fjall::KeyspaceCreateOptions::default)
                    .unwrap()
            };
            let recon = tree("recon");
            recon
                .insert("report/970422/00000000000000000001/ab", &b"{\"r\":1}"[..])
                .unwrap();
            recon
                .insert(
                    "audit/00000000000000000005/00000000000000000001",
                    &b"{\"a\":1}"[..],
                )
                .unwrap();
            let found = tree("recon-exceptions/970422/1/7");
            found.insert("E0000001", &b"{\"e\":1}"[..]).unwrap();
            found.insert("E0000002", &b"{\"e\":2}"[..]).unwrap();
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.adopt_legacy_recon().await.unwrap(), 4);
        // The old trees are gone; a second open moves nothing.
        let names: Vec<String> = store
            .db()
            .list_keyspace_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        let old = |n: &String| n == "recon" || n.starts_with("recon-exceptions/");
        assert!(!names.iter().any(old), "{names:?}");
        assert_eq!(store.adopt_legacy_recon().await.unwrap(), 0);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let report = store
            .recon_get("report/970422/00000000000000000001/ab")
            .unwrap();
        assert_eq!(report.as_deref(), Some(&b"{\"r\":1}"[..]));
        let audit: Vec<_> = store.recon_scan("audit/").map(Result::unwrap).collect();
        assert_eq!(audit.len(), 1);
        let exceptions: Vec<_> = store
            .exceptions("recon-exceptions/970422/1/7")
            .map(|kv| kv.unwrap().1)
            .collect();
        assert_eq!(
            exceptions,
            [&b"{\"e\":1}"[..], &b"{\"e\":2}"[..]].map(Value::from)
        );
        store
            .drop_exceptions("recon-exceptions/970422/1/7")
            .unwrap();
        assert!(
            store
                .exception("recon-exceptions/970422/1/7", "E0000001")
                .unwrap()
                .is_none()
        );
    }
}
