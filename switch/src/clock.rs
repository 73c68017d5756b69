//! The switch's time, and the only place in the switch that reads the
//! machine's wall clock.
//!
//! The wall clock is read once, when the process first asks for the time;
//! from then on the switch's time is that reading plus the time elapsed on
//! the monotonic clock. A wall clock set backwards or forwards while the
//! switch serves (an operator's mistake, a virtual machine resumed, an NTP
//! step) therefore moves nothing the switch decides by time: a cash-out's
//! confirmation deadline, a QR code's expiry, a window's scheduled close, a
//! request signature's freshness, the ledger's timestamps. The monotonic
//! clock is still disciplined in rate by NTP, so the switch does not drift
//! away from true time; it only ignores steps. A step is reported (a gauge
//! and one WARN line per change) and adopted at the next restart, where the
//! ledger's timestamps still strictly increase whatever the wall clock says.
//!
//! Imports nothing of the switch: every layer may use it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What the wall clock said when the process first asked, and when that
/// was on the monotonic clock.
struct Anchor {
    wall_ms: i64,
    at: Instant,
}

static ANCHOR: OnceLock<Anchor> = OnceLock::new();

/// A step of the wall clock simulated by a fault drill ([`step_wall_ms`]);
/// zero in a process that runs no drill.
static WALL_STEP_MS: AtomicI64 = AtomicI64::new(0);

/// The offset last reported by [`observe_wall`], so that a step is logged
/// once, not every pass.
static REPORTED_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// An offset between the wall clock and the switch's time below this is
/// noise (the millisecond truncations, NTP's slewing), not a step.
const STEP_REPORT_MS: i64 = 1_000;

fn anchor() -> &'static Anchor {
    ANCHOR.get_or_init(|| Anchor {
        wall_ms: wall_ms(),
        at: Instant::now(),
    })
}

/// The machine's wall clock in milliseconds since the UNIX epoch, with any
/// step a drill simulated. Only [`observe_wall`] and the anchor read it.
pub fn wall_ms() -> i64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    wall + WALL_STEP_MS.load(Ordering::Relaxed)
}

/// The switch's time: milliseconds since the UNIX epoch, never stepped
/// while the process lives.
pub fn now_ms() -> i64 {
    let a = anchor();
    a.wall_ms + a.at.elapsed().as_millis() as i64
}

/// [`now_ms`] in nanoseconds, for the ledger's timestamps.
pub fn now_ns() -> u64 {
    let a = anchor();
    (a.wall_ms.max(0) as u64) * 1_000_000 + a.at.elapsed().as_nanos() as u64
}

/// Milliseconds since the first call in this process, for durations and
/// deadlines that never leave it (a breaker's open period).
pub fn monotonic_ms() -> i64 {
    anchor().at.elapsed().as_millis() as i64
}

/// Fault drills and their tests: make the wall clock, as the switch reads
/// it, jump by `delta_ms` (negative: backwards), as setting the machine's
/// clock would. Nothing else in the switch calls it.
pub fn step_wall_ms(delta_ms: i64) {
    WALL_STEP_MS.fetch_add(delta_ms, Ordering::Relaxed);
}

/// Compare the wall clock with the switch's time: publish the difference as
/// `switch_wall_clock_offset_ms` and log each new step once. Called by the
/// maintenance loop; returns the offset.
pub fn observe_wall() -> i64 {
    let offset_ms = wall_ms() - now_ms();
    metrics::gauge!("switch_wall_clock_offset_ms").set(offset_ms as f64);
    let reported = REPORTED_OFFSET_MS.load(Ordering::Relaxed);
    if (offset_ms - reported).abs() >= STEP_REPORT_MS {
        REPORTED_OFFSET_MS.store(offset_ms, Ordering::Relaxed);
        tracing::warn!(
            offset_ms,
            "the wall clock was stepped; the switch keeps its own time until it restarts"
        );
    }
    offset_ms
}

/// The switch's time as the ledger's [`ledger::Clock`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SwitchClock;

impl ledger::Clock for SwitchClock {
    fn now_ns(&self) -> u64 {
        now_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_of_the_wall_clock_moves_nothing_but_the_offset() {
        let before = now_ms();
        step_wall_ms(-10 * 60_000);
        let backwards = now_ms();
        assert!(backwards >= before, "time does not go back with the wall");
        assert!(observe_wall() <= -10 * 60_000 + STEP_REPORT_MS);
        step_wall_ms(20 * 60_000);
        let forwards = now_ms();
        assert!(
            forwards - backwards < 60_000,
            "time does not jump with the wall"
        );
        assert!(observe_wall() >= 10 * 60_000 - STEP_REPORT_MS);
        step_wall_ms(-10 * 60_000);
        assert!(observe_wall().abs() < STEP_REPORT_MS);
        assert!(now_ns() / 1_000_000 >= forwards as u64);
    }
}
