//! The backend's HTTP surface: Pub/Sub push, the scheduler's sweep, health.

pub mod error;

use crate::auth::{AuthError, PushAuth, PushAuthMode};
use crate::engine::{ApplyError, Engine, Outcome};
use crate::store::{FirestoreStore, StateStore};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use error::ApiError;
use lms_bridge_shared::Event;
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
}

/// Well inside Pub/Sub's push deadline (the ack deadline, 60 s in deploy/gcp.sh).
const HANDLER_BUDGET: Duration = Duration::from_secs(45);

/// The router.
pub fn router<S: StateStore>(state: Arc<AppState<S>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/pubsub/push", post(push::<S>))
        .route("/tasks/sweep", post(sweep::<S>))
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
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushEnvelope {
    message: PushMessage,
    #[serde(default)]
    subscription: String,
    #[serde(default)]
    delivery_attempt: Option<u32>,
}

fn trace<S: StateStore>(state: &AppState<S>, headers: &HeaderMap) -> String {
    headers
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('/').next())
        .map(|id| format!("projects/{}/traces/{id}", state.project))
        .unwrap_or_default()
}

async fn authenticate<S: StateStore>(state: &AppState<S>, headers: &HeaderMap) -> Result<(), ApiError> {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    match state.auth.verify(authorization).await {
        Ok(()) => Ok(()),
        Err(AuthError::Jwks(e)) => Err(ApiError::Unavailable(format!("cannot verify tokens now: {e}"))),
        Err(e) => {
            tracing::warn!(error = %e, "push refused");
            Err(ApiError::Unauthorized(e.to_string()))
        }
    }
}

fn unavailable(e: &ApplyError) -> ApiError {
    ApiError::Unavailable(match e {
        ApplyError::Store(_) => "state store unavailable; retry".to_owned(),
        ApplyError::Lms(_) => "LMS unavailable; the change is saved and will be retried".to_owned(),
        ApplyError::Busy(_) => "another delivery is applying this change; retry".to_owned(),
    })
}

async fn push<S: StateStore>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authenticate(&state, &headers).await?;
    let trace = trace(&state, &headers);
    let envelope: PushEnvelope = serde_json::from_slice(&body).map_err(|e| {
        tracing::warn!(error = %e, trace = %trace, "push body is not a Pub/Sub push envelope");
        ApiError::BadRequest(format!("not a Pub/Sub push envelope: {e}"))
    })?;
    let message_id = envelope.message.message_id.or(envelope.message.message_id_snake).unwrap_or_default();
    let data = base64::engine::general_purpose::STANDARD.decode(envelope.message.data.as_bytes());
    let event = match data.map_err(|e| e.to_string()).and_then(|d| Event::from_json(&d).map_err(|e| e.to_string())) {
        Ok(event) => event,
        Err(reason) => {
            // A message that can never be an event: ack it, or it loops until dead-lettered.
            tracing::error!(message_id = %message_id, subscription = %envelope.subscription, error = %reason, trace = %trace, "push message is not an lms-bridge event; dropped");
            return Ok(Json(json!({ "status": "failed", "reason": reason })));
        }
    };
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
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authenticate(&state, &headers).await?;
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
