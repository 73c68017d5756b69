//! Reconciliation of a bank's statement for a closed window against the
//! ledger. What the switch expects comes from the ledger (the second
//! phases, posts and voids, on the bank's account inside the window) and
//! the switch's records (each call to that bank, by reference). The
//! statement streams in as CSV; both sides meet in a scratch keyspace, so
//! a million-line statement reconciles in bounded memory. Nothing is kept
//! unless the whole statement parses and its SHA-256 is the one the bank
//! signed; the same statement again answers the stored report.

use std::collections::BTreeMap;
use std::io::Read;

use ledger::TransferFlags;
use serde::{Deserialize, Serialize};

use crate::accounts::{Kind, bank_number};
use crate::caller::{Principal, Role};
use crate::clock::now_ms;
use crate::error::{ErrorCode, SwitchError};
use crate::flows::{Switch, storage, unknown_biller};
use crate::ids::{Reference, TxId};
use crate::settlement::WindowState;
use crate::store::{Action, Party, Status, Store};

/// The classes a statement line (or an expected line) ends in.
pub const CLASSES: [&str; 7] = [
    "matched",
    "missing_at_bank",
    "missing_at_switch",
    "amount_mismatch",
    "status_mismatch",
    "duplicate",
    // A line whose amount, direction or status cannot be read: kept with
    // its line number for a person to look at; the rest still reconciles.
    "unreadable",
];

/// Exceptions a report carries inline (all are stored).
pub const EXCEPTIONS_SHOWN_MAX: usize = 1000;
/// Longest statement line accepted.
const LINE_BYTES_MAX: usize = 4096;

/// A piece of a statement as it arrives.
pub struct Chunk {
    pub window_id: u64,
    /// In the first chunk: the biller whose statement an operator submits
    /// (empty: the calling bank's own).
    pub biller: String,
    pub data: Vec<u8>,
}

/// Whose statement is reconciled: a bank's (by BIN, submitted by the bank)
/// or a biller's (by code, submitted by an operator: billers send their
/// files to the operations team, not over the switch's API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Counterparty {
    Bank(String),
    Biller(String),
}

impl Counterparty {
    /// How reports and runs are keyed (a BIN is six digits, so the two
    /// never collide).
    fn key(&self) -> String {
        match self {
            Counterparty::Bank(bin) => bin.clone(),
            Counterparty::Biller(code) => format!("biller:{code}"),
        }
    }

    fn party(&self) -> Party {
        match self {
            Counterparty::Bank(bin) => Party::Bank(bin.clone()),
            Counterparty::Biller(code) => Party::Biller(code.clone()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub note: String,
    pub by: String,
    pub at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    pub id: String,
    pub class: String,
    pub transaction_id: String,
    pub line: u64,
    pub reason: String,
    pub switch_amount: u64,
    pub bank_amount: u64,
    pub resolution: Option<Resolution>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconReport {
    pub window_id: u64,
    pub bank_bin: String,
    pub statement_sha256: String,
    pub lines: u64,
    /// (count, amount) by class, every class present.
    pub classes: BTreeMap<String, (u64, u64)>,
    pub exceptions_total: u64,
    /// The first exceptions (filled in when answering).
    #[serde(default)]
    pub exceptions: Vec<Exception>,
    /// The tree holding every exception of this report, by id.
    #[serde(default)]
    pub exceptions_tree: String,
    /// A biller's statement: its code (`bank_bin` is empty).
    #[serde(default)]
    pub biller: String,
    /// A biller's statement is checked against its position in the
    /// window's settlement report as well as line by line.
    #[serde(default)]
    pub position: Option<PositionCheck>,
}

/// A biller's net in the window's settlement report against the
/// statement's (completed credits less completed debits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionCheck {
    pub report_net: i64,
    pub statement_net: i64,
}

/// What the switch expects the bank to list for one reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expected {
    amount: u64,
    credit: bool,
    completed: bool,
    /// A call of a reversed transaction the bank may never have seen.
    optional: bool,
    seen: bool,
}

impl Expected {
    fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&self.amount.to_be_bytes());
        b[8] = u8::from(self.credit);
        b[9] = u8::from(self.completed);
        b[10] = u8::from(self.optional);
        b[11] = u8::from(self.seen);
        b
    }
    fn decode(b: &[u8]) -> Option<Expected> {
        let b: &[u8; 12] = b.try_into().ok()?;
        Some(Expected {
            amount: u64::from_be_bytes(b[..8].try_into().ok()?),
            credit: b[8] == 1,
            completed: b[9] == 1,
            optional: b[10] == 1,
            seen: b[11] == 1,
        })
    }
}

fn words(credit: bool, completed: bool) -> String {
    format!(
        "{} {}",
        if credit { "credit" } else { "debit" },
        if completed { "completed" } else { "reversed" }
    )
}

fn invalid(line: u64, why: impl std::fmt::Display) -> SwitchError {
    SwitchError::new(ErrorCode::StatementInvalid, format!("line {line}: {why}"))
}

fn report_prefix(who: &Counterparty, window: u64, digest: &str) -> String {
    format!("report/{}/{window:020}/{digest}", who.key())
}

/// Reads the statement's bytes from the async side (blocking).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.buf = b;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Switch {
    /// Reconcile a streamed statement: a bank's own, or a biller's that an
    /// operator submits (the first chunk names the biller). `declared` is
    /// the SHA-256 the caller signed.
    pub async fn reconcile(
        &self,
        p: &Principal,
        declared: &str,
        mut chunks: tokio::sync::mpsc::Receiver<Result<Chunk, SwitchError>>,
    ) -> Result<ReconReport, SwitchError> {
        if !matches!(p.role, Role::Bank | Role::Operator) {
            return Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "only a bank (its own) or an operator (a biller's) submits a statement",
            ));
        }
        let first = chunks.recv().await.ok_or_else(|| {
            SwitchError::new(ErrorCode::StatementInvalid, "the statement is empty")
        })??;
        let who = match (&p.role, first.biller.as_str()) {
            (Role::Bank, "") => Counterparty::Bank(p.id.clone()),
            (Role::Operator, "") => {
                return Err(SwitchError::invalid(
                    "an operator submits a biller's statement: name the biller",
                ));
            }
            (Role::Operator, code) => {
                if self.billers.get(code).is_none() {
                    return Err(SwitchError::new(
                        ErrorCode::UnknownBiller,
                        format!("no biller {code}"),
                    ));
                }
                Counterparty::Biller(code.to_string())
            }
            _ => {
                return Err(SwitchError::new(
                    ErrorCode::PermissionDenied,
                    "a bank submits only its own statement",
                ));
            }
        };
        let window = self
            .windows()?
            .into_iter()
            .find(|w| w.id == first.window_id)
            .ok_or_else(|| {
                SwitchError::new(
                    ErrorCode::WindowNotFound,
                    format!("no window {}", first.window_id),
                )
            })?;
        if !matches!(window.state, WindowState::Closed | WindowState::Settled) {
            return Err(SwitchError::new(
                ErrorCode::WindowOpen,
                format!("window {} is not closed yet", window.id),
            ));
        }
        let cutoff = window
            .cutoff_timestamp
            .expect("a closed window has its cut-off");
        let run = format!(
            "{}/{}/{}",
            who.key(),
            window.id,
            self.store.next_id().map_err(storage)?
        );
        let scratch = self
            .store
            .scratch_tree(&format!("recon/{run}"))
            .map_err(storage)?;
        // Exceptions are written where they will stay; only a stored report
        // that names them makes them visible.
        let found = Found {
            store: self.store.clone(),
            name: format!("recon-exceptions/{run}"),
        };
        let result = self
            .reconcile_into(
                &scratch,
                &found,
                &who,
                window.id,
                window.from_timestamp,
                cutoff,
                first,
                &mut chunks,
                declared,
            )
            .await;
        self.store.drop_tree(scratch.clone()).map_err(storage)?;
        let kept = matches!(&result, Ok(r) if r.exceptions_tree == found.name);
        if !kept {
            self.store.drop_exceptions(&found.name).map_err(storage)?;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn reconcile_into(
        &self,
        scratch: &fjall::Keyspace,
        found: &Found,
        who: &Counterparty,
        window: u64,
        from: u64,
        cutoff: u64,
        first: Chunk,
        chunks: &mut tokio::sync::mpsc::Receiver<Result<Chunk, SwitchError>>,
        declared: &str,
    ) -> Result<ReconReport, SwitchError> {
        self.expect_into(scratch, who, from, cutoff).await?;
        // Parse in a blocking task; feed it from here, hashing as we go.
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let parser = {
            let (scratch, found) = (scratch.clone(), found.clone());
            tokio::task::spawn_blocking(move || {
                match_statement(
                    &scratch,
                    &found,
                    ChannelReader {
                        rx,
                        buf: Vec::new(),
                        at: 0,
                    },
                )
            })
        };
        // The statement's own digest (the report's key), and the digest
        // the caller signed, which names the window too.
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        let mut signed = signed_digest(window, who);
        let mut feed_error = None;
        let mut next = Some(first.data);
        while let Some(data) = next.take() {
            hash.update(&data);
            signed.update(&data);
            if tx.send(data).await.is_err() {
                break; // the parser stopped (a bad line): its error tells
            }
            next = match chunks.recv().await {
                Some(Ok(c)) => Some(c.data),
                Some(Err(e)) => {
                    feed_error = Some(e);
                    None
                }
                None => None,
            };
        }
        drop(tx);
        let parsed = parser.await.map_err(storage)?;
        if let Some(e) = feed_error {
            return Err(e);
        }
        let (lines, statement_net, mut classes, mut exceptions) = parsed?;
        let digest = hex::encode(hash.finish().as_ref());
        if hex::encode(signed.finish().as_ref()) != declared {
            return Err(SwitchError::new(
                ErrorCode::Unauthenticated,
                "the statement and its window are not the ones signed",
            ));
        }
        // Expected lines the statement never had.
        for kv in scratch.prefix(b"e") {
            let (k, v) = kv.into_inner().map_err(storage)?;
            let Some(e) = Expected::decode(&v) else {
                continue;
            };
            if e.seen || e.optional {
                continue;
            }
            let reference = u128::from_be_bytes(k[1..17].try_into().map_err(storage)?);
            exceptions.push(
                found,
                Exception {
                    id: String::new(),
                    class: "missing_at_bank".into(),
                    transaction_id: format!("{reference:032x}"),
                    line: 0,
                    reason: format!(
                        "the switch has {} {} VND; the statement does not",
                        words(e.credit, e.completed),
                        e.amount
                    ),
                    switch_amount: e.amount,
                    bank_amount: 0,
                    resolution: None,
                },
            )?;
            let c = classes.entry("missing_at_bank".into()).or_default();
            c.0 += 1;
            c.1 += e.amount;
        }
        exceptions.write(found)?;
        let prefix = report_prefix(who, window, &digest);
        if let Some(stored) = self.stored_report(&prefix)? {
            return Ok(stored);
        }
        let (bank_bin, biller, position) = match who {
            Counterparty::Bank(bin) => (bin.clone(), String::new(), None),
            Counterparty::Biller(code) => {
                let report_net = self.report_net(window, code)?;
                let statement_net = i64::try_from(statement_net).map_err(|_| {
                    SwitchError::new(
                        ErrorCode::StatementInvalid,
                        "the statement's total is out of range",
                    )
                })?;
                if report_net != statement_net {
                    tracing::warn!(biller = %code, window, report_net, statement_net, "a biller's statement does not add up to its settlement position");
                }
                (
                    String::new(),
                    code.clone(),
                    Some(PositionCheck {
                        report_net,
                        statement_net,
                    }),
                )
            }
        };
        let report = ReconReport {
            window_id: window,
            bank_bin,
            biller,
            position,
            statement_sha256: digest,
            lines,
            classes: CLASSES
                .iter()
                .map(|c| (c.to_string(), classes.get(*c).copied().unwrap_or((0, 0))))
                .collect(),
            exceptions_total: exceptions.n,
            exceptions: Vec::new(),
            exceptions_tree: found.name.clone(),
        };
        // The report is the commit: written after every exception.
        self.store
            .recon_put(&prefix, serde_json::to_vec(&report).expect("serialisable"))
            .map_err(storage)?;
        self.store.durable().await.map_err(storage)?;
        let m = report.classes.get("matched").map_or(0, |c| c.0);
        tracing::info!(
            counterparty = %who.key(),
            window,
            lines,
            matched = m,
            exceptions = report.exceptions_total,
            "statement reconciled"
        );
        self.stored_report(&prefix)?
            .ok_or_else(|| storage("a reconciliation report vanished"))
    }

    /// A biller's net position in window `window`'s settlement report.
    fn report_net(&self, window: u64, code: &str) -> Result<i64, SwitchError> {
        let w = self
            .windows()?
            .into_iter()
            .find(|w| w.id == window)
            .ok_or_else(|| {
                SwitchError::new(ErrorCode::WindowNotFound, format!("no window {window}"))
            })?;
        Ok(w.report
            .iter()
            .flat_map(|r| &r.participants)
            .find(|x| x.kind == "biller" && x.participant == code)
            .map_or(0, |x| x.net))
    }

    /// Fill `scratch` with the calls to `who` whose transactions were
    /// posted or voided in the window.
    async fn expect_into(
        &self,
        scratch: &fjall::Keyspace,
        who: &Counterparty,
        from: u64,
        cutoff: u64,
    ) -> Result<(), SwitchError> {
        let account = match who {
            Counterparty::Bank(bin) => Kind::Bank.id(bank_number(bin)),
            Counterparty::Biller(code) => Kind::Biller.id(self
                .billers
                .get(code)
                .map(|b| b.number)
                .ok_or_else(|| unknown_biller(code))?),
        };
        let party = who.party();
        let mut last_tx = 0u128;
        self.window_transfers(account, from, cutoff, |t| {
            if !t
                .flags()
                .intersects(TransferFlags::POST_PENDING | TransferFlags::VOID_PENDING)
                || t.user_data() == last_tx
            {
                return Ok(());
            }
            last_tx = t.user_data();
            let Some(id) = TxId::from_u128(t.user_data()) else {
                return Ok(());
            };
            let Some(rec) = self.store.get_tx(id).map_err(storage)? else {
                tracing::error!(tx = %id, "the ledger names a transaction the store lacks");
                return Ok(());
            };
            let completed = match rec.status {
                Status::Completed => true,
                Status::Reversed => false,
                Status::Failed | Status::Pending => return Ok(()),
            };
            for (i, step) in rec.steps.iter().enumerate() {
                if step.party != party {
                    continue;
                }
                let e = Expected {
                    amount: step.amount,
                    // What the party received: a bank's credit, a biller's
                    // payment.
                    credit: matches!(
                        step.action,
                        Action::Credit { .. } | Action::PayBills { .. } | Action::TopUp { .. }
                    ),
                    completed,
                    optional: !completed && step.party_reference.is_none(),
                    seen: false,
                };
                let mut key = vec![b'e'];
                key.extend_from_slice(&id.reference(i as u8).to_bytes());
                scratch.insert(key, e.encode()).map_err(storage)?;
            }
            Ok(())
        })
        .await
    }

    fn stored_report(&self, prefix: &str) -> Result<Option<ReconReport>, SwitchError> {
        let Some(v) = self.store.recon_get(prefix).map_err(storage)? else {
            return Ok(None);
        };
        let mut report: ReconReport = serde_json::from_slice(&v).map_err(storage)?;
        for kv in self
            .store
            .exceptions(&report.exceptions_tree)
            .take(EXCEPTIONS_SHOWN_MAX)
        {
            let (_, v) = kv.map_err(storage)?;
            report
                .exceptions
                .push(serde_json::from_slice(&v).map_err(storage)?);
        }
        Ok(Some(report))
    }

    /// An operator's note on an exception, kept with who and when; every
    /// resolution is also appended to the audit trail.
    pub async fn resolve_exception(
        &self,
        p: &Principal,
        window: u64,
        who: &Counterparty,
        exception_id: &str,
        note: &str,
    ) -> Result<Exception, SwitchError> {
        if p.role != Role::Operator {
            return Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "only an operator resolves exceptions",
            ));
        }
        if note.trim().is_empty() || note.len() > 1000 {
            return Err(SwitchError::invalid("note must be 1 to 1000 characters"));
        }
        let mut found = None;
        let prefix = format!("report/{}/{window:020}/", who.key());
        for kv in self.store.recon_scan(&prefix) {
            let (_, v) = kv.map_err(storage)?;
            let report: ReconReport = serde_json::from_slice(&v).map_err(storage)?;
            let stored = self
                .store
                .exception(&report.exceptions_tree, exception_id)
                .map_err(storage)?;
            if let Some(v) = stored {
                found = Some((report.exceptions_tree, v));
                break;
            }
        }
        let (exceptions, value) = found.ok_or_else(|| {
            SwitchError::new(
                ErrorCode::TransactionNotFound,
                format!(
                    "no exception {exception_id} for {} in window {window}",
                    who.key()
                ),
            )
        })?;
        let mut e: Exception = serde_json::from_slice(&value).map_err(storage)?;
        let at_ms = now_ms();
        e.resolution = Some(Resolution {
            note: note.to_string(),
            by: p.id.clone(),
            at_ms,
        });
        let audit = serde_json::json!({
            "at_ms": at_ms, "by": p.id, "action": "resolve_exception", "window": window,
            "bank": who.key(), "exception": exception_id, "class": e.class,
            "transaction_id": e.transaction_id, "note": note,
        });
        let seq = self.store.next_id().map_err(storage)?;
        // The audit entry first: a resolution is never without its trail.
        self.store
            .recon_put(
                &format!("audit/{at_ms:020}/{seq:020}"),
                serde_json::to_vec(&audit).expect("serialisable"),
            )
            .map_err(storage)?;
        self.store
            .put_exception(
                &exceptions,
                exception_id,
                serde_json::to_vec(&e).expect("serialisable"),
            )
            .map_err(storage)?;
        self.store.durable().await.map_err(storage)?;
        tracing::info!(
            window,
            counterparty = %who.key(),
            exception = exception_id,
            "reconciliation exception resolved"
        );
        Ok(e)
    }

    /// The audit trail of resolutions, oldest first.
    pub fn audit_trail(&self) -> Result<Vec<serde_json::Value>, SwitchError> {
        let mut out = Vec::new();
        for kv in self.store.recon_scan("audit/") {
            let (_, v) = kv.map_err(storage)?;
            out.push(serde_json::from_slice(&v).map_err(storage)?);
        }
        Ok(out)
    }
}

/// What a statement upload signs, before the CSV's bytes: the window's id
/// and a newline (docs/PROTOCOL.md; clients use
/// `proto::auth::StatementDigest`, which the end-to-end tests hold this
/// to), so that a signed statement is not accepted for another window.
fn signed_digest(window: u64, who: &Counterparty) -> ring::digest::Context {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(format!("{window}\n").as_bytes());
    if let Counterparty::Biller(code) = who {
        ctx.update(format!("biller {code}\n").as_bytes());
    }
    ctx
}

/// Where a run's exceptions are written as they are found: the store,
/// under the name its report will give them.
#[derive(Clone)]
struct Found {
    store: Store,
    name: String,
}

/// Exceptions of a run so far; written in batches (one store write each),
/// so that a statement with many exceptions is not one write per line.
struct Exceptions {
    n: u64,
    unwritten: Vec<(String, Vec<u8>)>,
}

/// Exceptions written to the store at once at most.
const EXCEPTIONS_BATCH_MAX: usize = 1_000;

impl Exceptions {
    fn new() -> Exceptions {
        Exceptions {
            n: 0,
            unwritten: Vec::new(),
        }
    }

    fn push(&mut self, found: &Found, mut e: Exception) -> Result<(), SwitchError> {
        self.n += 1;
        e.id = format!("E{:07}", self.n);
        let value = serde_json::to_vec(&e).expect("serialisable");
        self.unwritten.push((e.id, value));
        if self.unwritten.len() >= EXCEPTIONS_BATCH_MAX {
            self.write(found)?;
        }
        Ok(())
    }

    /// Write every exception pushed so far.
    fn write(&mut self, found: &Found) -> Result<(), SwitchError> {
        let batch = std::mem::take(&mut self.unwritten);
        found
            .store
            .put_exceptions(&found.name, &batch)
            .map_err(storage)
    }
}

/// Lines, the net of completed lines (credits less debits), classes,
/// exceptions.
type Parsed = (u64, i128, BTreeMap<String, (u64, u64)>, Exceptions);

/// Match every statement line against the expected lines in `scratch`.
fn match_statement(
    scratch: &fjall::Keyspace,
    found: &Found,
    input: impl Read,
) -> Result<Parsed, SwitchError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| invalid(1, format!("unreadable header: {e}")))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| invalid(1, format!("the header has no {name} column (needs transaction_id,amount,direction,status)")))
    };
    let (c_id, c_amount, c_direction, c_status) = (
        column("transaction_id")?,
        column("amount")?,
        column("direction")?,
        column("status")?,
    );
    let mut classes: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut exceptions = Exceptions::new();
    let mut lines = 0u64;
    let mut net = 0i128;
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let at = e.position().map_or(line, |p| p.line());
                return Err(invalid(at, format!("not a CSV row: {e}")));
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        if record.as_slice().len() > LINE_BYTES_MAX {
            return Err(invalid(line, "longer than 4096 bytes"));
        }
        lines += 1;
        let id_text = &record[c_id];
        // A line that cannot be read, or that names an id the switch could
        // never have issued, is an exception of its own: the statement
        // goes on (a bank's statement often carries lines the switch never
        // saw). Only a broken CSV refuses the whole statement.
        let mut other_exception = |class: &str, reason: String, bank_amount: u64| {
            let c = classes.entry(class.to_string()).or_default();
            c.0 += 1;
            c.1 += bank_amount;
            exceptions.push(
                found,
                Exception {
                    id: String::new(),
                    class: class.to_string(),
                    transaction_id: id_text.chars().take(64).collect(),
                    line,
                    reason,
                    switch_amount: 0,
                    bank_amount,
                    resolution: None,
                },
            )
        };
        let Ok(amount) = record[c_amount].parse::<u64>() else {
            let reason = format!("amount {:?} is not whole đồng", &record[c_amount]);
            other_exception("unreadable", reason, 0)?;
            continue;
        };
        let credit = match record[c_direction].to_ascii_lowercase().as_str() {
            "credit" => true,
            "debit" => false,
            other => {
                let reason = format!("direction {other:?} is not credit or debit");
                other_exception("unreadable", reason, amount)?;
                continue;
            }
        };
        let completed = match record[c_status].to_ascii_lowercase().as_str() {
            "completed" => true,
            "reversed" => false,
            other => {
                let reason = format!("status {other:?} is not completed or reversed");
                other_exception("unreadable", reason, amount)?;
                continue;
            }
        };
        if completed {
            net += if credit {
                i128::from(amount)
            } else {
                -i128::from(amount)
            };
        }
        let Some(reference) = Reference::parse(&id_text.to_ascii_lowercase()) else {
            let reason = "the switch never issues an id of this form".to_string();
            other_exception("missing_at_switch", reason, amount)?;
            continue;
        };
        let mut key = vec![b'e'];
        key.extend_from_slice(&reference.to_bytes());
        let expected = scratch
            .get(&key)
            .map_err(storage)?
            .and_then(|v| Expected::decode(&v));
        let exception = |class: &str, reason: String, switch_amount: u64| Exception {
            id: String::new(),
            class: class.to_string(),
            transaction_id: reference.to_string(),
            line,
            reason,
            switch_amount,
            bank_amount: amount,
            resolution: None,
        };
        let (class, e) = match expected {
            None => (
                "missing_at_switch",
                Some(exception(
                    "missing_at_switch",
                    "the switch has no such transaction in this window".into(),
                    0,
                )),
            ),
            Some(e) if e.seen => (
                "duplicate",
                Some(exception(
                    "duplicate",
                    "listed more than once".into(),
                    e.amount,
                )),
            ),
            Some(mut e) => {
                e.seen = true;
                scratch.insert(&key, e.encode()).map_err(storage)?;
                if e.amount != amount {
                    (
                        "amount_mismatch",
                        Some(exception(
                            "amount_mismatch",
                            format!("the switch has {} VND, the bank {amount}", e.amount),
                            e.amount,
                        )),
                    )
                } else if e.credit != credit || e.completed != completed {
                    (
                        "status_mismatch",
                        Some(exception(
                            "status_mismatch",
                            format!(
                                "the switch has {}, the bank {}",
                                words(e.credit, e.completed),
                                words(credit, completed)
                            ),
                            e.amount,
                        )),
                    )
                } else {
                    ("matched", None)
                }
            }
        };
        let c = classes.entry(class.to_string()).or_default();
        c.0 += 1;
        c.1 += amount;
        if let Some(e) = e {
            exceptions.push(found, e)?;
        }
    }
    Ok((lines, net, classes, exceptions))
}

impl Switch {
    /// Reconciliation reports, newest layout first as the store keeps
    /// them, each with its exceptions (at most `max` of each): a bank's
    /// own, or every one for an operator. A record that does not decode is
    /// an error.
    pub fn reconciliations(
        &self,
        p: &Principal,
        max: usize,
    ) -> Result<Vec<(ReconReport, Vec<Exception>)>, SwitchError> {
        let prefix = match p.role {
            Role::Bank => format!("report/{}/", p.id),
            Role::Operator => "report/".to_string(),
            _ => {
                return Err(SwitchError::new(
                    ErrorCode::PermissionDenied,
                    "only operators and banks see reconciliations",
                ));
            }
        };
        let mut out = Vec::new();
        for kv in self.store.recon_scan(&prefix).take(max) {
            let (_, v) = kv.map_err(storage)?;
            let report: ReconReport = serde_json::from_slice(&v).map_err(storage)?;
            let mut exceptions = Vec::new();
            for kv in self.store.exceptions(&report.exceptions_tree).take(max) {
                let (_, v) = kv.map_err(storage)?;
                exceptions.push(serde_json::from_slice(&v).map_err(storage)?);
            }
            out.push((report, exceptions));
        }
        Ok(out)
    }
}
