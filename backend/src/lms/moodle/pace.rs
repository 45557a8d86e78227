//! The client-side pace. Core Moodle has no rate limit of its own, so this only keeps one
//! process from flooding the site (and a proxy's 429/503 is a transient failure).

use crate::lms::LmsError;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The fastest pace accepted.
pub(super) const MAX_CALLS_PER_SECOND: u32 = 100;
/// The longest a call may expect to wait for its turn; beyond it the call is refused at once
/// (`LmsError::Saturated`): the push answers 503 and Pub/Sub backs off.
const MAX_QUEUE: Duration = Duration::from_secs(2);

/// Shared by all of one adapter's calls.
pub(super) struct Pacer {
    limiter: DefaultDirectRateLimiter,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Pacer {
    /// At most `calls_per_second` (0 counts as 1, more than [`MAX_CALLS_PER_SECOND`] is cut).
    pub(super) fn new(calls_per_second: u32) -> Self {
        let rate = NonZeroU32::new(calls_per_second.min(MAX_CALLS_PER_SECOND)).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::direct(Quota::per_second(rate)),
            waiting: AtomicUsize::new(0),
            max_waiting: (rate.get() as usize) * MAX_QUEUE.as_secs() as usize,
        }
    }

    /// Waits for the next call's turn; refused at once when the calls already waiting fill
    /// [`MAX_QUEUE`].
    pub(super) async fn ready(&self) -> Result<(), LmsError> {
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _leave = Leave(&self.waiting);
        if queued >= self.max_waiting {
            return Err(LmsError::Saturated { queued });
        }
        self.limiter.until_ready().await;
        Ok(())
    }
}

/// Leaves the waiting count when the call's wait ends (or its future is dropped).
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_beyond_two_seconds_of_pace_are_refused_at_once() {
        let pacer = std::sync::Arc::new(Pacer::new(2));
        let waiting: Vec<_> = (0..6)
            .map(|_| {
                let pacer = std::sync::Arc::clone(&pacer);
                tokio::spawn(async move { pacer.ready().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = pacer.ready().await;
        assert!(matches!(refused, Err(LmsError::Saturated { queued: 4 })), "{refused:?}");
        for call in waiting {
            assert!(call.await.unwrap().is_ok());
        }
        assert_eq!(pacer.waiting.load(Ordering::SeqCst), 0);
    }
}
