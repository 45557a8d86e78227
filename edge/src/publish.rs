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

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No answer in time.
    #[error("publish timed out after {0:?}")]
    Timeout(Duration),
    /// Pub/Sub answered with an error status.
    #[error("publish answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Start of the error body.
        body: String,
    },
    /// The token could not be made.
    #[error("signing the access token failed: {0}")]
    Token(String),
    /// The request could not be sent.
    #[error("publish request failed: {0}")]
    Fetch(#[from] worker::Error),
}

/// Publishes, retrying once after a short pause.
pub async fn publish_with_retry(config: &PubsubConfig, event: &Event) -> Result<(), PublishError> {
    match publish(config, event).await {
        Err(PublishError::Token(e)) => Err(PublishError::Token(e)),
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
    Err(PublishError::Status { status, body: text.chars().take(200).collect() })
}
