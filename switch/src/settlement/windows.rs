//! Settlement windows and post-office liquidity.
//!
//! A window's cut-off is a ledger timestamp: closing window `N` creates the
//! ledger account `Window(N)`, and the ledger gives every event (accounts
//! and transfers) a strictly increasing timestamp in commit order. So every
//! transfer committed before the account is in window `N` (or an earlier
//! one) and every transfer after it is not: no transfer lands in two
//! windows or in none, however busy the switch is while it closes.
//!
//! A window's positions are computed from the ledger alone: the posted
//! transaction legs (single-phase transfers and posts of reservations, not
//! the reservations or voids) between the previous cut-off and this one,
//! per participant (bank, biller, post office, the switch). Each leg moves
//! money from one participant to another, so the net positions sum to zero.
//! The settlement transfers then move each bank's and biller's net to the
//! window's account, and the window account's remainder to or from the
//! float reserve (the money at the partner bank): the window account ends
//! at zero. Post offices' positions stay in their e-float and drawers
//! (topped up and swept as liquidity, not settled).

use std::collections::{BTreeMap, HashMap, HashSet};

use ledger::{NewTransfer, TransferFlags};

use crate::accounts::{Kind, NETWORK, bank_number, code};
use crate::caller::{Principal, Role};
use crate::clock::now_ms;
use crate::error::{ErrorCode, SwitchError};
use crate::flows::{Switch, ledger_transfers, storage, turn, valid_request_id};
use crate::store::{Position, Report, WindowRecord, WindowState};

/// Legs that are transactions' obligations (not liquidity or settlement).
const TRADE_CODES: [u16; 10] = [
    code::CASH_IN_PRINCIPAL,
    code::CASH_IN_CASH,
    code::CASH_OUT_PRINCIPAL,
    code::CASH_OUT_CASH,
    code::QR_PRINCIPAL,
    code::BILL_PRINCIPAL,
    code::BILL_CASH,
    code::FEE_COMMISSION,
    code::FEE_SWITCH,
    code::SHIFT_VARIANCE,
];

/// Ids of the settlement transfers of window `n`: fixed, so that closing
/// again after a crash posts nothing twice.
fn settlement_id(window: u64, i: u64) -> u128 {
    (0xFFFC_u128 << 112) | (u128::from(window) << 32) | u128::from(i)
}

/// Ids of liquidity transfers: a hash of what asked for them, so a retry
/// with the same request id is the same transfer.
fn liquidity_id(parts: &[&str]) -> u128 {
    let d = ring::digest::digest(&ring::digest::SHA256, parts.join("\n").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    (0xFFFB_u128 << 112) | (u128::from_be_bytes(b) & ((1u128 << 112) - 1))
}

/// Who a ledger account belongs to, for settlement.
struct Participants {
    /// Participant id and kind, by index.
    list: Vec<(String, &'static str)>,
    /// Index of the participant owning each account.
    by_account: HashMap<u128, usize>,
}

/// What one scan of a window found, per participant.
#[derive(Default, Clone)]
struct Tally {
    transactions: HashSet<u128>,
    gross_debits: u64,
    gross_credits: u64,
    fees: u64,
}

/// A window's scan: tallies, and the ids of the transfers it counted (for
/// tests proving every transfer is in exactly one window).
pub struct Scan {
    pub positions: Vec<Position>,
    pub transactions: u64,
    pub transfer_ids: Vec<u128>,
    /// The transactions of the QR payments among them (their principal
    /// legs' user data), for the fee collectors' breakdown.
    pub qr_transactions: Vec<u128>,
}

impl Switch {
    fn operator_only(p: &Principal) -> Result<(), SwitchError> {
        if p.role == Role::Operator {
            Ok(())
        } else {
            Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "only an operator may do this",
            ))
        }
    }

    /// What every liquidity movement asks of its caller: an operator, a
    /// request id (its idempotency key) and a non-zero amount.
    fn liquidity_request(p: &Principal, request_id: &str, amount: u64) -> Result<(), SwitchError> {
        Switch::operator_only(p)?;
        if !valid_request_id(request_id) || amount == 0 {
            return Err(SwitchError::invalid(
                "client_request_id (1 to 64 of [A-Za-z0-9._:-]) and an amount are needed",
            ));
        }
        Ok(())
    }

    /// Each fee collector's takings among a window's QR payments.
    fn collector_positions(
        &self,
        qr_transactions: &[u128],
    ) -> Result<Vec<crate::store::CollectorPosition>, SwitchError> {
        let mut by: std::collections::BTreeMap<String, crate::store::CollectorPosition> =
            std::collections::BTreeMap::new();
        for id in qr_transactions {
            let Some(id) = crate::ids::TxId::from_u128(*id) else {
                continue;
            };
            let Some(t) = self.store.get_tx(id).map_err(storage)? else {
                continue;
            };
            let Some(m) = t.merchant.as_ref() else {
                continue;
            };
            if t.status != crate::store::Status::Completed || !self.report_place(&t)?.public_fees {
                continue;
            }
            let bank_bin = t.steps.last().map_or(String::new(), |s| match &s.party {
                crate::store::Party::Bank(bin) => bin.clone(),
                _ => String::new(),
            });
            let e = by.entry(m.merchant_id.clone()).or_insert_with(|| {
                crate::store::CollectorPosition {
                    collector_id: m.merchant_id.clone(),
                    bank_bin,
                    count: 0,
                    gross: 0,
                    fees: 0,
                    net: 0,
                }
            });
            let fee = t.fee.total;
            e.count += 1;
            e.gross += t.amount;
            e.fees += fee;
            e.net += t.amount.saturating_sub(fee);
        }
        Ok(by.into_values().collect())
    }

    fn participants(&self) -> Result<Participants, SwitchError> {
        let mut list = Vec::new();
        let mut by_account = HashMap::new();
        let mut bins: Vec<&str> = self.routes.bins().collect();
        bins.sort_unstable();
        for bin in bins {
            by_account.insert(Kind::Bank.id(bank_number(bin)), list.len());
            list.push((bin.to_string(), "bank"));
        }
        let mut billers: Vec<_> = self.billers.all().collect();
        billers.sort_by(|a, b| a.code.cmp(&b.code));
        for b in billers {
            by_account.insert(Kind::Biller.id(b.number), list.len());
            list.push((b.code.clone(), "biller"));
        }
        let terminals = self.store.terminals().map_err(storage)?;
        let mut offices = self.store.post_offices().map_err(storage)?;
        offices.sort_by(|a, b| a.id.cmp(&b.id));
        for po in offices {
            let i = list.len();
            for k in [
                Kind::EFloat,
                Kind::CashControl,
                Kind::Commission,
                Kind::CashVariance,
            ] {
                by_account.insert(k.id(po.number), i);
            }
            for t in terminals.iter().filter(|t| t.post_office_id == po.id) {
                by_account.insert(Kind::Drawer.id(t.number), i);
            }
            list.push((po.id.clone(), "post_office"));
        }
        by_account.insert(Kind::SwitchIncome.id(NETWORK), list.len());
        list.push(("switch".to_string(), "switch"));
        Ok(Participants { list, by_account })
    }

    /// Tally the posted transaction legs after mark `from` within cut
    /// `cutoff` (the ledger backend says what a mark is).
    pub async fn scan_window(&self, from: u64, cutoff: u64) -> Result<Scan, SwitchError> {
        let parts = self.participants()?;
        let mut tallies = vec![Tally::default(); parts.list.len()];
        let mut all = HashSet::new();
        let mut qr = HashSet::new();
        let mut transfer_ids = Vec::new();
        let mut accounts: Vec<(u128, usize)> =
            parts.by_account.iter().map(|(a, i)| (*a, *i)).collect();
        accounts.sort_unstable();
        for (account, me) in accounts {
            self.window_transfers(account, from, cutoff, |t| {
                if t.flags()
                    .intersects(TransferFlags::PENDING | TransferFlags::VOID_PENDING)
                    || !TRADE_CODES.contains(&t.code())
                {
                    return Ok(());
                }
                let debit = t.debit_account_id() == account;
                let other = if debit {
                    t.credit_account_id()
                } else {
                    t.debit_account_id()
                };
                let tally = &mut tallies[me];
                if matches!(t.code(), code::FEE_COMMISSION | code::FEE_SWITCH) {
                    tally.fees += t.amount();
                }
                tally.transactions.insert(t.user_data());
                all.insert(t.user_data());
                if t.code() == code::QR_PRINCIPAL {
                    qr.insert(t.user_data());
                }
                let other_side = parts.by_account.get(&other);
                // Each transfer once: from its debit side, or from its credit
                // side when the debit account belongs to no participant.
                if debit || other_side.is_none() {
                    transfer_ids.push(t.id());
                }
                match other_side {
                    Some(o) if *o == me => {}
                    _ if debit => tally.gross_debits += t.amount(),
                    _ => tally.gross_credits += t.amount(),
                }
                Ok(())
            })
            .await?;
        }
        let positions = parts
            .list
            .iter()
            .zip(&tallies)
            .map(|((id, kind), t)| Position {
                participant: id.clone(),
                kind: kind.to_string(),
                count: t.transactions.len() as u64,
                gross_debits: t.gross_debits,
                gross_credits: t.gross_credits,
                fees: t.fees,
                net: t.gross_credits as i64 - t.gross_debits as i64,
            })
            .collect();
        transfer_ids.sort_unstable();
        Ok(Scan {
            positions,
            transactions: all.len() as u64,
            transfer_ids,
            qr_transactions: {
                let mut v: Vec<u128> = qr.into_iter().collect();
                v.sort_unstable();
                v
            },
        })
    }

    /// Visit every transfer of `account` after mark `from` within cut
    /// `cutoff`, oldest first, a page at a time.
    pub(crate) async fn window_transfers(
        &self,
        account: u128,
        from: u64,
        cutoff: u64,
        mut visit: impl FnMut(&ledger::Transfer) -> Result<(), SwitchError>,
    ) -> Result<(), SwitchError> {
        const PAGE: u32 = 1_000;
        let mut after = from;
        loop {
            let got = self
                .ledger
                .transfers_of(account, after, cutoff, PAGE)
                .await
                .map_err(storage)?;
            for (mark, t) in &got {
                after = *mark;
                visit(t)?;
            }
            if got.len() < PAGE as usize {
                return Ok(());
            }
        }
    }

    /// The windows, oldest first; the last is open.
    pub fn windows(&self) -> Result<Vec<WindowRecord>, SwitchError> {
        let out = self.store.windows().map_err(storage)?;
        // The switch opens window 1 at its first start; every close opens
        // the next in the same write.
        assert!(
            out.last()
                .is_some_and(|w| matches!(w.state, WindowState::Open | WindowState::Closing)),
            "the newest window is open (or closing)"
        );
        Ok(out)
    }

    pub fn list_windows(&self, p: &Principal) -> Result<Vec<WindowRecord>, SwitchError> {
        if !matches!(p.role, Role::Operator | Role::Bank) {
            return Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "only operators and banks see settlement windows",
            ));
        }
        self.windows()
    }

    /// Close window `id`, which must be the open one (closing a closed
    /// window answers it as it is).
    pub async fn close_window(&self, p: &Principal, id: u64) -> Result<WindowRecord, SwitchError> {
        Switch::operator_only(p)?;
        self.close_window_now(id).await
    }

    pub(crate) async fn close_window_now(&self, id: u64) -> Result<WindowRecord, SwitchError> {
        let _one_at_a_time = self.take_turn(&self.settling, turn::SETTLING).await?;
        let windows = self.windows()?;
        let mut w = match windows.iter().find(|w| w.id == id) {
            Some(w) if matches!(w.state, WindowState::Open | WindowState::Closing) => w.clone(),
            Some(w) => return Ok(w.clone()),
            None => {
                return Err(SwitchError::new(
                    ErrorCode::WindowNotFound,
                    format!("no window {id}; list the windows for the open one"),
                ));
            }
        };
        // The cut-off, taken once: a close that a crash interrupted keeps
        // the cut it recorded (a second cut could differ on PostgreSQL).
        let cutoff = match (w.state, w.cutoff_timestamp) {
            (WindowState::Closing, Some(cutoff)) => cutoff,
            _ => {
                let cutoff = self
                    .ledger
                    .cut(Kind::Window.new_account(id))
                    .await
                    .map_err(storage)?;
                w.state = WindowState::Closing;
                w.cutoff_timestamp = Some(cutoff);
                w.closed_at_ms = Some(now_ms());
                self.store.put_window(&w).map_err(storage)?;
                self.store.durable().await.map_err(storage)?;
                cutoff
            }
        };
        let scan = self.scan_window(w.from_timestamp, cutoff).await?;
        let total: i128 = scan.positions.iter().map(|p| i128::from(p.net)).sum();
        if total != 0 {
            tracing::error!(window = id, total, "net positions do not sum to zero");
            return Err(storage("a window's net positions do not sum to zero"));
        }
        // Settle the banks' and billers' nets against the window account,
        // and its remainder against the float reserve.
        let window_account = Kind::Window.id(id);
        let mut transfers = Vec::new();
        let mut remainder: i128 = 0;
        for (i, p) in scan.positions.iter().enumerate() {
            let account = match p.kind.as_str() {
                "bank" => Kind::Bank.id(bank_number(&p.participant)),
                "biller" => {
                    Kind::Biller.id(self.billers.get(&p.participant).map_or(0, |b| b.number))
                }
                _ => continue,
            };
            let amount = p.net.unsigned_abs();
            if amount == 0 {
                continue;
            }
            let (debit, credit) = if p.net > 0 {
                (account, window_account)
            } else {
                (window_account, account)
            };
            remainder += i128::from(p.net);
            transfers.push(NewTransfer::single(
                settlement_id(id, i as u64 + 1),
                debit,
                credit,
                amount,
                code::SETTLEMENT,
            ));
        }
        if remainder != 0 {
            let amount = u64::try_from(remainder.unsigned_abs()).map_err(storage)?;
            let float = Kind::FloatReserve.id(NETWORK);
            let (debit, credit) = if remainder > 0 {
                (window_account, float)
            } else {
                (float, window_account)
            };
            transfers.push(NewTransfer::single(
                settlement_id(id, 0),
                debit,
                credit,
                amount,
                code::SETTLEMENT,
            ));
        }
        if !transfers.is_empty() {
            let n = transfers.len();
            for t in &mut transfers[..n - 1] {
                *t = t.linked();
            }
            let results = ledger_transfers(&self.ledger, transfers).await?;
            if let Some(e) = results.iter().find_map(|r| r.err()) {
                tracing::error!(window = id, reject = %e, "settlement transfers refused");
                return Err(storage(format!("settlement transfers refused: {e}")));
            }
        }
        let window_balance = self
            .ledger
            .account(window_account)
            .await
            .map_err(storage)?
            .map_or(0, |a| a.balance_posted());
        assert_eq!(window_balance, 0, "a settled window's account ends at zero");
        let collectors = self.collector_positions(&scan.qr_transactions)?;
        let report = Report {
            window_id: id,
            from_timestamp: w.from_timestamp,
            cutoff_timestamp: cutoff,
            transactions: scan.transactions,
            participants: scan.positions,
            collectors,
        };
        w.report_sha256 = Some(report.sha256());
        w.report = Some(report);
        w.state = WindowState::Closed;
        let next = WindowRecord {
            id: id + 1,
            opened_at_ms: w.closed_at_ms.unwrap_or_else(now_ms),
            from_timestamp: cutoff,
            ..WindowRecord::first(0)
        };
        self.store.put_windows(&[&w, &next]).map_err(storage)?;
        self.store.durable().await.map_err(storage)?;
        tracing::info!(
            window = id,
            cutoff,
            transactions = w.report.as_ref().map_or(0, |r| r.transactions),
            "settlement window closed"
        );
        Ok(w)
    }

    /// A closed window's report: every participant for an operator, its
    /// own line for a bank.
    pub fn window_report(
        &self,
        p: &Principal,
        id: u64,
        participant: &str,
    ) -> Result<(WindowRecord, Vec<Position>), SwitchError> {
        let only = match p.role {
            Role::Operator if participant.is_empty() => None,
            Role::Operator => Some(participant.to_string()),
            Role::Bank if participant.is_empty() || participant == p.id => Some(p.id.clone()),
            Role::Bank => {
                return Err(SwitchError::new(
                    ErrorCode::PermissionDenied,
                    "a bank sees only its own settlement report",
                ));
            }
            _ => {
                return Err(SwitchError::new(
                    ErrorCode::PermissionDenied,
                    "only operators and banks see settlement reports",
                ));
            }
        };
        let w = self
            .windows()?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or_else(|| {
                SwitchError::new(ErrorCode::WindowNotFound, format!("no window {id}"))
            })?;
        let Some(report) = &w.report else {
            return Err(SwitchError::new(
                ErrorCode::WindowOpen,
                format!(
                    "window {id} is {}; its report comes at close",
                    w.state.label()
                ),
            ));
        };
        let positions: Vec<Position> = report
            .participants
            .iter()
            .filter(|x| only.as_ref().is_none_or(|o| &x.participant == o))
            .cloned()
            .collect();
        if positions.is_empty() {
            return Err(SwitchError::new(
                ErrorCode::InvalidArgument,
                format!("no participant {participant} in window {id}"),
            ));
        }
        Ok((w, positions))
    }

    /// Record the settlement reference of a closed window.
    pub async fn settle_window(
        &self,
        p: &Principal,
        id: u64,
        reference: &str,
    ) -> Result<WindowRecord, SwitchError> {
        Switch::operator_only(p)?;
        if !(1..=64).contains(&reference.len())
            || !reference.chars().all(|c| (' '..='~').contains(&c))
        {
            return Err(SwitchError::invalid(
                "reference must be 1 to 64 printable ASCII characters",
            ));
        }
        let _one_at_a_time = self.take_turn(&self.settling, turn::SETTLING).await?;
        let mut w = self
            .windows()?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or_else(|| {
                SwitchError::new(ErrorCode::WindowNotFound, format!("no window {id}"))
            })?;
        match w.state {
            WindowState::Closed => {}
            WindowState::Settled if w.settlement_reference.as_deref() == Some(reference) => {
                return Ok(w);
            }
            WindowState::Settled => {
                return Err(SwitchError::new(
                    ErrorCode::AlreadyExists,
                    format!("window {id} was settled with another reference"),
                ));
            }
            WindowState::Open | WindowState::Closing => {
                return Err(SwitchError::new(
                    ErrorCode::WindowOpen,
                    format!("window {id} is not closed"),
                ));
            }
        }
        w.state = WindowState::Settled;
        w.settlement_reference = Some(reference.to_string());
        w.settled_at_ms = Some(now_ms());
        self.store.put_window(&w).map_err(storage)?;
        self.store.durable().await.map_err(storage)?;
        tracing::info!(window = id, reference, "settlement window settled");
        Ok(w)
    }

    /// A post office's e-float and drawers.
    pub async fn liquidity(
        &self,
        p: &Principal,
        post_office: &str,
    ) -> Result<Vec<Liquidity>, SwitchError> {
        let only = match &p.role {
            Role::Operator if post_office.is_empty() => None,
            Role::Operator => Some(post_office.to_string()),
            Role::Teller { post_office_id }
                if post_office.is_empty() || post_office == post_office_id =>
            {
                Some(post_office_id.clone())
            }
            _ => {
                return Err(SwitchError::new(
                    ErrorCode::PermissionDenied,
                    "operators see every post office; a teller its own",
                ));
            }
        };
        let offices = self.store.post_offices().map_err(storage)?;
        let terminals = self.store.terminals().map_err(storage)?;
        let mut out = Vec::new();
        for po in offices
            .iter()
            .filter(|o| only.as_ref().is_none_or(|x| &o.id == x))
        {
            let efloat = self
                .ledger
                .account(Kind::EFloat.id(po.number))
                .await
                .map_err(storage)?
                .map_or(0, |a| a.balance_posted().max(0) as u64);
            let mut drawers = Vec::new();
            for t in terminals.iter().filter(|t| t.post_office_id == po.id) {
                let cash = self
                    .ledger
                    .account(Kind::Drawer.id(t.number))
                    .await
                    .map_err(storage)?
                    .map_or(0, |a| (-a.balance_posted()).max(0) as u64);
                drawers.push((t.id.clone(), cash));
            }
            drawers.sort();
            let low = efloat < self.config.low_float_threshold;
            // A gauge for dashboards (metrics are f64); never used as money.
            metrics::gauge!("switch_post_office_efloat_vnd", "post_office" => po.id.clone())
                .set(efloat as f64);
            metrics::gauge!("switch_post_office_low_float", "post_office" => po.id.clone())
                .set(if low { 1.0 } else { 0.0 });
            out.push(Liquidity {
                post_office_id: po.id.clone(),
                efloat,
                low_float: low,
                drawers,
            });
        }
        if out.is_empty() {
            return Err(SwitchError::new(
                ErrorCode::InvalidArgument,
                format!("no post office {post_office}"),
            ));
        }
        Ok(out)
    }

    /// Money a post office paid into the float account.
    pub async fn top_up_float(
        &self,
        p: &Principal,
        request_id: &str,
        post_office: &str,
        amount: u64,
    ) -> Result<Liquidity, SwitchError> {
        Switch::liquidity_request(p, request_id, amount)?;
        let po = self.post_office_by_id(post_office)?;
        let t = NewTransfer::single(
            liquidity_id(&["topup", &p.id, request_id]),
            Kind::FloatReserve.id(NETWORK),
            Kind::EFloat.id(po),
            amount,
            code::FLOAT_TOPUP,
        );
        self.liquidity_transfers(vec![t]).await?;
        tracing::info!(post_office, amount, "e-float topped up");
        Ok(self.liquidity(p, post_office).await?.remove(0))
    }

    /// Cash taken from a drawer and deposited into the float account: the
    /// drawer shrinks, the e-float grows.
    pub async fn sweep_cash(
        &self,
        p: &Principal,
        request_id: &str,
        terminal: &str,
        amount: u64,
    ) -> Result<Liquidity, SwitchError> {
        Switch::liquidity_request(p, request_id, amount)?;
        let t = self
            .store
            .terminals()
            .map_err(storage)?
            .into_iter()
            .find(|t| t.id == terminal)
            .ok_or_else(|| SwitchError::invalid(format!("no terminal {terminal}")))?;
        let po = self.post_office_by_id(&t.post_office_id)?;
        let legs = vec![
            NewTransfer::single(
                liquidity_id(&["sweep-cash", &p.id, request_id]),
                Kind::CashControl.id(po),
                Kind::Drawer.id(t.number),
                amount,
                code::CASH_SWEEP,
            )
            .linked(),
            NewTransfer::single(
                liquidity_id(&["sweep-float", &p.id, request_id]),
                Kind::FloatReserve.id(NETWORK),
                Kind::EFloat.id(po),
                amount,
                code::CASH_SWEEP,
            ),
        ];
        self.liquidity_transfers(legs).await?;
        tracing::info!(terminal, amount, "cash swept into the float account");
        Ok(self.liquidity(p, &t.post_office_id).await?.remove(0))
    }

    fn post_office_by_id(&self, id: &str) -> Result<u64, SwitchError> {
        self.store
            .post_offices()
            .map_err(storage)?
            .into_iter()
            .find(|o| o.id == id)
            .map(|o| o.number)
            .ok_or_else(|| SwitchError::invalid(format!("no post office {id}")))
    }

    async fn liquidity_transfers(&self, legs: Vec<NewTransfer>) -> Result<(), SwitchError> {
        use ledger::TransferReject as R;
        for r in ledger_transfers(&self.ledger, legs).await? {
            match r {
                Ok(_) | Err(R::LinkedEventFailed) => {}
                Err(R::ExceedsDebits) => {
                    return Err(SwitchError::new(
                        ErrorCode::InsufficientCash,
                        "the drawer does not hold that much cash",
                    ));
                }
                Err(
                    R::ExistsWithDifferentAmount
                    | R::ExistsWithDifferentDebitAccountId
                    | R::ExistsWithDifferentCreditAccountId,
                ) => {
                    return Err(SwitchError::new(
                        ErrorCode::RequestIdReused,
                        "client_request_id was used for another request",
                    ));
                }
                Err(e) => return Err(storage(format!("liquidity transfer refused: {e}"))),
            }
        }
        Ok(())
    }

    /// Close the open window if the schedule says so (every
    /// `interval_ms`, or at the daily cut-off).
    pub async fn scheduled_close(&self) -> Result<Option<u64>, SwitchError> {
        let open = self.windows()?.pop().expect("one window is open");
        if open.state != WindowState::Open {
            return Ok(Some(self.close_window_now(open.id).await?.id));
        }
        let due = match (
            self.config.settlement.interval_ms.filter(|ms| *ms > 0),
            &self.config.settlement.daily_cutoff,
        ) {
            (Some(every_ms), _) => now_ms() - open.opened_at_ms >= every_ms as i64,
            (None, Some(cutoff)) => open.opened_at_ms < last_daily_cutoff_ms(cutoff, now_ms())?,
            (None, None) => false,
        };
        if !due {
            return Ok(None);
        }
        Ok(Some(self.close_window_now(open.id).await?.id))
    }
}

/// The latest daily cut-off (`HH:MM` local time, UTC+7) at or before `now`.
fn last_daily_cutoff_ms(cutoff: &str, now: i64) -> Result<i64, SwitchError> {
    cutoff
        .split_once(':')
        .and_then(|(h, m)| Some((h.parse::<u8>().ok()?, m.parse::<u8>().ok()?)))
        .and_then(|(h, m)| crate::civil::last_time_of_day_ms(h, m, now))
        .ok_or_else(|| storage("settlement.daily_cutoff is not HH:MM"))
}

/// A post office's liquidity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Liquidity {
    pub post_office_id: String,
    pub efloat: u64,
    pub low_float: bool,
    /// (terminal, cash).
    pub drawers: Vec<(String, u64)>,
}

/// Positions by participant, for tests and checks.
pub fn by_participant(positions: &[Position]) -> BTreeMap<String, &Position> {
    positions
        .iter()
        .map(|p| (p.participant.clone(), p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daily_cut_off_is_local_time() {
        // 2026-11-27 16:30 UTC is 23:30 in Vietnam: today's 23:00 cut-off
        // (16:00 UTC) has passed.
        let now = 1_795_797_000_000; // 2026-11-27T16:30:00Z
        let today_16_utc = 1_795_795_200_000;
        assert_eq!(last_daily_cutoff_ms("23:00", now).unwrap(), today_16_utc);
        // At 15:59 UTC it is still yesterday's.
        assert_eq!(
            last_daily_cutoff_ms("23:00", today_16_utc - 60_000).unwrap(),
            today_16_utc - 86_400_000
        );
        assert!(last_daily_cutoff_ms("24:00", now).is_err());
        assert!(last_daily_cutoff_ms("noon", now).is_err());
    }
}
