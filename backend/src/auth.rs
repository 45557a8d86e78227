//! Verifying the OIDC tokens Pub/Sub push and Cloud Scheduler send, and the verification token
//! they carry in the URL (`?token=`), a second factor that does not depend on Cloud Run IAM
//! (docs/contracts.md#push-and-scheduler-authentication).
//!
//! Nothing here puts a token, a key, an email or a URL's query string into an error text:
//! every [`AuthError`] is safe to log and to answer.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Google's issuers.
const ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// Fetch the JWKS at most this often, whatever happens (an unknown `kid`, expiry, a failing
/// endpoint): a flood of forged kids must not become a flood of fetches to Google.
pub const MIN_REFRESH: Duration = Duration::from_secs(30);
/// How long a key set is fresh when the response names no `Cache-Control: max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
/// The longest a key set is trusted without asking again, whatever `max-age` says.
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
const LEEWAY_SECS: u64 = 30;

/// How pushes are authenticated (`PUSH_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PushAuthMode {
    /// Verify the RS256 signature against the JWKS, then the claims.
    Oidc,
    /// Behind Cloud Run IAM: the signature was verified and removed; check the claims (and the
    /// verification token, required in this mode).
    CloudRun,
    /// Local runs only: no check, loud warnings.
    None,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Signature, algorithm, issuer, audience or validity period (`exp`, `nbf`, `iat`) wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token is for another service account, or its email is unverified.
    #[error("token is not from the expected service account")]
    WrongAccount,
    /// The `?token=` verification token is missing or wrong.
    #[error("missing or wrong verification token")]
    VerificationToken,
    /// The key set could not be fetched (a retryable failure, not the caller's fault).
    #[error("cannot fetch the signing keys: {0}")]
    Jwks(String),
}

#[derive(Debug, Deserialize)]
struct Claims {
    /// Issued at: a token issued in the future is not valid yet (jsonwebtoken checks only
    /// `exp` and `nbf`).
    iat: Option<u64>,
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
}

#[derive(Deserialize)]
struct Jwk {
    kid: String,
    n: String,
    e: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// Who a token must be for and from (`PUSH_AUDIENCE`, `PUSH_SERVICE_ACCOUNT`).
#[derive(Clone)]
pub struct Expected {
    /// Expected `aud`.
    pub audience: String,
    /// Expected `email` (the push / scheduler service account).
    pub email: String,
}

/// How a push or sweep proves where it comes from: the mode, with what it checks.
#[derive(Clone)]
pub enum PushCheck {
    /// Nothing (local use only).
    None,
    /// A Google-signed OIDC token, verified against Google's keys.
    Oidc(Expected),
    /// A token Cloud Run's IAM check already verified (it strips the signature): its claims.
    CloudRun(Expected),
}

impl PushCheck {
    /// The mode, as `PUSH_AUTH` names it.
    pub fn mode(&self) -> PushAuthMode {
        match self {
            PushCheck::None => PushAuthMode::None,
            PushCheck::Oidc(_) => PushAuthMode::Oidc,
            PushCheck::CloudRun(_) => PushAuthMode::CloudRun,
        }
    }
}

/// What a verifier checks.
#[derive(Clone)]
pub struct PushAuthConfig {
    /// The mode and its expectations.
    pub check: PushCheck,
    /// Where the signing keys are.
    pub jwks_url: String,
    /// The `?token=` every push and sweep must carry, when set.
    pub verification_token: Option<String>,
    /// The shortest time between two JWKS fetches ([`MIN_REFRESH`]; shorter in tests).
    pub min_refresh: Duration,
}

impl std::fmt::Debug for PushAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let audience = match &self.check {
            PushCheck::None => None,
            PushCheck::Oidc(e) | PushCheck::CloudRun(e) => Some(e.audience.as_str()),
        };
        f.debug_struct("PushAuthConfig")
            .field("mode", &self.check.mode())
            .field("audience", &audience)
            .field("email", &"<redacted>")
            .field("jwks_url", &without_query(&self.jwks_url))
            .field("verification_token", &self.verification_token.as_ref().map(|_| "<redacted>"))
            .field("min_refresh", &self.min_refresh)
            .finish()
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
    last_error: Option<String>,
}

/// The push-token verifier.
pub struct PushAuth {
    config: PushAuthConfig,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Single flight: whoever holds it is the one fetching; the others wait, then read the cache.
    /// It guards no data, so holding it across the fetch blocks nobody who has a cached key.
    fetching: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

/// A URL without its query string and fragment (for logs and errors).
pub fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or_default()
}

/// Compares two secrets in time independent of where they differ (and of `given`'s length).
pub fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != given.len());
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(e ^ g);
    }
    diff == 0
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

/// A fixed description of a token error: jsonwebtoken's own texts may quote claim values.
fn describe(error: &jsonwebtoken::errors::Error) -> String {
    match error.kind() {
        ErrorKind::InvalidToken => "not a JWT",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "wrong algorithm",
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not valid yet",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidSubject => "wrong subject",
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        ErrorKind::Base64(_) => "not base64url",
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => "header or claims are not the expected JSON",
        ErrorKind::InvalidKeyFormat | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEcdsaKey => "unusable key",
        _ => "rejected",
    }
    .to_owned()
}

/// A fetch failure, without the URL reqwest would put in it.
fn fetch_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if let Some(status) = error.status() {
        format!("HTTP {}", status.as_u16())
    } else if error.is_decode() {
        "the answer is not a JWK set".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    }
}

impl PushAuth {
    /// A verifier for `mode`, expecting `audience` and the service account `email`.
    pub fn new(config: PushAuthConfig) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self {
            config,
            http,
            cache: RwLock::new(KeyCache::default()),
            fetching: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The mode in force.
    pub fn mode(&self) -> PushAuthMode {
        self.config.check.mode()
    }

    /// How many JWKS fetches were started (for tests and diagnostics).
    pub fn jwks_fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn validation(expected: &Expected) -> Validation {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&expected.audience]);
        validation.set_issuer(&ISSUERS);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // Off by default in jsonwebtoken: a token must not be used before its `nbf`.
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        validation
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

    /// The key for `kid`: from the cache while it is fresh, else after one fetch (one at a
    /// time; at most one per `min_refresh`). A stale key is still used when refetching is not
    /// allowed yet or fails: keys rotate slowly, and an outage of Google's endpoint must not
    /// stop pushes signed with a key we already know.
    async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, AuthError> {
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
            if cache.last_attempt.is_some_and(|at| at.elapsed() < self.config.min_refresh) {
                return match (cache.keys.get(kid), &cache.last_error) {
                    (Some(key), _) => Ok(Some(key.clone())),
                    (None, Some(error)) => Err(AuthError::Jwks(error.clone())),
                    (None, None) => Ok(None),
                };
            }
            // Stamped before the fetch, so a failure counts as an attempt too.
            cache.last_attempt = Some(Instant::now());
        }
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
                tracing::warn!(jwks = without_query(&self.config.jwks_url), error = %error, "cannot fetch the token signing keys");
                cache.last_error = Some(error.clone());
                match cache.keys.get(kid) {
                    Some(stale) => Ok(Some(stale.clone())),
                    None => Err(AuthError::Jwks(error)),
                }
            }
        }
    }

    async fn fetch(&self) -> Result<(HashMap<String, DecodingKey>, Duration), String> {
        let response = self
            .http
            .get(&self.config.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| fetch_error(&e))?;
        let max_age = max_age(response.headers().get("cache-control").and_then(|v| v.to_str().ok()))
            .unwrap_or(DEFAULT_MAX_AGE)
            .min(MAX_MAX_AGE);
        let jwks: Jwks = response.json().await.map_err(|e| fetch_error(&e))?;
        let keys = jwks
            .keys
            .into_iter()
            .filter_map(|k| DecodingKey::from_rsa_components(&k.n, &k.e).ok().map(|key| (k.kid, key)))
            .collect();
        Ok((keys, max_age))
    }

    /// Checks the `?token=` verification token when one is configured.
    pub fn verify_token(&self, given: Option<&str>) -> Result<(), AuthError> {
        match (&self.config.verification_token, given) {
            (None, _) => Ok(()),
            (Some(expected), Some(given)) if constant_time_eq(expected.as_bytes(), given.as_bytes()) => Ok(()),
            (Some(_), _) => Err(AuthError::VerificationToken),
        }
    }

    /// Checks a request: the verification token (`?token=`, when configured, in every mode),
    /// then the `Authorization` header value.
    pub async fn verify(&self, authorization: Option<&str>, query_token: Option<&str>) -> Result<(), AuthError> {
        self.verify_token(query_token)?;
        let expected = match &self.config.check {
            PushCheck::Oidc(expected) | PushCheck::CloudRun(expected) => expected,
            PushCheck::None => {
                tracing::warn!("PUSH_AUTH=none: accepting an unauthenticated request (local use only)");
                return Ok(());
            }
        };
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let claims: Claims = match &self.config.check {
            PushCheck::Oidc(_) => {
                let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(describe(&e)))?;
                if header.alg != Algorithm::RS256 {
                    return Err(AuthError::Invalid("wrong algorithm".into()));
                }
                let kid = header.kid.ok_or_else(|| AuthError::Invalid("no kid".into()))?;
                let key = self.key(&kid).await?.ok_or_else(|| AuthError::Invalid("unknown kid".into()))?;
                jsonwebtoken::decode(token, &key, &Self::validation(expected))
                    .map_err(|e| AuthError::Invalid(describe(&e)))?
                    .claims
            }
            PushCheck::CloudRun(_) => {
                let mut validation = Self::validation(expected);
                validation.insecure_disable_signature_validation();
                let key = DecodingKey::from_secret(&[]);
                jsonwebtoken::decode(token, &key, &validation).map_err(|e| AuthError::Invalid(describe(&e)))?.claims
            }
            PushCheck::None => return Ok(()),
        };
        if claims.iat.is_some_and(|iat| iat > jsonwebtoken::get_current_timestamp().saturating_add(LEEWAY_SECS)) {
            return Err(AuthError::Invalid("not valid yet".into()));
        }
        if claims.email.as_deref() != Some(expected.email.as_str()) || !claims.email_verified {
            return Err(AuthError::WrongAccount);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b""));
        assert!(constant_time_eq(b"", b""));
    }

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

    #[test]
    fn urls_lose_their_query_for_logs() {
        assert_eq!(without_query("https://h/certs?key=abc#x"), "https://h/certs");
        assert_eq!(without_query("https://h/certs"), "https://h/certs");
    }

    #[test]
    fn the_config_debug_hides_the_secrets() {
        let config = PushAuthConfig {
            check: PushCheck::CloudRun(Expected {
                audience: "aud".into(),
                email: "push@p.iam.gserviceaccount.com".into(),
            }),
            jwks_url: "https://h/certs?key=k3y".into(),
            verification_token: Some("v3r1f1cat10n".into()),
            min_refresh: MIN_REFRESH,
        };
        let text = format!("{config:?}");
        for secret in ["push@p", "k3y", "v3r1f1cat10n"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
