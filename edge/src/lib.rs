//! The lms-bridge edge: the Cloudflare Worker the payment platform posts webhooks to.
//!
//! Thin glue around `lms-bridge-shared`: check the route, verify, normalize (or quarantine),
//! then make the event durable — published to Pub/Sub, or parked in a Cloudflare Queue that
//! this same Worker drains into Pub/Sub later. 2xx means durable, nothing less.

mod config;
mod error;
mod log;
mod publish;
mod schedule;
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
/// The dead-letter queue of the parking queue (wrangler.toml); this Worker consumes it too.
const DEAD_LETTER_QUEUE: &str = "lms-bridge-events-dlq";

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
    let Some(source_name) = source_of(&path) else {
        return Err(EdgeError::NotFound);
    };
    line.source = Some(source_name.clone());
    let Some(secret_setting) = source::secret_setting(&source_name) else {
        return Err(EdgeError::UnknownSource(source_name));
    };
    if req.method() != Method::Post {
        return Err(EdgeError::MethodNotAllowed("POST"));
    }
    let mut config = Config::from_env(env, &secret_setting)?;
    // The plain secrets live only until the source holds them (as digests or keys, and a
    // scrubber).
    let secrets = std::mem::take(&mut config.secrets);
    let source = source::by_name(&source_name, &secrets).ok_or(EdgeError::NotFound)?;
    drop(secrets);
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let received_at = now();
    // Credentials first: nothing about a request its headers already refuse is worth reading.
    source.verify_headers(&headers, received_at).map_err(EdgeError::from_verify)?;
    if let Some(length) = req.headers().get("content-length")?.and_then(|v| v.parse::<usize>().ok()) {
        if length > MAX_BODY {
            return Err(EdgeError::TooLarge);
        }
    }
    let content_type = req.headers().get("content-type")?.unwrap_or_default();
    let body = read_limited(&mut req).await?;
    // Then the whole check, over the exact bytes received (signatures over the body).
    source.verify(&headers, &body, received_at).map_err(EdgeError::from_verify)?;

    // Authenticated but unusable is kept, not refused: a refusal can get the webhook
    // deactivated by the platform, and the event would be lost.
    let normalized = if is_json(&content_type) {
        source.normalize_request(&headers, &body, received_at)
    } else {
        Err(source::NormalizeError::unexpected_content_type(&content_type))
    };
    let (mut event, quarantined) = match normalized {
        Ok(event) => (event, false),
        Err(reason) => {
            line.quarantined = Some(reason.code());
            (source.quarantine(&body, &reason, received_at), true)
        }
    };
    drop(source);
    event.key_student(config.pepper.as_ref());
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
    let detail = publish_error.to_string();
    if publish_error.is_persistent() {
        log::error(publish::PERSISTENT, Some(&detail), "event_id", &event.id);
    } else {
        log::warn("pubsub publish failed; parking the event in the queue", Some(&detail), "event_id", &event.id);
    }
    // A queue message holds 128 KB: a larger event (a big quarantined body) is parked with the
    // digest and the first bytes of its body instead of the whole.
    let fitted = source::fit_raw(event, schedule::QUEUE_EVENT_LIMIT)
        .map_err(|e| EdgeError::Unavailable(format!("pubsub: {detail}; queue: {e}")))?;
    if fitted.is_some() {
        log::warn(
            "event over the queue message limit; parked with its raw body truncated (raw_truncated, raw_sha256)",
            None,
            "event_id",
            &event.id,
        );
    }
    let parked = fitted.as_ref().unwrap_or(event);
    let queue = env.queue(QUEUE_BINDING).map_err(|e| EdgeError::Unavailable(format!("queue binding: {e}")))?;
    let body = String::from_utf8_lossy(&parked.to_json()).into_owned();
    match queue.send(body).await {
        Ok(()) => Ok("queue"),
        Err(e) => Err(EdgeError::Unavailable(format!("pubsub: {detail}; queue: {e}"))),
    }
}

/// The source a webhook path names: `/webhooks/{source}` (`/webhooks/hotmart`), or
/// `/webhooks/std/{sender}` for the Standard Webhooks sender `std-{sender}` (its only route).
fn source_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/webhooks/")?;
    let segment = |s: &str| !s.is_empty() && !s.contains('/');
    match rest.strip_prefix("std/") {
        Some(sender) => segment(sender).then(|| format!("{}{sender}", source::std_webhooks::PREFIX)),
        None => (segment(rest) && !rest.starts_with(source::std_webhooks::PREFIX)).then(|| rest.to_owned()),
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
    if batch.queue() == DEAD_LETTER_QUEUE {
        return dead_letters(batch, env).await;
    }
    let config = config::PubsubConfig::from_env(&env);
    for message in batch.messages()? {
        let event = match Event::from_json(message.body().as_bytes()) {
            Ok(event) => event,
            Err(_) => {
                // A parked event that no longer reads is a bug here, not a transient failure;
                // the binding has no "dead-letter now", so it runs out its retries into the DLQ.
                // Never the parser's text: it may quote the message (emails).
                log::error("parked message is not a readable event", None, "message_id", &message.id());
                message.retry();
                continue;
            }
        };
        let outcome = match &config {
            Ok(config) => {
                publish::publish_with_retry(config, &event).await.map_err(|e| (e.is_persistent(), e.to_string()))
            }
            Err(e) => Err((true, e.to_string())),
        };
        match outcome {
            Ok(()) => {
                log::queue_delivered(&event.id);
                message.ack();
            }
            Err((persistent, detail)) => {
                // Back off with the event's age (it survives a trip through the dead-letter
                // queue, unlike the message's timestamp): see `schedule`.
                let age_ms = now().unix_millis().saturating_sub(event.received_at.unix_millis());
                let delay = schedule::retry_delay_secs(u64::try_from(age_ms / 1000).unwrap_or(0));
                if persistent {
                    log::error(publish::PERSISTENT, Some(&detail), "event_id", &event.id);
                } else {
                    log::warn("queue delivery failed; will retry", Some(&detail), "event_id", &event.id);
                }
                message.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(delay).build());
            }
        }
    }
    Ok(())
}

/// The dead-letter queue: an event that ran out of retries (about seven days of them) goes
/// back to the parking queue for another round, with an ERROR line for an operator. Nothing
/// dead-ends in a queue nobody reads.
async fn dead_letters(batch: MessageBatch<String>, env: Env) -> worker::Result<()> {
    let queue = env.queue(QUEUE_BINDING)?;
    for message in batch.messages()? {
        let Ok(event) = Event::from_json(message.body().as_bytes()) else {
            // Unreadable: re-parking would only loop. It stays here, visible, for an operator.
            log::error(
                "dead-lettered message is not a readable event; left in the dead-letter queue",
                None,
                "message_id",
                &message.id(),
            );
            message.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(43_200).build());
            continue;
        };
        match queue.send(message.body().clone()).await {
            Ok(()) => {
                log::error(
                    "parked event ran out of retries; re-parked from the dead-letter queue (pubsub unreachable for days?)",
                    None,
                    "event_id",
                    &event.id,
                );
                message.ack();
            }
            Err(_) => {
                log::error("re-parking a dead-lettered event failed; will retry", None, "event_id", &event.id);
                message.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(60).build());
            }
        }
    }
    Ok(())
}
