//! The counter flows. Each money-moving flow runs in a task of its own (a
//! client that hangs up cannot stop it halfway) and follows one discipline:
//!
//! 1. validate, then record the transaction durably (stage `AtBank`) with
//!    its idempotency entry, before any money moves;
//! 2. reserve in the ledger (pending, linked legs with a timeout);
//! 3. call the bank with a timeout;
//! 4. post the legs on success; void them on a refusal; on an unknown
//!    outcome ask the bank for the status, and if it stays unknown queue a
//!    durable reversal first and then void;
//! 5. record the final status durably, then answer.
//!
//! After a crash, [`Switch::recover`] finishes every transaction left at
//! `AtBank` the same way.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ledger::{NewTransfer, Receipt, TransferReject, TransferStatus};
use ring::digest;
use ring::rand::SystemRandom;
use tracing::Instrument;

use crate::accounts::{Kind, NETWORK, code};
use crate::adapters::bank::{BankError, BankTxStatus, RejectReason, Routes};
use crate::adapters::biller::{BillerError, BillerReject, BillerTxStatus, Billers};
use crate::adapters::breaker::CallOutcome;
use crate::caller::{Principal, Role};
use crate::clock::{monotonic_ms, now_ms};
use crate::config::Config;
use crate::error::{ErrorCode, SwitchError};
use crate::fees;
pub(crate) use crate::flows::fault::storage;
use crate::flows::limits;
use crate::flows::products;
pub(crate) use crate::flows::products::bills::unknown_biller;
use crate::ids::{Reference, TxId, mask_account};
use crate::store::ledger::LedgerStore;
use crate::store::{
    self, Action, FeeParts, Party, Payment, ReversalJob, Stage, Status, Step, Store, TxRecord,
};

/// Everything the flows share.
pub struct Switch {
    pub config: Config,
    pub store: Store,
    pub ledger: LedgerStore,
    pub routes: Routes,
    pub billers: Billers,
    /// Seals callers' secrets for the store, and opens them.
    pub master_key: crate::secrets::MasterKey,
    /// Completed merchant payments, numbered and published in order, for
    /// `WatchPayments`.
    pub notifier: crate::flows::notify::Notifier,
    pub(crate) rng: SystemRandom,
    /// Ledger numbers of post offices and terminals, by id.
    numbers: RwLock<Numbers>,
    /// Communes of post offices (false) and merchants (true), by id, for
    /// the pilot report (`flows::report`).
    pub(crate) communes: RwLock<HashMap<(bool, String), String>>,
    /// Confirmation, cancellation and the deadline sweep of one cash-out
    /// take turns, so that a payout is never both posted and reversed (one
    /// lock per stripe of transaction ids: different cash-outs resolve in
    /// parallel).
    pub(crate) resolving: Vec<tokio::sync::Mutex<()>>,
    /// Opening and closing shifts take turns.
    pub(crate) shifts: tokio::sync::Mutex<()>,
    /// Provisioning takes turns (numbers are allocated from what exists).
    pub provisioning: tokio::sync::Mutex<()>,
    /// Closing and settling windows take turns.
    pub(crate) settling: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Numbers {
    post_offices: HashMap<String, u64>,
    terminals: HashMap<String, u64>,
}

/// Locks over cash-outs being resolved (by transaction id).
pub(crate) const RESOLVING_STRIPES: usize = 256;

/// The turns that several nodes sharing one store take too (advisory lock
/// keys; a cash-out's turn is its id's, under [`turn::CASH_OUT`]).
pub mod turn {
    pub const SHIFTS: i64 = 0x5357_0001;
    pub const PROVISIONING: i64 = 0x5357_0002;
    // 0x5357_0003 was the bill code's turn: an attempt's claim on the code
    // replaced it. Not reused, so that mixed versions never share a key.
    pub const SETTLING: i64 = 0x5357_0004;
    pub const CASH_OUT: i64 = 0x5357;
}

/// A turn held on this node (its lock) and across nodes (the store's).
pub(crate) struct Turn<'a> {
    _here: tokio::sync::MutexGuard<'a, ()>,
    _everywhere: crate::store::pg_kv::NodeLock,
}

/// Ledger legs of one transaction: reserve as `leg`, post as `leg + 16`,
/// void as `leg + 32`.
pub(crate) const POST: u8 = 16;
pub(crate) const VOID: u8 = 32;

pub(crate) fn valid_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

pub(crate) fn valid_bin(bin: &str) -> bool {
    bin.len() == 6 && bin.bytes().all(|b| b.is_ascii_digit())
}

pub(crate) fn valid_account(account: &str) -> bool {
    (6..=19).contains(&account.len()) && account.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An amount within a product's limits.
pub(crate) fn check_amount(
    product: &crate::config::Product,
    amount: u64,
    name: &str,
) -> Result<(), SwitchError> {
    if amount < product.amount_min {
        return Err(SwitchError::new(
            ErrorCode::AmountBelowMinimum,
            format!("the least {name} is {} VND", product.amount_min),
        ));
    }
    if amount > product.amount_max {
        return Err(SwitchError::new(
            ErrorCode::AmountAboveMaximum,
            format!("the most {name} is {} VND", product.amount_max),
        ));
    }
    Ok(())
}

/// Submit transfers to the ledger (either backend); a failure of the
/// ledger itself is logged and answered as the switch's own.
pub async fn ledger_transfers(
    ledger: &LedgerStore,
    events: Vec<NewTransfer>,
) -> Result<Vec<Result<Receipt, TransferReject>>, SwitchError> {
    crate::telemetry::stage("ledger", ledger.transfers(events))
        .await
        .map_err(storage)
}

/// Counting a transaction against its limits (in the write that records
/// it: [`Store::create_tx_counted`]).
pub(crate) enum Limits {
    Held,
    /// Over a limit: nothing counted.
    Refused(SwitchError),
}

/// What a finished transaction writes, in one store commit
/// ([`Store::finish_tx`]): prepared before the write, so that the write can
/// run where the ledger applies a post (one durable write for both).
struct FinishWrite {
    rec: TxRecord,
    /// The merchant's notice of a completed payment.
    payment: Option<Payment>,
    /// Daily-limit keys a transaction that did not happen gives back.
    give_back: Vec<String>,
    /// The bill payment a QR attempt paid, as it is final.
    paid: Option<TxRecord>,
    /// The pilot report's counters.
    stats: Vec<store::stats::Contribution>,
}

impl FinishWrite {
    fn commit(&self, store: &Store) -> Result<store::Finished, SwitchError> {
        store
            .finish_tx(
                &self.rec,
                self.payment.as_ref(),
                &self.give_back,
                self.paid.as_ref(),
                &self.stats,
            )
            .map_err(storage)
    }

    /// [`FinishWrite::commit`] prepared, to commit in the ledger's batch
    /// (PostgreSQL).
    fn prepare(&self, store: &Store) -> Result<(store::Finished, store::Prepared), SwitchError> {
        store
            .prepare_finish_tx(
                &self.rec,
                self.payment.as_ref(),
                &self.give_back,
                self.paid.as_ref(),
                &self.stats,
            )
            .map_err(storage)
    }
}

/// Times a flow step's one write is prepared again after a refusal before
/// its record is written on its own.
const ONE_WRITE_ATTEMPTS_MAX: usize = 4;

/// The totals `limits` count in, with their most.
fn totals_of(limits: &[limits::Limit]) -> Vec<(String, u64)> {
    limits.iter().map(|l| (l.key.clone(), l.max)).collect()
}

/// What the create's count against `limits` found (`over`: the index of a
/// total it would pass, and what it had counted), `rec` told so.
fn counted(rec: &mut TxRecord, limits: &[limits::Limit], over: Option<(usize, u64)>) -> Limits {
    match over {
        None => Limits::Held,
        Some((i, counted)) => {
            rec.limits_held = false;
            rec.limit_keys.clear();
            Limits::Refused(limits::refusal(&limits[i], counted, rec.amount))
        }
    }
}

pub(crate) fn fingerprint(parts: &[&str]) -> String {
    hex::encode(digest::digest(&digest::SHA256, parts.join("\n").as_bytes()).as_ref())
}

/// Daily limits reset at local midnight.
pub(crate) fn day(ms: i64) -> i64 {
    crate::civil::day_number(ms)
}

/// The teller's name a counter gave: at most 64 characters, none a
/// control character; empty is none.
pub(crate) fn teller_name(teller: &str) -> Result<Option<String>, SwitchError> {
    let teller = teller.trim();
    if teller.chars().count() > 64 || teller.chars().any(char::is_control) {
        return Err(SwitchError::invalid(
            "teller must be up to 64 characters, none a control character",
        ));
    }
    Ok((!teller.is_empty()).then(|| teller.to_string()))
}

/// Who took a counter request, and when, when it was not just now.
#[derive(Clone, Copy, Debug, Default)]
pub struct Taken<'a> {
    /// The teller serving, as the counter signed them in (empty: not said).
    pub teller: &'a str,
    /// For a request the counter stored while it could not reach the
    /// switch and forwards now: when it took it (Unix ms).
    pub offline_at_ms: Option<i64>,
}

/// What a product is to the offline policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deferrable {
    TopUp,
    CashBills,
    CashIn,
    /// Cash-outs (only the bank checks the code and the balance), cards
    /// and QR (the customer's bank must answer).
    Never,
}

/// A transaction after its flow: final, or pending.
pub type Outcome = Result<TxRecord, SwitchError>;

impl Switch {
    pub fn new(
        config: Config,
        store: Store,
        ledger: LedgerStore,
        routes: Routes,
        billers: Billers,
        master_key: crate::secrets::MasterKey,
    ) -> Switch {
        let notifier =
            crate::flows::notify::Notifier::open(&store).expect("the store hands out ids");
        Switch {
            config,
            store,
            ledger,
            routes,
            billers,
            master_key,
            notifier,
            rng: SystemRandom::new(),
            numbers: RwLock::new(Numbers::default()),
            communes: RwLock::new(HashMap::new()),
            resolving: (0..RESOLVING_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            shifts: tokio::sync::Mutex::new(()),
            provisioning: tokio::sync::Mutex::new(()),
            settling: tokio::sync::Mutex::new(()),
        }
    }

    /// Wait for a turn: `here` among this node's tasks, then `key` among
    /// every node sharing the store.
    pub(crate) async fn take_turn<'a>(
        &self,
        here: &'a tokio::sync::Mutex<()>,
        key: i64,
    ) -> Result<Turn<'a>, SwitchError> {
        let here = here.lock().await;
        let everywhere = self.store.node_lock(key).await.map_err(storage)?;
        Ok(Turn {
            _here: here,
            _everywhere: everywhere,
        })
    }

    pub(crate) fn teller_post_office(p: &Principal) -> Result<&str, SwitchError> {
        match &p.role {
            Role::Teller { post_office_id } => Ok(post_office_id),
            _ => Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "only a teller's terminal may do this",
            )),
        }
    }
    /// Validation shared by both counter products.
    pub(crate) fn check_common(
        &self,
        request_id: &str,
        bin: &str,
        account: &str,
        amount: u64,
        product: &crate::config::Product,
        name: &str,
    ) -> Result<Arc<crate::adapters::bank::Bank>, SwitchError> {
        if !valid_request_id(request_id) {
            return Err(SwitchError::invalid(
                "client_request_id must be 1 to 64 of [A-Za-z0-9._:-]",
            ));
        }
        if !valid_bin(bin) {
            return Err(SwitchError::invalid("bank_bin must be six digits"));
        }
        if !valid_account(account) {
            return Err(SwitchError::invalid(
                "account must be 6 to 19 letters or digits",
            ));
        }
        if amount == 0 {
            return Err(SwitchError::invalid("amount must be more than zero"));
        }
        let bank = self.routes.get(bin).ok_or_else(|| {
            SwitchError::new(ErrorCode::UnknownBank, format!("no bank with BIN {bin}"))
        })?;
        check_amount(product, amount, name)?;
        Ok(bank.clone())
    }

    /// A new transaction's record, before any money moves.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_record(
        &self,
        p: &Principal,
        post_office_id: &str,
        kind: store::Kind,
        request_id: &str,
        bin: &str,
        account: &str,
        amount: u64,
        fee: fees::Fee,
        fingerprint: String,
        steps: Vec<Step>,
    ) -> TxRecord {
        let now = now_ms();
        TxRecord {
            id: TxId::new(&self.rng, now).to_string(),
            kind,
            status: Status::Pending,
            stage: Stage::AtBank,
            terminal_id: p.id.clone(),
            post_office_id: post_office_id.to_string(),
            bank_bin: bin.to_string(),
            account: account.to_string(),
            account_name: String::new(),
            amount,
            fee: FeeParts::from(fee),
            client_request_id: request_id.to_string(),
            fingerprint,
            created_at_ms: now,
            updated_at_ms: now,
            error_code: None,
            error_message: None,
            bank_reference: None,
            confirm_deadline_ms: None,
            steps,
            qr_id: None,
            merchant: None,
            bill: None,
            limits_held: false,
            limit_keys: Vec::new(),
            pays_for: None,
            paid_by: None,
            card_token: None,
            teller: None,
            taken_at_ms: None,
        }
    }

    /// Record `rec` as `owner`'s request `request_id` (or find the original
    /// under that id) and run the flow in a task of its own: a client that
    /// hangs up cannot stop it halfway. `under_shift`: taken at a counter
    /// now, so `owner`'s shift must be open, which the write that records
    /// it checks.
    pub(crate) async fn start(
        self: &Arc<Self>,
        mut rec: TxRecord,
        owner: &str,
        request_id: &str,
        fingerprint: &str,
        presented: Option<Presented>,
        under_shift: bool,
    ) -> Outcome {
        let shift = under_shift.then_some(owner);
        // Counted against its limits, all or none, in the write that
        // records it (its record says so: `limits_held`, `limit_keys`).
        let limits = limits::of(&self.config, &rec);
        rec.limits_held = !limits.is_empty();
        rec.limit_keys = limits.iter().map(|l| l.key.clone()).collect();
        let span = tracing::info_span!("transaction", tx = %rec.id, terminal = %rec.terminal_id, kind = kind_label(rec.kind));
        let me = self.clone();
        if self.store.prepares() {
            // The record and its reservation are one write: the whole step
            // runs on a task of its own, as the flow after it does.
            let (owner, request_id) = (owner.to_string(), request_id.to_string());
            let fingerprint = fingerprint.to_string();
            return tokio::spawn(
                async move {
                    let ids = (owner.as_str(), request_id.as_str(), fingerprint.as_str());
                    me.start_in_one_write(rec, ids, presented, limits, under_shift)
                        .await
                }
                .instrument(span),
            )
            .await
            .map_err(|e| storage(format!("transaction task failed: {e}")))?;
        }
        let ids = (owner, request_id, fingerprint);
        let counted = match self.record_apart(&mut rec, ids, &limits, shift).await {
            Ok(counted) => counted,
            Err(answer) => return answer,
        };
        tokio::spawn(async move { me.run(rec, presented, counted).instrument(span).await })
            .await
            .map_err(|e| storage(format!("transaction task failed: {e}")))?
    }

    /// [`Switch::start`] on PostgreSQL: the record, its idempotency entry,
    /// claims and limits commit in the ledger's batch with the reservation,
    /// as one transaction (issue #26). That write is also the last before
    /// any call, made only while the transaction is open (it opens it), so
    /// no write is needed to fence off a node that was cut off meanwhile.
    /// A write refused because a key it read changed (a post office's
    /// totals, mostly) is prepared again, reading what won; after
    /// [`ONE_WRITE_ATTEMPTS_MAX`] refusals, the record is written on its
    /// own first (the committers then run it alone, holding its keys'
    /// locks, so it cannot starve).
    async fn start_in_one_write(
        &self,
        first: TxRecord,
        (owner, request_id, fingerprint): (&str, &str, &str),
        presented: Option<Presented>,
        limits: Vec<limits::Limit>,
        under_shift: bool,
    ) -> Outcome {
        let shift = under_shift.then_some(owner);
        let totals = totals_of(&limits);
        for _ in 0..ONE_WRITE_ATTEMPTS_MAX {
            let mut rec = first.clone();
            let (created, over, prepared) = self
                .store
                .prepare_create_tx_counted(&store::NewTx {
                    t: &rec,
                    owner,
                    request_id,
                    fingerprint,
                    limits: &totals,
                    shift,
                })
                .map_err(storage)?;
            let counted = counted(&mut rec, &limits, over);
            if let Some(answer) = self.unless_new(created, request_id, fingerprint).await {
                return answer;
            }
            match self.reservable(&rec, counted)? {
                Err(e) => {
                    if !self.store.commit_prepared(prepared).map_err(storage)? {
                        continue;
                    }
                    return self.finish(rec, Status::Failed, Some(e)).await;
                }
                Ok(legs) => {
                    let reserved = self
                        .ledger
                        .transfers_with(legs.clone(), Some(prepared), None)
                        .await
                        .map_err(storage)?;
                    if let Some((reserved, _)) = reserved {
                        return self.reserved(rec, legs, reserved, presented, true).await;
                    }
                }
            }
            metrics::counter!("switch_one_write_refusals_total").increment(1);
        }
        let mut rec = first;
        let ids = (owner, request_id, fingerprint);
        match self.record_apart(&mut rec, ids, &limits, shift).await {
            Ok(counted) => self.run(rec, presented, counted).await,
            Err(answer) => answer,
        }
    }

    /// Record `rec` in a write of its own (its reservation follows apart),
    /// counted against `limits`: what it is to run with, or the answer when
    /// it was not new (a retry's outcome, a claim held, no open shift).
    async fn record_apart(
        &self,
        rec: &mut TxRecord,
        (owner, request_id, fingerprint): (&str, &str, &str),
        limits: &[limits::Limit],
        shift: Option<&str>,
    ) -> Result<Limits, Outcome> {
        let totals = totals_of(limits);
        let new = store::NewTx {
            t: rec,
            owner,
            request_id,
            fingerprint,
            limits: &totals,
            shift,
        };
        let (created, over) = self
            .store
            .create_tx_counted(&new)
            .map_err(|e| Err(storage(e)))?;
        let counted = counted(rec, limits, over);
        match self.unless_new(created, request_id, fingerprint).await {
            Some(answer) => Err(answer),
            None => Ok(counted),
        }
    }

    /// What a create found, unless it made the transaction: an earlier
    /// request's outcome (a retry), or the claim another holds.
    async fn unless_new(
        &self,
        created: store::Created,
        request_id: &str,
        fingerprint: &str,
    ) -> Option<Outcome> {
        match created {
            store::Created::New => None,
            store::Created::Existing(existing, original) => {
                // What a retry is told is acknowledged: durable first (the
                // first request's write may still be on its way to disk).
                if let Err(e) = self.store.durable().await {
                    return Some(Err(storage(e)));
                }
                Some(retry(*existing, request_id, &original, fingerprint))
            }
            store::Created::Claimed(claim) => Some(Err(claimed(&claim))),
            store::Created::NoOpenShift => Some(Err(SwitchError::new(
                ErrorCode::NoOpenShift,
                "open a shift with the counted cash first",
            ))),
        }
    }

    /// When a forwarded offline request was taken, if the offline policy
    /// lets `what` wait and it is not too old; `None` for a request taken
    /// now. Checked after a retry's earlier outcome is looked up, so that a
    /// retry past the maximum age still gets its first answer.
    pub(crate) fn offline_at(
        &self,
        taken: Taken<'_>,
        what: Deferrable,
    ) -> Result<Option<i64>, SwitchError> {
        let Some(at_ms) = taken.offline_at_ms else {
            return Ok(None);
        };
        let policy = &self.config.offline;
        let allowed = match what {
            Deferrable::TopUp => policy.top_up,
            Deferrable::CashBills => policy.bills,
            Deferrable::CashIn => policy.cash_in,
            Deferrable::Never => false,
        };
        if !allowed {
            return Err(SwitchError::new(
                ErrorCode::NotDeferrable,
                "this may not be taken offline: it needs the switch and the bank at once",
            ));
        }
        let now = now_ms();
        if at_ms <= 0 || at_ms > now.saturating_add(self.config.signature_skew_ms as i64) {
            return Err(SwitchError::invalid(
                "offline_taken_at_ms is in the future or not a time",
            ));
        }
        if now - at_ms > policy.max_age_ms {
            return Err(SwitchError::new(
                ErrorCode::OfflineTooOld,
                format!(
                    "taken offline {} min ago, past the {} min a request may wait; hand the customer's cash back",
                    (now - at_ms) / 60_000,
                    policy.max_age_ms / 60_000
                ),
            ));
        }
        Ok(Some(at_ms))
    }

    /// The transaction an earlier request with this id made (a retry gets
    /// its outcome), or a refusal if that request's content differed.
    pub(crate) fn earlier_request(
        &self,
        owner: &str,
        request_id: &str,
        fingerprint: &str,
    ) -> Result<Option<TxRecord>, SwitchError> {
        match self.store.request(owner, request_id).map_err(storage)? {
            Some((existing, original)) => {
                retry(existing, request_id, &original, fingerprint).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Validate a counter request, record it and run its flow.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn begin(
        self: &Arc<Self>,
        p: &Principal,
        kind: store::Kind,
        request_id: &str,
        bin: &str,
        account: &str,
        amount: u64,
        code: Option<&str>,
        taken: Taken<'_>,
    ) -> Outcome {
        let post_office_id = Switch::teller_post_office(p)?.to_string();
        let teller = teller_name(taken.teller)?;
        let (product, name) = match kind {
            store::Kind::CashOut => (&self.config.cash_out, "cash-out"),
            _ => (&self.config.cash_in, "cash-in"),
        };
        let bank = self.check_common(request_id, bin, account, amount, product, name)?;
        let fee = fees::fee(&product.fee, amount);
        let amount_text = amount.to_string();
        let mut parts = vec![kind_label(kind), bin, account];
        parts.extend(code);
        parts.push(&amount_text);
        let step = match kind {
            store::Kind::CashOut => Step {
                party: Party::Bank(bank.bin.clone()),
                action: Action::DebitWithCode {
                    account: account.to_string(),
                },
                amount: amount + fee.total,
                party_reference: None,
            },
            _ => Step {
                party: Party::Bank(bank.bin.clone()),
                action: Action::Credit {
                    account: account.to_string(),
                },
                amount,
                party_reference: None,
            },
        };
        let fp = fingerprint(&parts);
        let what = match kind {
            store::Kind::CashIn => Deferrable::CashIn,
            _ => Deferrable::Never,
        };
        let taken_at_ms = if taken.offline_at_ms.is_some() {
            if let Some(existing) = self.earlier_request(&p.id, request_id, &fp)? {
                return Ok(existing);
            }
            self.offline_at(taken, what)?
        } else {
            None
        };
        let mut rec = self.new_record(
            p,
            &post_office_id,
            kind,
            request_id,
            bin,
            account,
            amount,
            fee,
            fp.clone(),
            vec![step],
        );
        rec.teller = teller;
        rec.taken_at_ms = taken_at_ms;
        // Cash taken offline was taken under the shift then open; now, the
        // teller's shift must be open (checked in the write that records
        // the transaction).
        let under_shift = taken_at_ms.is_none();
        self.start(
            rec,
            &p.id,
            request_id,
            &fp,
            code.map(|c| Presented::Code(c.to_string())),
            under_shift,
        )
        .await
    }

    fn code_attempts_key(rec: &TxRecord) -> String {
        format!(
            "{}/code_attempts/{}/{}",
            day(rec.created_at_ms),
            rec.bank_bin,
            rec.account
        )
    }

    /// Run a recorded transaction (counted against its limits as
    /// `limits` says): reservation, then its calls.
    pub(crate) async fn run(
        &self,
        rec: TxRecord,
        presented: Option<Presented>,
        limits: Limits,
    ) -> Outcome {
        let legs = match self.reservable(&rec, limits)? {
            Ok(legs) => legs,
            Err(e) => return self.finish(rec, Status::Failed, Some(e)).await,
        };
        // The record becomes durable while the ledger reserves (one fsync
        // less in every flow's path), and both are before any call: a
        // reservation whose record a crash lost moves no money and expires
        // by its own timeout.
        let reserved = self.durably_with(legs.clone()).await?;
        self.reserved(rec, legs, reserved, presented, false).await
    }

    /// The legs to reserve for `rec` (counted against its limits as
    /// `limits` says), or why it fails before any reservation: its first
    /// party is paused, too many wrong withdrawal codes, a limit, legs the
    /// ledger could not take. Nothing is reserved yet: the transaction
    /// then fails whole, its limits given back, rather than staying open.
    fn reservable(
        &self,
        rec: &TxRecord,
        limits: Limits,
    ) -> Result<Result<Vec<NewTransfer>, SwitchError>, SwitchError> {
        debug_assert!(!rec.steps.is_empty());
        if let Some(e) = self.party_paused(&rec.steps[0].party) {
            return Ok(Err(e));
        }
        if rec.kind == store::Kind::CashOut
            && !self
                .store
                .add_daily(
                    &Switch::code_attempts_key(rec),
                    0,
                    self.config.code_attempts_max - 1,
                )
                .map_err(storage)?
        {
            return Ok(Err(SwitchError::new(
                ErrorCode::TooManyCodeAttempts,
                "too many wrong withdrawal codes for this account today",
            )));
        }
        if let Limits::Refused(e) = limits {
            return Ok(Err(e));
        }
        Ok(self.legs(rec))
    }

    /// Go on once the ledger answered `rec`'s reservation of `legs`: a leg
    /// refused fails the transaction; else its calls. `fenced`: the write
    /// that reserved was made only while the transaction was open (one
    /// write with its record); else, on a shared store, a write that is
    /// makes sure first.
    async fn reserved(
        &self,
        mut rec: TxRecord,
        legs: Vec<NewTransfer>,
        reserved: Vec<Result<Receipt, TransferReject>>,
        presented: Option<Presented>,
        fenced: bool,
    ) -> Outcome {
        if let Some((i, reject)) = reserved.iter().enumerate().find_map(|(i, r)| {
            r.err()
                .filter(|r| *r != TransferReject::LinkedEventFailed)
                .map(|r| (i, r))
        }) {
            let e = products::of(rec.kind)
                .refusal(&rec, i, reject)
                .unwrap_or_else(|| {
                    tracing::error!(leg = i, %reject, "ledger refused a leg");
                    SwitchError::new(
                        ErrorCode::Internal,
                        format!("the ledger refused the transaction ({reject})"),
                    )
                });
            return self.finish(rec, Status::Failed, Some(e)).await;
        }
        // Shared by several nodes: another may have finished this
        // transaction as abandoned while this node was cut off (its
        // reservation had not happened then). The last write before any call
        // is made only while it is open (and says this node is at it): if it
        // is not, the call is never made and the reservation goes.
        if self.store.is_shared() && !fenced {
            rec.updated_at_ms = now_ms();
            if !self.store.put_tx(&rec).map_err(storage)? {
                self.void(&legs).await?;
                return self.finished_elsewhere(&rec);
            }
        }
        self.execute(rec, &legs, presented.as_ref(), 0).await
    }

    /// Submit `legs` to the ledger, durable together with every record
    /// committed before: one write when the records ride in the embedded
    /// ledger's (one log per node), else the records' commit and the
    /// ledger's side by side.
    pub(crate) async fn durably_with(
        &self,
        legs: Vec<NewTransfer>,
    ) -> Result<Vec<Result<Receipt, TransferReject>>, SwitchError> {
        if self.store.logs_in_ledger() {
            let written = self
                .store
                .write_with(ledger::Request::Transfers(legs), None)
                .await
                .expect("the records ride in the ledger's");
            return match written.map_err(storage)? {
                ledger::Outcome::Transfers(r) => Ok(r),
                ledger::Outcome::Accounts(_) => unreachable!("transfers answer with transfers"),
            };
        }
        let (durable, done) =
            tokio::join!(self.store.durable(), ledger_transfers(&self.ledger, legs));
        durable.map_err(storage)?;
        done
    }

    /// A party whose circuit is open: calls to it fail fast.
    fn party_paused(&self, party: &Party) -> Option<SwitchError> {
        match party {
            Party::Bank(bin) => {
                let bank = self.routes.get(bin)?;
                bank.breaker
                    .is_open(monotonic_ms())
                    .then(|| circuit_open(&bank.name))
            }
            Party::Biller(code) => {
                let biller = self.billers.get(code)?;
                biller
                    .breaker
                    .is_open(monotonic_ms())
                    .then(|| circuit_open(&biller.name))
            }
        }
    }

    /// Make the calls from `from` on, in order; then complete (or, for a
    /// cash-out, wait for the payout). A refusal of the first call leaves
    /// nothing to undo: the reservation goes and the transaction FAILED. A
    /// refusal after an earlier call succeeded, or an outcome that stays
    /// unknown, reverses every call.
    async fn execute(
        &self,
        mut rec: TxRecord,
        legs: &[NewTransfer],
        presented: Option<&Presented>,
        from: usize,
    ) -> Outcome {
        let mut i = from;
        while i < rec.steps.len() {
            match self.call_step(&rec, i, presented).await? {
                Answer::Done(reference) => {
                    rec.steps[i].party_reference = Some(reference.clone());
                    if i == 0 {
                        rec.bank_reference = Some(reference);
                    }
                    i += 1;
                }
                Answer::Refused(e) if i == 0 => {
                    return self
                        .void_and_finish(rec, legs, Status::Failed, Some(e))
                        .await;
                }
                Answer::Refused(e) => return self.reverse(rec, legs, e).await,
                Answer::Unknown => {
                    tracing::warn!(step = i, "call timed out; asking for its status");
                    match self
                        .step_status(&rec, i, self.config.bank_status_attempts)
                        .await
                    {
                        Some(reference) => {
                            rec.steps[i].party_reference = Some(reference.clone());
                            if i == 0 {
                                rec.bank_reference = Some(reference);
                            }
                            i += 1;
                        }
                        None => return self.reverse(rec, legs, unknown_outcome()).await,
                    }
                }
            }
        }
        self.bank_did_it(rec, legs).await
    }

    /// Call step `i` of `rec` once, with the timeout and the breaker.
    async fn call_step(
        &self,
        rec: &TxRecord,
        i: usize,
        presented: Option<&Presented>,
    ) -> Result<Answer, SwitchError> {
        let code = match presented {
            Some(Presented::Code(c)) => Some(c.as_str()),
            _ => None,
        };
        let step = &rec.steps[i];
        let reference = rec.tx_id().reference(i as u8);
        let timeout = Duration::from_millis(self.config.bank_timeout_ms);
        let started = std::time::Instant::now();
        match (&step.party, &step.action) {
            (Party::Bank(bin), action) => {
                let Some(bank) = self.routes.get(bin).cloned() else {
                    return Ok(Answer::Refused(SwitchError::new(
                        ErrorCode::UnknownBank,
                        format!("no bank with BIN {bin}"),
                    )));
                };
                // A card's PIN, re-enciphered for the issuer: only the flow
                // that received the card holds it (recovery never calls).
                let card_block = match (action, presented) {
                    (Action::CardDebit { .. }, Some(Presented::Card { pan, pin })) => {
                        let Some(zone) = &bank.pin_key else {
                            return Ok(Answer::Refused(SwitchError::new(
                                ErrorCode::CardNotAccepted,
                                format!("{} takes no cards through this switch", bank.name),
                            )));
                        };
                        Some(proto::pin::encipher(zone, pin, pan, &self.rng))
                    }
                    (Action::CardDebit { .. }, _) => {
                        return Err(storage("a card debit without the card"));
                    }
                    _ => None,
                };
                let Some(permit) = bank.breaker.try_call(monotonic_ms()) else {
                    return Ok(Answer::Refused(circuit_open(&bank.name)));
                };
                let (call, pending) = match action {
                    Action::Credit { account } => (
                        "credit",
                        bank.adapter.credit(reference, account, step.amount),
                    ),
                    Action::Debit { account } => {
                        ("debit", bank.adapter.debit(reference, account, step.amount))
                    }
                    Action::DebitWithCode { account } => (
                        "debit_with_code",
                        bank.adapter.debit_with_code(
                            reference,
                            account,
                            code.unwrap_or_default(),
                            rec.amount,
                            step.amount - rec.amount,
                        ),
                    ),
                    Action::CardDebit { .. } => {
                        let (Some(Presented::Card { pan, .. }), Some(block)) =
                            (presented, &card_block)
                        else {
                            return Err(storage("a card debit without the card"));
                        };
                        (
                            "card_debit",
                            bank.adapter
                                .card_debit(reference, pan.expose(), block, step.amount),
                        )
                    }
                    Action::PayBills { .. } | Action::TopUp { .. } => {
                        return Err(storage("a bank was asked to pay a biller's part"));
                    }
                };
                let answer = tokio::time::timeout(timeout, pending).await;
                metrics::histogram!("switch_party_call_seconds", "party" => bin.clone(), "call" => call)
                    .record(started.elapsed().as_secs_f64());
                permit.record(bank_outcome(&answer), monotonic_ms());
                Ok(match answer {
                    Ok(Ok(r)) => Answer::Done(r),
                    Ok(Err(BankError::Rejected { reason, message })) => {
                        let code = match reason {
                            RejectReason::AccountNotFound => ErrorCode::AccountNotFound,
                            RejectReason::InsufficientFunds => ErrorCode::InsufficientFunds,
                            RejectReason::InvalidCode => {
                                self.store
                                    .add_daily(&Switch::code_attempts_key(rec), 1, u64::MAX)
                                    .map_err(storage)?;
                                ErrorCode::InvalidCode
                            }
                            RejectReason::CodeExpired => ErrorCode::CodeExpired,
                            RejectReason::IncorrectPin => ErrorCode::IncorrectPin,
                            RejectReason::PinTriesExceeded => ErrorCode::PinTriesExceeded,
                            RejectReason::AlreadyReversed | RejectReason::Other => {
                                ErrorCode::BankRejected
                            }
                        };
                        Answer::Refused(SwitchError::new(code, message))
                    }
                    Ok(Err(BankError::Unavailable(why))) => {
                        tracing::warn!(bank = %bin, reason = %why, "bank unavailable; nothing moved");
                        Answer::Refused(SwitchError::new(
                            ErrorCode::BankUnavailable,
                            format!("{} is unavailable; try again", bank.name),
                        ))
                    }
                    Ok(Err(BankError::Timeout)) | Err(_) => Answer::Unknown,
                })
            }
            (Party::Biller(code), action @ (Action::PayBills { .. } | Action::TopUp { .. })) => {
                let Some(biller) = self.billers.get(code).cloned() else {
                    return Ok(Answer::Refused(unknown_biller(code)));
                };
                let Some(permit) = biller.breaker.try_call(monotonic_ms()) else {
                    return Ok(Answer::Refused(circuit_open(&biller.name)));
                };
                let (call, pending) = match action {
                    Action::TopUp { phone } => (
                        "top_up",
                        biller.adapter.top_up(reference, phone, step.amount),
                    ),
                    Action::PayBills { customer, bills } => (
                        "pay",
                        biller.adapter.pay(reference, customer, bills, step.amount),
                    ),
                    _ => unreachable!("matched above"),
                };
                let answer = tokio::time::timeout(timeout, pending).await;
                metrics::histogram!("switch_party_call_seconds", "party" => code.clone(), "call" => call)
                    .record(started.elapsed().as_secs_f64());
                permit.record(biller_outcome(&answer), monotonic_ms());
                Ok(match answer {
                    Ok(Ok(r)) => Answer::Done(r),
                    Ok(Err(BillerError::Rejected { reason, message })) => {
                        Answer::Refused(SwitchError::new(biller_code(reason), message))
                    }
                    Ok(Err(BillerError::Unavailable(why))) => {
                        tracing::warn!(biller = %code, reason = %why, "biller unavailable; nothing moved");
                        Answer::Refused(SwitchError::new(
                            ErrorCode::BillerUnavailable,
                            format!("{} is unavailable; try again", biller.name),
                        ))
                    }
                    Ok(Err(BillerError::Timeout)) | Err(_) => Answer::Unknown,
                })
            }
            (Party::Biller(_), _) => Err(storage("a biller was asked to move an account")),
        }
    }

    /// Ask the party of step `i` what became of it, up to `attempts` times:
    /// its reference when it completed, `None` when it did not or stays
    /// unknown.
    async fn step_status(&self, rec: &TxRecord, i: usize, attempts: u32) -> Option<String> {
        let reference = rec.tx_id().reference(i as u8);
        let timeout = Duration::from_millis(self.config.bank_timeout_ms);
        for attempt in 0..attempts {
            let answer = match &rec.steps[i].party {
                Party::Bank(bin) => {
                    let bank = self.routes.get(bin)?.clone();
                    match tokio::time::timeout(timeout, bank.adapter.status(reference)).await {
                        Ok(Ok(BankTxStatus::Completed { bank_reference })) => {
                            Some(Some(bank_reference))
                        }
                        Ok(Ok(BankTxStatus::NotFound | BankTxStatus::Reversed)) => Some(None),
                        _ => None,
                    }
                }
                Party::Biller(code) => {
                    let biller = self.billers.get(code)?.clone();
                    match tokio::time::timeout(timeout, biller.adapter.status(reference)).await {
                        Ok(Ok(BillerTxStatus::Completed { biller_reference })) => {
                            Some(Some(biller_reference))
                        }
                        Ok(Ok(BillerTxStatus::NotFound | BillerTxStatus::Cancelled)) => Some(None),
                        _ => None,
                    }
                }
            };
            match answer {
                // Not seen (yet) or undone: make sure it never lands.
                Some(known) => return known,
                None => tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await,
            }
        }
        None
    }

    /// Every call succeeded: a cash-out waits for the teller to pay out and
    /// confirm; anything else completes.
    async fn bank_did_it(&self, mut rec: TxRecord, legs: &[NewTransfer]) -> Outcome {
        match rec.kind {
            store::Kind::CashOut => {
                rec.stage = Stage::AwaitingConfirm;
                rec.confirm_deadline_ms =
                    Some(now_ms() + self.config.cash_out_confirm_timeout_ms as i64);
                rec.updated_at_ms = now_ms();
                if !self.store.put_tx(&rec).map_err(storage)? {
                    return self.finished_elsewhere(&rec);
                }
                self.store.durable().await.map_err(storage)?;
                metrics::counter!("switch_transactions_total", "kind" => "cash_out", "status" => "pending").increment(1);
                Ok(rec)
            }
            _ => self.post_or_reverse(rec, legs).await,
        }
    }

    /// The ledger legs of a transaction, reserved as one linked chain:
    /// 1 the principal, 2 the cash (counter cash; for a QR payment the
    /// principal's second half, out of `QrClearing`), 3 the post office's
    /// commission, 4 the switch's fee.
    pub(crate) fn legs(&self, rec: &TxRecord) -> Result<Vec<NewTransfer>, SwitchError> {
        let id = rec.tx_id();
        let timeout_ms = self.reservation_timeout_ms(rec);
        let pending = |leg: u8, debit: u128, credit: u128, amount: u64, code: u16| {
            let mut t = NewTransfer::pending(id.leg(leg), debit, credit, amount, code, timeout_ms);
            t.user_data = id.as_u128();
            t
        };
        let products::Reservation {
            principal,
            cash,
            fee_from,
            commission_to,
        } = products::of(rec.kind).reservation(rec, self)?;
        let mut legs = vec![pending(
            1,
            principal.debit,
            principal.credit,
            rec.amount,
            principal.code,
        )];
        if let Some(cash) = cash {
            legs.push(pending(2, cash.debit, cash.credit, rec.amount, cash.code));
        }
        if rec.fee.commission > 0 {
            let to = commission_to.ok_or_else(|| {
                storage(format!(
                    "{} carries a commission, which only counter products pay",
                    rec.id
                ))
            })?;
            legs.push(pending(
                3,
                fee_from,
                to,
                rec.fee.commission,
                code::FEE_COMMISSION,
            ));
        }
        if rec.fee.switch > 0 {
            legs.push(pending(
                4,
                fee_from,
                Kind::SwitchIncome.id(NETWORK),
                rec.fee.switch,
                code::FEE_SWITCH,
            ));
        }
        Ok(link(legs))
    }

    /// Long enough for every call and its status inquiries (and, for a
    /// cash-out, the confirmation); the ledger voids a reservation the
    /// switch forgot.
    pub(crate) fn reservation_timeout_ms(&self, rec: &TxRecord) -> u32 {
        let confirm = if rec.kind == store::Kind::CashOut {
            self.config.cash_out_confirm_timeout_ms
        } else {
            0
        };
        let calls = rec.steps.len().max(1) as u64;
        let ms =
            self.config.bank_timeout_ms * u64::from(self.config.bank_status_attempts + 2) * calls
                + confirm
                + self.config.reservation_grace_ms;
        u32::try_from(ms).unwrap_or(u32::MAX)
    }
    /// A post office's ledger number. One this node has not seen (another
    /// node provisioned it after this one started) is read from the store.
    pub(crate) fn post_office_number(&self, id: &str) -> Result<u64, SwitchError> {
        let known = |n: &Numbers| n.post_offices.get(id).copied();
        if let Some(n) = known(&self.numbers.read().unwrap_or_else(|e| e.into_inner())) {
            return Ok(n);
        }
        let offices = self.store.post_offices().map_err(storage)?;
        self.add_numbers(&offices, &[]);
        known(&self.numbers.read().unwrap_or_else(|e| e.into_inner()))
            .ok_or_else(|| storage(format!("post office {id} is not provisioned")))
    }

    /// A terminal's ledger number, read from the store as
    /// [`Switch::post_office_number`] is when this node has not seen it: a
    /// node finishing another node's transaction, or an operator looking at
    /// one, may meet a terminal that never signed in here.
    pub(crate) fn terminal_number(&self, id: &str) -> Result<u64, SwitchError> {
        let known = |n: &Numbers| n.terminals.get(id).copied();
        if let Some(n) = known(&self.numbers.read().unwrap_or_else(|e| e.into_inner())) {
            return Ok(n);
        }
        let terminal = self.store.terminal(id).map_err(storage)?;
        self.add_numbers(&[], terminal.as_slice());
        known(&self.numbers.read().unwrap_or_else(|e| e.into_inner()))
            .ok_or_else(|| storage(format!("terminal {id} is not provisioned")))
    }

    /// Whether this node knows the terminal's ledger number already.
    pub fn knows_terminal(&self, id: &str) -> bool {
        self.numbers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .terminals
            .contains_key(id)
    }

    /// Learn a provisioned post office's or terminal's ledger number.
    pub fn add_numbers(&self, post_offices: &[store::PostOffice], terminals: &[store::Terminal]) {
        let mut n = self.numbers.write().unwrap_or_else(|e| e.into_inner());
        n.post_offices
            .extend(post_offices.iter().map(|p| (p.id.clone(), p.number)));
        n.terminals
            .extend(terminals.iter().map(|t| (t.id.clone(), t.number)));
    }

    /// Second-phase transfers for every reserved leg.
    pub(crate) fn second_phase(legs: &[NewTransfer], offset: u8, post: bool) -> Vec<NewTransfer> {
        link(
            legs.iter()
                .map(|l| {
                    let id = l.id + u128::from(offset);
                    let mut t = if post {
                        NewTransfer::post(id, l.id, None)
                    } else {
                        NewTransfer::void(id, l.id)
                    };
                    t.user_data = l.user_data;
                    t
                })
                .collect(),
        )
    }

    /// Release the reserved legs. Legs the ledger already released (voided
    /// before a crash, or expired by their timeout: the whole linked chain
    /// then fails, the other legs as `linked_event_failed`) count as
    /// released; a posted leg is an error a human must look at.
    pub(crate) async fn void(&self, legs: &[NewTransfer]) -> Result<(), SwitchError> {
        let r = ledger_transfers(&self.ledger, Switch::second_phase(legs, VOID, false)).await?;
        if r.iter().all(Result::is_ok) {
            return Ok(());
        }
        for l in legs {
            let held = self.ledger.transfer(l.id).await.map_err(storage)?;
            let status = held.map(|t| t.status());
            if !matches!(
                status,
                Some(TransferStatus::Voided | TransferStatus::Expired)
            ) {
                let rejects: Vec<String> = r
                    .iter()
                    .filter_map(|x| x.as_ref().err().map(|e| e.to_string()))
                    .collect();
                tracing::error!(
                    transfer = l.id,
                    ?status,
                    ?rejects,
                    "voiding a reservation failed"
                );
                return Err(SwitchError::new(
                    ErrorCode::Internal,
                    format!(
                        "voiding the reservation failed ({}; the leg is {status:?})",
                        rejects.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Release the reservation and finish `rec` at `status`: one durable
    /// write when the records ride in the ledger's.
    pub(crate) async fn void_and_finish(
        &self,
        rec: TxRecord,
        legs: &[NewTransfer],
        status: Status,
        error: Option<SwitchError>,
    ) -> Outcome {
        if self.steps_are_one_write() {
            let void = Switch::second_phase(legs, VOID, false);
            if let (_, Some(done)) = self
                .second_phase_and_finish(&rec, void, status, error.clone())
                .await?
            {
                return Ok(done);
            }
            // A leg already voided or expired: checked below, finished apart.
        }
        self.void(legs).await?;
        self.finish(rec, status, error).await
    }

    /// Submit `second` (the post or the void of every leg) in one durable
    /// write with `rec`'s final record at `status`, which the write holds
    /// only if every leg was applied (committed where the ledger applies
    /// them). Answers the ledger's results, and the finished record when
    /// it was written.
    async fn second_phase_and_finish(
        &self,
        rec: &TxRecord,
        second: Vec<NewTransfer>,
        status: Status,
        error: Option<SwitchError>,
    ) -> Result<(Vec<Result<Receipt, TransferReject>>, Option<TxRecord>), SwitchError> {
        if self.store.prepares() {
            return self
                .second_phase_and_finish_prepared(rec, second, status, error)
                .await;
        }
        let (ticket, write) = self.prepare_finish(rec.clone(), status, error)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let store = self.store.clone();
        let applied = move |o: &ledger::Outcome| {
            let all = matches!(o, ledger::Outcome::Transfers(r) if r.iter().all(Result::is_ok));
            let numbered = all.then(|| write.commit(&store));
            let _ = tx.send((write, numbered));
        };
        let written = self
            .store
            .write_with(ledger::Request::Transfers(second), Some(Box::new(applied)))
            .await
            .expect("only called when the records ride in the ledger's");
        let ledger::Outcome::Transfers(r) = written.map_err(storage)? else {
            unreachable!("transfers answer with transfers");
        };
        let (write, numbered) = rx
            .await
            .map_err(|_| storage("the ledger did not run the final record's write"))?;
        match numbered.transpose()? {
            Some(store::Finished::Written { notice_seq }) => {
                Ok((r, Some(self.announce(write, ticket, notice_seq))))
            }
            Some(store::Finished::Already) => Ok((r, Some(self.finished_elsewhere(&write.rec)?))),
            None => Ok((r, None)),
        }
    }

    /// [`Switch::second_phase_and_finish`] on PostgreSQL: the final record
    /// is prepared, and commits in the ledger's batch, in the transaction
    /// that applies `second`, if every leg applies. If every leg applied but
    /// the record was refused (a key it read changed meanwhile: another
    /// node finished the transaction, a merchant's counter moved), it is
    /// written on its own, reading what won.
    async fn second_phase_and_finish_prepared(
        &self,
        rec: &TxRecord,
        second: Vec<NewTransfer>,
        status: Status,
        error: Option<SwitchError>,
    ) -> Result<(Vec<Result<Receipt, TransferReject>>, Option<TxRecord>), SwitchError> {
        let (ticket, write) = self.prepare_finish(rec.clone(), status, error.clone())?;
        let (finished, prepared) = write.prepare(&self.store)?;
        let (r, written) = self
            .ledger
            .transfers_with(second, None, Some(prepared))
            .await
            .map_err(storage)?
            .expect("nothing was prepared to go with the transfers");
        if written {
            let done = match finished {
                store::Finished::Written { notice_seq } => self.announce(write, ticket, notice_seq),
                store::Finished::Already => self.finished_elsewhere(&write.rec)?,
            };
            return Ok((r, Some(done)));
        }
        if r.iter().all(Result::is_ok) {
            drop(ticket);
            return Ok((r, Some(self.finish(rec.clone(), status, error).await?)));
        }
        Ok((r, None))
    }

    /// Whether a flow step's records and its ledger transfers are one
    /// write: they ride in the embedded ledger's records, or commit in the
    /// PostgreSQL ledger's batch.
    pub(crate) fn steps_are_one_write(&self) -> bool {
        self.store.logs_in_ledger() || self.store.prepares()
    }

    /// Post the reserved legs. If the ledger can no longer post (the
    /// reservation expired), the bank must undo its part.
    pub(crate) async fn post_or_reverse(&self, rec: TxRecord, legs: &[NewTransfer]) -> Outcome {
        let post = Switch::second_phase(legs, POST, true);
        let r = if self.steps_are_one_write() {
            match self
                .second_phase_and_finish(&rec, post, Status::Completed, None)
                .await?
            {
                (_, Some(done)) => return Ok(done),
                (r, None) => r,
            }
        } else {
            let r = ledger_transfers(&self.ledger, post).await?;
            if r.iter().all(Result::is_ok) {
                return self.finish(rec, Status::Completed, None).await;
            }
            r
        };
        // A reservation that expired meanwhile, or that another node voided
        // when it finished the transaction (this node was cut off, say), is
        // the unknown-outcome path doing its job; anything else, a human
        // must look at.
        let expired = r.iter().all(|x| {
            matches!(
                x,
                Err(TransferReject::PendingTransferExpired
                    | TransferReject::PendingTransferAlreadyVoided
                    | TransferReject::LinkedEventFailed)
            )
        });
        if expired {
            tracing::warn!(results = ?r, "the reservation expired, or another node voided it, after the bank acted; reversing at the bank");
        } else {
            tracing::error!(results = ?r, "posting failed after the bank acted; reversing at the bank");
        }
        let e = SwitchError::new(
            ErrorCode::BankOutcomeUnknown,
            "the switch could not complete in time; the transaction was reversed",
        );
        self.reverse(rec, legs, e).await
    }

    /// Queue a durable reversal of every call first, then release the
    /// reservation.
    pub(crate) async fn reverse(
        &self,
        mut rec: TxRecord,
        legs: &[NewTransfer],
        why: SwitchError,
    ) -> Outcome {
        // A run that died between posting the reservation and recording it
        // left the record behind the ledger (a cash-out confirmed, then the
        // process killed): the money moved, so it completes; reversing the
        // bank's part now would leave it both posted and reversed.
        if self.reservation_posted(legs).await? {
            tracing::warn!(
                tx_id = %rec.id,
                "the ledger had posted this transaction before a restart; completing it, not reversing"
            );
            return self.finish(rec, Status::Completed, None).await;
        }
        // The decision and the jobs are durable together before the
        // reservation goes: from here on, nothing may post this transaction.
        rec.stage = Stage::Reversing;
        rec.updated_at_ms = now_ms();
        rec.error_code = Some(why.code.as_str().to_string());
        rec.error_message = Some(why.message.clone());
        // Every call, also one that may never have arrived: its reversal
        // leaves a tombstone so that a late arrival is refused.
        let jobs: Vec<ReversalJob> = rec
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| ReversalJob {
                reference: rec.tx_id().reference(i as u8).to_string(),
                party: s.party.clone(),
                attempts: 0,
                next_attempt_at_ms: now_ms(),
            })
            .collect();
        if !self.store.begin_reversal(&rec, &jobs).map_err(storage)? {
            return self.finished_elsewhere(&rec);
        }
        self.store.durable().await.map_err(storage)?;
        self.finish_reversal(rec, legs, why).await
    }

    /// `rec` as another node (or recovery) finished it meanwhile (this
    /// node's write came too late to count: it was cut from the store,
    /// say): the stored outcome is the one the client is told.
    fn finished_elsewhere(&self, rec: &TxRecord) -> Outcome {
        let stored = self.store.get_tx(rec.tx_id()).map_err(storage)?;
        let stored = stored.ok_or_else(|| storage("an open transaction's record vanished"))?;
        tracing::warn!(
            tx_id = %rec.id,
            status = status_label(stored.status),
            "another node finished this transaction first; its outcome stands"
        );
        Ok(stored)
    }

    /// Whether the ledger posted the reservation (its legs post together:
    /// they are linked, so the first tells).
    async fn reservation_posted(&self, legs: &[NewTransfer]) -> Result<bool, SwitchError> {
        let Some(first) = legs.first() else {
            return Ok(false);
        };
        let posted = self.ledger.transfer(first.id).await.map_err(storage)?;
        Ok(posted.is_some_and(|t| t.status() == TransferStatus::Posted))
    }

    /// Release the reservation of a transaction being reversed and record it.
    async fn finish_reversal(
        &self,
        rec: TxRecord,
        legs: &[NewTransfer],
        why: SwitchError,
    ) -> Outcome {
        self.void_and_finish(rec, legs, Status::Reversed, Some(why))
            .await
    }

    pub(crate) async fn finish(
        &self,
        rec: TxRecord,
        status: Status,
        error: Option<SwitchError>,
    ) -> Outcome {
        let (ticket, write) = self.prepare_finish(rec, status, error)?;
        // A ticket dropped on an error below (or unused) is abandoned,
        // never published.
        let finished = write.commit(&self.store)?;
        self.store.durable().await.map_err(storage)?;
        match finished {
            store::Finished::Written { notice_seq } => Ok(self.announce(write, ticket, notice_seq)),
            store::Finished::Already => self.finished_elsewhere(&write.rec),
        }
    }

    /// Everything `rec`'s final write holds, at `status`, and the number of
    /// the merchant's notice (one process numbers it before the write).
    fn prepare_finish(
        &self,
        mut rec: TxRecord,
        status: Status,
        error: Option<SwitchError>,
    ) -> Result<(Option<crate::flows::notify::Ticket<'_>>, FinishWrite), SwitchError> {
        rec.status = status;
        rec.stage = Stage::Done;
        rec.updated_at_ms = now_ms();
        rec.confirm_deadline_ms = None;
        rec.error_code = error.as_ref().map(|e| e.code.as_str().to_string());
        rec.error_message = error.as_ref().map(|e| e.message.clone());
        // One process numbers a notice before the write (and publishes in
        // number order once durable); a shared store numbers it in the write
        // (per merchant, in commit order) and watchers read it back.
        let notify = rec.merchant.is_some() && status == Status::Completed;
        let ticket = if notify && !self.store.is_shared() {
            Some(self.notifier.ticket(&self.store).map_err(storage)?)
        } else {
            None
        };
        let payment = match &rec.merchant {
            Some(m) if notify => Some(Payment {
                seq: ticket.as_ref().map_or(0, |t| t.seq()),
                merchant_id: m.merchant_id.clone(),
                transaction_id: rec.id.clone(),
                qr_id: Some(m.qr_id.clone()),
                order_reference: m.order_reference.clone(),
                amount: rec.amount,
                fee: rec.fee.total,
                payer_bank_bin: rec.bank_bin.clone(),
                paid_at_ms: rec.updated_at_ms,
            }),
            _ => None,
        };
        // A transaction that did not happen gives its daily limits back, in
        // the same write as its final record.
        let give_back: Vec<String> =
            if rec.limits_held && matches!(status, Status::Failed | Status::Reversed) {
                rec.limits_held = false;
                match std::mem::take(&mut rec.limit_keys) {
                    keys if keys.is_empty() => limits::legacy_keys(&rec),
                    keys => keys,
                }
            } else {
                Vec::new()
            };
        let paid = match &rec.pays_for {
            Some(bill_tx) if status == Status::Completed => self.paid_bill(&rec, bill_tx)?,
            _ => None,
        };
        let stats = self.report_contributions(&rec, paid.as_ref())?;
        Ok((
            ticket,
            FinishWrite {
                rec,
                payment,
                give_back,
                paid,
                stats,
            },
        ))
    }

    /// Once the final write is durable: the merchant's notice, metrics and
    /// the log line.
    fn announce(
        &self,
        write: FinishWrite,
        ticket: Option<crate::flows::notify::Ticket<'_>>,
        numbered: Option<u64>,
    ) -> TxRecord {
        let FinishWrite { rec, payment, .. } = write;
        match (ticket, payment, numbered) {
            (Some(t), Some(p), _) => t.publish(p),
            (None, Some(mut p), Some(seq)) => {
                p.seq = seq;
                self.notifier.wake(p);
            }
            _ => {}
        }
        let status = rec.status;
        metrics::counter!("switch_transactions_total", "kind" => kind_label(rec.kind), "status" => status_label(status)).increment(1);
        tracing::info!(status = status_label(status), amount = rec.amount, account = %mask_account(&rec.account), "transaction finished");
        rec
    }

    /// The final record of the bill payment that `attempt` paid: completed,
    /// paid by the attempt's bank and account. `None` when it is not waiting
    /// for payment any more, which the attempt's claim on the code rules
    /// out: a human must look.
    fn paid_bill(
        &self,
        attempt: &TxRecord,
        bill_tx: &str,
    ) -> Result<Option<TxRecord>, SwitchError> {
        let id = TxId::parse(bill_tx)
            .ok_or_else(|| storage("an attempt names a bad bill payment id"))?;
        let Some(mut bill) = self.store.get_tx(id).map_err(storage)? else {
            tracing::error!(tx_id = %attempt.id, bill_tx, "a paid bill code names no bill payment");
            return Ok(None);
        };
        if bill.stage != Stage::AwaitingPayment {
            tracing::error!(tx_id = %attempt.id, bill_tx, stage = ?bill.stage, "a bill code was paid while its bill payment was not waiting for payment");
            return Ok(None);
        }
        bill.status = Status::Completed;
        bill.stage = Stage::Done;
        bill.updated_at_ms = attempt.updated_at_ms;
        bill.confirm_deadline_ms = None;
        bill.bank_bin = attempt.bank_bin.clone();
        bill.account = attempt.account.clone();
        bill.bank_reference = attempt.bank_reference.clone();
        bill.paid_by = Some(attempt.id.clone());
        Ok(Some(bill))
    }

    /// Finish every transaction a crash left at the bank stage or in the
    /// middle of its reversal. One that cannot be finished now is logged for
    /// a human and left for the next start: it must not keep the switch, and
    /// every other transaction, from serving.
    ///
    /// On one node everything unfinished was this node's. With several
    /// nodes on PostgreSQL another node may be working on a record: only
    /// decided reversals are finished here (finishing twice changes
    /// nothing), and the rest waits for [`Switch::recover_abandoned`].
    pub async fn recover(self: &Arc<Self>) -> Result<usize, SwitchError> {
        let shared = self.store.is_shared();
        let mut n = 0;
        for rec in self.store.unfinished().map_err(storage)? {
            if !matches!(rec.stage, Stage::Reversing | Stage::AtBank) {
                continue;
            }
            if shared && rec.stage == Stage::AtBank {
                continue;
            }
            n += 1;
            let id = rec.id.clone();
            if let Err(e) = self.recover_one(rec).await {
                tracing::error!(tx_id = %id, error = %e, "a transaction could not be finished after the restart; left for the next one");
                metrics::counter!("switch_recovery_failures_total").increment(1);
            }
        }
        Ok(n)
    }

    pub(crate) async fn recover_one(&self, rec: TxRecord) -> Result<(), SwitchError> {
        let legs = self.legs(&rec)?;
        if rec.stage == Stage::Reversing {
            // Decided before the crash: finish it, never post it.
            let why = SwitchError::new(
                rec.error_code
                    .as_deref()
                    .and_then(ErrorCode::parse)
                    .unwrap_or(ErrorCode::BankOutcomeUnknown),
                rec.error_message.clone().unwrap_or_default(),
            );
            self.finish_reversal(rec, &legs, why).await?;
            return Ok(());
        }
        let Some(first) = legs.first() else {
            return Err(SwitchError::new(
                ErrorCode::Internal,
                "a transaction at the bank stage has no ledger legs",
            ));
        };
        let leg1 = self.ledger.transfer(first.id).await.map_err(storage)?;
        match leg1.map(|t| t.status()) {
            // The reservation never happened: nothing moved anywhere.
            None => {
                let e = SwitchError::new(ErrorCode::Internal, "interrupted before any money moved");
                self.finish(rec, Status::Failed, Some(e)).await?;
            }
            Some(TransferStatus::Pending) => {
                self.recover_calls(rec, &legs).await?;
            }
            Some(TransferStatus::Posted) => {
                self.finish(rec, Status::Completed, None).await?;
            }
            Some(TransferStatus::Voided | TransferStatus::Expired) => {
                // Released: a reversal makes sure no party holds anything.
                let e = SwitchError::new(
                    ErrorCode::BankOutcomeUnknown,
                    "interrupted; the transaction was reversed",
                );
                self.reverse(rec, &legs, e).await?;
            }
        }
        Ok(())
    }

    /// After a crash mid-flow: which calls were made is not recorded, so ask
    /// every party in order. All completed: complete. Otherwise reverse.
    async fn recover_calls(&self, mut rec: TxRecord, legs: &[NewTransfer]) -> Outcome {
        let attempts = self.config.bank_status_attempts.max(3);
        for i in 0..rec.steps.len() {
            match self.step_status(&rec, i, attempts).await {
                Some(reference) => {
                    if i == 0 {
                        rec.bank_reference = Some(reference.clone());
                    }
                    rec.steps[i].party_reference = Some(reference);
                }
                None => return self.reverse(rec, legs, unknown_outcome()).await,
            }
        }
        self.bank_did_it(rec, legs).await
    }

    /// One pass over the reversal queue: every job that is due, one party's
    /// jobs in order and several parties at once (at most
    /// `REVERSAL_PARTIES_MAX`), so that a slow or absent party delays only
    /// its own jobs.
    pub async fn run_reversals(&self) -> Result<(), SwitchError> {
        use futures_util::StreamExt;
        let now = now_ms();
        let jobs = self.store.reversals().map_err(storage)?;
        let queued = jobs.len();
        let mut by_party: Vec<(Party, Vec<ReversalJob>)> = Vec::new();
        for job in jobs.into_iter().filter(|j| j.next_attempt_at_ms <= now) {
            match by_party.iter_mut().find(|(p, _)| *p == job.party) {
                Some((_, list)) => list.push(job),
                None => by_party.push((job.party.clone(), vec![job])),
            }
        }
        let passes: Vec<Result<usize, SwitchError>> = futures_util::stream::iter(by_party)
            .map(|(party, jobs)| self.reverse_for_party(party, jobs, now))
            .buffer_unordered(REVERSAL_PARTIES_MAX)
            .collect()
            .await;
        let mut done = 0;
        for pass in passes {
            done += pass?;
        }
        metrics::gauge!("switch_reversal_queue_depth").set((queued - done) as f64);
        Ok(())
    }

    /// `party`'s due jobs, in order, until one fails: the rest wait for the
    /// next pass, so a party that is down costs one timeout a pass, not one
    /// per job. Answers how many were done.
    async fn reverse_for_party(
        &self,
        party: Party,
        jobs: Vec<ReversalJob>,
        now: i64,
    ) -> Result<usize, SwitchError> {
        let timeout = Duration::from_millis(self.config.bank_timeout_ms);
        let mut done = 0;
        for mut job in jobs {
            let Some(reference) = Reference::parse(&job.reference) else {
                tracing::error!(reference = %job.reference, "a reversal job's reference does not parse; it cannot be sent");
                continue;
            };
            // A party the configuration no longer names (a biller taken out,
            // a bank's BIN mistyped after an edit) cannot be asked: the job
            // waits, with the same backoff, and a human is told each time.
            let gone = || {
                tracing::error!(reference = %job.reference, party = ?party, "a queued reversal names a party this switch is not configured with; it waits until the party is back");
                false
            };
            let ok = match &party {
                Party::Bank(bin) => match self.routes.get(bin) {
                    Some(bank) => matches!(
                        tokio::time::timeout(timeout, bank.adapter.reverse(reference)).await,
                        Ok(Ok(()))
                    ),
                    None => gone(),
                },
                Party::Biller(code) => match self.billers.get(code) {
                    Some(biller) => matches!(
                        tokio::time::timeout(timeout, biller.adapter.cancel(reference)).await,
                        Ok(Ok(()))
                    ),
                    None => gone(),
                },
            };
            if ok {
                self.store
                    .finish_reversal(&job.reference)
                    .map_err(storage)?;
                done += 1;
                metrics::counter!("switch_reversals_total", "result" => "done").increment(1);
            } else {
                job.attempts += 1;
                job.next_attempt_at_ms = now + (1_000i64 << job.attempts.min(6));
                self.store.queue_reversal(&job).map_err(storage)?;
                metrics::counter!("switch_reversals_total", "result" => "retry").increment(1);
                break;
            }
        }
        Ok(done)
    }
}

/// Parties whose reversals one pass sends at once.
const REVERSAL_PARTIES_MAX: usize = 8;

/// What the customer presented that a call needs and no record may keep:
/// a cash-out's one-time code, a card and its PIN. Held by the flow that
/// received it, in memory, for its calls only.
pub(crate) enum Presented {
    Code(String),
    Card {
        pan: proto::pin::Pan,
        pin: proto::pin::Pin,
    },
}

/// How a step that cannot go on ends.
pub(crate) enum Answer {
    Done(String),
    Refused(SwitchError),
    Unknown,
}

pub(crate) fn unknown_outcome() -> SwitchError {
    SwitchError::new(
        ErrorCode::BankOutcomeUnknown,
        "a bank or biller did not confirm in time; the transaction was reversed",
    )
}

pub(crate) fn biller_code(reason: BillerReject) -> ErrorCode {
    match reason {
        BillerReject::CustomerNotFound => ErrorCode::BillCustomerNotFound,
        BillerReject::BillNotDue => ErrorCode::BillNotDue,
        BillerReject::PartialNotAllowed => ErrorCode::PartialPaymentNotAllowed,
        BillerReject::AmountMismatch => ErrorCode::AmountMismatch,
        BillerReject::AlreadyCancelled | BillerReject::Other => ErrorCode::BillerRejected,
    }
}

/// Another transaction holds what this one needs.
pub(crate) fn claimed(claim: &str) -> SwitchError {
    if claim.starts_with("billqr/") {
        SwitchError::new(
            ErrorCode::QrBeingPaid,
            "another payment of this code is under way; if it fails, the code can be paid again",
        )
    } else if claim.starts_with("order/") {
        SwitchError::new(
            ErrorCode::QrAlreadyPaid,
            "this QR code is paid already, being paid, or expired",
        )
    } else {
        SwitchError::new(
            ErrorCode::BillAlreadyPaid,
            "a bill is paid already or being paid at this moment",
        )
    }
}

/// How a bank call ended, for its breaker.
pub(crate) fn bank_outcome<T, E>(answer: &Result<Result<T, BankError>, E>) -> CallOutcome {
    match answer {
        Ok(Ok(_)) => CallOutcome::Success,
        Ok(Err(BankError::Rejected { .. })) => CallOutcome::Rejected,
        Ok(Err(BankError::Unavailable(_))) => CallOutcome::Unavailable,
        Ok(Err(BankError::Timeout)) | Err(_) => CallOutcome::Timeout,
    }
}

/// How a biller call ended, for its breaker.
pub(crate) fn biller_outcome<T, E>(answer: &Result<Result<T, BillerError>, E>) -> CallOutcome {
    match answer {
        Ok(Ok(_)) => CallOutcome::Success,
        Ok(Err(BillerError::Rejected { .. })) => CallOutcome::Rejected,
        Ok(Err(BillerError::Unavailable(_))) => CallOutcome::Unavailable,
        Ok(Err(BillerError::Timeout)) | Err(_) => CallOutcome::Timeout,
    }
}

pub(crate) fn circuit_open(bank: &str) -> SwitchError {
    SwitchError::new(
        ErrorCode::BankUnavailable,
        format!("{bank} keeps failing; calls are paused (circuit open), try again later"),
    )
}

/// A retry: the original outcome, or a refusal if the content differs.
pub(crate) fn retry(
    existing: TxRecord,
    request_id: &str,
    original: &str,
    fingerprint: &str,
) -> Outcome {
    if original != fingerprint {
        return Err(SwitchError::new(
            ErrorCode::RequestIdReused,
            format!("client_request_id {request_id} was used for another request"),
        ));
    }
    Ok(existing)
}

pub fn kind_label(k: store::Kind) -> &'static str {
    match k {
        store::Kind::CashIn => "cash_in",
        store::Kind::CashOut => "cash_out",
        store::Kind::QrPayment => "qr_payment",
        store::Kind::BillPayment => "bill_payment",
        store::Kind::TopUp => "top_up",
    }
}

/// Link every leg to the next: the chain commits whole or not at all.
pub(crate) fn link(mut legs: Vec<NewTransfer>) -> Vec<NewTransfer> {
    let n = legs.len();
    for l in &mut legs[..n.saturating_sub(1)] {
        *l = l.linked();
    }
    legs
}

pub fn status_label(s: Status) -> &'static str {
    match s {
        Status::Pending => "pending",
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Reversed => "reversed",
    }
}

impl products::Numbers for Switch {
    fn counter(&self, rec: &TxRecord) -> Result<(u64, u64), SwitchError> {
        Ok((
            self.post_office_number(&rec.post_office_id)?,
            self.terminal_number(&rec.terminal_id)?,
        ))
    }

    fn biller(&self, code: &str) -> Result<u64, SwitchError> {
        Ok(self
            .billers
            .get(code)
            .ok_or_else(|| unknown_biller(code))?
            .number)
    }
}
