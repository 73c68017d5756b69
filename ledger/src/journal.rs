//! The journal: the ledger's source of truth. An append-only sequence of
//! records, one per group commit, each holding the requests it applied and
//! the `now` they were applied at, so that replaying it reproduces the state
//! exactly. Records are numbered from 1 without gaps and spread over segment
//! files named by their first record's number.
//!
//! Record layout (little-endian):
//!
//! | bytes | field                                              |
//! |-------|----------------------------------------------------|
//! | 4     | magic `LDGR`                                       |
//! | 4     | payload length                                     |
//! | 4     | CRC-32 of bytes 8..32 of the header and the payload |
//! | 2     | format version (1, or 2 when it carries an attachment) |
//! | 2     | reserved, zero                                     |
//! | 8     | record number (`seq`)                              |
//! | 8     | `now`, nanoseconds                                 |
//! | n     | payload: requests, each `kind:u8 count:u32 events` |
//!
//! A version-2 record ends its payload with an *attachment*
//! (`kind:u8 = 3, len:u32, bytes`): what the embedding application made
//! durable in the same write ([`crate::Attachments`]). The ledger never
//! interprets it; it hands it back at open.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::codec::{self, Dec, Enc, Malformed};
use crate::error::StorageError;
use crate::state::Request;

const MAGIC: &[u8; 4] = b"LDGR";
/// Records without an attachment keep the first version's layout byte for
/// byte; one with an attachment is version 2 (which an older reader
/// refuses rather than misreads).
const VERSION: u16 = 1;
const VERSION_ATTACHED: u16 = 2;
pub(crate) const HEADER_SIZE: usize = 32;
/// No record payload is larger: a length beyond it is damage, not data.
pub(crate) const PAYLOAD_SIZE_MAX: usize = 64 << 20;
const KIND_ACCOUNTS: u8 = 1;
const KIND_TRANSFERS: u8 = 2;
const KIND_ATTACHMENT: u8 = 3;
const SEGMENT_SUFFIX: &str = ".journal";

pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"))
}

/// Encode record `seq` into `buf` (cleared first), with `attachment` after
/// the requests when it is not empty.
pub(crate) fn encode_record(
    buf: &mut Vec<u8>,
    seq: u64,
    now: u64,
    requests: &[Request],
    attachment: &[u8],
) {
    buf.clear();
    buf.resize(HEADER_SIZE, 0);
    {
        let mut e = Enc(buf);
        for r in requests {
            match r {
                Request::Accounts(events) => {
                    e.u8(KIND_ACCOUNTS).u32(events.len() as u32);
                    for a in events {
                        codec::put_new_account(&mut e, a);
                    }
                }
                Request::Transfers(events) => {
                    e.u8(KIND_TRANSFERS).u32(events.len() as u32);
                    for t in events {
                        codec::put_new_transfer(&mut e, t);
                    }
                }
            }
        }
        if !attachment.is_empty() {
            e.u8(KIND_ATTACHMENT).u32(attachment.len() as u32);
            e.0.extend_from_slice(attachment);
        }
    }
    let version = if attachment.is_empty() {
        VERSION
    } else {
        VERSION_ATTACHED
    };
    let payload_len = buf.len() - HEADER_SIZE;
    assert!(
        payload_len <= PAYLOAD_SIZE_MAX,
        "record payload over its limit"
    );
    buf[0..4].copy_from_slice(MAGIC);
    buf[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    buf[12..14].copy_from_slice(&version.to_le_bytes());
    buf[16..24].copy_from_slice(&seq.to_le_bytes());
    buf[24..32].copy_from_slice(&now.to_le_bytes());
    let crc = record_crc(&buf[4..8], &buf[12..]);
    buf[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// The checksum covers the length field and everything after the checksum.
fn record_crc(length: &[u8], rest: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(length);
    h.update(rest);
    h.finalize()
}

/// The requests of a record's payload (its attachment, if any, skipped).
pub(crate) fn decode_payload(payload: &[u8]) -> Result<Vec<Request>, Malformed> {
    Ok(decode_parts(payload)?.0)
}

/// A record payload's attachment (empty when it has none).
pub(crate) fn decode_attachment(payload: &[u8]) -> Result<&[u8], Malformed> {
    Ok(decode_parts(payload)?.1)
}

fn decode_parts(payload: &[u8]) -> Result<(Vec<Request>, &[u8]), Malformed> {
    let mut d = Dec::new(payload);
    let mut requests = Vec::new();
    while d.remaining() > 0 {
        let kind = d.u8()?;
        let count = d.u32()? as usize;
        if kind == KIND_ATTACHMENT {
            // Last in the payload, and exactly as long as it says.
            if count != d.remaining() || count == 0 {
                return Err(Malformed("attachment length differs from the payload"));
            }
            let start = payload.len() - count;
            return Ok((requests, &payload[start..]));
        }
        let size = match kind {
            KIND_ACCOUNTS => codec::NEW_ACCOUNT_SIZE,
            KIND_TRANSFERS => codec::NEW_TRANSFER_SIZE,
            _ => return Err(Malformed("unknown request kind")),
        };
        if count.checked_mul(size).is_none_or(|n| n > d.remaining()) {
            return Err(Malformed("request count runs past the payload"));
        }
        requests.push(match kind {
            KIND_ACCOUNTS => Request::Accounts(
                (0..count)
                    .map(|_| codec::get_new_account(&mut d))
                    .collect::<Result<_, _>>()?,
            ),
            _ => Request::Transfers(
                (0..count)
                    .map(|_| codec::get_new_transfer(&mut d))
                    .collect::<Result<_, _>>()?,
            ),
        });
    }
    Ok((requests, &[]))
}

/// One record read back from a segment.
pub(crate) struct RawRecord<'a> {
    pub seq: u64,
    pub now: u64,
    pub payload: &'a [u8],
    /// Bytes the record takes in the segment.
    pub size: usize,
}

/// Parse the record at the start of `bytes`, or say why it is not whole.
pub(crate) fn parse_record(bytes: &[u8]) -> Result<RawRecord<'_>, &'static str> {
    if bytes.len() < HEADER_SIZE {
        return Err("header cut short");
    }
    if &bytes[0..4] != MAGIC {
        return Err("bad magic");
    }
    let payload_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    if payload_len > PAYLOAD_SIZE_MAX {
        return Err("payload length over the limit");
    }
    let size = HEADER_SIZE + payload_len;
    if bytes.len() < size {
        return Err("payload cut short");
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if crc != record_crc(&bytes[4..8], &bytes[12..size]) {
        return Err("checksum mismatch");
    }
    let version = u16::from_le_bytes(bytes[12..14].try_into().unwrap());
    if version != VERSION && version != VERSION_ATTACHED {
        return Err("unknown format version");
    }
    Ok(RawRecord {
        seq: u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
        now: u64::from_le_bytes(bytes[24..32].try_into().unwrap()),
        payload: &bytes[HEADER_SIZE..size],
        size,
    })
}

/// A segment and the whole records it holds.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub path: PathBuf,
    pub first_seq: u64,
    /// The last whole record (first_seq - 1 when it holds none).
    pub last_seq: u64,
    /// Bytes of whole records.
    pub len: u64,
}

/// Bytes that recovery could not use and moved aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The segment the damage is in.
    pub segment: PathBuf,
    /// Where the first unusable record starts in it.
    pub offset: u64,
    /// Bytes moved aside, from `offset` to the end of the journal.
    pub bytes: u64,
    /// Records after the damage that checksummed correctly but were dropped
    /// with it (non-zero means damage in the middle, not a torn write).
    pub whole_records_after: u64,
    /// Why the record at `offset` is not whole.
    pub reason: String,
    /// Where the dropped bytes were kept for inspection.
    pub kept_at: PathBuf,
}

/// The journal's whole records, after damage (if any) was moved aside.
pub(crate) struct Scan {
    pub segments: Vec<Segment>,
    pub dropped: Option<Dropped>,
}

impl Scan {
    pub fn first_seq(&self) -> Option<u64> {
        self.segments.first().map(|s| s.first_seq)
    }
    /// The last whole record (0 for an empty journal).
    pub fn last_seq(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.last_seq)
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, StorageError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| StorageError::io(format!("read {}", path.display()), e))?;
    Ok(bytes)
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
            continue;
        };
        if let Ok(first) = stem.parse::<u64>() {
            out.push((first, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(format!("fsync directory {}", dir.display()), e))
}

/// Read every segment, keep the whole records up to the first damage, and
/// move the damaged tail (and any later segments) aside into `dir/dropped/`.
pub(crate) fn scan_and_repair(dir: &Path) -> Result<Scan, StorageError> {
    fs::create_dir_all(dir)
        .map_err(|e| StorageError::io(format!("create {}", dir.display()), e))?;
    let files = list_segments(dir)?;
    let mut segments: Vec<Segment> = Vec::new();
    let mut damage: Option<(usize, u64, String)> = None; // (file index, offset, reason)
    'files: for (i, (first_seq, path)) in files.iter().enumerate() {
        let expected_first = segments.last().map_or(*first_seq, |s| s.last_seq + 1);
        if *first_seq != expected_first {
            damage = Some((
                i,
                0,
                format!("segment starts at record {first_seq}, expected {expected_first}"),
            ));
            break;
        }
        let bytes = read_file(path)?;
        let mut offset = 0usize;
        let mut next = *first_seq;
        while offset < bytes.len() {
            match parse_record(&bytes[offset..]) {
                Ok(r) if r.seq == next => {
                    offset += r.size;
                    next += 1;
                }
                Ok(r) => {
                    damage = Some((
                        i,
                        offset as u64,
                        format!("record {} where {next} was expected", r.seq),
                    ));
                }
                Err(why) => damage = Some((i, offset as u64, why.to_string())),
            }
            if damage.is_some() {
                segments.push(Segment {
                    path: path.clone(),
                    first_seq: *first_seq,
                    last_seq: next - 1,
                    len: offset as u64,
                });
                break 'files;
            }
        }
        segments.push(Segment {
            path: path.clone(),
            first_seq: *first_seq,
            last_seq: next - 1,
            len: offset as u64,
        });
    }
    let dropped = match damage {
        None => None,
        Some((i, offset, reason)) => Some(move_aside(dir, &files[i..], offset, reason)?),
    };
    // A damaged first segment may now hold nothing; keep it (it is where
    // appends continue) unless it is not the first.
    Ok(Scan { segments, dropped })
}

/// Keep the bytes from `offset` of the first file onwards in `dir/dropped/`,
/// then truncate that file at `offset` and remove the later files.
fn move_aside(
    dir: &Path,
    files: &[(u64, PathBuf)],
    offset: u64,
    reason: String,
) -> Result<Dropped, StorageError> {
    let kept_dir = dir.join("dropped");
    fs::create_dir_all(&kept_dir)
        .map_err(|e| StorageError::io(format!("create {}", kept_dir.display()), e))?;
    let stamp = fs::read_dir(&kept_dir).map(|d| d.count()).unwrap_or(0);
    let kept_at = kept_dir.join(format!("{stamp:04}-from-{}-at-{offset}", files[0].0));
    let mut kept = File::create(&kept_at)
        .map_err(|e| StorageError::io(format!("create {}", kept_at.display()), e))?;
    let mut bytes_dropped = 0u64;
    let mut whole_after = 0u64;
    for (n, (_, path)) in files.iter().enumerate() {
        let bytes = read_file(path)?;
        let tail = if n == 0 {
            &bytes[offset as usize..]
        } else {
            &bytes[..]
        };
        // Count checksummed records after the damage: evidence of corruption
        // in the middle rather than a torn final write.
        let mut at = if n == 0 { 1 } else { 0 };
        while at + HEADER_SIZE <= tail.len() {
            match parse_record(&tail[at..]) {
                Ok(r) => {
                    whole_after += 1;
                    at += r.size;
                }
                Err(_) => at += 1,
            }
        }
        kept.write_all(tail)
            .map_err(|e| StorageError::io(format!("write {}", kept_at.display()), e))?;
        bytes_dropped += tail.len() as u64;
    }
    kept.sync_all()
        .map_err(|e| StorageError::io(format!("fsync {}", kept_at.display()), e))?;
    let first = &files[0].1;
    OpenOptions::new()
        .write(true)
        .open(first)
        .and_then(|f| {
            f.set_len(offset)?;
            f.sync_all()
        })
        .map_err(|e| StorageError::io(format!("truncate {}", first.display()), e))?;
    for (_, path) in &files[1..] {
        fs::remove_file(path)
            .map_err(|e| StorageError::io(format!("remove {}", path.display()), e))?;
    }
    sync_dir(dir)?;
    Ok(Dropped {
        segment: first.clone(),
        offset,
        bytes: bytes_dropped,
        whole_records_after: whole_after,
        reason,
        kept_at,
    })
}

/// Call `f` for every record after `after_seq`, in order.
pub(crate) fn replay(
    segments: &[Segment],
    after_seq: u64,
    mut f: impl FnMut(u64, u64, Vec<Request>, usize) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    each_record(segments, after_seq, |segment, r| {
        let requests = decode_payload(r.payload).map_err(|m| undecodable(segment, &r, m))?;
        f(r.seq, r.now, requests, r.size)
    })
}

/// Call `f` with every non-empty attachment in `segments` (whole records
/// as a scan found them), in order, with its record's number.
pub(crate) fn read_attachments(
    segments: &[Segment],
    mut f: impl FnMut(u64, &[u8]) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    each_record(segments, 0, |segment, r| {
        let attachment = decode_attachment(r.payload).map_err(|m| undecodable(segment, &r, m))?;
        if attachment.is_empty() {
            return Ok(());
        }
        f(r.seq, attachment)
    })
}

/// Call `f` for every whole record after `after_seq` in `segments` (as a
/// scan found them: one that no longer parses changed since, and is
/// damage).
fn each_record(
    segments: &[Segment],
    after_seq: u64,
    mut f: impl FnMut(&Segment, RawRecord<'_>) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    for segment in segments.iter().filter(|s| s.last_seq > after_seq) {
        let bytes = read_file(&segment.path)?;
        let mut offset = 0usize;
        while (offset as u64) < segment.len {
            let r = parse_record(&bytes[offset..]).map_err(|why| StorageError::Corrupt {
                path: segment.path.clone(),
                detail: format!("record at offset {offset} changed since it was scanned: {why}"),
            })?;
            offset += r.size;
            if r.seq > after_seq {
                f(segment, r)?;
            }
        }
    }
    Ok(())
}

fn undecodable(segment: &Segment, r: &RawRecord<'_>, Malformed(why): Malformed) -> StorageError {
    StorageError::Corrupt {
        path: segment.path.clone(),
        detail: format!("record {} checksums but does not decode: {why}", r.seq),
    }
}

/// Appends records to the active segment, rotating to a new one when it is
/// full, and removes segments that checkpoints have made unnecessary.
pub(crate) struct Writer {
    dir: PathBuf,
    file: File,
    active: Segment,
    /// Closed segments, oldest first.
    closed: Vec<Segment>,
    segment_size_max: u64,
}

impl Writer {
    /// Continue after the scanned journal (or start it at record 1).
    pub(crate) fn open(
        dir: &Path,
        scan: &Scan,
        segment_size_max: u64,
    ) -> Result<Writer, StorageError> {
        let mut segments = scan.segments.clone();
        let active = match segments.pop() {
            Some(s) => s,
            None => {
                let first_seq = 1;
                Segment {
                    path: segment_path(dir, first_seq),
                    first_seq,
                    last_seq: 0,
                    len: 0,
                }
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&active.path)
            .map_err(|e| StorageError::io(format!("open {}", active.path.display()), e))?;
        sync_dir(dir)?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            file,
            active,
            closed: segments,
            segment_size_max,
        })
    }

    /// Append one encoded record (not yet durable: call [`Writer::sync`]).
    pub(crate) fn append(&mut self, seq: u64, record: &[u8]) -> Result<(), StorageError> {
        assert_eq!(
            seq,
            self.active.last_seq + 1,
            "records are appended in order"
        );
        if self.active.len > 0 && self.active.len + record.len() as u64 > self.segment_size_max {
            self.rotate(seq)?;
        }
        self.file.write_all(record).map_err(|e| {
            StorageError::io(format!("append to {}", self.active.path.display()), e)
        })?;
        self.active.len += record.len() as u64;
        self.active.last_seq = seq;
        Ok(())
    }

    /// Make every appended record durable.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        // A slow disk, in fault drills (`sleep(ms)`).
        #[cfg(feature = "failpoints")]
        fail::fail_point!("ledger-journal-fsync");
        self.file
            .sync_data()
            .map_err(|e| StorageError::io(format!("fsync {}", self.active.path.display()), e))
    }

    fn rotate(&mut self, next_seq: u64) -> Result<(), StorageError> {
        self.sync()?;
        let path = segment_path(&self.dir, next_seq);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| StorageError::io(format!("create {}", path.display()), e))?;
        sync_dir(&self.dir)?;
        let segment = Segment {
            path,
            first_seq: next_seq,
            last_seq: next_seq - 1,
            len: 0,
        };
        self.closed
            .push(std::mem::replace(&mut self.active, segment));
        self.file = file;
        Ok(())
    }

    /// Remove closed segments whose records are all at or before `seq`.
    pub(crate) fn remove_through(&mut self, seq: u64) -> Result<usize, StorageError> {
        let n = self.closed.iter().take_while(|s| s.last_seq <= seq).count();
        for s in self.closed.drain(..n) {
            fs::remove_file(&s.path)
                .map_err(|e| StorageError::io(format!("remove {}", s.path.display()), e))?;
        }
        if n > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NewTransfer;

    #[test]
    fn a_record_round_trips_and_every_single_byte_flip_is_caught() {
        let requests = vec![Request::Transfers(vec![NewTransfer::single(1, 2, 3, 4, 5)])];
        let mut buf = Vec::new();
        encode_record(&mut buf, 9, 77, &requests, &[]);
        let r = parse_record(&buf).unwrap();
        assert_eq!((r.seq, r.now, r.size), (9, 77, buf.len()));
        assert_eq!(decode_payload(r.payload).unwrap(), requests);
        assert_eq!(decode_attachment(r.payload).unwrap(), b"");
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            assert!(
                parse_record(&bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        for cut in 0..buf.len() {
            assert!(parse_record(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn an_attachment_rides_after_the_requests_and_the_ledger_skips_it() {
        let requests = vec![Request::Transfers(vec![NewTransfer::single(1, 2, 3, 4, 5)])];
        let mut plain = Vec::new();
        encode_record(&mut plain, 9, 77, &requests, &[]);
        let mut buf = Vec::new();
        encode_record(&mut buf, 9, 77, &requests, b"records of the switch");
        let r = parse_record(&buf).unwrap();
        assert_eq!(u16::from_le_bytes([buf[12], buf[13]]), VERSION_ATTACHED);
        assert_eq!(decode_payload(r.payload).unwrap(), requests);
        assert_eq!(
            decode_attachment(r.payload).unwrap(),
            b"records of the switch"
        );
        // An attachment alone (a write of the application's records only).
        encode_record(&mut buf, 10, 78, &[], b"x");
        let r = parse_record(&buf).unwrap();
        assert!(decode_payload(r.payload).unwrap().is_empty());
        assert_eq!(decode_attachment(r.payload).unwrap(), b"x");
        // A length that disagrees with the payload is damage.
        let mut payload = r.payload.to_vec();
        payload.push(0);
        assert!(decode_attachment(&payload).is_err());
        // Without one, the first version's bytes exactly.
        assert_eq!(u16::from_le_bytes([plain[12], plain[13]]), VERSION);
    }
}
