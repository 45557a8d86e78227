//! JSON log lines in the Cloud Logging shape: `severity`, `message`, `time`, the event's
//! fields, and `logging.googleapis.com/trace` when a `trace` field is given. Callers log the
//! student key, never an email, and never a secret.

use crate::clock::{Clock, SystemClock};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

/// The formatter.
pub struct CloudLogging;

impl<S, N> FormatEvent<S, N> for CloudLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = Fields(serde_json::Map::new());
        event.record(&mut fields);
        let mut line = fields.0;
        let severity = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            _ => "DEBUG",
        };
        line.insert("severity".into(), severity.into());
        line.insert("time".into(), SystemClock.now().to_string().into());
        line.insert("target".into(), event.metadata().target().into());
        if let Some(trace) = line.remove("trace") {
            line.insert("logging.googleapis.com/trace".into(), trace);
        }
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

/// Installs the formatter for the whole process. `RUST_LOG` filters; the default is `info` for
/// the server and `warn` for one-shot commands, whose output is their answer.
pub fn init(server: bool) {
    let default = if server { "info,h2=warn,hyper=warn,tonic=warn,firestore=warn" } else { "warn,firestore=error" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(CloudLogging)
        .with_writer(std::io::stderr)
        .try_init();
}
