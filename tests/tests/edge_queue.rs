//! Pub/Sub down: the edge still answers 200 by parking events in the Cloudflare Queue, and
//! its queue consumer publishes every one once Pub/Sub is back.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use base64::Engine as _;
use lms_bridge_tests::chaos::ChaosProxy;
use lms_bridge_tests::edge::{Edge, HOTTOK};
use lms_bridge_tests::pubsub_emulator::{Emulator, PROJECT};
use lms_bridge_tests::webhooks::Webhook;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::time::Duration;

const TOPIC: &str = "edge-queue";

#[test]
fn events_accepted_while_pubsub_is_down_are_published_when_it_returns() {
    let emulator = Emulator::start();
    let client = emulator.client();
    client.create_topic(TOPIC);
    client.create_subscription("after-outage", TOPIC);
    // Pub/Sub is cut off and restored through a proxy, as a real outage would: its topics and
    // subscriptions survive (an emulator restart would lose them).
    let proxy = ChaosProxy::start(&emulator.host);
    let edge = Edge::start(
        "queue",
        &[
            ("HOTMART_HOTTOK", HOTTOK),
            ("PUBSUB_EMULATOR_HOST", &proxy.host),
            ("GCP_PROJECT", PROJECT),
            ("PUBSUB_TOPIC", TOPIC),
        ],
    );
    proxy.cut();

    let mut sent = BTreeSet::new();
    for i in 0..6 {
        let body = Webhook::purchase_approved().id(&format!("queued-{i}")).transaction(&format!("HPQ{i}"));
        let (status, answer) = edge.hotmart(body.bytes());
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "accepted");
        assert_eq!(answer["via"], "queue", "{answer}");
        sent.insert(answer["event_id"].as_str().unwrap().to_owned());
    }

    // A quarantined body too large for a queue message (128 KB) is parked all the same, with
    // the digest and the first bytes of its body (`raw_truncated`, `raw_sha256`).
    let big: Vec<u8> = (0..400 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let (status, answer) = edge.hotmart(big.clone());
    assert_eq!((status, answer["status"].as_str(), answer["via"].as_str()), (200, Some("quarantined"), Some("queue")));
    let big_id = answer["event_id"].as_str().unwrap().to_owned();
    sent.insert(big_id.clone());

    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(client.pull_once("after-outage", 100).is_empty(), "nothing got through the outage");
    proxy.restore();
    let pulled = client.pull_exactly("after-outage", sent.len(), Duration::from_secs(90), Duration::from_secs(3));
    let ids: Vec<String> = pulled.iter().map(|m| m.json()["id"].as_str().unwrap().to_owned()).collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique, sent, "every parked event arrives");
    // At-least-once in transport is fine (the backend dedupes on id); content is identical.
    for id in &sent {
        let copies: Vec<_> = pulled.iter().filter(|m| m.json()["id"] == id.as_str()).map(|m| m.data.clone()).collect();
        assert!(copies.windows(2).all(|w| w[0] == w[1]), "{id}: copies differ");
    }
    let big_event = pulled.iter().map(|m| m.json()).find(|e| e["id"] == big_id.as_str()).unwrap();
    assert_eq!(big_event["raw_truncated"], true);
    let digest: String = Sha256::digest(&big).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(big_event["raw_sha256"], digest.as_str());
    let head = base64::engine::general_purpose::STANDARD.decode(big_event["raw"].as_str().unwrap()).unwrap();
    assert!(head.len() > 64 * 1024 && big.starts_with(&head), "the first bytes are kept");
    let said = edge.log_lines().into_iter().any(|l| {
        l["event_id"] == big_id.as_str() && l["message"].as_str().is_some_and(|m| m.contains("raw body truncated"))
    });
    assert!(said, "the truncation is logged");
}
