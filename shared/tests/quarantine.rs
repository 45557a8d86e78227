//! What a quarantined body keeps: never the hottok, in whatever shape or spelling it arrives;
//! what a normalized event keeps of free text; and how a too-large event is made to fit a
//! queue message.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use base64::Engine as _;
use lms_bridge_shared::source::{fit_raw, hotmart, Hotmart, NormalizeError, Source};
use lms_bridge_shared::{Event, Timestamp};
use sha2::{Digest, Sha256};

const TOKEN: &str = "Hk9/zq-SECRET-77";
const OTHER: &str = "rotated-0ld-t0ken";

fn received() -> Timestamp {
    Timestamp::from_unix_millis(1_764_000_000_000).unwrap()
}

fn source() -> Hotmart {
    Hotmart::new([TOKEN.to_string(), OTHER.to_string()])
}

/// The raw bytes an unparsed event keeps.
fn kept(body: &[u8]) -> Vec<u8> {
    let source = source();
    let reason = source.normalize(body, received()).unwrap_err();
    let event = source.quarantine(body, &reason, received());
    base64::engine::general_purpose::STANDARD.decode(event.raw.unwrap()).unwrap()
}

fn assert_no_token(what: &str, kept: &[u8]) {
    let text = String::from_utf8_lossy(kept);
    for secret in [TOKEN, OTHER, "SECRET", "0ld-t0ken"] {
        assert!(!text.contains(secret), "{what}: {secret} kept in {text}");
    }
    // A body that parses loses its hottok keys too (one that does not keeps the key name only).
    if serde_json::from_slice::<serde_json::Value>(kept).is_ok() {
        assert!(!text.to_lowercase().contains("\"hottok\""), "{what}: a hottok key kept in {text}");
    }
}

#[test]
fn the_hottok_is_removed_from_every_shape_of_body() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("top-level key", format!(r#"{{"hottok":"{TOKEN}","id":"e1","event":"PURCHASE_APPROVED"}}"#).into()),
        ("BOM-prefixed", format!("\u{feff}{{\"hottok\":\"{TOKEN}\",\"id\":\"e1\"}}").into()),
        ("array", format!(r#"[{{"hottok":"{TOKEN}","id":"e1"}}]"#).into()),
        ("nested", format!(r#"{{"id":"e1","data":{{"auth":{{"hottok":"{OTHER}"}}}}}}"#).into()),
        ("HOTTOK key", format!(r#"{{"HOTTOK":"{TOKEN}","id":"e1","event":"PURCHASE_APPROVED"}}"#).into()),
        ("Hottok key", format!(r#"{{"Hottok":"{TOKEN}","id":"e1","event":"PURCHASE_APPROVED"}}"#).into()),
        ("inside another string", format!(r#"{{"id":"e1","note":"token={TOKEN}; ok"}}"#).into()),
        (
            "\\u-escaped and \\/",
            br#"{"id":"e1","x":"\u0048\u006b9\/zq-\u0053ECRET-77","y":"rotated-0ld-t0\u006Ben"}"#.to_vec(),
        ),
        ("not JSON", format!("hottok={TOKEN}&other={OTHER}").into()),
        ("percent-encoded form", b"hottok=Hk9%2Fzq-SECRET-77&x=1".to_vec()),
        ("not JSON, truncated", format!(r#"{{"hottok":"{TOKEN}","id":"#).into()),
    ];
    for (what, body) in cases {
        assert_no_token(what, &kept(&body));
    }
}

#[test]
fn the_rest_of_the_body_is_kept() {
    // No hottok at all: the bytes stay byte for byte (no re-serialization).
    let body = br#"{ "id" : "e1",  "event":"PURCHASE_APPROVED", "data": {} }"#;
    assert_eq!(kept(body), body);
    // A token inside another string: only the token goes.
    let body = format!(r#"{{"id":"e1","note":"token={TOKEN}; ok"}}"#);
    assert_eq!(kept(body.as_bytes()), br#"{"id":"e1","note":"token=; ok"}"#);
    // A secret-named key goes, the rest stays.
    let body = format!(r#"[{{"id":"e1","Hottok":"{TOKEN}","data":{{"x":1}}}}]"#);
    let json: serde_json::Value = serde_json::from_slice(&kept(body.as_bytes())).unwrap();
    assert_eq!(json, serde_json::json!([{ "id": "e1", "data": { "x": 1 } }]));
    // Not JSON: only the token goes.
    assert_eq!(kept(format!("a={TOKEN}&b=2").as_bytes()), b"a=&b=2");
}

#[test]
fn the_reason_is_scrubbed_too() {
    let source = source();
    let reason = NormalizeError::unexpected_content_type(&format!("text/{TOKEN}; charset=utf-8"));
    let event = source.quarantine(b"x", &reason, received());
    let text = String::from_utf8(event.to_json()).unwrap();
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("unexpected content type"), "{text}");
    assert_eq!(reason.code(), "unexpected_content_type");
}

#[test]
fn names_and_free_text_are_clipped() {
    let mut raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read("../tests/fixtures/hotmart/purchase_approved.json").unwrap()).unwrap();
    let huge = "é".repeat(1024 * 1024);
    raw["data"]["buyer"]["name"] = huge.clone().into();
    raw["data"]["buyer"]["first_name"] = huge.clone().into();
    raw["data"]["product"]["name"] = huge.clone().into();
    raw["data"]["purchase"]["offer"]["code"] = huge.into();
    let event = hotmart::normalize(raw.to_string().as_bytes(), received()).unwrap();
    let student = event.student.as_ref().unwrap();
    assert_eq!(student.name.as_ref().unwrap().chars().count(), hotmart::MAX_NAME_CHARS);
    assert_eq!(student.first_name.as_ref().unwrap().chars().count(), hotmart::MAX_NAME_CHARS);
    assert_eq!(event.product.as_ref().unwrap().name.as_ref().unwrap().chars().count(), hotmart::MAX_NAME_CHARS);
    assert_eq!(event.product.as_ref().unwrap().offer.as_ref().unwrap().chars().count(), hotmart::MAX_TEXT_CHARS);
    assert!(event.to_json().len() < 8 * 1024, "the event stays small");
    // Short names are untouched.
    raw["data"]["buyer"]["name"] = "Ana Souza".into();
    let event = hotmart::normalize(raw.to_string().as_bytes(), received()).unwrap();
    assert_eq!(event.student.unwrap().name.as_deref(), Some("Ana Souza"));
}

#[test]
fn an_event_over_the_queue_limit_keeps_the_digest_and_the_first_bytes_of_its_body() {
    const LIMIT: usize = 128 * 1024;
    let source = source();
    let body: Vec<u8> = (0..600 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let reason = source.normalize(&body, received()).unwrap_err();
    let event = source.quarantine(&body, &reason, received());
    assert!(event.to_json().len() > LIMIT);
    let fitted = fit_raw(&event, LIMIT).unwrap().expect("shortened");
    let json = fitted.to_json();
    assert!(json.len() <= LIMIT, "{} bytes", json.len());
    assert!(json.len() > LIMIT - 1024, "as much of the body as fits is kept: {} bytes", json.len());
    assert!(fitted.raw_truncated);
    assert_eq!(fitted.raw_sha256.as_deref(), Some(hex::encode(Sha256::digest(&body)).as_str()));
    let head = base64::engine::general_purpose::STANDARD.decode(fitted.raw.as_ref().unwrap()).unwrap();
    assert!(body.starts_with(&head) && head.len() > 90 * 1024);
    assert_eq!((fitted.id.clone(), fitted.change.clone()), (event.id.clone(), event.change.clone()));
    // It reads back as an event, flags included.
    let read = Event::from_json(&json).unwrap();
    assert!(read.raw_truncated && read.raw_sha256.is_some());

    // Small events are left alone and carry no flags.
    let small = source.quarantine(b"tiny", &reason, received());
    assert_eq!(fit_raw(&small, LIMIT), Ok(None));
    assert!(!String::from_utf8(small.to_json()).unwrap().contains("raw_"));
    // Without a raw body there is nothing to shorten.
    let normal =
        hotmart::normalize(&std::fs::read("../tests/fixtures/hotmart/purchase_approved.json").unwrap(), received())
            .unwrap();
    assert!(fit_raw(&normal, 100).is_err());
}
