//! The sources that sign the body — Stripe and a Standard Webhooks sender — through the edge in
//! workerd (`wrangler dev`) to the real Pub/Sub emulator: signed requests (under either secret
//! of a rotation) arrive as events of source `stripe` / `std-acme`; forged, replayed,
//! future-dated, re-serialized, wrong-secret and header-less requests are refused with 401 and
//! publish nothing.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_shared::source::{StdWebhooks, Stripe};
use lms_bridge_tests::edge::Edge;
use lms_bridge_tests::pubsub_emulator::{Emulator, PROJECT};
use lms_bridge_tests::stripe_events::{invoice_paid, Rendering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TOPIC: &str = "edge-std-webhooks";
/// The secret being retired and the new one: both accepted during the rotation.
const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// A secret the edge does not hold.
const STRANGER_SECRET: &str = "whsec_c3RyYW5nZXItc2VjcmV0LWtleS0xMjM0";
/// Stripe endpoint secrets (used as they are, `whsec_` included): the rolled one and the new.
const STRIPE_OLD: &str = "whsec_750e601a79a762e75cf1ec30b41b2e6f88daafcc644b3a9f29e735b4453ebb9a";
const STRIPE_NEW: &str = "whsec_test_secret_of_the_new_endpoint_0123456789";

struct Stack {
    emulator: Emulator,
    edge: Edge,
}

fn stack() -> (MutexGuard<'static, ()>, &'static Stack) {
    static TURN: Mutex<()> = Mutex::new(());
    static STACK: OnceLock<Stack> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let stack = STACK.get_or_init(|| {
        let emulator = Emulator::start();
        emulator.client().create_topic(TOPIC);
        let secrets = format!("{OLD_SECRET}, {NEW_SECRET}");
        let stripe_secrets = format!("{STRIPE_OLD},{STRIPE_NEW}");
        let edge = Edge::start(
            "signed-sources",
            &[
                ("STD_WEBHOOK_SECRET_ACME", &secrets),
                ("STRIPE_WEBHOOK_SECRET", &stripe_secrets),
                ("PUBSUB_EMULATOR_HOST", &emulator.host),
                ("GCP_PROJECT", PROJECT),
                ("PUBSUB_TOPIC", TOPIC),
            ],
        );
        Stack { emulator, edge }
    });
    (turn, stack)
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

fn body(kind: &str, extra: &str) -> Vec<u8> {
    format!(
        r#"{{"type": "{kind}", "data": {{"email": "ana@example.com", "name": "Ana Souza", "product": "course-101", "grant": "sub_42", "charge": "ch_7", "occurred_at": "2025-03-01T11:59:00Z"{extra}}}}}"#
    )
    .into_bytes()
}

/// Posts to `/webhooks/std/acme` with these Standard Webhooks headers (None: left out).
fn post(
    stack: &Stack,
    id: Option<&str>,
    timestamp: Option<i64>,
    signature: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::blocking::Client::new()
        .post(format!("{}/webhooks/std/acme", stack.edge.url))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(30))
        .body(body);
    if let Some(id) = id {
        request = request.header("webhook-id", id);
    }
    if let Some(timestamp) = timestamp {
        request = request.header("webhook-timestamp", timestamp.to_string());
    }
    if let Some(signature) = signature {
        request = request.header("webhook-signature", signature);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}

fn signed(stack: &Stack, secret: &str, id: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let at = now();
    let signature = StdWebhooks::sign(secret, id, at, &body).unwrap();
    post(stack, Some(id), Some(at), Some(&signature), body)
}

#[test]
fn signed_requests_under_either_secret_arrive_as_events() {
    let (_turn, stack) = stack();
    stack.emulator.client().create_subscription("signed", TOPIC);
    let granted = body("access.granted", r#", "paid_through": "2025-04-01T11:59:00Z""#);
    let (status, answer) = signed(stack, OLD_SECRET, "msg_grant_1", granted);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");
    assert_eq!(answer["event_id"], "std-acme:msg_grant_1");
    let revoked = body("access.revoked", r#", "reason": "refunded""#);
    let (status, answer) = signed(stack, NEW_SECRET, "msg_revoke_1", revoked);
    assert_eq!(status, 200, "{answer}");

    let pulled = stack.emulator.client().pull_exactly("signed", 2, Duration::from_secs(30), Duration::from_secs(2));
    assert_eq!(pulled.len(), 2);
    let event = |id: &str| pulled.iter().find(|m| m.attributes["event_id"] == id).unwrap().json();
    let grant = event("std-acme:msg_grant_1");
    assert_eq!(grant["source"], "std-acme");
    assert_eq!(grant["source_event"], "access.granted");
    assert_eq!(grant["change"]["type"], "approve");
    assert_eq!(grant["grant_id"], "sub_42");
    assert_eq!(grant["charge"]["id"], "ch_7");
    assert_eq!(grant["charge"]["next_charge_at"], "2025-04-01T11:59:00.000Z");
    assert_eq!(grant["effective_at"], "2025-03-01T11:59:00.000Z");
    let revoke = event("std-acme:msg_revoke_1");
    assert_eq!(revoke["change"], serde_json::json!({ "type": "revoke", "reason": "refunded" }));
}

/// What is sent (label, webhook-id, webhook-timestamp, webhook-signature, body); None: left out.
type Refusal<'a> = (&'a str, Option<&'a str>, Option<i64>, Option<String>, Vec<u8>);

#[test]
fn forged_replayed_and_reshaped_requests_are_refused_and_publish_nothing() {
    let (_turn, stack) = stack();
    stack.emulator.client().create_subscription("refused", TOPIC);
    let body = body("access.granted", "");
    let sign = |secret: &str, id: &str, at: i64, body: &[u8]| StdWebhooks::sign(secret, id, at, body).unwrap();
    let at = now();
    let good = sign(NEW_SECRET, "msg_x", at, &body);
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let reserialized = serde_json::to_vec(&value).unwrap();
    assert_ne!(reserialized, body);
    let cases: Vec<Refusal> = vec![
        (
            "forged signature",
            Some("msg_x"),
            Some(at),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into()),
            body.clone(),
        ),
        ("wrong secret", Some("msg_x"), Some(at), Some(sign(STRANGER_SECRET, "msg_x", at, &body)), body.clone()),
        (
            "replayed (10 minutes old)",
            Some("msg_x"),
            Some(at - 600),
            Some(sign(NEW_SECRET, "msg_x", at - 600, &body)),
            body.clone(),
        ),
        (
            "future-dated (10 minutes ahead)",
            Some("msg_x"),
            Some(at + 600),
            Some(sign(NEW_SECRET, "msg_x", at + 600, &body)),
            body.clone(),
        ),
        ("re-serialized body", Some("msg_x"), Some(at), Some(good.clone()), reserialized),
        ("another id", Some("msg_y"), Some(at), Some(good.clone()), body.clone()),
        ("missing webhook-signature", Some("msg_x"), Some(at), None, body.clone()),
        ("missing webhook-id", None, Some(at), Some(good.clone()), body.clone()),
        ("missing webhook-timestamp", Some("msg_x"), None, Some(good.clone()), body.clone()),
    ];
    for (what, id, timestamp, signature, body) in cases {
        let (status, answer) = post(stack, id, timestamp, signature.as_deref(), body);
        assert_eq!(status, 401, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "unauthorized", "{what}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(!message.contains("whsec_") && !message.contains("v1,"), "{what}: {message}");
    }
    let pulled = stack.emulator.client().pull_exactly("refused", 0, Duration::ZERO, Duration::from_secs(2));
    assert!(pulled.is_empty(), "refused requests reached the topic: {pulled:?}");
    // A sender the edge has no secret for is a configuration error, never an open door.
    let (status, answer) = {
        let at = now();
        let request = reqwest::blocking::Client::new()
            .post(format!("{}/webhooks/std/globex", stack.edge.url))
            .header("content-type", "application/json")
            .header("webhook-id", "msg_z")
            .header("webhook-timestamp", at.to_string())
            .header("webhook-signature", sign(NEW_SECRET, "msg_z", at, &body))
            .body(body.clone());
        let response = request.send().unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().unwrap())
    };
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["code"], "misconfigured");
}

/// Posts a body to `/webhooks/stripe` with this `Stripe-Signature` (None: left out).
fn post_stripe(stack: &Stack, signature: Option<&str>, body: Vec<u8>) -> (u16, serde_json::Value) {
    let mut request = reqwest::blocking::Client::new()
        .post(format!("{}/webhooks/stripe", stack.edge.url))
        .header("content-type", "application/json; charset=utf-8")
        .timeout(Duration::from_secs(30))
        .body(body);
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}

fn paid(rendering: Rendering, id: &str) -> Vec<u8> {
    let period = (1_746_757_387, 1_749_435_787);
    invoice_paid(rendering, id, "ana@example.com", "sub_edge_1", "in_edge_1", "prod_edge", "price_edge", period).bytes()
}

#[test]
fn stripe_events_signed_with_either_secret_of_a_roll_arrive_in_both_renderings() {
    let (_turn, stack) = stack();
    stack.emulator.client().create_subscription("stripe-signed", TOPIC);
    let old = paid(Rendering::Acacia, "evt_edge_acacia");
    let (status, answer) = post_stripe(stack, Some(&Stripe::sign(STRIPE_OLD, now(), &old)), old);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["event_id"], "stripe:evt_edge_acacia");
    // While a secret is rolled Stripe signs with both: one matching v1 among several is enough.
    let new = paid(Rendering::Basil, "evt_edge_basil");
    let at = now();
    let both = format!(
        "{},{}",
        Stripe::sign(STRANGER_SECRET, at, &new),
        Stripe::sign(STRIPE_NEW, at, &new).replace("t=", "x=")
    );
    let (status, answer) = post_stripe(stack, Some(&both), new);
    assert_eq!(status, 200, "{answer}");

    let pulled =
        stack.emulator.client().pull_exactly("stripe-signed", 2, Duration::from_secs(30), Duration::from_secs(2));
    for id in ["stripe:evt_edge_acacia", "stripe:evt_edge_basil"] {
        let event = pulled.iter().find(|m| m.attributes["event_id"] == id).unwrap().json();
        assert_eq!(event["source"], "stripe", "{id}");
        assert_eq!(event["source_event"], "invoice.paid", "{id}");
        assert_eq!(event["change"]["type"], "approve", "{id}");
        assert_eq!(event["grant_id"], "sub_edge_1", "{id}");
        assert_eq!(event["charge"]["id"], "in_edge_1", "{id}");
        assert_eq!(event["charge"]["next_charge_at"], "2025-06-09T02:23:07.000Z", "{id}");
        assert_eq!(event["product"]["id"], "prod_edge", "{id}");
        assert_eq!(event["product"]["plan"], "price_edge", "{id}");
        assert_eq!(event["student"]["email"], "ana@example.com", "{id}");
    }
}

#[test]
fn forged_replayed_and_reshaped_stripe_requests_are_refused_and_publish_nothing() {
    let (_turn, stack) = stack();
    stack.emulator.client().create_subscription("stripe-refused", TOPIC);
    let body = paid(Rendering::Basil, "evt_edge_refused");
    let at = now();
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let reserialized = serde_json::to_vec(&value).unwrap();
    assert_ne!(reserialized, body);
    let good = Stripe::sign(STRIPE_NEW, at, &body);
    let v1 = good.split_once(",v1=").unwrap().1.to_owned();
    let cases: Vec<(&str, Option<String>, Vec<u8>)> = vec![
        ("forged signature", Some(format!("t={at},v1={}", "0".repeat(64))), body.clone()),
        ("wrong secret", Some(Stripe::sign(STRANGER_SECRET, at, &body)), body.clone()),
        ("replayed (10 minutes old)", Some(Stripe::sign(STRIPE_NEW, at - 600, &body)), body.clone()),
        ("future-dated (10 minutes ahead)", Some(Stripe::sign(STRIPE_NEW, at + 600, &body)), body.clone()),
        ("re-serialized body", Some(good.clone()), reserialized),
        ("another timestamp, same v1", Some(format!("t={},v1={v1}", at - 1)), body.clone()),
        ("only the test-mode v0 scheme", Some(format!("t={at},v0={v1}")), body.clone()),
        ("no timestamp", Some(format!("v1={v1}")), body.clone()),
        ("missing Stripe-Signature", None, body.clone()),
    ];
    for (what, signature, body) in cases {
        let (status, answer) = post_stripe(stack, signature.as_deref(), body);
        assert_eq!(status, 401, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "unauthorized", "{what}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(!message.contains("whsec_") && !message.contains(&v1), "{what}: {message}");
    }
    let pulled = stack.emulator.client().pull_exactly("stripe-refused", 0, Duration::ZERO, Duration::from_secs(2));
    assert!(pulled.is_empty(), "refused requests reached the topic: {pulled:?}");
}
