//! The client-side pace of an LMS adapter, shared by all of its calls: at most N calls per
//! second, and a bounded queue, so a burst is refused at once (`LmsError::Saturated`: the push
//! answers 503 and Pub/Sub backs off) instead of piling up behind the pace.

use crate::lms::LmsError;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The longest a call may expect to wait for its turn; beyond it the call is refused at once.
const MAX_QUEUE: Duration = Duration::from_secs(2);

pub(crate) struct Pace {
    limiter: DefaultDirectRateLimiter,
    /// Calls waiting for their turn now.
    waiting: AtomicUsize,
    /// How many may wait: [`MAX_QUEUE`] at this pace.
    max_waiting: usize,
}

impl Pace {
    /// At most `calls_per_second` (0 counts as 1, more than `max` is cut to `max`).
    pub(crate) fn new(calls_per_second: u32, max: u32) -> Self {
        let rate = NonZeroU32::new(calls_per_second.min(max)).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::direct(Quota::per_second(rate)),
            waiting: AtomicUsize::new(0),
            max_waiting: (rate.get() as usize) * MAX_QUEUE.as_secs() as usize,
        }
    }

    /// Waits for the next call's turn; refused at once when the calls already waiting fill
    /// [`MAX_QUEUE`].
    pub(crate) async fn ready(&self) -> Result<(), LmsError> {
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _leave = Leave(&self.waiting);
        if queued >= self.max_waiting {
            return Err(LmsError::Saturated { queued });
        }
        self.limiter.until_ready().await;
        Ok(())
    }

    /// Calls waiting now.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
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
        let pace = std::sync::Arc::new(Pace::new(2, 100));
        let waiting: Vec<_> = (0..6)
            .map(|_| {
                let pace = std::sync::Arc::clone(&pace);
                tokio::spawn(async move { pace.ready().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = pace.ready().await;
        assert!(matches!(refused, Err(LmsError::Saturated { queued: 4 })), "{refused:?}");
        for call in waiting {
            assert!(call.await.unwrap().is_ok());
        }
        assert_eq!(pace.waiting(), 0);
    }
}
