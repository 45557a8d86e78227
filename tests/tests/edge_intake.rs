//! The edge in workerd (`wrangler dev`) publishing to the real Pub/Sub emulator: what is
//! accepted arrives once with the right message; what is refused publishes nothing.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use base64::Engine as _;
use lms_bridge_tests::edge::{Edge, HOTTOK};
use lms_bridge_tests::pubsub_emulator::{Emulator, PROJECT};
use lms_bridge_tests::webhooks::Webhook;
use lms_bridge_tests::{fixture, hotmart_samples};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

const TOPIC: &str = "edge-intake";
const PEPPER: &str = "edge-pepper-9f3c";

struct Stack {
    emulator: Emulator,
    edge: Edge,
}

/// One emulator and one edge for this test binary; tests take turns, each on a fresh
/// subscription, so "nothing reached the topic" is about its own requests only.
fn stack() -> (MutexGuard<'static, ()>, &'static Stack) {
    static TURN: Mutex<()> = Mutex::new(());
    static STACK: OnceLock<Stack> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let stack = STACK.get_or_init(|| {
        let emulator = Emulator::start();
        emulator.client().create_topic(TOPIC);
        let edge = Edge::start(
            "intake",
            &[
                ("HOTMART_HOTTOK", HOTTOK),
                ("PUBSUB_EMULATOR_HOST", &emulator.host),
                ("GCP_PROJECT", PROJECT),
                ("PUBSUB_TOPIC", TOPIC),
                ("STUDENT_KEY_PEPPER", PEPPER),
            ],
        );
        Stack { emulator, edge }
    });
    (turn, stack)
}

fn subscribe(stack: &Stack, name: &str) -> String {
    stack.emulator.client().create_subscription(name, TOPIC);
    name.to_owned()
}

#[test]
fn every_sample_is_accepted_and_arrives_once_with_its_message() {
    let (_turn, stack) = stack();
    let sub = subscribe(stack, "every-sample");
    let samples = hotmart_samples();
    assert_eq!(samples.len(), 15);
    for (name, body) in &samples {
        let (status, answer) = stack.edge.hotmart(body.clone());
        assert_eq!(status, 200, "{name}: {answer}");
        assert_eq!(answer["status"], "accepted", "{name}");
        assert_eq!(answer["via"], "pubsub", "{name}");
    }
    let pulled =
        stack.emulator.client().pull_exactly(&sub, samples.len(), Duration::from_secs(30), Duration::from_secs(2));
    assert_eq!(pulled.len(), samples.len(), "each sample exactly once");
    for (name, body) in &samples {
        let raw: serde_json::Value = serde_json::from_slice(body).unwrap();
        let id = format!("hotmart:{}", raw["id"].as_str().unwrap());
        let matching: Vec<_> = pulled.iter().filter(|m| m.attributes["event_id"] == id.as_str()).collect();
        assert_eq!(matching.len(), 1, "{name} arrives once");
        let message = matching[0];
        let event = message.json();
        // The data is exactly what the shared normalizer makes of the body at the edge's clock.
        let received_at = lms_bridge_shared::Timestamp::parse_rfc3339(event["received_at"].as_str().unwrap()).unwrap();
        let mut expected = lms_bridge_shared::source::hotmart::normalize(body, received_at).unwrap();
        expected.key_student(lms_bridge_shared::Pepper::new(PEPPER).as_ref());
        let expected = serde_json::to_value(&expected).unwrap();
        assert_eq!(event, expected, "{name}");
        assert_eq!(message.attributes["schema"], "lms-bridge.event.v2");
        assert_eq!(message.attributes["source"], "hotmart");
        assert_eq!(message.attributes["change"], event["change"]["type"], "{name}");
        assert_eq!(message.ordering_key.as_deref(), event["student"]["key"].as_str(), "{name}");
        let text = String::from_utf8(message.data.clone()).unwrap();
        assert!(!text.contains("69526128664"), "{name}: no CPF leaves the edge");
    }
}

/// What is sent (label, path, token, content type, body) and what must come back (status, code).
type Refusal<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, Vec<u8>, u16, &'a str);

#[test]
fn refused_requests_get_their_json_error_and_publish_nothing() {
    let (_turn, stack) = stack();
    let sub = subscribe(stack, "refusals");
    let body = fixture("hotmart/purchase_approved.json");
    let json = "application/json";
    let cases: Vec<Refusal> = vec![
        ("wrong token", "/webhooks/hotmart", Some("nope"), json, body.clone(), 401, "unauthorized"),
        ("missing token", "/webhooks/hotmart", None, json, body.clone(), 401, "unauthorized"),
        ("garbage without token", "/webhooks/hotmart", None, json, b"{{{".to_vec(), 401, "unauthorized"),
        ("oversize", "/webhooks/hotmart", Some(HOTTOK), json, vec![b' '; 1024 * 1024 + 1], 413, "payload_too_large"),
        (
            "form body without token",
            "/webhooks/hotmart",
            None,
            "application/x-www-form-urlencoded",
            body.clone(),
            401,
            "unauthorized",
        ),
        ("unknown source", "/webhooks/paypal", Some(HOTTOK), json, body.clone(), 404, "unknown_source"),
        ("unknown path", "/hooks", Some(HOTTOK), json, body.clone(), 404, "not_found"),
    ];
    for (what, path, token, content_type, body, status, code) in cases {
        let (got, answer) = stack.edge.post(path, token, content_type, body);
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{what}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
    }
    let get = reqwest::blocking::get(format!("{}/webhooks/hotmart", stack.edge.url)).unwrap();
    assert_eq!(get.status().as_u16(), 405);
    let answer: serde_json::Value = get.json().unwrap();
    assert_eq!(answer["error"]["code"], "method_not_allowed");

    // Over the limit without a Content-Length (chunked): refused while streaming. The edge
    // answers 413 and closes; a client still uploading may see the close before the answer (on
    // a busy machine), which is the same refusal.
    let chunked = reqwest::blocking::Client::new()
        .post(format!("{}/webhooks/hotmart", stack.edge.url))
        .header("content-type", json)
        .header("X-HOTMART-HOTTOK", HOTTOK)
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(vec![b' '; 2 * 1024 * 1024])))
        .send();
    match chunked {
        Ok(answer) => assert_eq!(answer.status().as_u16(), 413),
        Err(e) => assert!(e.is_body(), "not a refusal mid-upload: {e:?}"),
    }

    let pulled = stack.emulator.client().pull_exactly(&sub, 0, Duration::ZERO, Duration::from_secs(2));
    assert!(pulled.is_empty(), "refused requests reached the topic: {pulled:?}");
}

#[test]
fn an_authenticated_payload_that_cannot_be_normalized_arrives_as_unparsed() {
    let (_turn, stack) = stack();
    let sub = subscribe(stack, "unparsed");
    let raw = Webhook::purchase_approved().edit(|raw| {
        raw["data"]["buyer"].as_object_mut().unwrap().remove("email");
        raw["hottok"] = HOTTOK.into();
    });
    let (status, answer) = stack.edge.hotmart(raw.bytes());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "quarantined");

    let not_json = b"this is not json".to_vec();
    let (status, answer) = stack.edge.hotmart(not_json.clone());
    assert_eq!((status, answer["status"].as_str()), (200, Some("quarantined")));

    let pulled = stack.emulator.client().pull_exactly(&sub, 2, Duration::from_secs(30), Duration::from_secs(2));
    assert_eq!(pulled.len(), 2);
    for message in &pulled {
        let event = message.json();
        assert_eq!(event["change"]["type"], "unparsed");
        assert_eq!(message.attributes["change"], "unparsed");
        let kept = base64::engine::general_purpose::STANDARD.decode(event["raw"].as_str().unwrap()).unwrap();
        if event["change"]["reason"] == "missing field data.buyer.email" {
            let kept: serde_json::Value = serde_json::from_slice(&kept).unwrap();
            assert_eq!(kept.get("hottok"), None, "the body hottok is removed");
            assert_eq!(kept["data"]["purchase"]["transaction"], "HP16015479281022");
        } else {
            assert_eq!(kept, not_json);
        }
    }
}

/// An authenticated request that is not JSON by its content type is quarantined, not refused
/// (a refusal risks the platform deactivating the webhook); the hottok never stays in it.
#[test]
fn an_authenticated_request_with_another_content_type_is_quarantined() {
    let (_turn, stack) = stack();
    let sub = subscribe(stack, "content-type");
    let form = format!("hottok={HOTTOK}&id=form-1").into_bytes();
    let cases: [(&str, &[u8]); 3] = [
        ("application/x-www-form-urlencoded", &form),
        ("text/plain; charset=utf-8", b"plain text"),
        ("", b"{\"no\":\"content type\"}"),
    ];
    for (content_type, body) in cases {
        let (status, answer) = stack.edge.post("/webhooks/hotmart", Some(HOTTOK), content_type, body.to_vec());
        assert_eq!((status, answer["status"].as_str()), (200, Some("quarantined")), "{content_type}: {answer}");
    }
    let pulled = stack.emulator.client().pull_exactly(&sub, 3, Duration::from_secs(30), Duration::from_secs(2));
    assert_eq!(pulled.len(), 3);
    let mut reasons: Vec<String> = Vec::new();
    for message in &pulled {
        let event = message.json();
        assert_eq!(event["change"]["type"], "unparsed");
        reasons.push(event["change"]["reason"].as_str().unwrap().to_owned());
        let kept = base64::engine::general_purpose::STANDARD.decode(event["raw"].as_str().unwrap()).unwrap();
        let kept = String::from_utf8(kept).unwrap();
        assert!(!kept.contains(HOTTOK), "{kept}");
        if kept.contains("form-1") {
            assert_eq!(kept, "hottok=&id=form-1");
        }
    }
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "unexpected content type \"\"",
            "unexpected content type \"application/x-www-form-urlencoded\"",
            "unexpected content type \"text/plain\"",
        ]
    );
}

/// The hottok is cut out of a quarantined body by value, whatever its shape and spelling, and
/// the quarantine is logged at WARNING with its reason code, never the body.
#[test]
fn quarantined_bodies_lose_the_hottok_in_every_shape_and_are_logged_at_warning() {
    let (_turn, stack) = stack();
    let sub = subscribe(stack, "hottok-shapes");
    let escaped: String = HOTTOK.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    let bodies: Vec<Vec<u8>> = vec![
        format!("\u{feff}{{\"hottok\":\"{HOTTOK}\",\"id\":\"bom\"}}").into_bytes(),
        format!(r#"[{{"hottok":"{HOTTOK}","id":"array"}}]"#).into_bytes(),
        format!(r#"{{"id":"nested","data":{{"HOTTOK":"{HOTTOK}","Hottok":"x"}}}}"#).into_bytes(),
        format!(r#"{{"id":"in-a-string","note":"the token is {HOTTOK}!"}}"#).into_bytes(),
        format!(r#"{{"id":"escaped","x":"{escaped}"}}"#).into_bytes(),
        format!("not json at all {HOTTOK}").into_bytes(),
    ];
    let mut ids = Vec::new();
    for body in &bodies {
        let (status, answer) = stack.edge.hotmart(body.clone());
        assert_eq!((status, answer["status"].as_str()), (200, Some("quarantined")), "{answer}");
        ids.push(answer["event_id"].as_str().unwrap().to_owned());
    }
    let pulled =
        stack.emulator.client().pull_exactly(&sub, bodies.len(), Duration::from_secs(30), Duration::from_secs(2));
    assert_eq!(pulled.len(), bodies.len());
    for message in &pulled {
        let event = message.json();
        let kept = base64::engine::general_purpose::STANDARD.decode(event["raw"].as_str().unwrap()).unwrap();
        let kept = String::from_utf8_lossy(&kept);
        assert!(!kept.contains(HOTTOK) && !kept.contains(&escaped), "{kept}");
        if serde_json::from_slice::<serde_json::Value>(kept.as_bytes()).is_ok() {
            assert!(!kept.to_lowercase().contains("\"hottok\""), "{kept}");
        }
        assert!(!String::from_utf8_lossy(&message.data).contains(HOTTOK));
    }
    // Each quarantine has its WARNING line: the event id and the reason code, no body.
    // (wrangler prints the Worker's log lines a moment after the answers.)
    for id in &ids {
        assert!(stack.edge.wait_for_output(id, Duration::from_secs(15)), "no line for {id}");
    }
    let lines = stack.edge.log_lines();
    for id in &ids {
        let line = lines.iter().find(|l| l["event_id"] == id.as_str()).unwrap_or_else(|| panic!("no line for {id}"));
        assert_eq!(line["severity"], "WARNING", "{line}");
        let code = line["quarantined"].as_str().unwrap_or_default();
        assert!(["malformed_body", "missing_field"].contains(&code), "{line}");
    }
    let output = stack.edge.output();
    assert!(!output.contains(HOTTOK), "the hottok reached the edge output");
    assert!(!output.contains("in-a-string") && !output.contains("not json at all"), "a body reached the log");
}

#[test]
fn student_keys_leave_the_edge_as_hmacs_of_the_email_under_the_pepper() {
    let (_turn, stack) = stack();
    let sub = subscribe(stack, "peppered");
    let raw = Webhook::purchase_approved().id("peppered-1").buyer("Ana.Souza@Example.com");
    let (status, answer) = stack.edge.hotmart(raw.bytes());
    assert_eq!(status, 200, "{answer}");
    let pulled = stack.emulator.client().pull_exactly(&sub, 1, Duration::from_secs(30), Duration::from_secs(2));
    assert_eq!(pulled.len(), 1);
    // HMAC-SHA256("edge-pepper-9f3c", "ana.souza@example.com"), computed with Python's hmac.
    let key = "cb89338b2a09ad7fda38c5d9d2c8d477aab4db02162c5f4f5f744194531d3e3a";
    assert_eq!(pulled[0].json()["student"]["key"], key);
    assert_eq!(pulled[0].ordering_key.as_deref(), Some(key));
    // wrangler prints the Worker's log lines a moment after the answers.
    assert!(stack.edge.wait_for_output(key, Duration::from_secs(15)), "the edge logs the peppered key");
    let log = serde_json::Value::from(stack.edge.log_lines()).to_string();
    assert!(!log.contains(&lms_bridge_shared::Email::parse("ana.souza@example.com").unwrap().student_key().to_string()));
}

#[test]
fn healthz_answers_without_pubsub() {
    let (_turn, stack) = stack();
    let response = reqwest::blocking::get(format!("{}/healthz", stack.edge.url)).unwrap();
    assert_eq!(response.status().as_u16(), 200);
}
