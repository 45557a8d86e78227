//! Settings read from the Worker environment (DESIGN §4.5), checked per request.

use crate::error::EdgeError;
use lms_bridge_shared::pubsub::ServiceAccountKey;
use worker::Env;

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

impl PubsubConfig {
    /// Reads `GCP_PROJECT`, `PUBSUB_TOPIC`, and the emulator host or the endpoint and key.
    pub fn from_env(env: &Env) -> Result<Self, EdgeError> {
        let topic_path =
            format!("projects/{}/topics/{}", required(env, "GCP_PROJECT")?, required(env, "PUBSUB_TOPIC")?);
        if let Some(host) = setting(env, "PUBSUB_EMULATOR_HOST") {
            return Ok(Self { base_url: format!("http://{host}"), topic_path, key: None });
        }
        let base_url = setting(env, "PUBSUB_ENDPOINT")
            .unwrap_or_else(|| "https://pubsub.googleapis.com".to_owned())
            .trim_end_matches('/')
            .to_owned();
        let key = ServiceAccountKey::from_json(&required(env, "GCP_SERVICE_ACCOUNT_KEY")?)
            .map_err(|e| EdgeError::Misconfigured(e.to_string()))?;
        Ok(Self { base_url, topic_path, key: Some(key) })
    }
}

impl Config {
    /// The settings for webhooks from `source`: its secret (`HOTMART_HOTTOK`, comma-separated
    /// during a rotation) and Pub/Sub.
    pub fn from_env(env: &Env, source: &str) -> Result<Self, EdgeError> {
        let secret_name = format!("{}_HOTTOK", source.to_ascii_uppercase());
        let secrets = setting(env, &secret_name)
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Ok(Self { secrets, pubsub: PubsubConfig::from_env(env)? })
    }
}
