//! The faults a simulator can be told to show: a configured rate of
//! unavailability and lost answers, and a switch a test flips at run time.

use crate::config::SimConfig;

/// A fault a test switches on in a running simulator (a bank's credits, a
/// biller's payments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    None = 0,
    /// The work is done but never answered; status inquiries answer.
    LoseAnswers = 1,
    /// The work is done but never answered, and status inquiries fail.
    LoseAnswersAndStatus = 2,
    /// Down: every call (status inquiries and reversals too) fails as
    /// unavailable, after the latency, and does nothing.
    Down = 3,
}

/// A `Fault` and extra latency, switched at run time.
#[derive(Default)]
pub struct FaultSwitch {
    fault: std::sync::atomic::AtomicU8,
    extra_latency_ms: std::sync::atomic::AtomicU64,
}

impl FaultSwitch {
    pub fn set(&self, f: Fault) {
        self.fault
            .store(f as u8, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn get(&self) -> Fault {
        match self.fault.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Fault::LoseAnswers,
            2 => Fault::LoseAnswersAndStatus,
            3 => Fault::Down,
            _ => Fault::None,
        }
    }
    /// Added to the configured latency of every call from now on.
    pub fn set_extra_latency_ms(&self, ms: u64) {
        self.extra_latency_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }
    /// The configured latency plus the extra.
    pub fn latency(&self, config: &SimConfig) -> std::time::Duration {
        let extra = self
            .extra_latency_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        std::time::Duration::from_millis(config.latency_ms.saturating_add(extra))
    }
}

/// What the configuration makes of one simulated call.
pub enum Fate {
    Answer,
    Unavailable,
    LoseResponse,
}

/// Roll `rng` (xorshift) against the configured rates.
pub fn fate(config: &SimConfig, rng: &mut u64) -> Fate {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    // Not money: a probability roll in [0, 1).
    let roll = (*rng >> 11) as f64 / (1u64 << 53) as f64;
    if roll < config.error_rate {
        Fate::Unavailable
    } else if roll < config.error_rate + config.lost_response_rate {
        Fate::LoseResponse
    } else {
        Fate::Answer
    }
}
