//! The circuit breaker in front of every bank and biller.
//!
//! It decides on the *share* of failed calls, not on streaks: a bank that
//! fails one call in five at random keeps serving the other four, while a
//! bank that is down stops being called within a few dozen calls and is
//! tried again a couple of seconds later.
//!
//! - **Closed**: every call goes through; each outcome enters a sliding
//!   window of the last `window_calls` calls, and outcomes older than
//!   `window_ms` leave it. Once the window holds at least `calls_min`
//!   outcomes and `failure_percent` or more of them failed, it opens.
//! - **Open**: calls fail fast for `open_ms`.
//! - **Half-open**: up to `half_open_calls` trial calls go through (the rest
//!   fail fast); once all have answered, it closes with an empty window if
//!   their failure share is below `failure_percent`, and opens again
//!   otherwise.
//!
//! What counts as a failure is configured ([`BreakerConfig`]): a bank that
//! says "unavailable" always does; a timeout does by default; a refusal (an
//! account not found, funds short) does not by default, since the bank
//! answered. Time is a monotonic millisecond count passed in by the caller
//! (the wall clock may step; this must not).
//!
//! Every transition is a log line and a metric
//! (`switch_breaker_transitions_total{party, to}`); the state
//! (`switch_breaker_state{party}`: 0 closed, 1 open, 2 half-open) and the
//! window's failure share (`switch_breaker_failure_ratio{party}`) are gauges.

use std::collections::VecDeque;
use std::sync::Mutex;

pub use crate::config::BreakerConfig;

/// How one call to a party ended, as the breaker needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// It answered and did the work.
    Success,
    /// It answered and refused (a business decision).
    Rejected,
    /// It said it could not serve.
    Unavailable,
    /// No answer in time: the outcome is unknown.
    Timeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
    fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::Open => 1.0,
            State::HalfOpen => 2.0,
        }
    }
}

struct Inner {
    state: State,
    /// Closed: (when, failed) of the latest calls, oldest first.
    window: VecDeque<(i64, bool)>,
    /// Failed outcomes in `window`.
    failures: u32,
    /// Open: when trial calls may start.
    open_until_ms: i64,
    /// Half-open: trial calls let through, and how they ended so far.
    trials_started: u32,
    trials_answered: u32,
    trials_failed: u32,
}

pub struct Breaker {
    /// The party's name in metrics and logs (a BIN or a biller's code).
    party: String,
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Leave to make one call. Record how it ended with [`Permit::record`]; a
/// permit dropped unrecorded (the caller went away) frees its trial slot
/// and counts as nothing.
pub struct Permit<'a> {
    breaker: &'a Breaker,
    trial: bool,
    recorded: bool,
}

impl Permit<'_> {
    pub fn record(mut self, outcome: CallOutcome, now_ms: i64) {
        self.recorded = true;
        self.breaker.record(self.trial, outcome, now_ms);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded && self.trial {
            let mut s = self.breaker.lock();
            if s.state == State::HalfOpen {
                s.trials_started = s.trials_started.saturating_sub(1);
            }
        }
    }
}

impl Breaker {
    pub fn new(party: &str, config: BreakerConfig) -> Breaker {
        let config = BreakerConfig {
            window_calls: config.window_calls.max(1),
            calls_min: config.calls_min.clamp(1, config.window_calls.max(1)),
            failure_percent: config.failure_percent.clamp(1, 100),
            half_open_calls: config.half_open_calls.max(1),
            ..config
        };
        let b = Breaker {
            party: party.to_string(),
            inner: Mutex::new(Inner {
                state: State::Closed,
                window: VecDeque::with_capacity(config.window_calls as usize),
                failures: 0,
                open_until_ms: 0,
                trials_started: 0,
                trials_answered: 0,
                trials_failed: 0,
            }),
            config,
        };
        metrics::gauge!("switch_breaker_state", "party" => b.party.clone()).set(0.0);
        b
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a call go to the party now? `None`: fail fast, the circuit is
    /// open (or half-open with every trial slot taken).
    pub fn try_call(&self, now_ms: i64) -> Option<Permit<'_>> {
        let mut s = self.lock();
        let trial = match s.state {
            State::Closed => false,
            State::Open if now_ms < s.open_until_ms => return None,
            State::Open => {
                self.enter(&mut s, State::HalfOpen, now_ms);
                true
            }
            State::HalfOpen => true,
        };
        if trial {
            if s.trials_started >= self.config.half_open_calls {
                return None;
            }
            s.trials_started += 1;
        }
        Some(Permit {
            breaker: self,
            trial,
            recorded: false,
        })
    }

    /// Is the circuit refusing calls now (open and not yet due a trial)?
    pub fn is_open(&self, now_ms: i64) -> bool {
        let s = self.lock();
        s.state == State::Open && now_ms < s.open_until_ms
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    fn failed(&self, outcome: CallOutcome) -> bool {
        match outcome {
            CallOutcome::Success => false,
            CallOutcome::Rejected => self.config.count_rejections,
            CallOutcome::Unavailable => true,
            CallOutcome::Timeout => self.config.count_timeouts,
        }
    }

    fn record(&self, trial: bool, outcome: CallOutcome, now_ms: i64) {
        let failed = self.failed(outcome);
        let mut s = self.lock();
        match s.state {
            // A trial that answers after the circuit moved on, or a call
            // let through while closed that answers once it opened: the
            // state it was let through in is gone, and so is its vote.
            State::Open => {}
            State::HalfOpen if !trial => {}
            State::Closed if trial => {}
            State::HalfOpen => {
                s.trials_answered += 1;
                s.trials_failed += u32::from(failed);
                if s.trials_answered >= self.config.half_open_calls {
                    let share = percent(s.trials_failed, s.trials_answered);
                    let next = if share >= self.config.failure_percent {
                        State::Open
                    } else {
                        State::Closed
                    };
                    self.enter(&mut s, next, now_ms);
                }
            }
            State::Closed => {
                if s.window.len() >= self.config.window_calls as usize
                    && let Some((_, old)) = s.window.pop_front()
                {
                    s.failures -= u32::from(old);
                }
                s.window.push_back((now_ms, failed));
                s.failures += u32::from(failed);
                let horizon = now_ms.saturating_sub(self.config.window_ms as i64);
                while let Some(&(at, old)) = s.window.front() {
                    if at >= horizon {
                        break;
                    }
                    s.window.pop_front();
                    s.failures -= u32::from(old);
                }
                let calls = s.window.len() as u32;
                let share = percent(s.failures, calls);
                metrics::gauge!("switch_breaker_failure_ratio", "party" => self.party.clone())
                    .set(f64::from(share) / 100.0); // a ratio for the gauge, never money
                if calls >= self.config.calls_min && share >= self.config.failure_percent {
                    tracing::warn!(
                        party = %self.party,
                        calls,
                        failures = s.failures,
                        failure_percent = share,
                        open_ms = self.config.open_ms,
                        "breaker opened: calls to this party fail fast"
                    );
                    self.enter(&mut s, State::Open, now_ms);
                }
            }
        }
        debug_assert!(s.failures as usize <= s.window.len());
    }

    fn enter(&self, s: &mut Inner, to: State, now_ms: i64) {
        let from = s.state;
        s.state = to;
        s.trials_started = 0;
        s.trials_answered = 0;
        s.trials_failed = 0;
        match to {
            State::Open => s.open_until_ms = now_ms.saturating_add(self.config.open_ms as i64),
            State::Closed => {
                s.window.clear();
                s.failures = 0;
            }
            State::HalfOpen => {}
        }
        if from == State::HalfOpen && to == State::Open {
            tracing::warn!(party = %self.party, "breaker trial calls failed: open again");
        } else if to == State::Closed {
            tracing::info!(party = %self.party, "breaker closed: calls to this party resume");
        } else if to == State::HalfOpen {
            tracing::info!(party = %self.party, trials = self.config.half_open_calls, "breaker half-open: trial calls");
        }
        metrics::gauge!("switch_breaker_state", "party" => self.party.clone()).set(to.gauge());
        metrics::counter!("switch_breaker_transitions_total", "party" => self.party.clone(), "to" => to.label())
            .increment(1);
    }
}

/// `part` of `whole` in whole percent, rounded down (0 of 0 is 0).
fn percent(part: u32, whole: u32) -> u32 {
    if whole == 0 {
        0
    } else {
        (u64::from(part) * 100 / u64::from(whole)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            window_calls: 10,
            window_ms: 60_000,
            calls_min: 4,
            failure_percent: 50,
            open_ms: 1_000,
            half_open_calls: 2,
            count_timeouts: true,
            count_rejections: false,
        }
    }

    fn call(b: &Breaker, outcome: CallOutcome, now: i64) -> bool {
        match b.try_call(now) {
            Some(p) => {
                p.record(outcome, now);
                true
            }
            None => false,
        }
    }

    #[test]
    fn it_opens_on_the_share_of_failures_not_on_a_streak() {
        let b = Breaker::new("t", config());
        // Three failures in a row, but fewer than calls_min outcomes.
        for _ in 0..3 {
            assert!(call(&b, CallOutcome::Unavailable, 0));
        }
        assert_eq!(b.state(), State::Closed, "3 outcomes < calls_min");
        let b = Breaker::new("t", config());
        for _ in 0..4 {
            assert!(call(&b, CallOutcome::Success, 0));
        }
        // Then a streak of three failures: 3 of 7 failed (42%): still closed.
        for _ in 0..3 {
            assert!(call(&b, CallOutcome::Unavailable, 0));
        }
        assert_eq!(b.state(), State::Closed);
        // One more: 4 of 8 (50%): open.
        assert!(call(&b, CallOutcome::Timeout, 0));
        assert_eq!(b.state(), State::Open);
        assert!(b.is_open(999) && b.try_call(999).is_none());
    }

    #[test]
    fn rejections_and_timeouts_count_as_configured() {
        let b = Breaker::new("t", config());
        for _ in 0..10 {
            assert!(call(&b, CallOutcome::Rejected, 0));
        }
        assert_eq!(b.state(), State::Closed, "a refusal is an answer");
        let b = Breaker::new(
            "t",
            BreakerConfig {
                count_timeouts: false,
                ..config()
            },
        );
        for _ in 0..10 {
            assert!(call(&b, CallOutcome::Timeout, 0));
        }
        assert_eq!(b.state(), State::Closed, "timeouts configured not to count");
        let b = Breaker::new(
            "t",
            BreakerConfig {
                count_rejections: true,
                ..config()
            },
        );
        for _ in 0..4 {
            assert!(call(&b, CallOutcome::Rejected, 0));
        }
        assert_eq!(b.state(), State::Open, "refusals configured to count");
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let b = Breaker::new(
            "t",
            BreakerConfig {
                window_ms: 1_000,
                ..config()
            },
        );
        for _ in 0..3 {
            assert!(call(&b, CallOutcome::Unavailable, 0));
        }
        // Much later, one failure and a success: the old three are gone, so
        // only 2 outcomes are in the window (< calls_min).
        assert!(call(&b, CallOutcome::Unavailable, 5_000));
        assert!(call(&b, CallOutcome::Success, 5_000));
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn half_open_lets_a_few_trials_through_and_they_decide() {
        let b = Breaker::new("t", config());
        for _ in 0..4 {
            call(&b, CallOutcome::Unavailable, 0);
        }
        assert_eq!(b.state(), State::Open);
        // After open_ms: two trial slots, the third caller fails fast.
        let p1 = b.try_call(1_000).expect("trial 1");
        let p2 = b.try_call(1_000).expect("trial 2");
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.try_call(1_000).is_none(), "only half_open_calls trials");
        p1.record(CallOutcome::Unavailable, 1_001);
        p2.record(CallOutcome::Unavailable, 1_001);
        assert_eq!(b.state(), State::Open, "the trials failed: open again");
        assert!(b.try_call(1_500).is_none());
        // Next trials succeed: closed, with an empty window.
        assert!(call(&b, CallOutcome::Success, 2_001));
        assert!(call(&b, CallOutcome::Success, 2_001));
        assert_eq!(b.state(), State::Closed);
        assert!(call(&b, CallOutcome::Unavailable, 2_002));
        assert_eq!(b.state(), State::Closed, "the old failures are forgotten");
    }

    #[test]
    fn a_permit_dropped_unrecorded_frees_its_trial_slot() {
        let b = Breaker::new("t", config());
        for _ in 0..4 {
            call(&b, CallOutcome::Unavailable, 0);
        }
        let p1 = b.try_call(1_000).expect("trial");
        let p2 = b.try_call(1_000).expect("trial");
        drop(p1); // the caller went away
        let p3 = b
            .try_call(1_000)
            .expect("the dropped trial's slot is free again");
        p2.record(CallOutcome::Success, 1_001);
        p3.record(CallOutcome::Success, 1_001);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn late_answers_from_an_earlier_state_do_not_vote() {
        let b = Breaker::new("t", config());
        let slow = b.try_call(0).expect("closed");
        for _ in 0..4 {
            call(&b, CallOutcome::Unavailable, 0);
        }
        assert_eq!(b.state(), State::Open);
        let t1 = b.try_call(1_000).expect("trial");
        // The call let through while closed answers during the trial.
        slow.record(CallOutcome::Unavailable, 1_000);
        assert_eq!(
            b.state(),
            State::HalfOpen,
            "its vote belongs to a closed window"
        );
        t1.record(CallOutcome::Success, 1_000);
        call(&b, CallOutcome::Success, 1_000);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn random_failures_at_a_fifth_of_calls_never_open_it_with_the_defaults() {
        // A fixed-seed roll of 200,000 calls failing 20% at random.
        let b = Breaker::new("t", BreakerConfig::default());
        let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..200_000i64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let outcome = if rng.is_multiple_of(5) {
                CallOutcome::Unavailable
            } else {
                CallOutcome::Success
            };
            assert!(call(&b, outcome, i / 10), "opened at call {i}");
        }
        // And a party that is down opens it within calls_min .. window_calls.
        let mut refused_after = None;
        for i in 0..200 {
            if !call(&b, CallOutcome::Unavailable, 20_000) {
                refused_after = Some(i);
                break;
            }
        }
        let n = refused_after.expect("a down party opens the circuit");
        assert!(n <= 100, "opened after {n} failed calls");
    }
}
