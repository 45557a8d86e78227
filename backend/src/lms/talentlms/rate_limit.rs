//! Pacing, and stopping every call after a rate-limit answer until TalentLMS lets us back in.

use crate::lms::pace::Pace;
use crate::lms::LmsError;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The shortest pause after a rate-limit answer, whatever its headers say (a reset in the
/// past, from clock skew, must not turn into a tight retry loop).
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The pause after a rate-limit answer that names no time.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(5);
/// The longest pause: TalentLMS's quota window is an hour.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// An `X-RateLimit-Reset` below this is seconds to go, not an epoch (10^9 s is Sept. 2001).
const EPOCH_THRESHOLD: f64 = 1e9;
/// Under TalentLMS's 200 calls per 5 s (40/s) per portal, with a margin.
const MAX_CALLS_PER_SECOND: u32 = 35;

/// Shared by all of one adapter's calls: the pace and the quota are per portal, not per call.
pub(super) struct Pacer {
    pace: Pace,
    /// Set when TalentLMS said the quota is spent: calls fail fast until then.
    blocked_until: Mutex<Option<Instant>>,
}

impl Pacer {
    /// At most `calls_per_second` (0 counts as 1, more than [`MAX_CALLS_PER_SECOND`] is cut).
    pub(super) fn new(calls_per_second: u32) -> Self {
        Self { pace: Pace::new(calls_per_second, MAX_CALLS_PER_SECOND), blocked_until: Mutex::new(None) }
    }

    /// Waits for the next call's turn; fails fast while TalentLMS asked us to stop, and when
    /// the calls already waiting fill the pace's queue.
    pub(super) async fn ready(&self) -> Result<(), LmsError> {
        self.check_quota()?;
        self.pace.ready().await
    }

    fn check_quota(&self) -> Result<(), LmsError> {
        let blocked = self.blocked_until.lock().map(|b| *b).unwrap_or(None);
        match blocked {
            Some(until) if until > Instant::now() => Err(LmsError::Transient {
                message: "TalentLMS rate limit reached; waiting for the window to reset".into(),
                retry_after: Some(until - Instant::now()),
            }),
            _ => Ok(()),
        }
    }

    /// Remembers when TalentLMS lets us back in, from `Retry-After` or `X-RateLimit-*`.
    pub(super) fn note(&self, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
        let remaining = number_header(headers, "x-ratelimit-remaining");
        if status != StatusCode::TOO_MANY_REQUESTS && remaining != Some(0.0) {
            return None;
        }
        let wait = backoff(headers, SystemTime::now());
        tracing::warn!(wait_secs = wait.as_secs_f64(), "TalentLMS rate limit reached; pausing calls");
        if let Ok(mut blocked) = self.blocked_until.lock() {
            *blocked = Some(Instant::now() + wait);
        }
        Some(wait)
    }
}

fn number_header(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(MAX_BACKOFF)
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return secs.is_finite().then(|| seconds(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "seconds since 1970 fit an f64 exactly")]
    let at = date.timestamp() as f64;
    Some(seconds(at - now))
}

/// `X-RateLimit-Reset`: an epoch (UTC seconds), or, below [`EPOCH_THRESHOLD`], seconds to go.
fn reset_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let reset = number_header(headers, "x-ratelimit-reset")?;
    if reset < EPOCH_THRESHOLD {
        return Some(seconds(reset));
    }
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    Some(seconds(reset - now))
}

/// How long to stop calling after a rate-limit answer: the longest the headers ask for,
/// never less than [`MIN_BACKOFF`] (a reset already past means "soon", not "now").
fn backoff(headers: &HeaderMap, now: SystemTime) -> Duration {
    let asked = [retry_after(headers, now), reset_wait(headers, now)].into_iter().flatten().max();
    asked.unwrap_or(DEFAULT_BACKOFF).clamp(MIN_BACKOFF, MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[tokio::test]
    async fn calls_beyond_two_seconds_of_pace_are_refused_at_once_and_the_queue_frees_up() {
        let pacer = std::sync::Arc::new(Pacer::new(5));
        // At 5 calls/s, ten may wait (two seconds' worth); the first five go at once.
        let waiting: Vec<_> = (0..15)
            .map(|_| {
                let pacer = std::sync::Arc::clone(&pacer);
                tokio::spawn(async move { pacer.ready().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = pacer.ready().await;
        assert!(matches!(refused, Err(LmsError::Saturated { queued: 10 })), "{refused:?}");
        assert!(refused.is_err_and(|e| e.is_pause()));
        let mut done = 0;
        for call in waiting {
            if call.await.unwrap().is_ok() {
                done += 1;
            }
        }
        assert_eq!(done, 15, "every call that was let wait got its turn");
        assert_eq!(pacer.pace.waiting(), 0);
        assert!(pacer.ready().await.is_ok(), "an empty queue takes calls again");
    }

    fn epoch(at: SystemTime) -> u64 {
        at.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn a_reset_in_seconds_to_go_is_read_as_such() {
        let now = SystemTime::now();
        let wait = backoff(&headers(&[("x-ratelimit-reset", "30".into())]), now);
        assert_eq!(wait, Duration::from_secs(30));
    }

    #[test]
    fn a_reset_epoch_in_the_future_is_waited_for() {
        let now = SystemTime::now();
        let wait = backoff(&headers(&[("x-ratelimit-reset", (epoch(now) + 40).to_string())]), now);
        assert!(wait > Duration::from_secs(38) && wait <= Duration::from_secs(40), "{wait:?}");
    }

    #[test]
    fn a_reset_epoch_in_the_past_backs_off_the_floor() {
        let now = SystemTime::now();
        let wait = backoff(&headers(&[("x-ratelimit-reset", (epoch(now) - 120).to_string())]), now);
        assert_eq!(wait, MIN_BACKOFF);
        let wait = backoff(&headers(&[("x-ratelimit-reset", "0".into()), ("retry-after", "0".into())]), now);
        assert_eq!(wait, MIN_BACKOFF);
    }

    #[test]
    fn retry_after_is_honoured_and_the_longer_hint_wins() {
        let now = SystemTime::now();
        let past = (epoch(now) - 120).to_string();
        assert_eq!(backoff(&headers(&[("retry-after", "7".into())]), now), Duration::from_secs(7));
        let both = headers(&[("retry-after", "7".into()), ("x-ratelimit-reset", past)]);
        assert_eq!(backoff(&both, now), Duration::from_secs(7));
        let both = headers(&[("retry-after", "2".into()), ("x-ratelimit-reset", "9".into())]);
        assert_eq!(backoff(&both, now), Duration::from_secs(9));
        let date = chrono::DateTime::from_timestamp(i64::try_from(epoch(now)).unwrap() + 20, 0).unwrap();
        let http_date = date.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let wait = backoff(&headers(&[("retry-after", http_date)]), now);
        assert!(wait > Duration::from_secs(18) && wait <= Duration::from_secs(20), "{wait:?}");
    }

    #[test]
    fn a_rate_limit_without_hints_waits_the_default_and_nothing_waits_over_an_hour() {
        let now = SystemTime::now();
        assert_eq!(backoff(&HeaderMap::new(), now), DEFAULT_BACKOFF);
        assert_eq!(backoff(&headers(&[("retry-after", "nonsense".into())]), now), DEFAULT_BACKOFF);
        assert_eq!(backoff(&headers(&[("retry-after", "86400".into())]), now), MAX_BACKOFF);
    }
}
