//! The Pub/Sub message that carries an event (docs/contracts.md#the-pubsub-message).

use crate::event::Event;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A message as the Pub/Sub REST `publish` call and push deliveries spell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PubsubMessage {
    /// Base64 of the event JSON.
    pub data: String,
    /// `schema`, `source`, `event_id`, `change`.
    pub attributes: BTreeMap<String, String>,
    /// The student key, so one student's events are delivered in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
}

impl PubsubMessage {
    /// The message for an event.
    pub fn from_event(event: &Event) -> Self {
        Self {
            data: base64::engine::general_purpose::STANDARD.encode(event.to_json()),
            attributes: Self::attributes(event),
            ordering_key: event.student_key().map(|k| k.to_string()),
        }
    }

    /// The attributes every message of an event carries (for clients that send the data as
    /// bytes, not base64).
    pub fn attributes(event: &Event) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("schema".to_owned(), event.schema.to_string()),
            ("source".to_owned(), event.source.to_string()),
            ("event_id".to_owned(), event.id.to_string()),
            ("change".to_owned(), event.change.kind().to_owned()),
        ])
    }
}

/// The body of a Pub/Sub REST `publish` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The messages to publish.
    pub messages: Vec<PubsubMessage>,
}

/// The audience of self-signed JWTs for Pub/Sub (any regional endpoint accepts it).
pub const PUBSUB_AUDIENCE: &str = "https://pubsub.googleapis.com/";
/// Lifetime of a self-signed token; Google accepts at most one hour.
pub const TOKEN_LIFETIME_SECS: i64 = 3600;

/// The parts of a Google service-account key file that signing needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    /// The account, e.g. `edge-publisher@project.iam.gserviceaccount.com`.
    pub client_email: String,
    /// Id of the key, sent as the JWT `kid`.
    pub private_key_id: String,
    /// PKCS#8 private key, PEM.
    pub private_key: String,
}

// The private key must never reach a log through `{:?}`.
impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceAccountKey {{ client_email: {:?}, private_key: <redacted> }}", self.client_email)
    }
}

/// Why a service-account key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not the JSON of a key file. Carries no parser message: serde's would quote the key.
    #[error("GCP_SERVICE_ACCOUNT_KEY is not a service-account key JSON")]
    Json,
    /// The PEM block is not base64.
    #[error("GCP_SERVICE_ACCOUNT_KEY private_key is not a PEM private key")]
    Pem,
}

impl ServiceAccountKey {
    /// Parses the key file JSON.
    pub fn from_json(text: &str) -> Result<Self, KeyError> {
        serde_json::from_str(text).map_err(|_| KeyError::Json)
    }

    /// The DER bytes of the PKCS#8 private key.
    pub fn private_key_der(&self) -> Result<Vec<u8>, KeyError> {
        let body: String = self.private_key.lines().map(str::trim).filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).map_err(|_| KeyError::Pem)
    }

    /// The JWT signing input (`header.claims`, base64url) for a token issued at `iat`
    /// (Unix seconds), and its expiry.
    pub fn jwt_signing_input(&self, iat: i64) -> (String, i64) {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let exp = iat + TOKEN_LIFETIME_SECS;
        let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": self.private_key_id });
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": self.client_email,
            "aud": PUBSUB_AUDIENCE,
            "iat": iat,
            "exp": exp,
        });
        (format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string())), exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_input_carries_the_claims_google_requires() {
        let key = ServiceAccountKey {
            client_email: "edge@p.iam.gserviceaccount.com".into(),
            private_key_id: "kid1".into(),
            private_key: "-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n".into(),
        };
        assert_eq!(key.private_key_der().unwrap(), vec![0, 1, 2]);
        let (input, exp) = key.jwt_signing_input(1_000);
        assert_eq!(exp, 4_600);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (header, claims) = input.split_once('.').unwrap();
        let header: serde_json::Value = serde_json::from_slice(&b64.decode(header).unwrap()).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&b64.decode(claims).unwrap()).unwrap();
        assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("RS256"), Some("kid1")));
        assert_eq!(claims["aud"], PUBSUB_AUDIENCE);
        assert_eq!(claims["iss"], claims["sub"]);
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
        assert!(!format!("{key:?}").contains("AAEC"));
    }
}
