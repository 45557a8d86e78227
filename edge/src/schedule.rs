//! When a parked event is tried again, and how much a queue message may hold. Pure, so the
//! horizon is checked by a plain unit test against wrangler.toml's `max_retries`.

/// Cloudflare Queues take messages of at most 128 KB; an event's JSON is kept under this,
/// leaving room for the message's own serialization.
pub const QUEUE_EVENT_LIMIT: usize = 120 * 1024;

/// Shortest pause before a parked event is tried again.
pub const MIN_DELAY_SECS: u32 = 2;
/// Longest pause: with wrangler.toml's `max_retries = 100` the retries span just over Pub/Sub's
/// seven-day message retention before the dead-letter queue (see the test below).
pub const MAX_DELAY_SECS: u32 = 7_600;
// Cloudflare refuses retry delays over 12 hours.
const _: () = assert!(MAX_DELAY_SECS <= 43_200);

/// The pause before the next try of an event that has waited `age_secs` since the edge
/// received it: half its age (exponential in effect, the binding exposes no attempt count),
/// between [`MIN_DELAY_SECS`] and [`MAX_DELAY_SECS`]. The age is the event's own, so an event
/// re-parked from the dead-letter queue keeps its long pauses.
pub fn retry_delay_secs(age_secs: u64) -> u32 {
    u32::try_from(age_secs / 2).unwrap_or(u32::MAX).clamp(MIN_DELAY_SECS, MAX_DELAY_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `max_retries` of the consumer of `queue` in wrangler.toml's top level.
    fn max_retries(queue: &str) -> u64 {
        let toml = include_str!("../../wrangler.toml");
        let top = toml.split("\n[env.").next().unwrap_or_default();
        let block = top
            .split("[[queues.consumers]]")
            .skip(1)
            .find(|b| b.lines().any(|l| l.trim() == format!("queue = \"{queue}\"")))
            .unwrap_or_else(|| panic!("no consumer for {queue}"));
        let line = block.lines().find(|l| l.trim_start().starts_with("max_retries")).expect("max_retries");
        line.split('=').nth(1).unwrap_or_default().trim().parse().expect("a number")
    }

    #[test]
    fn the_retries_span_pubsubs_seven_day_retention() {
        let retries = max_retries("lms-bridge-events");
        // First try about 5 s after the webhook (two publish attempts and the batch timeout).
        let mut age: u64 = 5;
        for _ in 0..retries {
            age += u64::from(retry_delay_secs(age)) + 1;
        }
        let days = age as f64 / 86_400.0;
        assert!((7.0..7.5).contains(&days), "{retries} retries span {days:.2} days");
    }

    #[test]
    fn pauses_grow_with_age_within_bounds() {
        assert_eq!(retry_delay_secs(0), MIN_DELAY_SECS);
        assert_eq!(retry_delay_secs(60), 30);
        assert_eq!(retry_delay_secs(30 * 86_400), MAX_DELAY_SECS);
        assert_eq!(retry_delay_secs(u64::MAX), MAX_DELAY_SECS);
    }
}
