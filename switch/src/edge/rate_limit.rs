//! A token bucket per caller's key id, checked once the signature has
//! verified (so a forger cannot spend someone else's tokens) and before the
//! replay check records the nonce (so one caller's flood cannot fill the
//! replay window that every caller shares). Tokens are counted in
//! thousandths, in integers; time is the monotonic clock.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::RateLimitConfig;

/// One request's cost, in thousandths of a token.
const COST_MILLI: u64 = 1_000;

struct Bucket {
    tokens_milli: u64,
    at_ms: i64,
}

pub struct RateLimits {
    config: RateLimitConfig,
    /// By key id; only keys whose signature verified are entered, so the
    /// map is bounded by the keys provisioned.
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimits {
    pub fn new(config: RateLimitConfig) -> RateLimits {
        RateLimits {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one request's token for `key_id` at `now_ms`, or answer how many
    /// milliseconds until one is there.
    pub fn take(&self, key_id: &str, now_ms: i64) -> Result<(), u64> {
        let RateLimitConfig {
            requests_per_s,
            burst,
        } = self.config;
        if requests_per_s == 0 {
            return Ok(());
        }
        let full_milli = burst.max(1).saturating_mul(COST_MILLI);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key_id.to_string()).or_insert(Bucket {
            tokens_milli: full_milli,
            at_ms: now_ms,
        });
        // `requests_per_s` tokens a second is that many thousandths a
        // millisecond.
        let elapsed_ms = u64::try_from(now_ms - bucket.at_ms).unwrap_or(0);
        bucket.tokens_milli = bucket
            .tokens_milli
            .saturating_add(elapsed_ms.saturating_mul(requests_per_s))
            .min(full_milli);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.tokens_milli >= COST_MILLI {
            bucket.tokens_milli -= COST_MILLI;
            return Ok(());
        }
        Err((COST_MILLI - bucket.tokens_milli).div_ceil(requests_per_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(requests_per_s: u64, burst: u64) -> RateLimits {
        RateLimits::new(RateLimitConfig {
            requests_per_s,
            burst,
        })
    }

    #[test]
    fn a_burst_then_the_rate_and_each_key_on_its_own() {
        let l = limits(10, 3);
        for _ in 0..3 {
            assert_eq!(l.take("t-1", 0), Ok(()));
        }
        assert_eq!(l.take("t-1", 0), Err(100), "one token every 100 ms");
        assert_eq!(l.take("t-2", 0), Ok(()), "another key is not starved");
        assert_eq!(l.take("t-1", 50), Err(50));
        assert_eq!(l.take("t-1", 100), Ok(()));
        assert!(l.take("t-1", 100).is_err());
        // A long pause refills to the burst, no further.
        for _ in 0..3 {
            assert_eq!(l.take("t-1", 60_000), Ok(()));
        }
        assert!(l.take("t-1", 60_000).is_err());
        // Time that goes back (it cannot: monotonic) takes nothing.
        assert!(l.take("t-1", 0).is_err());
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let l = limits(0, 0);
        for _ in 0..10_000 {
            assert_eq!(l.take("t-1", 0), Ok(()));
        }
    }
}
