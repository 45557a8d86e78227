//! The Pub/Sub message that carries an event (DESIGN §4.2).

use crate::event::Event;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A message as the Pub/Sub REST `publish` call and push deliveries spell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PubsubMessage {
    /// Base64 of the event JSON.
    pub data: String,
    /// `schema`, `source`, `event_id`, `change`.
    pub attributes: BTreeMap<String, String>,
    /// The student key, so one student's events are delivered in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
}

impl PubsubMessage {
    /// The message for an event.
    pub fn from_event(event: &Event) -> Self {
        let attributes = BTreeMap::from([
            ("schema".to_owned(), event.schema.to_string()),
            ("source".to_owned(), event.source.to_string()),
            ("event_id".to_owned(), event.id.to_string()),
            ("change".to_owned(), event.change.kind().to_owned()),
        ]);
        Self {
            data: base64::engine::general_purpose::STANDARD.encode(event.to_json()),
            attributes,
            ordering_key: event.student_key().map(|k| k.to_string()),
        }
    }

    /// The decoded `data` bytes.
    pub fn data_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.data)
    }
}
