//! One JSON log line per request. Never a token, a key or an email: the student key only.

use serde::Serialize;

/// The request log line.
#[derive(Serialize, Default)]
pub struct Line {
    severity: &'static str,
    method: String,
    route: String,
    /// The webhook source.
    pub source: Option<String>,
    /// Answer status.
    pub status: u16,
    /// The normalized event id.
    pub event_id: Option<String>,
    /// The student key (sha256 of the email).
    pub student: Option<String>,
    /// The change type.
    pub change: Option<&'static str>,
    /// A stated business time was ahead of the edge clock + 5 minutes and was clamped.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub clamped: bool,
    /// `pubsub` or `queue`.
    pub via: Option<&'static str>,
    /// Why the request failed.
    pub error: Option<String>,
    /// Time spent in the Worker.
    pub latency_ms: u64,
}

impl Line {
    /// A line for a request; the route is the path (it carries no secrets).
    pub fn new(method: String, path: &str) -> Self {
        Self { severity: "INFO", method, route: path.chars().take(100).collect(), ..Self::default() }
    }

    /// Writes the line.
    pub fn emit(mut self) {
        if self.status >= 500 {
            self.severity = "ERROR";
        } else if self.status >= 400 {
            self.severity = "WARNING";
        }
        worker::console_log!("{}", serde_json::to_string(&self).unwrap_or_default());
    }
}

/// A warning about one event (or, when it cannot be read, one queue message).
pub fn warn(message: &str, error: &str, id_field: &str, id: &dyn std::fmt::Display) {
    let mut line = serde_json::json!({ "severity": "WARNING", "message": message, "error": error });
    line[id_field] = id.to_string().into();
    worker::console_warn!("{line}");
}

/// A parked event reached Pub/Sub.
pub fn queue_delivered(event_id: &dyn std::fmt::Display) {
    let line = serde_json::json!({ "severity": "INFO", "message": "parked event published", "event_id": event_id.to_string() });
    worker::console_log!("{line}");
}
