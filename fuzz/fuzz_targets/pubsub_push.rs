//! A Pub/Sub push request body, as the backend's `POST /pubsub/push` reads it: the envelope,
//! then the event its base64 data holds (or why it holds none).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lms_bridge_backend::http::{decode_push_data, parse_push_envelope};
use lms_bridge_fuzz::assert_round_trips;
use lms_bridge_backend::shared::pubsub::PubsubMessage;

fuzz_target!(|body: &[u8]| {
    let Ok(envelope) = parse_push_envelope(body) else { return };
    let (data, event) = decode_push_data(&envelope);
    let Ok(event) = event else { return };
    assert!(data.is_some(), "an event without data");
    assert_round_trips(&event);
    // What the edge would publish for this event, pushed back, is read as the same event.
    let message = PubsubMessage::from_event(&event);
    let push = serde_json::json!({ "message": message, "subscription": "projects/p/subscriptions/s" });
    let push = serde_json::to_vec(&push).expect("a JSON value serializes");
    let envelope = parse_push_envelope(&push).expect("a published message is a push envelope");
    let (_, again) = decode_push_data(&envelope);
    assert_eq!(again.as_ref(), Ok(&event));
});
