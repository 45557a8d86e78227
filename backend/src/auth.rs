//! Verifying the OIDC tokens Pub/Sub push and Cloud Scheduler send (DESIGN §6).

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

/// Google's issuers.
const ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// Refetch the JWKS for an unknown `kid` at most this often (a flood of forged kids must not
/// become a flood of fetches).
const MIN_REFRESH: Duration = Duration::from_secs(30);

/// How pushes are authenticated (`PUSH_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PushAuthMode {
    /// Verify the RS256 signature against the JWKS, then the claims.
    Oidc,
    /// Behind Cloud Run IAM: the signature was verified and removed; check the claims.
    CloudRun,
    /// Local runs only: no check, loud warnings.
    None,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Signature, algorithm, issuer, audience or expiry wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token is for another service account, or its email is unverified.
    #[error("token is not from the expected service account")]
    WrongAccount,
    /// The key set could not be fetched (a retryable failure, not the caller's fault).
    #[error("cannot fetch the signing keys: {0}")]
    Jwks(String),
}

#[derive(Debug, Deserialize)]
struct Claims {
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

/// The push-token verifier.
pub struct PushAuth {
    mode: PushAuthMode,
    audience: String,
    email: String,
    jwks_url: String,
    http: reqwest::Client,
    keys: RwLock<(HashMap<String, DecodingKey>, Option<Instant>)>,
}

impl PushAuth {
    /// A verifier for `mode`, expecting `audience` and the service account `email`.
    pub fn new(mode: PushAuthMode, audience: String, email: String, jwks_url: String) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self { mode, audience, email, jwks_url, http, keys: RwLock::new((HashMap::new(), None)) }
    }

    /// The mode in force.
    pub fn mode(&self) -> PushAuthMode {
        self.mode
    }

    fn validation(&self) -> Validation {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&ISSUERS);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 30;
        validation
    }

    async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, AuthError> {
        if let Some(key) = self.keys.read().await.0.get(kid) {
            return Ok(Some(key.clone()));
        }
        let mut keys = self.keys.write().await;
        if keys.1.is_some_and(|at| at.elapsed() < MIN_REFRESH) {
            return Ok(keys.0.get(kid).cloned());
        }
        let jwks: Jwks = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthError::Jwks(e.to_string()))?
            .json()
            .await
            .map_err(|e| AuthError::Jwks(e.to_string()))?;
        keys.0 = jwks
            .keys
            .into_iter()
            .filter_map(|k| DecodingKey::from_rsa_components(&k.n, &k.e).ok().map(|key| (k.kid, key)))
            .collect();
        keys.1 = Some(Instant::now());
        Ok(keys.0.get(kid).cloned())
    }

    /// Checks the `Authorization` header value.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        if self.mode == PushAuthMode::None {
            tracing::warn!("PUSH_AUTH=none: accepting an unauthenticated request (local use only)");
            return Ok(());
        }
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let claims: Claims = match self.mode {
            PushAuthMode::Oidc => {
                let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
                if header.alg != Algorithm::RS256 {
                    return Err(AuthError::Invalid(format!("algorithm {:?} is not RS256", header.alg)));
                }
                let kid = header.kid.ok_or_else(|| AuthError::Invalid("no kid".into()))?;
                let key = self.key(&kid).await?.ok_or_else(|| AuthError::Invalid("unknown kid".into()))?;
                jsonwebtoken::decode(token, &key, &self.validation())
                    .map_err(|e| AuthError::Invalid(e.to_string()))?
                    .claims
            }
            PushAuthMode::CloudRun => {
                let mut validation = self.validation();
                validation.insecure_disable_signature_validation();
                let key = DecodingKey::from_secret(&[]);
                jsonwebtoken::decode(token, &key, &validation).map_err(|e| AuthError::Invalid(e.to_string()))?.claims
            }
            PushAuthMode::None => return Ok(()),
        };
        if claims.email.as_deref() != Some(self.email.as_str()) || !claims.email_verified {
            return Err(AuthError::WrongAccount);
        }
        Ok(())
    }
}
