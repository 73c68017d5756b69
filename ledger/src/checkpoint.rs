//! Checkpoints: the state after record `seq` (accounts, unresolved pending
//! transfers, the last timestamp), written atomically (temporary file, fsync,
//! rename, fsync of the directory) with a trailing CRC-32. Recovery starts
//! from one and replays the journal after it; journal segments older than the
//! oldest kept checkpoint are removed.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::codec::{self, Dec, Enc, Malformed};
use crate::error::StorageError;
use crate::journal::sync_dir;
use crate::types::{Account, Transfer};

const MAGIC: &[u8; 4] = b"LCKP";
const VERSION: u16 = 1;
const SUFFIX: &str = ".checkpoint";

pub(crate) struct Checkpoint {
    pub seq: u64,
    pub last_timestamp: u64,
    pub accounts: Vec<Account>,
    pub pendings: Vec<Transfer>,
}

pub(crate) fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SUFFIX}"))
}

/// Write the checkpoint for `seq` and return its path.
pub(crate) fn write<'a>(
    dir: &Path,
    seq: u64,
    last_timestamp: u64,
    accounts: impl ExactSizeIterator<Item = &'a Account>,
    pendings: impl ExactSizeIterator<Item = &'a Transfer>,
) -> Result<PathBuf, StorageError> {
    let mut buf = Vec::with_capacity(64 + accounts.len() * 120 + pendings.len() * 140);
    buf.extend_from_slice(MAGIC);
    let mut e = Enc(&mut buf);
    e.u16(VERSION)
        .u16(0)
        .u64(seq)
        .u64(last_timestamp)
        .u64(accounts.len() as u64)
        .u64(pendings.len() as u64);
    for a in accounts {
        codec::put_account(&mut e, a);
    }
    for t in pendings {
        codec::put_transfer(&mut e, t);
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    let final_path = path(dir, seq);
    let tmp = final_path.with_extension("tmp");
    let io = |what: &str, e| StorageError::io(format!("{what} {}", tmp.display()), e);
    let mut f = File::create(&tmp).map_err(|e| io("create", e))?;
    f.write_all(&buf).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("fsync", e))?;
    fs::rename(&tmp, &final_path).map_err(|e| io("rename", e))?;
    sync_dir(dir)?;
    Ok(final_path)
}

/// Checkpoints in `dir`, oldest first (unverified).
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name();
        if let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|s| s.parse().ok())
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Read and verify a checkpoint: `Ok(Err(why))` when it is damaged.
pub(crate) fn load(path: &Path) -> Result<Result<Checkpoint, String>, StorageError> {
    let bytes =
        fs::read(path).map_err(|e| StorageError::io(format!("read {}", path.display()), e))?;
    if bytes.len() < 4 + 36 + 4 || &bytes[..4] != MAGIC {
        return Ok(Err("not a checkpoint".into()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Ok(Err("checksum mismatch".into()));
    }
    let decode = || -> Result<Checkpoint, Malformed> {
        let mut d = Dec::new(&body[4..]);
        if d.u16()? != VERSION {
            return Err(Malformed("unknown checkpoint version"));
        }
        d.u16()?;
        let seq = d.u64()?;
        let last_timestamp = d.u64()?;
        let (n_accounts, n_pendings) = (d.u64()?, d.u64()?);
        let accounts = (0..n_accounts)
            .map(|_| codec::get_account(&mut d))
            .collect::<Result<_, _>>()?;
        let pendings = (0..n_pendings)
            .map(|_| codec::get_transfer(&mut d))
            .collect::<Result<_, _>>()?;
        if d.remaining() != 0 {
            return Err(Malformed("trailing bytes"));
        }
        Ok(Checkpoint {
            seq,
            last_timestamp,
            accounts,
            pendings,
        })
    };
    Ok(decode().map_err(|Malformed(why)| why.to_string()))
}
