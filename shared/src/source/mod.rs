//! Payment platforms ("sources"): verify a webhook, then normalize it into an [`Event`].
//!
//! Each platform is one module implementing [`Source`]; the edge and the CLI pick one by
//! name with [`by_name`]: [`hotmart`], [`stripe`] and Standard Webhooks senders
//! ([`std_webhooks`]), each without touching the event model or the engine.

pub mod hotmart;
mod loose;
pub mod redact;
pub mod std_webhooks;
pub mod stripe;

use crate::event::{Change, Event, SCHEMA};
use crate::ids::{EventId, SourceName};
use crate::timestamp::Timestamp;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

pub use hotmart::Hotmart;
pub use std_webhooks::StdWebhooks;
pub use stripe::Stripe;

/// Read access to request headers, case-insensitively.
pub trait Headers {
    /// The value of the first header with this name, ignoring ASCII case.
    fn header(&self, name: &str) -> Option<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for [(K, V)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

/// Why a webhook was refused as not genuine. Each variant is one reason a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No credentials are configured: refuse everything rather than accept unauthenticated.
    #[error("no {0} is configured; refusing every webhook")]
    NotConfigured(&'static str),
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// The token does not match any configured one.
    #[error("invalid token in {0}")]
    InvalidToken(&'static str),
    /// The signature does not match.
    #[error("invalid signature")]
    InvalidSignature,
    /// The signed timestamp is older than the tolerance.
    #[error("timestamp too old")]
    TimestampTooOld,
    /// The signed timestamp is ahead of the tolerance.
    #[error("timestamp in the future")]
    FutureTimestamp,
    /// A required header is present but not of its form (a timestamp that is not a number, …).
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    /// A configured secret cannot be used (not of the form the source needs): refuse
    /// everything rather than run with fewer secrets than configured. Names the setting only.
    #[error("a secret in {0} is not usable")]
    InvalidSecret(&'static str),
}

/// Why an authenticated body could not become an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// The body is not JSON (or not a JSON object).
    #[error("body is not a JSON object: {0}")]
    NotJson(String),
    /// A field the change needs is absent or of the wrong shape.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A field is present but its value is unusable.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// JSON path of the field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An authenticated request whose content type is not JSON (kept, not refused: a refusal
    /// can get the webhook deactivated by the platform).
    #[error("unexpected content type {0:?}")]
    UnexpectedContentType(String),
}

impl NormalizeError {
    /// A stable machine-readable code for error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            NormalizeError::NotJson(_) => "malformed_body",
            NormalizeError::MissingField(_) => "missing_field",
            NormalizeError::InvalidField { .. } => "invalid_field",
            NormalizeError::UnexpectedContentType(_) => "unexpected_content_type",
        }
    }

    /// The error for a content type: its essence, at most 100 characters of it.
    pub fn unexpected_content_type(content_type: &str) -> Self {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        NormalizeError::UnexpectedContentType(essence.chars().take(100).collect())
    }
}

/// A payment platform's webhook format.
pub trait Source {
    /// The source's name, as in `POST /webhooks/{name}`.
    fn name(&self) -> SourceName;

    /// The setting that holds the source's secrets (comma-separated during a rotation), e.g.
    /// `HOTMART_HOTTOK`: the edge and the CLI read it.
    fn secret_setting(&self) -> String;

    /// The cheap check, before the body is read: everything the headers alone can refuse
    /// (a missing or wrong token, a missing header, a timestamp out of tolerance). The edge
    /// calls it first, so an unauthenticated request costs no body read.
    fn verify_headers(&self, headers: &dyn Headers, now: Timestamp) -> Result<(), VerifyError>;

    /// The whole check: the request is genuine, over the exact body bytes received (a
    /// signature over the body is computed on these bytes, never on re-serialized JSON).
    /// It refuses everything [`Source::verify_headers`] refuses. `now` is the clock for
    /// timestamped signatures (shared has none of its own).
    fn verify(&self, headers: &dyn Headers, body: &[u8], now: Timestamp) -> Result<(), VerifyError>;

    /// Turns an authenticated body into the normalized event.
    fn normalize(&self, body: &[u8], received_at: Timestamp) -> Result<Event, NormalizeError>;

    /// Turns an authenticated request into the normalized event, with what its headers say
    /// (a source whose event id travels in a header reads it here). By default the body alone.
    fn normalize_request(
        &self,
        headers: &dyn Headers,
        body: &[u8],
        received_at: Timestamp,
    ) -> Result<Event, NormalizeError> {
        let _ = headers;
        self.normalize(body, received_at)
    }

    /// When the platform says it sent this body (its envelope time), if the body says:
    /// `lms-bridge simulate` replays a history with it as the arrival time.
    fn sent_at(&self, body: &[u8]) -> Option<Timestamp>;

    /// The body with every credential it may carry removed, for keeping as `raw`.
    fn redact(&self, body: &[u8]) -> Vec<u8>;

    /// An authenticated body that could not be normalized, kept as `unparsed` for replay.
    fn quarantine(&self, body: &[u8], reason: &NormalizeError, received_at: Timestamp) -> Event {
        let redacted = self.redact(body);
        // The reason may quote the body (parser messages do): it is scrubbed the same way.
        let reason = String::from_utf8_lossy(&self.redact(reason.to_string().as_bytes())).into_owned();
        let source = self.name();
        // Same bytes, same id: resends of a broken delivery dedupe like any other event.
        let digest = hex::encode(Sha256::digest(&redacted));
        let id = EventId::trusted(format!("{source}:unparsed:{}", &digest[..32]));
        Event {
            schema: Cow::Borrowed(SCHEMA),
            id,
            source,
            source_event: "UNPARSED".to_owned(),
            change: Change::Unparsed { reason },
            occurred_at: received_at,
            received_at,
            effective_at: received_at,
            clamped: false,
            student: None,
            product: None,
            grant_id: None,
            charge: None,
            subscription: None,
            amount: None,
            raw: Some(base64::engine::general_purpose::STANDARD.encode(redacted)),
            raw_truncated: false,
            raw_sha256: None,
            admin: None,
        }
    }
}

/// Why an event cannot be made to fit a size limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event JSON is {size} bytes, over the {limit}-byte limit, with no raw body to shorten")]
pub struct TooLargeError {
    /// The event's JSON size.
    pub size: usize,
    /// The limit.
    pub limit: usize,
}

/// The event, with its JSON at most `limit` bytes: as it is when it fits; else, when it
/// carries a raw body (a quarantined body too large), with `raw` cut to the body's first bytes,
/// `raw_truncated` set and `raw_sha256` the whole body's digest. `Ok(None)` means "fits as is".
pub fn fit_raw(event: &Event, limit: usize) -> Result<Option<Event>, TooLargeError> {
    let size = event.to_json().len();
    if size <= limit {
        return Ok(None);
    }
    let too_large = TooLargeError { size, limit };
    let engine = base64::engine::general_purpose::STANDARD;
    let Some(body) = event.raw.as_deref().and_then(|raw| engine.decode(raw).ok()) else {
        return Err(too_large);
    };
    let mut fitted = event.clone();
    fitted.raw = Some(String::new());
    fitted.raw_truncated = true;
    fitted.raw_sha256 = Some(hex::encode(Sha256::digest(&body)));
    let overhead = fitted.to_json().len();
    // Base64 takes 4 bytes per 3; leave a little room for the JSON around it.
    let room = limit.checked_sub(overhead + 16).ok_or(too_large)?;
    let keep = (room / 4 * 3).min(body.len());
    fitted.raw = Some(engine.encode(&body[..keep]));
    debug_assert!(fitted.to_json().len() <= limit);
    Ok(Some(fitted))
}

/// The sources this build knows, by name, configured with their secrets: the one registry
/// (adding a source is one module and one line here).
/// The secrets are held as digests or keys (to verify) and in a [`redact::Scrubber`] (to
/// remove them from kept bodies); nothing else keeps them.
pub fn by_name(name: &str, secrets: &[String]) -> Option<Box<dyn Source>> {
    match name {
        hotmart::NAME => Some(Box::new(Hotmart::new(secrets.iter().cloned()))),
        stripe::NAME => Some(Box::new(Stripe::new(secrets.iter().cloned()))),
        _ => Some(Box::new(StdWebhooks::for_source(name, secrets)?)),
    }
}

/// The sources with a name of their own, as [`by_name`] knows them (Standard Webhooks senders,
/// `std-{sender}`, are named by their operators): for listing what a caller may ask for.
pub const NAMED: [&str; 2] = [hotmart::NAME, stripe::NAME];

/// Whether this build has a source of that name (routing, before any secret is read).
pub fn is_known(name: &str) -> bool {
    by_name(name, &[]).is_some()
}

/// The setting that holds the secrets of the source of that name, if the build knows it.
pub fn secret_setting(name: &str) -> Option<String> {
    by_name(name, &[]).map(|source| source.secret_setting())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_named_source_is_in_the_registry_under_its_name() {
        for name in super::NAMED {
            let source = super::by_name(name, &[]).expect("named sources are known");
            assert_eq!(source.name().as_str(), name);
        }
    }
}
