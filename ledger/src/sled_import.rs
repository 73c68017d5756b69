//! Earlier versions kept the ledger's index, and the switch its records, in
//! sled 0.34. Both hold data nothing else has any more (the ledger's index
//! the transfers older than the oldest kept checkpoint; the switch's copy
//! every record whose journal segment was trimmed), so neither can be
//! rebuilt: every tree is copied, byte for byte (no layout changed), into a
//! fjall keyspace of the same name the first time the directory is opened.
//! sled is compiled in only for this, behind the `sled-import` feature, and
//! goes once no deployment has a sled directory left. Public because the
//! switch imports its own directories with it.
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

/// The keyspace where an import leaves sled's id generator's next id
/// (key [`NEXT_ID_KEY`], u64 little-endian), for whoever used
/// `sled::Db::generate_id` and must never hand an id out twice.
pub const IMPORT_KEYSPACE: &str = "sled_import";
pub const NEXT_ID_KEY: &[u8] = b"next_id";

/// If `from` holds a sled database (or an import that a crash
/// interrupted), leave a fjall database at `to` with every tree as a
/// keyspace of the same name, sled's default tree as `default_keyspace`,
/// and let sled's files go. `to` may be `from` itself; otherwise only sled's
/// own files leave `from`, whatever else lives there stays. Returns how many
/// entries were copied (`None` when there was nothing to import).
pub fn import_if_sled(
    from: &Path,
    to: &Path,
    default_keyspace: &str,
) -> Result<Option<u64>, StorageError> {
    let copy = sibling(to, ".fjall-import");
    let old = sibling(from, ".sled-old");
    let parent = to.parent().unwrap_or(Path::new("."));
    let mut copied = None;
    if is_sled(from) && !copy.join(COMPLETE).is_file() {
        copied = Some(copy_entries(from, &copy, default_keyspace)?);
    }
    if copy.join(COMPLETE).is_file() {
        if from == to {
            if to.exists() {
                fs::rename(to, &old).map_err(io(format!("rename {}", to.display())))?;
                sync_dir(parent)?;
            }
        } else {
            if to.exists() {
                // Never put a copy over a database that is in use.
                return Err(StorageError::Corrupt {
                    path: to.to_path_buf(),
                    detail: format!(
                        "a finished import from sled at {} waits to take this place",
                        copy.display()
                    ),
                });
            }
            remove_sled_files(from)?;
        }
        fs::rename(&copy, to).map_err(io(format!("rename {}", copy.display())))?;
        sync_dir(parent)?;
    }
    if to.join(COMPLETE).is_file() {
        fs::remove_file(to.join(COMPLETE))
            .map_err(io(format!("remove {}", to.join(COMPLETE).display())))?;
        sync_dir(to)?;
    }
    if old.exists() && to.exists() {
        fs::remove_dir_all(&old).map_err(io(format!("remove {}", old.display())))?;
    }
    Ok(copied)
}

/// sled 0.34's files in `dir`: `conf`, `db`, `blobs/` and `snap.*`.
fn remove_sled_files(dir: &Path) -> Result<(), StorageError> {
    let entries = fs::read_dir(dir).map_err(io(format!("list {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("list {}", dir.display())))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name == "blobs" {
            fs::remove_dir_all(&path).map_err(io(format!("remove {}", path.display())))?;
        } else if name == "conf" || name == "db" || name.starts_with("snap.") {
            fs::remove_file(&path).map_err(io(format!("remove {}", path.display())))?;
        }
    }
    sync_dir(dir)
}

/// sled lets go of its directory's lock a moment after its last handle
/// drops (its flusher thread wakes to stop), so a database closed just now,
/// in this process or by one that just exited, may still be locked: wait a
/// little for that, and no longer (a sled still in use stays an error).
const LOCK_WAIT_MS: u64 = 5_000;

fn open_sled(dir: &Path) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LOCK_WAIT_MS);
    loop {
        match sled::Config::new().path(dir).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Copy every entry of the sled database at `from` into a new fjall
/// database at `to`, then mark it complete.
fn copy_entries(from: &Path, to: &Path, default_keyspace: &str) -> Result<u64, StorageError> {
    let index_error = |e: sled::Error| StorageError::Index(format!("old sled database: {e}"));
    if to.exists() {
        fs::remove_dir_all(to).map_err(io(format!("remove {}", to.display())))?;
    }
    let sled = open_sled(from).map_err(index_error)?;
    let db = fjall::Database::builder(to).open()?;
    let mut copied = 0u64;
    let default_name = sled.name();
    for name in sled.tree_names() {
        let tree = sled.open_tree(&name).map_err(index_error)?;
        if tree.is_empty() {
            continue;
        }
        let keyspace = if name == default_name {
            default_keyspace.to_string()
        } else {
            String::from_utf8(name.to_vec())
                .map_err(|_| StorageError::Index(format!("sled tree name {name:?} is not UTF-8")))?
        };
        let entries = db.keyspace(&keyspace, fjall::KeyspaceCreateOptions::default)?;
        let mut batch = db.batch();
        for kv in tree.iter() {
            let (k, v) = kv.map_err(index_error)?;
            batch.insert(&entries, k.as_ref(), v.as_ref());
            copied += 1;
            if batch.len() == BATCH_ENTRIES {
                std::mem::replace(&mut batch, db.batch()).commit()?;
            }
        }
        batch.commit()?;
    }
    let next_id = sled.generate_id().map_err(index_error)?;
    db.keyspace(IMPORT_KEYSPACE, fjall::KeyspaceCreateOptions::default)?
        .insert(NEXT_ID_KEY, next_id.to_le_bytes())?;
    db.persist(fjall::PersistMode::SyncAll)?;
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

    const KS: &str = "index";

    fn sled_with(dir: &Path, entries: &[(&[u8], &[u8])]) {
        let db = sled::Config::new().path(dir).open().unwrap();
        for (k, v) in entries {
            db.insert(k, *v).unwrap();
        }
        let named = db.open_tree("sim/970422").unwrap();
        named.insert("a/1", "balance").unwrap();
        for _ in 0..5 {
            db.generate_id().unwrap();
        }
        db.flush().unwrap();
    }

    /// The default keyspace's entries, after checking the rest came along.
    fn fjall_entries(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        let db = fjall::Database::builder(dir).open().unwrap();
        let named = db
            .keyspace("sim/970422", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        assert_eq!(named.get("a/1").unwrap().as_deref(), Some(&b"balance"[..]));
        let next = db
            .keyspace(IMPORT_KEYSPACE, fjall::KeyspaceCreateOptions::default)
            .unwrap()
            .get(NEXT_ID_KEY)
            .unwrap()
            .unwrap();
        assert!(u64::from_le_bytes(next[..].try_into().unwrap()) >= 5);
        let ks = db
            .keyspace(KS, fjall::KeyspaceCreateOptions::default)
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
        assert_eq!(import_if_sled(&dir, &dir, KS).unwrap(), Some(4));
        assert!(!is_sled(&dir));
        assert_eq!(fjall_entries(&dir), expected());
        let left: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the index is left: {left:?}");
        // Opening again finds nothing to import.
        assert!(!dir.join(COMPLETE).exists());
        assert_eq!(import_if_sled(&dir, &dir, KS).unwrap(), None);
    }

    #[test]
    fn an_import_cut_at_any_step_finishes_at_the_next_open() {
        // After the copy was marked complete, before the old index moved.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("index");
        sled_with(&dir, ENTRIES);
        copy_entries(&dir, &sibling(&dir, ".fjall-import"), KS).unwrap();
        assert_eq!(
            import_if_sled(&dir, &dir, KS).unwrap(),
            None,
            "the copy is reused"
        );
        assert_eq!(fjall_entries(&dir), expected());

        // After the old index moved aside, before the copy took its place.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("index");
        sled_with(&dir, ENTRIES);
        copy_entries(&dir, &sibling(&dir, ".fjall-import"), KS).unwrap();
        fs::rename(&dir, sibling(&dir, ".sled-old")).unwrap();
        import_if_sled(&dir, &dir, KS).unwrap();
        assert_eq!(fjall_entries(&dir), expected());
        assert!(!sibling(&dir, ".sled-old").exists());

        // In the middle of the copy: an unmarked copy is made again.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("index");
        sled_with(&dir, ENTRIES);
        fs::create_dir_all(sibling(&dir, ".fjall-import")).unwrap();
        fs::write(sibling(&dir, ".fjall-import").join("junk"), b"half").unwrap();
        assert_eq!(import_if_sled(&dir, &dir, KS).unwrap(), Some(4));
        assert_eq!(fjall_entries(&dir), expected());
    }

    #[test]
    fn an_import_beside_other_files_takes_only_sleds_own_and_survives_a_cut() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("switch");
        sled_with(&dir, ENTRIES);
        fs::create_dir_all(dir.join("journal")).unwrap();
        fs::write(dir.join("journal/00000001.wal"), b"records").unwrap();
        let to = dir.join("records");
        // Cut after the copy was marked and sled's files went, before the
        // copy took its place.
        copy_entries(&dir, &sibling(&to, ".fjall-import"), KS).unwrap();
        remove_sled_files(&dir).unwrap();
        assert_eq!(import_if_sled(&dir, &to, KS).unwrap(), None);
        assert_eq!(fjall_entries(&to), expected());
        assert!(!is_sled(&dir));
        assert_eq!(
            fs::read(dir.join("journal/00000001.wal")).unwrap(),
            b"records"
        );
        let mut left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["journal", "records"]);

        // Whole, in one go.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("switch");
        sled_with(&dir, ENTRIES);
        let to = dir.join("records");
        assert_eq!(import_if_sled(&dir, &to, KS).unwrap(), Some(4));
        assert_eq!(fjall_entries(&to), expected());
        assert!(!is_sled(&dir));
        assert_eq!(import_if_sled(&dir, &to, KS).unwrap(), None);
    }
}
