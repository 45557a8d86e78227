//! Every request goes through here: paced, authenticated with a cached token (refreshed once
//! on a 401), retried on what is worth retrying, and its failure typed in a text free of the
//! secret, the token, the Basic value, URLs and emails.

use super::{HotmartApi, HotmartApiError};
use crate::cli::Secret;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;
use std::num::NonZeroU32;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Hotmart's pauses come from a one-minute window: no hint needs a longer wait.
const MAX_HINT: Duration = Duration::from_secs(65);
/// V's client caps its exponential back-off here.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Hints above this are epoch seconds, not seconds to go (10^9 s is Sept. 2001).
const EPOCH_THRESHOLD: f64 = 1e9;
/// The longest piece of a Hotmart text an error carries.
const MAX_TEXT: usize = 160;
/// The longest piece of an unexpected body an error carries.
const MAX_SNIPPET: usize = 80;
/// Used when a token answer has no `expires_in`: short, so a wrong guess costs one refresh.
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(3600);

/// What a call is, for its errors, its logs and how its answers are read.
#[derive(Clone, Copy)]
pub(super) struct Call {
    pub(super) what: &'static str,
    /// A 502 here means the window was too wide (the documented meaning), not a hiccup.
    pub(super) windowed: bool,
    /// Whether a page token went with it (a 400 `invalid_token` is then about that token).
    pub(super) page_token: bool,
    /// A bare JSON array (`/purchases`) rather than `{"items":[…],"page_info":…}`.
    pub(super) array: bool,
}

/// A failure worth another try, and what it becomes once the tries run out.
enum Failure {
    Status { status: u16, error: String },
    RateLimited,
    NotJson { status: u16, snippet: String },
    Transport(String),
}

impl Failure {
    fn into_error(self, what: &'static str, attempts: u32) -> HotmartApiError {
        match self {
            Failure::Status { status, error } => HotmartApiError::Unavailable { what, status, error, attempts },
            Failure::RateLimited => HotmartApiError::RateLimited { what, attempts },
            Failure::NotJson { status, snippet } => HotmartApiError::NotJson { what, status, snippet },
            Failure::Transport(cause) => HotmartApiError::Transport { what, cause },
        }
    }
}

enum Attempt {
    Done(Value),
    Retry {
        failure: Failure,
        wait: Option<Duration>,
    },
    Fail(HotmartApiError),
    /// A 401 on an API call, with Hotmart's error code.
    Unauthorized(String),
}

/// A token and until when it is used (its lifetime minus a margin).
pub(super) struct CachedToken {
    value: Secret,
    fresh_until: Instant,
}

/// Pacing: `governor` keeps us under our share of the per-minute quota; the headers of each
/// answer stop every call when Hotmart says the window is spent (the quota is shared by
/// everything using the credential, so our own count is not enough).
pub(super) struct Pacer {
    limiter: DefaultDirectRateLimiter,
    blocked_until: std::sync::Mutex<Option<Instant>>,
}

impl Pacer {
    /// 90% of `per_minute`, in bursts small enough that a burst plus a minute's refill stays
    /// under the limit of a fixed one-minute window.
    pub(super) fn new(per_minute: u32) -> Self {
        let paced = NonZeroU32::new(per_minute.saturating_mul(9) / 10).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(per_minute / 20).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::direct(Quota::per_minute(paced).allow_burst(burst)),
            blocked_until: Default::default(),
        }
    }

    async fn ready(&self) {
        loop {
            let until = self.blocked_until.lock().map(|b| *b).unwrap_or(None);
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep(until - Instant::now()).await,
                _ => break,
            }
        }
        self.limiter.until_ready().await;
    }

    fn block_for(&self, wait: Duration) {
        if let Ok(mut blocked) = self.blocked_until.lock() {
            let until = Instant::now() + wait;
            if blocked.is_none_or(|b| b < until) {
                *blocked = Some(until);
            }
        }
    }
}

fn number_header(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(MAX_HINT).min(MAX_HINT)
}

fn now_secs(now: SystemTime) -> f64 {
    now.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// How long Hotmart asks us to wait: the longer of `Retry-After` (seconds or an HTTP date)
/// and `RateLimit-Reset` (seconds to go, as V reads it; an epoch if it can only be one).
fn hinted_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let retry_after = headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| {
        let v = v.trim();
        match v.parse::<f64>() {
            Ok(secs) if secs.is_finite() => Some(seconds(secs)),
            Ok(_) => None,
            Err(_) => {
                let at = chrono::DateTime::parse_from_rfc2822(v).ok()?.timestamp();
                #[allow(clippy::cast_precision_loss, reason = "seconds since 1970 fit an f64 exactly")]
                Some(seconds(at as f64 - now_secs(now)))
            }
        }
    });
    let reset = number_header(headers, "ratelimit-reset").map(|r| {
        if r >= EPOCH_THRESHOLD {
            seconds(r - now_secs(now))
        } else {
            seconds(r)
        }
    });
    [retry_after, reset].into_iter().flatten().max()
}

/// `base·2^(n-1) + U(0, base)`, capped: V's schedule (`0.5·2^n + U(0, 0.5)` s).
pub(super) fn backoff(base: Duration, failures: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let jitter = base.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
    exp.saturating_add(jitter).min(MAX_BACKOFF)
}

/// Hotmart's `error` code, reduced to what an error code can be.
fn error_code(body: &Value) -> Option<String> {
    let code = body.get("error")?.as_str()?;
    let clean: String = code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
    (!clean.is_empty()).then_some(clean)
}

impl HotmartApi {
    /// Hotmart's text made safe for errors and logs: no emails, URLs or credentials, bounded.
    fn scrub(&self, text: &str, limit: usize) -> String {
        let secrets = [self.client_secret.expose(), self.basic.expose().trim_start_matches("Basic ")];
        // Long unbroken words are tokens more often than not.
        crate::scrub::words_hiding(text, limit, |word| {
            (secrets.iter().any(|s| s.len() >= 4 && word.contains(s)) || word.len() > 60).then_some("[redacted]")
        })
    }

    fn not_json(&self, status: u16, text: &str) -> Failure {
        let snippet = if text.trim().is_empty() { "(empty body)".to_owned() } else { self.scrub(text, MAX_SNIPPET) };
        Failure::NotJson { status, snippet }
    }

    /// A token, from the cache while it is fresh.
    async fn token(&self) -> Result<Secret, HotmartApiError> {
        let mut slot = self.token.lock().await;
        if let Some(cached) = slot.as_ref().filter(|t| t.fresh_until > Instant::now()) {
            return Ok(cached.value.clone());
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *slot = Some(fresh);
        Ok(value)
    }

    /// Forgets `used` unless another call already replaced it.
    async fn drop_token(&self, used: &Secret) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.value == *used) {
            *slot = None;
        }
    }

    /// The client-credentials call as Hotmart documents it: everything in the query plus the
    /// Basic header, no body.
    async fn fetch_token(&self) -> Result<CachedToken, HotmartApiError> {
        const WHAT: &str = "the token call";
        let url = format!("{}/security/oauth/token", self.auth_url);
        let mut basic = HeaderValue::from_str(self.basic.expose())
            .map_err(|_| HotmartApiError::Config("HOTMART_BASIC holds characters an HTTP header cannot carry"))?;
        basic.set_sensitive(true);
        let mut failures = 0;
        loop {
            let sent_at = Instant::now();
            let sent = self
                .http
                .post(&url)
                .query(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", self.client_id.as_str()),
                    ("client_secret", self.client_secret.expose()),
                ])
                .header(AUTHORIZATION, basic.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(ACCEPT, "application/json")
                .timeout(self.timeout)
                .send()
                .await;
            let attempt = match sent {
                Err(e) => Attempt::Retry {
                    failure: Failure::Transport(crate::scrub::transport_failure("Hotmart", &e)),
                    wait: None,
                },
                Ok(response) => self.read_token(response).await,
            };
            let (failure, wait) = match attempt {
                Attempt::Done(body) => return self.cached_token(&body, sent_at),
                Attempt::Fail(error) => return Err(error),
                Attempt::Unauthorized(error) => {
                    return Err(HotmartApiError::Credentials { status: 401, error: Some(error) })
                }
                Attempt::Retry { failure, wait } => (failure, wait),
            };
            failures += 1;
            if failures >= self.max_attempts {
                return Err(failure.into_error(WHAT, failures));
            }
            let wait = wait.unwrap_or_else(|| backoff(self.backoff_base, failures));
            tracing::warn!(failures, wait_ms = wait.as_millis() as u64, "Hotmart token call failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn read_token(&self, response: reqwest::Response) -> Attempt {
        let status = response.status().as_u16();
        let wait = hinted_wait(response.headers(), SystemTime::now()).map(|w| w.max(self.backoff_base));
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) => {
                return Attempt::Retry {
                    failure: Failure::Transport(crate::scrub::transport_failure("Hotmart", &e)),
                    wait: None,
                }
            }
        };
        let body: Option<Value> = serde_json::from_str(&text).ok();
        match status {
            200..=299 => match body {
                Some(body) if body.get("access_token").and_then(Value::as_str).is_some_and(|t| !t.is_empty()) => {
                    Attempt::Done(body)
                }
                Some(body) if body.is_object() => Attempt::Fail(HotmartApiError::TokenAnswer {
                    error: error_code(&body).unwrap_or_else(|| "no access_token".into()),
                }),
                _ => Attempt::Retry { failure: self.not_json(status, &text), wait: None },
            },
            400 | 401 | 403 => {
                Attempt::Fail(HotmartApiError::Credentials { status, error: body.as_ref().and_then(error_code) })
            }
            429 => Attempt::Retry { failure: Failure::RateLimited, wait },
            _ if status >= 500 || body.is_none() => {
                let failure = match body.as_ref() {
                    Some(b) => Failure::Status { status, error: error_code(b).unwrap_or_default() },
                    None => self.not_json(status, &text),
                };
                Attempt::Retry { failure, wait: None }
            }
            _ => Attempt::Fail(HotmartApiError::Unexpected {
                what: "the token call",
                status,
                error: body.as_ref().and_then(error_code).unwrap_or_default(),
            }),
        }
    }

    fn cached_token(&self, body: &Value, sent_at: Instant) -> Result<CachedToken, HotmartApiError> {
        let token = body.get("access_token").and_then(Value::as_str).unwrap_or_default();
        let lifetime = match body.get("expires_in") {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(UNKNOWN_LIFETIME, Duration::from_secs_f64);
        // Refresh 5 minutes early (V does), or at half-life for short-lived tokens.
        let margin = if lifetime >= Duration::from_secs(600) { Duration::from_secs(300) } else { lifetime / 2 };
        tracing::info!(expires_in_secs = lifetime.as_secs(), "fetched a Hotmart access token");
        Ok(CachedToken { value: Secret::new(token), fresh_until: sent_at + (lifetime - margin) })
    }

    /// `GET {api_url}{path}` with these parameters: its JSON once it is the expected shape.
    pub(super) async fn get_json(
        &self,
        call: Call,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Value, HotmartApiError> {
        let url = format!("{}{path}", self.api_url);
        let mut failures = 0;
        let mut refreshed = false;
        loop {
            self.pacer.ready().await;
            let token = self.token().await?;
            let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| HotmartApiError::TokenAnswer { error: "access_token is not a header value".into() })?;
            bearer.set_sensitive(true);
            let sent = self
                .http
                .get(&url)
                .query(params)
                .header(AUTHORIZATION, bearer)
                .header(ACCEPT, "application/json")
                .timeout(self.timeout)
                .send()
                .await;
            let attempt = match sent {
                Err(e) => Attempt::Retry {
                    failure: Failure::Transport(crate::scrub::transport_failure("Hotmart", &e)),
                    wait: None,
                },
                Ok(response) => self.read(call, response).await,
            };
            let (failure, wait) = match attempt {
                Attempt::Done(body) => return Ok(body),
                Attempt::Fail(error) => return Err(error),
                Attempt::Unauthorized(error) if refreshed => return Err(HotmartApiError::Unauthorized { error }),
                Attempt::Unauthorized(error) => {
                    tracing::info!(what = call.what, error, "Hotmart refused the access token; fetching a new one");
                    refreshed = true;
                    self.drop_token(&token).await;
                    continue;
                }
                Attempt::Retry { failure, wait } => (failure, wait),
            };
            failures += 1;
            if failures >= self.max_attempts {
                return Err(failure.into_error(call.what, failures));
            }
            let wait = wait.unwrap_or_else(|| backoff(self.backoff_base, failures));
            tracing::warn!(
                what = call.what,
                failures,
                wait_ms = wait.as_millis() as u64,
                "Hotmart call failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn read(&self, call: Call, response: reqwest::Response) -> Attempt {
        let status = response.status().as_u16();
        let hint = hinted_wait(response.headers(), SystemTime::now()).map(|w| w.max(self.backoff_base));
        let spent = number_header(response.headers(), "ratelimit-remaining")
            .or_else(|| number_header(response.headers(), "x-ratelimit-remaining-minute"))
            .is_some_and(|r| r <= 0.0);
        if status == 429 || spent {
            let wait = hint.unwrap_or_else(|| backoff(self.backoff_base, 1));
            tracing::warn!(
                what = call.what,
                wait_ms = wait.as_millis() as u64,
                "Hotmart rate limit reached; pausing calls"
            );
            self.pacer.block_for(wait);
        }
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) => {
                return Attempt::Retry {
                    failure: Failure::Transport(crate::scrub::transport_failure("Hotmart", &e)),
                    wait: None,
                }
            }
        };
        tracing::debug!(what = call.what, status, "Hotmart answered");
        let body: Option<Value> = serde_json::from_str(&text).ok();
        let code = || body.as_ref().and_then(error_code);
        match status {
            200..=299 => match body {
                Some(body) if call.array && (body.is_array() || body.get("items").is_some_and(Value::is_array)) => {
                    Attempt::Done(body)
                }
                Some(body) if !call.array && body.get("items").is_some_and(Value::is_array) => Attempt::Done(body),
                // "HTTP 200 with error/message in the body on some endpoints" (CLI).
                Some(body) if body.get("error").is_some() => Attempt::Retry {
                    failure: Failure::Status { status, error: error_code(&body).unwrap_or_else(|| "error".into()) },
                    wait: None,
                },
                Some(_) => Attempt::Retry {
                    failure: Failure::NotJson { status, snippet: "(JSON without the expected items)".into() },
                    wait: None,
                },
                None => Attempt::Retry { failure: self.not_json(status, &text), wait: None },
            },
            401 => Attempt::Unauthorized(code().unwrap_or_else(|| "unauthorized".into())),
            403 => Attempt::Fail(HotmartApiError::Forbidden { what: call.what, error: code().unwrap_or_default() }),
            404 => Attempt::Fail(HotmartApiError::NotFound { what: call.what }),
            400 if call.page_token && code().as_deref() == Some("invalid_token") => {
                Attempt::Fail(HotmartApiError::InvalidPageToken { what: call.what })
            }
            400 => {
                let description = body
                    .as_ref()
                    .and_then(|b| b.get("error_description").or_else(|| b.get("message")))
                    .and_then(Value::as_str)
                    .map_or_else(|| "(no description)".to_owned(), |d| self.scrub(d, MAX_TEXT));
                Attempt::Fail(HotmartApiError::InvalidParameter {
                    what: call.what,
                    error: code().unwrap_or_else(|| "(none)".into()),
                    description,
                })
            }
            // Kong's body or Hotmart's envelope: the status says enough.
            429 => Attempt::Retry { failure: Failure::RateLimited, wait: hint },
            // Documented: "the request took more than 30 seconds … review the dates". A proxy's
            // HTML 502 is not that, and is retried below.
            502 if call.windowed && body.is_some() => Attempt::Fail(HotmartApiError::QueryTooWide {
                what: call.what,
                reason: "HTTP 502: Hotmart gave up on the query after 30 s",
            }),
            408 | 500..=599 => {
                let failure = match body.as_ref() {
                    Some(b) => Failure::Status { status, error: error_code(b).unwrap_or_default() },
                    None => self.not_json(status, &text),
                };
                Attempt::Retry { failure, wait: None }
            }
            _ => Attempt::Fail(HotmartApiError::Unexpected {
                what: call.what,
                status,
                error: code().unwrap_or_default(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_longer_hint_wins_and_an_epoch_reset_is_read_as_one() {
        let now = SystemTime::now();
        let both = headers(&[("retry-after", "3"), ("ratelimit-reset", "7")]);
        assert_eq!(hinted_wait(&both, now), Some(Duration::from_secs(7)));
        let epoch = format!("{}", now_secs(now) as u64 + 20);
        let wait = hinted_wait(&headers(&[("ratelimit-reset", &epoch)]), now).unwrap();
        assert!(wait > Duration::from_secs(18) && wait <= Duration::from_secs(20), "{wait:?}");
        assert_eq!(hinted_wait(&headers(&[("retry-after", "86400")]), now), Some(MAX_HINT));
        assert_eq!(hinted_wait(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(500);
        for n in 1..=4u32 {
            let wait = backoff(base, n);
            let floor = base * (1 << (n - 1));
            assert!(wait >= floor && wait < floor + base, "{n}: {wait:?}");
        }
        assert_eq!(backoff(base, 30), MAX_BACKOFF);
    }
}
