//! Partial failures stay partial (issue #19): a flaky bank keeps serving
//! what it can, a bank that is down is cut off and taken back, and one slow
//! bank does not slow the others. Each test ends with the ledger's
//! invariants checked and every acknowledged transaction found with the
//! status it was acknowledged with.

use std::collections::HashMap;

use proto::v1 as pb;
use switch::adapters::breaker::State;
use switch::config::BreakerConfig;
use switch::sim::Fault;
use tests::{Harness, error_code};

const MB: &str = "970422";
const VCB: &str = "970436";

fn no_limits(c: &mut switch::Config) {
    c.terminal_daily_max = u64::MAX;
    c.customer_daily_max = u64::MAX;
    c.customer_monthly_max = u64::MAX;
    c.post_office_daily_max = u64::MAX;
    c.post_office_monthly_max = u64::MAX;
}

/// Every acknowledged transaction is stored with the status it was
/// acknowledged with.
async fn assert_acknowledged(h: &Harness, acked: &HashMap<String, pb::TxStatus>) {
    let mut t = h.teller("tho-tang-1");
    for (id, status) in acked {
        let stored = t
            .get(id)
            .await
            .expect("an acknowledged transaction is found");
        let stored = stored.transaction.expect("a transaction");
        assert_eq!(stored.status(), *status, "transaction {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_failing_a_fifth_of_its_calls_keeps_serving_the_rest() {
    let h = Harness::start(|c| {
        no_limits(c);
        c.sim.error_rate = 0.2;
    })
    .await;
    let c = h.customer(MB, 0);
    let mut t = h.teller("tho-tang-1");
    let mut acked = HashMap::new();
    let (mut completed, mut unavailable) = (0, 0);
    const CALLS: usize = 200;
    for i in 0..CALLS {
        match t
            .cash_in(&format!("flaky-{i}"), MB, &c.account, 100_000)
            .await
        {
            Ok(tx) => {
                completed += 1;
                acked.insert(tx.transaction_id.clone(), tx.status());
            }
            Err(e) => {
                assert_eq!(error_code(&e), "bank_unavailable", "{}", e.message());
                assert!(
                    !e.message().contains("circuit"),
                    "a bank answering four calls in five was cut off: {}",
                    e.message()
                );
                unavailable += 1;
            }
        }
    }
    // One bank call per cash-in, failing 20% at random: about 160 complete.
    // The bound is far from the mean (4 standard deviations) so that chance
    // does not fail the test; the breaker, before #19, completed none here.
    assert_eq!(completed + unavailable, CALLS);
    assert!(completed >= 130, "only {completed} of {CALLS} completed");
    assert!(unavailable > 0, "the fault was on");
    assert_eq!(
        h.switch.routes.get(MB).unwrap().breaker.state(),
        State::Closed
    );
    assert_acknowledged(&h, &acked).await;
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_that_goes_down_is_cut_off_alone_and_taken_back_when_it_returns() {
    let h = Harness::start(|c| {
        no_limits(c);
        c.breaker = BreakerConfig {
            calls_min: 10,
            open_ms: 300,
            ..BreakerConfig::default()
        };
    })
    .await;
    let (mb, vcb) = (h.customer(MB, 0), h.customer(VCB, 0));
    let mb_before = h.bank_balance(MB, &mb.account);
    let mut t = h.teller("tho-tang-1");
    let mut acked = HashMap::new();
    let mut credited = 0;
    for i in 0..5 {
        let tx = t
            .cash_in(&format!("ok-{i}"), MB, &mb.account, 100_000)
            .await
            .unwrap();
        acked.insert(tx.transaction_id.clone(), tx.status());
        credited += 100_000;
    }

    // A credit whose answer is lost and whose status cannot be learnt: the
    // switch queues its reversal.
    h.sims.banks[MB].set_fault(Fault::LoseAnswersAndStatus);
    let e = t
        .cash_in("lost", MB, &mb.account, 100_000)
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "bank_outcome_unknown", "{}", e.message());
    assert!(
        !h.switch.store.reversals().unwrap().is_empty(),
        "a reversal is queued"
    );

    // Down: every call fails. The breaker opens on the share of failures,
    // and from then on MB's calls fail fast while VCB's go on.
    h.sims.banks[MB].set_fault(Fault::Down);
    let mut opened_after = None;
    for i in 0..60 {
        let e = t
            .cash_in(&format!("down-{i}"), MB, &mb.account, 100_000)
            .await
            .unwrap_err();
        assert_eq!(error_code(&e), "bank_unavailable", "{}", e.message());
        let tx = t
            .cash_in(&format!("other-{i}"), VCB, &vcb.account, 100_000)
            .await;
        let tx = tx.expect("another bank is unaffected by MB's outage");
        acked.insert(tx.transaction_id.clone(), tx.status());
        if e.message().contains("circuit open") {
            opened_after = Some(i);
            break;
        }
    }
    let n = opened_after.expect("the breaker opened while MB was down");
    assert!(n <= 30, "opened after {n} failed calls");
    assert_eq!(
        h.switch.routes.get(MB).unwrap().breaker.state(),
        State::Open
    );
    assert_eq!(
        h.switch.routes.get(VCB).unwrap().breaker.state(),
        State::Closed
    );

    // Back: trial calls close the breaker, and the queued reversal goes
    // through (its backoff is a few seconds).
    h.sims.banks[MB].set_fault(Fault::None);
    let mut back = None;
    for i in 0..100 {
        match t
            .cash_in(&format!("back-{i}"), MB, &mb.account, 100_000)
            .await
        {
            Ok(tx) => {
                acked.insert(tx.transaction_id.clone(), tx.status());
                credited += 100_000;
                back = Some(i);
                break;
            }
            Err(e) => {
                assert!(e.message().contains("circuit open"), "{}", e.message());
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    back.expect("calls to MB resume once it is back");
    for i in 0..5 {
        let tx = t
            .cash_in(&format!("after-{i}"), MB, &mb.account, 100_000)
            .await
            .unwrap();
        acked.insert(tx.transaction_id.clone(), tx.status());
        credited += 100_000;
    }
    assert_eq!(
        h.switch.routes.get(MB).unwrap().breaker.state(),
        State::Closed
    );
    h.eventually(30, "the reversal queue drains", |h| {
        h.switch.store.reversals().unwrap().is_empty()
    })
    .await;
    // The lost credit was undone; every acknowledged one stands.
    assert_eq!(h.bank_balance(MB, &mb.account), mb_before + credited);
    assert_acknowledged(&h, &acked).await;
    h.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_bank_does_not_slow_the_flows_to_the_others() {
    // MB answers after 3 s (within its timeout); VCB at once. While many
    // cash-ins to MB are in flight, cash-ins to VCB complete: no pool,
    // queue or lock that MB's calls fill stands in their way. The test
    // asserts an order of events, not a speed.
    let h = std::sync::Arc::new(
        Harness::start(|c| {
            no_limits(c);
            c.bank_timeout_ms = 10_000;
        })
        .await,
    );
    let (mb, vcb) = (h.customer(MB, 0), h.customer(VCB, 0));
    h.sims.banks[MB].set_extra_latency_ms(3_000);
    let mut slow = Vec::new();
    for i in 0..64 {
        let h = h.clone();
        let account = mb.account.clone();
        slow.push(tokio::spawn(async move {
            let mut t = h.teller(if i % 2 == 0 {
                "tho-tang-1"
            } else {
                "tho-tang-2"
            });
            t.cash_in(&format!("slow-{i}"), MB, &account, 100_000).await
        }));
    }
    // Give the slow calls time to reach MB (they are all waiting on it).
    h.eventually(10, "MB's calls are in flight", |h| {
        h.switch.store.unfinished().map(|u| u.len()).unwrap_or(0) >= 32
    })
    .await;
    let mut t = h.teller("tam-dao-1");
    for i in 0..20 {
        t.cash_in(&format!("fast-{i}"), VCB, &vcb.account, 100_000)
            .await
            .expect("VCB serves while MB is slow");
    }
    let still_waiting = slow.iter().filter(|s| !s.is_finished()).count();
    assert!(
        still_waiting > 0,
        "every slow call had finished before the fast ones: the test proved nothing"
    );
    for s in slow {
        s.await.unwrap().expect("the slow calls complete too");
    }
    h.assert_ledger_clean().await;
}

/// The money-moving bank calls, each made to lose its answer.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Cash-in: a credit.
    Credit,
    /// Cash-out: a debit authorised by a one-time code.
    DebitWithCode,
    /// A bill paid from an account: a debit, then the biller.
    Debit,
}

/// Run one flow of `step` against MB with `fault` on, answering what the
/// teller saw and the change in the customer's balance at MB once every
/// reversal has gone through.
async fn lost_answer(step: Step, fault: Fault) -> (Result<pb::Transaction, tonic::Status>, i128) {
    let h = Harness::start(|c| {
        no_limits(c);
        c.bank_timeout_ms = 300;
    })
    .await;
    let c = h.customer(MB, 2_000_000);
    let before = h.bank_balance(MB, &c.account);
    let mut t = h.teller("tho-tang-1");
    let code = h.withdrawal_code(MB, &c.account, 500_000);
    let bill = h.bill_customer("EVN", 1);
    let due = t.inquire_bills("EVN", &bill.customer).await.unwrap();
    let bill_ids: Vec<String> = due.bills.iter().map(|b| b.bill_id.clone()).collect();
    let bill_ids: Vec<&str> = bill_ids.iter().map(String::as_str).collect();
    h.sims.banks[MB].set_fault(fault);
    let answer = match step {
        Step::Credit => t.cash_in("lost", MB, &c.account, 500_000).await,
        Step::DebitWithCode => {
            match t
                .cash_out_start("lost", MB, &c.account, &code, 500_000)
                .await
            {
                // Paid out at the counter, then confirmed.
                Ok(pending) => t.cash_out_confirm(&pending.transaction_id).await,
                Err(e) => Err(e),
            }
        }
        Step::Debit => {
            t.pay_bills(
                "lost",
                "EVN",
                &bill.customer,
                &bill_ids,
                pb::Funding::Account,
                Some((MB, &c.account)),
            )
            .await
        }
    };
    h.sims.banks[MB].set_fault(Fault::None);
    h.eventually(30, "the reversal queue drains", |h| {
        h.switch.store.reversals().unwrap().is_empty()
    })
    .await;
    if let Ok(tx) = &answer {
        let stored = t
            .get(&tx.transaction_id)
            .await
            .unwrap()
            .transaction
            .unwrap();
        assert_eq!(
            stored.status(),
            tx.status(),
            "{step:?}: stored as acknowledged"
        );
    }
    h.assert_ledger_clean().await;
    let after = h.bank_balance(MB, &c.account);
    (answer, i128::from(after) - i128::from(before))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_on_any_step_is_learnt_by_status_inquiry() {
    for (step, sign) in [
        (Step::Credit, 1),
        (Step::DebitWithCode, -1),
        (Step::Debit, -1),
    ] {
        let (answer, moved) = lost_answer(step, Fault::LoseAnswers).await;
        let tx = answer.unwrap_or_else(|e| panic!("{step:?}: {e:?}"));
        assert_eq!(tx.status(), pb::TxStatus::Completed, "{step:?}");
        // Posted once at the bank, never reversed.
        let customer_pays = match step {
            Step::Credit => i128::from(tx.amount),
            _ => i128::from(tx.amount + tx.fee),
        };
        assert_eq!(moved, sign * customer_pays, "{step:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_whose_status_cannot_be_learnt_is_reversed_and_nothing_else() {
    for step in [Step::Credit, Step::DebitWithCode, Step::Debit] {
        let (answer, moved) = lost_answer(step, Fault::LoseAnswersAndStatus).await;
        let e = answer.expect_err("an unknown outcome is not a success");
        assert_eq!(error_code(&e), "bank_outcome_unknown", "{step:?}: {e:?}");
        // The call that was done at the bank is undone: reversed, not posted.
        assert_eq!(moved, 0, "{step:?}");
    }
}

/// The reversal queue goes out per party (issue #31): a bank that takes
/// long to answer a reversal holds back only its own jobs, and a bank
/// that is down costs one call a pass, not one per job. The test asserts
/// an order of events, not a speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_bank_holds_back_only_its_own_reversals() {
    let h = std::sync::Arc::new(
        Harness::start(|c| {
            no_limits(c);
            c.bank_timeout_ms = 60_000;
        })
        .await,
    );
    let id = switch::ids::TxId::parse("01a2330000000000000000000000ab00").unwrap();
    let job = |i: u8, bin: &str| switch::store::ReversalJob {
        reference: id.reference(i).to_string(),
        party: switch::store::Party::Bank(bin.into()),
        attempts: 0,
        next_attempt_at_ms: 0,
    };
    // MB's jobs come first in the queue's order; MB answers after 30 s.
    // (Slow before the jobs are queued: the switch's own background pass
    // may pick them up first, and must find MB slow too.)
    h.sims.banks[MB].set_extra_latency_ms(30_000);
    let (slow, fast) = ([job(1, MB), job(2, MB)], job(3, VCB));
    for j in slow.iter().chain([&fast]) {
        h.switch.store.queue_reversal(j).unwrap();
    }
    let pass = {
        let h = h.clone();
        tokio::spawn(async move { h.switch.run_reversals().await })
    };
    h.eventually(20, "VCB's reversal went out while MB's waits", |h| {
        let queued = h.switch.store.reversals().unwrap();
        !queued.iter().any(|j| j.reference == fast.reference)
    })
    .await;
    assert!(!pass.is_finished(), "MB's reversal is still in flight");
    assert_eq!(h.switch.store.reversals().unwrap().len(), 2);
    pass.abort();

    // MB down: one pass tries its first job, and the second waits for the
    // next pass instead of costing another timeout now.
    h.sims.banks[MB].set_extra_latency_ms(0);
    h.sims.banks[MB].set_fault(Fault::Down);
    h.switch.run_reversals().await.unwrap();
    let queued = h.switch.store.reversals().unwrap();
    let attempts: Vec<u32> = slow
        .iter()
        .map(|s| {
            queued
                .iter()
                .find(|j| j.reference == s.reference)
                .expect("still queued")
                .attempts
        })
        .collect();
    assert_eq!(attempts, vec![1, 0]);
    // Back up: the next passes send them both.
    h.sims.banks[MB].set_fault(Fault::None);
    let mut due = h.switch.store.reversals().unwrap();
    for j in &mut due {
        j.next_attempt_at_ms = 0;
        h.switch.store.queue_reversal(j).unwrap();
    }
    h.switch.run_reversals().await.unwrap();
    assert!(h.switch.store.reversals().unwrap().is_empty());
    h.assert_ledger_clean().await;
}
