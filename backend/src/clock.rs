//! The clock, injected: the engine's decisions depend on the time (leases, expiry, the
//! sweep's cut-offs), so the simulator and tests must be able to set it.

use lms_bridge_shared::Timestamp;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock: what the server and the operator commands use.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_offset(time::OffsetDateTime::now_utc())
    }
}

/// A clock that only moves when told to, shared by reference between a test and the engine.
#[derive(Debug)]
pub struct ManualClock {
    unix_millis: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: Timestamp) -> Self {
        Self { unix_millis: AtomicI64::new(at.unix_millis()) }
    }

    /// Moves the clock to `at` (backwards too: tests of clock skew need it).
    pub fn set(&self, at: Timestamp) {
        self.unix_millis.store(at.unix_millis(), Ordering::SeqCst);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.unix_millis.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        // Out of range only after an absurd `advance`; a test would see the epoch and fail.
        Timestamp::from_unix_millis(self.unix_millis.load(Ordering::SeqCst)).unwrap_or_else(|_| Timestamp::epoch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = Timestamp::from_unix_millis(1_763_994_191_047).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now().unix_millis(), start.unix_millis() + 2000);
        clock.set(start);
        assert_eq!(clock.now(), start);
    }
}
