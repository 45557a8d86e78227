//! JSON log lines. Never a token, a key, a body or an email: ids, codes and fixed texts only.

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
    /// Why the body was quarantined (a reason code), when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<&'static str>,
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

    /// Writes the line: ERROR for 5xx, WARNING for 4xx and for a quarantined body.
    pub fn emit(mut self) {
        self.severity = match self.status {
            500.. => "ERROR",
            400.. => "WARNING",
            _ if self.quarantined.is_some() => "WARNING",
            _ => "INFO",
        };
        let text = serde_json::to_string(&self).unwrap_or_default();
        match self.severity {
            "ERROR" => worker::console_error!("{text}"),
            "WARNING" => worker::console_warn!("{text}"),
            _ => worker::console_log!("{text}"),
        }
    }
}

fn line(severity: &str, message: &str, detail: Option<&str>, id_field: &str, id: &dyn std::fmt::Display) -> String {
    let mut line = serde_json::json!({ "severity": severity, "message": message });
    if let Some(detail) = detail {
        line["error"] = detail.into();
    }
    line[id_field] = id.to_string().into();
    line.to_string()
}

/// A warning about one event (or, when it cannot be read, one queue message). `detail` must
/// be a fixed text or a code.
pub fn warn(message: &str, detail: Option<&str>, id_field: &str, id: &dyn std::fmt::Display) {
    worker::console_warn!("{}", line("WARNING", message, detail, id_field, id));
}

/// An error about one event (or queue message) that needs an operator. `message` is fixed.
pub fn error(message: &str, detail: Option<&str>, id_field: &str, id: &dyn std::fmt::Display) {
    worker::console_error!("{}", line("ERROR", message, detail, id_field, id));
}

/// A parked event reached Pub/Sub.
pub fn queue_delivered(event_id: &dyn std::fmt::Display) {
    worker::console_log!("{}", line("INFO", "parked event published", None, "event_id", event_id));
}
