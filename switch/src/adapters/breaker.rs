//! The circuit breaker in front of every bank and biller.

/// Stops calling a bank that keeps failing: after `failures_max`
/// consecutive failures (unavailable or timed out) calls fail fast for
/// `cooldown_ms`; then one trial call decides whether it closes again.
pub struct Breaker {
    state: std::sync::Mutex<BreakerState>,
    failures_max: u32,
    cooldown_ms: i64,
}

#[derive(Default)]
struct BreakerState {
    consecutive_failures: u32,
    /// Non-zero while open (or half-open once passed).
    open_until_ms: i64,
    trial_in_flight: bool,
}

impl Breaker {
    pub fn new(failures_max: u32, cooldown_ms: u64) -> Breaker {
        Breaker {
            state: Default::default(),
            failures_max: failures_max.max(1),
            cooldown_ms: cooldown_ms as i64,
        }
    }

    /// May a call go to the bank now?
    pub fn allow(&self, now_ms: i64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.open_until_ms == 0 {
            return true;
        }
        if now_ms < s.open_until_ms || s.trial_in_flight {
            return false;
        }
        s.trial_in_flight = true;
        true
    }

    /// The outcome of a call that was allowed: did the bank answer?
    pub fn record(&self, answered: bool, now_ms: i64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.trial_in_flight = false;
        if answered {
            *s = BreakerState::default();
            return;
        }
        s.consecutive_failures += 1;
        if s.consecutive_failures >= self.failures_max {
            s.open_until_ms = now_ms + self.cooldown_ms;
        }
    }

    pub fn is_open(&self, now_ms: i64) -> bool {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.open_until_ms != 0 && now_ms < s.open_until_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_failures_and_one_trial_closes_it() {
        let b = Breaker::new(3, 1_000);
        for _ in 0..2 {
            assert!(b.allow(0));
            b.record(false, 0);
        }
        assert!(b.allow(0), "two failures: still closed");
        b.record(false, 0);
        assert!(!b.allow(10) && b.is_open(10), "three failures: open");
        assert!(b.allow(1_000), "after the cooldown: one trial");
        assert!(!b.allow(1_001), "only one trial at a time");
        b.record(false, 1_001);
        assert!(!b.allow(1_500), "the trial failed: open again");
        assert!(b.allow(2_001));
        b.record(true, 2_001);
        assert!(
            b.allow(2_002) && b.allow(2_003),
            "the trial succeeded: closed"
        );
    }
}
