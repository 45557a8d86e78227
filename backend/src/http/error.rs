//! The backend's one error → HTTP mapping: `{"error":{"code","message"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An HTTP error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or bad token.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed here (a push from another subscription).
    #[error("{0}")]
    Forbidden(String),
    /// A message that cannot be applied: stored, and refused so that Pub/Sub dead-letters it.
    #[error("{0}")]
    Unprocessable(String),
    /// No such route.
    #[error("no such route")]
    NotFound,
    /// Wrong method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A dependency failed; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The route needs settings this deployment does not have.
    #[error("{0}")]
    NotConfigured(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "malformed"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::NotConfigured(_) => (StatusCode::NOT_IMPLEMENTED, "not_configured"),
        };
        let body = serde_json::json!({ "error": { "code": code, "message": self.to_string() } });
        (status, Json(body)).into_response()
    }
}
