//! A cached JSON Web Key Set: the signing keys of a token issuer (Google's OIDC keys for push
//! tokens, Identity-Aware Proxy's keys for the admin console), fetched over HTTPS, kept for the
//! response's `Cache-Control: max-age`, refetched at most once per [`MIN_REFRESH`].
//!
//! Keys are read by `kty`: `RSA` (`n`, `e`) and `EC` on P-256 (`x`, `y`). A key of another type,
//! curve or use is skipped, not an error: one unusable key must not hide the others. Which
//! algorithm a key may verify is the verifier's business; jsonwebtoken refuses an RSA key for an
//! ES256 token and the reverse.
//!
//! Errors are fixed texts: never the URL (its query may hold a key), never the answer's body.

use base64::Engine as _;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Fetch the JWKS at most this often, whatever happens (an unknown `kid`, expiry, a failing
/// endpoint): a flood of forged kids must not become a flood of fetches to Google.
pub const MIN_REFRESH: Duration = Duration::from_secs(30);
/// How long a key set is fresh when the response names no `Cache-Control: max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
/// The longest a key set is trusted without asking again, whatever `max-age` says.
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long one fetch may take before it counts as failed.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The key set could not be fetched (a retryable failure, not the caller's fault). The text is
/// a fixed description (`HTTP 500`, `timed out`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// One key as published. Every field is optional so a key of another shape is skipped on its
/// own instead of failing the whole set.
#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

impl Jwk {
    /// The key under its `kid`, when it is a signing key of a type we verify with.
    fn into_key(self) -> Option<(String, DecodingKey)> {
        let kid = self.kid?;
        if self.usage.as_deref().is_some_and(|usage| usage != "sig") {
            return None;
        }
        let key = match self.kty.as_deref()? {
            "RSA" => DecodingKey::from_rsa_components(&self.n?, &self.e?).ok()?,
            // P-256 only (ES256, what IAP signs with). jsonwebtoken takes any coordinates and
            // would fail only at verification, as a bad signature: check their size here.
            "EC" if self.crv.as_deref() == Some("P-256") => {
                let (x, y) = (self.x?, self.y?);
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let coordinate = |c: &str| b64.decode(c).ok().filter(|bytes| bytes.len() == 32);
                coordinate(&x)?;
                coordinate(&y)?;
                DecodingKey::from_ec_components(&x, &y).ok()?
            }
            _ => return None,
        };
        Some((kid, key))
    }
}

/// The cached key set. Only ever locked for a moment, never across an `.await`.
#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    /// Until when `keys` is fresh (from the response's `Cache-Control: max-age`).
    fresh_until: Option<Instant>,
    /// When a fetch was last started, successful or not.
    last_attempt: Option<Instant>,
    /// Why the last fetch failed, if it did (cleared by a success).
    last_error: Option<FetchError>,
}

/// The keys of one issuer, fetched on demand and shared by every request.
pub struct JwksCache {
    url: String,
    min_refresh: Duration,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Single flight: whoever holds it is the one fetching; the others wait, then read the cache.
    /// It guards no data, so holding it across the fetch blocks nobody who has a cached key.
    fetching: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &without_query(&self.url))
            .field("min_refresh", &self.min_refresh)
            .finish_non_exhaustive()
    }
}

/// A URL without its query string and fragment (for logs and errors).
pub fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or_default()
}

/// `max-age` of a `Cache-Control` value.
fn max_age(cache_control: Option<&str>) -> Option<Duration> {
    cache_control?
        .split(',')
        .find_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            name.trim().eq_ignore_ascii_case("max-age").then(|| value.trim().trim_matches('"').parse().ok()).flatten()
        })
        .map(Duration::from_secs)
}

/// A fetch failure, without the URL reqwest would put in it.
fn fetch_error(error: &reqwest::Error) -> FetchError {
    let text = if error.is_timeout() {
        "timed out".to_owned()
    } else if let Some(status) = error.status() {
        format!("HTTP {}", status.as_u16())
    } else if error.is_decode() {
        "the answer is not a JWK set".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    FetchError(text)
}

impl JwksCache {
    /// The keys published at `url`, fetched at most once per `min_refresh` ([`MIN_REFRESH`];
    /// shorter in tests).
    pub fn new(url: String, min_refresh: Duration) -> Self {
        let http = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().unwrap_or_default();
        Self {
            url,
            min_refresh,
            http,
            cache: RwLock::new(KeyCache::default()),
            fetching: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many fetches were started (for tests and diagnostics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn cache(&self) -> std::sync::RwLockReadGuard<'_, KeyCache> {
        self.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cache_mut(&self) -> std::sync::RwLockWriteGuard<'_, KeyCache> {
        self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached key for `kid` if the set is still fresh.
    fn fresh_key(&self, kid: &str) -> Option<DecodingKey> {
        let cache = self.cache();
        let fresh = cache.fresh_until.is_some_and(|until| Instant::now() < until);
        fresh.then(|| cache.keys.get(kid).cloned()).flatten()
    }

    /// The key for `kid` (`None`: the issuer publishes no such key): from the cache while it is
    /// fresh, else after one fetch (one at a time; at most one per `min_refresh`). A stale key is
    /// still used when refetching is not allowed yet or fails: keys rotate slowly, and an outage
    /// of the issuer's endpoint must not stop tokens signed with a key we already know.
    pub async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, FetchError> {
        if let Some(key) = self.fresh_key(kid) {
            return Ok(Some(key));
        }
        let _flight = self.fetching.lock().await;
        // Someone else may have fetched while we waited.
        if let Some(key) = self.fresh_key(kid) {
            return Ok(Some(key));
        }
        {
            let mut cache = self.cache_mut();
            if cache.last_attempt.is_some_and(|at| at.elapsed() < self.min_refresh) {
                return match (cache.keys.get(kid), &cache.last_error) {
                    (Some(key), _) => Ok(Some(key.clone())),
                    (None, Some(error)) => Err(error.clone()),
                    (None, None) => Ok(None),
                };
            }
            // Stamped before the fetch, so a failure counts as an attempt too.
            cache.last_attempt = Some(Instant::now());
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = self.fetch().await;
        let mut cache = self.cache_mut();
        match fetched {
            Ok((keys, max_age)) => {
                cache.keys = keys;
                cache.fresh_until = Some(Instant::now() + max_age);
                cache.last_error = None;
                Ok(cache.keys.get(kid).cloned())
            }
            Err(error) => {
                tracing::warn!(jwks = without_query(&self.url), error = %error, "cannot fetch the token signing keys");
                cache.last_error = Some(error.clone());
                match cache.keys.get(kid) {
                    Some(stale) => Ok(Some(stale.clone())),
                    None => Err(error),
                }
            }
        }
    }

    async fn fetch(&self) -> Result<(HashMap<String, DecodingKey>, Duration), FetchError> {
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| fetch_error(&e))?;
        let max_age = max_age(response.headers().get("cache-control").and_then(|v| v.to_str().ok()))
            .unwrap_or(DEFAULT_MAX_AGE)
            .min(MAX_MAX_AGE);
        let jwks: Jwks = response.json().await.map_err(|e| fetch_error(&e))?;
        let keys = jwks.keys.into_iter().filter_map(Jwk::into_key).collect();
        Ok((keys, max_age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age(Some("public, max-age=19845, must-revalidate, no-transform")),
            Some(Duration::from_secs(19845))
        );
        assert_eq!(max_age(Some("Max-Age = 5")), Some(Duration::from_secs(5)));
        assert_eq!(max_age(Some("no-cache")), None);
        assert_eq!(max_age(Some("max-age=soon")), None);
        assert_eq!(max_age(None), None);
    }

    fn kids(set: serde_json::Value) -> Vec<String> {
        let jwks: Jwks = serde_json::from_value(set).unwrap();
        let mut kids: Vec<String> = jwks.keys.into_iter().filter_map(Jwk::into_key).map(|(kid, _)| kid).collect();
        kids.sort();
        kids
    }

    #[test]
    fn keys_are_read_by_type_and_unusable_ones_skipped() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let coordinate = b64.encode([7_u8; 32]);
        let set = json!({ "keys": [
            { "kty": "RSA", "kid": "rsa", "use": "sig", "n": b64.encode([0xc3_u8; 256]), "e": "AQAB" },
            { "kty": "EC", "kid": "ec", "crv": "P-256", "alg": "ES256", "x": coordinate, "y": coordinate },
            { "kty": "EC", "kid": "p384", "crv": "P-384", "x": b64.encode([7_u8; 48]), "y": b64.encode([7_u8; 48]) },
            { "kty": "EC", "kid": "short", "crv": "P-256", "x": b64.encode([7_u8; 31]), "y": coordinate },
            { "kty": "EC", "kid": "no-y", "crv": "P-256", "x": coordinate },
            { "kty": "RSA", "kid": "encryption", "use": "enc", "n": b64.encode([0xc3_u8; 256]), "e": "AQAB" },
            { "kty": "oct", "kid": "secret", "k": "c2VjcmV0" },
            { "kty": "RSA", "n": b64.encode([0xc3_u8; 256]), "e": "AQAB" },
        ]});
        assert_eq!(kids(set), ["ec", "rsa"]);
    }
}
