//! Earlier versions kept the ledger's index, and the switch its records, in
//! sled 0.34. Both held data nothing else has any more (the ledger's index
//! the transfers older than the oldest kept checkpoint; the switch's copy
//! every record whose journal segment was trimmed), so the versions up to
//! commit 8ce84e3 copied every sled tree into fjall the first time they
//! opened such a directory. sled is no longer compiled in (issue #17: one
//! embedded engine). A directory that still holds sled's files, or an
//! import a crash interrupted, is refused with what to do, never opened
//! as empty: opening it would rebuild the index without that history.
//!
//! What imports left behind stays meaningful: [`IMPORT_KEYSPACE`] holds
//! sled's id generator's next id, which the switch's store must never hand
//! out again.

use std::path::{Path, PathBuf};

use crate::error::StorageError;

/// The keyspace where an import left sled's id generator's next id (key
/// [`NEXT_ID_KEY`], u64 little-endian).
pub const IMPORT_KEYSPACE: &str = "sled_import";
pub const NEXT_ID_KEY: &[u8] = b"next_id";

/// The last commit whose binaries import a sled directory.
pub const LAST_IMPORTING_COMMIT: &str = "8ce84e3";

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// Refuse `from` (to be opened as fjall at `to`, which may be the same
/// directory) if it holds a sled database, or if an import from sled was
/// interrupted there (its copy or the moved-aside original is still beside
/// it). Reads only; changes nothing.
pub fn refuse_sled(from: &Path, to: &Path) -> Result<(), StorageError> {
    // sled 0.34 writes `conf` and `db`.
    let sled = from.join("conf").is_file() && from.join("db").is_file();
    let interrupted = [sibling(to, ".fjall-import"), sibling(from, ".sled-old")]
        .into_iter()
        .find(|p| p.exists());
    if !sled && interrupted.is_none() {
        return Ok(());
    }
    let what = match &interrupted {
        Some(p) if !sled => format!(
            "an import from sled was interrupted ({} is left)",
            p.display()
        ),
        _ => "it holds an earlier version's sled database".to_string(),
    };
    Err(StorageError::Unsupported {
        path: from.to_path_buf(),
        detail: format!(
            "{what}; start the build of commit {LAST_IMPORTING_COMMIT} on this data directory once \
             (it copies sled into fjall, crash-safely), stop it, then start this version"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sled_files_and_interrupted_imports_are_refused_and_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("index");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(refuse_sled(&dir, &dir).is_ok(), "a fresh directory");

        std::fs::write(dir.join("conf"), b"segment_size: 524288").unwrap();
        std::fs::write(dir.join("db"), b"sled").unwrap();
        let e = refuse_sled(&dir, &dir).unwrap_err().to_string();
        assert!(
            e.contains("sled database") && e.contains(LAST_IMPORTING_COMMIT),
            "{e}"
        );
        assert!(dir.join("db").is_file(), "nothing removed");

        std::fs::remove_file(dir.join("db")).unwrap();
        std::fs::create_dir_all(root.path().join("index.fjall-import")).unwrap();
        let e = refuse_sled(&dir, &dir).unwrap_err().to_string();
        assert!(e.contains("interrupted"), "{e}");

        // The switch's records: sled in the data directory, fjall beside it.
        std::fs::remove_dir_all(root.path().join("index.fjall-import")).unwrap();
        let records = dir.join("records");
        assert!(refuse_sled(&dir, &records).is_ok());
        std::fs::create_dir_all(dir.join("records.fjall-import")).unwrap();
        assert!(refuse_sled(&dir, &records).is_err());
    }
}
