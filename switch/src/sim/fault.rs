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
}

/// A `Fault`, switched at run time.
#[derive(Default)]
pub struct FaultSwitch(std::sync::atomic::AtomicU8);

impl FaultSwitch {
    pub fn set(&self, f: Fault) {
        self.0.store(f as u8, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn get(&self) -> Fault {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Fault::LoseAnswers,
            2 => Fault::LoseAnswersAndStatus,
            _ => Fault::None,
        }
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
