//! What the fuzz targets share: a fixed arrival time, the configured secrets, and the one
//! contract every event checks — what is published, the backend reads back unchanged.

use base64::Engine as _;
use lms_bridge_backend::shared::{Change, Event, Timestamp};

/// The hottok the targets configure. Short and in the dictionaries, so that the fuzzer puts it
/// into bodies and the redaction check has something to find.
pub const HOTTOK: &str = "fuzz-hottok";

/// The Stripe endpoint secret the Stripe target configures (used as written: the HMAC key is
/// these bytes). In its dictionary, like the hottok.
pub const STRIPE_SECRET: &str = "whsec_fuzz-stripe";

/// The Standard Webhooks sender the std target configures (source `std-acme`).
pub const STD_SENDER: &str = "acme";

/// Its secret: `whsec_` and base64 of the key `fuzz-std-key`. In its dictionary.
pub const STD_SECRET: &str = "whsec_ZnV6ei1zdGQta2V5";

/// The edge's clock for every body: arrival time is not outside input.
pub fn received_at() -> Timestamp {
    Timestamp::from_unix_millis(1_767_225_600_000).expect("2026-01-01T00:00:00Z is a valid time")
}

/// The arrival time in whole seconds: the signed timestamp a request sent now carries.
pub fn received_at_secs() -> i64 {
    received_at().unix_millis().div_euclid(1000)
}

/// Whether this input also gets the round trip through the source's own `sign` (a fraction of
/// them: two HMACs more per input would slow every input down).
pub fn sign_check(input: &[u8]) -> bool {
    input.len() % 8 == 0
}

/// `body` with one byte changed (an empty body gets one byte).
pub fn flip_one_byte(body: &[u8]) -> Vec<u8> {
    let mut flipped = body.to_vec();
    match flipped.get_mut(body.len() / 2) {
        Some(byte) => *byte ^= 0x01,
        None => flipped.push(b'x'),
    }
    flipped
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

/// A quarantined body, as the edge keeps it: an `unparsed` event of `source` stamped `at`,
/// whose kept body and reason (which may quote the body) never hold `secret`, and which reads
/// back unchanged.
pub fn assert_quarantined(kept: &Event, source: &str, at: Timestamp, secret: &str) {
    assert_eq!(kept.source.as_str(), source);
    assert!(kept.id.as_str().starts_with(&format!("{source}:unparsed:")), "{}", kept.id);
    assert_eq!(kept.received_at, at);
    let raw = kept.raw.as_deref().expect("an unparsed event keeps the body");
    let raw = base64::engine::general_purpose::STANDARD.decode(raw).expect("raw is base64");
    assert!(!contains(&raw, secret.as_bytes()), "the kept body holds the secret");
    let Change::Unparsed { reason } = &kept.change else { panic!("not unparsed: {:?}", kept.change) };
    assert!(!reason.contains(secret), "the reason holds the secret");
    assert_round_trips(kept);
}

/// Whether `haystack` holds `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
