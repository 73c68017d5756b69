//! The counter flows: name inquiry, cash-in, the soft-ATM cash-out with its
//! confirmation, cancellation and deadline, and the teller's shifts and
//! drawer. Each money-moving flow runs through the engine ([`super::engine`]).

use std::sync::Arc;
use std::time::Duration;

use ledger::NewTransfer;

use crate::accounts::{Kind, code};
use crate::adapters::bank::{BankError, RejectReason};
use crate::caller::Principal;
use crate::clock::{monotonic_ms, now_ms};
use crate::error::{ErrorCode, SwitchError};
use crate::ids::{TxId, mask_account};
use crate::store::{self, ShiftRecord, Stage, Status, TxRecord};

use super::engine::*;
use super::limits;

impl Switch {
    pub async fn name_inquiry(
        &self,
        p: &Principal,
        bin: &str,
        account: &str,
    ) -> Result<(String, String), SwitchError> {
        Switch::teller_post_office(p)?;
        if !valid_bin(bin) {
            return Err(SwitchError::invalid("bank_bin must be six digits"));
        }
        if !valid_account(account) {
            return Err(SwitchError::invalid(
                "account must be 6 to 19 letters or digits",
            ));
        }
        let bank = self.routes.get(bin).ok_or_else(|| {
            SwitchError::new(ErrorCode::UnknownBank, format!("no bank with BIN {bin}"))
        })?;
        let timeout = Duration::from_millis(self.config.bank_timeout_ms);
        let Some(permit) = bank.breaker.try_call(monotonic_ms()) else {
            return Err(circuit_open(&bank.name));
        };
        let answer = tokio::time::timeout(timeout, bank.adapter.name_inquiry(account)).await;
        permit.record(bank_outcome(&answer), monotonic_ms());
        match answer {
            Ok(Ok(name)) => Ok((bank.name.clone(), name)),
            Ok(Err(BankError::Rejected {
                reason: RejectReason::AccountNotFound,
                ..
            })) => Err(SwitchError::new(
                ErrorCode::AccountNotFound,
                format!("{} has no account {}", bank.name, mask_account(account)),
            )),
            Ok(Err(BankError::Rejected { message, .. })) => {
                Err(SwitchError::new(ErrorCode::BankRejected, message))
            }
            Ok(Err(BankError::Unavailable(_))) | Ok(Err(BankError::Timeout)) | Err(_) => {
                Err(SwitchError::new(
                    ErrorCode::BankUnavailable,
                    format!("{} did not answer; try again", bank.name),
                ))
            }
        }
    }

    /// The drawer's posted cash and whether anything is reserved on it.
    async fn drawer(&self, terminal: &str) -> Result<(u64, bool), SwitchError> {
        let id = Kind::Drawer.id(self.terminal_number(terminal)?);
        let account = self
            .ledger
            .account(id)
            .await
            .map_err(storage)?
            .ok_or_else(|| storage("the terminal's drawer account is missing"))?;
        let cash = u64::try_from(
            account
                .debits_posted()
                .saturating_sub(account.credits_posted()),
        )
        .unwrap_or(u64::MAX);
        Ok((
            cash,
            account.debits_pending() != 0 || account.credits_pending() != 0,
        ))
    }

    /// Post `counted - expected` between the drawer and the variance account.
    async fn adjust_drawer(
        &self,
        p: &Principal,
        shift: TxId,
        leg: u8,
        counted: u64,
        expected: u64,
    ) -> Result<(), SwitchError> {
        if counted == expected {
            return Ok(());
        }
        let po = self.post_office_number(Switch::teller_post_office(p)?)?;
        let (drawer, variance) = (
            Kind::Drawer.id(self.terminal_number(&p.id)?),
            Kind::CashVariance.id(po),
        );
        let t = if counted > expected {
            NewTransfer::single(
                shift.leg(leg),
                drawer,
                variance,
                counted - expected,
                code::SHIFT_VARIANCE,
            )
        } else {
            NewTransfer::single(
                shift.leg(leg),
                variance,
                drawer,
                expected - counted,
                code::SHIFT_VARIANCE,
            )
        };
        match ledger_transfers(&self.ledger, vec![t]).await?.remove(0) {
            Ok(_) => Ok(()),
            Err(e) => Err(storage(format!(
                "posting the drawer's variance failed: {e}"
            ))),
        }
    }

    /// Open the terminal's shift with the cash counted in the drawer.
    pub async fn open_shift(
        &self,
        p: &Principal,
        counted: u64,
    ) -> Result<ShiftRecord, SwitchError> {
        Switch::teller_post_office(p)?;
        let _one_at_a_time = self.take_turn(&self.shifts, turn::SHIFTS).await?;
        if self
            .store
            .shift(&p.id)
            .map_err(storage)?
            .is_some_and(|s| s.is_open())
        {
            return Err(SwitchError::new(
                ErrorCode::ShiftAlreadyOpen,
                "this terminal's shift is open already",
            ));
        }
        let (expected, _) = self.drawer(&p.id).await?;
        let id = TxId::new(&self.rng, now_ms());
        self.adjust_drawer(p, id, 1, counted, expected).await?;
        let shift = ShiftRecord::open(id.to_string(), &p.id, now_ms(), counted, expected);
        self.store.put_shift(&shift).map_err(storage)?;
        self.store.durable().await.map_err(storage)?;
        tracing::info!(terminal = %p.id, counted, expected, "shift opened");
        Ok(shift)
    }

    /// Close it with the cash counted: the variance is posted and reported.
    pub async fn close_shift(
        &self,
        p: &Principal,
        counted: u64,
    ) -> Result<ShiftRecord, SwitchError> {
        Switch::teller_post_office(p)?;
        let _one_at_a_time = self.take_turn(&self.shifts, turn::SHIFTS).await?;
        let Some(mut shift) = self
            .store
            .shift(&p.id)
            .map_err(storage)?
            .filter(|s| s.is_open())
        else {
            return Err(SwitchError::new(
                ErrorCode::NoOpenShift,
                "this terminal has no open shift",
            ));
        };
        let (expected, reserved) = self.drawer(&p.id).await?;
        if reserved {
            return Err(SwitchError::new(
                ErrorCode::CashOutsPending,
                "transactions are still in flight: confirm or cancel pending cash-outs first",
            ));
        }
        let id = TxId::parse(&shift.id).ok_or_else(|| storage("a stored shift id is malformed"))?;
        self.adjust_drawer(p, id, 2, counted, expected).await?;
        shift.closed_at_ms = Some(now_ms());
        shift.expected_cash = Some(expected);
        shift.counted_cash = Some(counted);
        shift.variance = Some(counted as i64 - expected as i64);
        self.store.put_shift(&shift).map_err(storage)?;
        self.store.durable().await.map_err(storage)?;
        tracing::info!(terminal = %p.id, counted, expected, variance = shift.variance, "shift closed");
        Ok(shift)
    }

    /// Cash-in: credit a customer's bank account against cash at the counter.
    pub async fn cash_in(
        self: &Arc<Self>,
        p: &Principal,
        request_id: &str,
        bin: &str,
        account: &str,
        amount: u64,
        taken: Taken<'_>,
    ) -> Outcome {
        self.begin(
            p,
            store::Kind::CashIn,
            request_id,
            bin,
            account,
            amount,
            None,
            taken,
        )
        .await
    }

    /// Cash-out (soft ATM): the bank verifies the customer's one-time code
    /// and debits them; the drawer reserves the cash; PENDING until the
    /// teller confirms the payout.
    #[allow(clippy::too_many_arguments)]
    pub async fn cash_out_start(
        self: &Arc<Self>,
        p: &Principal,
        request_id: &str,
        bin: &str,
        account: &str,
        code: &str,
        amount: u64,
        taken: Taken<'_>,
    ) -> Outcome {
        if !(6..=12).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SwitchError::invalid("code must be 6 to 12 digits"));
        }
        self.begin(
            p,
            store::Kind::CashOut,
            request_id,
            bin,
            account,
            amount,
            Some(code),
            taken,
        )
        .await
    }

    /// Finish what a node that died left at the bank stage or mid-reversal
    /// (several nodes on PostgreSQL; the holder of the worker lease runs
    /// it). A record untouched for longer than its reservation's timeout is
    /// in flight nowhere: a flow gives up on its calls and status inquiries
    /// well within that, and the ledger releases the reservation by then.
    /// Finished as a restart would, under the transaction's turn.
    pub async fn recover_abandoned(&self) -> Result<usize, SwitchError> {
        let now = now_ms();
        let mut n = 0;
        for rec in self.store.unfinished().map_err(storage)? {
            let timeout_ms = i64::from(self.reservation_timeout_ms(&rec));
            if !matches!(rec.stage, Stage::AtBank | Stage::Reversing)
                || rec.updated_at_ms + timeout_ms > now
            {
                continue;
            }
            // Read again under the turn: still stale (a node that was cut
            // off and came back may have written it since).
            let Some((_one_at_a_time, rec)) = self
                .turn_if(&rec, |r| {
                    matches!(r.stage, Stage::AtBank | Stage::Reversing)
                        && r.updated_at_ms + i64::from(self.reservation_timeout_ms(r)) <= now
                })
                .await?
            else {
                continue;
            };
            let id = rec.id.clone();
            match self.recover_one(rec).await {
                Ok(()) => n += 1,
                Err(e) => {
                    tracing::error!(tx_id = %id, error = %e, "a transaction a dead node left could not be finished; tried again on the next pass");
                    metrics::counter!("switch_recovery_failures_total").increment(1);
                }
            }
        }
        Ok(n)
    }

    /// Take `rec`'s turn (here and on every node) and read it again: the
    /// record as it is now, if it still `holds`, with the turn to act on it.
    async fn turn_if(
        &self,
        rec: &TxRecord,
        holds: impl Fn(&TxRecord) -> bool,
    ) -> Result<Option<(Turn<'_>, TxRecord)>, SwitchError> {
        let id = rec.tx_id();
        let turn = self
            .take_turn(self.resolving(id), cash_out_turn(id))
            .await?;
        let now = self.store.get_tx(id).map_err(storage)?.filter(holds);
        Ok(now.map(|r| (turn, r)))
    }

    fn resolving(&self, id: TxId) -> &tokio::sync::Mutex<()> {
        &self.resolving[((id.as_u128() >> 8) as usize) % RESOLVING_STRIPES]
    }

    /// A transaction by its id, as stored (whoever asks: the caller
    /// decides what it may see).
    pub fn transaction(&self, id: TxId) -> Result<Option<TxRecord>, SwitchError> {
        self.store.get_tx(id).map_err(storage)
    }

    /// A terminal's transactions, newest first, before `before` (a page's
    /// last: its time and id), at most `limit`.
    pub fn terminal_transactions(
        &self,
        terminal: &str,
        before: Option<(i64, TxId)>,
        limit: usize,
    ) -> Result<Vec<TxRecord>, SwitchError> {
        self.store
            .list_terminal(terminal, before, limit)
            .map_err(storage)
    }

    /// The ledger's invariants, checked over everything it holds.
    pub async fn check_ledger(&self) -> Result<::ledger::CheckReport, SwitchError> {
        self.ledger.check().await.map_err(storage)
    }

    /// A terminal's own pending cash-out.
    fn own_cash_out(&self, p: &Principal, id: &str) -> Result<TxRecord, SwitchError> {
        Switch::teller_post_office(p)?;
        let id = TxId::parse(id)
            .ok_or_else(|| SwitchError::invalid("transaction_id must be 32 hex digits"))?;
        self.store
            .get_tx(id)
            .map_err(storage)?
            .filter(|t| t.terminal_id == p.id && t.kind == store::Kind::CashOut)
            .ok_or_else(|| {
                SwitchError::new(
                    ErrorCode::TransactionNotFound,
                    "no such cash-out at this terminal",
                )
            })
    }

    fn not_pending(rec: &TxRecord) -> SwitchError {
        SwitchError::new(
            ErrorCode::NotPending,
            format!(
                "the cash-out is {}, not waiting for confirmation",
                status_label(rec.status)
            ),
        )
    }

    /// The teller paid out the cash.
    pub async fn cash_out_confirm(&self, p: &Principal, id: &str) -> Outcome {
        let rec = self.own_cash_out(p, id)?;
        let _one_at_a_time = self
            .take_turn(self.resolving(rec.tx_id()), cash_out_turn(rec.tx_id()))
            .await?;
        let rec = self.own_cash_out(p, id)?;
        match (rec.status, rec.stage) {
            (Status::Completed, _) => Ok(rec),
            (Status::Pending, Stage::AwaitingConfirm) => {
                let legs = self.legs(&rec)?;
                self.post_or_reverse(rec, &legs).await
            }
            _ => Err(Switch::not_pending(&rec)),
        }
    }

    /// The cash was not paid out: reverse at the bank.
    pub async fn cash_out_cancel(&self, p: &Principal, id: &str) -> Outcome {
        let rec = self.own_cash_out(p, id)?;
        let _one_at_a_time = self
            .take_turn(self.resolving(rec.tx_id()), cash_out_turn(rec.tx_id()))
            .await?;
        // Read again under the lock: confirmed or cancelled meanwhile?
        let rec = self.own_cash_out(p, id)?;
        match (rec.status, rec.stage) {
            (Status::Reversed, _)
                if rec.error_code.as_deref() == Some(ErrorCode::Cancelled.as_str()) =>
            {
                Ok(rec)
            }
            (Status::Pending, Stage::AwaitingConfirm) => {
                let legs = self.legs(&rec)?;
                self.reverse(
                    rec,
                    &legs,
                    SwitchError::new(
                        ErrorCode::Cancelled,
                        "cancelled at the counter; the bank returns the money",
                    ),
                )
                .await
            }
            _ => Err(Switch::not_pending(&rec)),
        }
    }

    /// Cancel every cash-out past its confirmation deadline.
    pub async fn expire_cash_outs(&self) -> Result<usize, SwitchError> {
        let now = now_ms();
        let mut n = 0;
        for rec in self.store.unfinished().map_err(storage)? {
            if rec.stage != Stage::AwaitingConfirm
                || rec.confirm_deadline_ms.is_none_or(|d| d > now)
            {
                continue;
            }
            // Confirmed or cancelled meanwhile?
            let Some((_one_at_a_time, rec)) = self
                .turn_if(&rec, |r| r.stage == Stage::AwaitingConfirm)
                .await?
            else {
                continue;
            };
            let legs = self.legs(&rec)?;
            let e = SwitchError::new(
                ErrorCode::ConfirmationTimeout,
                "not confirmed in time; the bank returns the money",
            );
            self.reverse(rec, &legs, e).await?;
            n += 1;
        }
        Ok(n)
    }
}

/// A cash-out's turn among nodes: the kind in the top 16 bits, then 48
/// bits of its id (a collision only makes two cash-outs take turns).
fn cash_out_turn(id: TxId) -> i64 {
    (turn::CASH_OUT << 48) | ((id.as_u128() >> 8) as i64 & 0xFFFF_FFFF_FFFF)
}

impl Switch {
    /// What is left now of the limits a teller's counter works under, and
    /// of a customer's when `customer` (BIN, account) is given.
    pub async fn limits_left(
        &self,
        p: &Principal,
        whose: Option<(&str, &str)>,
    ) -> Result<Vec<limits::Headroom>, SwitchError> {
        let post_office_id = Switch::teller_post_office(p)?;
        if let Some((bin, account)) = whose
            && (!valid_bin(bin) || !valid_account(account))
        {
            return Err(SwitchError::invalid(
                "a customer is a six-digit bank_bin and an account of 6 to 19 letters or digits",
            ));
        }
        let now = crate::clock::now_ms();
        let mut all = vec![limits::terminal(&self.config, &p.id, now)];
        all.extend(limits::post_office(&self.config, post_office_id, now));
        if let Some((bin, account)) = whose {
            all.extend(limits::customer(&self.config, bin, account, now));
        }
        let keys: Vec<&str> = all.iter().map(|l| l.key.as_str()).collect();
        let used = self.store.totals(&keys).map_err(storage)?;
        let (day, month) = (
            crate::civil::date(now),
            crate::civil::month_label(crate::civil::month_number(now)),
        );
        Ok(all
            .into_iter()
            .zip(used)
            .map(|(l, used)| limits::Headroom {
                period: if l.kind.is_monthly() {
                    month.clone()
                } else {
                    day.clone()
                },
                kind: l.kind,
                max: l.max,
                used,
            })
            .collect())
    }
}

impl Switch {
    /// Keep what a counter's offline outbox holds, as it reports it (the
    /// console shows every counter's queue). Durable before it answers.
    pub async fn report_outbox(
        &self,
        p: &Principal,
        mut report: store::OutboxReport,
    ) -> Result<store::OutboxReport, SwitchError> {
        Switch::teller_post_office(p)?;
        report.terminal_id = p.id.clone();
        report.reported_at_ms = now_ms();
        self.store.put_outbox_report(&report).map_err(storage)?;
        self.store.durable().await.map_err(storage)?;
        Ok(report)
    }

    /// Every counter's last outbox report (operators).
    pub fn outbox_reports(&self, p: &Principal) -> Result<Vec<store::OutboxReport>, SwitchError> {
        if p.role != crate::caller::Role::Operator {
            return Err(SwitchError::new(
                ErrorCode::PermissionDenied,
                "only operators see every counter's outbox",
            ));
        }
        let mut all = self.store.outbox_reports().map_err(storage)?;
        all.sort_by(|a, b| a.terminal_id.cmp(&b.terminal_id));
        Ok(all)
    }
}
