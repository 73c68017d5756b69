//! Record writes checked and applied inside a PostgreSQL transaction that
//! someone else runs: a group of the store's committers
//! ([`super::pg_kv`]), or a batch of the ledger's writers
//! ([`super::pg_ledger`]), so that a flow step's records and its ledger
//! transfers commit as one transaction (issue #26).
//!
//! A write ([`RecordWrite`]) says what it read (the value it saw for each
//! key, `None` for absent), what it changes (puts and removes, the last
//! change to each key) and what it merges (a function applied to what the
//! key holds). In the transaction:
//!
//! 1. [`lock_and_read`] takes an advisory transaction lock for every key
//!    of every write (a 32-bit hash of tree and key, [`key_lock`]), all in
//!    one statement, in ascending order: every transaction that takes
//!    these locks takes them first and in that order, so none deadlocks
//!    (the ledger's row locks come after); then it reads every key read or
//!    merged, in one statement;
//! 2. [`Checked::accept`] takes the writes in the order given: a write
//!    whose every read still holds (in the database as changed by the
//!    writes accepted before it) is accepted and its changes applied to
//!    that view; any other is refused (its caller runs it again, reading
//!    what won). A write whose every change the database already holds is
//!    accepted too, as done (a transaction run again after its COMMIT's
//!    answer was lost: see [`Checked::accept`]);
//! 3. [`Checked::write`] writes the accepted changes (one delete, one
//!    upsert) before the caller commits.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use super::tree::{EngineError, Merge, Merged, Tree, Value};

/// The first key of the two-key advisory locks that guard the store's
/// keys (the turns use the one-key form: a space of their own).
pub const KEY_LOCK_CLASS: i32 = 0x5357_4b56; // "SWKV"

/// Every key's lock a transaction needs, in one statement, in ascending
/// order (see the module's documentation).
pub const LOCK_KEYS: &str = "SELECT pg_advisory_xact_lock($1, h) FROM unnest($2::int4[]) AS h";
/// Several keys' values, in one statement.
pub const GET_MANY: &str = "SELECT kv.tree, kv.key, kv.value
                            FROM switch_kv kv
                            JOIN unnest($1::smallint[], $2::bytea[]) AS u(tree, key)
                              ON kv.tree = u.tree AND kv.key = u.key";
const DELETE: &str =
    "DELETE FROM switch_kv USING UNNEST($1::smallint[], $2::bytea[]) AS u(tree, key)
                      WHERE switch_kv.tree = u.tree AND switch_kv.key = u.key";
const PUT: &str = "INSERT INTO switch_kv (tree, key, value)
                   SELECT * FROM UNNEST($1::smallint[], $2::bytea[], $3::bytea[])
                   ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";
/// The channel a write that stores merchants' notices notifies.
pub const PAYMENTS_CHANNEL: &str = "switch_payments";

/// The statements of a group, prepared once per connection.
pub struct Statements {
    lock_keys: tokio_postgres::Statement,
    get_many: tokio_postgres::Statement,
    delete: tokio_postgres::Statement,
    put: tokio_postgres::Statement,
}

impl Statements {
    /// Prepare them on `client` (a connection of its own, kept).
    pub async fn prepare(
        client: &tokio_postgres::Client,
    ) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            lock_keys: client.prepare(LOCK_KEYS).await?,
            get_many: client.prepare(GET_MANY).await?,
            delete: client.prepare(DELETE).await?,
            put: client.prepare(PUT).await?,
        })
    }

    /// Take them from a pooled connection's cache of prepared statements.
    pub async fn cached(
        client: &deadpool_postgres::ClientWrapper,
    ) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            lock_keys: client.prepare_cached(LOCK_KEYS).await?,
            get_many: client.prepare_cached(GET_MANY).await?,
            delete: client.prepare_cached(DELETE).await?,
            put: client.prepare_cached(PUT).await?,
        })
    }
}

/// A write of the store's records, not yet committed: what it read, what
/// it changes, what it merges.
#[derive(Default)]
pub struct RecordWrite {
    /// What each key read held when it was first read (`None`: absent).
    pub(super) reads: Vec<(Tree, Vec<u8>, Option<Value>)>,
    /// The last change to each key (`None`: removed), in the order the
    /// keys were first changed.
    pub(super) changes: Vec<(Tree, Vec<u8>, Option<Value>)>,
    /// Changes computed under the key's lock, after `changes`, in order.
    pub(super) merges: Vec<(Tree, Vec<u8>, Merge)>,
}

impl RecordWrite {
    /// Whether it writes nothing (a write that only read).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.merges.is_empty()
    }

    /// Every key it reads, changes or merges.
    pub(super) fn keys(&self) -> impl Iterator<Item = (Tree, &[u8])> {
        self.reads
            .iter()
            .chain(&self.changes)
            .map(|(t, k, _)| (*t, k.as_slice()))
            .chain(self.merges.iter().map(|(t, k, _)| (*t, k.as_slice())))
    }
}

/// A write of the store's records prepared and not committed: it commits
/// in the ledger's batch with a flow step's transfers, so that the step is
/// one transaction ([`super::ledger::LedgerStore::transfers_with`]).
pub struct Prepared(pub(super) RecordWrite);

impl Prepared {
    pub(super) fn into_records(self) -> RecordWrite {
        self.0
    }
}

/// The advisory lock (second key) guarding `tree`/`key`: FNV-1a over the
/// tree's number and the key. Every node must compute the same number for
/// the same key, so this function is part of the store's format: change
/// it only with every node stopped.
pub fn key_lock(tree: Tree, key: &[u8]) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in std::iter::once(tree as u8).chain(key.iter().copied()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as i32
}

type Key<'w> = (i16, &'w [u8]);

/// The database as a group of writes sees it, inside the transaction that
/// holds their keys' locks.
pub struct Checked<'w> {
    /// Every key read or merged, and what the database held for it.
    held: HashMap<Key<'w>, Option<Value>>,
    /// Keys changed by the writes accepted so far, and their new values.
    dirty: HashMap<Key<'w>, Option<Value>>,
    /// The keys of `dirty` in the order first changed.
    order: Vec<Key<'w>>,
}

/// Lock the keys of every write in `writes` and read what the database
/// holds for each key one of them read or merges (step 1 of the module's
/// documentation). `client` is in a transaction, before any other lock.
pub async fn lock_and_read<'w, C: GenericClient + Sync>(
    client: &C,
    st: &Statements,
    writes: &[&'w RecordWrite],
) -> Result<Checked<'w>, tokio_postgres::Error> {
    let mut locks: Vec<i32> = writes
        .iter()
        .flat_map(|w| w.keys().map(|(t, k)| key_lock(t, k)))
        .collect();
    locks.sort_unstable();
    locks.dedup();
    let mut held: HashMap<Key<'w>, Option<Value>> = HashMap::new();
    let (mut trees, mut keys) = (Vec::new(), Vec::new());
    for w in writes {
        let merged = w.merges.iter().map(|(t, k, _)| (t, k));
        for (t, k) in w.reads.iter().map(|(t, k, _)| (t, k)).chain(merged) {
            let key = (*t as i16, k.as_slice());
            if let std::collections::hash_map::Entry::Vacant(e) = held.entry(key) {
                e.insert(None);
                trees.push(key.0);
                keys.push(key.1);
            }
        }
    }
    if locks.is_empty() {
        return Ok(Checked {
            held,
            dirty: HashMap::new(),
            order: Vec::new(),
        });
    }
    // Sent together (pipelined on the connection): the server runs them in
    // order, so the values are read under the locks.
    let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&KEY_LOCK_CLASS, &locks];
    let lock = client.execute(&st.lock_keys, &lock_params);
    let read = async {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        client.query(&st.get_many, &[&trees, &keys]).await
    };
    let (_, rows) = tokio::try_join!(lock, read)?;
    if !keys.is_empty() {
        let mut found: HashMap<(i16, &[u8]), Value> = HashMap::new();
        for r in &rows {
            found.insert((r.get(0), r.get(1)), Value::from(r.get::<_, &[u8]>(2)));
        }
        for (key, v) in held.iter_mut() {
            *v = found.get(key).cloned();
        }
    }
    Ok(Checked {
        held,
        dirty: HashMap::new(),
        order: Vec::new(),
    })
}

impl<'w> Checked<'w> {
    /// What `key` holds now, as the writes accepted so far left it; `None`
    /// when it was neither read nor changed (not expected of a key in the
    /// group).
    fn now(&self, key: &Key<'w>) -> Option<&Option<Value>> {
        self.dirty.get(key).or_else(|| self.held.get(key))
    }

    /// Accept `w` if every read of it still holds, applying its changes and
    /// merges to the view; or if the database already holds every change it
    /// makes (a transaction run again after its COMMIT's answer was lost
    /// committed it then, merges and all: accepting it again changes
    /// nothing). Only a write that puts a value (a record, which no other
    /// write puts alike) is taken as done that way: removals alone could be
    /// anyone's. A write a merge's guard refuses ([`Merged::Refuse`]) is
    /// refused. Errs when a merge fails (a stored value that does not
    /// decode).
    pub fn accept(&mut self, w: &'w RecordWrite) -> Result<bool, EngineError> {
        let holds = w.reads.iter().all(|(t, k, seen)| {
            self.now(&(*t as i16, k.as_slice()))
                .is_some_and(|now| now == seen)
        });
        if !holds {
            let done = w.changes.iter().any(|(_, _, v)| v.is_some())
                && w.changes.iter().all(|(t, k, v)| {
                    self.now(&(*t as i16, k.as_slice()))
                        .is_some_and(|now| now == v)
                });
            return Ok(done);
        }
        // The merges first, over the write's own changes, so that a guard
        // that refuses leaves the view as it was.
        let mut merged: Vec<(Key<'w>, Option<Value>)> = Vec::new();
        for (t, k, m) in &w.merges {
            let key = (*t as i16, k.as_slice());
            let now = merged
                .iter()
                .rev()
                .find(|(mk, _)| *mk == key)
                .map(|(_, v)| v.clone())
                .or_else(|| {
                    w.changes
                        .iter()
                        .find(|(ct, ck, _)| *ct as i16 == key.0 && ck.as_slice() == key.1)
                        .map(|(_, _, v)| v.clone())
                })
                .unwrap_or_else(|| self.now(&key).cloned().flatten());
            match m.apply(now.as_deref())? {
                Merged::Set(v) => merged.push((key, Some(Value::from(v)))),
                Merged::Keep => {}
                Merged::Refuse => return Ok(false),
            }
        }
        for (t, k, v) in &w.changes {
            self.set((*t as i16, k.as_slice()), v.clone());
        }
        for (key, v) in merged {
            self.set(key, v);
        }
        Ok(true)
    }

    fn set(&mut self, key: Key<'w>, value: Option<Value>) {
        if self.dirty.insert(key, value).is_none() {
            self.order.push(key);
        }
    }

    /// Write what the accepted writes changed (one delete, one upsert; a
    /// notice to merchants' watchers when a notice is stored: PostgreSQL
    /// tells them at COMMIT, and not at all if the transaction rolls back).
    pub async fn write<C: GenericClient + Sync>(
        &self,
        client: &C,
        st: &Statements,
    ) -> Result<(), tokio_postgres::Error> {
        let changes = self
            .order
            .iter()
            .map(|k| (k.0, k.1, self.dirty[k].as_ref()));
        write_changes(client, st, changes).await
    }
}

/// Write `changes` (a key's new value, or `None` to remove it; each key
/// once): one delete, one upsert, and a notice to merchants' watchers when
/// a notice is stored.
pub async fn write_changes<'a, C: GenericClient + Sync>(
    client: &C,
    st: &Statements,
    changes: impl Iterator<Item = (i16, &'a [u8], Option<&'a Value>)>,
) -> Result<(), tokio_postgres::Error> {
    let (mut put_trees, mut put_keys, mut put_values) = (Vec::new(), Vec::new(), Vec::new());
    let (mut del_trees, mut del_keys) = (Vec::new(), Vec::new());
    for (tree, key, value) in changes {
        match value {
            Some(v) => {
                put_trees.push(tree);
                put_keys.push(key);
                put_values.push(v.as_ref());
            }
            None => {
                del_trees.push(tree);
                del_keys.push(key);
            }
        }
    }
    // Sent together (pipelined on the connection); a key is deleted or
    // put, never both, so their order does not matter.
    let notify = async {
        if put_trees.contains(&(Tree::Payments as i16)) {
            client
                .batch_execute(&format!("NOTIFY {PAYMENTS_CHANNEL}"))
                .await?;
        }
        Ok(())
    };
    let delete = async {
        if !del_keys.is_empty() {
            client.execute(&st.delete, &[&del_trees, &del_keys]).await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    };
    let put = async {
        if !put_keys.is_empty() {
            client
                .execute(&st.put, &[&put_trees, &put_keys, &put_values])
                .await?;
        }
        Ok(())
    };
    tokio::try_join!(notify, delete, put)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> Option<Value> {
        Some(Value::from(s.as_bytes()))
    }

    fn write(reads: &[(&str, Option<&str>)], changes: &[(&str, Option<&str>)]) -> RecordWrite {
        let kv = |l: &[(&str, Option<&str>)]| {
            l.iter()
                .map(|(k, v)| (Tree::Tx, k.as_bytes().to_vec(), v.and_then(value)))
                .collect()
        };
        RecordWrite {
            reads: kv(reads),
            changes: kv(changes),
            merges: Vec::new(),
        }
    }

    /// The database holding `held` for the keys a group read.
    fn checked<'w>(held: &[(&'w str, Option<&str>)]) -> Checked<'w> {
        Checked {
            held: held
                .iter()
                .map(|(k, v)| ((Tree::Tx as i16, k.as_bytes()), v.and_then(value)))
                .collect(),
            dirty: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// Each case: what the database holds, a write (what it read, what it
    /// changes), whether it is accepted, and the changes the group then
    /// writes.
    #[test]
    fn a_write_is_accepted_when_its_reads_hold_or_it_is_done_already() {
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, Option<&'a str>)],
            (
                &'a [(&'a str, Option<&'a str>)],
                &'a [(&'a str, Option<&'a str>)],
            ),
            bool,
            usize,
        );
        let cases: &[Case] = &[
            (
                "reads hold",
                &[("a", None)],
                (&[("a", None)], &[("a", Some("1"))]),
                true,
                1,
            ),
            (
                "a read changed",
                &[("a", Some("2"))],
                (&[("a", None)], &[("a", Some("1")), ("b", Some("1"))]),
                false,
                0,
            ),
            (
                "done already: every put holds",
                &[("a", Some("1"))],
                (&[("a", None)], &[("a", Some("1"))]),
                true,
                0,
            ),
            (
                "removals alone are never taken as done",
                &[("a", Some("2"))],
                (&[("a", Some("1"))], &[("b", None)]),
                false,
                0,
            ),
        ];
        for (name, held, (reads, changes), accepted, written) in cases {
            let w = write(reads, changes);
            let keys: Vec<(&str, Option<&str>)> = held.to_vec();
            let mut c = checked(&keys);
            assert_eq!(c.accept(&w).unwrap(), *accepted, "{name}");
            assert_eq!(c.order.len(), *written, "{name}");
        }
    }

    /// Writes in one group see the writes accepted before them: the second
    /// of two that read the same key as absent and create it is refused.
    #[test]
    fn the_second_of_two_writes_creating_one_key_is_refused() {
        let mut c = checked(&[("k", None)]);
        let first = write(&[("k", None)], &[("k", Some("first"))]);
        let second = write(&[("k", None)], &[("k", Some("second"))]);
        assert!(c.accept(&first).unwrap());
        assert!(!c.accept(&second).unwrap());
        assert_eq!(c.dirty[&(Tree::Tx as i16, &b"k"[..])], value("first"));
    }
}
