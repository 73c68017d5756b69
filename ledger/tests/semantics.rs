//! Edge cases of the ledger's semantics, one behaviour per test.

mod common;

use std::sync::Arc;

use common::*;
use ledger::*;

const BANK: u128 = 1; // unconstrained: the source of money
const ALICE: u128 = 2; // debits must not exceed credits
const DRAWER: u128 = 3; // credits must not exceed debits (cash it holds)
const BOB: u128 = 4; // debits must not exceed credits, with history

fn setup() -> (tempfile::TempDir, Open) {
    let dir = tempfile::tempdir().unwrap();
    let open = open_at(dir.path(), Arc::new(ManualClock::new(1_000_000_000)));
    let l = &open.ledger;
    let r = l
        .create_accounts(vec![
            account(BANK, AccountFlags::empty()),
            account(ALICE, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            account(DRAWER, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
            account(
                BOB,
                AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::HISTORY,
            ),
        ])
        .unwrap();
    assert!(r.iter().all(|r| r.as_ref().is_ok_and(|r| r.created)));
    // Alice holds 1000; the drawer holds 500 in cash.
    let r = l
        .create_transfers(vec![
            NewTransfer::single(100, BANK, ALICE, 1000, 1),
            NewTransfer::single(101, DRAWER, BANK, 500, 1),
        ])
        .unwrap();
    assert!(r.iter().all(Result::is_ok));
    (dir, open)
}

fn one(l: &Ledger, t: NewTransfer) -> Result<Receipt, TransferReject> {
    l.create_transfers(vec![t]).unwrap().remove(0)
}

fn acct(l: &Ledger, id: u128) -> Account {
    l.lookup_account(id).unwrap().unwrap()
}

#[test]
fn pending_reserves_and_post_moves_the_money() {
    let (_d, o) = setup();
    let l = &o.ledger;
    one(l, NewTransfer::pending(1, ALICE, BOB, 300, 2, 0)).unwrap();
    let a = acct(l, ALICE);
    assert_eq!(
        (
            a.debits_pending(),
            a.debits_posted(),
            a.balance_posted(),
            a.balance_available()
        ),
        (300, 0, 1000, 700)
    );
    // The reservation counts against the limit.
    assert_eq!(
        one(l, NewTransfer::single(2, ALICE, BOB, 701, 1)),
        Err(TransferReject::ExceedsCredits)
    );
    one(l, NewTransfer::post(3, 1, None)).unwrap();
    let a = acct(l, ALICE);
    assert_eq!(
        (a.debits_pending(), a.debits_posted(), a.balance_available()),
        (0, 300, 700)
    );
    assert_eq!(acct(l, BOB).credits_posted(), 300);
    let p = l.lookup_transfer(1).unwrap().unwrap();
    assert_eq!(
        (p.status(), p.amount_posted()),
        (TransferStatus::Posted, 300)
    );
    let post = l.lookup_transfer(3).unwrap().unwrap();
    assert_eq!(
        (
            post.pending_id(),
            post.amount(),
            post.debit_account_id(),
            post.code()
        ),
        (1, 300, ALICE, 2)
    );
    assert_clean(l);
}

#[test]
fn a_partial_post_releases_the_rest() {
    let (_d, o) = setup();
    let l = &o.ledger;
    one(l, NewTransfer::pending(1, ALICE, BOB, 300, 2, 0)).unwrap();
    assert_eq!(
        one(l, NewTransfer::post(2, 1, Some(301))),
        Err(TransferReject::ExceedsPendingTransferAmount)
    );
    one(l, NewTransfer::post(3, 1, Some(120))).unwrap();
    let a = acct(l, ALICE);
    assert_eq!((a.debits_pending(), a.debits_posted()), (0, 120));
    assert_eq!(l.lookup_transfer(1).unwrap().unwrap().amount_posted(), 120);
    assert_clean(l);
}

#[test]
fn a_pending_transfer_resolves_once() {
    let (_d, o) = setup();
    let l = &o.ledger;
    one(l, NewTransfer::pending(1, ALICE, BOB, 300, 2, 0)).unwrap();
    one(l, NewTransfer::pending(2, ALICE, BOB, 100, 2, 0)).unwrap();
    one(l, NewTransfer::void(10, 1)).unwrap();
    assert_eq!(acct(l, ALICE).debits_pending(), 100);
    assert_eq!(
        one(l, NewTransfer::post(11, 1, None)),
        Err(TransferReject::PendingTransferAlreadyVoided)
    );
    assert_eq!(
        one(l, NewTransfer::void(12, 1)),
        Err(TransferReject::PendingTransferAlreadyVoided)
    );
    one(l, NewTransfer::post(13, 2, None)).unwrap();
    assert_eq!(
        one(l, NewTransfer::post(14, 2, None)),
        Err(TransferReject::PendingTransferAlreadyPosted)
    );
    assert_eq!(
        one(l, NewTransfer::void(15, 2)),
        Err(TransferReject::PendingTransferAlreadyPosted)
    );
    assert_eq!(
        one(l, NewTransfer::post(16, 100, None)),
        Err(TransferReject::PendingTransferNotPending)
    );
    assert_eq!(
        one(l, NewTransfer::post(17, 999, None)),
        Err(TransferReject::PendingTransferNotFound)
    );
    assert_eq!(
        one(l, NewTransfer::post(18, 18, None)),
        Err(TransferReject::PendingIdMustBeDifferent)
    );
    assert_eq!(
        one(l, NewTransfer::post(19, 0, None)),
        Err(TransferReject::PendingIdMustNotBeZero)
    );
    one(l, NewTransfer::pending(3, ALICE, BOB, 50, 2, 0)).unwrap();
    assert_eq!(
        one(
            l,
            NewTransfer {
                amount: 49,
                ..NewTransfer::void(20, 3)
            }
        ),
        Err(TransferReject::PendingTransferHasDifferentAmount)
    );
    assert_eq!(
        one(
            l,
            NewTransfer {
                debit_account_id: BANK,
                ..NewTransfer::post(21, 3, None)
            }
        ),
        Err(TransferReject::PendingTransferHasDifferentDebitAccountId)
    );
    assert_eq!(
        one(
            l,
            NewTransfer {
                credit_account_id: ALICE,
                ..NewTransfer::post(22, 3, None)
            }
        ),
        Err(TransferReject::PendingTransferHasDifferentCreditAccountId)
    );
    // Naming the right accounts is allowed.
    one(
        l,
        NewTransfer {
            debit_account_id: ALICE,
            credit_account_id: BOB,
            ..NewTransfer::post(23, 3, None)
        },
    )
    .unwrap();
    assert_clean(l);
}

#[test]
fn an_expired_pending_transfer_is_voided_and_cannot_be_posted() {
    let (dir, o) = setup();
    let l = &o.ledger;
    one(l, NewTransfer::pending(1, ALICE, BOB, 300, 2, 5_000)).unwrap();
    one(l, NewTransfer::pending(2, ALICE, BOB, 200, 2, 60_000)).unwrap();
    o.clock.advance_ms(4_999);
    l.tick().unwrap();
    assert_eq!(
        l.lookup_transfer(1).unwrap().unwrap().status(),
        TransferStatus::Pending
    );
    o.clock.advance_ms(1);
    l.tick().unwrap();
    assert_eq!(
        l.lookup_transfer(1).unwrap().unwrap().status(),
        TransferStatus::Pending
    );
    // The timeout runs from the transfer's ledger timestamp, which is a few
    // nanoseconds past the clock here (earlier events took those).
    o.clock.advance_ms(1);
    l.tick().unwrap();
    assert_eq!(
        l.lookup_transfer(1).unwrap().unwrap().status(),
        TransferStatus::Expired
    );
    assert_eq!(acct(l, ALICE).debits_pending(), 200);
    assert_eq!(
        one(l, NewTransfer::post(3, 1, None)),
        Err(TransferReject::PendingTransferExpired)
    );
    assert_eq!(
        one(l, NewTransfer::void(4, 1)),
        Err(TransferReject::PendingTransferExpired)
    );
    assert_clean(l);
    // A pending transfer outstanding at close expires after reopen, and a
    // post that arrives after its timeout fails even with no tick between.
    let clock = o.clock.clone();
    o.ledger.close().unwrap();
    clock.advance_ms(60_000);
    let o = open_at(dir.path(), clock);
    assert_eq!(
        one(&o.ledger, NewTransfer::post(5, 2, None)),
        Err(TransferReject::PendingTransferExpired)
    );
    assert_eq!(acct(&o.ledger, ALICE).debits_pending(), 0);
    assert_eq!(acct(&o.ledger, ALICE).balance_available(), 1000);
    assert_clean(&o.ledger);
}

#[test]
fn the_writer_expires_pending_transfers_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = Ledger::open(Config::new(dir.path()), Arc::new(SystemClock)).unwrap();
    l.create_accounts(vec![
        account(BANK, AccountFlags::empty()),
        account(ALICE, AccountFlags::empty()),
    ])
    .unwrap();
    one(&l, NewTransfer::pending(1, BANK, ALICE, 5, 1, 1)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while l.lookup_transfer(1).unwrap().unwrap().status() == TransferStatus::Pending {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never expired the transfer"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        l.lookup_transfer(1).unwrap().unwrap().status(),
        TransferStatus::Expired
    );
    assert_clean(&l);
}

#[test]
fn a_linked_chain_applies_entirely_or_not_at_all() {
    let (_d, o) = setup();
    let l = &o.ledger;
    let before = balances(l, [BANK, ALICE, DRAWER, BOB]);
    // Principal, fee, then a payout the drawer cannot cover.
    let chain = vec![
        NewTransfer::single(1, ALICE, BOB, 400, 1).linked(),
        NewTransfer::single(2, ALICE, BANK, 10, 3).linked(),
        NewTransfer::single(3, BANK, DRAWER, 501, 4),
    ];
    let r = l.create_transfers(chain.clone()).unwrap();
    assert_eq!(
        r,
        vec![
            Err(TransferReject::LinkedEventFailed),
            Err(TransferReject::LinkedEventFailed),
            Err(TransferReject::ExceedsDebits)
        ]
    );
    assert_eq!(balances(l, [BANK, ALICE, DRAWER, BOB]), before);
    assert_eq!(l.lookup_transfer(1).unwrap(), None);
    // The retry returns the same outcome, even now that it could succeed.
    one(l, NewTransfer::single(5, BANK, DRAWER, 0, 1)).unwrap_err();
    assert_eq!(l.create_transfers(chain).unwrap(), r);
    // A chain that succeeds.
    let ok = l
        .create_transfers(vec![
            NewTransfer::single(6, ALICE, BOB, 400, 1).linked(),
            NewTransfer::single(7, ALICE, BANK, 10, 3).linked(),
            NewTransfer::single(8, BANK, DRAWER, 500, 4),
            NewTransfer::single(9, BANK, BOB, 1, 1),
        ])
        .unwrap();
    assert!(ok.iter().all(|r| r.is_ok_and(|r| r.created)));
    assert_eq!(acct(l, DRAWER).debit_balance_available(), 0);
    assert_clean(l);
}

#[test]
fn a_chain_left_open_fails_whole() {
    let (_d, o) = setup();
    let l = &o.ledger;
    let r = l
        .create_transfers(vec![
            NewTransfer::single(1, BANK, ALICE, 1, 1),
            NewTransfer::single(2, BANK, ALICE, 1, 1).linked(),
            NewTransfer::single(3, BANK, ALICE, 1, 1).linked(),
        ])
        .unwrap();
    assert_eq!(
        r[1..],
        [
            Err(TransferReject::LinkedEventFailed),
            Err(TransferReject::LinkedEventChainOpen)
        ]
    );
    assert!(r[0].is_ok());
    assert_eq!(acct(l, ALICE).credits_posted(), 1001);
}

#[test]
fn retries_return_the_original_outcome_for_every_kind_of_event() {
    let (dir, o) = setup();
    let l = &o.ledger;
    let single = NewTransfer::single(1, ALICE, BOB, 10, 1);
    let pending = NewTransfer::pending(2, ALICE, BOB, 20, 2, 0);
    let post = NewTransfer::post(3, 2, None);
    let pending2 = NewTransfer::pending(4, ALICE, BOB, 30, 2, 0);
    let void = NewTransfer::void(5, 4);
    let failing = NewTransfer::single(6, ALICE, BOB, 1_000_000, 1);
    let mut first = Vec::new();
    for t in [single, pending, post, pending2, void, failing] {
        first.push(one(l, t));
    }
    assert!(first[..5].iter().all(|r| r.is_ok_and(|r| r.created)));
    assert_eq!(first[5], Err(TransferReject::ExceedsCredits));
    let snapshot = balances(l, [BANK, ALICE, DRAWER, BOB]);
    let expect: Vec<_> = first
        .iter()
        .map(|r| {
            r.map(|r| Receipt {
                created: false,
                ..r
            })
        })
        .collect();
    let retry = |l: &Ledger| -> Vec<_> {
        [single, pending, post, pending2, void, failing]
            .into_iter()
            .map(|t| one(l, t))
            .collect()
    };
    assert_eq!(retry(l), expect);
    // Funds arrive; the failed id still fails the same way.
    one(l, NewTransfer::single(7, BANK, ALICE, 5_000_000, 1)).unwrap();
    assert_eq!(one(l, failing), Err(TransferReject::ExceedsCredits));
    // And across a restart.
    let clock = o.clock.clone();
    o.ledger.close().unwrap();
    let o = open_at(dir.path(), clock);
    assert_eq!(retry(&o.ledger), expect);
    let mut now = balances(&o.ledger, [BANK, ALICE, DRAWER, BOB]);
    now[0].1 = snapshot[0].1; // transfer 7 moved money from BANK to ALICE
    now[1].1 = snapshot[1].1;
    assert_eq!(now, snapshot);
    // Same id, other fields.
    let l = &o.ledger;
    assert_eq!(
        one(
            l,
            NewTransfer {
                amount: 11,
                ..single
            }
        ),
        Err(TransferReject::ExistsWithDifferentAmount)
    );
    assert_eq!(
        one(
            l,
            NewTransfer {
                user_data: 9,
                ..single
            }
        ),
        Err(TransferReject::ExistsWithDifferentUserData)
    );
    assert_eq!(
        one(l, NewTransfer { code: 9, ..single }),
        Err(TransferReject::ExistsWithDifferentCode)
    );
    assert_eq!(
        one(
            l,
            NewTransfer {
                credit_account_id: BANK,
                ..single
            }
        ),
        Err(TransferReject::ExistsWithDifferentCreditAccountId)
    );
    assert_eq!(
        one(l, NewTransfer::pending(1, ALICE, BOB, 10, 1, 0)),
        Err(TransferReject::ExistsWithDifferentFlags)
    );
    assert_eq!(
        one(
            l,
            NewTransfer {
                amount: 7,
                ..failing
            }
        ),
        Err(TransferReject::ExistsWithDifferentAmount)
    );
    assert_eq!(
        one(l, NewTransfer::post(3, 4, None)),
        Err(TransferReject::ExistsWithDifferentPendingId)
    );
    // Accounts too.
    let a = account(ALICE, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS);
    assert!(l.create_accounts(vec![a]).unwrap()[0].is_ok_and(|r| !r.created));
    assert_eq!(
        l.create_accounts(vec![NewAccount {
            flags: AccountFlags::empty(),
            ..a
        }])
        .unwrap()[0],
        Err(AccountReject::ExistsWithDifferentFlags)
    );
    assert_eq!(
        l.create_accounts(vec![NewAccount { currency: 840, ..a }])
            .unwrap()[0],
        Err(AccountReject::ExistsWithDifferentCurrency)
    );
    assert_clean(l);
}

#[test]
fn invalid_events_are_refused_with_their_reason() {
    let (_d, o) = setup();
    let l = &o.ledger;
    use TransferReject as R;
    let cases = [
        (
            NewTransfer::single(0, BANK, ALICE, 1, 1),
            R::IdMustNotBeZero,
        ),
        (
            NewTransfer::single(u128::MAX, BANK, ALICE, 1, 1),
            R::IdMustNotBeIntMax,
        ),
        (
            NewTransfer::single(1, 0, ALICE, 1, 1),
            R::DebitAccountIdMustNotBeZero,
        ),
        (
            NewTransfer::single(2, BANK, 0, 1, 1),
            R::CreditAccountIdMustNotBeZero,
        ),
        (
            NewTransfer::single(3, BANK, BANK, 1, 1),
            R::AccountsMustBeDifferent,
        ),
        (
            NewTransfer::single(4, BANK, ALICE, 0, 1),
            R::AmountMustNotBeZero,
        ),
        (
            NewTransfer::single(5, 77, ALICE, 1, 1),
            R::DebitAccountNotFound,
        ),
        (
            NewTransfer::single(6, BANK, 77, 1, 1),
            R::CreditAccountNotFound,
        ),
        (
            NewTransfer {
                pending_id: 1,
                ..NewTransfer::single(7, BANK, ALICE, 1, 1)
            },
            R::PendingIdMustBeZero,
        ),
        (
            NewTransfer {
                timeout_ms: 1,
                ..NewTransfer::single(8, BANK, ALICE, 1, 1)
            },
            R::TimeoutReservedForPendingTransfer,
        ),
        (
            NewTransfer {
                flags: TransferFlags::PENDING | TransferFlags::POST_PENDING,
                ..NewTransfer::single(9, BANK, ALICE, 1, 1)
            },
            R::FlagsAreMutuallyExclusive,
        ),
        (
            NewTransfer::single(10, ALICE, BOB, 1001, 1),
            R::ExceedsCredits,
        ),
        (
            NewTransfer::single(11, BANK, DRAWER, 501, 1),
            R::ExceedsDebits,
        ),
        (
            NewTransfer::single(12, BANK, u128::from(u64::MAX), 1, 1),
            R::CreditAccountNotFound,
        ),
    ];
    for (t, want) in cases {
        assert_eq!(one(l, t), Err(want), "{t:?}");
    }
    l.create_accounts(vec![NewAccount {
        id: 50,
        currency: 840,
        code: 1,
        flags: AccountFlags::empty(),
        user_data: 0,
    }])
    .unwrap();
    assert_eq!(
        one(l, NewTransfer::single(13, BANK, 50, 1, 1)),
        Err(R::CurrenciesMustBeEqual)
    );
    let bad_accounts = l
        .create_accounts(vec![
            NewAccount {
                id: 0,
                ..account(60, AccountFlags::empty())
            },
            NewAccount {
                currency: 0,
                ..account(61, AccountFlags::empty())
            },
            account(
                62,
                AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                    | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
            ),
        ])
        .unwrap();
    assert_eq!(
        bad_accounts,
        vec![
            Err(AccountReject::IdMustNotBeZero),
            Err(AccountReject::CurrencyMustNotBeZero),
            Err(AccountReject::FlagsAreMutuallyExclusive)
        ]
    );
    let too_many = vec![NewTransfer::single(1, BANK, ALICE, 1, 1); 8191];
    assert!(matches!(
        l.create_transfers(too_many),
        Err(SubmitError::TooManyEvents {
            events: 8191,
            events_max: 8190
        })
    ));
    assert_clean(l);
}

#[test]
fn timestamps_increase_strictly_even_when_the_clock_stands_still_or_goes_back() {
    let (_d, o) = setup();
    let l = &o.ledger;
    let a = one(l, NewTransfer::single(1, BANK, ALICE, 1, 1))
        .unwrap()
        .timestamp;
    o.clock.set(5);
    let b = one(l, NewTransfer::single(2, BANK, ALICE, 1, 1))
        .unwrap()
        .timestamp;
    let c = one(l, NewTransfer::single(3, BANK, ALICE, 1, 1))
        .unwrap()
        .timestamp;
    assert!(a < b && b < c);
}

#[test]
fn account_queries_page_by_time() {
    let (_d, o) = setup();
    let l = &o.ledger;
    for i in 0..25u128 {
        o.clock.advance_ms(1);
        one(
            l,
            NewTransfer::single(1000 + i, ALICE, BOB, 10 + i as u64, 1),
        )
        .unwrap();
    }
    let first = l.account_transfers(BOB, Page::first(10)).unwrap();
    assert_eq!(
        first.iter().map(|t| t.id()).collect::<Vec<_>>(),
        (1000..1010).collect::<Vec<_>>()
    );
    let next = l
        .account_transfers(
            BOB,
            Page {
                timestamp_min: first[9].timestamp() + 1,
                ..Page::first(10)
            },
        )
        .unwrap();
    assert_eq!(next[0].id(), 1010);
    let newest = l
        .account_transfers(
            BOB,
            Page {
                reversed: true,
                ..Page::first(3)
            },
        )
        .unwrap();
    assert_eq!(
        newest.iter().map(|t| t.id()).collect::<Vec<_>>(),
        vec![1024, 1023, 1022]
    );
    // ALICE's page includes the funding transfer as a credit.
    assert_eq!(
        l.account_transfers(ALICE, Page::first(1)).unwrap()[0].id(),
        100
    );
    // BOB keeps history; each point is the balance after that transfer.
    let history = l.account_history(BOB, Page::default()).unwrap();
    assert_eq!(history.len(), 25);
    assert_eq!(history[0].credits_posted, 10);
    assert_eq!(
        history[24].credits_posted,
        (0..25).map(|i| 10 + i).sum::<u128>()
    );
    assert!(history.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    assert!(
        l.account_history(ALICE, Page::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn concurrent_callers_are_grouped_and_all_acknowledged() {
    let (_d, o) = setup();
    let ledger = Arc::new(o.ledger);
    let threads: Vec<_> = (0..16u128)
        .map(|c| {
            let l = ledger.clone();
            std::thread::spawn(move || {
                for i in 0..50u128 {
                    let r = l
                        .create_transfers(vec![NewTransfer::single(
                            10_000 + c * 100 + i,
                            BANK,
                            BOB,
                            1,
                            1,
                        )])
                        .unwrap();
                    assert!(r[0].is_ok());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        ledger
            .lookup_account(BOB)
            .unwrap()
            .unwrap()
            .credits_posted(),
        800
    );
    assert_clean(&ledger);
}
