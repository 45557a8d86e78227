//! What the fuzz targets share: a fixed arrival time, the configured hottok, and the one
//! contract every event checks — what is published, the backend reads back unchanged.

use lms_bridge_backend::shared::{Event, Timestamp};

/// The hottok the targets configure. Short and in the dictionaries, so that the fuzzer puts it
/// into bodies and the redaction check has something to find.
pub const HOTTOK: &str = "fuzz-hottok";

/// The edge's clock for every body: arrival time is not outside input.
pub fn received_at() -> Timestamp {
    Timestamp::from_unix_millis(1_767_225_600_000).expect("2026-01-01T00:00:00Z is a valid time")
}

/// An event that reaches Pub/Sub is read back by the backend (`Event::from_json`, which also
/// checks that an access change is complete) as the same event.
pub fn assert_round_trips(event: &Event) {
    let json = event.to_json();
    match Event::from_json(&json) {
        Ok(read) => assert_eq!(&read, event, "the event changed through its JSON"),
        Err(e) => panic!("the backend refuses a published event ({e}): {}", String::from_utf8_lossy(&json)),
    }
}

/// Whether `haystack` holds `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
