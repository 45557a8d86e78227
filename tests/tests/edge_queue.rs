//! Pub/Sub down: the edge still answers 200 by parking events in the Cloudflare Queue, and
//! its queue consumer publishes every one once Pub/Sub is back.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_tests::chaos::ChaosProxy;
use lms_bridge_tests::edge::{Edge, HOTTOK};
use lms_bridge_tests::fixture;
use lms_bridge_tests::pubsub::{Emulator, PROJECT};
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

    let template: serde_json::Value = serde_json::from_slice(&fixture("hotmart/purchase_approved.json")).unwrap();
    let mut sent = BTreeSet::new();
    for i in 0..6 {
        let mut body = template.clone();
        body["id"] = format!("queued-{i}").into();
        body["data"]["purchase"]["transaction"] = format!("HPQ{i}").into();
        let (status, answer) = edge.hotmart(body.to_string().into_bytes());
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "accepted");
        assert_eq!(answer["via"], "queue", "{answer}");
        sent.insert(answer["event_id"].as_str().unwrap().to_owned());
    }

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
}
