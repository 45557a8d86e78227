//! The lms-bridge edge: the Cloudflare Worker the payment platform posts webhooks to.
//!
//! Thin glue around `lms-bridge-shared`: check the route, verify, normalize (or quarantine),
//! then make the event durable — published to Pub/Sub, or parked in a Cloudflare Queue that
//! this same Worker drains into Pub/Sub later. 2xx means durable, nothing less.

mod config;
mod error;
mod log;
mod publish;
mod token;

use config::Config;
use error::EdgeError;
use futures_util::StreamExt;
use lms_bridge_shared::source;
use lms_bridge_shared::{Event, Timestamp};
use worker::{event, Context, Env, MessageBatch, MessageExt, Method, QueueRetryOptionsBuilder, Request, Response};

/// Largest webhook body accepted.
const MAX_BODY: usize = 1024 * 1024;
/// The Cloudflare Queue binding that parks events while Pub/Sub is unavailable.
const QUEUE_BINDING: &str = "EVENTS_QUEUE";

fn now() -> Timestamp {
    // Date::now() is the Workers clock; it cannot be out of `Timestamp`'s range.
    Timestamp::from_unix_millis(worker::Date::now().as_millis() as i64).unwrap_or_else(|_| Timestamp::epoch())
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let started = worker::Date::now().as_millis();
    let path = req.path();
    let mut line = log::Line::new(req.method().to_string(), &path);
    let response = match route(req, &env, &mut line).await {
        Ok(response) => response,
        Err(error) => {
            line.error = Some(error.to_string());
            error.into_response()?
        }
    };
    line.status = response.status_code();
    line.latency_ms = worker::Date::now().as_millis().saturating_sub(started);
    line.emit();
    Ok(response)
}

async fn route(mut req: Request, env: &Env, line: &mut log::Line) -> Result<Response, EdgeError> {
    let path = req.path();
    if path == "/healthz" {
        return match req.method() {
            Method::Get | Method::Head => Ok(Response::from_json(&serde_json::json!({ "status": "ok" }))?),
            _ => Err(EdgeError::MethodNotAllowed("GET")),
        };
    }
    let Some(source_name) = path.strip_prefix("/webhooks/").filter(|s| !s.is_empty() && !s.contains('/')) else {
        return Err(EdgeError::NotFound);
    };
    let source_name = source_name.to_owned();
    line.source = Some(source_name.clone());
    if !source::is_known(&source_name) {
        return Err(EdgeError::UnknownSource(source_name));
    }
    if req.method() != Method::Post {
        return Err(EdgeError::MethodNotAllowed("POST"));
    }
    let config = Config::from_env(env, &source_name)?;
    let source = source::by_name(&source_name, &config.secrets).ok_or(EdgeError::NotFound)?;
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let received_at = now();
    // Credentials first: nothing about an unauthenticated request is worth reading.
    source.verify(&headers, &[], received_at).map_err(EdgeError::from_verify)?;
    if let Some(length) = req.headers().get("content-length")?.and_then(|v| v.parse::<usize>().ok()) {
        if length > MAX_BODY {
            return Err(EdgeError::TooLarge);
        }
    }
    let content_type = req.headers().get("content-type")?.unwrap_or_default();
    if !is_json(&content_type) {
        return Err(EdgeError::UnsupportedMediaType);
    }
    let body = read_limited(&mut req).await?;

    let (event, quarantined) = match source.normalize(&body, received_at) {
        Ok(event) => (event, false),
        Err(reason) => (source.quarantine(&body, &reason, received_at), true),
    };
    line.event_id = Some(event.id.to_string());
    line.student = event.student_key().map(ToString::to_string);
    line.change = Some(event.change.kind());
    line.clamped = event.clamped;

    let via = deliver(&event, &config, env).await?;
    line.via = Some(via);
    let status = if quarantined { "quarantined" } else { "accepted" };
    Ok(Response::from_json(&serde_json::json!({
        "status": status,
        "event_id": event.id,
        "via": via,
    }))?)
}

/// Publishes to Pub/Sub, or parks the event in the queue when Pub/Sub fails.
async fn deliver(event: &Event, config: &Config, env: &Env) -> Result<&'static str, EdgeError> {
    let publish_error = match publish::publish_with_retry(&config.pubsub, event).await {
        Ok(()) => return Ok("pubsub"),
        Err(e) => e,
    };
    log::warn(
        "pubsub publish failed; parking the event in the queue",
        &publish_error.to_string(),
        "event_id",
        &event.id,
    );
    let queue = env.queue(QUEUE_BINDING).map_err(|e| EdgeError::Unavailable(format!("queue binding: {e}")))?;
    let body = String::from_utf8_lossy(&event.to_json()).into_owned();
    match queue.send(body).await {
        Ok(()) => Ok("queue"),
        Err(e) => Err(EdgeError::Unavailable(format!("pubsub: {publish_error}; queue: {e}"))),
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Reads the body, refusing it as soon as it passes the limit (a missing or lying
/// Content-Length does not get around the check).
async fn read_limited(req: &mut Request) -> Result<Vec<u8>, EdgeError> {
    let mut stream = req.stream()?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(EdgeError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    let config = config::PubsubConfig::from_env(&env);
    for message in batch.messages()? {
        let event = match Event::from_json(message.body().as_bytes()) {
            Ok(event) => event,
            Err(e) => {
                // A parked event that no longer reads is a bug here, not a transient failure;
                // the binding has no "dead-letter now", so it runs out its retries into the DLQ.
                log::warn("parked message is not an event", &e.to_string(), "message_id", &message.id());
                message.retry();
                continue;
            }
        };
        let outcome = match &config {
            Ok(config) => publish::publish_with_retry(config, &event).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                log::queue_delivered(&event.id);
                message.ack();
            }
            Err(e) => {
                // Back off in proportion to how long the event has been parked (2 s to 5 min):
                // exponential in effect, and the binding exposes no attempt count.
                let age_secs = worker::Date::now().as_millis().saturating_sub(message.timestamp().as_millis()) / 1000;
                let delay = u32::try_from(age_secs / 2).unwrap_or(u32::MAX).clamp(2, 300);
                log::warn("queue delivery failed; will retry", &e, "event_id", &event.id);
                message.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(delay).build());
            }
        }
    }
    Ok(())
}
