//! Model-based property test: random batches of account and transfer events
//! against a deliberately simple in-memory model (chain rollback by cloning
//! the whole state, not by an undo log). Results, timestamps, balances and
//! stored transfers must agree, across a close and reopen (journal replay).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use ledger::*;
use proptest::prelude::*;

#[derive(Clone, Debug, Default)]
struct ModelAccount {
    flags: AccountFlags,
    currency: u16,
    code: u16,
    user_data: u128,
    ts: u64,
    dp: u128,
    dpo: u128,
    cp: u128,
    cpo: u128,
}

#[derive(Clone, Debug)]
struct ModelTransfer {
    debit: u128,
    credit: u128,
    amount: u64,
    amount_posted: u64,
    pending_id: u128,
    user_data: u128,
    code: u16,
    flags: TransferFlags,
    timeout_ms: u32,
    ts: u64,
    status: TransferStatus,
}

#[derive(Clone, Debug, Default)]
struct Model {
    accounts: BTreeMap<u128, ModelAccount>,
    transfers: BTreeMap<u128, ModelTransfer>,
    failed: BTreeMap<u128, (NewTransfer, TransferReject)>,
    last_ts: u64,
}

enum One {
    Created(u64),
    Retry(Result<Receipt, TransferReject>),
    Rejected(TransferReject),
    Invalid(TransferReject),
}

impl Model {
    fn ts(&mut self, now: u64) -> u64 {
        self.last_ts = (self.last_ts + 1).max(now);
        self.last_ts
    }

    fn expire(&mut self, now: u64) {
        let mut due: Vec<(u64, u128)> = self
            .transfers
            .iter()
            .filter(|(_, t)| t.status == TransferStatus::Pending && t.timeout_ms > 0)
            .map(|(id, t)| (t.ts + u64::from(t.timeout_ms) * 1_000_000, *id))
            .filter(|(at, _)| *at <= now)
            .collect();
        due.sort();
        for (_, id) in due {
            self.ts(now);
            let t = self.transfers[&id].clone();
            self.accounts.get_mut(&t.debit).unwrap().dp -= u128::from(t.amount);
            self.accounts.get_mut(&t.credit).unwrap().cp -= u128::from(t.amount);
            self.transfers.get_mut(&id).unwrap().status = TransferStatus::Expired;
        }
    }

    fn create_accounts(
        &mut self,
        now: u64,
        accounts: &[NewAccount],
    ) -> Vec<Result<Receipt, AccountReject>> {
        self.expire(now);
        accounts
            .iter()
            .map(|a| {
                if a.id == 0 {
                    return Err(AccountReject::IdMustNotBeZero);
                }
                if a.id == u128::MAX {
                    return Err(AccountReject::IdMustNotBeIntMax);
                }
                if let Some(e) = self.accounts.get(&a.id) {
                    return match () {
                        _ if e.flags != a.flags => Err(AccountReject::ExistsWithDifferentFlags),
                        _ if e.user_data != a.user_data => {
                            Err(AccountReject::ExistsWithDifferentUserData)
                        }
                        _ if e.currency != a.currency => {
                            Err(AccountReject::ExistsWithDifferentCurrency)
                        }
                        _ if e.code != a.code => Err(AccountReject::ExistsWithDifferentCode),
                        _ => Ok(Receipt {
                            timestamp: e.ts,
                            created: false,
                        }),
                    };
                }
                if a.flags
                    .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
                    && a.flags
                        .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
                {
                    return Err(AccountReject::FlagsAreMutuallyExclusive);
                }
                if a.currency == 0 {
                    return Err(AccountReject::CurrencyMustNotBeZero);
                }
                let ts = self.ts(now);
                self.accounts.insert(
                    a.id,
                    ModelAccount {
                        flags: a.flags,
                        currency: a.currency,
                        code: a.code,
                        user_data: a.user_data,
                        ts,
                        ..Default::default()
                    },
                );
                Ok(Receipt {
                    timestamp: ts,
                    created: true,
                })
            })
            .collect()
    }

    fn create_transfers(
        &mut self,
        now: u64,
        events: &[NewTransfer],
    ) -> Vec<Result<Receipt, TransferReject>> {
        self.expire(now);
        let mut out = Vec::new();
        let mut i = 0;
        while i < events.len() {
            let mut j = i;
            while j + 1 < events.len() && events[j].flags.contains(TransferFlags::LINKED) {
                j += 1;
            }
            let chain = &events[i..=j];
            i = j + 1;
            if chain.last().unwrap().flags.contains(TransferFlags::LINKED) {
                let n = chain.len();
                for (k, t) in chain.iter().enumerate() {
                    let r = if k + 1 == n {
                        TransferReject::LinkedEventChainOpen
                    } else {
                        TransferReject::LinkedEventFailed
                    };
                    out.push(self.unapplied(t, r));
                }
                continue;
            }
            let before = self.clone();
            let mut results = Vec::new();
            for t in chain {
                let r = self.one(t, now);
                let ok = matches!(r, One::Created(_) | One::Retry(Ok(_)));
                results.push(r);
                if !ok {
                    break;
                }
            }
            if results.len() == chain.len()
                && matches!(results.last(), Some(One::Created(_) | One::Retry(Ok(_))))
            {
                out.extend(results.into_iter().map(|r| match r {
                    One::Created(ts) => Ok(Receipt {
                        timestamp: ts,
                        created: true,
                    }),
                    One::Retry(r) => r,
                    _ => unreachable!(),
                }));
                continue;
            }
            let last_ts = self.last_ts;
            *self = before;
            self.last_ts = last_ts;
            let at = results.len() - 1;
            for (k, t) in chain.iter().enumerate() {
                out.push(if k == at {
                    match results.pop().unwrap() {
                        One::Rejected(r) => {
                            self.failed.insert(t.id, (*t, r));
                            Err(r)
                        }
                        One::Invalid(r) => Err(r),
                        One::Retry(r) => r,
                        One::Created(_) => unreachable!(),
                    }
                } else {
                    self.unapplied(t, TransferReject::LinkedEventFailed)
                });
            }
        }
        out
    }

    fn unapplied(&mut self, t: &NewTransfer, r: TransferReject) -> Result<Receipt, TransferReject> {
        match self.check_id(t) {
            Some(One::Retry(Ok(_))) => Err(TransferReject::LinkedEventFailed),
            Some(One::Retry(Err(e)) | One::Invalid(e)) => Err(e),
            Some(_) => unreachable!(),
            None => {
                self.failed.insert(t.id, (*t, r));
                Err(r)
            }
        }
    }

    fn check_id(&self, t: &NewTransfer) -> Option<One> {
        use TransferReject as R;
        if t.id == 0 {
            return Some(One::Invalid(R::IdMustNotBeZero));
        }
        if t.id == u128::MAX {
            return Some(One::Invalid(R::IdMustNotBeIntMax));
        }
        let flags = |f: TransferFlags| f - TransferFlags::LINKED;
        if let Some(e) = self.transfers.get(&t.id) {
            let second = e
                .flags
                .intersects(TransferFlags::POST_PENDING | TransferFlags::VOID_PENDING);
            let eq = |a: u128, b: u128| a == b || second && a == 0;
            let r = if flags(t.flags) != flags(e.flags) {
                Err(R::ExistsWithDifferentFlags)
            } else if !eq(t.debit_account_id, e.debit) {
                Err(R::ExistsWithDifferentDebitAccountId)
            } else if !eq(t.credit_account_id, e.credit) {
                Err(R::ExistsWithDifferentCreditAccountId)
            } else if !eq(t.amount.into(), e.amount.into()) {
                Err(R::ExistsWithDifferentAmount)
            } else if t.pending_id != e.pending_id {
                Err(R::ExistsWithDifferentPendingId)
            } else if !eq(t.user_data, e.user_data) {
                Err(R::ExistsWithDifferentUserData)
            } else if !eq(t.code.into(), e.code.into()) {
                Err(R::ExistsWithDifferentCode)
            } else if t.timeout_ms != e.timeout_ms {
                Err(R::ExistsWithDifferentTimeout)
            } else {
                Ok(Receipt {
                    timestamp: e.ts,
                    created: false,
                })
            };
            return Some(One::Retry(r));
        }
        if let Some((f, reject)) = self.failed.get(&t.id) {
            let r = if flags(t.flags) != flags(f.flags) {
                R::ExistsWithDifferentFlags
            } else if t.debit_account_id != f.debit_account_id {
                R::ExistsWithDifferentDebitAccountId
            } else if t.credit_account_id != f.credit_account_id {
                R::ExistsWithDifferentCreditAccountId
            } else if t.amount != f.amount {
                R::ExistsWithDifferentAmount
            } else if t.pending_id != f.pending_id {
                R::ExistsWithDifferentPendingId
            } else if t.user_data != f.user_data {
                R::ExistsWithDifferentUserData
            } else if t.code != f.code {
                R::ExistsWithDifferentCode
            } else if t.timeout_ms != f.timeout_ms {
                R::ExistsWithDifferentTimeout
            } else {
                *reject
            };
            return Some(One::Retry(Err(r)));
        }
        None
    }

    fn one(&mut self, t: &NewTransfer, now: u64) -> One {
        use TransferReject as R;
        if let Some(r) = self.check_id(t) {
            return r;
        }
        let phase = t.flags
            & (TransferFlags::PENDING | TransferFlags::POST_PENDING | TransferFlags::VOID_PENDING);
        if phase.bits().count_ones() > 1 {
            return One::Rejected(R::FlagsAreMutuallyExclusive);
        }
        let r = if phase.intersects(TransferFlags::POST_PENDING | TransferFlags::VOID_PENDING) {
            self.second_phase(t, now)
        } else {
            self.first_phase(t, now)
        };
        match r {
            Ok(ts) => One::Created(ts),
            Err(r) => One::Rejected(r),
        }
    }

    fn first_phase(&mut self, t: &NewTransfer, now: u64) -> Result<u64, TransferReject> {
        use TransferReject as R;
        let pending = t.flags.contains(TransferFlags::PENDING);
        if t.debit_account_id == 0 {
            return Err(R::DebitAccountIdMustNotBeZero);
        }
        if t.credit_account_id == 0 {
            return Err(R::CreditAccountIdMustNotBeZero);
        }
        if t.debit_account_id == t.credit_account_id {
            return Err(R::AccountsMustBeDifferent);
        }
        if t.pending_id != 0 {
            return Err(R::PendingIdMustBeZero);
        }
        if t.timeout_ms != 0 && !pending {
            return Err(R::TimeoutReservedForPendingTransfer);
        }
        if t.amount == 0 {
            return Err(R::AmountMustNotBeZero);
        }
        let dr = self
            .accounts
            .get(&t.debit_account_id)
            .ok_or(R::DebitAccountNotFound)?
            .clone();
        let cr = self
            .accounts
            .get(&t.credit_account_id)
            .ok_or(R::CreditAccountNotFound)?
            .clone();
        if dr.currency != cr.currency {
            return Err(R::CurrenciesMustBeEqual);
        }
        let a = u128::from(t.amount);
        let (dr_d, cr_c) = if pending {
            (dr.dp + a + dr.dpo, cr.cp + a + cr.cpo)
        } else {
            (dr.dp + dr.dpo + a, cr.cp + cr.cpo + a)
        };
        if dr
            .flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && dr_d > dr.cpo
        {
            return Err(R::ExceedsCredits);
        }
        if cr
            .flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && cr_c > cr.dpo
        {
            return Err(R::ExceedsDebits);
        }
        let ts = self.ts(now);
        let d = self.accounts.get_mut(&t.debit_account_id).unwrap();
        if pending {
            d.dp += a
        } else {
            d.dpo += a
        }
        let c = self.accounts.get_mut(&t.credit_account_id).unwrap();
        if pending {
            c.cp += a
        } else {
            c.cpo += a
        }
        self.transfers.insert(
            t.id,
            ModelTransfer {
                debit: t.debit_account_id,
                credit: t.credit_account_id,
                amount: t.amount,
                amount_posted: 0,
                pending_id: 0,
                user_data: t.user_data,
                code: t.code,
                flags: t.flags,
                timeout_ms: t.timeout_ms,
                ts,
                status: if pending {
                    TransferStatus::Pending
                } else {
                    TransferStatus::Posted
                },
            },
        );
        Ok(ts)
    }

    fn second_phase(&mut self, t: &NewTransfer, now: u64) -> Result<u64, TransferReject> {
        use TransferReject as R;
        let post = t.flags.contains(TransferFlags::POST_PENDING);
        if t.pending_id == 0 {
            return Err(R::PendingIdMustNotBeZero);
        }
        if t.pending_id == t.id {
            return Err(R::PendingIdMustBeDifferent);
        }
        if t.timeout_ms != 0 {
            return Err(R::TimeoutReservedForPendingTransfer);
        }
        let p = self
            .transfers
            .get(&t.pending_id)
            .ok_or(R::PendingTransferNotFound)?
            .clone();
        if !p.flags.contains(TransferFlags::PENDING) {
            return Err(R::PendingTransferNotPending);
        }
        if t.debit_account_id != 0 && t.debit_account_id != p.debit {
            return Err(R::PendingTransferHasDifferentDebitAccountId);
        }
        if t.credit_account_id != 0 && t.credit_account_id != p.credit {
            return Err(R::PendingTransferHasDifferentCreditAccountId);
        }
        let amount = if post {
            if t.amount > p.amount {
                return Err(R::ExceedsPendingTransferAmount);
            }
            if t.amount == 0 { p.amount } else { t.amount }
        } else {
            if t.amount != 0 && t.amount != p.amount {
                return Err(R::PendingTransferHasDifferentAmount);
            }
            p.amount
        };
        match p.status {
            TransferStatus::Posted => return Err(R::PendingTransferAlreadyPosted),
            TransferStatus::Voided => return Err(R::PendingTransferAlreadyVoided),
            TransferStatus::Expired => return Err(R::PendingTransferExpired),
            TransferStatus::Pending => {}
        }
        let ts = self.ts(now);
        let (pa, posted) = (
            u128::from(p.amount),
            if post { u128::from(amount) } else { 0 },
        );
        let d = self.accounts.get_mut(&p.debit).unwrap();
        d.dp -= pa;
        d.dpo += posted;
        let c = self.accounts.get_mut(&p.credit).unwrap();
        c.cp -= pa;
        c.cpo += posted;
        let pm = self.transfers.get_mut(&t.pending_id).unwrap();
        pm.status = if post {
            TransferStatus::Posted
        } else {
            TransferStatus::Voided
        };
        pm.amount_posted = if post { amount } else { 0 };
        self.transfers.insert(
            t.id,
            ModelTransfer {
                debit: p.debit,
                credit: p.credit,
                amount,
                amount_posted: 0,
                pending_id: p.pending_id.max(t.pending_id),
                user_data: if t.user_data == 0 {
                    p.user_data
                } else {
                    t.user_data
                },
                code: if t.code == 0 { p.code } else { t.code },
                flags: t.flags,
                timeout_ms: 0,
                ts,
                status: if post {
                    TransferStatus::Posted
                } else {
                    TransferStatus::Voided
                },
            },
        );
        Ok(ts)
    }
}

#[derive(Clone, Debug)]
enum Step {
    Accounts(Vec<NewAccount>),
    Transfers(Vec<NewTransfer>),
    /// Advance the clock (ms), which may expire pending transfers.
    Advance(u64),
    /// Close and reopen the ledger: recovery must land on the same state.
    Reopen,
}

const ACCOUNT_IDS: u128 = 8;
const TRANSFER_IDS: u128 = 40;

fn new_account() -> impl Strategy<Value = NewAccount> {
    (
        0..=ACCOUNT_IDS,
        0u8..4,
        prop_oneof![9 => Just(704u16), 1 => Just(840u16), 1 => Just(0u16)],
        0u16..3,
    )
        .prop_map(|(id, f, currency, code)| {
            let flags = match f {
                0 => AccountFlags::empty(),
                1 => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::HISTORY,
                2 => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
                _ => {
                    AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                        | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS
                }
            };
            NewAccount {
                id,
                currency,
                code,
                flags,
                user_data: 0,
            }
        })
}

fn new_transfer() -> impl Strategy<Value = NewTransfer> {
    let id = prop_oneof![20 => 1..=TRANSFER_IDS, 1 => Just(0u128), 1 => Just(u128::MAX)];
    let acct = prop_oneof![10 => 1..=ACCOUNT_IDS, 1 => Just(0u128)];
    let kind =
        prop_oneof![6 => Just(0u8), 3 => Just(1u8), 2 => Just(2u8), 2 => Just(3u8), 1 => Just(4u8)];
    // Tiny amounts land exactly on limits often; larger ones cross them.
    let amount = prop_oneof![6 => 1u64..600, 6 => 1u64..4, 1 => Just(0u64)];
    (
        id,
        acct.clone(),
        acct,
        amount,
        kind,
        1..=TRANSFER_IDS,
        prop::bool::weighted(0.2),
        0u32..4,
        0u16..3,
        0u8..3,
    )
        .prop_map(
            |(id, debit, credit, amount, kind, pending_id, linked, timeout_ms, code, ud)| {
                let mut t = match kind {
                    0 => NewTransfer::single(id, debit, credit, amount, code),
                    1 => NewTransfer::pending(id, debit, credit, amount, code, timeout_ms),
                    2 => NewTransfer {
                        amount: amount % 300,
                        ..NewTransfer::post(id, pending_id, None)
                    },
                    3 => NewTransfer::void(id, pending_id),
                    _ => NewTransfer {
                        // Nonsense combinations.
                        flags: TransferFlags::PENDING | TransferFlags::VOID_PENDING,
                        pending_id,
                        timeout_ms,
                        ..NewTransfer::single(id, debit, credit, amount, code)
                    },
                };
                t.user_data = u128::from(ud);
                if linked {
                    t = t.linked();
                }
                t
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => prop::collection::vec(new_account(), 1..6).prop_map(Step::Accounts),
        10 => prop::collection::vec(new_transfer(), 1..8).prop_map(Step::Transfers),
        2 => (0u64..4).prop_map(Step::Advance),
        1 => Just(Step::Reopen),
    ]
}

/// Start with funded accounts so that limits are exercised both ways.
fn seed(model: &mut Model, ledger: &Ledger, now: u64) {
    let accounts: Vec<NewAccount> = (1..=ACCOUNT_IDS)
        .map(|id| {
            let flags = match id % 3 {
                0 => AccountFlags::empty(),
                1 => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::HISTORY,
                _ => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
            };
            NewAccount {
                id,
                currency: VND,
                code: 1,
                flags,
                user_data: 0,
            }
        })
        .collect();
    assert_eq!(
        ledger.create_accounts(accounts.clone()).unwrap(),
        model.create_accounts(now, &accounts)
    );
}

fn compare_state(model: &Model, l: &Ledger) {
    for (id, m) in &model.accounts {
        let a = l
            .lookup_account(*id)
            .unwrap()
            .expect("account exists in the ledger");
        assert_eq!(
            (
                a.debits_pending(),
                a.debits_posted(),
                a.credits_pending(),
                a.credits_posted(),
                a.timestamp()
            ),
            (m.dp, m.dpo, m.cp, m.cpo, m.ts),
            "account {id}"
        );
    }
    for id in 1..=ACCOUNT_IDS {
        assert_eq!(
            l.lookup_account(id).unwrap().is_some(),
            model.accounts.contains_key(&id)
        );
    }
    for (id, m) in &model.transfers {
        let t = l
            .lookup_transfer(*id)
            .unwrap()
            .expect("transfer exists in the ledger");
        assert_eq!(
            (
                t.debit_account_id(),
                t.credit_account_id(),
                t.amount(),
                t.amount_posted(),
                t.timestamp(),
                t.status(),
                t.user_data(),
                t.code()
            ),
            (
                m.debit,
                m.credit,
                m.amount,
                m.amount_posted,
                m.ts,
                m.status,
                m.user_data,
                m.code
            ),
            "transfer {id}"
        );
    }
    for id in 1..=TRANSFER_IDS {
        assert_eq!(
            l.lookup_transfer(id).unwrap().is_some(),
            model.transfers.contains_key(&id),
            "transfer {id}"
        );
    }
    assert_clean(l);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn ledger_agrees_with_the_model(steps in prop::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let mut open = open_at(dir.path(), clock.clone());
        let mut model = Model::default();
        seed(&mut model, &open.ledger, clock.now_ns());
        for s in steps {
            match s {
                Step::Accounts(a) => {
                    let now = clock.now_ns();
                    prop_assert_eq!(open.ledger.create_accounts(a.clone()).unwrap(), model.create_accounts(now, &a));
                }
                Step::Transfers(t) => {
                    let now = clock.now_ns();
                    let got = open.ledger.create_transfers(t.clone()).unwrap();
                    let want = model.create_transfers(now, &t);
                    prop_assert_eq!(got, want, "batch {:?}", t);
                }
                Step::Advance(ms) => {
                    // The writer may expire due transfers on its own at any
                    // moment after the clock passes their timeout (its timer,
                    // a close). Expire both sides now, so both consume the
                    // same timestamps at the same `now`.
                    clock.advance_ms(ms);
                    open.ledger.tick().unwrap();
                    model.expire(clock.now_ns());
                }

                Step::Reopen => {
                    open.ledger.close().unwrap();
                    open = open_at(dir.path(), clock.clone());
                }
            }
        }
        // Expire what is due, as both would at the next record.
        open.ledger.tick().unwrap();
        model.expire(clock.now_ns());
        compare_state(&model, &open.ledger);
        open.ledger.close().unwrap();
        // Recovery replays to the same state.
        let reopened = open_at(dir.path(), clock.clone());
        compare_state(&model, &reopened.ledger);
    }
}
