//! Settings read from the Worker environment (docs/contracts.md#edge-settings), checked per request.

use crate::error::EdgeError;
use lms_bridge_shared::pubsub::{KeyError, ServiceAccountKey};
use lms_bridge_shared::Pepper;
use worker::Env;

/// Logged (and the request refused with 500) when the emulator is named outside local mode.
pub const EMULATOR_WITHOUT_LOCAL: &str =
    "PUBSUB_EMULATOR_HOST is set but LMS_BRIDGE_LOCAL is not 1: refusing to publish unauthenticated";
/// The key is not a key file's JSON (a double-encoded key, a truncated paste, …). Fixed text:
/// the parser's message would quote the key.
pub const KEY_NOT_JSON: &str = "GCP_SERVICE_ACCOUNT_KEY is not a service-account key JSON";
/// The key's `private_key` is not PEM.
pub const KEY_NOT_PEM: &str = "GCP_SERVICE_ACCOUNT_KEY private_key is not a PEM private key";

/// Where and how to publish.
pub struct PubsubConfig {
    /// `https://pubsub.googleapis.com` or a regional endpoint, or `http://host:port` (emulator).
    pub base_url: String,
    /// `projects/{p}/topics/{t}`.
    pub topic_path: String,
    /// `None` in emulator mode.
    pub key: Option<ServiceAccountKey>,
}

/// Everything one webhook request needs.
pub struct Config {
    /// The source's accepted secrets (several while rotating).
    pub secrets: Vec<String>,
    /// Pub/Sub settings.
    pub pubsub: PubsubConfig,
    /// `STUDENT_KEY_PEPPER`: student keys are HMACs of the email under it (the backend holds
    /// the same one). Without it they are plain sha256 digests.
    pub pepper: Option<Pepper>,
}

/// A setting, whether it was given as a secret or as a plain variable; blank is absent.
fn setting(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn required(env: &Env, name: &str) -> Result<String, EdgeError> {
    setting(env, name).ok_or_else(|| EdgeError::Misconfigured(format!("{name} is not set")))
}

/// Local mode (`LMS_BRIDGE_LOCAL=1`, set by `make dev` and the tests): the only mode in which
/// `PUBSUB_EMULATOR_HOST` is honoured.
fn local_mode(env: &Env) -> bool {
    setting(env, "LMS_BRIDGE_LOCAL").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The fixed text for an unusable key: never the parser's message, which quotes its input.
pub fn key_error_text(error: &KeyError) -> &'static str {
    match error {
        KeyError::Json => KEY_NOT_JSON,
        KeyError::Pem => KEY_NOT_PEM,
    }
}

impl PubsubConfig {
    /// Reads `GCP_PROJECT`, `PUBSUB_TOPIC`, and the emulator host (local mode only) or the
    /// endpoint and key.
    pub fn from_env(env: &Env) -> Result<Self, EdgeError> {
        let topic_path =
            format!("projects/{}/topics/{}", required(env, "GCP_PROJECT")?, required(env, "PUBSUB_TOPIC")?);
        if let Some(host) = setting(env, "PUBSUB_EMULATOR_HOST") {
            // An emulator host that leaked into a deployment must not turn publishing into
            // unauthenticated plain HTTP: it counts only with local mode set explicitly.
            if !local_mode(env) {
                return Err(EdgeError::Misconfigured(EMULATOR_WITHOUT_LOCAL.to_owned()));
            }
            return Ok(Self { base_url: format!("http://{host}"), topic_path, key: None });
        }
        let base_url = setting(env, "PUBSUB_ENDPOINT")
            .unwrap_or_else(|| "https://pubsub.googleapis.com".to_owned())
            .trim_end_matches('/')
            .to_owned();
        let key = ServiceAccountKey::from_json(&required(env, "GCP_SERVICE_ACCOUNT_KEY")?)
            .map_err(|e| EdgeError::Misconfigured(key_error_text(&e).to_owned()))?;
        // Checked here too, so a bad PEM is a configuration error, not a publish failure.
        key.private_key_der().map_err(|e| EdgeError::Misconfigured(key_error_text(&e).to_owned()))?;
        Ok(Self { base_url, topic_path, key: Some(key) })
    }
}

impl Config {
    /// The settings for webhooks from a source: its secrets, in the setting the source names
    /// (`HOTMART_HOTTOK`, `STD_WEBHOOK_SECRET_<NAME>`; comma-separated during a rotation), and
    /// Pub/Sub.
    pub fn from_env(env: &Env, secret_setting: &str) -> Result<Self, EdgeError> {
        let secrets = setting(env, secret_setting)
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let pepper = setting(env, "STUDENT_KEY_PEPPER").and_then(|p| Pepper::new(&p));
        Ok(Self { secrets, pubsub: PubsubConfig::from_env(env)?, pepper })
    }
}
