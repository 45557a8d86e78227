//! The backend's HTTP surface: Pub/Sub push, the scheduler's sweep and reconcile, health.
//!
//! No request logging: the push and sweep URLs carry the verification token in their query
//! string (`?token=`), and a log line never holds a token, a key or an email. The lines written
//! here name routes, event ids, student keys and fixed reasons only.

pub mod error;

use crate::auth::{AuthError, PushAuth, PushAuthMode};
use crate::engine::{ApplyError, Engine, Outcome};
use crate::store::docs::{EventDoc, EventStatus};
use crate::store::{FirestoreStore, StateStore};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use error::ApiError;
use lms_bridge_shared::event::EventError;
use lms_bridge_shared::{Event, EventId, Timestamp};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Everything a handler needs; generic over the store so the surface can be served over the
/// in-memory store too.
pub struct AppState<S: StateStore = FirestoreStore> {
    /// The engine.
    pub engine: Engine<S>,
    /// Push/scheduler token verification.
    pub auth: PushAuth,
    /// The GCP project, for trace ids.
    pub project: String,
    /// The push envelope's `subscription` must be this (`projects/P/subscriptions/S`), when set.
    pub subscription: Option<String>,
    /// `POST /tasks/reconcile`, when Hotmart API credentials are set.
    pub reconciler: Option<Reconciler>,
}

/// What `POST /tasks/reconcile` runs with.
pub struct Reconciler {
    /// Hotmart's API.
    pub api: crate::hotmart_api::HotmartApi,
    /// The events topic.
    pub publisher: Arc<crate::publish::EventPublisher>,
    /// Days re-read.
    pub days: u32,
}

/// Well inside Pub/Sub's push deadline (the ack deadline, `PUBSUB_ACK_DEADLINE_SECONDS` in deploy/pubsub.env).
const HANDLER_BUDGET: Duration = Duration::from_secs(45);

/// The router.
pub fn router<S: StateStore>(state: Arc<AppState<S>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/pubsub/push", post(push::<S>))
        .route("/tasks/sweep", post(sweep::<S>))
        .route("/tasks/reconcile", post(reconcile::<S>))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}

// Pub/Sub (and its emulator) send the id twice, as `messageId` and `message_id`: two fields,
// not a serde alias, which would refuse the duplicate.
#[derive(Deserialize)]
struct PushMessage {
    #[serde(default)]
    data: String,
    #[serde(rename = "messageId")]
    message_id: Option<String>,
    #[serde(rename = "message_id")]
    message_id_snake: Option<String>,
    #[serde(rename = "publishTime")]
    publish_time: Option<String>,
    #[serde(rename = "publish_time")]
    publish_time_snake: Option<String>,
}

/// A Pub/Sub push request body. Public (with [`parse_push_envelope`] and [`decode_push_data`])
/// only so that the fuzz targets in `fuzz/` reach the push decoding; its fields stay private.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushEnvelope {
    message: PushMessage,
    #[serde(default)]
    subscription: String,
    #[serde(default)]
    delivery_attempt: Option<u32>,
}

/// The `?token=` query parameter.
#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn trace<S: StateStore>(state: &AppState<S>, headers: &HeaderMap) -> String {
    headers
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('/').next())
        .map(|id| format!("projects/{}/traces/{id}", state.project))
        .unwrap_or_default()
}

async fn authenticate<S: StateStore>(state: &AppState<S>, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    // A query that does not parse (a repeated `token`, bad escapes) carries no usable token.
    let query = Query::<TokenQuery>::try_from_uri(uri).ok();
    let token = query.as_ref().and_then(|q| q.token.as_deref());
    match state.auth.verify(authorization, token).await {
        Ok(()) => Ok(()),
        Err(AuthError::Jwks(e)) => {
            Err(ApiError::Unavailable(format!("cannot verify tokens now: cannot fetch the signing keys: {e}")))
        }
        Err(e) => {
            // The route only: the URI's query holds the verification token.
            tracing::warn!(route = uri.path(), error = %e, "request refused");
            Err(ApiError::Unauthorized(e.to_string()))
        }
    }
}

fn unavailable(e: &ApplyError) -> ApiError {
    ApiError::Unavailable(match e {
        ApplyError::Store(_) => "state store unavailable; retry".to_owned(),
        ApplyError::Lms(_) => "LMS unavailable; the change is saved and will be retried".to_owned(),
        ApplyError::Busy(_) => "another delivery is applying this change; retry".to_owned(),
        ApplyError::Unresolved(reason) => format!("not applicable yet: {reason}"),
        ApplyError::Lookup(_) => "the payment platform's API is unavailable; retry".to_owned(),
    })
}

/// What is wrong with a JSON text, without quoting it (serde's messages quote values, which
/// may be emails or tokens).
fn json_problem(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => {
            format!("JSON of an unexpected shape (line {}, column {})", e.line(), e.column())
        }
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not JSON".to_owned(),
        serde_json::error::Category::Io => "unreadable".to_owned(),
    }
}

/// Why message data is not an event, safe to log, store and answer.
fn event_problem(e: &EventError) -> String {
    match e {
        EventError::Malformed(e) => format!("data is {}", json_problem(e)),
        EventError::Schema { found: Some(found) }
            if found.len() <= 64 && found.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
        {
            format!("unsupported schema {found:?}")
        }
        EventError::Schema { found: Some(_) } => "unsupported schema (unprintable)".to_owned(),
        EventError::Schema { found: None } => "no schema".to_owned(),
        EventError::Incomplete { .. } => e.to_string(),
    }
}

/// Reads a push request body; `Err` says why it is not a push envelope, without quoting it.
/// Pure; public for the fuzz targets in `fuzz/`.
pub fn parse_push_envelope(body: &[u8]) -> Result<PushEnvelope, String> {
    serde_json::from_slice(body).map_err(|e| json_problem(&e))
}

/// A push message's data decoded (`None` when it is not base64), and the event it holds or why
/// it holds none (safe to log, store and answer). Pure; public for the fuzz targets in `fuzz/`.
pub fn decode_push_data(envelope: &PushEnvelope) -> (Option<Vec<u8>>, Result<Event, String>) {
    let data = base64::engine::general_purpose::STANDARD.decode(envelope.message.data.as_bytes());
    let event = match &data {
        Err(_) => Err("data is not base64".to_owned()),
        Ok(bytes) => Event::from_json(bytes).map_err(|e| event_problem(&e)),
    };
    (data.ok(), event)
}

/// Stores a message whose data is not an lms-bridge event, whole, under `pubsub:{messageId}`
/// (never under the event id its attributes may name: that would make a later, readable
/// delivery of the event look like a duplicate). The data is kept as text when it is UTF-8,
/// base64-encoded otherwise (the reason says so).
async fn store_undecodable<S: StateStore>(
    state: &AppState<S>,
    message: &PushMessage,
    message_id: &str,
    data: Option<&[u8]>,
    reason: &str,
) -> Result<String, ApiError> {
    let now = state.engine.clock.now();
    let (kept, reason) = match data.map(std::str::from_utf8) {
        Some(Ok(text)) => (text.to_owned(), reason.to_owned()),
        Some(Err(_)) => (
            base64::engine::general_purpose::STANDARD.encode(data.unwrap_or_default()),
            format!("{reason}; event_json holds the data base64-encoded"),
        ),
        // Not base64: the `data` field exactly as it came.
        None => (message.data.clone(), format!("{reason}; event_json holds the data field as received")),
    };
    // Pub/Sub's message ids are short decimal strings; anything else is named by time.
    let id = EventId::parse(format!("pubsub:{message_id}"))
        .ok()
        .filter(|_| !message_id.is_empty())
        .map_or_else(|| EventId::parse(format!("pubsub:no-message-id-{}", now.unix_millis())), Ok)
        .map_err(|e| ApiError::BadRequest(format!("push message id: {e}")))?;
    let published = message
        .publish_time
        .as_deref()
        .or(message.publish_time_snake.as_deref())
        .and_then(|t| Timestamp::parse_rfc3339(t).ok())
        .unwrap_or(now);
    let doc = EventDoc {
        id: id.clone(),
        status: EventStatus::Failed,
        reason: Some(reason),
        source_event: String::new(),
        change: "undecodable".to_owned(),
        student_key: None,
        enrollments: Vec::new(),
        occurred_at: published,
        received_at: now,
        processed_at: now,
        // An operator must see it: no TTL.
        expire_at: None,
        event_json: Some(kept),
        admin: None,
        decisions: Vec::new(),
    };
    match state.engine.store.put_event(&doc).await {
        Ok(()) => Ok(id.to_string()),
        Err(e) => {
            tracing::warn!(message_id = %message_id, error = %e, "cannot store an undecodable push message; Pub/Sub will redeliver");
            Err(ApiError::Unavailable("state store unavailable; retry".to_owned()))
        }
    }
}

async fn push<S: StateStore>(
    State(state): State<Arc<AppState<S>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authenticate(&state, &headers, &uri).await?;
    let trace = trace(&state, &headers);
    let envelope = parse_push_envelope(&body).map_err(|problem| {
        tracing::warn!(error = %problem, trace = %trace, "push body is not a Pub/Sub push envelope");
        ApiError::BadRequest(format!("not a Pub/Sub push envelope: {problem}"))
    })?;
    if let Some(expected) = &state.subscription {
        if envelope.subscription != *expected {
            tracing::warn!(trace = %trace, "push from another subscription than PUBSUB_SUBSCRIPTION; refused");
            return Err(ApiError::Forbidden("push from an unexpected subscription".into()));
        }
    }
    let message_id =
        envelope.message.message_id.clone().or_else(|| envelope.message.message_id_snake.clone()).unwrap_or_default();
    let (data, event) = decode_push_data(&envelope);
    let event = match event {
        Ok(event) => event,
        Err(reason) => {
            // Another schema (an edge deployed before this backend) or garbage. Acking would
            // drop it from Pub/Sub; instead it is stored whole and refused with 422, so Pub/Sub
            // redelivers it (a backend deployed meanwhile may read it) and, after the
            // subscription's maximum delivery attempts, moves it to the dead-letter topic, where
            // operators look and republish. 4xx rather than 5xx: Pub/Sub treats both as a nack,
            // but its push metrics (`response_class` remote_server_4xx vs 5xx) and Cloud Run's
            // error rate keep a bad message apart from an outage.
            let stored = store_undecodable(&state, &envelope.message, &message_id, data.as_deref(), &reason).await?;
            tracing::error!(
                event = "undecodable",
                message_id = %message_id,
                record = %stored,
                attempt = envelope.delivery_attempt.unwrap_or(1),
                error = %reason,
                trace = %trace,
                "push message is not an lms-bridge event; stored and refused so that it is dead-lettered"
            );
            return Err(ApiError::Unprocessable(format!("not an lms-bridge event: {reason}; stored as {stored}")));
        }
    };
    let event = state.engine.keyed(event);
    let student = event.student_key().map(ToString::to_string).unwrap_or_default();
    let outcome = tokio::time::timeout(HANDLER_BUDGET, state.engine.apply(&event)).await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::warn!(event_id = %event.id, student = %student, trace = %trace, "event took too long; Pub/Sub will redeliver");
            return Err(ApiError::Unavailable("took too long; retry".into()));
        }
    };
    match outcome {
        Ok(outcome) => {
            let (status, reason) = match &outcome {
                Outcome::Applied => ("applied", None),
                Outcome::Duplicate => ("duplicate", None),
                Outcome::Ignored(r) => ("ignored", Some(r.clone())),
                Outcome::Unmapped(r) => ("unmapped", Some(r.clone())),
                Outcome::Quarantined => ("quarantined", None),
                Outcome::Failed(r) => ("failed", Some(r.clone())),
            };
            tracing::info!(event_id = %event.id, student = %student, change = event.change.kind(), status, attempt = envelope.delivery_attempt.unwrap_or(1), trace = %trace, "push handled");
            Ok(Json(json!({ "status": status, "event_id": event.id, "reason": reason })))
        }
        Err(e) => {
            tracing::warn!(event_id = %event.id, student = %student, error = %e, trace = %trace, "event not finished; Pub/Sub will redeliver");
            Err(unavailable(&e))
        }
    }
}

async fn sweep<S: StateStore>(
    State(state): State<Arc<AppState<S>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authenticate(&state, &headers, &uri).await?;
    match state.engine.sweep().await {
        Ok(report) => {
            tracing::info!(
                ended = report.ended,
                retried = report.retried,
                errors = report.errors,
                complete = report.complete,
                "sweep done"
            );
            Ok(Json(json!(report)))
        }
        Err(e) => {
            tracing::warn!(error = %e, "sweep incomplete");
            Err(unavailable(&e))
        }
    }
}

/// Logs the `PUSH_AUTH=none` warning at start.
pub fn warn_if_unauthenticated(auth: &PushAuth) {
    if auth.mode() == PushAuthMode::None {
        tracing::warn!("PUSH_AUTH=none: pushes and sweeps are NOT authenticated. Never run this way outside a laptop.");
    }
}

/// Cloud Scheduler's hourly reconcile (authenticated like the sweep): re-reads Hotmart's recent
/// sales and subscriptions and publishes the facts the state lacks; answers the run's record.
async fn reconcile<S: StateStore>(
    State(state): State<Arc<AppState<S>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authenticate(&state, &headers, &uri).await?;
    let Some(reconciler) = &state.reconciler else {
        return Err(ApiError::NotConfigured(
            "reconcile is off: set HOTMART_CLIENT_ID and HOTMART_CLIENT_SECRET".to_owned(),
        ));
    };
    let result = crate::commands::jobs::reconcile_once(
        &state.engine.store,
        &reconciler.api,
        Arc::clone(&reconciler.publisher),
        state.engine.pepper.clone(),
        reconciler.days,
        state.engine.clock.as_ref(),
    )
    .await;
    match result {
        Ok(doc) => {
            tracing::info!(job = %doc.id, published = doc.counts.published, known = doc.counts.known, errors = doc.counts.errors, "reconcile done");
            Ok(Json(json!({ "job": doc.id, "status": doc.status, "counts": doc.counts, "errors": doc.errors })))
        }
        Err(e) => {
            tracing::warn!(error = %e, "reconcile failed");
            Err(ApiError::Unavailable(format!("reconcile failed: {e}")))
        }
    }
}
