//! Publishing one event to Pub/Sub over REST, with a bounded timeout and one quick retry.

use crate::config::PubsubConfig;
use crate::token;
use futures_util::future::{select, Either};
use lms_bridge_shared::pubsub::{PublishRequest, PubsubMessage};
use lms_bridge_shared::Event;
use std::time::Duration;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

/// One attempt's limit: two attempts must fit well inside the platform's own timeout.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2_000);
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Logged at ERROR (not as a routine retry warning) when Pub/Sub refuses the publisher itself:
/// retrying will not help until someone fixes the key, its role or the topic.
pub const PERSISTENT: &str = "pubsub refuses this publisher (401/403/404 or an unusable key): \
     check GCP_SERVICE_ACCOUNT_KEY, its publisher role on the topic, GCP_PROJECT and PUBSUB_TOPIC";

/// Why a publish failed. Every text is a status, a code or a fixed phrase: Pub/Sub's error
/// bodies and the runtime's messages are not copied whole into logs.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No answer in time.
    #[error("publish timed out after {0:?}")]
    Timeout(Duration),
    /// Pub/Sub answered with an error status.
    #[error("publish answered {status} {reason}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Google's status code (`PERMISSION_DENIED`, …), if the body names one.
        reason: String,
    },
    /// The token could not be made (a fixed text).
    #[error("signing the access token failed: {0}")]
    Token(&'static str),
    /// The request could not be sent.
    #[error("publish request failed: {0}")]
    Fetch(#[from] worker::Error),
}

impl PublishError {
    /// Whether the failure is about the publisher itself (credentials, permission, topic),
    /// which no retry fixes.
    pub fn is_persistent(&self) -> bool {
        matches!(self, PublishError::Token(_) | PublishError::Status { status: 401 | 403 | 404, .. })
    }
}

/// Google's `error.status` from an error body: upper-case letters and `_` only, or nothing.
fn google_status(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let status = value["error"]["status"].as_str().unwrap_or_default();
    if status.len() <= 40 && status.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        status.to_owned()
    } else {
        String::new()
    }
}

/// Publishes, retrying once after a short pause (not when the publisher itself is refused).
pub async fn publish_with_retry(config: &PubsubConfig, event: &Event) -> Result<(), PublishError> {
    match publish(config, event).await {
        Err(e) if e.is_persistent() => Err(e),
        Err(_) => {
            Delay::from(RETRY_PAUSE).await;
            publish(config, event).await
        }
        ok => ok,
    }
}

async fn publish(config: &PubsubConfig, event: &Event) -> Result<(), PublishError> {
    let url = format!("{}/v1/{}:publish", config.base_url, config.topic_path);
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    if let Some(key) = &config.key {
        let bearer = token::bearer(key).await.map_err(PublishError::Token)?;
        headers.set("authorization", &format!("Bearer {bearer}"))?;
    }
    let body = PublishRequest { messages: vec![PubsubMessage::from_event(event)] };
    let body = serde_json::to_string(&body).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(body.into()));
    let request = Request::new_with_init(&url, &init)?;

    let controller = AbortController::default();
    let signal = controller.signal();
    let send = Fetch::Request(request);
    let send = std::pin::pin!(send.send_with_signal(&signal));
    let timeout = std::pin::pin!(Delay::from(ATTEMPT_TIMEOUT));
    let mut response = match select(send, timeout).await {
        Either::Left((response, _)) => response?,
        Either::Right(((), _)) => {
            controller.abort();
            return Err(PublishError::Timeout(ATTEMPT_TIMEOUT));
        }
    };
    let status = response.status_code();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(PublishError::Status { status, reason: google_status(&text) })
}
