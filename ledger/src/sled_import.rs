//! A ledger written by an earlier version kept its index in sled 0.34. The
//! index holds the only copy of transfers older than the oldest kept
//! checkpoint (journal segments go once a checkpoint covers them), so it
//! cannot simply be rebuilt: its entries are copied, byte for byte (the
//! layout did not change), into a new fjall index the first time the ledger
//! opens it. sled is compiled in only for this, behind the `sled-import`
//! feature, and goes once no deployment has a sled index left.
//!
//! Crash safety: the copy is made beside the old index and marked complete
//! (a file, fsync'd) before anything is renamed; the old index is moved aside
//! before the copy takes its place and removed last. Each step is redone or
//! finished at the next open, whatever point a crash stopped it at.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::StorageError;

/// Entries per fjall write batch while copying.
const BATCH_ENTRIES: usize = 10_000;
const COMPLETE: &str = "IMPORT-COMPLETE";

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// Whether `dir` holds a sled database (sled 0.34 writes `conf` and `db`).
fn is_sled(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> StorageError {
    move |e| StorageError::io(what, e)
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("fsync {}", dir.display())))
}

/// If `dir` holds a sled index (or an import that a crash interrupted),
/// leave a fjall index with the same entries there. Returns how many entries
/// were copied (`None` when there was nothing to import).
pub(crate) fn import_if_sled(dir: &Path) -> Result<Option<u64>, StorageError> {
    let copy = sibling(dir, ".fjall-import");
    let old = sibling(dir, ".sled-old");
    let parent = dir.parent().unwrap_or(Path::new("."));
    let mut copied = None;
    if is_sled(dir) {
        if !copy.join(COMPLETE).is_file() {
            copied = Some(copy_entries(dir, &copy)?);
        }
        fs::rename(dir, &old).map_err(io(format!("rename {}", dir.display())))?;
        sync_dir(parent)?;
    }
    if !dir.exists() && copy.join(COMPLETE).is_file() {
        fs::rename(&copy, dir).map_err(io(format!("rename {}", copy.display())))?;
        fs::remove_file(dir.join(COMPLETE))
            .map_err(io(format!("remove {}", dir.join(COMPLETE).display())))?;
        sync_dir(parent)?;
    }
    for leftover in [&old, &copy] {
        if leftover.exists() && dir.exists() {
            fs::remove_dir_all(leftover).map_err(io(format!("remove {}", leftover.display())))?;
        }
    }
    Ok(copied)
}

/// Copy every entry of the sled database at `from` into a new fjall
/// database at `to`, then mark it complete.
fn copy_entries(from: &Path, to: &Path) -> Result<u64, StorageError> {
    let index_error = |e: sled::Error| StorageError::Index(format!("old sled index: {e}"));
    if to.exists() {
        fs::remove_dir_all(to).map_err(io(format!("remove {}", to.display())))?;
    }
    let sled = sled::Config::new().path(from).open().map_err(index_error)?;
    let db = fjall::Database::builder(to).open()?;
    let entries = db.keyspace(
        super::index::KEYSPACE,
        fjall::KeyspaceCreateOptions::default,
    )?;
    let mut batch = db.batch();
    let mut copied = 0u64;
    for kv in sled.iter() {
        let (k, v) = kv.map_err(index_error)?;
        batch.insert(&entries, k.as_ref(), v.as_ref());
        copied += 1;
        if batch.len() == BATCH_ENTRIES {
            std::mem::replace(&mut batch, db.batch()).commit()?;
        }
    }
    batch.commit()?;
    db.persist(fjall::PersistMode::SyncAll)?;
    drop(entries);
    drop(db);
    let marker = to.join(COMPLETE);
    fs::File::create(&marker)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("create {}", marker.display())))?;
    sync_dir(to)?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sled_with(dir: &Path, entries: &[(&[u8], &[u8])]) {
        let db = sled::Config::new().path(dir).open().unwrap();
        for (k, v) in entries {
            db.insert(k, *v).unwrap();
        }
        db.flush().unwrap();
    }

    fn fjall_entries(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        let db = fjall::Database::builder(dir).open().unwrap();
        let ks = db
            .keyspace(
                crate::index::KEYSPACE,
                fjall::KeyspaceCreateOptions::default,
            )
            .unwrap();
        ks.iter()
            .map(|g| {
                let (k, v) = g.into_inner().unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }

    const ENTRIES: &[(&[u8], &[u8])] = &[(b"a1", b"x"), (b"i2", b"yy"), (b"m/indexed_seq", b"7")];

    fn expected() -> Vec<(Vec<u8>, Vec<u8>)> {
        ENTRIES
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    #[test]
    fn a_sled_index_becomes_a_fjall_index_with_the_same_entries() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("index");
        sled_with(&dir, ENTRIES);
        assert_eq!(import_if_sled(&dir).unwrap(), Some(3));
        assert!(!is_sled(&dir));
        assert_eq!(fjall_entries(&dir), expected());
        let left: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the index is left: {left:?}");
        // Opening again finds nothing to import.
        assert_eq!(import_if_sled(&dir).unwrap(), None);
    }

    #[test]
    fn an_import_cut_at_any_step_finishes_at_the_next_open() {
        // After the copy was marked complete, before the old index moved.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("index");
        sled_with(&dir, ENTRIES);
        copy_entries(&dir, &sibling(&dir, ".fjall-import")).unwrap();
        assert_eq!(import_if_sled(&dir).unwrap(), None, "the copy is reused");
        assert_eq!(fjall_entries(&dir), expected());

        // After the old index moved aside, before the copy took its place.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("index");
        sled_with(&dir, ENTRIES);
        copy_entries(&dir, &sibling(&dir, ".fjall-import")).unwrap();
        fs::rename(&dir, sibling(&dir, ".sled-old")).unwrap();
        import_if_sled(&dir).unwrap();
        assert_eq!(fjall_entries(&dir), expected());
        assert!(!sibling(&dir, ".sled-old").exists());

        // In the middle of the copy: an unmarked copy is made again.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("index");
        sled_with(&dir, ENTRIES);
        fs::create_dir_all(sibling(&dir, ".fjall-import")).unwrap();
        fs::write(sibling(&dir, ".fjall-import").join("junk"), b"half").unwrap();
        assert_eq!(import_if_sled(&dir).unwrap(), Some(3));
        assert_eq!(fjall_entries(&dir), expected());
    }
}
