//! The edge's one error type and its one mapping to HTTP (docs/contracts.md#edge-endpoints).

use lms_bridge_shared::source::VerifyError;
use worker::Response;

/// Everything that ends a request without accepting it.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// No such route.
    #[error("no such route")]
    NotFound,
    /// `/webhooks/{source}` for a source this build does not know.
    #[error("unknown source {0:?}")]
    UnknownSource(String),
    /// Wrong method for the route.
    #[error("method not allowed; use {0}")]
    MethodNotAllowed(&'static str),
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthorized(VerifyError),
    /// The body is over 1 MiB.
    #[error("body larger than 1 MiB")]
    TooLarge,
    /// A secret or setting is missing or unusable: refuse loudly rather than run
    /// unauthenticated. The text is fixed (a setting's name, never its value).
    #[error("edge misconfigured: {0}")]
    Misconfigured(String),
    /// Neither Pub/Sub nor the queue took the event; the sender should retry.
    #[error("event could not be stored: {0}")]
    Unavailable(String),
    /// The runtime failed us.
    #[error("runtime error: {0}")]
    Runtime(#[from] worker::Error),
}

impl EdgeError {
    /// Maps a verification failure; a missing secret is our fault, not the caller's.
    pub fn from_verify(error: VerifyError) -> Self {
        match error {
            VerifyError::NotConfigured(name) => EdgeError::Misconfigured(format!("secret {name} is not set")),
            VerifyError::InvalidSecret(name) => EdgeError::Misconfigured(format!("a secret in {name} is not usable")),
            other => EdgeError::Unauthorized(other),
        }
    }

    fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            EdgeError::NotFound => (404, "not_found"),
            EdgeError::UnknownSource(_) => (404, "unknown_source"),
            EdgeError::MethodNotAllowed(_) => (405, "method_not_allowed"),
            EdgeError::Unauthorized(_) => (401, "unauthorized"),
            EdgeError::TooLarge => (413, "payload_too_large"),
            EdgeError::Misconfigured(_) => (500, "misconfigured"),
            EdgeError::Unavailable(_) => (503, "unavailable"),
            EdgeError::Runtime(_) => (500, "internal"),
        }
    }

    /// The JSON error answer. Internal details stay in the log, never in the body.
    pub fn into_response(self) -> worker::Result<Response> {
        let (status, code) = self.status_and_code();
        let message = match &self {
            EdgeError::Misconfigured(_) | EdgeError::Runtime(_) => "internal error".to_owned(),
            EdgeError::Unavailable(_) => "event could not be stored; retry later".to_owned(),
            other => other.to_string(),
        };
        let body = serde_json::json!({ "error": { "code": code, "message": message } });
        Ok(Response::from_json(&body)?.with_status(status))
    }
}
