//! Verifying the OIDC tokens Pub/Sub push and Cloud Scheduler send, and the verification token
//! they carry in the URL (`?token=`), a second factor that does not depend on Cloud Run IAM
//! (docs/contracts.md#push-and-scheduler-authentication).
//!
//! Nothing here puts a token, a key, an email or a URL's query string into an error text:
//! every [`AuthError`] is safe to log and to answer.

use crate::jwks::JwksCache;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::time::Duration;

pub use crate::jwks::{without_query, MIN_REFRESH};

/// Google's issuers.
const ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds (the IAP verifier allows the same).
pub(crate) const LEEWAY_SECS: u64 = 30;

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

/// The push-token verifier.
pub struct PushAuth {
    config: PushAuthConfig,
    keys: JwksCache,
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

/// A fixed description of a token error: jsonwebtoken's own texts may quote claim values.
pub(crate) fn describe(error: &jsonwebtoken::errors::Error) -> String {
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

impl PushAuth {
    /// A verifier for `mode`, expecting `audience` and the service account `email`.
    pub fn new(config: PushAuthConfig) -> Self {
        let keys = JwksCache::new(config.jwks_url.clone(), config.min_refresh);
        Self { config, keys }
    }

    /// The mode in force.
    pub fn mode(&self) -> PushAuthMode {
        self.config.check.mode()
    }

    /// How many JWKS fetches were started (for tests and diagnostics).
    pub fn jwks_fetches(&self) -> u64 {
        self.keys.fetches()
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
                let key = self
                    .keys
                    .key(&kid)
                    .await
                    .map_err(|e| AuthError::Jwks(e.0))?
                    .ok_or_else(|| AuthError::Invalid("unknown kid".into()))?;
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
